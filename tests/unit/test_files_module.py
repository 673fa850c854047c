"""The several-files module (the collection's plugins/modules/files.py).

It stands in for a row of ``ansible.builtin.copy`` tasks, in one module run:
it must write only what differs, atomically, with the mode asked for, create
the folders first, change nothing in check mode and show a diff per changed
file. The module file runs as Ansible runs it (a Python process given its
arguments in a JSON file) on real files under a temporary folder; owner and
group are the test's own user's, so no root is needed.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path
from typing import Any

from ansible_collections.dlsetup.box.plugins.modules import files as files_module

from tests.modules import run_module_file

MODULE = Path(files_module.__file__)
OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def run_module(tmp_path: Path, check: bool = False, diff: bool = True, **args: Any) -> dict:
    """Run the module file as Ansible does; its JSON result (failed ones too)."""
    return run_module_file(MODULE, tmp_path, args, check=check, diff=diff)


def f(dest: Path, content: str, mode: str = "0644") -> dict[str, str]:
    return {"dest": str(dest), "content": content, "mode": mode, "owner": OWNER, "group": GROUP}


def d(path: Path, mode: str = "0755") -> dict[str, str]:
    return {"path": str(path), "mode": mode, "owner": OWNER, "group": GROUP}


def mode_of(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_writes_folders_and_files_then_a_second_run_changes_nothing(tmp_path):
    keys = tmp_path / "etc" / "mok"
    conf = tmp_path / "etc" / "dkms" / "framework.conf.d"
    args = {
        "dirs": [d(keys, "0700"), d(conf)],
        "files": [f(conf / "sign.conf", "key=1\n"), f(tmp_path / "helper", "#!/bin/sh\n", "0755")],
    }
    first = run_module(tmp_path, **args)
    assert first["changed"] is True, first
    assert first["changed_paths"] == [
        str(keys),
        str(conf),
        str(conf / "sign.conf"),
        str(tmp_path / "helper"),
    ]
    assert mode_of(keys) == 0o700 and mode_of(conf) == 0o755
    assert (conf / "sign.conf").read_text() == "key=1\n" and mode_of(conf / "sign.conf") == 0o644
    assert mode_of(tmp_path / "helper") == 0o755
    assert [x["before_header"] for x in first["diff"]] == [
        str(conf / "sign.conf"),
        str(tmp_path / "helper"),
    ]
    second = run_module(tmp_path, **args)
    assert second["changed"] is False and second["changed_paths"] == [], second
    assert "diff" not in second


def test_only_the_file_that_differs_is_rewritten(tmp_path):
    a, b = tmp_path / "a.conf", tmp_path / "b.conf"
    run_module(tmp_path, files=[f(a, "one\n"), f(b, "two\n")])
    inode_a = a.stat().st_ino
    res = run_module(tmp_path, files=[f(a, "one\n"), f(b, "TWO\n")])
    assert res["changed_paths"] == [str(b)]
    assert a.stat().st_ino == inode_a  # same bytes: not touched
    assert b.read_text() == "TWO\n"
    assert res["diff"] == [
        {"before_header": str(b), "after_header": str(b), "before": "two\n", "after": "TWO\n"}
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_mode_that_differs_is_set_without_rewriting(tmp_path):
    a = tmp_path / "a.conf"
    run_module(tmp_path, files=[f(a, "x\n")])
    os.chmod(a, 0o666)
    res = run_module(tmp_path, files=[f(a, "x\n")])
    assert res["changed_paths"] == [str(a)] and mode_of(a) == 0o644
    assert "diff" not in res


def test_check_mode_writes_nothing_and_says_what_would_change(tmp_path):
    conf = tmp_path / "new"
    res = run_module(tmp_path, check=True, dirs=[d(conf)], files=[f(conf / "x.conf", "x\n")])
    assert res["changed"] is True
    assert res["changed_paths"] == [str(conf), str(conf / "x.conf")]
    assert not conf.exists()


def test_a_missing_folder_not_asked_for_fails_naming_it(tmp_path):
    res = run_module(tmp_path, files=[f(tmp_path / "no" / "x.conf", "x\n")])
    assert res["failed"] is True
    assert f"the folder {tmp_path / 'no'} does not exist" in res["msg"]
