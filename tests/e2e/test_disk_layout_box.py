"""The disk_layout role in a box with real disks, through the real CLI, checked with testinfra.

A systemd container (the stand-in for a freshly installed machine, reached over
SSH like any box in an inventory) gets the host's loop devices (the flags in
disk_images.LOOP_BOX_ARGS, from /work/shared/TESTING.md): a dual-boot disk (ESP
with files, Microsoft reserved, NTFS "Windows" with files, Windows recovery,
linux-root, free space) and a data disk (ext4 "data" with files). Then:

1. `dlsetup plan --host box --tags disks` on the fresh box changes nothing;
2. `dlsetup provision --host box --tags disks` creates /scratch in the free
   space, mounts /data and /scratch, writes fstab by UUID; testinfra checks the
   mounts and the fstab lines, and the untouched partitions (ESP, MSR, NTFS,
   recovery) are byte-identical (sha256 of the whole partition) with every file
   on the ESP (read with mtools: this kernel has no vfat), on NTFS and on the
   data disk unchanged;
3. a second provision reports changed=0 and changes nothing (a plan on the
   provisioned box would only repeat that; left out for CI time).

/ and /boot/efi are fstab-only (/ is the box's overlay root; the ESP cannot be
mounted here). Every loop device is detached and the box removed, also when a
test fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import testinfra

from tests import aptcache
from tests.boxes import dlsetup, docker_ready, make_key, remove_boxes, start_box, write_inventory
from tests.disk_images import (
    BOX_PREFIX,
    LOOP_BOX_ARGS,
    LOOP_BOX_VOLUMES,
    LoopDisks,
    blkid_value,
    build_data,
    build_dualboot,
    esp_digest,
    fs_digest,
    host_problem,
    lab_spec,
    raw_digest,
    table_digest,
)

PROBLEM = host_problem() or docker_ready()
pytestmark = [
    pytest.mark.disks,
    pytest.mark.skipif(PROBLEM is not None, reason=f"needs root, loop devices, docker: {PROBLEM}"),
]

BOX = f"{BOX_PREFIX}box"
UNTOUCHED = {"esp": 1, "msr": 2, "ntfs": 3, "recovery": 4}


@dataclass
class Lab:
    workdir: Path
    disks: LoopDisks
    dev: dict[str, str]
    inventory: Path
    baseline: dict[str, Any] = field(default_factory=dict)
    passed: set[str] = field(default_factory=set)

    def part(self, disk: str, number: int) -> str:
        return f"{self.dev[disk]}p{number}"

    def untouched(self) -> dict[str, Any]:
        """Raw checksums first (reading files mounts NTFS read-only), then file checksums."""
        os.sync()
        raw = {name: raw_digest(self.part("dualboot", n)) for name, n in UNTOUCHED.items()}
        return {
            "raw": raw,
            "esp_files": esp_digest(self.disks, self.part("dualboot", 1)),
            "ntfs_files": fs_digest(self.disks, self.part("dualboot", 3), ntfs=True),
        }

    def state(self, host: Any) -> dict[str, Any]:
        """What a plan must not change: tables, the box's fstab and mounts."""
        return {
            "tables": {d: table_digest(self.workdir / f"{d}.img") for d in self.dev},
            "fstab": host.file("/etc/fstab").content_string,
            "mounts": host.check_output("findmnt -rn -o TARGET,SOURCE,FSTYPE | sort"),
        }

    def provision(self, *extra: str) -> Any:
        return dlsetup(
            "provision", "--host", "box", "-i", str(self.inventory), "--tags", "disks", "--json",
            *extra,
        )  # fmt: skip

    def plan(self) -> Any:
        return dlsetup(
            "plan", "--host", "box", "-i", str(self.inventory), "--tags", "disks", "--json"
        )

    def require(self, *steps: str) -> None:
        missing = [s for s in steps if s not in self.passed]
        if missing:
            pytest.skip(f"needs the earlier step(s) {missing} to have passed")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("disk-box")
    disks = LoopDisks(workdir)
    try:
        dev = {"dualboot": build_dualboot(disks), "data": build_data(disks)}
        key, pub = make_key(workdir)
        box = start_box(
            BOX,
            pub,
            volumes=[aptcache.archive_volume("disk-debian12"), *LOOP_BOX_VOLUMES],
            extra_args=LOOP_BOX_ARGS,
        )
        spec = lab_spec(dev["dualboot"], dev["data"], "/dev/unused")[:2]
        inv = write_inventory(
            workdir / "inv" / "hosts.yml",
            key,
            {
                "box": {
                    "ansible_host": box.address,
                    "disk_layout_disks": spec,
                    # What this layout needs (the role never mounts NTFS or
                    # makes vfat): less to install in CI than the default list.
                    "disk_layout_packages": ["parted", "fdisk", "e2fsprogs"],
                }
            },
        )
        lab = Lab(workdir, disks, dev, inv)
        lab.baseline = {
            **lab.untouched(),
            "data_files": fs_digest(disks, lab.part("data", 1)),
            "data_uuid": blkid_value(lab.part("data", 1), "UUID"),
        }
        yield lab
    finally:
        remove_boxes([BOX])
        disks.cleanup()


