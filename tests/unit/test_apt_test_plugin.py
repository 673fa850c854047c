"""The Jinja test the roles' apt installs retry on (plugins/test/apt.py):
true only for an apt module result that failed on the archives' lock.

The failed results are the apt module's own, as it returned them on a
Debian 12 container whose archives' lock another process held (2026-12-07,
ansible-core's apt module, apt 2.6); the integration test
(tests/integration/test_apt_lock.py) meets the same on a real apt."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.dlsetup.box.plugins.test.apt import TestModule as AptTests  # not collected
from ansible_collections.dlsetup.box.plugins.test.apt import apt_archives_busy

ARCHIVES_BUSY = (
    "E: Could not get lock /var/cache/apt/archives/lock. It is held by process 102 (python3)\n"
    "E: Unable to lock directory /var/cache/apt/archives/"
)
INSTALL_CMD = (
    '/usr/bin/apt-get -y -o "Dpkg::Options::=--force-confdef" -o '
    "\"Dpkg::Options::=--force-confold\" -o DPkg::Lock::Timeout=600 install 'nvme-cli'"
)


def failed(msg: str, stderr: str = "", rc: int = 100) -> dict[str, Any]:
    return {"failed": True, "changed": False, "cmd": INSTALL_CMD, "msg": msg, "rc": rc,
            "stderr": stderr, "stdout": "Reading package lists...\nBuilding dependency tree...\n"}  # fmt: skip


@pytest.mark.parametrize(
    ("result", "busy"),
    [
        (failed(ARCHIVES_BUSY, ARCHIVES_BUSY), True),
        (failed(f"'{INSTALL_CMD}' failed: {ARCHIVES_BUSY}", ARCHIVES_BUSY), True),
        # dpkg's lock: apt-get itself waited lock_timeout for it; no second wait
        (
            failed(
                "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 7 "
                "(apt-get)\nE: Unable to acquire the dpkg frontend lock"
            ),
            False,
        ),
        (failed("No package matching 'nvme-clj' is available", rc=1), False),
        # the apt module's clean drops apt-get's stderr: a lock cannot be told there
        ({"failed": True, "msg": "apt-get clean failed", "rc": 100, "stdout": ""}, False),
        # so the cuda role runs apt-get clean itself (a command's result)
        (
            {
                "failed": True,
                "msg": "non-zero return code",
                "rc": 100,
                "cmd": ["apt-get", "clean"],
                "stderr": ARCHIVES_BUSY,
                "stdout": "",
            },
            True,
        ),
        ({"changed": True, "stdout": ARCHIVES_BUSY}, False),  # not failed
        ({"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}, False),
        (None, False),
        ("E: Could not get lock /var/cache/apt/archives/lock", False),  # not a result
    ],
)
def test_only_a_failure_on_the_archives_lock_is_busy(result: Any, busy: bool) -> None:
    assert apt_archives_busy(result) is busy


def test_the_collection_names_the_test() -> None:
    assert AptTests().tests() == {"apt_archives_busy": apt_archives_busy}
