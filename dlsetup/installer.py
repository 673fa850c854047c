"""`dlsetup installer-config`: the storage part of an OS installer's answers.

From a host's ``disk_layout_disks`` (read on this machine from the inventory,
never from the host) it renders what an OS installer needs to reinstall Linux
into the partition mounted at ``/`` (the *root*) and leave every other
partition as it is:

* ``--format autoinstall`` (Ubuntu 20.04+, subiquity): the ``storage`` section
  of an autoinstall ``user-data``, a curtin action list. Every disk and every
  partition is ``preserve: true``; only the root's filesystem is made anew.
  curtin checks each preserved partition (its number, size and flag) against
  the disk and stops the install when one differs; the actions are ordered so
  that every check comes before the one format.
* ``--format preseed`` (Debian's installer): partman cannot be told to keep some
  partitions and reformat one -- preseeded partitioning only "uses the largest
  free space" or "the whole disk". The preseed therefore makes the root's space
  free itself (``partman/early_command``: check that every preserved partition
  is there, then delete the root partition, found by its GPT name) and lets a
  recipe put a new root into that space, reusing the existing EFI partition.
  The GPT name is given back to the new root in ``preseed/late_command``.

Exact partition numbers and sizes come from ``--table DEVICE=FILE``
(``sfdisk --json DEVICE`` run on the box); without it they are taken from the
spec (position in the list, ``size``), and a ``%`` size cannot be turned into
the byte count curtin checks.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import jinja2

from dlsetup.exitcodes import ExitCode
from dlsetup.inventory import (
    InventoryError,
    add_inventory_argument,
    resolve_sources,
    strict_inventory,
)

FORMATS = ("autoinstall", "preseed")

GPT_ESP = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
GPT_MSR = "e3c9e316-0b5c-4db8-817d-f92df00215ae"

# disk_layout fstype -> curtin's format action fstype.
_CURTIN_FSTYPE = {"vfat": "fat32", "ntfs": "ntfs", "ext4": "ext4", "ext3": "ext3",
                  "ext2": "ext2", "xfs": "xfs", "btrfs": "btrfs"}  # fmt: skip
# Filesystems the Debian installer can make the new root with.
_PARTMAN_ROOT_FSTYPES = {"ext4", "ext3", "ext2", "xfs", "btrfs"}
# /dev/disk/by-id prefixes: what follows is the serial udev made the link from.
_BY_ID_BUSES = ("nvme-eui.", "nvme-", "ata-", "scsi-", "usb-", "mmc-", "virtio-", "ieee1394-")


class InstallerConfigError(ValueError):
    """Bad input for installer-config: exit 2, naming the field."""


@dataclass
class Partition:
    """One partition as the installer must treat it."""

    display: str
    name: str | None
    number: int
    size_bytes: int
    fstype: str | None
    mount: str | None
    mount_options: str | None
    fs_label: str | None
    root: bool = False
    esp: bool = False
    msr: bool = False
    in_spec: bool = True
    spec_preserve: bool = False

    @property
    def flag(self) -> str | None:
        if self.esp:
            return "boot"
        if self.msr:
            return "msftres"
        return None

    @property
    def curtin_fstype(self) -> str | None:
        return _CURTIN_FSTYPE.get(self.fstype or "")


@dataclass
class Disk:
    device: str
    key: str
    value: str
    partitions: list[Partition] = field(default_factory=list)
    table_from: str = "spec"
    missing: list[str] = field(default_factory=list)

    @property
    def holds_root(self) -> bool:
        return any(p.root for p in self.partitions)


# ----------------------------------------------------------------- inputs


def _plan_module() -> ModuleType:
    """The role's planner, for the same spec checks and size parsing the role uses."""
    from ansible_collections.dlsetup.box.plugins.module_utils import disk_plan  # noqa: PLC0415

    return disk_plan


