"""Secure Boot, MOK and reboot decisions of the nvidia_driver role
(the collection's plugins/modules/nvidia_driver_state.py).

The inputs are faked at their boundary: a /sys + /proc tree under a temporary
system root (what a UEFI box with Secure Boot on, a BIOS box, a container
show) and mokutil's output as recorded from real machines. No GPU, firmware
or reboot is involved; the decisions and the messages the user reads are.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ansible_collections.dlsetup.box.plugins.modules import nvidia_driver_state as state

ROOT = Path(__file__).resolve().parents[2]
MODULE = Path(state.__file__)

SB_VAR = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"

# mokutil's answers (mokutil 0.6 on Debian 12 / Ubuntu 24.04)
SB_ENABLED = "SecureBoot enabled\n"
SB_DISABLED = "SecureBoot disabled\n"
SB_UNSUPPORTED = "EFI variables are not supported on this system\n"
KEY_ENROLLED = "/var/lib/dlsetup/mok/dlsetup-mok.der is already enrolled\n"
KEY_PENDING = "/var/lib/dlsetup/mok/dlsetup-mok.der is already in the enrollment request\n"
KEY_NOT_ENROLLED = "/var/lib/dlsetup/mok/dlsetup-mok.der is not enrolled\n"


def uefi(root: Path, secure_boot: int | None) -> Path:
    """A /sys/firmware/efi tree; secure_boot None: efivars not readable."""
    efivars = root / "sys" / "firmware" / "efi" / "efivars"
    efivars.mkdir(parents=True)
    if secure_boot is not None:
        # 4 bytes of attributes (NV+BS+RT), then the value
        (efivars / SB_VAR).write_bytes(b"\x06\x00\x00\x00" + bytes([secure_boot]))
    return root


def modules(root: Path, *names: str, nvidia_version: str | None = None) -> None:
    (root / "proc").mkdir(parents=True, exist_ok=True)
    lines = [f"{n} 1234 0 - Live 0x0000000000000000" for n in names]
    (root / "proc" / "modules").write_text("\n".join(lines) + "\n")
    if nvidia_version:
        d = root / "sys" / "module" / "nvidia"
        d.mkdir(parents=True)
        (d / "version").write_text(nvidia_version + "\n")


# ------------------------------------------------------------------ Secure Boot


def test_secure_boot_from_the_efi_variable(tmp_path):
    assert state.secure_boot(str(uefi(tmp_path / "a", 1)), None) == "enabled"
    assert state.secure_boot(str(uefi(tmp_path / "b", 0)), None) == "disabled"


def test_secure_boot_variable_wins_over_mokutil(tmp_path):
    assert state.secure_boot(str(uefi(tmp_path, 0)), SB_ENABLED) == "disabled"


def test_secure_boot_falls_back_to_mokutil(tmp_path):
    root = str(uefi(tmp_path, None))
    assert state.secure_boot(root, SB_ENABLED) == "enabled"
    assert state.secure_boot(root, SB_DISABLED) == "disabled"
    assert state.secure_boot(root, None) == "unknown"


def test_bios_boot_has_no_secure_boot(tmp_path):
    assert state.secure_boot(str(tmp_path), SB_UNSUPPORTED) == "unsupported"


# ------------------------------------------------------------------ MOK


@pytest.mark.parametrize(
    ("exists", "output", "expected"),
    [
        (False, None, "no-key"),
        (True, KEY_ENROLLED, "enrolled"),
        (True, KEY_PENDING, "pending"),
        (True, KEY_NOT_ENROLLED, "not-enrolled"),
        (True, None, "not-enrolled"),
    ],
)
def test_mok_state(exists, output, expected):
    assert state.mok_state(exists, output) == expected


# ------------------------------------------------------------------ reboot reasons

BASE = dict(
    installed_version="580.95.05",
    loaded=None,
    nouveau_loaded=False,
    nouveau_blacklisted=True,
    mok="no-key",
    secure_boot_state="disabled",
    gpu_count=1,
)


def reasons(**kw):
    return state.reboot_reasons(**{**BASE, **kw})


def test_no_reboot_when_the_installed_module_is_loaded():
    assert reasons(loaded="580.95.05") == []


def test_fresh_install_with_nothing_loaded_needs_no_reboot():
    # the module can simply be loaded (modprobe) when nothing holds the GPU
    assert reasons() == []


def test_nouveau_holding_the_gpu_needs_a_reboot():
    assert "nouveau is loaded" in reasons(nouveau_loaded=True)[0]
    assert reasons(nouveau_loaded=True, nouveau_blacklisted=False) == []


def test_old_module_loaded_after_upgrade_needs_a_reboot():
    (why,) = reasons(loaded="570.172.08")
    assert "570.172.08" in why and "580.95.05" in why and "mismatch" in why


def test_pending_mok_needs_a_reboot_even_without_gpu():
    (why,) = reasons(mok="pending", gpu_count=0, secure_boot_state="enabled", installed_version="")
    assert "enrolled at the next boot" in why


def test_no_gpu_no_reboot_for_modules():
    assert reasons(gpu_count=0, nouveau_loaded=True, loaded="1.0") == []


# ------------------------------------------------------------------ reboot plan


def plan(rs, **kw):
    args = dict(
        in_container=False,
        connection_local=False,
        allow_reboot_local=False,
        reboot_enabled=True,
        mok="enrolled",
    )
    args.update(kw)
    return state.reboot_plan(rs, **args)


def test_nothing_to_do():
    p = plan([])
    assert p == {"required": False, "action": "none", "reasons": [], "message": ""}


def test_remote_host_is_rebooted():
    p = plan(["x"])
    assert p["action"] == "reboot" and p["required"]


def test_local_host_stops_with_instructions():
    p = plan(["nouveau is loaded"], connection_local=True)
    assert p["action"] == "stop" and p["required"]
    assert "reboot, then run the same command again" in p["message"]
    assert "--allow-reboot-local" in p["message"]


def test_local_host_rebooted_when_allowed():
    assert plan(["x"], connection_local=True, allow_reboot_local=True)["action"] == "reboot"


def test_reboot_off_stops():
    p = plan(["x"], reboot_enabled=False)
    assert p["action"] == "stop"
    assert "nvidia_driver_reboot is off" in p["message"]


def test_container_skips_with_reason():
    p = plan(["x"], in_container=True)
    assert p["action"] == "skip" and not p["required"]
    assert "container" in p["message"]


def test_pending_mok_never_reboots_unattended():
    p = plan(["key waits"], mok="pending", allow_reboot_local=True)
    assert p["action"] == "stop" and p["required"]
    assert "Enroll the key at the next boot" in p["message"]
    assert "Enroll MOK" in p["message"] and "nvidia_driver_mok_password" in p["message"]


def test_pending_mok_with_someone_at_the_console_reboots_into_the_mok_manager():
    p = plan(["key waits"], mok="pending", mok_at_console=True)
    assert p["action"] == "reboot" and p["required"]
    assert "Rebooting into the MOK manager" in p["message"] and "Enroll MOK" in p["message"]


def test_someone_at_the_console_does_not_lift_the_other_guards():
    def action(**kw):
        return plan(["key waits"], mok="pending", mok_at_console=True, **kw)["action"]

    # the machine dlsetup runs on: only with --allow-reboot-local
    assert action(connection_local=True) == "stop"
    assert action(connection_local=True, allow_reboot_local=True) == "reboot"
    assert action(reboot_enabled=False) == "stop"
    assert action(in_container=True) == "skip"
    local = plan(["key waits"], mok="pending", mok_at_console=True, connection_local=True)
    assert "only with --allow-reboot-local" in local["message"]
    off = plan(["key waits"], mok="pending", mok_at_console=True, reboot_enabled=False)
    assert "nvidia_driver_reboot is off" in off["message"]
    assert "set nvidia_driver_mok_at_console" not in local["message"] + off["message"]


def test_the_stop_for_a_pending_key_names_the_console_option():
    p = plan(["key waits"], mok="pending")
    assert "nvidia_driver_mok_at_console: true" in p["message"]


# ------------------------------------------------------------------ whole gather


def test_gather_on_a_secure_boot_box_with_a_pending_key(tmp_path):
    root = uefi(tmp_path, 1)
    modules(root, "nouveau", "drm")
    cert = "/var/lib/dlsetup/mok/dlsetup-mok.der"
    (root / cert.lstrip("/")).parent.mkdir(parents=True)
    (root / cert.lstrip("/")).write_bytes(b"der")
    out = state.gather(
        {
            "sysroot": str(root),
            "mok_cert": cert,
            "state_file": "/var/lib/dlsetup/nvidia_driver.json",
            "installed_version": "535.261.03",
            "gpu_count": 1,
            "connection_local": False,
        }
    )
    assert out["secure_boot"] == "enabled"
    # under a sysroot mokutil is not asked: a key that exists counts as not enrolled
    assert out["mok"] == "not-enrolled"
    assert out["nouveau_loaded"] and out["loaded_version"] is None
    assert out["reboot"]["action"] == "reboot"
    assert any("Secure Boot refuses the module" in r for r in out["reboot"]["reasons"])
    assert out["previous"] == {}


def gather_535(root, **params):
    """gather() under a system root, for a box with one GPU and driver 535 installed."""
    return state.gather(
        {
            "sysroot": str(root),
            "mok_cert": "/nope.der",
            "state_file": "/var/lib/dlsetup/nvidia_driver.json",
            "installed_version": "535.261.03",
            "gpu_count": 1,
            **params,
        }
    )


def test_gather_reads_the_previous_runs_state(tmp_path):
    modules(tmp_path, "nvidia", nvidia_version="535.261.03")
    sf = tmp_path / "var" / "lib" / "dlsetup" / "nvidia_driver.json"
    sf.parent.mkdir(parents=True)
    sf.write_text(json.dumps({"mok_enroll_pending": True, "reboot_required": True}))
    out = gather_535(tmp_path, connection_local=True)
    assert out["previous"]["mok_enroll_pending"] is True
    assert out["secure_boot"] == "unsupported" and out["mok"] == "no-key"
    assert out["loaded_version"] == "535.261.03"
    assert out["reboot"]["action"] == "none"
    assert out["in_container"] is False


def test_gather_takes_the_container_answer_of_module_utils(tmp_path):
    """Container or not is module_utils/container.py's answer (its own tests:
    test_container_detection.py); a container skips the reboot it would need."""
    modules(tmp_path, "nouveau")
    (tmp_path / ".dockerenv").write_text("")
    out = gather_535(tmp_path)
    assert out["in_container"] is True and out["container_kind"] == "docker"
    assert out["reboot"]["action"] == "skip"


# ------------------------------------------------------------------ kernels, headers, DKMS
#
# A faked system root: /lib/modules/<v> (with build/Makefile where the headers
# are installed) and /boot/vmlinuz-<v>, as Debian's linux-image and
# linux-headers packages leave them; `dkms status` as dkms 3.0 (Debian 12) and
# dkms 2.8 (Ubuntu 22.04) print it.

DKMS3 = (
    "nvidia-current/535.261.03, 6.1.0-50-amd64, x86_64: installed\n"
    "nvidia-current/535.261.03, 6.1.0-57-amd64, x86_64: built\n"
)


def kernel(root: Path, release: str, image: bool = True, headers: bool = True) -> None:
    mods = root / "lib" / "modules" / release
    mods.mkdir(parents=True, exist_ok=True)
    if headers:
        (mods / "build").mkdir(exist_ok=True)
        (mods / "build" / "Makefile").write_text("# kernel headers\n")
    if image:
        (root / "boot").mkdir(exist_ok=True)
        (root / "boot" / f"vmlinuz-{release}").write_bytes(b"MZ")


@pytest.mark.parametrize(
    ("distribution", "running", "images", "expected"),
    [
        ("Debian", "6.1.0-50-amd64", [], "linux-headers-amd64"),
        ("Debian", "6.1.0-50-cloud-amd64", [], "linux-headers-cloud-amd64"),
        ("Debian", "6.1.0-50-rt-amd64", [], "linux-headers-rt-amd64"),
        ("Debian", "6.12.48+deb13-amd64", [], "linux-headers-amd64"),
        ("Debian", "6.12.48+deb13-arm64", [], "linux-headers-arm64"),
        (
            "Ubuntu",
            "6.8.0-45-generic",
            ["linux-image-generic", "linux-image-6.8.0-45-generic"],
            "linux-headers-generic",
        ),
        (
            "Ubuntu",
            "6.8.0-45-generic",
            ["linux-image-generic-hwe-22.04", "linux-image-6.8.0-45-generic"],
            "linux-headers-generic-hwe-22.04",
        ),
        (
            "Ubuntu",
            "6.8.0-1015-aws",
            ["linux-image-aws", "linux-image-6.8.0-1015-aws"],
            "linux-headers-aws",
        ),
        ("Ubuntu", "6.8.0-45-lowlatency", [], "linux-headers-lowlatency"),
        # a kernel that is not the distribution's (a container host's, a custom build)
        ("Debian", "6.18.44-fc-v1147", [], None),
        ("Debian", "6.1.0-custom", [], None),
        ("Fedora", "6.1.0-50-amd64", [], None),
    ],
)
def test_headers_metapackage_follows_the_running_kernels_flavour(
    distribution, running, images, expected
):
    assert state.headers_metapackage(distribution, running, images) == expected


def test_kernels_are_those_with_an_image_and_modules(tmp_path):
    kernel(tmp_path, "6.1.0-9-amd64")
    kernel(tmp_path, "6.1.0-50-amd64", headers=False)
    kernel(tmp_path, "6.1.0-10-amd64", image=False)  # leftovers of a removed kernel
    got = state.installed_kernels(str(tmp_path), "6.1.0-9-amd64", container=False)
    assert [(k["kernel"], k["running"], k["headers"]) for k in got] == [
        ("6.1.0-9-amd64", True, True),
        ("6.1.0-50-amd64", False, False),
    ]


def test_in_a_container_kernels_are_counted_by_their_headers(tmp_path):
    kernel(tmp_path, "6.1.0-50-amd64", image=False)
    kernel(tmp_path, "6.1.0-57-amd64", image=False)
    (tmp_path / "lib" / "modules" / "6.1.0-3-amd64").mkdir()  # no headers, no image
    got = state.installed_kernels(str(tmp_path), "6.18.44-host", container=True)
    assert [k["kernel"] for k in got] == ["6.1.0-50-amd64", "6.1.0-57-amd64"]
    assert state.installed_kernels(str(tmp_path), "6.18.44-host", container=False) == []


def test_dkms_status_parsed_for_dkms_3_and_2():
    assert state.parse_dkms_status(
        DKMS3 + "nvidia-current/535.261.03: added\nzfs/2.1.11, 6.1.0-50-amd64, x86_64: installed\n"
    ) == {
        "6.1.0-50-amd64": {"nvidia-current": "installed"},
        "6.1.0-57-amd64": {"nvidia-current": "built"},
    }
    old = "nvidia, 535.183.01, 6.8.0-45-generic, x86_64: installed (WARNING! Diff between built and installed module!)\n"
    assert state.parse_dkms_status(old) == {"6.8.0-45-generic": {"nvidia": "installed"}}


def test_dkms_status_of_another_module_name_when_the_role_is_told_it():
    text = DKMS3 + "dlsetup-vmtest/1.0, 6.1.0-50-amd64, x86_64: installed\n"
    assert state.parse_dkms_status(text, "dlsetup-vmtest") == {
        "6.1.0-50-amd64": {"dlsetup-vmtest": "installed"}
    }
    assert "dlsetup-vmtest" not in str(state.parse_dkms_status(text))


def test_module_per_kernel_says_built_missing_or_no_headers(tmp_path):
    kernel(tmp_path, "6.1.0-50-amd64")
    kernel(tmp_path, "6.1.0-57-amd64")
    kernel(tmp_path, "6.1.0-60-amd64", headers=False)
    kernels = state.installed_kernels(str(tmp_path), "6.1.0-50-amd64", container=False)
    got = state.module_per_kernel(kernels, state.parse_dkms_status(DKMS3))
    assert [(k["kernel"], k["module"]) for k in got] == [
        ("6.1.0-50-amd64", "built"),
        ("6.1.0-57-amd64", "missing"),  # built but not installed: autoinstall finishes it
        ("6.1.0-60-amd64", "no-headers"),
    ]
    assert got[1]["dkms"] == "nvidia-current: built"
    assert got[2]["dkms"] == "not built"


def test_gather_reports_every_kernel_and_the_missing_ones(tmp_path):
    kernel(tmp_path, "6.1.0-50-amd64")
    kernel(tmp_path, "6.1.0-57-amd64", headers=False)
    got = state.gather(
        {
            "mok_cert": "/var/lib/dlsetup/mok/dlsetup-mok.der",
            "state_file": "/var/lib/dlsetup/nvidia_driver.json",
            "sysroot": str(tmp_path),
            "distribution": "Debian",
            "running_kernel": "6.1.0-50-amd64",
            "dkms_status": DKMS3,
            "image_packages": [],
        }
    )
    assert got["headers_metapackage"] == "linux-headers-amd64"
    assert [k["kernel"] for k in got["kernels"]] == ["6.1.0-50-amd64", "6.1.0-57-amd64"]
    assert [(k["kernel"], k["module"]) for k in got["modules_missing"]] == [
        ("6.1.0-57-amd64", "no-headers")
    ]


def test_scope_kernels_lists_only_the_kernels_without_key_or_state_file(tmp_path):
    """dl_facts asks scope=kernels (for `dlsetup facts`): no MOK, no state file, no
    reboot plan; the same kernels and module words as the driver role's check."""
    kernel(tmp_path, "6.1.0-50-amd64")
    kernel(tmp_path, "6.1.0-57-amd64", headers=False)
    got = state.gather(
        {
            "scope": "kernels",
            "sysroot": str(tmp_path),
            "running_kernel": "6.1.0-50-amd64",
            "dkms_status": DKMS3,
        }
    )
    assert set(got) == {
        "running_kernel",
        "in_container",
        "container_kind",
        "kernels",
        "modules_missing",
    }
    assert got["in_container"] is False and got["container_kind"] == ""
    assert [(k["kernel"], k["running"], k["module"]) for k in got["kernels"]] == [
        ("6.1.0-50-amd64", True, "built"),
        ("6.1.0-57-amd64", False, "no-headers"),
    ]
    assert [k["kernel"] for k in got["modules_missing"]] == ["6.1.0-57-amd64"]


