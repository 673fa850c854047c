"""Shared set-up of the end-to-end tier: boxes over SSH, the real CLI as a subprocess.

Every test here needs the Docker engine and the base images that
`scripts/setup-host` and `python -m dlsetup.localbox images` provide; where they
are missing the whole tier is skipped with the reason, once, here.

The tier runs on two workers (pytest-xdist, `--dist loadgroup`, see
scripts/test). A group runs whole on one worker, its files one after another,
so every file's module-scoped boxes live on one worker. Files whose boxes share
the host's loop devices and the disk apt archive (`LOOP_DISK_FILES`) are in the
same group, so they never run at once. Every file names its own containers and
archive folders.

The files are split into two groups of about equal time (`GROUPS`), by hand;
within a group they run in collection order. xdist hands each worker two groups ahead of time and orders them
by test count, not by time, so with one group per file the three long files
(interrupt, ssh, demo) could end up queued on the same worker while the other
one idled. A file missing from `GROUPS` is a group of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.boxes import Boxes, docker_ready, make_key, remove_boxes

LOOP_DISK_FILES = frozenset({"test_disk_layout_box.py", "test_e2e_reinstall.py"})


# Seconds each file's tests took (two workers on 2 cores) on 2026-12-05, with
# the interrupt test's three points chained on one box: ssh 309 (with the CUDA
# stage, which it now leaves out) + ~40, demo 242, interrupt 198, lab 107 + set-up,
# faults 30, reinstall and disk layout ~80 together, bad input and smoke-host a
# few seconds each; group b (ssh, lab, faults, the loop-disk files) was the
# stage's 607 s against a's ~450. Without CUDA in ssh and with faults beside
# interrupt and demo, the two come to about 480 / 500. Interrupt and ssh, once
# the two longest, stay apart.
GROUPS = {
    "test_e2e_interrupt.py": "e2e-a",
    "test_e2e_demo.py": "e2e-a",
    "test_e2e_badinput.py": "e2e-a",
    "test_e2e_faults.py": "e2e-a",
    "test_e2e_ssh.py": "e2e-b",
    "test_e2e_lab.py": "e2e-b",
    "test_smoke_host.py": "e2e-b",
    **dict.fromkeys(LOOP_DISK_FILES, "e2e-b"),
}


def xdist_group(filename: str) -> str:
    return GROUPS.get(filename, filename)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups off the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    why = docker_ready()
    for item in items:
        item.add_marker(pytest.mark.docker)
        item.add_marker(pytest.mark.xdist_group(xdist_group(item.path.name)))
        if why is not None:
            item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="module")
def boxes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Boxes]:
    work = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    key, pub = make_key(work)
    kept = Boxes(work, key, pub)
    try:
        yield kept
    finally:
        remove_boxes(kept.started)