def host_vars(host: str, explicit: list[str] | None, cwd: Path | None = None) -> dict[str, Any]:
    """The host's variables from the inventory, templated, read on this machine only."""
    if not host or host.strip() != host:
        raise InstallerConfigError("--host: expected one inventory host name")
    sources = resolve_sources(explicit, cwd)
    if not sources:
        raise InventoryError(
            "no inventory found (-i, ./inventory/, or ~/.config/dlsetup/inventory): "
            "installer-config reads disk_layout_disks from the host's inventory variables"
        )
    from ansible.errors import AnsibleError  # noqa: PLC0415  (heavy import)
    from ansible.parsing.dataloader import DataLoader  # noqa: PLC0415
    from ansible.template import Templar  # noqa: PLC0415
    from ansible.vars.manager import VariableManager  # noqa: PLC0415

    try:
        loader = DataLoader()
        inv = strict_inventory(sources, loader)
        found = inv.get_host(host)
        if found is None:
            raise InventoryError(
                f"--host '{host}' is not a host in {', '.join(sources)} "
                "(installer-config needs one inventory host, not a pattern or an address)"
            )
        variables = VariableManager(loader=loader, inventory=inv).get_vars(host=found)
        templar = Templar(loader=loader, variables=variables)
        disks = variables.get("disk_layout_disks")
        out: dict[str, Any] = {"disk_layout_disks": templar.template(disks)}
    except AnsibleError as exc:
        raise InventoryError(f"inventory could not be read: {exc.message}") from exc
    # Plain Python data from here on (Ansible 2.19 wraps templated values).
    return dict(json.loads(json.dumps(out, default=str)))


def load_tables(values: list[str] | None) -> dict[str, dict[str, Any]]:
    """``--table DEVICE=FILE`` -> {device: sfdisk partitiontable}."""
    tables: dict[str, dict[str, Any]] = {}
    for raw in values or []:
        device, sep, path = raw.partition("=")
        if not sep or not device.startswith("/") or not path:
            raise InstallerConfigError(
                f"--table {raw}: expected DEVICE=FILE, the disk as disk_layout_disks names it "
                "and the output of `sfdisk --json DEVICE` on the box"
            )
        try:
            doc = json.loads(Path(path).expanduser().read_text())
            table = doc["partitiontable"]
            if table.get("label") != "gpt":
                raise InstallerConfigError(
                    f"--table {raw}: the disk's table is '{table.get('label')}', not gpt: "
                    "installer-config handles GPT disks only"
                )
            tables[device] = table
        except OSError as exc:
            raise InstallerConfigError(f"--table {raw}: cannot read {path}: {exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise InstallerConfigError(
                f"--table {raw}: {path} is not `sfdisk --json` output ({exc})"
            ) from exc
    return tables


def disk_match(device: str) -> tuple[str, str]:
    """How curtin finds the disk: serial or wwn from a by-id path, else the path."""
    if device.startswith("/dev/disk/by-id/"):
        base = device.rsplit("/", 1)[1]
        if base.startswith("wwn-"):
            return "wwn", base[len("wwn-") :]
        for bus in _BY_ID_BUSES:
            if base.startswith(bus) and len(base) > len(bus):
                return "serial", base[len(bus) :]
    return "path", device


# ----------------------------------------------------------------- the layout


def build_layout(disks_spec: Any, tables: dict[str, dict[str, Any]] | None = None) -> list[Disk]:
    """The disks as the installer must treat them; InstallerConfigError on bad input."""
    tables = tables or {}
    if not disks_spec:
        raise InstallerConfigError(
            "disk_layout_disks is not set for this host (or is empty): installer-config "
            "renders the installer's storage answers from it"
        )
    plan = _plan_module()
    refusals = plan.Refusals()
    normalised = plan.normalise_spec(disks_spec, refusals)
    if refusals.items:
        first = refusals.items[0]
        where = first.get("field") or "disk_layout_disks"
        raise InstallerConfigError(f"{where}: {first['msg']}")
    unknown = sorted(set(tables) - {d["device"] for d in normalised})
    if unknown:
        raise InstallerConfigError(
            f"--table {unknown[0]}: not a device of disk_layout_disks "
            f"({', '.join(d['device'] for d in normalised)})"
        )
    roots = [(d, p) for d in normalised for p in d["partitions"] if p["mount"] == "/"]
    if not roots:
        raise InstallerConfigError(
            "disk_layout_disks: no partition has mount: / -- the installer needs to know "
            "which partition is the Linux root it reinstalls into"
        )
    if len(roots) > 1:
        raise InstallerConfigError("disk_layout_disks: more than one partition has mount: /")
    root_spec = roots[0][1]
    if root_spec["fstype"] not in _PARTMAN_ROOT_FSTYPES:
        raise InstallerConfigError(
            f"{root_spec['where']}.fstype: the root needs a Linux filesystem "
            f"({', '.join(sorted(_PARTMAN_ROOT_FSTYPES))}), not {root_spec['fstype']}"
        )
    layout: list[Disk] = []
    for d in normalised:
        key, value = disk_match(d["device"])
        disk = Disk(device=d["device"], key=key, value=value)
        table = tables.get(d["device"])
        if table is not None:
            _from_table(disk, d["partitions"], table)
        else:
            _from_spec(disk, d["partitions"])
        layout.append(disk)
    return layout


