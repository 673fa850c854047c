"""Shared set-up of the end-to-end tier: boxes over SSH, the real CLI as a subprocess.

Every test here needs the Docker engine and the base images that
`scripts/setup-host` and `python -m dlsetup.localbox images` provide; where they
are missing the whole tier is skipped with the reason, once, here.

The tier runs two files at a time (pytest-xdist, `--dist loadgroup`, see
scripts/test): each file is one group, since its module-scoped boxes must live
on one worker. Files whose boxes share the host's loop devices and the disk
apt archive (`LOOP_DISK_FILES`) form a single group, so they never run at once.
Every other file names its own containers and archive folders.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.boxes import Boxes, docker_ready, make_key, remove_boxes

LOOP_DISK_FILES = frozenset({"test_disk_layout_box.py", "test_e2e_reinstall.py"})


def xdist_group(filename: str) -> str:
    return "loop-disks" if filename in LOOP_DISK_FILES else filename


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
