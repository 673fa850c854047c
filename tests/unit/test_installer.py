"""`dlsetup installer-config`: the storage answers for an OS reinstall.

The rendered output is parsed (yaml.safe_load for autoinstall, debconf
key/value lines for preseed) and checked: every partition but the root is kept
(preserve: true, never formatted), only the root is formatted. Partition tables
come from the recorded `sfdisk --json` of the loop-device images the role tests
use (tests/fixtures/disk_layout/), so the numbers and sizes are real ones.

The preseed's partman/early_command is also run for real against a dual-boot
disk image (root, loop devices): it must refuse, changing nothing, when it
cannot be sure where the new root goes, and otherwise delete only the root.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dlsetup import cli, installer

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "disk_layout"
SAMPLE = REPO / "inventory" / "sample"

NVME = "/dev/disk/by-id/nvme-Samsung_SSD_960_EVO_1TB_S3X9NB0K000000"
HDD = "/dev/disk/by-id/ata-WDC_WD30EFRX-68EUZN0_WD-WCC4N0000000"


def lab_spec(dualboot: str, data: str, blank: str) -> list[dict[str, Any]]:
    from tests.disk_images import lab_spec as spec  # noqa: PLC0415

    return spec(dualboot, data, blank)


@pytest.fixture
def recorded(tmp_path: Path) -> dict[str, Any]:
    """The lab disks after a first role run: their sfdisk tables and an inventory."""
    doc = json.loads((FIXTURES / "after-first-run.json").read_text())
    devices = doc["devices"]
    tables = []
    for name, dev in devices.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc["facts"][dev]["sfdisk"]))
        tables.append(f"{dev}={path}")
    inv = write_inventory(tmp_path / "inv", {"box1": {"disk_layout_disks": lab_spec(**devices)}})
    return {"devices": devices, "tables": tables, "inventory": inv}


def write_inventory(path: Path, hosts: dict[str, dict[str, Any]]) -> Path:
    (path / "host_vars").mkdir(parents=True, exist_ok=True)
    (path / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"hosts": {h: {"ansible_host": "127.0.0.1"} for h in hosts}}})
    )
    for host, hv in hosts.items():
        (path / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(hv))
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(["installer-config", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def tables_args(tables: list[str]) -> list[str]:
    return [a for t in tables for a in ("--table", t)]


def actions(doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [a for a in doc["autoinstall"]["storage"]["config"] if a["type"] == kind]


# ----------------------------------------------------------------- autoinstall


def test_autoinstall_keeps_every_partition_and_formats_only_the_root(recorded, capsys):
    rc, out, err = run_cli(
        capsys, "--host", "box1", "-i", str(recorded["inventory"]), *tables_args(recorded["tables"])
    )
    assert rc == 0, err
    assert out.startswith("#cloud-config\n")
    doc = yaml.safe_load(out)
    assert doc["autoinstall"]["version"] == 1
    config = doc["autoinstall"]["storage"]["config"]

    disks = actions(doc, "disk")
    dev = recorded["devices"]
    assert [d["path"] for d in disks] == [dev["dualboot"], dev["data"], dev["blank"]]
    assert all(d["preserve"] is True and d["ptable"] == "gpt" for d in disks)

    parts = {p["id"]: p for p in actions(doc, "partition")}
    assert all(p["preserve"] is True for p in parts.values()), parts
    # The real numbers: the Windows recovery partition (not in the spec) is 4,
    # so linux-root is 5 and scratch 6; the recovery partition is kept too.
    assert sorted(parts) == [
        "disk0-part1",
        "disk0-part2",
        "disk0-part3",
        "disk0-part4",
        "disk0-part5",
        "disk0-part6",
        "disk1-part1",
        "disk2-part1",
        "disk2-part2",
    ]
    assert parts["disk0-part1"]["size"] == 32 * 1024 * 1024
    assert parts["disk0-part1"]["flag"] == "boot" and parts["disk0-part1"]["grub_device"] is True
    assert parts["disk0-part2"]["flag"] == "msftres"
    assert parts["disk0-part5"]["size"] == 96 * 1024 * 1024

    formats = actions(doc, "format")
    formatted = [f for f in formats if f.get("preserve") is not True]
    assert [f["volume"] for f in formatted] == ["disk0-part5"]
    assert formatted[0]["fstype"] == "ext4"
    kept = {f["volume"]: f["fstype"] for f in formats if f["preserve"] is True}
    assert kept == {
        "disk0-part1": "fat32",
        "disk0-part3": "ntfs",
        "disk0-part6": "ext4",
        "disk1-part1": "ext4",
        "disk2-part1": "ext4",
        "disk2-part2": "ext4",
    }
    # curtin checks every kept partition before it formats anything.
    kinds = [a["type"] for a in config]
    assert max(i for i, k in enumerate(kinds) if k == "partition") < kinds.index("format")

    mounts = {m["path"]: m for m in actions(doc, "mount")}
    assert mounts["/"]["device"] == "disk0-part5-fs"
    assert mounts["/data"]["device"] == "disk1-part1-fs"
    assert mounts["/data"]["options"] == "defaults,nofail"
    assert mounts["/scratch"]["options"] == "defaults,noatime,nofail"
    assert mounts["/boot/efi"]["device"] == "disk0-part1-fs"
    assert actions(doc, "mount")[0]["path"] == "/"
    ids = [a["id"] for a in config]
    assert len(ids) == len(set(ids))
    for a in config:  # every reference points at an action defined before it
        for ref in ("device", "volume"):
            if ref in a:
                assert ids.index(a[ref]) < ids.index(a["id"]), a


def test_autoinstall_from_the_spec_alone_uses_its_order_and_sizes(tmp_path, capsys):
    spec = [
        {
            "device": NVME,
            "partitions": [
                {"name": "EFI", "size": "512MiB", "fstype": "vfat", "mount": "/boot/efi",
                 "preserve": True, "mount_options": "umask=0077"},
                {"name": "Microsoft reserved partition", "size": "16MiB", "preserve": True},
                {"name": "Basic data partition", "size": "200GiB", "fstype": "ntfs",
                 "preserve": True},
                {"name": "linux-root", "size": "300GiB", "fstype": "ext4", "mount": "/",
                 "preserve": True},
            ],
        },
        {
            "device": "/dev/disk/by-id/wwn-0x50014ee2b5a1c2d3",
            "partitions": [{"fs_label": "data", "size": "2TiB", "fstype": "xfs",
                            "mount": "/data"}],
        },
    ]  # fmt: skip
    inv = write_inventory(tmp_path / "inv", {"ws": {"disk_layout_disks": spec}})
    rc, out, err = run_cli(capsys, "--host", "ws", "-i", str(inv))
    assert rc == 0, err
    assert "come from the spec" in err
    doc = yaml.safe_load(out)
    disks = actions(doc, "disk")
    assert disks[0]["serial"] == "Samsung_SSD_960_EVO_1TB_S3X9NB0K000000"
    assert disks[1]["wwn"] == "0x50014ee2b5a1c2d3"
    parts = actions(doc, "partition")
    assert [(p["id"], p["number"], p["size"]) for p in parts] == [
        ("disk0-part1", 1, 512 * 2**20),
        ("disk0-part2", 2, 16 * 2**20),
        ("disk0-part3", 3, 200 * 2**30),
        ("disk0-part4", 4, 300 * 2**30),
        ("disk1-part1", 1, 2 * 2**40),
    ]
    assert all(p["preserve"] is True for p in parts)
    assert [f["volume"] for f in actions(doc, "format") if not f["preserve"]] == ["disk0-part4"]
    mounts = {m["path"]: m.get("options") for m in actions(doc, "mount")}
    assert mounts == {"/": None, "/data": "defaults,nofail", "/boot/efi": "umask=0077"}


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        (NVME, ("serial", "Samsung_SSD_960_EVO_1TB_S3X9NB0K000000")),
        (HDD, ("serial", "WDC_WD30EFRX-68EUZN0_WD-WCC4N0000000")),
        ("/dev/disk/by-id/wwn-0x5000c500a1b2c3d4", ("wwn", "0x5000c500a1b2c3d4")),
        ("/dev/disk/by-path/pci-0000:01:00.0-nvme-1", ("path", "/dev/disk/by-path/pci-0000:01:00.0-nvme-1")),
        ("/dev/sdb", ("path", "/dev/sdb")),
    ],
)  # fmt: skip
def test_disks_are_matched_by_serial_wwn_or_path(device, expected):
    assert installer.disk_match(device) == expected


def test_partitions_not_yet_created_are_left_to_provision(recorded, tmp_path, capsys):
    doc = json.loads((FIXTURES / "pristine.json").read_text())
    tables = []
    for name, dev in doc["devices"].items():
        path = tmp_path / f"pristine-{name}.json"
        path.write_text(json.dumps(doc["facts"][dev]["sfdisk"]))
        tables.append(f"{dev}={path}")
    # The blank disk has no table at all: give only the two that have one.
    tables = [t for t in tables if not t.startswith(doc["devices"]["blank"])]
    spec = lab_spec(**doc["devices"])[:2]
    inv = write_inventory(tmp_path / "inv2", {"box1": {"disk_layout_disks": spec}})
    rc, out, err = run_cli(capsys, "--host", "box1", "-i", str(inv), *tables_args(tables))
    assert rc == 0, err
    assert "'scratch' is not in its --table" in err
    parts = [p["id"] for p in actions(yaml.safe_load(out), "partition")]
    assert "disk0-part6" not in parts and "disk0-part4" in parts


def test_sample_machine_needs_its_tables_for_the_100_percent_partitions(capsys):
    rc, out, err = run_cli(capsys, "--host", "mybox", "-i", str(SAMPLE))
    assert rc == 2 and out == ""
    assert "disk_layout_disks[0].partitions[4].size" in err
    assert f"--table {NVME}=" in err


# ----------------------------------------------------------------- preseed


def parse_preseed(text: str) -> dict[str, tuple[str, str]]:
    """debconf lines (owner question type value), backslash continuations joined."""
    joined = re.sub(r"\\\n", " ", text)
    out: dict[str, tuple[str, str]] = {}
    for line in joined.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        owner, question, kind, value = [*line.split(None, 3), ""][:4]
        assert owner == "d-i", line
        assert question not in out, f"{question} set twice"
        out[question] = (kind, value)
    return out


def test_preseed_replaces_only_the_root(recorded, capsys):
    rc, out, err = run_cli(
        capsys,
        "--host",
        "box1",
        "-i",
        str(recorded["inventory"]),
        "--format",
        "preseed",
        *tables_args(recorded["tables"]),
    )
    assert rc == 0, err
    q = parse_preseed(out)
    # biggest_free is honoured only when partman-auto/method is not set.
    assert q["partman-auto/init_automatically_partition"] == ("select", "biggest_free")
    assert "partman-auto/method" not in q and "partman-auto/disk" not in q
    assert q["partman-partitioning/confirm_write_new_label"] == ("boolean", "false")
    assert q["partman-auto/choose_recipe"] == ("select", "dlsetup-reinstall")

    kind, recipe = q["partman-auto/expert_recipe"]
    assert kind == "string" and recipe.split()[:2] == ["dlsetup-reinstall", "::"]
    entries = [e.strip() for e in recipe.split("::", 1)[1].split(" .") if e.strip()]
    assert len(entries) == 2
    esp, root = entries
    assert "$reusemethod{ }" in esp and "method{ efi }" in esp
    assert "method{ format }" in root and "mountpoint{ / }" in root
    assert "filesystem{ ext4 }" in root
    assert recipe.count("method{ format }") == 1

    _, early = q["partman/early_command"]
    assert early.count("sfdisk --delete") == 1
    for name in ("EFI", "Microsoft reserved partition", "Basic data partition", "Recovery",
                 "scratch"):  # fmt: skip
        assert f"grep -q -F 'name=\"{name}\"'" in early, name
    assert "'name=\"linux-root\"'" in early
    assert early.index("sfdisk -F") < early.index("sfdisk --delete")
    _, late = q["preseed/late_command"]
    assert "--part-label" in late and late.rstrip().endswith("'linux-root'")


def test_preseed_needs_a_named_root(tmp_path, capsys):
    spec = [{"device": "/dev/sda", "partitions": [
        {"fs_label": "root", "size": "20GiB", "fstype": "ext4", "mount": "/"}]}]  # fmt: skip
    inv = write_inventory(tmp_path / "inv", {"ws": {"disk_layout_disks": spec}})
    rc, _, err = run_cli(capsys, "--host", "ws", "-i", str(inv), "--format", "preseed")
    assert rc == 2 and "GPT name" in err
    rc, out, _ = run_cli(capsys, "--host", "ws", "-i", str(inv))
    assert rc == 0 and yaml.safe_load(out)["autoinstall"]["storage"]["config"][2]["label"] == "root"


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("hostvars", "argv", "needle"),
    [
        ({}, ["--host", "box1"], "disk_layout_disks is not set"),
        ({"disk_layout_disks": []}, ["--host", "box1"], "disk_layout_disks is not set"),
        (
            {"disk_layout_disks": [{"device": "/dev/sdb", "partitions": [
                {"name": "data", "size": "1GiB", "fstype": "ext4", "mount": "/data"}]}]},
            ["--host", "box1"],
            "no partition has mount: /",
        ),
        (
            {"disk_layout_disks": [{"device": "/dev/sdb", "partitions": [
                {"name": "root", "size": "1GiB", "fstype": "ext4", "mount": "/", "sise": 1}]}]},
            ["--host", "box1"],
            "disk_layout_disks[0].partitions[0].sise: unknown key",
        ),
        ({}, [], "--host"),
        ({}, ["--host", "nosuchhost"], "'nosuchhost' is not a host"),
        ({}, ["--host", "box1", "--format", "kickstart"], "--format: 'kickstart'"),
        ({}, ["--host", "box1", "--table", "nodevice"], "--table nodevice: expected DEVICE=FILE"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_naming_the_field(tmp_path, capsys, hostvars, argv, needle):
    inv = write_inventory(tmp_path / "inv", {"box1": hostvars})
    rc, out, err = run_cli(capsys, *argv, "-i", str(inv))
    assert rc == 2, err
    assert out == ""
    assert needle in err


def test_table_for_a_device_not_in_the_spec(recorded, tmp_path, capsys):
    rc, _, err = run_cli(
        capsys,
        "--host",
        "box1",
        "-i",
        str(recorded["inventory"]),
        "--table",
        f"/dev/sdz={tmp_path / 'dualboot.json'}",
    )
    assert rc == 2 and "--table /dev/sdz: not a device of disk_layout_disks" in err


def test_output_file(recorded, tmp_path, capsys):
    target = tmp_path / "user-data"
    rc, out, err = run_cli(
        capsys,
        "--host",
        "box1",
        "-i",
        str(recorded["inventory"]),
        "-o",
        str(target),
        *tables_args(recorded["tables"]),
    )
    assert rc == 0 and out == "" and "wrote" in err
    assert yaml.safe_load(target.read_text())["autoinstall"]["version"] == 1


# ----------------------------------------------------------------- the early command, for real


def _early_command_problem() -> str | None:
    from tests.disk_images import host_problem  # noqa: PLC0415

    return host_problem()


@pytest.mark.disks
def test_preseed_early_command_on_a_real_disk(tmp_path, capsys):
    """Runs the generated partman/early_command with sh on a dual-boot loop image.

    Stands in for the installer: fdisk-udeb's sfdisk is the same sfdisk as the
    host's, `anna-install` is absent (the command tolerates that).
    """
    problem = _early_command_problem()
    if problem:
        pytest.skip(f"needs the host: {problem}")
    from tests.disk_images import (  # noqa: PLC0415
        GPT_LINUX,
        LoopDisks,
        build_dualboot,
        sh,
        table_digest,
    )

    disks = LoopDisks(tmp_path)
    try:
        loop = build_dualboot(disks)
        image = tmp_path / "dualboot.img"
        spec = [
            {
                "device": loop,
                "partitions": [
                    {"name": "EFI", "fstype": "vfat", "mount": "/boot/efi", "size": "32MiB"},
                    {"name": "Microsoft reserved partition", "size": "16MiB"},
                    {"name": "Basic data partition", "fstype": "ntfs", "size": "64MiB"},
                    {"name": "Recovery", "size": "16MiB"},
                    {"name": "linux-root", "fstype": "ext4", "mount": "/", "size": "96MiB"},
                ],
            }
        ]
        inv = write_inventory(tmp_path / "inv", {"box1": {"disk_layout_disks": spec}})
        table = tmp_path / "table.json"
        table.write_text(sh("sfdisk", "--json", loop).stdout)
        rc, out, err = run_cli(
            capsys, "--host", "box1", "-i", str(inv), "--format", "preseed",
            "--table", f"{loop}={table}",
        )  # fmt: skip
        assert rc == 0, err
        early = parse_preseed(out)["partman/early_command"][1]

        def early_command() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["sh", "-c", early],
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "LC_ALL": "C"},
            )

        # 206 MiB free after linux-root's 96 MiB: the new root could go there.
        before = table_digest(image)
        res = early_command()
        assert res.returncode == 1, res.stderr
        assert "a free space on the disks is as large as the root partition" in res.stderr
        assert table_digest(image) == before

        # Fill the free space (as the role's scratch partition does): now it is safe.
        sh("sfdisk", "--append", "--quiet", loop, stdin=f'type={GPT_LINUX}, name="scratch"\n')
        disks.rescan(loop)
        res = early_command()
        assert res.returncode == 0, res.stderr
        names = [p.get("name") for p in json.loads(sh("sfdisk", "--json", loop).stdout)[
            "partitiontable"]["partitions"]]  # fmt: skip
        assert names == [
            "EFI", "Microsoft reserved partition", "Basic data partition", "Recovery", "scratch",
        ]  # fmt: skip

        # Run again: linux-root is gone, the command refuses.
        res = early_command()
        assert res.returncode == 1 and "expected one partition named" in res.stderr

        # What partman does next, by hand: a new root in the freed space, mounted
        # (at a temporary directory standing in for the installer's /target).
        sh("sfdisk", "--append", "--quiet", loop, stdin=f"size=96MiB, type={GPT_LINUX}\n")
        disks.rescan(loop)
        table = json.loads(sh("sfdisk", "--json", loop).stdout)["partitiontable"]
        # In linux-root's place (sector 264192), without a name.
        new_root = next(p for p in table["partitions"] if p["start"] == 264192)
        assert not new_root.get("name")
        target = tmp_path / "target"
        target.mkdir()
        sh("mkfs.ext4", "-q", new_root["node"])
        sh("mount", new_root["node"], str(target))
        try:
            late = parse_preseed(out)["preseed/late_command"][1]
            res = subprocess.run(
                ["sh", "-c", late.replace('"/target"', f'"{target}"')],
                capture_output=True,
                text=True,
                check=False,
            )
            assert res.returncode == 0, res.stderr
        finally:
            sh("umount", str(target))
        parts = json.loads(sh("sfdisk", "--json", loop).stdout)["partitiontable"]["partitions"]
        assert [p.get("name") for p in parts if p["node"] == new_root["node"]] == ["linux-root"]
    finally:
        disks.cleanup()