# ------------------------------------------------------------------ NVSwitch, display manager


def pci(root: Path, slot: str, vendor: str, cls: str) -> None:
    d = root / "sys" / "bus" / "pci" / "devices" / slot
    d.mkdir(parents=True)
    (d / "vendor").write_text(vendor + "\n")
    (d / "class").write_text(cls + "\n")


def test_nvswitches_are_nvidia_bridges_of_class_0680(tmp_path):
    pci(tmp_path, "0000:07:00.0", "0x10de", "0x068000")  # NVSwitch (HGX H100 has 4)
    pci(tmp_path, "0000:08:00.0", "0x10de", "0x068000")
    pci(tmp_path, "0000:18:00.0", "0x10de", "0x030200")  # the GPU itself
    pci(tmp_path, "0000:00:1f.0", "0x8086", "0x068000")  # someone else's bridge
    assert state.nvswitch_count(str(tmp_path)) == 2
    assert state.nvswitch_count(str(tmp_path / "nothing")) == 0


def test_display_manager_from_the_systemd_alias(tmp_path):
    assert state.display_manager(str(tmp_path)) is False
    d = tmp_path / "etc" / "systemd" / "system"
    d.mkdir(parents=True)
    (d / "display-manager.service").symlink_to("/lib/systemd/system/gdm3.service")  # dangling here
    assert state.display_manager(str(tmp_path)) is True


