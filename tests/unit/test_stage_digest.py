"""The no-op path's decisions (issue 16): the stage_digest action plugin's
decide / stage_record / settings, and what the converged_state module reads
from a box, here from real files in a temporary folder standing in for one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.dlsetup.box.plugins.action import stage_digest as sd
from ansible_collections.dlsetup.box.plugins.action.validate_vars import load_specs
from ansible_collections.dlsetup.box.plugins.modules import converged_state as cs

INPUTS = {"content": "c1", "vars": "v1", "facts": "f1"}
BOX = {"state": "s1", "items": {"/etc/fstab": "a", "kernel": "6.1.0-28-amd64"}}


def record(**stages: dict) -> dict:
    return {
        "schema": sd.RECORD_SCHEMA,
        "time": "2026-12-04T10:00:00Z",
        "state": "s1",
        "items": dict(BOX["items"]),
        "stages": stages or {"docker": {"inputs": dict(INPUTS), "part": {}, "reports": {}}},
    }


def test_a_stage_unchanged_in_inputs_and_box_is_converged() -> None:
    ok, why = sd.decide("docker", INPUTS, BOX, record())
    assert ok is True
    assert "2026-12-04T10:00:00Z" in why


def test_verify_all_walks_even_a_converged_stage() -> None:
    ok, why = sd.decide("docker", INPUTS, BOX, record(), verify_all=True)
    assert ok is False and "--verify-all" in why


@pytest.mark.parametrize("rec", [None, {}, {"schema": 99}, "garbage", []])
def test_no_usable_record_walks(rec: object) -> None:
    ok, why = sd.decide("docker", INPUTS, BOX, rec)
    assert ok is False and "no record" in why


def test_a_stage_the_last_run_did_not_finish_walks() -> None:
    ok, why = sd.decide("cuda", INPUTS, BOX, record())
    assert ok is False and "did not finish the cuda stage" in why


@pytest.mark.parametrize(
    ("part", "words"),
    [
        ("content", "dlsetup's roles and playbooks"),
        ("vars", "the host's dlsetup variables"),
        ("facts", "the OS or the GPUs found"),
    ],
)
def test_changed_inputs_are_named(part: str, words: str) -> None:
    ok, why = sd.decide("docker", {**INPUTS, part: "other"}, BOX, record())
    assert ok is False
    assert why == f"its inputs changed: {words}"


def test_a_changed_box_names_what_changed() -> None:
    box = {"state": "s2", "items": {**BOX["items"], "/etc/fstab": "b", "/etc/docker": "new"}}
    ok, why = sd.decide("docker", INPUTS, box, record())
    assert ok is False
    assert why == "the box changed since the last converged run: /etc/docker, /etc/fstab"


def test_the_record_keeps_finished_stages_only_and_drops_run_only_keys() -> None:
    checked = {"base": INPUTS, "driver": INPUTS, "cuda": INPUTS, "docker": INPUTS}
    result = {
        "stages": {
            "base": {"skipped": [], "verified": "digest"},
            "driver": {"skipped": [], "reboot_required": True},
            # cuda: no part, it did not run (a --tags run, or it failed)
            "docker": {"skipped": [{"step": "toolkit", "reason": "off"}]},
        }
    }
    reports = {"docker": {"container_runtime_report": {"docker_version": "20.10"}}}
    kept = sd.stage_record(checked, result, reports)
    assert sorted(kept) == ["base", "docker"]
    assert kept["base"] == {"inputs": INPUTS, "part": {"skipped": []}, "reports": {}}
    assert kept["docker"]["part"]["skipped"][0]["step"] == "toolkit"
    assert kept["docker"]["reports"] == reports["docker"]


def test_settings_are_the_documented_options_not_the_facts_a_run_sets() -> None:
    names = sd.settings(load_specs(sd.COLLECTION / "roles"))
    assert {"nvidia_driver_branch", "container_runtime_daemon_options", "cuda_version"} <= names
    # documented as internal: set by the roles during a run, not by a user
    assert not names & {"dl_facts_probe", "cuda_report", "container_runtime_skipped"}
    assert not names & sd.NOT_INPUTS
    # how long apt waits for its locks steers a run and changes nothing on the box
    assert "dlsetup_apt_lock_timeout" not in names


def test_content_digest_follows_every_byte_of_the_roles(tmp_path: Path) -> None:
    root = tmp_path / "box"
    for top in sd.CONTENT_DIRS:
        (root / top).mkdir(parents=True)
    task = root / "roles" / "x" / "tasks" / "main.yml"
    task.parent.mkdir(parents=True)
    task.write_text("- name: a\n")
    (root / "roles" / "x" / "molecule").mkdir()
    before = sd.content_digest(root)
    (root / "roles" / "x" / "molecule" / "converge.yml").write_text("tests do not count")
    assert sd.content_digest(root) == before
    task.write_text("- name: b\n")
    assert sd.content_digest(root) != before


def test_a_value_is_digested_the_same_way_every_run() -> None:
    a = {"b": [1, {"y": 2, "x": 1}], "a": {3, 1, 2}, "c": None}
    b = {"c": None, "a": {2, 3, 1}, "b": [1, {"x": 1, "y": 2}]}
    assert sd.settings_digest(a) == sd.settings_digest(b)
    assert sd.settings_digest(a) != sd.settings_digest({**a, "c": False})


# ---- converged_state: what is read on the box ------------------------------


def params(tmp: Path, **kw: object) -> dict:
    return {"record_path": str(tmp / "lib" / "converged.json"), **kw}


def test_a_file_counts_by_content_and_mode(tmp_path: Path) -> None:
    f = tmp_path / "daemon.json"
    f.write_text('{"a": 1}')
    p = params(tmp_path, paths=[str(f)])
    first = cs.read_items(p)[str(f)]
    f.write_text('{"a": 2}')
    second = cs.read_items(p)[str(f)]
    f.chmod(0o600)
    third = cs.read_items(p)[str(f)]
    assert len({first, second, third}) == 3


def test_a_folder_counts_by_listing_not_content(tmp_path: Path) -> None:
    d = tmp_path / "modprobe.d"
    d.mkdir()
    (d / "a.conf").write_text("blacklist nouveau\n")
    p = params(tmp_path, paths=[str(d)])
    first = cs.read_items(p)[str(d)]
    (d / "a.conf").write_text("blacklist nouveaU\n")  # same size, same name
    assert cs.read_items(p)[str(d)] == first
    (d / "b.conf").write_text("")
    assert cs.read_items(p)[str(d)] != first


def test_a_link_counts_by_target_and_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "cuda-11.8").mkdir()
    (tmp_path / "cuda-12.4").mkdir()
    link = tmp_path / "cuda"
    link.symlink_to("cuda-11.8")
    p = params(tmp_path, paths=[str(link)])
    first = cs.read_items(p)[str(link)]
    (tmp_path / "cuda-11.8" / "bin").mkdir()
    assert cs.read_items(p)[str(link)] == first
    link.unlink()
    link.symlink_to("cuda-12.4")
    assert cs.read_items(p)[str(link)] != first


def test_absent_paths_globs_and_names(tmp_path: Path) -> None:
    (tmp_path / "k1").mkdir()
    p = params(
        tmp_path,
        paths=[str(tmp_path / "nothing"), str(tmp_path / "k*")],
        names=[str(tmp_path / "k*"), str(tmp_path / "nouveau")],
    )
    items = cs.read_items(p)
    assert items[str(tmp_path / "nothing")] == "-"
    assert str(tmp_path / "k1") in items
    assert items[f"exists:{tmp_path / 'k*'}"] == str(tmp_path / "k1")
    assert items[f"exists:{tmp_path / 'nouveau'}"] == ""
    assert items["kernel"] == os.uname().release


def test_the_record_itself_never_counts(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "nvidia_driver.json").write_text("{}")
    p = params(tmp_path, paths=[str(lib), str(lib / "converged.json")])
    before = cs.read_items(p)
    cs.write_record(p["record_path"], {"schema": 1})
    assert cs.read_items(p) == before
    assert oct((lib / "converged.json").stat().st_mode & 0o777) == "0o600"
    assert cs.load_record(p["record_path"]) == {"schema": 1}
    assert not [n for n in os.listdir(lib) if n.startswith(".converged.")]


def test_only_block_device_mounts_count(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    base = "/dev/sdb1 /data ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n"
    mounts.write_text(base)
    first = cs.block_mounts(str(mounts))
    # a container engine starting a container: an overlay and a namespace
    mounts.write_text(base + "overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0\n")
    assert cs.block_mounts(str(mounts)) == first
    mounts.write_text(base.replace("/data", "/mnt/data"))
    assert cs.block_mounts(str(mounts)) != first


def test_units_and_commands_count_by_their_answer(tmp_path: Path) -> None:
    """A fake runner stands in for systemctl and mokutil (no systemd here)."""
    answers = {"systemctl": b"ActiveState=active\n", "mokutil": b"SecureBoot disabled\n"}

    def run(argv: list[str], **_: object) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(argv, 0, answers[argv[0]], b"")

    p = params(tmp_path, units=["docker.service"], commands=[["mokutil", "--sb-state"]])
    first = cs.read_items(p, run=run)
    answers["systemctl"] = b"ActiveState=inactive\n"
    second = cs.read_items(p, run=run)
    assert first["units"] != second["units"]
    assert first["cmd:mokutil --sb-state"] == second["cmd:mokutil --sb-state"]


def test_a_missing_program_is_an_answer_of_its_own(tmp_path: Path) -> None:
    p = params(tmp_path, commands=[["dlsetup-no-such-program"]])
    assert cs.read_items(p)["cmd:dlsetup-no-such-program"] == "not run: FileNotFoundError"


def test_the_module_reads_and_records_as_ansible_runs_it(tmp_path: Path) -> None:
    """The module's own entry point, run the way Ansible runs a module (JSON args on stdin)."""
    target = tmp_path / "fstab"
    target.write_text("UUID=1 /data ext4 defaults 0 2\n")
    rec = tmp_path / "lib" / "converged.json"
    module = Path(cs.__file__)
    env = {**os.environ, "PYTHONPATH": str(sd.COLLECTION.parents[2])}

    def call(args: dict) -> dict:
        payload = json.dumps({"ANSIBLE_MODULE_ARGS": args})
        out = subprocess.run(
            [sys.executable, str(module)],
            input=payload, capture_output=True, text=True, env=env, check=True,
        )  # fmt: skip
        return json.loads(out.stdout)

    read = call({"paths": [str(target)], "record_path": str(rec)})
    assert read["record"] is None and read["changed"] is False
    wrote = call({"paths": [str(target)], "record_path": str(rec), "record": {"schema": 1}})
    assert wrote["changed"] is True
    again = call({"paths": [str(target)], "record_path": str(rec), "record": {"schema": 1}})
    assert again["changed"] is False  # the same record is not written again
    assert again["record"]["state"] == read["state"] == wrote["state"]
    assert again["record"]["items"][str(target)] == read["items"][str(target)]


