"""Verify container_runtime in a systemd container with Docker running inside it.

The NVIDIA Container Toolkit here comes from the local apt repository that
stands in for NVIDIA's servers (tests/aptrepo.py,
tests/fixtures/aptrepo/libnvidia-container/toolkit.yml): its nvidia-ctk is a
test double that edits daemon.json as NVIDIA's does, and its
nvidia-container-runtime hands containers to runc as NVIDIA's does for a
container that asks for no GPU. No GPU here: the GPU check and the CDI spec
must be reported as skipped. Docker comes from Docker's repository
(`container_runtime_docker_source: docker`), whose stand-in
(tests/fixtures/aptrepo/docker/) carries Docker's package names and versions
around Debian's real docker.io engine, repacked: the engine is real.
"""

from __future__ import annotations

import json

import pytest

NVIDIA_RUNTIME = {"args": [], "path": "nvidia-container-runtime"}
# What prepare.yml wrote before dlsetup came: none of it is dlsetup's.
USER_KEYS = {
    "storage-driver": "vfs",
    "bip": "10.213.0.1/24",
    "insecure-registries": ["registry.lab.invalid:5000"],
    "features": {"buildkit": True},
}


def daemon_json(host) -> dict:
    return json.loads(host.file("/etc/docker/daemon.json").content_string)


def docker_info(host) -> dict:
    return json.loads(host.check_output("docker info --format '{{json .}}'"))


def role_facts(host) -> dict:
    return json.loads(host.file("/root/container_runtime-facts.json").content_string)


def test_users_keys_survive_the_merge(host):
    config = daemon_json(host)
    for key, value in USER_KEYS.items():
        assert config.get(key) == value, key


def test_dlsetups_keys_and_the_nvidia_runtime_are_in_daemon_json(host):
    config = daemon_json(host)
    assert config["data-root"] == "/srv/docker"
    assert config["log-driver"] == "json-file"
    assert config["log-opts"] == {"max-size": "100m", "max-file": "3"}
    assert config["runtimes"]["nvidia"] == NVIDIA_RUNTIME
    assert "default-runtime" not in config  # container_runtime_nvidia_default: false
    assert set(config) == {*USER_KEYS, "data-root", "log-driver", "log-opts", "runtimes"}


def test_running_docker_uses_the_merged_configuration(host):
    info = docker_info(host)
    assert "nvidia" in info["Runtimes"]
    assert info["DefaultRuntime"] == "runc"
    assert info["DockerRootDir"] == "/srv/docker"  # dlsetup's key: Docker was restarted
    assert info["Driver"] == "vfs"  # the user's key: still in effect
    assert host.service("docker").is_running
    assert host.service("docker").is_enabled


def test_a_container_runs_through_the_nvidia_runtime(host):
    """A tiny image made from the host's own echo; run with --runtime=nvidia."""
    if host.run("docker image inspect crt-mini").rc != 0:
        host.check_output(
            "tar -C / -ch usr/bin/echo usr/lib/x86_64-linux-gnu/libc.so.6 "
            "lib64/ld-linux-x86-64.so.2 | docker import - crt-mini"
        )
    out = host.check_output(
        "docker run --rm --network none --runtime=nvidia crt-mini /usr/bin/echo via-nvidia"
    )
    assert out.strip() == "via-nvidia"


def test_user_is_in_the_docker_group(host):
    assert "docker" in host.user("crt-alice").groups


@pytest.mark.parametrize(
    "package",
    [
        "docker-ce",
        "docker-ce-cli",
        "containerd.io",
        "docker-buildx-plugin",
        "docker-compose-plugin",
        "nvidia-container-toolkit",
        "nvidia-container-toolkit-base",
        "libnvidia-container-tools",
        "libnvidia-container1",
    ],
)
def test_packages_installed(host, package):
    assert host.package(package).is_installed


def test_docker_came_from_dockers_signed_source(host):
    """Docker's layout (suite = the release's codename, component stable),
    signed-by its own key only; docker-ce at Docker's version, Debian's
    docker.io not installed beside it."""
    sources = host.file("/etc/apt/sources.list.d/docker.sources").content_string
    assert "/docker/" in sources
    assert "Suites: bookworm" in sources
    assert "Components: stable" in sources
    assert "Signed-By: /etc/apt/keyrings/" in sources
    assert host.package("docker-ce").version == "5:28.5.2-1~debian.12~bookworm"
    assert not host.package("docker.io").is_installed
    assert host.file("/usr/share/doc/docker-ce/STAND-IN").exists


def test_toolkit_came_from_the_signed_source(host):
    assert host.package("nvidia-container-toolkit").version == "1.17.8-1"
    sources = host.file("/etc/apt/sources.list.d/nvidia-container-toolkit.sources")
    assert sources.exists
    assert "Signed-By: /etc/apt/keyrings/" in sources.content_string
    assert "/libnvidia-container/" in sources.content_string


def test_gpu_steps_reported_as_skipped(host):
    facts = role_facts(host)
    steps = {s["step"]: s["reason"] for s in facts["skipped"]}
    assert "no NVIDIA GPU" in steps["gpu-container-check"]
    assert "NVML" in steps["cdi-generate"]
    assert not host.file("/etc/cdi/nvidia.yaml").exists
    report = facts["report"]
    assert report["gpu_check"] == "skipped"
    assert report["nvidia_gpus"] == 0
    assert "nvidia" in report["runtimes"]
    assert report["docker_version"].startswith("20.10")


def test_second_run_did_not_restart_docker(host):
    """converge and idempotence each record dockerd's PID and start time."""
    runs = host.file("/root/dockerd-runs.log").content_string.split("\n")
    runs = [r for r in runs if r.strip()]
    assert len(runs) >= 2, f"expected a line per run (converge, idempotence): {runs}"
    pid, started = runs[-1].split()
    assert int(pid) > 0
    assert runs[-1] == runs[-2], "the run that changed nothing restarted dockerd"
    assert host.check_output("systemctl show docker -p MainPID --value") == pid
