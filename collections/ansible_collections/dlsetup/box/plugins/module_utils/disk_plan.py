# Copyright: dlsetup contributors
# Apache-2.0
"""The disk planner: what exists, what the spec asks, what to do, what is refused.

All of the disk_layout role's judgement lives here, imported by the module
plugins/modules/disk_layout_plan.py (Ansiballz ships this file with it), by
preflight's validate_vars action plugin (the same spec checks before any
change) and by the CLI's installer-config (the same size parsing).

``build_plan()`` is a pure function of the spec and the recorded outputs of
``lsblk --json -b -O``, ``sfdisk --json`` and ``blkid -p -o export``, the
fstab and the current mounts, so it is unit-tested against outputs captured
from real loop-device images (tests/fixtures/disk_layout/).
``gather_disk_facts()`` records those outputs, through a ``run`` callable.
Standard library only.
"""

from __future__ import annotations

import json
import os
import re

MIB = 1024 * 1024
SIZE_UNITS = {"MiB": MIB, "GiB": 1024 * MIB, "TiB": 1024 * 1024 * MIB}
SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(MiB|GiB|TiB|%)\s*$")

GPT_ESP = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
GPT_MSR = "e3c9e316-0b5c-4db8-817d-f92df00215ae"
GPT_WINRE = "de94bba4-06d1-4d40-a16a-bfd50179d6ac"
GPT_BASIC_DATA = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"
GPT_MAX_PARTITIONS = 128

# What dlsetup may create with mkfs, with the option that sets a label and its limit.
MKFS_LABEL = {
    "ext2": ("-L", 16),
    "ext3": ("-L", 16),
    "ext4": ("-L", 16),
    "xfs": ("-L", 12),
    "btrfs": ("-L", 255),
    "vfat": ("-n", 11),
}
FSTYPES = set(MKFS_LABEL) | {"ntfs"}
# The smallest partition mkfs accepts (xfsprogs >= 5.19: 300MB; mkfs.btrfs: 114294784 bytes).
MKFS_MIN_BYTES = {"xfs": 300 * MIB, "btrfs": 110 * MIB}
# Never formatted, not even with wipe: true and safe mode off.
WINDOWS_FSTYPES = {"ntfs", "BitLocker"}
PROTECTED_TYPES = {GPT_MSR: "Microsoft reserved", GPT_WINRE: "Windows recovery"}
FSCK_FSTYPES = {"ext2", "ext3", "ext4", "vfat"}

# Tools the role's tasks use, reported so that check mode can skip what cannot run yet.
TOOLS = (
    "parted",
    "sfdisk",
    "partx",
    "mkfs.ext4",
    "mkfs.xfs",
    "mkfs.btrfs",
    "mkfs.vfat",
    "ntfs-3g",
    "os-prober",
)
TOOL_FOR = {"create_table": "parted", "create_partition": "parted"}

DISK_KEYS = {"device", "table", "partitions"}
PARTITION_KEYS = {
    "name",
    "uuid",
    "fs_label",
    "size",
    "fstype",
    "mount",
    "mount_options",
    "mount_state",
    "preserve",
    "wipe",
}
MOUNT_STATES = {"mounted", "present"}


class Refusals:
    """Collects refusals; each names the disk, the partition and the field."""

    def __init__(self):
        self.items = []

    def add(self, msg, disk=None, partition=None, field=None):
        self.items.append({"disk": disk, "partition": partition, "field": field, "msg": msg})


# ---------------------------------------------------------------------------
# Sizes


def parse_size(value):
    """'512MiB' -> ('bytes', 536870912); '100%' -> ('percent', 100.0); else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("expected a number and a unit")
    m = SIZE_RE.match(str(value))
    if not m:
        raise ValueError("expected a number and a unit")
    number, unit = float(m.group(1)), m.group(2)
    if unit == "%":
        if not 0 < number <= 100:
            raise ValueError("a percentage must be more than 0 and at most 100")
        return ("percent", number)
    size = int(number * SIZE_UNITS[unit]) // MIB * MIB
    if size < MIB:
        raise ValueError("the smallest partition is 1MiB")
    return ("bytes", size)


def human(nbytes):
    if nbytes is None:
        return "?"
    for unit, scale in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", MIB)):
        if nbytes >= scale:
            value = nbytes / scale
            return (f"{value:.0f}" if value == int(value) else f"{value:.1f}") + " " + unit
    return f"{nbytes} B"


# ---------------------------------------------------------------------------
# Reading the recorded outputs


def parse_blkid_export(text):
    """Parse `blkid -o export` output; values are backslash-escaped."""
    out = {}
    for line in (text or "").splitlines():
        if "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.strip()] = re.sub(r"\\(.)", r"\1", value)
    return out


def _unescape_mount(field):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text):
    """/proc/self/mounts -> [{source, target, fstype}]."""
    mounts = []
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) >= 3:
            mounts.append(
                {
                    "source": _unescape_mount(fields[0]),
                    "target": _unescape_mount(fields[1]),
                    "fstype": fields[2],
                }
            )
    return mounts


def parse_fstab(text):
    """fstab text -> {mount point: {src, fstype, opts, dump, passno}} (last entry wins)."""
    entries = {}
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 2:
            continue
        entries[_unescape_mount(fields[1])] = {
            "src": _unescape_mount(fields[0]),
            "fstype": fields[2] if len(fields) > 2 else "auto",
            "opts": fields[3] if len(fields) > 3 else "defaults",
            "dump": fields[4] if len(fields) > 4 else "0",
            "passno": fields[5] if len(fields) > 5 else "0",
        }
    return entries


def _lower(value):
    return value.lower() if isinstance(value, str) else value


def partition_device(disk_path, number):
    """The kernel's name for partition `number` of a disk (sda -> sda1, nvme0n1 -> nvme0n1p1)."""
    sep = "p" if disk_path[-1:].isdigit() else ""
    return f"{disk_path}{sep}{number}"


