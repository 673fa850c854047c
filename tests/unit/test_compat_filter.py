"""The compatibility data's facts for the roles (plugins/filter/compat.py):
the cuda role's distribution CUDA version is read from the data at run time,
the one home of it, not kept in the role's per-release vars."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.dlsetup.box.plugins.filter import compat as compat_filter

from dlsetup import content
from tests.boxes import ansible_playbook

CUDA_VARS = content.roles_dir() / "cuda" / "vars"


@pytest.mark.parametrize(
    ("distribution", "major", "cuda"),
    [
        ("Debian", "12", "11.8"),  # bookworm's nvidia-cuda-toolkit 11.8.89
        ("Debian", "13", "12.4"),  # trixie's 12.4.131
        ("Ubuntu", "22", "11.5"),  # jammy's 11.5.1
        ("Ubuntu", "24", "12.0"),  # noble's 12.0.140
        ("Fedora", "40", ""),  # not in the data: no version to check
        ("Debian", "11", ""),
    ],
)
def test_distro_cuda_reads_the_compatibility_data(distribution: str, major: str, cuda: str) -> None:
    assert compat_filter.distro_cuda(distribution, major) == cuda


def last_debug(tmp_path: Path, play: dict[str, Any], expr: str, *args: str) -> Any:
    """Run the play on this machine (ansible-playbook, the project's config, the
    collection found through ansible.cfg) with a last task that prints
    ``expr``; return its value."""
    tasks = [
        *play.get("tasks", []),
        {"ansible.builtin.debug": {"msg": f"{{{{ {expr} | to_json }}}}"}},
    ]
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump([{**play, "tasks": tasks}]))
    res = ansible_playbook(
        ["-i", "localhost,", "-c", "local", *args, str(path)],
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    msg = json.loads(res.stdout)["plays"][0]["tasks"][-1]["hosts"]["localhost"]["msg"]
    return json.loads(msg) if isinstance(msg, str) else msg


def test_the_cuda_role_reads_it_through_the_filter_as_a_run_does(tmp_path: Path) -> None:
    """The role's own expression, in a real ansible-playbook run on this
    machine (facts gathered, the collection found through ansible.cfg):
    the value is the data's for this machine's release (Debian 12 here and in
    CI: 11.8)."""
    play = {
        "hosts": "localhost",
        "gather_subset": ["min"],
        "vars_files": [str(CUDA_VARS / "main.yml")],
    }
    distribution, major, cuda = last_debug(
        tmp_path,
        play,
        "[ansible_facts['distribution'], ansible_facts['distribution_major_version'], "
        "__cuda_distro_version]",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
    )
    assert cuda == compat_filter.distro_cuda(distribution, major)
    if (distribution, major) == ("Debian", "12"):
        assert cuda == "11.8"


def test_no_release_file_of_the_cuda_role_keeps_its_own_copy() -> None:
    for f in sorted(CUDA_VARS.glob("*.yml")):
        if f.name != "main.yml":
            assert "__cuda_distro_version" not in (yaml.safe_load(f.read_text()) or {}), f.name
    assert compat_filter.FilterModule().filters()["distro_cuda"] is compat_filter.distro_cuda


@pytest.mark.parametrize("major", ["22", "24"])
def test_ubuntu_takes_the_debian_familys_toolkit_and_host_compiler(
    tmp_path: Path, major: str
) -> None:
    """The role's own OS dispatch (tasks/os_vars.yml) in a real
    ansible-playbook run, with Ubuntu's facts given: no Ubuntu file, so the
    Debian family's: the toolkit with nvidia-cuda-toolkit-gcc, nvcc and CMake
    pointed at its cuda-g++."""
    role = content.roles_dir() / "cuda"
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {
                "ansible.builtin.include_tasks": str(role / "tasks" / "os_vars.yml"),
                "vars": {"role_path": str(role)},
            }
        ],
    }
    facts = {"distribution": "Ubuntu", "distribution_major_version": major, "os_family": "Debian"}
    distribution, packages, env = last_debug(
        tmp_path,
        play,
        "[ansible_facts['distribution'], __cuda_distro_packages, __cuda_distro_env]",
        "-e",
        json.dumps({"ansible_facts": facts}),
    )
    assert distribution == "Ubuntu"  # the dispatch read the facts given, not this machine's
    assert packages == ["nvidia-cuda-toolkit", "nvidia-cuda-toolkit-gcc"]
    assert env == {
        "NVCC_PREPEND_FLAGS": "-ccbin /usr/bin/cuda-g++",
        "CUDAHOSTCXX": "/usr/bin/cuda-g++",
    }
