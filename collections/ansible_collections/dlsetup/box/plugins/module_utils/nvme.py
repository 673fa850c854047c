# Copyright: dlsetup contributors
# Apache-2.0
"""NVMe controllers: identity, firmware slots, SMART health and PCIe link, read and judged.

Pure functions of recorded text (``nvme list``, ``smart-log``, ``fw-log``,
``id-ctrl`` in nvme-cli 2.x JSON) and of a sysfs tree (``/sys/class/nvme``,
the PCI device behind each controller and the port above it), imported by the
module plugins/modules/nvme_report.py (Ansiballz ships this file with it) and
by tests/unit/test_nvme_parse.py. Standard library only.

The SMART critical-warning byte is decoded here and nowhere else: the report
carries the decoded names (``critical_warnings``) into the nvme.fact the role
writes, and the smoke test (dlsetup/gpucheck, which runs on the target without
this collection) reads those names from the fact.
"""

from __future__ import annotations

import json
import os
import re

# NVMe base specification, SMART / Health Information log, byte 0.
CRITICAL_WARNING_BITS = (
    (0x01, "available spare below threshold"),
    (0x02, "temperature outside its threshold"),
    (0x04, "reliability degraded by media or internal errors"),
    (0x08, "media placed in read-only mode"),
    (0x10, "volatile memory backup failed"),
    (0x20, "persistent memory region read-only"),
)

# GT/s -> PCIe generation (what lspci and board manuals call the link).
PCIE_GENERATION = {2.5: 1, 5.0: 2, 8.0: 3, 16.0: 4, 32.0: 5, 64.0: 6}

# nvme fw-commit actions this role runs (NVMe "Commit Action").
FW_ACTIONS = {
    0: "store the image in the slot; it is not activated",
    1: "store the image in the slot and activate it at the next reset",
    3: "store the image in the slot and activate it now, without a reset",
}


# ---------------------------------------------------------------- parsing


def _int(value):
    """An int from nvme-cli's JSON (int, float, numeric string); None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    match = re.match(r"\s*(-?\d+)", str(value))
    return int(match.group(1)) if match else None


def _load(text):
    """JSON from a command's output; None for empty or non-JSON text."""
    if not text or not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def parse_nvme_list(text):
    """`nvme list -o json` -> namespaces [{device, model, serial, firmware}].

    nvme-cli 2.x prints {"Devices": [{"NameSpace", "DevicePath", "GenericPath",
    "Firmware", "ModelNumber", "SerialNumber", ...}]}; with no drive it prints
    {"Devices": []} or nothing at all.
    """
    data = _load(text)
    devices = data.get("Devices") if isinstance(data, dict) else None
    found = []
    for dev in devices or []:
        if not isinstance(dev, dict):
            continue
        found.append(
            {
                "device": dev.get("DevicePath"),
                "model": (dev.get("ModelNumber") or "").strip() or None,
                "serial": (dev.get("SerialNumber") or "").strip() or None,
                "firmware": (dev.get("Firmware") or "").strip() or None,
            }
        )
    return found


def kelvin_to_celsius(kelvin):
    """SMART temperatures are Kelvin; 0 means not reported. nvme-cli prints K - 273."""
    value = _int(kelvin)
    if value is None or value <= 0:
        return None
    return value - 273


def parse_smart_log(text):
    """`nvme smart-log DEV -o json` -> the health fields dlsetup reports.

    critical_warning is an int, or with --verbose an object whose "value"
    (nvme-cli 2.x) or "Value" holds it. temperature is the composite
    temperature in Kelvin.
    """
    data = _load(text)
    if not isinstance(data, dict):
        return {}
    critical = data.get("critical_warning")
    if isinstance(critical, dict):
        critical = critical.get("value", critical.get("Value"))
    temperature = data.get("temperature", data.get("Temperature"))
    return {
        "critical_warning": _int(critical),
        "temperature_c": kelvin_to_celsius(temperature),
        "available_spare": _int(data.get("avail_spare")),
        "available_spare_threshold": _int(data.get("spare_thresh")),
        "percentage_used": _int(data.get("percent_used")),
        "media_errors": _int(data.get("media_errors")),
    }


