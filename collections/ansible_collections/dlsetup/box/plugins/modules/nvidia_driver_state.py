#!/usr/bin/python
"""Read-only: Secure Boot, MOK, container, loaded modules and the reboot decision.

The decisions are plain functions of their inputs (file contents under a
system root, mokutil's output), so tests/unit/test_nvidia_driver_state.py fakes
exactly those boundaries: a /sys tree and recorded mokutil output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dlsetup.box.plugins.module_utils.container import (
    DETECT_VIRT,
    container_kind,
)

DOCUMENTATION = r"""
module: nvidia_driver_state
short_description: Secure Boot / MOK state and whether the NVIDIA driver needs a reboot
description:
  - Reads Secure Boot from the EFI variables (falling back to C(mokutil --sb-state)), whether
    dlsetup's machine owner key is enrolled or waiting for enrollment, whether the host is a
    container, which nvidia module is loaded, and the state file of the previous run.
  - Decides whether a reboot is needed and what to do about it (reboot, stop, skip).
  - Changes nothing.
  - With O(scope=kernels) only the kernel part is read (running kernel, container, installed
    kernels and their module), which C(dlsetup facts) shows; O(mok_cert) and O(state_file)
    are then not needed.
options:
  scope:
    description: C(all), or C(kernels) for the kernel listing alone (the dl_facts role).
    type: str
    choices: [all, kernels]
    default: all
  installed_version:
    description:
      - Version of the installed driver (e.g. 535.261.03); empty when unknown.
      - When empty and O(version_package) is set, the version is read from dpkg.
    type: str
    default: ""
  version_package:
    description:
      - The package whose version is the driver's (the DKMS package, or nvidia-driver); its
        installed version, without epoch and Debian revision, becomes RV(installed_version).
        One read with the rest of the state, instead of a dpkg-query task of its own.
    type: str
    default: ""
  mok_cert:
    description: DER certificate of dlsetup's MOK (may not exist yet); required for O(scope=all).
    type: path
  state_file:
    description: JSON state file the role writes at the end of a run; required for O(scope=all).
    type: path
  connection_local:
    description: The host is the machine dlsetup runs on (a local connection).
    type: bool
    default: false
  allow_reboot_local:
    description: dlsetup_allow_reboot_local.
    type: bool
    default: false
  reboot_enabled:
    description: nvidia_driver_reboot.
    type: bool
    default: true
  mok_at_console:
    description:
      - nvidia_driver_mok_at_console. With a key waiting to be enrolled, someone is at the
        console, so the host may be rebooted into the MOK manager (otherwise the run stops).
    type: bool
    default: false
  dkms_module:
    description: Start of the driver's DKMS module name (nvidia, nvidia-current ...).
    type: str
    default: nvidia
  gpu_count:
    description: NVIDIA GPUs the probe found.
    type: int
    default: 0
  nouveau_blacklisted:
    description: The role blacklists nouveau (a loaded nouveau then needs a reboot).
    type: bool
    default: true
  distribution:
    description: ansible_facts.distribution (Debian, Ubuntu); picks the headers metapackage.
    type: str
    default: ""
  running_kernel:
    description: Release of the running kernel; empty for uname's (tests set it).
    type: str
    default: ""
  dkms_status:
    description: Output of C(dkms status) (tests); when absent it is run.
    type: str
  image_packages:
    description: Installed linux-image-* packages (tests); when absent dpkg-query is asked.
    type: list
    elements: str
  pci_root:
    description: >-
      Prefix for the PCI devices read (/sys/bus/pci/devices) only: a recorded tree with
      an NVSwitch, for tests of the Fabric Manager path on a box that has none.
    type: str
    default: ""
  sysroot:
    description: Prefix for every path read (tests).
    type: str
    default: ""
author: dlsetup
"""

RETURN = r"""
installed_version:
  description: >-
    O(installed_version), or the version of O(version_package) that dpkg holds (epoch and
    Debian revision dropped: 535.261.03); empty when it is not installed
  type: str
  returned: scope is all
secure_boot:
  description: enabled, disabled, unsupported (BIOS boot) or unknown
  type: str
  returned: scope is all
mok:
  description: no-key, enrolled, pending or not-enrolled
  type: str
  returned: scope is all
in_container: {description: the host is a container, type: bool, returned: always}
container_kind:
  description: the container's kind (docker, lxc, podman ...; module_utils/container.py), '' if none
  type: str
  returned: always
loaded_version:
  description: version of the loaded nvidia module or null
  type: str
  returned: scope is all
