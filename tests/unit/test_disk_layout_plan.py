"""The disk_layout planner (the collection's plugins/module_utils/disk_plan.py), as a pure function.

Inputs are outputs recorded from real loop-device images (lsblk, sfdisk, blkid,
and for the after-first-run state the fstab the role wrote and the mounts it
made): see tests/disk_images.py `record`. No root, no disks: runs anywhere.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from ansible_collections.dlsetup.box.plugins.module_utils import disk_plan as plan_module
from ansible_collections.dlsetup.box.plugins.modules import disk_layout_plan as plan_entry

from tests.disk_images import lab_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "disk_layout"
MIB = 1024 * 1024


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def plan(spec, doc, **kwargs):
    kwargs.setdefault("fstab_text", doc["fstab"])
    kwargs.setdefault("mounts_text", doc["mounts"])
    kwargs.setdefault("mount_prefix", doc["mount_prefix"])
    return plan_module.build_plan(spec, doc["facts"], **kwargs)


def of(result, kind):
    return [a for a in result["actions"] if a["action"] == kind]


def refused(result) -> str:
    assert result["refusals"], "expected a refusal, got none:\n" + result["report"]
    return "\n".join(
        f"{r['disk']} {r['partition']} {r['field']}: {r['msg']}" for r in result["refusals"]
    )


@pytest.fixture
def pristine():
    return fixture("pristine")


@pytest.fixture
def after():
    return fixture("after-first-run")


@pytest.fixture
def spec(pristine):
    return lab_spec(**pristine["devices"])


# -- what the recorded disks look like to the planner ----------------------------


def test_recorded_dualboot_disk_is_read_faithfully(pristine, spec):
    result = plan(spec, pristine)
    disk = result["disks"][0]
    assert disk["table"] == "gpt"
    assert [(p["number"], p["name"], p["fstype"]) for p in disk["partitions"]] == [
        (1, "EFI", "vfat"),
        (2, "Microsoft reserved partition", None),
        (3, "Basic data partition", "ntfs"),
        (4, "Recovery", "ntfs"),
        (5, "linux-root", "ext4"),
    ]
    # ESP 32 + MSR 16 + NTFS 64 + WinRE 16 + root 96 from 1MiB on; the rest is free.
    assert disk["free"] == [{"start": 460800, "end": 1046527, "sectors": 585728}]


def test_sfdisk_missing_falls_back_to_blkid(pristine, spec):
    doc = copy.deepcopy(pristine)
    for facts in doc["facts"].values():
        facts.pop("sfdisk", None)
    with_sfdisk = plan(spec, pristine)
    without = plan(spec, doc)
    assert without["actions"] == with_sfdisk["actions"]
    assert [p["name"] for p in without["disks"][0]["partitions"]] == [
        p["name"] for p in with_sfdisk["disks"][0]["partitions"]
    ]


# -- the plan for the layout ----------------------------------------------


def test_pristine_plan_creates_only_what_is_missing(pristine, spec):
    result = plan(spec, pristine)
    dev = pristine["devices"]
    assert result["refusals"] == []
    assert of(result, "create_table") == [
        {
            "action": "create_table",
            "disk": dev["blank"],
            "device": dev["blank"],
            "table": "gpt",
            "with_partitions": True,
        }
    ]
    created = [
        (a["device"], a["number"], a["name"], a["start"], a["end"])
        for a in of(result, "create_partition")
    ]
    assert created == [
        (dev["dualboot"], 6, "scratch", 460800, 1046527),  # all the free space
        (dev["blank"], 1, "models", 2048, 65535),  # 50% of 62MiB free = 31MiB
        (dev["blank"], 2, "cache", 65536, 129023),  # the rest
    ]
    assert [(a["device"], a["fstype"], a["opts"], a["force"]) for a in of(result, "mkfs")] == [
        (f"{dev['dualboot']}p6", "ext4", None, False),
        (f"{dev['blank']}p1", "ext4", "-L models", False),
        (f"{dev['blank']}p2", "ext4", None, False),
    ]
    # Preserved partitions are neither created nor formatted; the one not named is listed.
    assert [u["name"] for u in result["unmanaged"]] == ["Recovery"]
    assert result["windows"]["present"] is True
    assert result["summary"] == {"create_table": 1, "create_partition": 3, "mkfs": 3, "mount": 5}


def test_mounts_are_by_uuid_with_nofail_for_data(pristine, spec):
    result = plan(spec, pristine)
    mounts = {m["spec_path"]: m for m in result["mounts"]}
    data_uuid = pristine["facts"][pristine["devices"]["data"]]["blkid"]
    data_uuid = plan_module.parse_blkid_export(
        data_uuid[f"{pristine['devices']['data']}p1"]["out"]
    )["UUID"]
    assert mounts["/data"]["uuid"] == data_uuid
    assert mounts["/data"]["opts"] == "defaults,nofail"
    assert mounts["/models"]["opts"] == "defaults,nofail"  # default for a data mount
    assert mounts["/scratch"]["opts"] == "defaults,noatime,nofail"
    assert mounts["/boot/efi"]["opts"] == "defaults"  # system mounts: no nofail
    assert (mounts["/"]["state"], mounts["/"]["passno"]) == ("present", 1)  # never remounted
    assert mounts["/boot/efi"]["state"] == "present"
    assert mounts["/scratch"]["uuid"] is None  # known once mkfs ran
    assert result["mounts"][0]["spec_path"] == "/"  # parents first


def test_after_first_run_nothing_to_do(after):
    result = plan(lab_spec(**after["devices"]), after)
    assert result["actions"] == [], result["report"]
    assert result["refusals"] == []
    assert "nothing to do" in result["report"]


def test_after_first_run_fstab_emptied_means_only_fstab_entries(after):
    result = plan(lab_spec(**after["devices"]), after, fstab_text="")
    assert {a["action"] for a in result["actions"]} == {"mount"}
    assert all(a["changes"] == ["fstab"] for a in result["actions"])


def test_data_mount_added_to_user_options_without_nofail(pristine, spec):
    spec[1]["partitions"][0]["mount_options"] = "defaults,noatime"
    result = plan(spec, pristine)
    mount = next(m for m in result["mounts"] if m["spec_path"] == "/data")
    assert mount["opts"] == "defaults,noatime,nofail"
    assert any("added nofail" in n for n in result["notes"])
    result = plan(spec, pristine, data_nofail=False)
    assert (
        next(m for m in result["mounts"] if m["spec_path"] == "/data")["opts"] == "defaults,noatime"
    )


# -- refusals ----------------------------------------------------------------------


def test_preserve_on_missing_partition_names_it(pristine, spec):
    spec[0]["partitions"].insert(2, {"name": "Windows RE tools", "size": "1GiB", "preserve": True})
    result = plan(spec, pristine)
    text = refused(result)
    assert "'Windows RE tools' (preserve: true) was not found" in text
    assert pristine["devices"]["dualboot"] in text


def test_preserve_with_other_filesystem_names_both(pristine, spec):
    spec[0]["partitions"][0]["fstype"] = "ext4"  # the ESP is vfat
    text = refused(plan(spec, pristine))
    assert "holds vfat, spec says ext4 with preserve: true" in text


def test_other_filesystem_is_refused_in_safe_mode(pristine, spec):
    spec[1]["partitions"][0]["fstype"] = "xfs"
    result = plan(spec, pristine)
    text = refused(result)
    assert "holds ext4, spec says xfs" in text
    assert "'data'" in result["report"]
    assert [a for a in of(result, "mkfs") if a["disk"] == spec[1]["device"]] == []


def test_wipe_needs_safe_mode_off(pristine, spec):
    spec[1]["partitions"][0].update(fstype="xfs", wipe=True)
    text = refused(plan(spec, pristine))
    assert "disk_layout_safe_mode is on" in text
    # Too small for xfs (the image is 128MiB): refused before mkfs would fail.
    text = refused(plan(spec, pristine, safe_mode=False))
    assert "too small for xfs" in text
    spec[1]["partitions"][0].update(fstype="vfat", fs_label="DATA")
    result = plan(spec, pristine, safe_mode=False)
    assert result["refusals"] == []
    (mkfs,) = [a for a in of(result, "mkfs") if a["disk"] == spec[1]["device"]]
    assert (mkfs["fstype"], mkfs["force"], mkfs["opts"]) == ("vfat", True, "-n DATA")
    assert mkfs["reason"] == "wipe: ext4 -> vfat"


@pytest.mark.parametrize(
    "index, name", [(2, "Basic data partition"), (1, "Microsoft reserved partition")]
)
def test_windows_partitions_are_never_formatted(pristine, spec, index, name):
    part = spec[0]["partitions"][index]
    part.update(fstype="ext4", wipe=True, preserve=False)
    text = refused(plan(spec, pristine, safe_mode=False))
    assert name in text
    assert "never formatted, not even with wipe: true" in text


def test_ntfs_is_never_created(spec, pristine):
    spec[2]["partitions"][1]["fstype"] = "ntfs"
    assert "never creates NTFS" in refused(plan(spec, pristine))


def test_spec_that_does_not_fit(pristine, spec):
    spec[2]["partitions"] = [
        {"name": "a", "size": "40MiB", "fstype": "ext4"},
        {"name": "b", "size": "40MiB", "fstype": "ext4"},
    ]
    result = plan(spec, pristine)
    text = refused(result)
    assert "does not fit: needs 40 MiB, the largest free extent left is 22 MiB" in text
    assert "disk_layout_disks[2].partitions[1].size" in text


def test_blank_disk_needs_table_key(pristine, spec):
    del spec[2]["table"]
    assert "has no partition table; set table: gpt" in refused(plan(spec, pristine))


def test_table_is_never_written_over_a_whole_disk_filesystem():
    doc = fixture("superfloppy")
    spec = [
        {
            "device": doc["devices"]["superfloppy"],
            "table": "gpt",
            "partitions": [{"name": "x", "size": "100%", "fstype": "ext4"}],
        }
    ]
    text = refused(plan(spec, doc))
    assert "holds ext4 on the whole disk" in text


def test_table_is_never_replaced():
    doc = fixture("dos")
    device = doc["devices"]["dos"]
    spec = [
        {
            "device": device,
            "table": "gpt",
            "partitions": [{"name": "x", "size": "100%", "fstype": "ext4"}],
        }
    ]
    assert "has a dos partition table, spec says table: gpt" in refused(plan(spec, doc))
    # Without `table`, partitions on a dos disk can still be named by label...
    spec = [
        {"device": device, "partitions": [{"fs_label": "old", "fstype": "ext4", "mount": "/old"}]}
    ]
    result = plan(spec, doc)
    assert result["refusals"] == [] and of(result, "create_partition") == []
    # ... but nothing is created there.
    spec[0]["partitions"].append({"name": "new", "size": "100%", "fstype": "ext4"})
    assert "creates partitions only on GPT disks" in refused(plan(spec, doc))


def test_unknown_key_is_refused_naming_the_field(pristine, spec):
    spec[1]["partitions"][0]["fs_type"] = "ext4"
    text = refused(plan(spec, pristine))
    assert "unknown key 'fs_type'" in text
    assert "disk_layout_disks[1].partitions[0].fs_type" in text


@pytest.mark.parametrize(
    "size", ["10GB", "1.5 TB", "abc", "0%", "101%", "0.5MiB", "", "-1GiB", "100", 100]
)
def test_bad_sizes_are_refused_naming_the_field(pristine, spec, size):
    spec[2]["partitions"][0]["size"] = size
    text = refused(plan(spec, pristine))
    assert "disk_layout_disks[2].partitions[0].size" in text
    assert "use a number with MiB, GiB or TiB" in text


@pytest.mark.parametrize(
    "size, expected",
    [
        ("512MiB", ("bytes", 512 * MIB)),
        ("1.5GiB", ("bytes", 1536 * MIB)),
        ("2TiB", ("bytes", 2 * 1024 * 1024 * MIB)),
        ("100%", ("percent", 100.0)),
        ("12.5%", ("percent", 12.5)),
    ],
)
def test_good_sizes(size, expected):
    assert plan_module.parse_size(size) == expected


def test_missing_disk_is_refused(pristine, spec):
    spec[1]["device"] = "/dev/disk/by-id/does-not-exist"
    pristine["facts"]["/dev/disk/by-id/does-not-exist"] = {
        "device": "/dev/disk/by-id/does-not-exist",
        "exists": False,
    }
    assert "disk /dev/disk/by-id/does-not-exist does not exist" in refused(plan(spec, pristine))


def test_mount_point_taken_by_another_device_is_refused(after):
    spec = lab_spec(**after["devices"])
    mounts = after["mounts"].replace(f"{after['devices']['data']}p1 ", "/dev/sdz1 ")
    text = refused(plan(spec, after, mounts_text=mounts))
    assert "already has /dev/sdz1 mounted on it" in text


# -- identification -----------------------------------------------------------------


def test_partitions_are_found_by_partuuid_fs_uuid_and_label(pristine):
    dev = pristine["devices"]["data"]
    info = plan_module.parse_blkid_export(pristine["facts"][dev]["blkid"][f"{dev}p1"]["out"])
    for key in (
        {"uuid": info["PART_ENTRY_UUID"].upper()},
        {"uuid": info["UUID"]},
        {"fs_label": "data", "name": "renamed-later"},
    ):
        spec = [{"device": dev, "partitions": [{**key, "fstype": "ext4", "mount": "/data"}]}]
        result = plan(spec, pristine)
        assert result["refusals"] == [], (key, result["report"])
        assert of(result, "create_partition") == [] and of(result, "mkfs") == []
        assert result["mounts"][0]["uuid"] == info["UUID"]


def test_unknown_uuid_is_refused(pristine):
    dev = pristine["devices"]["data"]
    spec = [{"device": dev, "partitions": [{"uuid": "0000-1111", "fstype": "ext4"}]}]
    assert "no partition on" in refused(plan(spec, pristine))


def test_ambiguous_name_is_refused(pristine, spec):
    doc = copy.deepcopy(pristine)
    table = doc["facts"][doc["devices"]["dualboot"]]["sfdisk"]["partitiontable"]
    table["partitions"][3]["name"] = "linux-root"  # the recovery partition, renamed
    assert "matches 2 partitions" in refused(plan(spec, doc))


def test_partition_the_kernel_does_not_know_is_refused(pristine, spec):
    doc = copy.deepcopy(pristine)
    top = doc["facts"][doc["devices"]["data"]]["lsblk"]["blockdevices"][0]
    top["children"] = []
    assert "partx -u" in refused(plan(spec, doc))


@pytest.mark.parametrize(
    "disk, expected",
    [
        ("/dev/sda", "/dev/sda3"),
        ("/dev/nvme0n1", "/dev/nvme0n1p3"),
        ("/dev/loop7", "/dev/loop7p3"),
        ("/dev/mmcblk0", "/dev/mmcblk0p3"),
    ],
)
def test_partition_device_names(disk, expected):
    assert plan_module.partition_device(disk, 3) == expected


def test_report_lists_unmanaged_and_refusals(pristine, spec):
    spec[1]["partitions"][0]["fstype"] = "xfs"
    report = plan(spec, pristine)["report"]
    assert "Recovery" in report and "unmanaged (not in the spec, left untouched)" in report
    assert "REFUSED" in report and "holds ext4, spec says xfs" in report


def test_names_parted_cannot_take_are_refused_for_new_partitions(pristine, spec):
    spec[2]["partitions"][1]["name"] = 'my "cache"'
    assert "cannot be given to parted" in refused(plan(spec, pristine))


WHERE = "disk_layout_disks[0].partitions[0]"


@pytest.mark.parametrize(
    ("part", "field", "words"),
    [
        ({"name": "d", "colour": "red"}, "colour", "unknown key 'colour'"),
        ({"name": 7}, "name", "name must be a string"),
        ({"name": "d", "preserve": "yes"}, "preserve", "must be true or false"),
        ({"size": "1GiB"}, "name", "needs a name (its GPT name), a uuid or an fs_label"),
        ({"name": "n" * 37}, "name", "at most 36 characters"),
        ({"name": "d", "size": "lots"}, "size", "size 'lots' is not valid"),
        ({"name": "d", "fstype": "zfs"}, "fstype", "fstype 'zfs' is not supported"),
        ({"name": "d", "fs_label": "my data"}, "fs_label", "no whitespace"),
        ({"name": "d", "fstype": "vfat", "fs_label": "L" * 12}, "fs_label", "too long for vfat"),
        ({"name": "d", "fstype": "ext4", "mount": "data"}, "mount", "absolute path"),
        ({"name": "d", "mount": "/data"}, "fstype", "a mount needs an fstype"),
        ({"name": "d", "fstype": "ext4", "mount_options": "a, b"}, "mount_options", "comma"),
        ({"name": "d", "mount_state": "maybe"}, "mount_state", "mount_state must be one of"),
        ({"name": "d", "preserve": True, "wipe": True}, "wipe", "contradict"),
    ],
)
def test_each_partition_setting_is_checked_naming_its_field(part, field, words):
    refusals = plan_module.Refusals()
    plan_module.normalise_partition(part, "/dev/disk/by-id/x", WHERE, refusals)
    got = [(r["field"], r["msg"]) for r in refusals.items]
    assert any(f == f"{WHERE}.{field}" and words in m for f, m in got), got


def test_a_good_partition_entry_is_normalised_without_refusals():
    refusals = plan_module.Refusals()
    norm = plan_module.normalise_partition(
        {"name": "data", "size": "100%", "fstype": "ext4", "mount": "/data/", "fs_label": "data"},
        "/dev/disk/by-id/x",
        WHERE,
        refusals,
    )
    assert refusals.items == []
    assert norm["mount"] == "/data" and norm["size"] is not None and norm["display"] == "data"


# -- the clock read beside the plan (the module's _local_rtc) ------------------------------


class _Module:
    """Stands in for AnsibleModule's get_bin_path: where timedatectl is."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def get_bin_path(self, name: str) -> str | None:
        return self.path if name == "timedatectl" else None


@pytest.mark.parametrize(
    ("path", "answer", "expected"),
    [
        ("/usr/bin/timedatectl", (0, "no\n", ""), "no"),
        ("/usr/bin/timedatectl", (0, "yes\n", ""), "yes"),
        # no systemd as PID 1 (a container): timedatectl exits 1 with dbus's error
        ("/usr/bin/timedatectl", (1, "", "System has not been booted with systemd"), ""),
        ("/usr/bin/timedatectl", (0, "maybe\n", ""), ""),  # not an answer the role acts on
        (None, None, ""),  # no timedatectl: /etc/adjtime is the clock's record
    ],
)
def test_local_rtc_is_timedatectls_yes_or_no_else_empty(path, answer, expected):
    asked: list[list[str]] = []

    def run(argv: list[str]) -> tuple[int, str, str]:
        asked.append(argv)
        assert answer is not None
        return answer

    assert plan_entry._local_rtc(_Module(path), run) == expected
    assert asked == ([[path, "show", "--property=LocalRTC", "--value"]] if path else [])