def parse_fw_log(text, frmw=None):
    """`nvme fw-log DEV -o json` (+ id-ctrl's FRMW) -> the firmware slots.

    nvme-cli 2.x prints {"nvme0": {"Active Firmware Slot (afi)": 1,
    "Firmware Rev Slot 1": "<u64> (<revision>)", ...}}: AFI bits 2:0 name the
    running slot, bits 6:4 the slot activated at the next reset (0: none).
    FRMW (id-ctrl) bits 3:1 give the number of slots, bit 0 a read-only slot 1.
    """
    data = _load(text)
    body = None
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, dict) and any(str(k).startswith("Active") for k in value):
                body = value
                break
    frmw = _int(frmw)
    count = (frmw >> 1) & 0x7 if frmw is not None else None
    result = {
        "active": None,
        "next_reset": None,
        "count": count or None,
        "slot1_read_only": bool(frmw & 1) if frmw is not None else None,
        "slots": [],
    }
    if body is None:
        return result
    afi = None
    for key, value in body.items():
        if str(key).startswith("Active Firmware Slot"):
            afi = _int(value)
    if afi is not None:
        result["active"] = afi & 0x7 or None
        result["next_reset"] = (afi >> 4) & 0x7 or None
    for key, value in body.items():
        match = re.match(r"Firmware Rev Slot (\d+)", str(key))
        if not match:
            continue
        slot = int(match.group(1))
        rev = re.search(r"\(([^)]*)\)", str(value))
        revision = (rev.group(1) if rev else str(value)).strip()
        result["slots"].append(
            {
                "slot": slot,
                "revision": revision,
                "active": slot == result["active"],
                "next_reset": slot == result["next_reset"],
            }
        )
    result["slots"].sort(key=lambda s: s["slot"])
    return result


def parse_id_ctrl_frmw(text):
    """`nvme id-ctrl DEV -o json` -> its "frmw" field (firmware update capabilities)."""
    data = _load(text)
    return _int(data.get("frmw")) if isinstance(data, dict) else None


def decode_critical_warning(value):
    """0x05 -> ['available spare below threshold', 'reliability degraded ...']."""
    value = _int(value) or 0
    texts = [text for bit, text in CRITICAL_WARNING_BITS if value & bit]
    unknown = value & ~0x3F
    if unknown:
        texts.append(f"unknown bits 0x{unknown:02x}")
    return texts


def link_speed_gts(text):
    """'8.0 GT/s PCIe' (kernel 5.x+) or '8 GT/s' (older) -> 8.0; 'Unknown' -> None."""
    match = re.match(r"\s*(\d+(?:\.\d+)?)\s*GT/s", str(text or ""))
    return float(match.group(1)) if match else None


def _gen(speed):
    gen = PCIE_GENERATION.get(speed) if speed is not None else None
    return f"Gen{gen}" if gen else f"{speed:g} GT/s"


# ---------------------------------------------------------------- sysfs


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _link_of(pci_dir):
    link = {}
    for key in ("current_link_speed", "max_link_speed", "current_link_width", "max_link_width"):
        value = _read(os.path.join(pci_dir, key)) if pci_dir else None
        short = key.replace("_link", "")
        if value is not None and key.endswith("width"):
            link[short] = _int(value)
        else:
            link[short] = value
    return link


PCI_ADDRESS = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")


def _pci_address(path):
    base = os.path.basename(path or "")
    return base if PCI_ADDRESS.match(base) else None


def physical_slots(sysfs_root):
    """/sys/bus/pci/slots/<name>/address ('0000:01:00') -> {'0000:01:00': '<name>'}."""
    slots = {}
    base = os.path.join(sysfs_root, "bus", "pci", "slots")
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return slots
    for name in names:
        address = _read(os.path.join(base, name, "address"))
        if address:
            slots[address] = name
    return slots


