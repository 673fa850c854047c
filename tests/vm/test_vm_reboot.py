"""Reboot and resume, for real: a VM reboots in the middle of a play and the
play carries on after it (issue 15, scenario 1, the part a GPU-less VM allows).

What it stands in for: roles/nvidia_driver/tasks/reboot.yml's step
"Reboot to load the new module" (ansible.builtin.reboot, then the role reads
the state again and finishes), on a remote host reached over SSH. In a VM
without an NVIDIA GPU the role itself never decides to reboot (its reasons
all need a GPU, or a pending MOK, for which it stops instead: see
test_vm_secureboot.py), so this test runs that same module with the same
arguments from a playbook, against a real machine whose firmware, boot
loader and kernel really restart. What it proves: the module's reboot over
QEMU's port forward, the wait, and the tasks after it running in the new boot
(the boot id read after the reboot differs from the one before, the machine's
uptime restarted).
"""

from __future__ import annotations

from pathlib import Path

from dlsetup import vmbox
from tests.vm.helpers import inventory, playbook, read_json


def test_reboot_and_resume(vm: vmbox.VM, tmp_path: Path) -> None:
    before = vm.boot_id()
    inv = inventory(vm, tmp_path / "hosts.yml")
    res = playbook(inv, "reboot-resume.yml")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "changed=2" in res.stdout  # the reboot and the record written after it
    seen = read_json(vm, "/var/tmp/dlsetup-reboot.json")
    assert seen["before"] == before
    assert seen["after"] == vm.boot_id() != before
    uptime = float(vm.ssh("cut -d' ' -f1 /proc/uptime").stdout)
    # the first boot took at least as long as this one has been up
    assert uptime < 1800
