"""Secure Boot with a real machine owner key (issue 15, scenario 2).

The VM boots OVMF with Microsoft's keys and Secure Boot enforced, then
Debian's signed shim, GRUB and kernel, which locks itself down: only modules
signed by a key the firmware or shim trusts load. The steps:

1. The role's own tasks (roles/nvidia_driver state.yml and secureboot.yml,
   what `dlsetup provision --tags driver` runs before DKMS builds the NVIDIA
   module) see Secure Boot on, create the MOK, write DKMS's signing
   configuration and queue the key with mokutil; the role's decision is
   'stop' (someone must be at the console), never an unattended reboot.
2. A tiny DKMS module (tests/vm/dkms, standing in for the NVIDIA module) is
   built by DKMS with that configuration: it is signed with the MOK, and the
   kernel still refuses it, since the key is not enrolled yet.
3. The test reboots the VM and answers MokManager on the serial console as a
   user at the screen would (Enroll MOK, Continue, Yes, password, Reboot).
4. After that boot mokutil --test-key says the key is enrolled, the same
   signed module loads, and the same module built without a signature is
   still refused.

Not covered: the NVIDIA packages themselves (their DKMS build takes far too
long under emulation; docs/vm-tier.md has the figures).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from dlsetup import vmbox
from tests.vm.helpers import enroll_mok, inventory, playbook, read_json

HERE = Path(__file__).resolve().parent
MOK_DIR = "/var/lib/dlsetup/mok"
PASSWORD = "dlsetup-vm"  # a throw-away VM's MOK password
MODULE = "dlsetup_vmtest"


def _copy_module_source(vm: vmbox.VM) -> None:
    tar = subprocess.run(
        ["tar", "-C", str(HERE / "dkms"), "-c", "dlsetup-vmtest"], capture_output=True, check=True
    )
    subprocess.run(
        vm.ssh_argv(
            "sudo rm -rf /usr/src/dlsetup-vmtest-1.0 && sudo tar -C /tmp -x "
            "&& sudo mv /tmp/dlsetup-vmtest /usr/src/dlsetup-vmtest-1.0"
        ),
        input=tar.stdout,
        capture_output=True,
        check=True,
    )


def _load(vm: vmbox.VM, command: str) -> subprocess.CompletedProcess[str]:
    return vm.ssh(f"sudo {command} 2>&1", check=False)


def test_secure_boot_mok_enrolled_at_the_console(vm: vmbox.VM, tmp_path: Path) -> None:
    assert "SecureBoot enabled" in vm.ssh("mokutil --sb-state").stdout
    assert "Secure boot enabled" in vm.ssh("sudo dmesg").stdout

    # 1. the role's tasks
    inv = inventory(vm, tmp_path / "hosts.yml")
    res = playbook(inv, "secureboot.yml", "-e", f"nvidia_driver_mok_password={PASSWORD}")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    seen = read_json(vm, "/var/tmp/dlsetup-secureboot.json")
    assert seen["before"] == {
        "secure_boot": "enabled",
        "mok": "no-key",
        "reboot": {"required": False, "action": "none", "reasons": [], "message": ""},
    }
    after = seen["after"]
    assert isinstance(after, dict)
    assert after["secure_boot"] == "enabled"
    assert after["mok"] == "pending"
    assert after["reboot"]["action"] == "stop"  # never into MokManager unattended
    assert (
        "enrollment request"
        in vm.ssh(f"sudo mokutil --test-key {MOK_DIR}/dlsetup-mok.der", check=False).stdout
    )
    conf = vm.ssh("cat /etc/dkms/framework.conf.d/dlsetup-mok.conf").stdout
    assert f'mok_signing_key="{MOK_DIR}/dlsetup-mok.priv"' in conf

    # 2. DKMS builds and signs the stand-in module; the kernel refuses it for now
    _copy_module_source(vm)
    vm.ssh("sudo dkms install dlsetup-vmtest/1.0", timeout=900)
    signer = vm.ssh(f"sudo modinfo -F signer {MODULE}").stdout.strip()
    assert signer.startswith("dlsetup module signing key")
    refused = _load(vm, f"modprobe {MODULE}")
    assert refused.returncode != 0, refused.stdout
    refusal = refused.stdout.strip()
    # the same module without a signature, built by hand from the same source
    vm.ssh(
        "sudo rm -rf /var/tmp/unsigned && sudo cp -r /usr/src/dlsetup-vmtest-1.0 /var/tmp/unsigned "
        "&& sudo make -s -C /lib/modules/$(uname -r)/build M=/var/tmp/unsigned modules",
        timeout=900,
    )
    assert vm.ssh(f"sudo modinfo -F signer /var/tmp/unsigned/{MODULE}.ko").stdout.strip() == ""

    # 3. reboot into MokManager and enroll the key as a user would
    vm.ssh("sudo systemctl reboot", check=False)
    assert vm.console is not None
    enroll_mok(vm.console, PASSWORD)
    vm.wait_ssh(600)

    # 4. enrolled; the signed module loads, the unsigned one is refused
    assert (
        "is already enrolled"
        in vm.ssh(f"sudo mokutil --test-key {MOK_DIR}/dlsetup-mok.der", check=False).stdout
    )
    loaded = _load(vm, f"modprobe {MODULE}")
    assert loaded.returncode == 0, loaded.stdout
    assert MODULE in vm.ssh("lsmod").stdout
    assert f"{MODULE}: loaded" in vm.ssh("sudo dmesg").stdout
    vm.ssh(f"sudo modprobe -r {MODULE}")
    unsigned = _load(vm, f"insmod /var/tmp/unsigned/{MODULE}.ko")
    assert unsigned.returncode != 0, unsigned.stdout
    print(f"before enrollment: {refusal}\nunsigned after enrollment: {unsigned.stdout.strip()}")
