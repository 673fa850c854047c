"""The nvme role's report (the collection's plugins/module_utils/nvme.py, which the
module plugins/modules/nvme_report.py wraps), as pure functions.

Inputs are sysfs trees and nvme-cli 2.x JSON under tests/fixtures/nvme/ (see its
README): a healthy Gen4 drive, one at x2 in an x4 slot, a Gen3 drive running at
Gen1 in a Gen4 slot, one with a SMART critical warning, one in a slot wired x2,
and a host with no NVMe at all. The recorded runner below stands in for
nvme-cli on a machine with those drives. No root, no drives: runs anywhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from ansible_collections.dlsetup.box.plugins.module_utils import nvme
from ansible_collections.dlsetup.box.plugins.modules import nvme_report

from dlsetup.gpucheck import checks
from tests.modules import run_module_file

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvme"


def recorded(scenario: str):
    """run(argv) for build_report(): answers from the scenario's recorded nvme-cli output."""
    out = FIXTURES / scenario / "nvme-cli"
    calls: list[list[str]] = []

    def run(argv: list[str]) -> tuple[int, str, str]:
        calls.append(argv)
        name = "list.json" if argv[0] == "list" else f"{Path(argv[1]).name}.{argv[0]}.json"
        path = out / name
        if not path.exists():
            return 1, "", f"{argv[1] if len(argv) > 1 else ''}: No such file or directory"
        return 0, path.read_text(), ""

    run.calls = calls  # type: ignore[attr-defined]
    return run


def report(scenario: str) -> dict:
    return nvme.build_report(str(FIXTURES / scenario / "sys"), recorded(scenario))


def by_name(rep: dict) -> dict[str, dict]:
    return {c["name"]: c for c in rep["controllers"]}


# ------------------------------------------------------------ nvme-cli JSON


def test_nvme_list_gives_namespaces_with_identity():
    text = (FIXTURES / "workstation" / "nvme-cli" / "list.json").read_text()
    found = nvme.parse_nvme_list(text)
    assert [n["device"] for n in found] == [f"/dev/nvme{i}n1" for i in range(4)]
    assert found[0] == {
        "device": "/dev/nvme0n1",
        "model": "Samsung SSD 980 PRO 1TB",
        "serial": "S5GXNF0R512345A",
        "firmware": "5B2QGXA7",
    }


@pytest.mark.parametrize("text", ["", "\n", '{"Devices": []}', "No NVMe devices detected."])
def test_nvme_list_without_drives_is_empty(text):
    assert nvme.parse_nvme_list(text) == []


def test_smart_log_converts_kelvin_and_names_the_fields():
    text = (FIXTURES / "workstation" / "nvme-cli" / "nvme0.smart-log.json").read_text()
    assert nvme.parse_smart_log(text) == {
        "critical_warning": 0,
        "temperature_c": 38,  # 311 K; nvme-cli's own text output says "38 C"
        "available_spare": 100,
        "available_spare_threshold": 10,
        "percentage_used": 3,
        "media_errors": 0,
    }


def test_smart_log_verbose_critical_warning_object():
    # nvme smart-log -o json --verbose prints the warning as an object of its bits.
    text = json.dumps(
        {
            "critical_warning": {
                "value": 4,
                "available_spare": 0,
                "temp_threshold": 0,
                "reliability_degraded": 1,
                "ro": 0,
                "vmbu_failed": 0,
                "pmr_ro": 0,
            },
            "temperature": 0,
            "avail_spare": 100,
            "spare_thresh": 10,
            "percent_used": 0,
            "media_errors": 0,
        }
    )
    parsed = nvme.parse_smart_log(text)
    assert parsed["critical_warning"] == 4
    assert parsed["temperature_c"] is None  # 0 K: the drive does not report it