def _mount_options(mount: str | None, options: str | None) -> str | None:
    """As the role writes them: data mounts get nofail, so a missing disk never blocks boot."""
    if mount is None or mount == "/" or mount.startswith("/boot"):
        return options
    opts = (options or "defaults").split(",")
    return ",".join(opts if "nofail" in opts else [*opts, "nofail"])


def _partition(spec: dict[str, Any], number: int, size: int) -> Partition:
    return Partition(
        display=spec["display"],
        name=spec["name"],
        number=number,
        size_bytes=size,
        fstype=spec["fstype"],
        mount=spec["mount"],
        mount_options=_mount_options(spec["mount"], spec["mount_options"]),
        fs_label=spec["fs_label"],
        root=spec["mount"] == "/",
        esp=spec["mount"] == "/boot/efi" or (spec["fstype"] == "vfat" and spec["name"] == "EFI"),
        msr=(spec["name"] or "").lower() == "microsoft reserved partition",
        spec_preserve=spec["preserve"],
    )


def _from_spec(disk: Disk, parts: list[dict[str, Any]]) -> None:
    """Numbers from the spec's order, sizes from its `size`: exact ones only."""
    for index, spec in enumerate(parts):
        size = spec["size"]
        if size is None or size[0] != "bytes":
            what = "no size" if size is None else f"size '{spec['size_text']}'"
            raise InstallerConfigError(
                f"{spec['where']}.size: {disk.device} '{spec['display']}' has {what}; the "
                "installer checks a kept partition's exact size in bytes. Run "
                f"`sudo sfdisk --json {disk.device} > disk.json` on the box and pass "
                f"--table {disk.device}=disk.json"
            )
        disk.partitions.append(_partition(spec, index + 1, int(size[1])))


def _from_table(disk: Disk, parts: list[dict[str, Any]], table: dict[str, Any]) -> None:
    """Numbers and sizes from the disk's real table; partitions the spec does not name kept."""
    disk.table_from = "sfdisk"
    sector = int(table.get("sectorsize", 512))
    found: list[dict[str, Any]] = []
    for entry in table.get("partitions", []):
        node = str(entry.get("node", ""))
        digits = len(node) - len(node.rstrip("0123456789"))
        if not digits:
            raise InstallerConfigError(f"--table {disk.device}: partition node '{node}'")
        found.append(
            {
                "number": int(node[-digits:]),
                "size": int(entry["size"]) * sector,
                "name": entry.get("name"),
                "partuuid": str(entry.get("uuid", "")).lower(),
                "type": str(entry.get("type", "")).lower(),
                "claimed": False,
            }
        )
    for spec in parts:
        match = None
        for f in found:
            if f["claimed"]:
                continue
            if (spec["uuid"] and spec["uuid"] == f["partuuid"]) or (
                spec["name"] and spec["name"] == f["name"]
            ):
                match = f
                break
        if match is None:
            if spec["mount"] == "/" or spec["preserve"]:
                raise InstallerConfigError(
                    f"{spec['where']}: {disk.device} has no partition '{spec['display']}' in "
                    "the --table given (matched by GPT name or PARTUUID)"
                )
            # Not there yet: `dlsetup provision` creates it after the install.
            # (A partition known by its fs_label only cannot be told from the
            # table; if it is there, it is kept below as a partition found.)
            disk.missing.append(spec["display"])
            continue
        match["claimed"] = True
        part = _partition(spec, match["number"], match["size"])
        part.esp = part.esp or match["type"] == GPT_ESP
        part.msr = part.msr or match["type"] == GPT_MSR
        disk.partitions.append(part)
    for f in found:
        if not f["claimed"]:
            disk.partitions.append(
                Partition(
                    display=f["name"] or f"partition {f['number']}",
                    name=f["name"],
                    number=f["number"],
                    size_bytes=f["size"],
                    fstype=None,
                    mount=None,
                    mount_options=None,
                    fs_label=None,
                    esp=f["type"] == GPT_ESP,
                    msr=f["type"] == GPT_MSR,
                    in_spec=False,
                )
            )
    disk.partitions.sort(key=lambda p: p.number)