def _sfdisk_entries(disk, sfdisk):
    """Partition entries and the disk's geometry from sfdisk --json (sets them on disk)."""
    disk["table"] = sfdisk.get("label") or disk["table"]
    disk["ptuuid"] = _lower(sfdisk.get("id")) or disk["ptuuid"]
    disk["first_lba"] = sfdisk.get("firstlba")
    disk["last_lba"] = sfdisk.get("lastlba")
    disk["sector_size"] = sfdisk.get("sectorsize") or disk["sector_size"]
    disk["geometry_from"] = "sfdisk"
    return [
        {
            "node": part.get("node"),
            "start": int(part.get("start", 0)),
            "sectors": int(part.get("size", 0)),
            "type": _lower(part.get("type")),
            "partuuid": _lower(part.get("uuid")),
            "name": part.get("name"),
        }
        for part in sfdisk.get("partitions") or []
    ]


def _blkid_entries(disk, blkid):
    """No sfdisk on the target: blkid knows the entries (in 512-byte units); the
    usable area is then the standard one for the table type."""
    disk["geometry_from"] = "blkid"
    sector = disk["sector_size"]
    entries = []
    for node in sorted(blkid):
        info = parse_blkid_export(blkid[node].get("out"))
        if "PART_ENTRY_OFFSET" not in info:
            continue
        entries.append(
            {
                "node": node,
                "start": int(info["PART_ENTRY_OFFSET"]) * 512 // sector,
                "sectors": int(info.get("PART_ENTRY_SIZE", 0)) * 512 // sector,
                "type": _lower(info.get("PART_ENTRY_TYPE")),
                "partuuid": _lower(info.get("PART_ENTRY_UUID")),
                "name": info.get("PART_ENTRY_NAME"),
            }
        )
    return entries


def read_disk(facts):
    """Turn the recorded outputs for one disk into a plain description."""
    disk = {
        "device": facts.get("device"),
        "path": facts.get("path") or facts.get("device"),
        "exists": bool(facts.get("exists")),
        "kind": None,
        "size_bytes": None,
        "sector_size": 512,
        "table": None,
        "ptuuid": None,
        "signature": None,
        "first_lba": None,
        "last_lba": None,
        "partitions": [],
        "free": [],
        "geometry_from": None,
    }
    if not disk["exists"]:
        return disk
    lsblk_devices = (facts.get("lsblk") or {}).get("blockdevices") or []
    top = lsblk_devices[0] if lsblk_devices else {}
    disk["kind"] = top.get("type")
    disk["size_bytes"] = top.get("size")
    disk["sector_size"] = top.get("log-sec") or 512
    children = {c.get("path"): c for c in top.get("children") or [] if c.get("type") == "part"}

    whole = parse_blkid_export(facts.get("blkid_disk"))
    disk["ptuuid"] = _lower(whole.get("PTUUID"))
    disk["table"] = whole.get("PTTYPE")
    if whole.get("TYPE"):
        disk["signature"] = whole["TYPE"]

    blkid = facts.get("blkid") or {}
    sfdisk = (facts.get("sfdisk") or {}).get("partitiontable")
    entries = []
    if sfdisk:
        entries = _sfdisk_entries(disk, sfdisk)
    elif disk["table"]:
        entries = _blkid_entries(disk, blkid)
    sector = disk["sector_size"]
    if disk["size_bytes"] and disk["first_lba"] is None:
        total = disk["size_bytes"] // sector
        # GPT: 1 protective MBR + header + 32 sectors of entries at each end.
        disk["first_lba"] = 34 if disk["table"] in (None, "gpt") else 1
        disk["last_lba"] = total - 34 if disk["table"] in (None, "gpt") else total - 1

    for entry in entries:
        node = entry["node"]
        probe = blkid.get(node) or {}
        info = parse_blkid_export(probe.get("out"))
        number = info.get("PART_ENTRY_NUMBER")
        if number is None:
            m = re.search(r"(\d+)$", node or "")
            number = m.group(1) if m else 0
        child = children.get(node)
        mountpoints = [mp for mp in (child or {}).get("mountpoints") or [] if mp]
        entry.update(
            {
                "number": int(number),
                "device": node,
                "end": entry["start"] + entry["sectors"] - 1,
                "size_bytes": entry["sectors"] * sector,
                "fstype": info.get("TYPE"),
                "uuid": info.get("UUID"),
                "label": info.get("LABEL"),
                "kernel_knows": child is not None,
                # blkid exits 8 when it finds more than one signature: don't guess.
                "ambivalent": probe.get("rc") == 8,
                "mountpoints": mountpoints,
            }
        )
        if entry["name"] is None:
            entry["name"] = info.get("PART_ENTRY_NAME")
        disk["partitions"].append(entry)
    disk["partitions"].sort(key=lambda p: p["start"])
    disk["free"] = free_extents(disk)
    return disk