def test_fw_log_slots_active_and_capabilities():
    out = FIXTURES / "workstation" / "nvme-cli"
    frmw = nvme.parse_id_ctrl_frmw((out / "nvme0.id-ctrl.json").read_text())
    assert frmw == 0x16
    slots = nvme.parse_fw_log((out / "nvme0.fw-log.json").read_text(), frmw)
    assert slots == {
        "active": 1,
        "next_reset": None,
        "count": 3,
        "slot1_read_only": False,
        "slots": [
            {"slot": 1, "revision": "5B2QGXA7", "active": True, "next_reset": False},
            {"slot": 2, "revision": "3B2QGXA7", "active": False, "next_reset": False},
        ],
    }


def test_fw_log_pending_activation():
    out = FIXTURES / "x2slot" / "nvme-cli"
    slots = nvme.parse_fw_log((out / "nvme0.fw-log.json").read_text(), 0x16)
    assert slots["active"] == 1
    assert slots["next_reset"] == 2  # AFI 0x21
    assert slots["slots"][1] == {
        "slot": 2,
        "revision": "4B2QEXM7",
        "active": False,
        "next_reset": True,
    }


def test_fw_log_unreadable_keeps_what_id_ctrl_says():
    assert nvme.parse_fw_log(None, 0x17) == {
        "active": None,
        "next_reset": None,
        "count": 3,
        "slot1_read_only": True,
        "slots": [],
    }


def test_critical_warning_bits_decoded():
    assert nvme.decode_critical_warning(0x05) == [
        "available spare below threshold",
        "reliability degraded by media or internal errors",
    ]
    assert nvme.decode_critical_warning(0x08) == ["media placed in read-only mode"]
    assert nvme.decode_critical_warning(0) == []
    assert nvme.decode_critical_warning(0x40) == ["unknown bits 0x40"]


@pytest.mark.parametrize(
    ("text", "gts"),
    [("16.0 GT/s PCIe", 16.0), ("8 GT/s", 8.0), ("2.5 GT/s PCIe", 2.5), ("Unknown", None),
     (None, None)],
)  # fmt: skip
def test_link_speed_text(text, gts):
    assert nvme.link_speed_gts(text) == gts


# ------------------------------------------------------------ whole report


def test_workstation_report_per_controller():
    rep = report("workstation")
    assert rep["notes"] == []
    ctrls = by_name(rep)
    assert list(ctrls) == ["nvme0", "nvme1", "nvme2", "nvme3"]
    c0 = ctrls["nvme0"]
    assert c0["model"] == "Samsung SSD 980 PRO 1TB"  # sysfs pads with spaces; stripped
    assert c0["serial"] == "S5GXNF0R512345A"
    assert c0["firmware"] == "5B2QGXA7"
    assert c0["address"] == "0000:01:00.0"
    assert c0["port"] == "0000:00:01.1"
    assert c0["link"] == {
        "current_speed": "16.0 GT/s PCIe",
        "max_speed": "16.0 GT/s PCIe",
        "current_width": 4,
        "max_width": 4,
    }
    assert c0["slot_link"] == {"max_speed": "16.0 GT/s PCIe", "max_width": 4}
    assert c0["firmware_slots"]["count"] == 3
    assert (c0["critical_warning"], c0["temperature_c"], c0["available_spare"]) == (0, 38, 100)
    assert (c0["percentage_used"], c0["media_errors"]) == (3, 0)
    assert c0["warnings"] == []


def test_drive_at_x2_in_an_x4_slot_is_a_narrowed_link_naming_the_slot():
    c1 = by_name(report("workstation"))["nvme1"]
    assert c1["link"]["current_width"] == 2 and c1["link"]["max_width"] == 4
    assert len(c1["warnings"]) == 1
    warning = c1["warnings"][0]
    assert "nvme1 (WD_BLACK SN770 1TB)" in warning
    assert "PCI 0000:02:00.0 (behind port 0000:00:01.2)" in warning
    assert "links at x2 though drive and slot can do x4" in warning