# ----------------------------------------------------------------- rendering


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("dlsetup", "templates/installer"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701  YAML and debconf text, not HTML
    )


def _yaml_str(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(value)


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def render(layout: list[Disk], fmt: str, host: str) -> str:
    if fmt not in FORMATS:
        raise InstallerConfigError(f"--format: '{fmt}' is not one of {', '.join(FORMATS)}")
    env = _environment()
    env.filters["yq"] = _yaml_str
    env.filters["shq"] = _sh_quote
    root_disk = next(d for d in layout if d.holds_root)
    root = next(p for p in root_disk.partitions if p.root)
    if fmt == "preseed" and not root.name:
        raise InstallerConfigError(
            f"the root partition '{root.display}' has no name: the preseed finds the "
            "partition to replace by its GPT name; give it one (name: linux-root)"
        )
    esp = next((p for d in layout for p in d.partitions if p.esp), None)
    mounts = sorted(
        (
            (f"disk{i}", p)
            for i, d in enumerate(layout)
            for p in d.partitions
            if p.mount and p.curtin_fstype
        ),
        key=lambda dp: (dp[1].mount != "/", (dp[1].mount or "").count("/"), dp[1].mount),
    )
    template = env.get_template(f"{fmt}.j2")
    return template.render(
        mounts=mounts,
        host=host,
        disks=layout,
        root_disk=root_disk,
        root=root,
        esp=esp,
        kept=[(d, p) for d in layout for p in d.partitions if not p.root],
        from_spec=[d.device for d in layout if d.table_from == "spec"],
    )


# ----------------------------------------------------------------- command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host", metavar="HOST", help="the inventory host whose disk_layout_disks to use"
    )
    add_inventory_argument(p)
    p.add_argument(
        "--format",
        default="autoinstall",
        metavar="FORMAT",
        help="autoinstall (Ubuntu's user-data storage section, the default) or "
        "preseed (Debian's installer)",
    )
    p.add_argument(
        "--table",
        action="append",
        metavar="DEVICE=FILE",
        help="the disk's real partition table: FILE is `sudo sfdisk --json DEVICE` run on "
        "the box (repeatable). Gives exact partition numbers and sizes, and keeps "
        "partitions the spec does not name. Without it they come from the spec.",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.epilog = (
        "examples:\n"
        "  ssh mybox sudo sfdisk --json /dev/disk/by-id/nvme-... > nvme.json\n"
        "  dlsetup installer-config --host mybox --table /dev/disk/by-id/nvme-...=nvme.json\n"
        "  dlsetup installer-config --host mybox --format preseed -o partman.cfg\n"
        "\nSee docs/reinstall.md for the whole reinstall."
    )


def run(args: argparse.Namespace) -> int:
    try:
        if not args.host:
            raise InstallerConfigError("--host: name the inventory host to render for")
        if args.format not in FORMATS:
            raise InstallerConfigError(
                f"--format: '{args.format}' is not one of {', '.join(FORMATS)}"
            )
        tables = load_tables(args.table)
        hv = host_vars(args.host, args.inventory)
        layout = build_layout(hv.get("disk_layout_disks"), tables)
        text = render(layout, args.format, args.host)
    except (InstallerConfigError, InventoryError) as exc:
        print(f"dlsetup installer-config: error: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    for disk in layout:
        if disk.table_from == "spec":
            print(
                f"note: {disk.device}: partition numbers and sizes come from the spec "
                "(its order and sizes); the installer stops if the disk differs. "
                f"--table {disk.device}=FILE makes them exact.",
                file=sys.stderr,
            )
        for name in disk.missing:
            print(
                f"note: {disk.device}: '{name}' is not in its --table (by GPT name or "
                "PARTUUID): if it is not on the disk yet, `dlsetup provision` creates it "
                "after the install; if it is, it is kept as a partition the spec does not name.",
                file=sys.stderr,
            )
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output} ({args.format})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return ExitCode.OK
