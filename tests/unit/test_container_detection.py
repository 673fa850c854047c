"""Container or not (the collection's plugins/module_utils/container.py), the one
answer the modules nvidia_driver_state and container_info (the nvme role's) give.

Pure of a system root and of what `systemd-detect-virt --container` printed, so
the tests fake exactly those. No Docker: runs anywhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.dlsetup.box.plugins.module_utils.container import container_kind


def environ(root: Path, data: bytes) -> None:
    (root / "proc" / "1").mkdir(parents=True)
    (root / "proc" / "1" / "environ").write_bytes(data)


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("docker\n", "docker"),
        ("systemd-nspawn\n", "systemd-nspawn"),
        ("none\n", ""),
        (None, ""),
        ("", ""),
        # stderr mixed into the output is not a kind
        ("Failed to check for container: Permission denied\n", ""),
    ],
)
def test_systemd_detect_virt_names_the_kind(tmp_path, said, expected):
    assert container_kind(str(tmp_path), said) == expected


@pytest.mark.parametrize(
    ("marker", "kind"), [(".dockerenv", "docker"), ("run/.containerenv", "podman")]
)
def test_runtime_marker_files_without_systemd(tmp_path, marker, kind):
    (tmp_path / marker).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / marker).write_text("")
    assert container_kind(str(tmp_path), None) == kind
    # systemd-detect-virt saying "none" does not overrule what the runtime left
    assert container_kind(str(tmp_path), "none\n") == kind


def test_pid1_container_variable(tmp_path):
    environ(tmp_path, b"PATH=/bin\0container=lxc\0TERM=linux\0")
    assert container_kind(str(tmp_path), None) == "lxc"


def test_empty_container_variable_still_counts(tmp_path):
    environ(tmp_path, b"container=\0")
    assert container_kind(str(tmp_path), None) == "container"


def test_a_host_is_no_container(tmp_path):
    environ(tmp_path, b"PATH=/bin\0HOME=/\0")
    assert container_kind(str(tmp_path), "none\n") == ""
