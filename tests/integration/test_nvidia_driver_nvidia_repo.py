"""Role nvidia_driver, NVIDIA-repository path, against a stand-in for NVIDIA's servers.

NVIDIA's CUDA repository cannot be reached from CI. tests/aptrepo.py serves a
signed local repository built from tests/fixtures/aptrepo/nvidia-cuda/*.yml:
driver packages with NVIDIA's names and dependency structure (cuda-drivers-580
-> cuda-drivers -> nvidia-driver -> nvidia-driver-libs -> libcuda1 ...,
nvidia-kernel-open-dkms conflicting with nvidia-kernel-dkms) holding small
stand-in files. The role is pointed at it through its mirror settings
(nvidia_driver_repo_url, _key_url, _key_fingerprint) and runs the code path
users run: playbooks/base.yml + playbooks/driver.yml, the shared apt_source
task, apt, the holds. The distribution path with Debian's real packages is the
molecule scenario (roles/nvidia_driver/molecule/default).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.boxes import plain_box, playbook, recap, sh

REPO = Path(__file__).resolve().parents[2]
PLAYS = [str(REPO / "playbooks" / "base.yml"), str(REPO / "playbooks" / "driver.yml")]
BIN = Path(sys.executable).parent
VERSION = "580.95.05-1"

pytestmark = [pytest.mark.docker]


@pytest.fixture(scope="module")
def mirror(nvidia_cuda_repo: dict[str, Any]) -> dict[str, Any]:
    repo = nvidia_cuda_repo
    return {
        "nvidia_driver_source": "nvidia",
        "nvidia_driver_branch": "580",
        "nvidia_driver_repo_url": repo["url"],
        "nvidia_driver_repo_key_url": repo["key_url"],
        "nvidia_driver_repo_key_fingerprint": repo["fingerprint"],
    }


@pytest.fixture(scope="module")
def box() -> Iterator[str]:
    """A fresh Debian 12 box; dkms and gpg come from Debian through an apt
    archive on the host that only this test uses (apt does not wait for a
    locked archive, and other scenarios may install at the same time)."""
    with plain_box("nvdrv-nvrepo", archive="debian12-nvdrv") as name:
        yield name


def play(box: str, extra: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return playbook(box, extra, PLAYS, *args)


def selections(box: str) -> dict[str, str]:
    out = sh(box, "dpkg --get-selections")
    return {n.split(":")[0]: s for n, s in (line.split() for line in out.splitlines())}


def test_check_mode_on_a_fresh_box_changes_nothing(box: str, mirror: dict[str, Any]) -> None:
    res = play(box, mirror, "--check")
    assert res.returncode == 0, res.stdout
    assert sh(box, "ls /etc/apt/sources.list.d /etc/apt/preferences.d").count("nvidia") == 0
    assert "nvidia-driver" not in sh(box, "dpkg --get-selections")


def test_installs_branch_580_open_modules_from_the_mirror(box: str, mirror: dict[str, Any]) -> None:
    res = play(box, mirror)
    assert res.returncode == 0, res.stdout
    src = sh(box, "cat /etc/apt/sources.list.d/nvidia-cuda.sources")
    assert f"URIs: {mirror['nvidia_driver_repo_url']}" in src
    assert "Signed-By: /etc/apt/keyrings/" in src
    for pkg in ("nvidia-driver", "nvidia-kernel-open-dkms", "nvidia-smi", "libcuda1"):
        assert sh(box, f"dpkg-query -W -f '${{Version}}' {pkg}") == VERSION, pkg
    # no GPU: 'auto' on R580 is NVIDIA's default, the open modules
    assert "nvidia-kernel-dkms" not in selections(box)
    sel = selections(box)
    for pkg in ("nvidia-driver", "nvidia-kernel-open-dkms", "libcuda1", "libnvidia-ml1"):
        assert sel[pkg] == "hold", pkg
    assert sel["dkms"] == "install"
    pins = sh(box, "cat /etc/apt/preferences.d/dlsetup-nvidia-driver")
    assert f"Package: nvidia-driver\nPin: version {VERSION}\nPin-Priority: 1001" in pins
    state = json.loads(sh(box, "cat /var/lib/dlsetup/nvidia_driver.json"))
    assert state["installed_version"] == "580.95.05"
    assert state["kernel_modules"] == "open"


def test_second_run_changes_nothing(box: str, mirror: dict[str, Any]) -> None:
    res = play(box, mirror)
    assert res.returncode == 0, res.stdout
    assert recap(res.stdout)["changed"] == 0, res.stdout


def test_upgrade_lifts_the_holds_for_one_run_and_holds_again(
    box: str, mirror: dict[str, Any]
) -> None:
    res = play(box, {**mirror, "nvidia_driver_upgrade": True})
    assert res.returncode == 0, res.stdout
    assert "Lift the dpkg holds" in res.stdout
    sel = selections(box)
    assert sel["nvidia-driver"] == "hold" and sel["libcuda1"] == "hold"
    assert "Pin-Priority: 1001" in sh(box, "cat /etc/apt/preferences.d/dlsetup-nvidia-driver")


# An NVSwitch cannot exist here: the state module reads the PCI bus from
# __nvidia_driver_pci_root, a /sys tree in the box that holds one NVSwitch
# bridge (vendor 0x10de, class 0x068000) as an HGX board shows it. Everything
# after that decision is real: apt against the stand-in repository, the holds.
FAKE_HGX = "/srv/fake-hgx"


def test_no_nvswitch_no_fabric_manager(box: str) -> None:
    """The runs above saw this box's real PCI bus, which has no NVSwitch."""
    assert "nvidia-fabricmanager-580" not in selections(box)


