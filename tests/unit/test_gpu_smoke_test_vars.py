"""gpu_smoke_test finds the gpucheck package beside the collection when the CLI
does not pass gpu_smoke_test_gpucheck_dir (plain ansible-playbook, AWX): in a
checkout and in an installed wheel's site-packages layout."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from dlsetup import content

VARS = content.roles_dir() / "gpu_smoke_test" / "vars" / "main.yml"
REPO = Path(__file__).resolve().parents[2]


def found(role_path: Path) -> Path | None:
    """The first candidate that exists, as the role's copy.yml picks it."""
    candidates = yaml.safe_load(VARS.read_text())["__gpu_smoke_test_gpucheck_candidates"]
    for c in candidates:
        path = c.replace("{{ role_path }}", str(role_path))
        if os.path.exists(path):
            return Path(os.path.realpath(path))
    return None


def test_a_checkout_finds_its_own_gpucheck():
    role_path = REPO / "collections/ansible_collections/dlsetup/box/roles/gpu_smoke_test"
    assert found(role_path) == (REPO / "dlsetup" / "gpucheck").resolve()


def test_an_installed_wheel_finds_the_gpucheck_beside_the_collection(tmp_path):
    site = tmp_path / "site-packages"
    role_path = site / "ansible_collections/dlsetup/box/roles/gpu_smoke_test"
    role_path.mkdir(parents=True)
    (site / "dlsetup" / "gpucheck").mkdir(parents=True)
    assert found(role_path) == (site / "dlsetup" / "gpucheck").resolve()
