"""Which packages the nvidia_driver role holds, pins and keeps from
unattended-upgrades: the driver stack, never the CUDA toolkit or the NVIDIA
Container Toolkit (other roles install and upgrade those). CI once caught the
role holding libnvidia-container1 on the second run, after the docker stage
had installed it: the second run was not a no-op."""

from __future__ import annotations

import re

import pytest
import yaml

from dlsetup import content

VARS = content.roles_dir() / "nvidia_driver" / "vars" / "main.yml"
HOLD = re.compile(str(yaml.safe_load(VARS.read_text())["__nvidia_driver_hold_regex"]).strip())

# Names from Debian 12's nvidia-graphics-drivers (535) and NVIDIA's repository (cuda-drivers, 580).
DRIVER = [
    "nvidia-driver",
    "nvidia-kernel-dkms",
    "nvidia-open-kernel-dkms",
    "nvidia-kernel-support",
    "nvidia-smi",
    "nvidia-alternative",
    "nvidia-persistenced",
    "nvidia-modprobe",
    "nvidia-vdpau-driver",
    "nvidia-egl-icd",
    "nvidia-vulkan-icd",
    "nvidia-opencl-icd",
    "nvidia-suspend-common",
    "libcuda1",
    "libnvidia-ml1",
    "libnvidia-ptxjitcompiler1",
    "libnvidia-nvvm4",
    "libnvcuvid1",
    "libgl1-nvidia-glvnd-glx",
    "libglx-nvidia0",
    "libegl-nvidia0",
    "xserver-xorg-video-nvidia",
    "firmware-nvidia-gsp",
    "cuda-drivers",
    "cuda-drivers-580",
    "nvidia-driver-580-open",
    "nvidia-fabricmanager-580",
]
NOT_DRIVER = [
    "libnvidia-container1",
    "libnvidia-container-tools",
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "nvidia-cuda-toolkit",
    "nvidia-cuda-dev",
    "nvidia-cuda-toolkit-gcc",
    "cuda-toolkit-12-8",
    "libcudnn9-cuda-12",
    "nvidia-cudnn",
    "libnvvm4",
]


@pytest.mark.parametrize("name", DRIVER)
def test_driver_stack_package_is_held(name: str) -> None:
    assert HOLD.match(name), name


@pytest.mark.parametrize("name", NOT_DRIVER)
def test_toolkit_package_is_not_held(name: str) -> None:
    assert not HOLD.match(name), name
