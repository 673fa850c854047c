"""--capture then --replay reaches the live verdict, for every check, by construction.

There is no GPU here, so the "live" box is a fake: ``LiveReplay`` answers files,
commands, directory listings and symlinks from a bundle (it stands in for the
kernel, sysfs and the tools of a real box) and really runs the in-process calls
(ctypes on libcuda, libnvrtc, libcudnn), either against nothing (no libcuda on
this machine) or against the C stub driver in tests/fixtures/gpucheck/stub. Each
run goes through a CapturingProbe; the bundle it writes is then replayed with
the plain ReplayProbe and the whole report compared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dlsetup import cli as dlsetup_cli
from dlsetup.gpucheck import checks, cli
from dlsetup.gpucheck.checks import Options, Report, run_checks
from dlsetup.gpucheck.probe import (
    NOT_RUN,
    BundleError,
    CapturingProbe,
    LiveProbe,
    ReplayProbe,
)
from tests.unit.test_gpucheck import FIXTURES, LiveReplay, machine, use_stub_driver

BOXES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir() and (p / "commands.json").is_file())


def options_of(bundle: Path) -> Options:
    meta = json.loads((bundle / "meta.json").read_text()) if (bundle / "meta.json").exists() else {}
    return Options(container_image=(meta.get("options") or {}).get("container_image"))


def capture_and_replay(box: Path, cap: Path) -> tuple[Report, Report]:
    probe = CapturingProbe(LiveReplay(str(box)), str(cap), {"options": {}})
    live = run_checks(probe, options_of(box))
    probe.close()
    again = run_checks(ReplayProbe(str(cap)), options_of(box))
    return live, again


def assert_same_report(live: Report, again: Report) -> None:
    """The whole report, but what says how it ran (probe, mode, time)."""
    live_doc, again_doc = live.to_json(), again.to_json()
    assert again_doc["checks"] == live_doc["checks"]
    assert again_doc["gpus"] == live_doc["gpus"]
    assert again_doc["passed"] == live_doc["passed"]
    for doc in (live_doc, again_doc):
        doc["host"].pop("probe")
    assert again_doc["host"] == live_doc["host"]
    assert (live.mode, again.mode) == ("capture", "replay")


@pytest.mark.parametrize("box", BOXES)
def test_capture_replays_to_the_live_verdict_without_libcuda(box: str, tmp_path: Path) -> None:
    """Every box, its in-process calls failing as they do here (no libcuda.so.1)."""
    live, again = capture_and_replay(machine(tmp_path, box), tmp_path / "cap")
    assert_same_report(live, again)


@pytest.mark.parametrize("box", BOXES)
def test_capture_replays_to_the_live_verdict_through_the_stub_driver(
    box: str, tmp_path: Path, stub_lib: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every box, its in-process calls answered by the stub driver (self-test, PCIe
    reading under its load, cuDNN handle, cuDriverGetVersion)."""
    use_stub_driver(monkeypatch, stub_lib)
    live, again = capture_and_replay(machine(tmp_path, box), tmp_path / "cap")
    assert_same_report(live, again)
    if box == "healthy":  # the calls did run, and the replay did not run them again
        api = again.check("cuda-driver-api")
        assert api is not None and api.status == "pass" and "Fake GPU" in api.message
        calls = json.loads((tmp_path / "cap" / "calls.json").read_text())
        assert {c["name"] for c in calls} == {
            "cuda-selftest",
            "cuda-driver-version",
            "cudnn-selftest",
        }


