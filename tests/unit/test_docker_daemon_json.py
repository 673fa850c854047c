"""The daemon.json merge module (the collection's plugins/modules/docker_daemon_json.py).

Docker's daemon.json is shared with the user and other tools; the module must
keep every key it is not told to change, write atomically, and refuse a file
that is not JSON without touching it. The pure functions are imported from the
module file; the module as a whole runs the way Ansible runs it (a Python
process given its arguments in a JSON file), with check and diff mode.
No root, no Docker: runs anywhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.dlsetup.box.plugins.modules import docker_daemon_json

from tests.modules import run_module_file

MODULE = Path(docker_daemon_json.__file__)


ddj = docker_daemon_json

# What a user (and another tool) already put there: none of it is dlsetup's.
USER_CONFIG = {
    "storage-driver": "vfs",
    "log-driver": "json-file",
    "log-opts": {"max-size": "10m", "max-file": "3"},
    "registry-mirrors": ["https://mirror.example.invalid"],
    "runtimes": {"crun": {"path": "/usr/bin/crun"}},
}


def run_module(tmp_path: Path, check: bool = False, diff: bool = True, **args: Any) -> dict:
    """Run the module file as Ansible does; its JSON result (failed ones too)."""
    return run_module_file(MODULE, tmp_path, args, check=check, diff=diff)


def write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


# -- merge -----------------------------------------------------------------------


def test_merge_keeps_every_other_key_in_order():
    new, changed, removed = ddj.merge(USER_CONFIG, {"data-root": "/scratch/docker"}, [])
    assert list(new) == [*USER_CONFIG, "data-root"]
    assert {k: new[k] for k in USER_CONFIG} == USER_CONFIG
    assert changed == ["data-root"]
    assert removed == []


def test_merge_does_not_modify_its_input():
    before = json.loads(json.dumps(USER_CONFIG))
    ddj.merge(USER_CONFIG, {"log-driver": "journald"}, ["storage-driver"])
    assert before == USER_CONFIG


def test_merge_equal_value_is_no_change():
    new, changed, removed = ddj.merge(USER_CONFIG, {"log-driver": "json-file"}, ["absent-key"])
    assert new == USER_CONFIG
    assert changed == removed == []


def test_merge_replaces_a_nested_value_whole_and_removes():
    new, changed, removed = ddj.merge(
        USER_CONFIG, {"log-opts": {"max-size": "50m"}}, ["registry-mirrors"]
    )
    assert new["log-opts"] == {"max-size": "50m"}
    assert "registry-mirrors" not in new
    assert changed == ["log-opts"]
    assert removed == ["registry-mirrors"]


def test_merge_refuses_a_key_both_set_and_removed():
    with pytest.raises(ddj.DaemonJsonError, match="both set and removed: data-root"):
        ddj.merge({}, {"data-root": "/x"}, ["data-root"])


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ('{"log-driver": "json-file",}', "not valid JSON"),
        ('{"a": 1', "not valid JSON"),
        ("[1, 2]", "JSON list, not an object"),
    ],
)
def test_parse_refuses_what_dockerd_cannot_read(text, msg):
    with pytest.raises(ddj.DaemonJsonError, match=msg):
        ddj.parse(text, "/etc/docker/daemon.json")


def test_parse_empty_file_is_an_empty_config():
    assert ddj.parse("  \n") == {}


# -- atomic write ------------------------------------------------------------------


def test_write_atomic_keeps_mode_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "daemon.json"
    write(path, USER_CONFIG)
    path.chmod(0o600)
    ddj.write_atomic(str(path), ddj.render({"a": 1}))
    assert json.loads(path.read_text()) == {"a": 1}
    assert path.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["daemon.json"]


@pytest.mark.parametrize("fails", ["fsync", "replace"])
def test_interrupted_write_leaves_the_old_file_whole(tmp_path, monkeypatch, fails):
    """A crash before the rename (disk full at fsync, killed before replace):
    the old file is intact, byte for byte, and no temporary file is left."""
    path = tmp_path / "daemon.json"
    write(path, USER_CONFIG)
    before = path.read_bytes()

    def boom(*_args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ddj.os, fails, boom)
    with pytest.raises(OSError, match="No space left"):
        ddj.write_atomic(str(path), ddj.render({"half": "written"}))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["daemon.json"]


# -- the module, run as Ansible runs it ------------------------------------------------


def test_module_merges_into_a_user_file(tmp_path):
    path = tmp_path / "daemon.json"
    write(path, USER_CONFIG)
    res = run_module(
        tmp_path, path=str(path), set={"data-root": "/scratch/docker"}, remove=["absent"]
    )
    assert res["changed"] is True, res
    assert res["set_keys"] == ["data-root"]
    on_disk = json.loads(path.read_text())
    assert on_disk == {**USER_CONFIG, "data-root": "/scratch/docker"}
    assert '"data-root": "/scratch/docker"' in res["diff"]["after"]
    assert "data-root" not in res["diff"]["before"]

    again = run_module(tmp_path, path=str(path), set={"data-root": "/scratch/docker"})
    assert again["changed"] is False
    assert "diff" not in again


def test_module_does_not_rewrite_an_equal_file_formatted_differently(tmp_path):
    path = tmp_path / "daemon.json"
    text = '{"storage-driver":"vfs",   "data-root": "/d"}'
    path.write_text(text)
    res = run_module(tmp_path, path=str(path), set={"data-root": "/d"})
    assert res["changed"] is False
    assert path.read_text() == text


def test_module_check_mode_changes_nothing_and_shows_the_diff(tmp_path):
    path = tmp_path / "daemon.json"
    write(path, USER_CONFIG)
    before = path.read_bytes()
    res = run_module(
        tmp_path, check=True, path=str(path), set={"default-runtime": "nvidia"}, remove=["log-opts"]
    )
    assert res["changed"] is True
    assert res["removed_keys"] == ["log-opts"]
    assert res["config"]["default-runtime"] == "nvidia"
    assert '"default-runtime": "nvidia"' in res["diff"]["after"]
    assert path.read_bytes() == before


def test_module_creates_a_missing_file_and_its_directory(tmp_path):
    path = tmp_path / "etc-docker" / "daemon.json"
    res = run_module(tmp_path, path=str(path), set={"data-root": "/d"}, mode="0640")
    assert res["changed"] is True
    assert json.loads(path.read_text()) == {"data-root": "/d"}
    assert path.stat().st_mode & 0o777 == 0o640


def test_module_with_nothing_to_set_does_not_create_the_file(tmp_path):
    path = tmp_path / "daemon.json"
    res = run_module(tmp_path, path=str(path), remove=["default-runtime"])
    assert res["changed"] is False
    assert not path.exists()


def test_module_refuses_invalid_json_and_leaves_it_alone(tmp_path):
    path = tmp_path / "daemon.json"
    text = '{\n  "storage-driver": "vfs",\n  "log-driver": "json-file",\n}\n'
    path.write_text(text)
    res = run_module(tmp_path, path=str(path), set={"data-root": "/d"})
    assert res["failed"] is True
    assert f"{path} is not valid JSON" in res["msg"]
    assert "line 4" in res["msg"]  # says where: the trailing comma
    assert "left untouched" in res["msg"]
    assert path.read_text() == text
    assert sorted(os.listdir(tmp_path)) == ["args.json", "daemon.json"]