def test_nvswitch_gets_fabric_manager_at_the_drivers_exact_version(
    box: str, mirror: dict[str, Any]
) -> None:
    dev = f"{FAKE_HGX}/sys/bus/pci/devices/0000:07:00.0"
    sh(box, f"mkdir -p {dev} && echo 0x10de > {dev}/vendor && echo 0x068000 > {dev}/class")
    extra = {**mirror, "__nvidia_driver_pci_root": FAKE_HGX}
    res = play(box, extra)
    assert res.returncode == 0, res.stdout[-6000:]
    # the repository's newest build is 580.105.08-1; the driver is 580.95.05-1
    assert sh(box, "dpkg-query -W -f '${Version}' nvidia-fabricmanager-580") == VERSION
    assert selections(box)["nvidia-fabricmanager-580"] == "hold"
    pins = sh(box, "cat /etc/apt/preferences.d/dlsetup-nvidia-driver")
    assert f"Package: nvidia-fabricmanager-580\nPin: version {VERSION}" in pins
    blacklist = sh(box, "cat /etc/apt/apt.conf.d/51dlsetup-nvidia-driver-unattended")
    assert '"^nvidia\\-fabricmanager\\-580$";' in blacklist, blacklist
    again = play(box, extra)
    assert again.returncode == 0, again.stdout[-6000:]
    assert recap(again.stdout)["changed"] == 0, again.stdout[-6000:]


def test_dev_char_symlinks_for_the_nvidia_device_nodes(box: str, mirror: dict[str, Any]) -> None:
    """The role installs the link maker, its udev rule and boot unit; the maker, run on
    device nodes made with the NVIDIA driver's numbers (195:0 nvidia0, 195:255
    nvidiactl, 511:1 nvidia-caps/nvidia-cap1; no driver loads in a container), makes
    the /dev/char links runc looks devices up by."""
    assert "create-dev-char-symlinks" in sh(box, "cat /usr/local/sbin/dlsetup-nvidia-dev-char")
    rule = sh(box, "cat /etc/udev/rules.d/71-dlsetup-nvidia-dev-char.rules")
    assert 'DEVPATH=="/bus/pci/drivers/nvidia"' in rule
    unit = sh(box, "cat /etc/systemd/system/dlsetup-nvidia-dev-char.service")
    assert "ExecStart=/usr/local/sbin/dlsetup-nvidia-dev-char" in unit
    sh(
        box,
        "rm -rf /tmp/dev && mkdir -p /tmp/dev/nvidia-caps && mknod /tmp/dev/nvidia0 c 195 0 && "
        "mknod /tmp/dev/nvidiactl c 195 255 && mknod /tmp/dev/nvidia-caps/nvidia-cap1 c 511 1",
    )
    sh(box, "DLSETUP_DEV=/tmp/dev /usr/local/sbin/dlsetup-nvidia-dev-char")
    links = sh(box, 'cd /tmp/dev/char && for l in *; do echo "$l $(readlink $l)"; done')
    assert links.split("\n")[:3] == [
        "195:0 ../nvidia0",
        "195:255 ../nvidiactl",
        "511:1 ../nvidia-caps/nvidia-cap1",
    ], links
    # idempotent: a second run (the udev rule fires for every node) changes nothing
    sh(box, "DLSETUP_DEV=/tmp/dev /usr/local/sbin/dlsetup-nvidia-dev-char")
    assert sh(box, "ls /tmp/dev/char | wc -l").strip() == "3"
