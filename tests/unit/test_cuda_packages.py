"""What the cuda role asks apt for (__cuda_packages in vars/main.yml), rendered
by Ansible's own templar as a run does: the install task and the driver
stage's download ahead (tasks/packages.yml) both read this one expression."""

from __future__ import annotations

from typing import Any

import yaml

from dlsetup import content
from tests.templating import render

VARS = content.roles_dir() / "cuda" / "vars"


def packages(source: str, versions: list[str], release: str = "main") -> list[str]:
    variables: dict[str, Any] = yaml.safe_load((VARS / "main.yml").read_text())
    if release != "main":
        variables.update(yaml.safe_load((VARS / f"{release}.yml").read_text()))
    variables.update(cuda_source=source, __cuda_versions=versions)
    return list(render(variables["__cuda_packages"], variables))


def test_nvidia_source_names_a_toolkit_per_version_and_gpp() -> None:
    assert packages("nvidia", ["12.8", "12.6"]) == ["g++", "cuda-toolkit-12-8", "cuda-toolkit-12-6"]


def test_distro_source_names_the_release_packages() -> None:
    assert packages("distro", ["11.8"], "Debian-12") == [
        "nvidia-cuda-toolkit",
        "nvidia-cuda-toolkit-gcc",
    ]
    assert packages("distro", [""]) == ["nvidia-cuda-toolkit"]