def test_gen3_drive_at_gen1_in_a_gen4_slot_is_slowed_naming_the_board_slot():
    c2 = by_name(report("workstation"))["nvme2"]
    assert c2["slot"] == "PCI 0000:04:00.0 (slot 3)"
    assert len(c2["warnings"]) == 1
    warning = c2["warnings"][0]
    # Expected speed is what both ends can do: the drive's Gen3, not the slot's Gen4.
    assert "runs at 2.5 GT/s (Gen1) though drive and slot can do 8 GT/s (Gen3)" in warning
    assert "slot 3" in warning


def test_critical_warning_drive_is_reported_with_its_bits():
    c3 = by_name(report("workstation"))["nvme3"]
    assert c3["critical_warning"] == 5
    assert c3["critical_warnings"] == [
        "available spare below threshold",
        "reliability degraded by media or internal errors",
    ]
    assert c3["media_errors"] == 12
    assert c3["available_spare"] == 3
    assert c3["warnings"] == [
        "nvme3 (CT1000P1SSD8): SMART critical warning 0x05: available spare below threshold, "
        "reliability degraded by media or internal errors"
    ]


def test_slot_wired_x2_says_the_slot_is_the_limit():
    rep = report("x2slot")
    (c,) = rep["controllers"]
    assert c["link"] == {
        "current_speed": "8 GT/s",
        "max_speed": "8 GT/s",
        "current_width": 2,
        "max_width": 4,
    }
    assert c["firmware_slots"]["next_reset"] == 2
    assert len(c["warnings"]) == 1
    assert "the slot is wired x2, the drive can do x4" in c["warnings"][0]
    assert "PCI 0000:3d:00.0 (behind port 0000:00:1b.0)" in c["warnings"][0]


def test_summary_lines_for_people():
    lines = report("workstation")["summary"]
    assert lines[0] == (
        "nvme0: Samsung SSD 980 PRO 1TB (serial S5GXNF0R512345A) firmware 5B2QGXA7, "
        "link Gen4 x4 of Gen4 x4, 38 C, 3% used, 0 media errors"
    )
    assert "WARNING" in lines[1] and "WARNING" in lines[2] and "WARNING" in lines[3]


def test_no_drives_is_an_empty_list_and_says_so():
    rep = report("empty")
    assert rep["controllers"] == []
    assert rep["summary"] == ["no NVMe drives found"]
    assert nvme.fact_document(rep) == {"controllers": []}


def test_no_drives_asks_nvme_cli_nothing():
    # nvme-cli 2.x without /sys/class/nvme: `nvme list -o json` exits 1 with
    # {"error":"Failed to scan topology: No such file or directory"} (seen in Debian 13).
    calls = []

    def run(argv):
        calls.append(argv)
        return 1, '{\n  "error":"Failed to scan topology: No such file or directory"\n}\n', ""

    rep = nvme.build_report(str(FIXTURES / "empty" / "sys"), run)
    assert calls == []
    assert rep["controllers"] == []
    assert rep["notes"] == []


def test_nvme_cli_missing_is_a_note_when_there_are_drives():
    rep = nvme.build_report(str(FIXTURES / "workstation" / "sys"), None)
    assert rep["notes"] == ["nvme-cli is not installed: SMART health and firmware slots not read"]


def test_without_nvme_cli_sysfs_still_gives_identity_and_link():
    c1 = by_name(nvme.build_report(str(FIXTURES / "workstation" / "sys"), None))["nvme1"]
    assert c1["model"] == "WD_BLACK SN770 1TB"
    assert c1["critical_warning"] is None
    assert "links at x2" in c1["warnings"][0]