@pytest.fixture(scope="module")
def host(lab: Lab) -> Any:
    return testinfra.get_host(f"docker://{BOX}")


def box_digests(host: Any, root: str) -> dict[str, str]:
    out = host.check_output(
        f"cd {root} && find . -type f ! -path './lost+found/*' -print0 | sort -z | "
        "xargs -0 sha256sum"
    )
    return {line.split("  ", 1)[1][2:]: line.split()[0] for line in out.splitlines()}


def fstab(host: Any) -> dict[str, list[str]]:
    return {
        f[1]: f
        for f in (line.split() for line in host.file("/etc/fstab").content_string.splitlines())
        if len(f) >= 4 and not f[0].startswith("#")
    }


def test_plan_on_the_fresh_box_changes_nothing(lab: Lab, host: Any) -> None:
    before = lab.state(host)
    res = lab.plan()
    assert res.rc == 0, res.stderr + res.stdout[-3000:]
    changes = res.doc["hosts"]["box"]["changes"]
    assert any(c["kind"] == "disk" for c in changes), changes
    assert lab.state(host) == before
    assert lab.untouched() == {k: lab.baseline[k] for k in ("raw", "esp_files", "ntfs_files")}
    lab.passed.add("plan-fresh")


def test_first_provision_lays_out_the_disks(lab: Lab, host: Any) -> None:
    res = lab.provision()
    assert res.rc == 0, res.stderr + res.stdout[-3000:]
    assert res.doc["hosts"]["box"]["changed"] > 0
    print(f"first provision --tags disks: {res.seconds:.1f} s")

    for path in ("/data", "/scratch"):
        mp = host.mount_point(path)
        assert mp.exists, path
        assert mp.filesystem == "ext4"
    scratch = host.check_output("findmnt -n -o SOURCE /scratch")
    assert scratch == lab.part("dualboot", 6)
    assert host.check_output("findmnt -n -o SOURCE /data") == lab.part("data", 1)

    entries = fstab(host)
    expected = {
        "/": lab.part("dualboot", 5),
        "/boot/efi": lab.part("dualboot", 1),
        "/data": lab.part("data", 1),
        "/scratch": lab.part("dualboot", 6),
    }
    for path, node in expected.items():
        assert path in entries, f"{path} not in fstab:\n{host.file('/etc/fstab').content_string}"
        assert entries[path][0] == f"UUID={blkid_value(node, 'UUID')}", entries[path]
    assert entries["/data"][2] == "ext4" and "nofail" in entries["/data"][3].split(",")
    assert entries["/scratch"][3] == "defaults,noatime,nofail"
    assert entries["/boot/efi"][2] == "vfat"
    # The data disk was mounted, not formatted: same filesystem, same files.
    assert blkid_value(lab.part("data", 1), "UUID") == lab.baseline["data_uuid"]
    assert box_digests(host, "/data") == lab.baseline["data_files"]
    assert lab.untouched() == {k: lab.baseline[k] for k in ("raw", "esp_files", "ntfs_files")}
    lab.passed.add("first")


def test_second_provision_changes_nothing(lab: Lab, host: Any) -> None:
    lab.require("first")
    before = lab.state(host)
    # every task of the disks stage walked again (not the no-op path's one read)
    res = lab.provision("--verify-all")
    assert res.rc == 0, res.stderr + res.stdout[-3000:]
    assert res.doc["hosts"]["box"]["changed"] == 0, res.doc["hosts"]["box"]["changes"]
    assert res.doc["hosts"]["box"]["unchanged_stages"] == []
    assert lab.state(host) == before
    assert box_digests(host, "/data") == lab.baseline["data_files"]
    assert lab.untouched() == {k: lab.baseline[k] for k in ("raw", "esp_files", "ntfs_files")}
    lab.passed.add("second")