@pytest.mark.parametrize(
    ("record_value", "verify_all", "words"),
    [
        (None, False, "no record"),
        (record(), False, "did not finish the cuda stage"),
        (record(cuda={"inputs": {**INPUTS, "vars": "old"}, "part": {}, "reports": {}}), False,
         "its inputs changed"),
        (record(cuda={"inputs": dict(INPUTS), "part": {}, "reports": {}}), True, "--verify-all"),
    ],
)  # fmt: skip
def test_what_the_record_decides_alone_needs_no_read_of_the_box(
    record_value: object, verify_all: bool, words: str
) -> None:
    why = sd.walk_without_reading("cuda", INPUTS, record_value, verify_all=verify_all)
    assert words in why
    # decide() gives the same verdict whatever the box holds
    assert sd.decide("cuda", INPUTS, {"state": "any"}, record_value, verify_all=verify_all) == (
        False,
        why,
    )


def test_only_the_box_can_decide_a_recorded_stage_with_the_same_inputs() -> None:
    assert sd.walk_without_reading("docker", INPUTS, record()) == ""


PLAY = """
- name: Two runs' checks, as the stage playbooks make them
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Check each stage as a run does
      ansible.builtin.include_role:
        name: dlsetup.box.dlsetup
        tasks_from: converged
      vars:
        dlsetup_stage: "{{ item }}"
      loop: [base, docker, cuda]
    - name: Record the run as converged (record.yml, the last play of site.yml)
      ansible.builtin.include_role:
        name: dlsetup.box.dlsetup
        tasks_from: record
      vars:
        dlsetup_result: {stages: {base: {}, docker: {}}}
      when: write_record | bool
"""


