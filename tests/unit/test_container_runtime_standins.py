"""The stand-ins for NVIDIA's servers and binaries that container_runtime is tested against.

tests/fixtures/aptrepo/libnvidia-container/toolkit.yml describes packages with
NVIDIA's names and dependency structure that stand in for NVIDIA's
libnvidia-container repository (CI cannot reach it). Their nvidia-ctk is a test
double of NVIDIA's: these tests hold it to what the real one does to
daemon.json, so the role's molecule scenario tests the role against faithful
behaviour, and check that the role's probe (the docker_daemon_json module)
and nvidia-ctk agree, so a second run never reconfigures. No root, no Docker.
"""

from __future__ import annotations

import ctypes.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible_collections.dlsetup.box.plugins.modules import docker_daemon_json

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests" / "fixtures" / "aptrepo" / "libnvidia-container" / "toolkit.yml"
NVIDIA_RUNTIME = {"args": [], "path": "nvidia-container-runtime"}
USER_CONFIG = {"storage-driver": "vfs", "log-opts": {"max-size": "10m"}, "bip": "10.213.0.1/24"}


def _packages() -> dict[str, dict]:
    return {p["name"]: p for p in yaml.safe_load(SPEC.read_text())["packages"]}


PACKAGES = _packages()


ddj = docker_daemon_json


@pytest.fixture
def bindir(tmp_path: Path) -> Path:
    """The stand-ins' executables, written out as the packages install them."""
    out = tmp_path / "bin"
    out.mkdir()
    for pkg in PACKAGES.values():
        for path, spec in (pkg.get("files") or {}).items():
            if path.startswith("/usr/bin/"):
                dest = out / Path(path).name
                dest.write_text(spec["content"])
                dest.chmod(0o755)
    return out


def ctk(bindir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(bindir / "nvidia-ctk"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_packages_carry_nvidias_names_and_dependency_structure():
    assert set(PACKAGES) == {
        "nvidia-container-toolkit",
        "nvidia-container-toolkit-base",
        "libnvidia-container-tools",
        "libnvidia-container1",
    }
    version = PACKAGES["nvidia-container-toolkit"]["version"]
    assert all(p["version"] == version for p in PACKAGES.values())
    top = PACKAGES["nvidia-container-toolkit"]["depends"]
    assert f"nvidia-container-toolkit-base (= {version})" in top
    assert "libnvidia-container-tools (>= " in top
    assert "libnvidia-container1 (>= " in PACKAGES["libnvidia-container-tools"]["depends"]
    base_files = PACKAGES["nvidia-container-toolkit-base"]["files"]
    assert {"/usr/bin/nvidia-ctk", "/usr/bin/nvidia-container-runtime"} <= set(base_files)
    assert "/usr/bin/nvidia-container-cli" in PACKAGES["libnvidia-container-tools"]["files"]
    assert all("stand-in" in p["description"] for p in PACKAGES.values())


def test_runtime_configure_adds_the_nvidia_runtime_and_keeps_other_keys(tmp_path, bindir):
    conf = tmp_path / "daemon.json"
    conf.write_text(json.dumps(USER_CONFIG))
    res = ctk(bindir, "runtime", "configure", "--runtime=docker", f"--config={conf}")
    assert res.returncode == 0, res.stderr
    assert f"Wrote updated config to {conf}" in res.stderr
    data = json.loads(conf.read_text())
    assert data == {**USER_CONFIG, "runtimes": {"nvidia": NVIDIA_RUNTIME}}
    # NVIDIA's is Go: map keys come out sorted, indented by 4 spaces.
    assert conf.read_text() == json.dumps(data, indent=4, sort_keys=True)


def test_runtime_configure_set_as_default_and_other_runtimes_stay(tmp_path, bindir):
    conf = tmp_path / "daemon.json"
    conf.write_text(json.dumps({"runtimes": {"crun": {"path": "/usr/bin/crun"}}}))
    res = ctk(
        bindir, "runtime", "configure", "--runtime=docker", "--set-as-default", f"--config={conf}"
    )
    assert res.returncode == 0, res.stderr
    data = json.loads(conf.read_text())
    assert data["default-runtime"] == "nvidia"
    assert data["runtimes"] == {"crun": {"path": "/usr/bin/crun"}, "nvidia": NVIDIA_RUNTIME}


def test_runtime_configure_refuses_invalid_json(tmp_path, bindir):
    conf = tmp_path / "daemon.json"
    conf.write_text('{"a": 1,}')
    res = ctk(bindir, "runtime", "configure", "--runtime=docker", f"--config={conf}")
    assert res.returncode == 1
    assert "unable to load config" in res.stderr
    assert conf.read_text() == '{"a": 1,}'


def test_the_roles_probe_sees_what_nvidia_ctk_wrote(tmp_path, bindir):
    """After nvidia-ctk, the role's probe finds the runtime (no second configure)
    and merging dlsetup's keys again changes nothing (no Docker restart)."""
    conf = tmp_path / "daemon.json"
    merged, _, _ = ddj.merge(USER_CONFIG, {"data-root": "/srv/docker"}, [])
    ddj.write_atomic(str(conf), ddj.render(merged))
    assert ctk(bindir, "runtime", "configure", f"--config={conf}").returncode == 0
    probe = ddj.parse(conf.read_text())
    assert "nvidia" in probe["runtimes"]
    _, changed, removed = ddj.merge(probe, {"data-root": "/srv/docker"}, [])
    assert changed == removed == []


@pytest.mark.skipif(
    ctypes.util.find_library("nvidia-ml") is not None, reason="this host has NVML (a GPU driver)"
)
def test_gpu_commands_fail_without_nvml_as_nvidias_do(tmp_path, bindir):
    res = ctk(bindir, "cdi", "generate", f"--output={tmp_path / 'nvidia.yaml'}")
    assert res.returncode == 1
    assert "failed to initialize NVML: ERROR_LIBRARY_NOT_FOUND" in res.stderr
    assert not (tmp_path / "nvidia.yaml").exists()
    cli = subprocess.run(
        [str(bindir / "nvidia-container-cli"), "info"], capture_output=True, text=True, check=False
    )
    assert cli.returncode == 1
    assert "libnvidia-ml.so.1: cannot open shared object file" in cli.stderr


def test_nvidia_container_runtime_hands_over_to_runc(tmp_path, bindir):
    """With no GPU asked for, NVIDIA's shim calls runc with the same arguments."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "runc").write_text('#!/bin/sh\necho "runc $*"\n')
    (fake / "runc").chmod(0o755)
    res = subprocess.run(
        [str(bindir / "nvidia-container-runtime"), "--root", "/run/x", "create", "c1"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": f"{fake}:/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "runc --root /run/x create c1"
