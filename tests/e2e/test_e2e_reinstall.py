"""Reinstall the OS, keep the data: the walk-through of docs/reinstall.md, step by step.

The box is a systemd container from the project's Debian 12 image, reached over
SSH like any machine in an inventory; its data disk is a loop device on the
host (a GPT disk with an ext4 partition named "data", label "data") passed in
with the flags of disk_images.LOOP_BOX_ARGS. "Reinstalling the OS" is what it
is for a container: the box is destroyed and a fresh one is made from the same
image, with the same disks: a new root filesystem, no fstab entry for /data,
none of the packages dlsetup installed, and the data disk as it was.

Steps (docs/reinstall.md):
1. provision the box;
2. work: files written to /data;
3. reinstall: destroy the box, a fresh one from the same image, same disks;
4. provision again with the same inventory;
5. the data is intact byte for byte, mounted by UUID (fstab and findmnt), and
   the stack is back (fstab, the disk tools, dlsetup's local facts).

Stages: `--tags facts,disks` (preflight and base run on every run: they are
tagged always). The other stages of playbooks/site.yml (GPU driver, CUDA,
containers) have their own tests and would add minutes of package downloads
to CI without telling anything more about the data disk; with
DLSETUP_REINSTALL_FULL_SITE=1 the test provisions the whole site instead.

The re-provision wall time is printed (pytest -s shows it). The box is removed
and the loop device detached, also when a step fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import aptcache
from tests.boxes import (
    Box,
    dlsetup,
    docker_ready,
    exists,
    make_key,
    remove_boxes,
    sh,
    start_box,
    write_inventory,
)
from tests.disk_images import (
    BOX_PREFIX,
    GPT_LINUX,
    LOOP_BOX_ARGS,
    LOOP_BOX_VOLUMES,
    LoopDisks,
    blkid_value,
    build_data,
    host_problem,
)

PROBLEM = host_problem() or docker_ready()
pytestmark = [
    pytest.mark.disks,
    pytest.mark.slow,
    pytest.mark.skipif(PROBLEM is not None, reason=f"needs root, loop devices, docker: {PROBLEM}"),
]

BOX = f"{BOX_PREFIX}reinstall"
FULL_SITE = os.environ.get("DLSETUP_REINSTALL_FULL_SITE") == "1"
TAGS = [] if FULL_SITE else ["--tags", "facts,disks"]
# What "the stack" is after a provision with these stages. The data disk is
# ext4: the inventory names only the disk tools it needs (disk_layout_packages),
# which saves CI the download of xfs, btrfs and NTFS tools.
STACK_PACKAGES = ["parted", "fdisk", "e2fsprogs"]
STACK_FILES = ["/etc/ansible/facts.d/dl.fact"]
WORK = {  # files the user's work leaves on /data: path -> size in bytes
    "projects/llm/checkpoints/step-1000.pt": 3 * 1024 * 1024,
    "projects/llm/notes.md": 4096,
    "datasets/cifar10/train.bin": 2 * 1024 * 1024,
}


@dataclass
class Machine:
    workdir: Path
    disks: LoopDisks
    data_disk: str
    key: Path
    pub: str
    box: Box | None = None
    passed: set[str] = field(default_factory=set)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def partition(self) -> str:
        return f"{self.data_disk}p1"

    def start(self) -> Box:
        """A freshly installed machine: the image as it comes, the same disks."""
        self.box = start_box(
            BOX,
            self.pub,
            volumes=[aptcache.archive_volume("disk-debian12"), *LOOP_BOX_VOLUMES],
            extra_args=LOOP_BOX_ARGS,
        )
        return self.box

    def inventory(self) -> Path:
        """The user's inventory: the box's address and its disk spec (docs/reinstall.md)."""
        assert self.box is not None
        spec = [
            {
                "device": self.data_disk,
                "partitions": [
                    {
                        "name": "data",
                        "fs_label": "data",
                        "size": "100%",
                        "fstype": "ext4",
                        "mount": "/data",
                        "mount_options": "defaults,nofail",
                    }
                ],
            }
        ]
        return write_inventory(
            self.workdir / "inventory" / "hosts.yml",
            self.key,
            {
                "box1": {
                    "ansible_host": self.box.address,
                    "disk_layout_disks": spec,
                    "disk_layout_packages": STACK_PACKAGES,
                }
            },
        )

    def provision(self) -> Any:
        return dlsetup("provision", "--host", "box1", "-i", str(self.inventory()), "--json", *TAGS)

    def require(self, *steps: str) -> None:
        missing = [s for s in steps if s not in self.passed]
        if missing:
            pytest.skip(f"needs the earlier step(s) {missing} to have passed")


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    workdir = tmp_path_factory.mktemp("reinstall")
    disks = LoopDisks(workdir)
    try:
        data_disk = build_data(disks)
        key, pub = make_key(workdir)
        yield Machine(workdir, disks, data_disk, key, pub)
    finally:
        remove_boxes([BOX])
        disks.cleanup()


def data_digests() -> dict[str, str]:
    out = sh(
        BOX,
        "cd /data && find . -type f ! -path './lost+found/*' -print0 | sort -z | xargs -0 sha256sum",
    )
    return {line.split("  ", 1)[1][2:]: line.split()[0] for line in out.splitlines()}


def fstab_line(path: str) -> list[str]:
    for line in sh(BOX, "cat /etc/fstab").splitlines():
        f = line.split()
        if len(f) >= 2 and not f[0].startswith("#") and f[1] == path:
            return f
    return []


def check_stack() -> None:
    missing = sh(
        BOX,
        "for p in " + " ".join(STACK_PACKAGES) + "; do "
        "dpkg-query -W -f='${Status}\\n' $p 2>/dev/null | grep -q 'install ok installed' || echo $p; "
        "done",
    ).split()
    assert missing == [], f"packages not installed: {missing}"
    for path in STACK_FILES:
        sh(BOX, f"test -s {path}")


def check_data_mounted_by_uuid(machine: Machine) -> str:
    uuid = blkid_value(machine.partition, "UUID")
    assert uuid
    line = fstab_line("/data")
    assert line[:3] == [f"UUID={uuid}", "/data", "ext4"], line
    assert "nofail" in line[3].split(",")
    assert sh(BOX, "findmnt --fstab -n -o SOURCE /data").strip() == f"UUID={uuid}"
    mounted = sh(BOX, "findmnt -n -o SOURCE,UUID,FSTYPE /data").split()
    assert mounted == [machine.partition, uuid, "ext4"], mounted
    return uuid


def test_1_provision_the_box(machine: Machine) -> None:
    machine.start()
    res = machine.provision()
    assert res.rc == 0, res.stderr + res.stdout[-3000:]
    print(
        f"\nfirst provision ({'full site' if FULL_SITE else 'tags facts,disks'}): {res.seconds:.1f} s"
    )
    machine.state["uuid"] = check_data_mounted_by_uuid(machine)
    check_stack()
    machine.passed.add("provisioned")


def test_2_work_on_data(machine: Machine) -> None:
    machine.require("provisioned")
    for rel, size in WORK.items():
        sh(
            BOX,
            f'mkdir -p "$(dirname /data/{rel})" && '
            f"head -c {size} /dev/urandom > /data/{rel} && chown -R dl: /data/projects",
        )
    sh(BOX, "sync")
    machine.state["digests"] = data_digests()
    assert set(WORK) <= set(machine.state["digests"])
    machine.passed.add("work")


def test_3_reinstall_the_os(machine: Machine) -> None:
    machine.require("work")
    first_address = machine.box.address if machine.box else None
    remove_boxes([BOX])
    os.sync()
    box = machine.start()
    # A fresh system: no /data in fstab, nothing mounted there, no dlsetup stack.
    assert fstab_line("/data") == []
    assert sh(BOX, "findmnt -n /data", check=False).strip() == ""
    assert not exists(BOX, "/etc/ansible/facts.d/dl.fact")
    assert (
        sh(BOX, "dpkg-query -W -f='${Status}' parted 2>/dev/null || true").find("ok installed") < 0
    )
    # The data disk is the same disk, untouched by the reinstall.
    assert blkid_value(machine.partition, "UUID") == machine.state["uuid"]
    assert blkid_value(machine.partition, "PART_ENTRY_TYPE").upper() == GPT_LINUX
    print(f"\nreinstalled: box {first_address} -> {box.address}")
    machine.passed.add("reinstalled")


def test_4_provision_again_brings_everything_back(machine: Machine) -> None:
    machine.require("reinstalled")
    res = machine.provision()
    assert res.rc == 0, res.stderr + res.stdout[-3000:]
    print(f"\nre-provision after the reinstall: {res.seconds:.1f} s wall time")
    assert res.doc["hosts"]["box1"]["failed"] == 0
    # The data: the same filesystem, mounted by UUID, every file byte for byte.
    assert check_data_mounted_by_uuid(machine) == machine.state["uuid"]
    assert data_digests() == machine.state["digests"]
    # The plan did not create or format anything on the data disk.
    plan = res.doc["hosts"]["box1"]
    assert not [c for c in plan["changes"] if c["action"] in ("community.general.filesystem",
                                                              "community.general.parted")]  # fmt: skip
    check_stack()