def test_failing_smart_log_is_a_note_not_a_crash():
    def run(argv):
        if argv[0] == "smart-log":
            return 1, "", "NVMe status: Invalid Log Page(0x109)"
        return recorded("workstation")(argv)

    rep = nvme.build_report(str(FIXTURES / "workstation" / "sys"), run)
    assert len(rep["controllers"]) == 4
    assert rep["controllers"][0]["temperature_c"] is None
    assert rep["notes"][0] == "nvme0: smart-log failed (rc 1): NVMe status: Invalid Log Page(0x109)"


# ------------------------------------------------------------ the fact gpucheck reads


class _Ctx:
    def __init__(self, text: str) -> None:
        self.text = text

    def read(self, path: str) -> str | None:
        assert path == checks.NVME_FACTS == "/etc/ansible/facts.d/nvme.fact"
        return self.text


def fact_text(scenario: str) -> str:
    return json.dumps(nvme.fact_document(report(scenario)))


def test_fact_has_the_shape_gpucheck_reads():
    doc = json.loads(fact_text("workstation"))
    assert set(doc) == {"controllers"}
    required = {
        "name", "model", "serial", "firmware", "critical_warning", "critical_warnings",
        "temperature_c", "percentage_used", "media_errors", "link", "warnings",
    }  # fmt: skip
    for c in doc["controllers"]:
        assert required <= set(c)
        assert set(c["link"]) == {"current_speed", "max_speed", "current_width", "max_width"}
        assert isinstance(c["warnings"], list)


def test_smoke_test_reads_the_fact_the_role_writes():
    ctx = _Ctx(fact_text("workstation"))
    link = checks.check_nvme_link(ctx)  # type: ignore[arg-type]
    assert link.status == checks.FAIL
    assert "nvme1 (WD_BLACK SN770 1TB) links at x2 of x4" in link.message
    assert "nvme2 (INTEL SSDPEKNW010T8) runs at 2.5 of 8 GT/s" in link.message
    health = checks.check_nvme_health(ctx)  # type: ignore[arg-type]
    assert health.status == checks.FAIL
    # The bits are named once, here; the smoke test takes the names from the fact.
    assert (
        "nvme3 (CT1000P1SSD8): critical warning 0x05 (available spare below threshold, "
        "reliability degraded by media or internal errors)"
    ) in health.message


def test_smoke_test_on_a_fact_without_decoded_names_asks_for_the_role():
    doc = json.loads(fact_text("workstation"))
    for ctrl in doc["controllers"]:
        del ctrl["critical_warnings"]  # an nvme.fact from before the names were written
    health = checks.check_nvme_health(_Ctx(json.dumps(doc)))  # type: ignore[arg-type]
    assert health.status == checks.FAIL
    assert "critical warning 0x05 (bits not named in the facts: re-run the nvme role)" in (
        health.message
    )


def test_smoke_test_reads_the_no_drive_fact():
    result = checks.check_nvme_link(_Ctx(fact_text("empty")))  # type: ignore[arg-type]
    assert result.status == checks.SKIP


# ------------------------------------------------------------ firmware update plan


def ctrls(scenario: str) -> list[dict]:
    return report(scenario)["controllers"]


FW = {"device": "/dev/nvme0", "file": "/var/lib/dlsetup/nvme/fw.bin", "version": "5B2QGXB7",
      "slot": 2, "action": 1}  # fmt: skip


def test_firmware_update_plans_download_and_commit():
    plan = nvme.firmware_plan(ctrls("workstation"), FW)
    assert plan["error"] == ""
    assert plan["run"] is True
    assert plan["commands"] == [
        ["nvme", "fw-download", "/dev/nvme0", "--fw=/var/lib/dlsetup/nvme/fw.bin"],
        ["nvme", "fw-commit", "/dev/nvme0", "--slot=2", "--action=1"],
    ]
    assert plan["reboot_required"] is True
    assert "5B2QGXA7 -> 5B2QGXB7" in plan["reason"]


def test_firmware_action_3_activates_without_reboot():
    plan = nvme.firmware_plan(ctrls("workstation"), {**FW, "action": 3})
    assert plan["run"] is True and plan["reboot_required"] is False


