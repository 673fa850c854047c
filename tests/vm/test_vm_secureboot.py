"""Secure Boot with a real machine owner key, and a real reboot-and-resume
(issue 15, scenarios 2 and 1), in one VM: each boot under emulation costs a
minute or two, so the two share the reboot into MokManager.

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
3. Reboot and resume, for real (scenario 1, the part a GPU-less VM allows):
   a play runs the role's reboot step (roles/nvidia_driver/tasks/reboot.yml:
   ansible.builtin.reboot, same arguments) against the VM over SSH through
   QEMU's port forward, and carries on after it; meanwhile the test answers
   MokManager on the serial console as a user at the screen would (Enroll
   MOK, Continue, Yes, password, Reboot), and the play waits through both
   boots. The tasks after the reboot run in the new boot (boot id before !=
   after, uptime shorter than the play). In a VM without an NVIDIA GPU the
   role itself never decides to reboot (its reasons all need a GPU, and a
   pending MOK makes it stop, as step 1 shows), hence the playbook.
4. After that boot mokutil --test-key says the key is enrolled, the same
   signed module loads, and the same module built without a signature is
   still refused.

Not covered: the NVIDIA packages themselves (their DKMS build takes far too
long under emulation; docs/vm-tier.md has the figures).
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
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

    # 3. reboot through the role's reboot step, in a play that carries on
    # after it, while a user at the console enrolls the key in MokManager
    boot_before = vm.boot_id()
    t0 = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        play = pool.submit(playbook, inv, "reboot-resume.yml")
        assert vm.console is not None
        try:
            enroll_mok(vm.console, PASSWORD)
        finally:
            rebooted = play.result()
    assert rebooted.returncode == 0, rebooted.stdout[-3000:] + rebooted.stderr[-2000:]
    assert "changed=2" in rebooted.stdout  # the reboot and the record written after it
    boots = read_json(vm, "/var/tmp/dlsetup-reboot.json")
    assert boots["before"] == boot_before
    assert boots["after"] == vm.boot_id() != boot_before
    # the kernel running now started after the play did
    assert float(vm.ssh("cut -d' ' -f1 /proc/uptime").stdout) < time.monotonic() - t0

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
