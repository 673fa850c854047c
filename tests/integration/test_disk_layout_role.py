"""The disk_layout role on real (loop-device) disks, driven by ansible-playbook.

Runs on the host as root: builds a dual-boot disk (ESP, MSR, NTFS with files,
Windows recovery, linux root, free space), a data disk with files and a blank
disk, applies playbooks/disks.yml to localhost and checks the disks, the files
on them, the fstab and the mounts after each step. Mounts go under a temporary
directory and the fstab, adjtime and GRUB files are temporary ones too: the
host's /etc is never touched.

This kernel has no vfat driver: the ESP is read with mtools and its /boot/efi
entry is checked in fstab (mount_state: present), not mounted.

Every loop device is detached and every mount unmounted, also when a test fails.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.disk_images import (
    DATA_FILES,
    ESP_FILES,
    NTFS_FILES,
    LoopDisks,
    blkid_value,
    build_blank,
    build_data,
    build_dualboot,
    current_mountpoint,
    esp_digest,
    fs_digest,
    host_problem,
    lab_spec,
    run_role,
    sh,
    table_digest,
)

PROBLEM = host_problem()
pytestmark = [
    pytest.mark.disks,
    pytest.mark.skipif(PROBLEM is not None, reason=f"disk tests need the host: {PROBLEM}"),
]

GRUB_DEFAULTS = 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'


@dataclass
class Lab:
    workdir: Path
    disks: LoopDisks
    dev: dict[str, str]
    images: dict[str, Path]
    baseline: dict = field(default_factory=dict)
    passed: set[str] = field(default_factory=set)
    state: dict = field(default_factory=dict)

    def part(self, disk: str, number: int) -> str:
        return f"{self.dev[disk]}p{number}"

    def spec(self) -> list[dict]:
        return lab_spec(**self.dev)

    def files(self) -> dict[str, dict[str, str]]:
        """Checksums of every file on the ESP, both NTFS partitions and the data disk."""
        os.sync()
        return {
            "esp": esp_digest(self.disks, self.part("dualboot", 1)),
            "ntfs": fs_digest(self.disks, self.part("dualboot", 3), ntfs=True),
            "recovery": fs_digest(self.disks, self.part("dualboot", 4), ntfs=True),
            "data": fs_digest(self.disks, self.part("data", 1)),
        }

    def tables(self) -> dict[str, str]:
        os.sync()
        return {name: table_digest(image) for name, image in self.images.items()}

    def fstab(self) -> dict[str, list[str]]:
        path = self.workdir / "fstab"
        if not path.exists():
            return {}
        return {
            f[1]: f
            for f in (line.split() for line in path.read_text().splitlines())
            if f and not f[0].startswith("#")
        }

    def root(self, path: str = "") -> str:
        return str(self.workdir / "root") + path

    def require(self, *steps: str) -> None:
        missing = [s for s in steps if s not in self.passed]
        if missing:
            pytest.skip(f"needs the earlier step(s) {missing} to have passed")

    def run(self, spec: list[dict] | None = None, **variables):
        variables.setdefault("disk_layout_disks", spec if spec is not None else self.spec())
        return run_role(
            self.workdir,
            variables,
            check=variables.pop("check", False),
            diff=variables.pop("diff", False),
        )


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("disk-lab")
    disks = LoopDisks(workdir)
    try:
        dev = {
            "dualboot": build_dualboot(disks),
            "data": build_data(disks),
            "blank": build_blank(disks),
        }
        images = {name: workdir / f"{name}.img" for name in dev}
        lab = Lab(workdir, disks, dev, images)
        lab.baseline = {"files": lab.files(), "tables": lab.tables()}
        # The images carry what they were built with.
        assert set(lab.baseline["files"]["esp"]) == set(ESP_FILES)
        assert set(lab.baseline["files"]["ntfs"]) == set(NTFS_FILES)
        assert set(lab.baseline["files"]["data"]) == set(DATA_FILES)
        yield lab
    finally:
        disks.cleanup()


@pytest.fixture
def scratch_disks(tmp_path):
    disks = LoopDisks(tmp_path)
    try:
        yield disks
    finally:
        disks.cleanup()


def mounted_under(workdir: Path) -> list[str]:
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        return [
            line.split()[1] for line in handle if line.split()[1].startswith(str(workdir / "root"))
        ]


def uuid_of(node: str) -> str | None:
    return blkid_value(node, "UUID")


class TestDualBootLab:
    """One lab, in order: plan, apply, re-apply, refuse, reinstall, wipe."""

    def test_check_mode_shows_the_plan_and_changes_nothing(self, lab: Lab):
        grub_absent = lab.workdir / "no-grub-here"
        run = lab.run(
            check=True,
            diff=True,
            disk_layout_rtc_local=True,
            __disk_layout_grub_default_file=str(grub_absent),
        )
        assert run.rc == 0, run.explain()
        plan = run.plan
        assert plan["changed"] is False
        assert plan["summary"] == {"create_table": 1, "create_partition": 3, "mkfs": 3, "mount": 5}
        report = plan["report"]
        data_uuid = uuid_of(lab.part("data", 1))
        for line in (
            f"create gpt partition table on {lab.dev['blank']}",
            f"create partition #6 'scratch' on {lab.dev['dualboot']}: sectors 460800-1046527",
            f"create partition #1 'models' on {lab.dev['blank']}",
            f"format {lab.part('dualboot', 6)} as ext4 (new partition)",
            f"format {lab.part('blank', 1)} as ext4 label models (new partition)",
            f"mount UUID={data_uuid} at {lab.root('/data')} (ext4 defaults,nofail)",
            f"record in fstab (not mounted now) UUID={uuid_of(lab.part('dualboot', 1))} at "
            f"{lab.root('/boot/efi')}",
        ):
            assert line in report, report
        assert [u["name"] for u in plan["unmanaged"]] == ["Recovery"]
        fact = run.result("Record the plan as the fact disk_layout_plan")["ansible_facts"]
        assert fact["disk_layout_plan"]["summary"] == plan["summary"]
        assert "GRUB is not installed here" in run.result("Say why GRUB was left alone")["msg"]
        # Nothing changed: tables byte-identical, files, no fstab, no mounts, no adjtime.
        assert lab.tables() == lab.baseline["tables"]
        assert lab.files() == lab.baseline["files"]
        assert not (lab.workdir / "fstab").exists()
        assert not (lab.workdir / "adjtime").exists()
        assert mounted_under(lab.workdir) == []
        assert blkid_value(lab.dev["blank"], "PTTYPE") is None
        lab.passed.add("check")

    def test_first_run_creates_formats_and_mounts(self, lab: Lab):
        (lab.workdir / "default-grub").write_text(GRUB_DEFAULTS)
        run = lab.run(disk_layout_rtc_local=True)
        assert run.rc == 0, run.explain()
        assert run.plan["summary"]["create_partition"] == 3
        # The blank disk got a GPT and its two partitions; the dual-boot disk its scratch.
        assert blkid_value(lab.dev["blank"], "PTTYPE") == "gpt"
        table = json.loads(sh("sfdisk", "--json", lab.dev["blank"]).stdout)["partitiontable"]
        assert [p["name"] for p in table["partitions"]] == ["models", "cache"]
        assert blkid_value(lab.part("blank", 1), "LABEL") == "models"
        table = json.loads(sh("sfdisk", "--json", lab.dev["dualboot"]).stdout)["partitiontable"]
        assert [p["name"] for p in table["partitions"]][-1] == "scratch"
        assert blkid_value(lab.part("dualboot", 6), "TYPE") == "ext4"
        # Existing partitions untouched: same filesystems, same files.
        assert uuid_of(lab.part("dualboot", 5)) is not None
        assert lab.files() == lab.baseline["files"]
        # fstab by UUID; data mounts with nofail; the ESP only in fstab (no vfat here).
        fstab = lab.fstab()
        assert fstab[lab.root("/data")] == [
            f"UUID={uuid_of(lab.part('data', 1))}",
            lab.root("/data"),
            "ext4",
            "defaults,nofail",
            "0",
            "2",
        ]
        assert fstab[lab.root("/scratch")][3] == "defaults,noatime,nofail"
        assert fstab[lab.root("/models")][3] == "defaults,nofail"
        assert fstab[lab.root("/boot/efi")][:4] == [
            f"UUID={uuid_of(lab.part('dualboot', 1))}",
            lab.root("/boot/efi"),
            "vfat",
            "defaults",
        ]
        assert fstab[lab.root()][0] == f"UUID={uuid_of(lab.part('dualboot', 5))}"
        assert all(entry[0].startswith("UUID=") for entry in fstab.values())
        assert current_mountpoint(lab.part("data", 1)) == lab.root("/data")
        assert current_mountpoint(lab.part("dualboot", 6)) == lab.root("/scratch")
        assert current_mountpoint(lab.part("blank", 1)) == lab.root("/models")
        assert current_mountpoint(lab.part("dualboot", 1)) is None
        assert Path(lab.root("/boot/efi")).is_dir()
        # The partition not in the spec is reported and left alone.
        assert [u["name"] for u in run.plan["unmanaged"]] == ["Recovery"]
        # Dual-boot care: GRUB told to run os-prober, menu regenerated; RTC in local time.
        assert "GRUB_DISABLE_OS_PROBER=false" in (lab.workdir / "default-grub").read_text()
        assert (lab.workdir / "grub-menu-regenerated").exists()
        assert (lab.workdir / "adjtime").read_text().splitlines()[2] == "LOCAL"
        (Path(lab.root("/scratch")) / "experiment.log").write_text("epoch 1 loss 0.42\n")
        lab.state["tables"] = lab.tables()
        lab.state["fstab"] = (lab.workdir / "fstab").read_text()
        lab.passed.add("first run")

    def test_second_run_changes_nothing(self, lab: Lab):
        lab.require("first run")
        (lab.workdir / "grub-menu-regenerated").unlink()
        run = lab.run(disk_layout_rtc_local=True)
        assert run.rc == 0, run.explain()
        assert run.changed == 0, run.explain()
        assert run.plan["actions"] == []
        assert "nothing to do: the disks match the spec" in run.plan["report"]
        assert lab.tables() == lab.state["tables"]
        assert (lab.workdir / "fstab").read_text() == lab.state["fstab"]
        assert lab.files() == lab.baseline["files"]
        assert not (lab.workdir / "grub-menu-regenerated").exists()
        lab.passed.add("second run")

    def test_refused_run_changes_nothing(self, lab: Lab):
        lab.require("first run")
        spec = lab.spec()
        spec[1]["partitions"][0]["fstype"] = "xfs"
        mounts = mounted_under(lab.workdir)
        run = lab.run(spec)
        assert run.rc != 0
        message = run.failure_messages()
        assert f"{lab.part('data', 1)} holds ext4, spec says xfs" in message, message
        assert "'data'" in message and "nothing was changed" in message
        assert run.changed == 0
        assert lab.tables() == lab.state["tables"]
        assert (lab.workdir / "fstab").read_text() == lab.state["fstab"]
        assert mounted_under(lab.workdir) == mounts
        assert lab.files() == lab.baseline["files"]

    def test_reinstall_finds_and_mounts_the_data_disk(self, lab: Lab):
        lab.require("first run")
        data_uuid = uuid_of(lab.part("data", 1))
        # A fresh OS: new root filesystem, empty fstab, nothing mounted, GRUB defaults anew.
        lab.disks.unmount_all()
        sh("mkfs.ext4", "-F", "-q", "-L", "linux-root", lab.part("dualboot", 5))
        (lab.workdir / "fstab").write_text("")
        (lab.workdir / "default-grub").write_text(GRUB_DEFAULTS)
        run = lab.run(disk_layout_rtc_local=False)
        assert run.rc == 0, run.explain()
        summary = run.plan["summary"]
        assert (summary["create_partition"], summary["mkfs"]) == (0, 0)
        assert uuid_of(lab.part("data", 1)) == data_uuid
        assert lab.fstab()[lab.root("/data")][0] == f"UUID={data_uuid}"
        assert lab.fstab()[lab.root()][0] == f"UUID={uuid_of(lab.part('dualboot', 5))}"
        assert current_mountpoint(lab.part("data", 1)) == lab.root("/data")
        assert lab.files() == lab.baseline["files"]
        assert (Path(lab.root("/scratch")) / "experiment.log").read_text() == "epoch 1 loss 0.42\n"
        assert "GRUB_DISABLE_OS_PROBER=false" in (lab.workdir / "default-grub").read_text()
        assert (lab.workdir / "adjtime").read_text().splitlines()[2] == "UTC"
        lab.passed.add("reinstall")

    def test_wipe_is_opt_in_and_never_touches_windows(self, lab: Lab):
        lab.require("first run")
        tables = lab.tables()
        spec = lab.spec()
        spec[0]["partitions"][2].update(fstype="ext4", preserve=False, wipe=True)
        run = lab.run(spec, disk_layout_safe_mode=False)
        assert run.rc != 0
        message = run.failure_messages()
        assert f"{lab.part('dualboot', 3)} holds ntfs, spec says ext4" in message, message
        assert "never formatted, not even with wipe: true" in message
        assert lab.tables() == tables
        assert lab.files() == lab.baseline["files"]
        # The one partition the spec marks wipe: true, with safe mode off, is reformatted.
        spec = lab.spec()
        spec[2]["partitions"][1].update(fstype="vfat", wipe=True)
        run = lab.run(spec, disk_layout_safe_mode=False)
        assert run.rc == 0, run.explain()
        assert blkid_value(lab.part("blank", 2), "TYPE") == "vfat"
        assert [a["reason"] for a in run.plan["actions"] if a["action"] == "mkfs"] == [
            "wipe: ext4 -> vfat"
        ]
        assert lab.tables() == tables
        assert lab.files() == lab.baseline["files"]


def test_spec_that_does_not_fit_fails_before_any_change(scratch_disks, tmp_path):
    blank = build_blank(scratch_disks)
    before = table_digest(tmp_path / "blank.img")
    spec = [
        {
            "device": blank,
            "table": "gpt",
            "partitions": [
                {"name": "first", "size": "40MiB", "fstype": "ext4"},
                {"name": "second", "size": "40MiB", "fstype": "ext4", "mount": "/second"},
            ],
        }
    ]
    run = run_role(tmp_path / "role", {"disk_layout_disks": spec})
    assert run.rc != 0
    message = run.failure_messages()
    assert (
        "'second' [disk_layout_disks[0].partitions[1].size]: does not fit: needs 40 MiB" in message
    ), message
    assert blkid_value(blank, "PTTYPE") is None
    assert table_digest(tmp_path / "blank.img") == before
    assert not (tmp_path / "role" / "fstab").exists()


def test_preserve_on_a_missing_partition_fails_naming_it(scratch_disks, tmp_path):
    data = build_data(scratch_disks)
    before = (table_digest(tmp_path / "data.img"), fs_digest(scratch_disks, f"{data}p1"))
    spec = [
        {
            "device": data,
            "partitions": [
                {
                    "name": "EFI",
                    "size": "512MiB",
                    "fstype": "vfat",
                    "mount": "/boot/efi",
                    "preserve": True,
                },
                {"name": "data", "size": "100%", "fstype": "ext4", "mount": "/data"},
            ],
        }
    ]
    run = run_role(tmp_path / "role", {"disk_layout_disks": spec})
    assert run.rc != 0
    message = run.failure_messages()
    assert f"{data} 'EFI'" in message
    assert f"partition 'EFI' (preserve: true) was not found on {data}" in message, message
    assert (table_digest(tmp_path / "data.img"), fs_digest(scratch_disks, f"{data}p1")) == before
    assert not (tmp_path / "role" / "fstab").exists()


def test_unknown_key_is_rejected_before_any_task(tmp_path):
    spec = [
        {
            "device": "/dev/disk/by-id/nvme-X",
            "partitions": [{"name": "data", "size": "100%", "fs_type": "ext4"}],
        }
    ]
    run = run_role(tmp_path / "role", {"disk_layout_disks": spec})
    assert run.rc != 0
    message = run.failure_messages()
    assert "fs_type" in message and "disk_layout_disks" in message, message
    assert run.results("Plan the disk layout") == []


def test_bad_size_is_rejected_naming_the_field(scratch_disks, tmp_path):
    blank = build_blank(scratch_disks)
    spec = [
        {
            "device": blank,
            "table": "gpt",
            "partitions": [{"name": "data", "size": "10GB", "fstype": "ext4"}],
        }
    ]
    run = run_role(tmp_path / "role", {"disk_layout_disks": spec})
    assert run.rc != 0
    message = run.failure_messages()
    assert "[disk_layout_disks[0].partitions[0].size]: size '10GB' is not valid" in message, message
    assert "MiB, GiB or TiB" in message
    assert blkid_value(blank, "PTTYPE") is None