def test_firmware_already_running_does_nothing():
    plan = nvme.firmware_plan(ctrls("workstation"), {**FW, "version": "5B2QGXA7"})
    assert plan["run"] is False and plan["commands"] == []
    assert plan["reason"] == "nvme0 already runs firmware 5B2QGXA7"


def test_firmware_pending_at_next_reset_asks_for_the_reboot_only():
    plan = nvme.firmware_plan(ctrls("x2slot"), {**FW, "version": "4B2QEXM7"})
    assert plan["run"] is False
    assert plan["reboot_required"] is True
    assert "activates at the next reset" in plan["reason"]


def test_firmware_stored_with_action_0_is_not_stored_again():
    plan = nvme.firmware_plan(ctrls("workstation"), {**FW, "version": "3B2QGXA7", "action": 0})
    assert plan["run"] is False
    assert plan["reason"] == "nvme0: firmware 3B2QGXA7 is already stored in slot 2"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"device": "/dev/nvme9"}, "no NVMe controller 'nvme9' here (controllers: nvme0, nvme1"),
        ({"slot": 4}, "nvme0 has firmware slots 1-3; slot 4 does not exist"),
        ({"action": 2}, "fw-commit action 2 is not one dlsetup runs"),
    ],
)
def test_firmware_plan_refuses_what_cannot_work(change, error):
    plan = nvme.firmware_plan(ctrls("workstation"), {**FW, **change})
    assert plan["run"] is False
    assert error in plan["error"]


def test_firmware_read_only_slot_1_refused():
    c = ctrls("workstation")
    c[0]["firmware_slots"]["slot1_read_only"] = True
    plan = nvme.firmware_plan(c, {**FW, "slot": 1})
    assert "slot 1 is read-only" in plan["error"]


# -- the local fact nvme_report writes (fact_path) ----------------------------------------


@pytest.mark.skipif(
    os.geteuid() != 0, reason="the facts folder is made root:root, which needs root"
)
def test_fact_path_makes_the_folder_writes_json_and_leaves_an_equal_file_alone(tmp_path):
    """The module file run as Ansible runs it, on an empty sysfs (no NVMe drive,
    no nvme-cli): the fact of no controllers, its folder made root:root 0755."""
    sysfs = tmp_path / "sys"
    (sysfs / "class" / "nvme").mkdir(parents=True)
    folder = tmp_path / "facts.d"
    path = folder / "nvme.fact"
    args = {"sysfs_root": str(sysfs), "nvme_command": "/nonexistent/nvme", "fact_path": str(path)}

    def run(check: bool = False) -> dict:
        return run_module_file(Path(nvme_report.__file__), tmp_path, args, check=check)

    assert run(check=True)["changed"] is False and not folder.exists()  # a plan writes nothing
    first = run()
    assert first["changed"] is True, first  # the folder was made
    assert folder.stat().st_mode & 0o777 == 0o755
    assert (folder.stat().st_uid, folder.stat().st_gid) == (0, 0)
    assert json.loads(path.read_text()) == first["fact"] == {"controllers": []}
    assert path.read_text() == json.dumps(first["fact"], indent=4, sort_keys=True) + "\n"
    assert path.stat().st_mode & 0o777 == 0o644  # not executable: Ansible reads it as JSON
    before = path.stat().st_mtime_ns
    assert run()["changed"] is False
    assert path.stat().st_mtime_ns == before  # the same bytes are not rewritten
    # an older reading is rewritten, and that is no change of the box's set-up
    path.write_text('{"controllers": [{"name": "nvme0", "temperature_c": 38}]}\n')
    assert run()["changed"] is False
    assert json.loads(path.read_text()) == {"controllers": []}
    folder.chmod(0o700)
    assert run()["changed"] is True  # the folder is set right
    assert folder.stat().st_mode & 0o777 == 0o755