def controller_names(sysfs_root):
    """nvme0, nvme1, ... (the controllers the kernel knows), in numeric order."""
    base = os.path.join(sysfs_root, "class", "nvme")
    try:
        names = [n for n in os.listdir(base) if re.match(r"^nvme\d+$", n)]
    except OSError:
        return []
    return sorted(names, key=lambda n: int(n[4:]))


def read_controller(sysfs_root, name, slots=None):
    """One controller from sysfs: identity, PCI address, its link and its slot's link.

    /sys/class/nvme/<name>/device is the PCI function of the drive; the
    directory above it is the port (root port or switch port) the drive is
    plugged into, whose max link speed/width is what the slot can do.
    """
    ctrl = os.path.join(sysfs_root, "class", "nvme", name)
    pci_dir = os.path.realpath(os.path.join(ctrl, "device"))
    if not os.path.isdir(pci_dir) or not _read(os.path.join(pci_dir, "max_link_width")):
        pci_dir = None
    address = _read(os.path.join(ctrl, "address")) or (_pci_address(pci_dir) if pci_dir else None)
    port_dir = os.path.dirname(pci_dir) if pci_dir else None
    port = _pci_address(port_dir) if port_dir else None
    port_link = _link_of(port_dir) if port else {}
    slot_name = None
    if address and slots:
        slot_name = slots.get(address.rsplit(".", 1)[0])
    return {
        "name": name,
        "model": _read(os.path.join(ctrl, "model")),
        "serial": _read(os.path.join(ctrl, "serial")),
        "firmware": _read(os.path.join(ctrl, "firmware_rev")),
        "transport": _read(os.path.join(ctrl, "transport")),
        "address": address,
        "port": port,
        "slot": describe_slot(address, slot_name, port),
        "link": _link_of(pci_dir),
        "slot_link": {
            "max_speed": port_link.get("max_speed"),
            "max_width": port_link.get("max_width"),
        },
    }


def describe_slot(address, slot_name, port):
    """How a warning names where the drive sits: PCI address, board slot, port."""
    if not address:
        return "an unknown PCI address"
    text = f"PCI {address}"
    if slot_name:
        text += f" (slot {slot_name})"
    elif port:
        text += f" (behind port {port})"
    return text


# ---------------------------------------------------------------- judgement


def link_warnings(ctrl):
    """A link narrower or slower than drive and slot allow, naming where the drive sits."""
    link = ctrl.get("link") or {}
    slot_link = ctrl.get("slot_link") or {}
    label = "{} ({})".format(ctrl.get("name"), ctrl.get("model") or "unknown model")
    where = ctrl.get("slot") or "an unknown PCI address"
    warnings = []
    w_cur, w_max = _int(link.get("current_width")), _int(link.get("max_width"))
    w_slot = _int(slot_link.get("max_width"))
    s_cur, s_max = link_speed_gts(link.get("current_speed")), link_speed_gts(link.get("max_speed"))
    s_slot = link_speed_gts(slot_link.get("max_speed"))
    if w_cur is not None and w_max:
        w_best = min(w_max, w_slot) if w_slot else w_max
        if w_cur < w_best:
            warnings.append(
                f"{label} at {where} links at x{w_cur} though drive and slot can do x{w_best}: "
                "reseat it, or free the lanes it shares (see the board manual)"
            )
        elif w_slot and w_slot < w_max:
            warnings.append(
                f"{label} at {where} links at x{w_cur}: the slot is wired x{w_slot}, the drive "
                f"can do x{w_max}; an x{w_max} M.2 slot gives it its full speed"
            )
    if s_cur is not None and s_max:
        s_best = min(s_max, s_slot) if s_slot else s_max
        if s_cur < s_best:
            warnings.append(
                f"{label} at {where} runs at {s_cur:g} GT/s ({_gen(s_cur)}) though drive and slot "
                f"can do {s_best:g} GT/s ({_gen(s_best)}): check the slot's PCIe setting in the "
                "firmware setup, reseat the drive, or try another slot"
            )
    return warnings