def test_a_run_reads_the_box_once_where_the_record_decides(tmp_path: Path) -> None:
    """The real converged.yml and record.yml through ansible-playbook on this machine
    (connection local; a file in a temporary folder stands in for the box's state)."""
    state_file = tmp_path / "fstab"
    state_file.write_text("UUID=1 /data ext4 defaults 0 2\n")
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    repo = sd.COLLECTION.parents[3]

    def run(write_record: bool, verify_all: bool = False) -> list[str]:
        extra = {
            "__dlsetup_converged_state": {"paths": [str(state_file)]},
            "dlsetup_converged_record": str(tmp_path / "converged.json"),
            "write_record": write_record,
            "dlsetup_verify_all": verify_all,
            # this test's own Python (interpreter discovery may find a broken shim)
            "ansible_python_interpreter": sys.executable,
        }
        out = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
             str(play), "-e", json.dumps(extra)],
            capture_output=True, text=True, cwd=repo, check=False,
            env={**os.environ, "ANSIBLE_CONFIG": str(repo / "ansible.cfg"),
                 "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"},
        )  # fmt: skip
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        doc = json.loads(out.stdout)
        results = [
            t["hosts"]["localhost"]
            for p in doc["plays"]
            for t in p["tasks"]
            if "Compare the box with its last converged run" in t["task"]["name"]
        ]
        assert len(results) == 3
        return [f"{r['converged']} {r['box_read']}" for r in results]

    # A fresh box: the first check reads it and finds no record; the others need no read.
    assert run(write_record=True) == ["False True", "False False", "False False"]
    # After a converged run of base and docker: each of those reads the box (only its
    # state can tell); cuda, which that run did not finish, needs no read.
    assert run(write_record=False) == ["True True", "True True", "False False"]
    # --verify-all walks every stage and reads nothing.
    assert run(write_record=False, verify_all=True) == ["False False"] * 3