nouveau_loaded: {description: nouveau is loaded, type: bool, returned: scope is all}
previous: {description: the state file of the previous run, type: dict, returned: scope is all}
reboot:
  description: reasons, action (none, reboot, stop, skip) and message
  type: dict
  returned: scope is all
running_kernel: {description: release of the running kernel, type: str, returned: always}
kernels:
  description: >-
    every installed kernel (release, running, image, headers, module: built / missing /
    no-headers, dkms: DKMS's word), oldest first
  type: list
  returned: always
modules_missing:
  description: the kernels of C(kernels) whose NVIDIA module is not built
  type: list
  returned: always
headers_metapackage:
  description: the headers metapackage that follows the running kernel's flavour, or null
  type: str
  returned: scope is all
nvswitch_count:
  description: NVSwitch bridges on the PCI bus (NVIDIA, class 0x0680)
  type: int
  returned: scope is all
display_manager: {description: a display manager is enabled, type: bool, returned: scope is all}
"""

SECURE_BOOT_PREFIX = "SecureBoot-"
SECURE_BOOT_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def secure_boot(sysroot: str, mokutil_sb_state: str | None) -> str:
    """'enabled' / 'disabled' from the SecureBoot EFI variable (4 attribute bytes,
    then one value byte); mokutil's answer when the variable cannot be read;
    'unsupported' on a BIOS boot; 'unknown' otherwise."""
    efi = os.path.join(sysroot + "/sys/firmware/efi")
    if not os.path.isdir(efi):
        return "unsupported"
    var_dir = os.path.join(efi, "efivars")
    names = []
    if os.path.isdir(var_dir):
        names = sorted(n for n in os.listdir(var_dir) if n.startswith(SECURE_BOOT_PREFIX))
    for name in names:
        data = _read(os.path.join(var_dir, name))
        if data is not None and len(data) >= 5:
            return "enabled" if data[4] == 1 else "disabled"
    text = (mokutil_sb_state or "").lower()
    if "secureboot enabled" in text:
        return "enabled"
    if "secureboot disabled" in text or "not supported" in text:
        return "disabled"
    return "unknown"


def mok_state(cert_exists: bool, test_key_output: str | None) -> str:
    """dlsetup's key: 'no-key', 'enrolled', 'pending' (queued with mokutil
    --import, enrolled at the next boot) or 'not-enrolled'."""
    if not cert_exists:
        return "no-key"
    text = (test_key_output or "").lower()
    if "already enrolled" in text:
        return "enrolled"
    if "enrollment request" in text:
        return "pending"
    return "not-enrolled"


def loaded_modules(sysroot: str) -> set[str]:
    text = (_read(sysroot + "/proc/modules") or b"").decode("utf-8", "replace")
    return {line.split(" ", 1)[0] for line in text.splitlines() if line}


def loaded_version(sysroot: str) -> str | None:
    data = _read(sysroot + "/sys/module/nvidia/version")
    return data.decode().strip() if data else None


def reboot_reasons(
    *,
    installed_version: str,
    loaded: str | None,
    nouveau_loaded: bool,
    nouveau_blacklisted: bool,
    mok: str,
    secure_boot_state: str,
    gpu_count: int,
) -> list[str]:
    """Why the new driver cannot work before a reboot (empty: it can)."""
    reasons: list[str] = []
    if mok == "pending":
        reasons.append("the Secure Boot key waits to be enrolled at the next boot (MOK manager)")
    if gpu_count == 0:
        return reasons
    if nouveau_loaded and nouveau_blacklisted:
        reasons.append("nouveau is loaded and holds the GPU (it is blacklisted from the next boot)")
    if loaded and installed_version and loaded != installed_version:
        reasons.append(
            f"the loaded nvidia module is {loaded} but {installed_version} is installed "
            "(Driver/library version mismatch until the old module is unloaded)"
        )
    if (
        not loaded
        and installed_version
        and secure_boot_state == "enabled"
        and mok in ("pending", "not-enrolled")
    ):
        reasons.append("Secure Boot refuses the module until the signing key is enrolled")
    return reasons


def reboot_plan(
    reasons: list[str],
    *,
    in_container: bool,
    connection_local: bool,
    allow_reboot_local: bool,
    reboot_enabled: bool,
    mok: str,
    mok_at_console: bool = False,
) -> dict[str, Any]:
    """What to do about a needed reboot: 'none', 'reboot' (and continue),
    'stop' (tell the user to reboot and run the same command again) or 'skip'
    (a container cannot reboot)."""
    enroll = (
        " At the next boot the MOK manager (blue screen) asks to enroll the key: choose "
        "'Enroll MOK', 'Continue', 'Yes', type the password you set in "
        "nvidia_driver_mok_password, then 'Reboot'."
        if mok == "pending"
        else ""
    )
    if not reasons:
        return {"required": False, "action": "none", "reasons": [], "message": ""}
    why = "; ".join(reasons)
    if in_container:
        return {
            "required": False,
            "action": "skip",
            "reasons": reasons,
            "message": f"a reboot would be needed ({why}) but this host is a container",
        }
    # what keeps the run from rebooting this host: (the stop's instructions,
    # the same said beside nvidia_driver_mok_at_console)
    if connection_local and not allow_reboot_local:
        blocked = (
            "This is the machine dlsetup runs on, so it is not rebooted without "
            "--allow-reboot-local: reboot, then run the same command again; it continues "
            "where it left off.",
            "this is the machine dlsetup runs on: it reboots only with --allow-reboot-local",
        )
    elif not reboot_enabled:
        blocked = (
            "nvidia_driver_reboot is off: reboot, then run the same command again.",
            "nvidia_driver_reboot is off",
        )
    else:
        blocked = None
    if mok == "pending" and (blocked or not mok_at_console):
        # someone must be at the console to enroll the key: never reboot into
        # the MOK manager unattended (it times out and boots without the key)
        how = (
            f" (nvidia_driver_mok_at_console is set, but {blocked[1]})"
            if mok_at_console and blocked
            else " (or, with someone at the console now, set nvidia_driver_mok_at_console: "
            "true and the run reboots and waits)"
        )
        return {
            "required": True,
            "action": "stop",
            "reasons": reasons,
            "message": (
                f"Reboot needed: {why}. Enroll the key at the next boot: reboot this machine "
                f"with someone at its console, then run the same command again{how}." + enroll
            ),
        }
    if blocked:
        return {
            "required": True,
            "action": "stop",
            "reasons": reasons,
            "message": f"Reboot needed: {why}. {blocked[0]}" + enroll,
        }
    # a pending key here: nvidia_driver_mok_at_console, someone is at the
    # screen, so the run reboots into the MOK manager, waits while they enroll
    # the key and carries on in the new boot (reboot-now.yml checks it is enrolled)
    return {
        "required": True,
        "action": "reboot",
        "reasons": reasons,
        "message": (
            f"Rebooting into the MOK manager: {why}. The run waits for the box to come back."
            if mok == "pending"
            else f"Rebooting: {why}."
        )
        + enroll,
    }


# ------------------------------------------------------------------ kernels and DKMS

# Debian 12: 6.1.0-50-amd64, 6.1.0-50-cloud-amd64, 6.1.0-50-rt-amd64, 6.1.0-50-arm64;
# Debian 13: 6.12.48+deb13-amd64, 6.12.48+deb13-cloud-amd64; Ubuntu: 6.8.0-45-generic,
# 6.8.0-1015-aws, 6.8.0-45-lowlatency. The flavour is what follows the version and ABI.
_KERNEL_FLAVOUR = re.compile(
    r"^\d+\.\d+(?:\.\d+)?(?:\+deb\d+(?:u\d+)?|-\d+)-(?P<flavour>[a-z0-9][a-z0-9-]*)$"
)
_VERSION_KEY = re.compile(r"(\d+)")


def kernel_flavour(release: str) -> str | None:
    m = _KERNEL_FLAVOUR.match(release)
    return m.group("flavour") if m else None


def _version_key(release: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in _VERSION_KEY.split(release)]


def headers_metapackage(distribution: str, running: str, image_packages: list[str]) -> str | None:
    """The headers metapackage that brings the headers of every future kernel of
    the running kernel's flavour (None: the running kernel is not the
    distribution's, e.g. a custom or a container host's kernel).

    Debian: linux-headers-<flavour> (amd64, cloud-amd64, rt-amd64, arm64 ...).
    Ubuntu: the linux-image-* metapackage installed for that flavour decides
    (linux-image-generic-hwe-24.04 -> linux-headers-generic-hwe-24.04), else
    linux-headers-<flavour>."""
    flavour = kernel_flavour(running)
    if not flavour:
        return None
    if distribution == "Ubuntu":
        metas = sorted(
            p
            for p in image_packages
            if p.startswith("linux-image-")
            and not re.match(r"^linux-image-(unsigned-)?\d", p)
            and p[len("linux-image-") :].split("-")[0] == flavour.split("-")[0]
        )
        # the HWE metapackage is what follows the kernel the box boots
        metas.sort(key=lambda p: ("hwe" not in p, p))
        if metas:
            return "linux-headers-" + metas[0][len("linux-image-") :]
        return f"linux-headers-{flavour}"
    if distribution == "Debian":
        return f"linux-headers-{flavour}"
    return None


def installed_kernels(sysroot: str, running: str, container: bool) -> list[dict[str, Any]]:
    """Kernels this box can boot: /lib/modules/<v> with /boot/vmlinuz-<v>, and
    whether their headers are there (/lib/modules/<v>/build/Makefile).

    In a container nothing boots and /boot is empty, so there a kernel counts
    when its headers are installed: they are the only trace of it, and what
    DKMS builds against (this is how the tests build the real module for real
    Debian kernels without installing 400 MB kernel images)."""
    base = sysroot + "/lib/modules"
    try:
        names = os.listdir(base)
    except OSError:
        names = []
    out = []
    for v in sorted(names, key=_version_key):
        if not os.path.isdir(os.path.join(base, v)):
            continue
        image = os.path.exists(f"{sysroot}/boot/vmlinuz-{v}")
        headers = os.path.isfile(os.path.join(base, v, "build", "Makefile"))
        if image or (container and headers):
            out.append({"kernel": v, "running": v == running, "image": image, "headers": headers})
    return out


# The start of the driver packages' DKMS module name (nvidia, nvidia-current ...),
# unless the role is told another (nvidia_driver_dkms_module).
DKMS_MODULE = "nvidia"


def parse_dkms_status(text: str, prefix: str = DKMS_MODULE) -> dict[str, dict[str, str]]:
    """`dkms status` -> {kernel: {module: state}} for the modules whose DKMS
    name starts with ``prefix`` (the driver's: nvidia, nvidia-current ...).

    dkms 3: "nvidia-current/535.261.03, 6.1.0-50-amd64, x86_64: installed";
    dkms 2: "nvidia, 535.183.01, 6.8.0-45-generic, x86_64: installed"; a
    module only added has no kernel ("nvidia-current/535.261.03: added")."""
    out: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        head, sep, state = line.partition(":")
        if not sep or not head.startswith(prefix):
            continue
        fields = [f.strip() for f in head.split(",")]
        if "/" in fields[0]:
            fields = [*fields[0].split("/", 1), *fields[1:]]
        if len(fields) < 3:
            continue
        module, kernel = fields[0], fields[2]
        word = state.strip().split(" ", 1)[0].rstrip(",")
        out.setdefault(kernel, {})[module] = word
    return out


def module_per_kernel(
    kernels: list[dict[str, Any]], dkms: dict[str, dict[str, str]]
) -> list[dict[str, Any]]:
    """Each kernel with `module`: built (DKMS installed it), missing (headers are
    there: DKMS can build it now) or no-headers (it cannot be built)."""
    out = []
    for k in kernels:
        states = dkms.get(k["kernel"], {})
        built = any(s == "installed" for s in states.values())
        word = ", ".join(f"{m}: {s}" for m, s in sorted(states.items())) or "not built"
        module = "built" if built else ("missing" if k["headers"] else "no-headers")
        out.append({**k, "module": module, "dkms": word})
    return out


# ------------------------------------------------------------------ day-2 settings

NVIDIA_VENDOR = "0x10de"
NVSWITCH_CLASS = "0x0680"  # bridge, "other": how NVSwitches show on HGX boards


def nvswitch_count(sysroot: str) -> int:
    base = sysroot + "/sys/bus/pci/devices"
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return 0
    count = 0
    for name in names:
        vendor = (_read(os.path.join(base, name, "vendor")) or b"").decode().strip().lower()
        cls = (_read(os.path.join(base, name, "class")) or b"").decode().strip().lower()
        if vendor == NVIDIA_VENDOR and cls.startswith(NVSWITCH_CLASS):
            count += 1
    return count


def display_manager(sysroot: str) -> bool:
    """A desktop: systemd's display-manager.service alias is set (gdm, sddm, lightdm ...)."""
    return os.path.lexists(sysroot + "/etc/systemd/system/display-manager.service")


def read_state(path: str) -> dict[str, Any]:
    data = _read(path)
    if not data:
        return {}
    try:
        loaded = json.loads(data)
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _run(argv: list[str], stderr: int = subprocess.STDOUT) -> str | None:
    """What the command printed (its stderr too, unless told DEVNULL); None
    when it is not installed or does not finish."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=stderr, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.decode("utf-8", "replace")


def gather_kernels(params: dict[str, Any], kind: str) -> dict[str, Any]:
    """The kernel part: the running kernel, every installed kernel and its module."""
    root = params.get("sysroot") or ""
    running = params.get("running_kernel") or os.uname().release
    dkms_text = params.get("dkms_status")
    if dkms_text is None:
        dkms_text = (_run(["dkms", "status"]) or "") if not root else ""
    container = bool(kind)
    kernels = module_per_kernel(
        installed_kernels(root, running, container),
        parse_dkms_status(dkms_text, params.get("dkms_module") or DKMS_MODULE),
    )
    return {
        "running_kernel": running,
        "in_container": container,
        "container_kind": kind,
        "kernels": kernels,
        "modules_missing": [k for k in kernels if k["module"] != "built"],
    }


def gather(params: dict[str, Any]) -> dict[str, Any]:
    root = params.get("sysroot") or ""
    live = not root
    kind = container_kind(root, _run(list(DETECT_VIRT)) if live else None)
    container = bool(kind)
    if params.get("scope") == "kernels":
        return gather_kernels(params, kind)
    cert = params["mok_cert"]
    installed = params.get("installed_version") or ""
    if not installed and params.get("version_package") and live:
        installed = package_version(_dpkg_version(params["version_package"]))
    sb = secure_boot(root, _run(["mokutil", "--sb-state"]) if live else None)
    cert_exists = os.path.isfile(root + cert)
    mok = mok_state(
        cert_exists, _run(["mokutil", "--test-key", cert]) if live and cert_exists else None
    )
    mods = loaded_modules(root)
    loaded = loaded_version(root)
    reasons = reboot_reasons(
        installed_version=installed,
        loaded=loaded,
        nouveau_loaded="nouveau" in mods,
        nouveau_blacklisted=bool(params.get("nouveau_blacklisted", True)),
        mok=mok,
        secure_boot_state=sb,
        gpu_count=int(params.get("gpu_count") or 0),
    )
    plan = reboot_plan(
        reasons,
        in_container=container,
        connection_local=bool(params.get("connection_local")),
        allow_reboot_local=bool(params.get("allow_reboot_local")),
        reboot_enabled=bool(params.get("reboot_enabled", True)),
        mok=mok,
        mok_at_console=bool(params.get("mok_at_console")),
    )
    part = gather_kernels(params, kind)
    images = params.get("image_packages")
    if images is None:
        images = _installed_images() if live else []
    return {
        **part,
        "installed_version": installed,
        "secure_boot": sb,
        "mok": mok,
        "loaded_version": loaded,
        "nouveau_loaded": "nouveau" in mods,
        "previous": read_state(root + params["state_file"]),
        "reboot": plan,
        "headers_metapackage": headers_metapackage(
            params.get("distribution") or "", part["running_kernel"], images
        ),
        "nvswitch_count": nvswitch_count(params.get("pci_root") or root),
        "display_manager": display_manager(root),
    }


def package_version(dpkg_version: str) -> str:
    """dpkg's version of the driver package -> the driver's: 1:535.261.03-1~deb12u1
    -> 535.261.03 (the epoch and the Debian revision dropped)."""
    return re.sub(r"-[^-]*$", "", re.sub(r"^[0-9]+:", "", dpkg_version.strip()))


def _dpkg_version(package: str) -> str:
    """dpkg's version of a package; empty when dpkg does not know it."""
    return _run(["dpkg-query", "-W", "-f", "${Version}", package], subprocess.DEVNULL) or ""


def _installed_images() -> list[str]:
    text = (
        _run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Package}\\n", "linux-image-*"]) or ""
    )
    return [
        f[1] for f in (line.split() for line in text.splitlines()) if len(f) == 2 and f[0] == "ii"
    ]


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "installed_version": {"type": "str", "default": ""},
            "version_package": {"type": "str", "default": ""},
            "scope": {"type": "str", "choices": ["all", "kernels"], "default": "all"},
            "mok_cert": {"type": "path"},
            "state_file": {"type": "path"},
            "connection_local": {"type": "bool", "default": False},
            "allow_reboot_local": {"type": "bool", "default": False},
            "reboot_enabled": {"type": "bool", "default": True},
            "mok_at_console": {"type": "bool", "default": False},
            "dkms_module": {"type": "str", "default": DKMS_MODULE},
            "gpu_count": {"type": "int", "default": 0},
            "nouveau_blacklisted": {"type": "bool", "default": True},
            "distribution": {"type": "str", "default": ""},
            "running_kernel": {"type": "str", "default": ""},
            "dkms_status": {"type": "str"},
            "image_packages": {"type": "list", "elements": "str"},
            "pci_root": {"type": "str", "default": ""},
            "sysroot": {"type": "str", "default": ""},
        },
        required_if=[("scope", "all", ["mok_cert", "state_file"])],
        supports_check_mode=True,
    )
    module.exit_json(changed=False, **gather(module.params))


if __name__ == "__main__":
    main()