# ------------------------------------------------------------------ the installed version


@pytest.mark.parametrize(
    ("dpkg", "driver"),
    [
        ("535.261.03-1~deb12u1", "535.261.03"),  # Debian's nvidia-kernel-dkms
        ("1:580.95.05-0ubuntu1", "580.95.05"),  # an epoch and Ubuntu's revision
        ("580.95.05-1", "580.95.05"),  # NVIDIA's repository
        ("", ""),  # not installed
    ],
)
def test_the_driver_version_is_dpkgs_without_epoch_and_revision(dpkg, driver):
    assert state.package_version(dpkg) == driver


def test_the_version_package_is_read_from_this_machines_dpkg():
    """No stand-in: dpkg-query on this (Debian) machine, for a package it has
    and one it cannot have."""
    real = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "dpkg"], capture_output=True, text=True, check=True
    ).stdout
    assert state._dpkg_version("dpkg") == real and real
    assert state._dpkg_version("dlsetup-no-such-package") == ""


def test_the_installed_version_comes_from_dpkg_unless_given():
    """gather() on this machine itself (no system root: dpkg, /sys and /proc
    are this machine's; mokutil and dkms may be missing, which it allows).
    dpkg's own package stands in for the driver's."""
    live = {"mok_cert": "/nonexistent/dlsetup-mok.der", "state_file": "/nonexistent/state.json"}
    read = state.gather({**live, "version_package": "dpkg"})
    assert read["installed_version"] == state.package_version(state._dpkg_version("dpkg"))
    assert read["installed_version"]
    given = state.gather({**live, "version_package": "dpkg", "installed_version": "535.261.03"})
    assert given["installed_version"] == "535.261.03"
    absent = state.gather({**live, "version_package": "dlsetup-no-such-package"})
    assert absent["installed_version"] == ""