def test_the_comparison_sees_a_value_the_capture_missed(
    tmp_path: Path, stub_lib: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the calls recorded (what gpucheck did before), the replay differs: the
    equality above is owed to the recording, not to the comparison being blind."""
    use_stub_driver(monkeypatch, stub_lib)
    monkeypatch.setattr(
        CapturingProbe, "call", lambda self, name, args, fn: self.inner.call(name, args, fn)
    )
    live, again = capture_and_replay(machine(tmp_path, "healthy"), tmp_path / "cap")
    assert live.to_json()["checks"] != again.to_json()["checks"]
    api = again.check("cuda-driver-api")
    assert api is not None and api.status == "skip"


def test_reads_inside_a_call_are_not_recorded_twice(tmp_path: Path) -> None:
    """A command the call runs (the PCIe reading under load) is part of the call's value:
    recording it too would hand a later identical command the wrong answer on replay."""
    seen: list[int] = []

    class Box(LiveReplay):
        def run(self, argv: list[str], timeout: float) -> Any:
            seen.append(1)
            return super().run(argv, timeout)

    probe = CapturingProbe(Box(str(FIXTURES / "healthy")), str(tmp_path / "cap"))
    value = probe.call("x", [], lambda: {"rc": probe.run(["lspci", "-nnk"], 5).rc})
    probe.run(["lspci", "-nnk"], 5)
    probe.close()
    assert value == {"rc": 0} and len(seen) == 2
    assert [c["argv"] for c in json.loads((tmp_path / "cap/commands.json").read_text())] == [
        ["lspci", "-nnk"]
    ]
    again = ReplayProbe(str(tmp_path / "cap"))
    assert again.call("x", [], lambda: pytest.fail("a replay never runs a call")) == {"rc": 0}
    assert again.call("y", [], lambda: pytest.fail("a replay never runs a call")) is None


def test_a_spent_budget_is_recorded_and_replayed(tmp_path: Path) -> None:
    result = LiveProbe().run(["true"], 0)
    assert (result.rc, result.stderr) == (124, NOT_RUN)
    probe = CapturingProbe(LiveProbe(), str(tmp_path / "cap"))
    probe.run(["true"], 0)
    probe.close()
    assert ReplayProbe(str(tmp_path / "cap")).run(["true"], 5).stderr == NOT_RUN


def test_a_spent_budget_gives_the_same_verdict_on_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's budget runs out half-way (a slow box): the replay, with time to spare,
    still meets the refusals the live run met."""
    box = machine(tmp_path, "healthy")
    real_remaining = checks.Context.remaining
    counter = {"n": 0}

    def remaining(self: checks.Context) -> float:
        counter["n"] += 1
        return real_remaining(self) if counter["n"] < 6 else 0.0

    monkeypatch.setattr(checks.Context, "remaining", remaining)
    probe = CapturingProbe(LiveReplay(str(box)), str(tmp_path / "cap"), {"options": {}})
    live = run_checks(probe, options_of(box))
    probe.close()
    monkeypatch.setattr(checks.Context, "remaining", real_remaining)
    again = run_checks(ReplayProbe(str(tmp_path / "cap")), options_of(box))
    assert_same_report(live, again)
    recorded = json.loads((tmp_path / "cap" / "commands.json").read_text())
    assert any(c["stderr"] == NOT_RUN for c in recorded)
    assert not live.passed  # the refusals changed the verdict, and the replay's alike


# -- a folder that is not a capture ------------------------------------------


def test_replay_of_a_folder_that_is_no_capture_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_text("box\n")
    with pytest.raises(BundleError, match=r"no commands\.json and no files"):
        ReplayProbe(str(tmp_path / "etc"))
    assert cli.main(["--replay", "/etc"]) == 2
    err = capsys.readouterr().err
    assert "/etc is not a gpucheck capture" in err and "commands.json" in err
    (tmp_path / "etc" / "files").mkdir()
    assert cli.main(["--replay", str(tmp_path / "etc")]) == 2
    err = capsys.readouterr().err
    assert "no commands.json" in err and "no files" not in err


def test_dlsetup_smoke_replay_of_etc_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert dlsetup_cli.main(["smoke", "--replay", "/etc"]) == 2
    assert "not a gpucheck capture" in capsys.readouterr().err


def test_a_capture_written_by_gpucheck_replays(tmp_path: Path) -> None:
    """What CapturingProbe writes is a bundle, whatever it read."""
    probe = CapturingProbe(LiveProbe(), str(tmp_path / "cap"))
    probe.close()
    assert ReplayProbe(str(tmp_path / "cap")).run(["x"], 1).rc == 127