def health_warnings(ctrl):
    label = "{} ({})".format(ctrl.get("name"), ctrl.get("model") or "unknown model")
    warnings = []
    critical = _int(ctrl.get("critical_warning"))
    if critical:
        warnings.append(
            f"{label}: SMART critical warning 0x{critical:02x}: "
            + ", ".join(ctrl.get("critical_warnings") or decode_critical_warning(critical))
        )
    used = _int(ctrl.get("percentage_used"))
    if used is not None and used >= 100:
        warnings.append(f"{label}: {used}% of its rated endurance used")
    return warnings


def summary_line(ctrl):
    link = ctrl.get("link") or {}
    speed = link_speed_gts(link.get("current_speed"))
    parts = [
        "{}: {} (serial {}) firmware {}".format(
            ctrl.get("name"),
            ctrl.get("model") or "?",
            ctrl.get("serial") or "?",
            ctrl.get("firmware") or "?",
        ),
        "link {} x{} of {} x{}".format(
            _gen(speed) if speed else "?",
            link.get("current_width") or "?",
            _gen(link_speed_gts(link.get("max_speed"))) if link.get("max_speed") else "?",
            link.get("max_width") or "?",
        ),
    ]
    if ctrl.get("temperature_c") is not None:
        parts.append("{} C".format(ctrl["temperature_c"]))
    if ctrl.get("percentage_used") is not None:
        parts.append("{}% used".format(ctrl["percentage_used"]))
    if ctrl.get("media_errors") is not None:
        parts.append("{} media errors".format(ctrl["media_errors"]))
    line = ", ".join(parts)
    if ctrl.get("warnings"):
        line += " -- WARNING: " + "; ".join(ctrl["warnings"])
    return line


_HEALTH_KEYS = (
    "critical_warning",
    "temperature_c",
    "available_spare",
    "available_spare_threshold",
    "percentage_used",
    "media_errors",
)


def _namespaces(run, notes):
    rc, out, err = run(["list", "-o", "json"])
    if rc == 0:
        return parse_nvme_list(out)
    notes.append(f"nvme list failed (rc {rc}): {(err or out).strip()[:200]}")
    return []


def _fill_identity(ctrl, name, namespaces):
    """Identity from nvme list where sysfs lacks it (matched by serial, else by name)."""
    for ns in namespaces:
        same = (ns.get("serial") and ns.get("serial") == ctrl["serial"]) or (
            str(ns.get("device") or "").startswith(f"/dev/{name}n")
        )
        if same:
            for key in ("model", "serial", "firmware"):
                ctrl[key] = ctrl[key] or ns.get(key)


def _ask_controller(run, name, notes):
    """(SMART health, id-ctrl firmware fields, fw-log text) from nvme-cli for one controller."""
    dev = f"/dev/{name}"
    health, frmw, fw_text = {}, None, None
    rc, out, err = run(["smart-log", dev, "-o", "json"])
    if rc == 0:
        health = parse_smart_log(out)
    else:
        notes.append(f"{name}: smart-log failed (rc {rc}): {(err or out).strip()[:200]}")
    rc, out, err = run(["id-ctrl", dev, "-o", "json"])
    if rc == 0:
        frmw = parse_id_ctrl_frmw(out)
    rc, out, err = run(["fw-log", dev, "-o", "json"])
    if rc == 0:
        fw_text = out
    else:
        notes.append(f"{name}: fw-log failed (rc {rc}): {(err or out).strip()[:200]}")
    return health, frmw, fw_text


