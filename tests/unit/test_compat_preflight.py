"""The preflight's compatibility check (the collection's plugins/action/compat_check.py).

``decide`` is tested with GPU lists shaped like the probe's output
(roles/dl_facts/files/dl.fact, ``gpus``); the last test runs the preflight
role on the controller through ansible-playbook with a faked probe result, to
show that an incompatible combination stops the play with the message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ansible_collections.dlsetup.box.plugins.action import compat_check as plugin

from dlsetup import content

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = Path(plugin.__file__)


def gpu(pci_id: str, name: str = "", address: str = "0000:01:00.0") -> dict:
    vendor, _, device = pci_id.partition(":")
    return {
        "address": address,
        "vendor_id": vendor,
        "device_id": device,
        "pci_id": pci_id,
        "nvidia": vendor == "10de",
        "name": name or None,
        "driver": None,
        "link": {},
    }


GTX_1080_TI = gpu("10de:1b06", "NVIDIA Corporation GP102 [GeForce GTX 1080 Ti]")
TESLA_K80 = gpu("10de:102d", "NVIDIA Corporation GK210GL [Tesla K80]")
RTX_3090 = gpu("10de:2204", "NVIDIA Corporation GA102 [GeForce RTX 3090]")
RTX_5090 = gpu("10de:2b85", "NVIDIA Corporation GB202 [GeForce RTX 5090]")
INTEL_IGPU = gpu("8086:3e92", "Intel Corporation UHD Graphics 630")


def settings(**kw: str) -> dict:
    base = {
        "nvidia_driver_source": "nvidia",
        "nvidia_driver_branch": "",
        "nvidia_driver_kernel_modules": "auto",
        "cuda_version": "",
        "cuda_cudnn_version": "",
    }
    base.update(kw)
    return base


def test_no_gpu_means_nothing_to_check():
    out = plugin.decide("box", [INTEL_IGPU], settings(cuda_version="12.8"), "debian-12")
    assert not out["failed"] and not out["checked"]
    assert out["msg"] == "box: no NVIDIA GPU found; nothing to check"


def test_no_gpu_auto_resolves_to_the_branch_default():
    # Debian 12's packaged driver is R535: proprietary modules by default
    out = plugin.decide("box", [], settings(nvidia_driver_source="distro"), "debian-12")
    assert out["driver"].startswith("535.")
    assert out["kernel_modules"] == "proprietary"
    out = plugin.decide("box", [], settings(nvidia_driver_branch="580"), "debian-12")
    assert out["kernel_modules"] == "open"


def test_seed_pascal_on_580_with_cuda_12_fits():
    out = plugin.decide(
        "mybox",
        [GTX_1080_TI, INTEL_IGPU],
        settings(nvidia_driver_branch="580", cuda_version="12.8"),
        "debian-12",
    )
    assert not out["failed"], out["msg"]
    assert out["checked"]
    assert out["gpus"] == ["GeForce GTX 1080 Ti"]
    assert out["kernel_modules"] == "proprietary"  # Pascal has no open modules


def test_kepler_with_cuda_12_fails_naming_host_gpu_field_and_fix():
    out = plugin.decide(
        "k80box", [TESLA_K80], settings(nvidia_driver_branch="470", cuda_version="12.4"), None
    )
    assert out["failed"]
    msg = out["msg"]
    assert msg.startswith("k80box: ")
    assert "Tesla K80 [10de:102d]" in msg
    assert "cuda_version (cuda):" in msg
    assert "Newest combination that works: driver R470, CUDA 11.4" in msg
    assert 'cuda_version: "11.4"' in msg


def test_blackwell_with_proprietary_modules_fails():
    out = plugin.decide(
        "new",
        [RTX_5090],
        settings(nvidia_driver_branch="580", nvidia_driver_kernel_modules="proprietary"),
        "debian-13",
    )
    assert out["failed"]
    assert "nvidia_driver_kernel_modules (kernel_modules):" in out["msg"]
    assert "open kernel modules" in out["msg"]


def test_every_gpu_of_a_mixed_box_is_checked():
    out = plugin.decide(
        "mixed", [GTX_1080_TI, RTX_3090], settings(cuda_version="13.0"), "debian-12"
    )
    assert out["failed"]
    assert "GeForce GTX 1080 Ti" in out["msg"] and "GeForce RTX 3090" in out["msg"]


def test_distro_source_on_debian_checks_debians_driver():
    # Debian 12's R535 cannot run CUDA 12.8 natively: a warning (minor version
    # compatibility), not an error
    out = plugin.decide(
        "deb", [RTX_3090], settings(nvidia_driver_source="distro", cuda_version="12.8"), "debian-12"
    )
    assert not out["failed"], out["msg"]
    assert out["driver"].startswith("535.")
    assert any("minor version compatibility" in w for w in out["warnings"])
    # R535 ends before Blackwell
    out = plugin.decide("deb", [RTX_5090], settings(nvidia_driver_source="distro"), "debian-12")
    assert out["failed"]
    assert "nvidia_driver_branch (driver):" in out["msg"]


def test_distro_source_with_another_branch_on_debian_is_refused():
    out = plugin.decide(
        "deb", [], settings(nvidia_driver_source="distro", nvidia_driver_branch="580"), "debian-12"
    )
    assert out["failed"]
    assert "set nvidia_driver_source: nvidia for R580" in out["msg"]


def test_distro_cuda_is_checked_when_no_version_is_asked_for():
    # Debian 12's own toolkit is CUDA 11.8: too old for Blackwell
    s = settings(nvidia_driver_branch="580", cuda_source="distro")
    out = plugin.decide("deb", [RTX_5090], s, "debian-12")
    assert out["failed"]
    assert "cuda_version=11.8" in out["msg"]
    assert "cuda_version (cuda):" in out["msg"]


def test_unknown_nvidia_gpu_is_a_warning_not_a_stop():
    out = plugin.decide("lab", [gpu("10de:ffff", "future GPU")], settings(), "debian-12")
    assert not out["failed"]
    assert out["checked"]
    warning = out["warnings"][0]
    assert "future GPU [10de:ffff]" in warning and "brand-new part" in warning


def test_unknown_nvidia_gpu_stops_only_a_driver_that_cannot_know_it():
    future = gpu("10de:ffff", "future GPU")
    old = plugin.decide("lab", [future], settings(nvidia_driver_branch="550"), "debian-12")
    assert old["failed"]
    assert "R550 cannot drive 10de:ffff" in old["msg"]
    new = plugin.decide("lab", [future], settings(nvidia_driver_branch="580"), "debian-12")
    assert not new["failed"], new["msg"]


def test_gpus_missing_from_the_old_table_are_now_checked():
    # RTX 3060 (10de:2504), RTX A4000 (10de:24b0), GTX 1660, RTX 4070, RTX 5080
    for pci_id in ("10de:2504", "10de:24b0", "10de:2184", "10de:2786", "10de:2c02"):
        out = plugin.decide("lab", [gpu(pci_id)], settings(nvidia_driver_branch="580"), None)
        assert out["checked"] and not out["failed"], (pci_id, out["msg"])
        assert not [w for w in out["warnings"] if "compatibility data" in w]
    kepler = plugin.decide("lab", [TESLA_K80], settings(nvidia_driver_branch="535"), None)
    assert kepler["failed"] and "R470" in kepler["msg"]


def test_distro_key():
    assert plugin.distro_key("Debian", "12") == "debian-12"
    assert plugin.distro_key("Ubuntu", "24") == "ubuntu-24.04"
    assert plugin.distro_key(None, "12") is None


def test_preflight_play_stops_on_an_incompatible_host(tmp_path):
    """The compat task on the controller (local connection), with the probe's GPU
    list faked (this machine has no GPU): the play fails with the message, before
    any change. The second host sets no CUDA variable at all: its cuda_source
    (distro) comes from the cuda role's defaults, which the plugin has Ansible
    load, while its own nvidia_driver_source (nvidia) wins over the driver role's
    default (distro)."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "hosts": {
                        "k80box": {
                            "test_gpus": [TESLA_K80],
                            "nvidia_driver_branch": "470",
                            "cuda_version": "12.4",
                        },
                        "b5090": {
                            "test_gpus": [RTX_5090],
                            "test_distro": "debian-12",
                            "nvidia_driver_source": "nvidia",
                            "nvidia_driver_branch": "580",
                        },
                    }
                }
            }
        )
    )
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        textwrap.dedent(
            """\
            - name: Preflight (compat only)
              hosts: all
              gather_facts: false
              tasks:
                - name: Check
                  dlsetup.box.compat_check:
                    gpus: "{{ test_gpus }}"
                    distro: "{{ test_distro | default(omit) }}"
            """
        )
    )
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(content.collections_path()),
        ANSIBLE_NOCOLOR="1",
    )
    ansible_playbook = Path(sys.executable).parent / "ansible-playbook"
    if not ansible_playbook.exists():
        pytest.skip("ansible-playbook is not in this Python's environment")
    res = subprocess.run(
        [str(ansible_playbook), "-i", str(inventory), "-c", "local", str(playbook)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert "k80box: these versions do not work" in res.stdout
    assert "Tesla K80" in res.stdout
    assert "b5090: these versions do not work" in res.stdout
    assert "nvidia_driver_source=nvidia" in res.stdout
    assert "cuda_version=11.8" in res.stdout  # the cuda role's default source: distro


def test_cudnn_before_9_from_nvidia_is_refused_with_or_without_a_gpu():
    """The cuda role names cuDNN 9's packages (libcudnn9-cuda-12 ...); NVIDIA
    packaged cuDNN 8 as libcudnn8 with the CUDA version inside the package
    version, a name apt would not find: refused before anything changes."""
    for gpus in ([], [RTX_3090]):
        out = plugin.decide(
            "box",
            gpus,
            settings(cuda_source="nvidia", cuda_version="12.8", cuda_cudnn_version="8.9"),
            "debian-12",
        )
        assert out["failed"], out
        assert 'cuda_cudnn_version "8.9": dlsetup installs cuDNN 9 and newer' in out["msg"]
        assert "libcudnn8" in out["msg"]
    out = plugin.decide(
        "box", [], settings(cuda_source="nvidia", cuda_cudnn_version="nine"), "debian-12"
    )
    assert out["failed"] and 'cuda_cudnn_version "nine": expected N or N.M' in out["msg"]
    # With a GPU the compat engine reads the version and says it once.
    out = plugin.decide(
        "box", [RTX_3090], settings(cuda_source="nvidia", cuda_cudnn_version="nine"), "debian-12"
    )
    assert out["failed"] and "cuDNN 'nine' is not a cuDNN version" in out["msg"]
    assert out["msg"].count("is not a cuDNN version") + out["msg"].count("expected N or N.M,") == 1


def test_cudnn_9_from_nvidia_or_any_from_the_distro_passes_the_package_check():
    for cuda_source, cudnn in (("nvidia", "9"), ("nvidia", "9.8"), ("distro", "8")):
        out = plugin.decide(
            "box",
            [],
            settings(cuda_source=cuda_source, cuda_version="12.8", cuda_cudnn_version=cudnn),
            "debian-12",
        )
        assert not out["failed"], (cuda_source, cudnn, out)
