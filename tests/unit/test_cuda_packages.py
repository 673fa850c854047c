"""What the cuda role asks apt for (__cuda_packages in vars/main.yml), rendered
by Ansible's own templar as a run does: the install task and the driver
stage's download ahead (tasks/packages.yml) both read this one expression."""

from __future__ import annotations

from typing import Any

import yaml
from ansible.template import trust_as_template

from dlsetup import content
from tests.templating import render

VARS = content.roles_dir() / "cuda" / "vars"


def packages(source: str, versions: list[str], release: str = "main", cudnn: str = "") -> list[str]:
    variables: dict[str, Any] = yaml.safe_load((VARS / "main.yml").read_text())
    if release != "main":
        variables.update(yaml.safe_load((VARS / f"{release}.yml").read_text()))
    # The role's own vars are templates to Ansible (one may name another, as
    # __cuda_packages names __cuda_cudnn_packages); the inputs below are values.
    variables = {k: trust_as_template(v) if isinstance(v, str) else v for k, v in variables.items()}
    variables.update(
        cuda_source=source,
        __cuda_versions=versions,
        __cuda_default=versions[0],
        cuda_cudnn_version=cudnn,
    )
    return list(render(variables["__cuda_packages"], variables))


def test_nvidia_source_names_a_toolkit_per_version_and_gpp() -> None:
    assert packages("nvidia", ["12.8", "12.6"]) == ["g++", "cuda-toolkit-12-8", "cuda-toolkit-12-6"]


def test_distro_source_names_the_release_packages() -> None:
    assert packages("distro", ["11.8"], "Debian") == [
        "nvidia-cuda-toolkit",
        "nvidia-cuda-toolkit-gcc",
    ]
    assert packages("distro", [""]) == ["nvidia-cuda-toolkit"]


def test_cudnn_goes_in_with_the_toolkit_for_the_default_versions_cuda_major() -> None:
    """One apt transaction, and the same list for the driver stage's download ahead."""
    assert packages("nvidia", ["12.8", "11.8"], cudnn="9") == [
        "g++",
        "cuda-toolkit-12-8",
        "cuda-toolkit-11-8",
        "libcudnn9-cuda-12",
        "libcudnn9-headers-cuda-12",
        "libcudnn9-dev-cuda-12",
    ]


def test_a_cudnn_minor_pins_the_dev_packages_headers_too() -> None:
    """NVIDIA's libcudnn9-dev-cuda-12 needs libcudnn9-headers-cuda-12 at exactly
    its own version: unpinned, apt would take the newest headers and refuse."""
    assert packages("nvidia", ["12.6"], cudnn="9.8")[-3:] == [
        "libcudnn9-cuda-12=9.8.*",
        "libcudnn9-headers-cuda-12=9.8.*",
        "libcudnn9-dev-cuda-12=9.8.*",
    ]


def test_no_cudnn_from_the_distribution() -> None:
    assert packages("distro", ["11.8"], "Debian", cudnn="9") == [
        "nvidia-cuda-toolkit",
        "nvidia-cuda-toolkit-gcc",
    ]