def build_report(sysfs_root, run=None):
    """The whole report. run(argv) -> (rc, stdout, stderr) runs nvme-cli; None: not installed."""
    notes = []
    slots = physical_slots(sysfs_root)
    names = controller_names(sysfs_root)
    if not names:
        # No controller: nothing to ask nvme-cli (whose `list` fails without /sys/class/nvme).
        run = None
    elif run is None:
        notes.append("nvme-cli is not installed: SMART health and firmware slots not read")
    namespaces = _namespaces(run, notes) if run is not None else []
    controllers = []
    for name in names:
        ctrl = read_controller(sysfs_root, name, slots)
        _fill_identity(ctrl, name, namespaces)
        health, frmw, fw_text = _ask_controller(run, name, notes) if run else ({}, None, None)
        ctrl["firmware_slots"] = parse_fw_log(fw_text, frmw)
        for key in _HEALTH_KEYS:
            ctrl[key] = health.get(key)
        ctrl["critical_warnings"] = decode_critical_warning(ctrl["critical_warning"])
        ctrl["warnings"] = link_warnings(ctrl) + health_warnings(ctrl)
        controllers.append(ctrl)
    summary = [summary_line(c) for c in controllers] or ["no NVMe drives found"]
    return {
        "controllers": controllers,
        "notes": notes,
        "summary": summary,
    }


def fact_document(report):
    """What the role writes to /etc/ansible/facts.d/nvme.fact (dlsetup/gpucheck reads it,
    critical_warnings included: the smoke test names the bits from there)."""
    return {"controllers": report.get("controllers") or []}


# ---------------------------------------------------------------- firmware


def firmware_plan(controllers, firmware, nvme_command="nvme"):
    """Whether to update a controller's firmware, and the commands that do it.

    Runs only when no slot of the controller already holds `version` as the
    running image, the image activated at the next reset, or (action 0) a
    stored image: so a second run does nothing.
    """
    device = str(firmware.get("device") or "")
    name = os.path.basename(device)
    version = str(firmware.get("version") or "").strip()
    slot = _int(firmware.get("slot"))
    action = _int(firmware.get("action"))
    path = firmware.get("file")
    plan = {
        "device": f"/dev/{name}",
        "version": version,
        "slot": slot,
        "action": action,
        "file": path,
        "run": False,
        "commands": [],
        "reboot_required": False,
        "reason": "",
        "error": "",
    }
    ctrl = next((c for c in controllers if c.get("name") == name), None)
    if ctrl is None:
        known = ", ".join(c.get("name") for c in controllers) or "none"
        plan["error"] = f"no NVMe controller {name!r} here (controllers: {known})"
        return plan
    if action not in FW_ACTIONS:
        plan["error"] = f"fw-commit action {action} is not one dlsetup runs (0, 1 or 3)"
        return plan
    slots = ctrl.get("firmware_slots") or {}
    count = _int(slots.get("count"))
    if slot is None or slot < 1 or slot > 7 or (count and slot > count):
        plan["error"] = f"{name} has firmware slots 1-{count or 7}; slot {slot} does not exist"
        return plan
    if slot == 1 and slots.get("slot1_read_only"):
        plan["error"] = f"{name}'s firmware slot 1 is read-only: choose slot 2-{count or 7}"
        return plan
    if ctrl.get("firmware") == version:
        plan["reason"] = f"{name} already runs firmware {version}"
        return plan
    for entry in slots.get("slots") or []:
        if entry.get("revision") != version:
            continue
        if entry.get("next_reset"):
            plan["reason"] = (
                f"{name}: firmware {version} is in slot {entry['slot']} and activates at the "
                "next reset (reboot)"
            )
            plan["reboot_required"] = True
            return plan
        if action == 0 and entry.get("slot") == slot:
            plan["reason"] = f"{name}: firmware {version} is already stored in slot {slot}"
            return plan
    plan["run"] = True
    plan["reboot_required"] = action == 1
    plan["commands"] = [
        [nvme_command, "fw-download", plan["device"], f"--fw={path}"],
        [nvme_command, "fw-commit", plan["device"], f"--slot={slot}", f"--action={action}"],
    ]
    plan["reason"] = (
        f"{name}: firmware {ctrl.get('firmware') or '?'} -> {version}: {FW_ACTIONS[action]}"
        + (" (reboot to activate)" if action == 1 else "")
    )
    return plan