def free_extents(disk):
    """Free areas of the disk, aligned to 1MiB, at least 1MiB each, in sector units."""
    if disk["first_lba"] is None or disk["last_lba"] is None:
        return []
    sector = disk["sector_size"]
    align = max(MIB // sector, 1)
    used = sorted((p["start"], p["end"]) for p in disk["partitions"])
    extents = []
    cursor = disk["first_lba"]
    for start, end in [*used, (disk["last_lba"] + 1, disk["last_lba"] + 1)]:
        if start > cursor:
            lo = -(-cursor // align) * align
            hi = min(start, disk["last_lba"] + 1) // align * align  # exclusive
            if hi - lo >= align:
                extents.append({"start": lo, "end": hi - 1, "sectors": hi - lo})
        cursor = max(cursor, end + 1)
    return extents


# ---------------------------------------------------------------------------
# The spec


def normalise_spec(disks, refusals):
    """Check the spec's shape; return normalised disks (None for an unusable entry)."""
    result = []
    if not isinstance(disks, list):
        refusals.add("must be a list of disks", field="disk_layout_disks")
        return result
    seen_mounts = {}
    for di, disk in enumerate(disks):
        where = f"disk_layout_disks[{di}]"
        if not isinstance(disk, dict):
            refusals.add("each disk must be a mapping", field=where)
            continue
        device = disk.get("device")
        for key in sorted(set(disk) - DISK_KEYS):
            refusals.add(
                f"unknown key '{key}' (known: {', '.join(sorted(DISK_KEYS))})",
                disk=device,
                field=f"{where}.{key}",
            )
        if not isinstance(device, str) or not device.startswith("/"):
            refusals.add(
                "device must be an absolute path such as /dev/disk/by-id/...",
                disk=device,
                field=f"{where}.device",
            )
            continue
        table = disk.get("table")
        if table not in (None, "gpt"):
            refusals.add(
                f"table '{table}' is not supported (only gpt)", disk=device, field=f"{where}.table"
            )
        parts = disk.get("partitions") or []
        if not isinstance(parts, list):
            refusals.add("partitions must be a list", disk=device, field=f"{where}.partitions")
            parts = []
        norm_parts = []
        for pi, part in enumerate(parts):
            pwhere = f"{where}.partitions[{pi}]"
            norm = normalise_partition(part, device, pwhere, refusals)
            if norm is None:
                continue
            if norm["mount"]:
                if norm["mount"] in seen_mounts:
                    refusals.add(
                        f"mount point {norm['mount']} is also used by {seen_mounts[norm['mount']]}",
                        disk=device,
                        partition=norm["display"],
                        field=f"{pwhere}.mount",
                    )
                seen_mounts[norm["mount"]] = f"{device} {norm['display']}"
            norm_parts.append(norm)
        result.append({"index": di, "device": device, "table": table, "partitions": norm_parts})
    return result


_STRING_KEYS = ("name", "uuid", "fs_label", "fstype", "mount", "mount_options", "mount_state")


def _type_problems(part):
    """(key, message) for unknown keys and values of the wrong type."""
    for key in sorted(set(part) - PARTITION_KEYS):
        yield key, f"unknown key '{key}' (known: {', '.join(sorted(PARTITION_KEYS))})"
    for key in _STRING_KEYS:
        if part.get(key) is not None and not isinstance(part.get(key), str):
            yield key, f"{key} must be a string"
    for key in ("preserve", "wipe"):
        if part.get(key) is not None and not isinstance(part.get(key), bool):
            yield key, f"{key} must be true or false"


def _label_problems(label, fstype):
    if label is None:
        return
    if not label or re.search(r"\s", label):
        yield "fs_label", f"fs_label '{label}' must be non-empty and contain no whitespace"
    elif fstype in MKFS_LABEL and len(label) > MKFS_LABEL[fstype][1]:
        yield (
            "fs_label",
            f"fs_label '{label}' is too long for {fstype} "
            f"(at most {MKFS_LABEL[fstype][1]} characters)",
        )


def _mount_problems(norm):
    mount = norm["mount"]
    if mount is not None:
        if not mount.startswith("/") or re.search(r"\s", mount):
            yield "mount", f"mount '{mount}' must be an absolute path without whitespace"
        if norm["fstype"] is None:
            yield "fstype", "a partition with a mount needs an fstype"
    options = norm["mount_options"]
    if options is not None and (not options or re.search(r"\s", options)):
        yield "mount_options", "mount_options must be a comma-separated list without spaces"
    if norm["mount_state"] is not None and norm["mount_state"] not in MOUNT_STATES:
        yield "mount_state", f"mount_state must be one of {', '.join(sorted(MOUNT_STATES))}"


def _value_problems(norm, part):
    """(key, message) for values that are typed right but not usable, in the
    order a user reads the entry; parses the size into norm on the way."""
    if not (norm["name"] or norm["uuid"] or norm["fs_label"]):
        yield "name", "a partition needs a name (its GPT name), a uuid or an fs_label"
    if norm["name"] is not None and len(norm["name"]) > 36:
        yield "name", "a GPT partition name has at most 36 characters"
    if part.get("size") is not None:
        try:
            norm["size"] = parse_size(part["size"])
        except ValueError as exc:
            norm["size_invalid"] = True
            yield (
                "size",
                f"size '{part['size']}' is not valid ({exc}); use a number with MiB, GiB or "
                "TiB (512MiB, 1.5TiB) or a percentage of the free space (100%)",
            )
    fstype = norm["fstype"]
    if fstype is not None and fstype not in FSTYPES:
        yield "fstype", f"fstype '{fstype}' is not supported ({', '.join(sorted(FSTYPES))})"
    yield from _label_problems(norm["fs_label"], fstype)
    yield from _mount_problems(norm)
    if norm["preserve"] and norm["wipe"]:
        yield "wipe", "preserve and wipe contradict each other"


def normalise_partition(part, device, where, refusals):
    if not isinstance(part, dict):
        refusals.add("each partition must be a mapping", disk=device, field=where)
        return None
    display = part.get("name") or part.get("fs_label") or part.get("uuid") or where

    def refuse(problems):
        found = False
        for key, msg in problems:
            refusals.add(msg, disk=device, partition=display, field=f"{where}.{key}")
            found = True
        return found

    if refuse(_type_problems(part)):
        return None
    norm = {
        "where": where,
        "display": display,
        "name": part.get("name"),
        "uuid": _lower(part.get("uuid")),
        "fs_label": part.get("fs_label"),
        "size": None,
        "size_text": part.get("size"),
        "fstype": part.get("fstype"),
        "mount": part.get("mount"),
        "mount_options": part.get("mount_options"),
        "mount_state": part.get("mount_state"),
        "preserve": bool(part.get("preserve")),
        "wipe": bool(part.get("wipe")),
    }
    refuse(_value_problems(norm, part))
    if norm["mount"] is not None:
        norm["mount"] = "/" + norm["mount"].strip("/") if norm["mount"] != "/" else "/"
    return norm


# ---------------------------------------------------------------------------
# Planning


def identify(spec, disk, claimed, refusals):
    """Find the existing partition a spec entry means; None when it does not exist."""
    parts = disk["partitions"]
    how = None
    if spec["uuid"]:
        found = [p for p in parts if spec["uuid"] in (_lower(p["partuuid"]), _lower(p["uuid"]))]
        how = f"uuid {spec['uuid']}"
    else:
        found = []
        if spec["fs_label"]:
            found = [p for p in parts if p["label"] == spec["fs_label"]]
            how = f"fs_label {spec['fs_label']}"
        if not found and spec["name"]:
            found = [p for p in parts if p["name"] == spec["name"]]
            how = f"name {spec['name']}"
    if len(found) > 1:
        refusals.add(
            f"{how} matches {len(found)} partitions ("
            + ", ".join(p["device"] for p in found)
            + "); give a uuid to say which",
            disk=disk["device"],
            partition=spec["display"],
            field=spec["where"],
        )
        return None, how
    if found:
        part = found[0]
        if part["device"] in claimed:
            refusals.add(
                f"{part['device']} is already claimed by {claimed[part['device']]}",
                disk=disk["device"],
                partition=spec["display"],
                field=spec["where"],
            )
            return None, how
        claimed[part["device"]] = spec["display"]
        return part, how
    return None, how


def mkfs_opts(fstype, label):
    if label and fstype in MKFS_LABEL:
        return f"{MKFS_LABEL[fstype][0]} {label}"
    return None


def _keep_refusal(spec, part, wanted):
    """(message, field) when this partition may never be formatted to `wanted`:
    preserve: true, NTFS asked for, or Windows / a protected type on it."""
    current = part["fstype"]
    current_text = current or "no filesystem"
    fstype_field = f"{spec['where']}.fstype"
    if spec["preserve"]:
        return (
            f"{part['device']} holds {current_text}, spec says {wanted} with preserve: true; "
            "a preserved partition is never formatted",
            fstype_field,
        )
    if wanted == "ntfs":
        return (
            f"{part['device']} holds {current_text}, spec says ntfs; dlsetup never "
            "creates NTFS (Windows does)",
            fstype_field,
        )
    protected = None
    if current in WINDOWS_FSTYPES:
        protected = f"it holds {current} (Windows)"
    elif part["type"] in PROTECTED_TYPES:
        protected = f"it is a {PROTECTED_TYPES[part['type']]} partition"
    if protected:
        return (
            f"{part['device']} holds {current_text}, spec says {wanted}; {protected} and is "
            "never formatted, not even with wipe: true and disk_layout_safe_mode: false",
            fstype_field,
        )
    return None


def _wipe_refusal(spec, part, wanted, safe_mode):
    """(message, field) when a filesystem would have to be wiped and may not be:
    wipe not asked for, safe mode on, or the partition is mounted."""
    current = part["fstype"]
    if not spec["wipe"] or safe_mode:
        why = (
            "disk_layout_safe_mode is on"
            if spec["wipe"]
            else "set wipe: true on this partition and disk_layout_safe_mode: false to reformat it"
        )
        return (
            f"{part['device']} holds {current}, spec says {wanted}; refusing to reformat ({why})",
            f"{spec['where']}.fstype",
        )
    if part["mountpoints"]:
        return (
            f"{part['device']} holds {current} and is mounted at "
            f"{', '.join(part['mountpoints'])}; unmount it before wiping",
            f"{spec['where']}.wipe",
        )
    return None


def _size_note(spec, part, disk):
    """A size that differs is reported, never acted on: partitions are not resized."""
    if spec["size"] and spec["size"][0] == "bytes" and spec["size"][1] != part["size_bytes"]:
        return (
            f"{disk['device']} '{spec['display']}': size is {human(part['size_bytes'])}, "
            f"spec says {human(spec['size'][1])}; partitions are never resized"
        )
    return None


def _label_note(spec, part, disk):
    """A label that differs on the wanted filesystem is reported, never changed."""
    if spec["fs_label"] and part["label"] != spec["fs_label"] and spec["uuid"] is None:
        return (
            f"{disk['device']} '{spec['display']}': filesystem label is "
            f"'{part['label']}', spec says '{spec['fs_label']}'; labels are not changed"
        )
    return None


def plan_existing(spec, part, disk, *, safe_mode, refusals, notes, actions):
    """Decide about a partition that exists. Returns the UUID to mount by (None: pending)."""
    ref = {"disk": disk["device"], "partition": spec["display"]}
    if not part["kernel_knows"]:
        refusals.add(
            f"{part['device']} is in the partition table but the kernel does not know it "
            f"(run: partx -u {disk['path']})",
            field=spec["where"],
            **ref,
        )
        return None
    size_note = _size_note(spec, part, disk)
    if size_note:
        notes.append(size_note)
    if part["ambivalent"]:
        refusals.add(
            f"{part['device']} carries more than one filesystem signature "
            "(see wipefs -n); refusing to guess",
            field=spec["where"],
            **ref,
        )
        return None
    wanted = spec["fstype"]
    if wanted is None:
        return None
    if part["fstype"] == wanted:
        label_note = _label_note(spec, part, disk)
        if label_note:
            notes.append(label_note)
        return part["uuid"]
    refusal = _keep_refusal(spec, part, wanted)
    if refusal is None and part["fstype"] is not None:
        refusal = _wipe_refusal(spec, part, wanted, safe_mode)
    if refusal is not None:
        refusals.add(refusal[0], field=refusal[1], **ref)
        return None
    if too_small(spec, part["size_bytes"], disk, refusals):
        return None
    exists_fs = part["fstype"] is not None
    actions.append(
        mkfs_action(
            disk,
            part["device"],
            spec,
            exists=True,
            force=exists_fs,
            reason=f"wipe: {part['fstype']} -> {wanted}"
            if exists_fs
            else "partition has no filesystem",
        )
    )
    return None


def too_small(spec, size_bytes, disk, refusals):
    """Refuse a mkfs that mkfs itself would refuse, before anything is changed."""
    minimum = MKFS_MIN_BYTES.get(spec["fstype"])
    if minimum and size_bytes is not None and size_bytes < minimum:
        refusals.add(
            f"{human(size_bytes)} is too small for {spec['fstype']} (mkfs needs at "
            f"least {human(minimum)})",
            disk=disk["device"],
            partition=spec["display"],
            field=f"{spec['where']}.size",
        )
        return True
    return False


def mkfs_action(disk, device, spec, *, exists, force, reason):
    return {
        "action": "mkfs",
        "disk": disk["device"],
        "device": device,
        "partition": spec["display"],
        "fstype": spec["fstype"],
        "label": spec["fs_label"],
        "opts": mkfs_opts(spec["fstype"], spec["fs_label"]),
        "force": force,
        "exists": exists,
        "reason": reason,
    }


def place_partitions(disk, to_create, refusals, actions, table):
    """Lay out missing partitions in the free space, in spec order."""
    sector = disk["sector_size"]
    extents = [dict(e) for e in disk["free"]]
    total_free = sum(e["sectors"] for e in extents) * sector
    used_numbers = {p["number"] for p in disk["partitions"]}
    align = max(MIB // sector, 1)
    created = []
    for spec in to_create:
        ref = {"disk": disk["device"], "partition": spec["display"]}
        kind, value = spec["size"]
        if kind == "percent" and value >= 100:
            candidates = [e for e in extents if e["sectors"] >= align]
            extent = max(candidates, key=lambda e: e["sectors"]) if candidates else None
            sectors = extent["sectors"] if extent else 0
            wanted = "the rest of the free space"
        else:
            nbytes = value if kind == "bytes" else int(total_free * value / 100) // MIB * MIB
            sectors = nbytes // sector
            extent = next((e for e in extents if e["sectors"] >= sectors and sectors), None)
            wanted = human(nbytes) + (
                f" ({spec['size_text']} of {human(total_free)} free)" if kind == "percent" else ""
            )
        if extent is None or sectors < align:
            largest = max((e["sectors"] for e in extents), default=0) * sector
            refusals.add(
                f"does not fit: needs {wanted}, the largest free extent left is "
                f"{human(largest)} (disk has {human(total_free)} free in all)",
                field=f"{spec['where']}.size",
                **ref,
            )
            continue
        number = next(n for n in range(1, GPT_MAX_PARTITIONS + 2) if n not in used_numbers)
        if number > GPT_MAX_PARTITIONS:
            refusals.add("the partition table has no free entry", field=spec["where"], **ref)
            continue
        used_numbers.add(number)
        start = extent["start"]
        end = start + sectors - 1
        extent["start"] += sectors
        extent["sectors"] -= sectors
        esp = spec["fstype"] == "vfat" and spec["mount"] in ("/boot/efi", "/efi")
        flags = ["esp"] if esp else []
        device = partition_device(disk["path"], number)
        actions.append(
            {
                "action": "create_partition",
                "disk": disk["device"],
                "device": disk["path"],
                "table": table,
                "number": number,
                "name": spec["name"],
                "start": start,
                "end": end,
                "size_bytes": sectors * sector,
                "flags": flags,
                "partition_device": device,
            }
        )
        spec["new_size"] = sectors * sector
        created.append((spec, device))
    return created


def mount_entry(spec, device, uuid, *, prefix, data_nofail, notes, disk):
    path = spec["mount"]
    system = path in {"/", "/boot"} or path.startswith("/boot/")
    opts = spec["mount_options"] or ("defaults" if system else "defaults,nofail")
    if not system and data_nofail and "nofail" not in opts.split(","):
        opts += ",nofail"
        notes.append(
            f"{disk['device']} '{spec['display']}': added nofail to the options of "
            f"{path} so a missing disk never blocks boot"
        )
    target = (prefix.rstrip("/") + path).rstrip("/") or "/" if prefix else path
    state = "present" if path == "/" else (spec["mount_state"] or "mounted")
    fstype = spec["fstype"]
    return {
        "disk": disk["device"],
        "partition": spec["display"],
        "device": device,
        "uuid": uuid,
        "spec_path": path,
        "path": target,
        "fstype": fstype,
        "opts": opts,
        "state": state,
        "dump": 0,
        "passno": 1 if path == "/" else (2 if fstype in FSCK_FSTYPES else 0),
    }


def _depth(path):
    return len([c for c in path.split("/") if c])


def check_mount(entry, fstab, mounts, refusals, actions):
    """Compare a desired mount with fstab and the mount table; record what changes."""
    changes = []
    uuid = entry["uuid"]
    current = fstab.get(entry["path"])
    wanted = {
        "src": f"UUID={uuid}" if uuid else None,
        "fstype": entry["fstype"],
        "opts": entry["opts"],
        "dump": str(entry["dump"]),
        "passno": str(entry["passno"]),
    }
    if uuid is None or current != wanted:
        changes.append("fstab")
    mounted_here = [m for m in mounts if m["target"] == entry["path"]]
    ours = [
        m
        for m in mounted_here
        if os.path.realpath(m["source"]) == entry["device"] or m["source"] == entry["device"]
    ]
    if entry["state"] == "mounted":
        if mounted_here and not ours:
            refusals.add(
                f"{entry['path']} already has {mounted_here[-1]['source']} mounted on it, "
                f"not {entry['device']}; unmount it first",
                disk=entry["disk"],
                partition=entry["partition"],
                field="mount",
            )
            return
        if not ours:
            changes.append("mount")
    entry["pending"] = uuid is None
    if changes:
        actions.append({"action": "mount", **entry, "changes": changes})


def _disk_field(sd, key):
    return f"disk_layout_disks[{sd['index']}].{key}"


def _refuse_whole_disk(sd, disk, seen_paths, refusals):
    """Why this spec disk cannot be planned at all (missing, listed twice, not a
    whole disk), recorded as a refusal; False when it can."""
    dev = sd["device"]
    if not disk["exists"]:
        why = f"disk {dev} does not exist"
    elif disk["path"] in seen_paths:
        why = f"{dev} is the same disk as {seen_paths[disk['path']]} ({disk['path']})"
    else:
        seen_paths[disk["path"]] = dev
        if disk["kind"] in ("disk", "loop"):
            return False
        why = f"{dev} ({disk['path']}) is a {disk['kind'] or 'unknown device'}, not a whole disk"
    refusals.add(why, disk=dev, field=_disk_field(sd, "device"))
    return True


def _windows_partitions(dev, disk):
    return [
        {
            "disk": dev,
            "device": part["device"],
            "name": part["name"],
            "why": part["fstype"] if part["type"] != GPT_MSR else "Microsoft reserved",
        }
        for part in disk["partitions"]
        if part["fstype"] in WINDOWS_FSTYPES or part["type"] == GPT_MSR
    ]


def _table_decision(sd, disk, refusals):
    """(usable, table to create or None): a table is written only to an empty disk."""
    dev = sd["device"]
    why = None
    if disk["table"] is None:
        if disk["signature"]:
            why = (
                f"{dev} has no partition table but holds {disk['signature']} on the whole "
                "disk; dlsetup writes a table only to a disk with nothing on it"
            )
        elif sd["partitions"] and sd["table"] is None:
            why = f"{dev} has no partition table; set table: gpt to create one"
    elif sd["table"] and disk["table"] != sd["table"]:
        why = (
            f"{dev} has a {disk['table']} partition table, spec says table: {sd['table']}; "
            "a table is written only to a disk with none"
        )
    if why:
        refusals.add(why, disk=dev, field=_disk_field(sd, "table"))
        return False, None
    return True, (sd["table"] or None) if disk["table"] is None else None


def _refuse_missing(spec, dev, how, refusals):
    """A spec partition not found on the disk: a refusal when it cannot be
    created; True when it can (name and size given, not NTFS, not preserve)."""
    ref = {"disk": dev, "partition": spec["display"]}
    where = spec["where"]
    if spec["uuid"]:
        why, field = (
            f"no partition on {dev} has uuid {spec['uuid']} (a uuid names an existing partition)",
            f"{where}.uuid",
        )
    elif spec["preserve"]:
        why, field = (
            f"partition '{spec['display']}' (preserve: true) was not found on {dev} by {how}",
            where,
        )
    elif spec["fstype"] == "ntfs":
        why, field = (
            f"partition '{spec['display']}' is missing and dlsetup never "
            "creates NTFS (Windows does)",
            f"{where}.fstype",
        )
    elif not spec["name"]:
        why, field = (
            f"partition '{spec['display']}' is missing; a name is needed to create it",
            f"{where}.name",
        )
    elif re.search(r"[\"':\\]", spec["name"]):
        why, field = (
            f"partition '{spec['display']}' is missing and its name cannot be given to "
            "parted (no quotes, colons or backslashes in a name dlsetup creates)",
            f"{where}.name",
        )
    elif spec["size"] is None and not spec.get("size_invalid"):
        why, field = (
            f"partition '{spec['display']}' is missing; a size is needed to create it",
            f"{where}.size",
        )
    else:
        return spec["size"] is not None
    refusals.add(why, field=field, **ref)
    return False


def _unmanaged(dev, disk, claimed):
    keys = ("number", "name", "fstype", "uuid", "label", "partuuid", "size_bytes")
    return [
        {"disk": dev, "device": part["device"], **{k: part[k] for k in keys}}
        for part in disk["partitions"]
        if part["device"] not in claimed
    ]


class _Plan:
    """What build_plan accumulates over the spec's disks, in action order."""

    def __init__(self, safe_mode, mount_prefix, data_nofail):
        self.safe_mode = safe_mode
        self.mount_prefix = mount_prefix
        self.data_nofail = data_nofail
        self.refusals = Refusals()
        self.notes = []
        self.disk_actions = []
        self.partition_actions = []
        self.mkfs_actions = []
        self.mount_entries = []
        self.unmanaged = []
        self.described = []
        self.windows = []

    def existing_and_new(self, sd, disk):
        """Match each spec partition to the disk: plan the found ones, return
        (the ones to create, {spec where: uuid of the found filesystem}, claimed)."""
        claimed, to_create, uuids = {}, [], {}
        for spec in sd["partitions"]:
            part, how = identify(spec, disk, claimed, self.refusals)
            if part is not None:
                spec["found"] = part
                uuids[spec["where"]] = plan_existing(
                    spec,
                    part,
                    disk,
                    safe_mode=self.safe_mode,
                    refusals=self.refusals,
                    notes=self.notes,
                    actions=self.mkfs_actions,
                )
            elif _refuse_missing(spec, sd["device"], how, self.refusals):
                to_create.append(spec)
        return to_create, uuids, claimed

    def create(self, sd, disk, to_create, new_table):
        dev = sd["device"]
        table = disk["table"] or new_table
        if to_create and table != "gpt":
            self.refusals.add(
                f"{dev} has a {table} partition table; dlsetup creates partitions only "
                "on GPT disks",
                disk=dev,
                field=_disk_field(sd, "table"),
            )
            to_create = []
        if new_table:
            self.disk_actions.append(
                {
                    "action": "create_table",
                    "disk": dev,
                    "device": disk["path"],
                    "table": new_table,
                    "with_partitions": bool(to_create),
                }
            )
        placed = place_partitions(disk, to_create, self.refusals, self.partition_actions, table)
        for spec, device in placed:
            spec["new_device"] = device
            if spec["fstype"] and not too_small(spec, spec["new_size"], disk, self.refusals):
                self.mkfs_actions.append(
                    mkfs_action(
                        disk, device, spec, exists=False, force=False, reason="new partition"
                    )
                )

    def mounts_of(self, sd, disk, uuids):
        for spec in sd["partitions"]:
            if not spec["mount"] or not spec["fstype"]:
                continue
            if "found" in spec:
                device, uuid = spec["found"]["device"], uuids.get(spec["where"])
            elif "new_device" in spec:
                device, uuid = spec["new_device"], None
            else:
                continue
            self.mount_entries.append(
                mount_entry(
                    spec,
                    device,
                    uuid,
                    prefix=self.mount_prefix,
                    data_nofail=self.data_nofail,
                    notes=self.notes,
                    disk=disk,
                )
            )

    def disk(self, sd, facts, seen_paths):
        dev = sd["device"]
        disk = read_disk(facts.get(dev) or {"device": dev})
        disk["device"] = dev
        self.described.append(disk)
        if _refuse_whole_disk(sd, disk, seen_paths, self.refusals):
            return
        self.windows.extend(_windows_partitions(dev, disk))
        usable, new_table = _table_decision(sd, disk, self.refusals)
        if not usable:
            return
        to_create, uuids, claimed = self.existing_and_new(sd, disk)
        self.unmanaged.extend(_unmanaged(dev, disk, claimed))
        self.create(sd, disk, to_create, new_table)
        self.mounts_of(sd, disk, uuids)

    def mount_actions(self, fstab, mounts):
        self.mount_entries.sort(key=lambda m: (_depth(m["spec_path"]), m["spec_path"]))
        actions = []
        for entry in self.mount_entries:
            check_mount(entry, fstab, mounts, self.refusals, actions)
        by_uuid = {}
        for entry in self.mount_entries:
            if entry["uuid"]:
                by_uuid.setdefault(entry["uuid"], []).append(entry["path"])
        for uuid, paths in by_uuid.items():
            if len(paths) > 1:
                self.refusals.add(
                    f"UUID {uuid} would be mounted at {', '.join(paths)}; filesystem UUIDs "
                    "must be unique to mount by UUID",
                    field="mount",
                )
        return actions

    def result(self, mount_actions):
        actions = self.disk_actions + self.partition_actions + self.mkfs_actions + mount_actions
        plan = {
            "safe_mode": self.safe_mode,
            "actions": actions,
            "mounts": self.mount_entries,
            "unmanaged": self.unmanaged,
            "refusals": self.refusals.items,
            "notes": self.notes,
            "disks": [describe(d) for d in self.described],
            "windows": {"present": bool(self.windows), "partitions": self.windows},
            "summary": {
                kind: sum(1 for a in actions if a["action"] == kind)
                for kind in ("create_table", "create_partition", "mkfs", "mount")
            },
        }
        plan["report"] = render_report(plan)
        return plan


def build_plan(
    disks,
    facts,
    *,
    safe_mode=True,
    fstab_text="",
    mounts_text="",
    mount_prefix="",
    data_nofail=True,
):
    """The plan for a disk spec, from recorded facts. Pure: reads nothing, changes nothing.

    disks      the spec (disk_layout_disks)
    facts      {spec device: gather_disk_facts(...) output}
    fstab_text the fstab's content; mounts_text: /proc/self/mounts' content

    Phases, per disk of the spec: the whole disk (exists, once, a disk), Windows
    found, the partition table, existing partitions matched and planned, new
    ones placed and formatted, mounts; then the mounts checked against fstab
    and /proc/self/mounts for all disks together.
    """
    plan = _Plan(safe_mode, mount_prefix, data_nofail)
    seen_paths = {}
    for sd in normalise_spec(disks, plan.refusals):
        plan.disk(sd, facts, seen_paths)
    return plan.result(plan.mount_actions(parse_fstab(fstab_text), parse_mounts(mounts_text)))


def describe(disk):
    keep = (
        "number",
        "device",
        "name",
        "partuuid",
        "type",
        "start",
        "end",
        "size_bytes",
        "fstype",
        "uuid",
        "label",
        "mountpoints",
    )
    return {
        "device": disk["device"],
        "path": disk["path"],
        "exists": disk["exists"],
        "kind": disk["kind"],
        "size_bytes": disk["size_bytes"],
        "sector_size": disk["sector_size"],
        "table": disk["table"],
        "ptuuid": disk["ptuuid"],
        "signature": disk["signature"],
        "partitions": [{k: p.get(k) for k in keep} for p in disk["partitions"]],
        "free": disk["free"],
    }


def _disk_lines(disk, unmanaged):
    if not disk["exists"]:
        return [f"{disk['device']}: not found"]
    alias = f" -> {disk['path']}" if disk["path"] != disk["device"] else ""
    lines = [
        f"{disk['device']}{alias}: {human(disk['size_bytes'])}, "
        f"table {disk['table'] or 'none'}, "
        f"{len(disk['partitions'])} partition(s), "
        f"{human(sum(e['sectors'] for e in disk['free']) * disk['sector_size'])} free"
    ]
    for p in disk["partitions"]:
        what = "unmanaged (not in the spec, left untouched)" if p["device"] in unmanaged else "keep"
        lines.append(
            f"  {p['device']:<16} #{p['number']:<3} {p['name'] or '-':<30} "
            f"{human(p['size_bytes']):>9}  {p['fstype'] or '-':<9} {what}"
        )
    return lines


def _action_line(a):
    if a["action"] == "create_table":
        return f"  create {a['table']} partition table on {a['device']}"
    if a["action"] == "create_partition":
        return (
            f"  create partition #{a['number']} '{a['name']}' on {a['device']}: "
            f"sectors {a['start']}-{a['end']} ({human(a['size_bytes'])})"
            + (f" flags {','.join(a['flags'])}" if a["flags"] else "")
        )
    if a["action"] == "mkfs":
        return (
            f"  format {a['device']} as {a['fstype']}"
            + (f" label {a['label']}" if a["label"] else "")
            + f" ({a['reason']})"
        )
    src = f"UUID={a['uuid']}" if a["uuid"] else f"UUID of new {a['fstype']} on {a['device']}"
    verb = "mount" if a["state"] == "mounted" else "record in fstab (not mounted now)"
    return f"  {verb} {src} at {a['path']} ({a['fstype']} {a['opts']}): {' + '.join(a['changes'])}"


def _refusal_where(r):
    """disk 'partition' [field]: what a refusal names, as far as it names it."""
    return " ".join(
        x
        for x in (
            r["disk"],
            f"'{r['partition']}'" if r["partition"] else None,
            f"[{r['field']}]" if r["field"] else None,
        )
        if x
    )


def _refusal_line(r):
    return f"REFUSED {_refusal_where(r)}: {r['msg']}"


def refusal_message(plan):
    """The module's failure message: every refusal of the plan on one line."""
    return "disk_layout refused the spec; nothing was changed. " + " | ".join(
        f"{_refusal_where(r)}: {r['msg']}" for r in plan["refusals"]
    )


def note_missing_tools(plan, tools):
    """Set plan["tools"] ({tool: path or None}) and note the tools its actions need
    that are not installed yet (check mode skips what cannot run yet)."""
    plan["tools"] = tools
    missing = sorted({TOOL_FOR.get(a["action"], "") for a in plan["actions"]} - {""})
    missing = [t for t in missing if not tools.get(t)]
    if missing:
        plan["notes"].append(
            f"not installed yet: {', '.join(missing)} (the role installs them "
            "before it acts, unless disk_layout_install_packages is false)"
        )
        plan["report"] += f"\nnote: {plan['notes'][-1]}"


def render_report(plan):
    lines = [f"disk_layout plan (safe mode {'on' if plan['safe_mode'] else 'OFF'})"]
    actions = plan["actions"]
    unmanaged = {u["device"] for u in plan["unmanaged"]}
    for disk in plan["disks"]:
        lines.extend(_disk_lines(disk, unmanaged))
    if actions:
        lines.append("actions:")
    lines.extend(_action_line(a) for a in actions)
    if not actions and not plan["refusals"]:
        lines.append("nothing to do: the disks match the spec")
    lines.extend(f"note: {note}" for note in plan["notes"])
    if plan["windows"]["present"]:
        lines.append(
            "Windows found: "
            + ", ".join(f"{w['device']} ({w['why']})" for w in plan["windows"]["partitions"])
        )
    lines.extend(_refusal_line(r) for r in plan["refusals"])
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Reading the target (the only impure part)


def gather_disk_facts(device, run, sfdisk=True):
    """Record what lsblk, blkid and sfdisk say about one disk.

    run(argv) -> (rc, stdout, stderr). The result is what build_plan() reads and
    what the tests record under tests/fixtures/disk_layout/.
    """
    path = os.path.realpath(device)
    facts = {"device": device, "path": path, "exists": os.path.exists(path)}
    if not facts["exists"]:
        return facts
    rc, out, err = run(["lsblk", "--json", "-b", "-O", path])
    facts["lsblk"] = json.loads(out) if rc == 0 and out.strip() else None
    if rc != 0:
        facts["lsblk_error"] = err.strip()
    rc, out, err = run(["blkid", "-p", "-o", "export", path])
    facts["blkid_disk"] = out if rc == 0 else ""
    if sfdisk:
        rc, out, err = run(["sfdisk", "--json", path])
        facts["sfdisk"] = json.loads(out) if rc == 0 and out.strip() else None
        if rc != 0:
            facts["sfdisk_error"] = err.strip()
    nodes = set()
    for top in (facts["lsblk"] or {}).get("blockdevices") or []:
        nodes.update(c["path"] for c in top.get("children") or [] if c.get("type") == "part")
    for part in ((facts.get("sfdisk") or {}).get("partitiontable") or {}).get("partitions") or []:
        if os.path.exists(part["node"]):
            nodes.add(part["node"])
    facts["blkid"] = {}
    for node in sorted(nodes):
        rc, out, err = run(["blkid", "-p", "-o", "export", node])
        facts["blkid"][node] = {"rc": rc, "out": out}
    return facts
