"""Test boxes: systemd containers that stand in for freshly installed machines.

Each box boots systemd and runs sshd, has a sudo user and the test's SSH key
(what an OS installer leaves behind), and is listed in an inventory by its
address, the way a user lists real machines. Built on dlsetup.localbox, the
same code `dlsetup demo` uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dlsetup import localbox
from tests import aptcache

REPO = Path(__file__).resolve().parent.parent
# The installed console script, as a user runs it.
_SCRIPT = Path(sys.executable).parent / "dlsetup"
DLSETUP = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "dlsetup.cli"]
SSH_USER = "dl"


def docker_ready() -> str | None:
    """None when docker and the base image are there, else why not."""
    if shutil.which("docker") is None or not localbox.engine_answers():
        return "no Docker engine (scripts/setup-host starts one)"
    if localbox.image_fingerprint(localbox.IMAGES["debian12-systemd"].name) is None:
        return "base image missing (python -m dlsetup.localbox images)"
    return None


def sh(box: str, cmd: str, check: bool = True) -> str:
    res = subprocess.run(
        ["docker", "exec", box, "bash", "-c", cmd], capture_output=True, text=True, check=False
    )
    if check and res.returncode != 0:
        raise AssertionError(f"{box}: {cmd!r} failed ({res.returncode}): {res.stderr}")
    return res.stdout


def downloads_left(box: str) -> str:
    """Where dlsetup's download ahead (roles/dlsetup/tasks/prefetch.yml) ran on
    the box: what it left behind, empty when nothing. A download still running
    (an apt-get --download-only; the pattern does not match grep's own command
    line) and the async job's result files under /root/.ansible_async."""
    running = sh(box, "grep -l -a -e '--download-onl[y]' /proc/[0-9]*/cmdline 2>/dev/null || true")
    job_files = sh(box, "ls -A /root/.ansible_async 2>/dev/null || true")
    return (running + job_files).strip()


def exists(box: str, path: str) -> bool:
    return sh(box, f"test -e {path} && echo left || echo gone").strip() == "left"


@dataclass
class Box:
    name: str
    address: str


def _address(name: str) -> str:
    out = subprocess.run(
        [
            "docker",
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            name,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return out


def _wait_ssh(address: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, 22), timeout=2) as s:
                if s.recv(4).startswith(b"SSH"):
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"sshd on {address} did not answer")


def start_box(
    name: str,
    pubkey: str,
    image: str | None = None,
    volumes: list[str] | None = None,
    devices: list[str] | None = None,
    extra_args: list[str] | None = None,
    docker_volume: bool = True,
) -> Box:
    """A booted box with sshd, user `dl` (passwordless sudo) and our key.

    Docker inside the box keeps /var/lib/docker on an anonymous volume (removed
    with the box), as on a real machine's disk: overlayfs cannot stack on the
    container's own overlay root.
    """
    localbox.remove_box(name)
    spec = localbox.BoxSpec(
        name=name,
        image=image or localbox.IMAGES["debian12-systemd"].name,
        volumes=[*(volumes or []), *(["/var/lib/docker"] if docker_volume else [])],
        devices=devices or [],
        extra_args=extra_args or [],
        labels={"io.dlsetup.test": "1"},
    )
    localbox.ensure_box(spec)
    sh(
        name,
        f"id {SSH_USER} >/dev/null 2>&1 || useradd -m -s /bin/bash {SSH_USER}; "
        f"echo '{SSH_USER} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{SSH_USER}; "
        f"chmod 0440 /etc/sudoers.d/{SSH_USER}; "
        f"install -d -m 0700 -o {SSH_USER} -g {SSH_USER} /home/{SSH_USER}/.ssh; "
        f"echo '{pubkey}' > /home/{SSH_USER}/.ssh/authorized_keys; "
        f"chown {SSH_USER}: /home/{SSH_USER}/.ssh/authorized_keys; "
        "systemctl start ssh",
    )
    if os.environ.get("DLSETUP_APT_PROXY"):
        sh(
            name,
            f"echo 'Acquire::http::Proxy \"{os.environ['DLSETUP_APT_PROXY']}\";' "
            "> /etc/apt/apt.conf.d/01proxy",
        )
    box = Box(name, _address(name))
    _wait_ssh(box.address)
    return box


@dataclass
class Boxes:
    """A test module's boxes: one work folder and SSH key, every box it started
    removed at the end (also when the module fails)."""

    work: Path
    key: Path
    pub: str
    started: list[str] = field(default_factory=list)

    def start(self, name: str, **kwargs: Any) -> Box:
        """A fresh box (an old one of that name is removed first): start_box."""
        if name not in self.started:
            self.started.append(name)
        return start_box(name, self.pub, **kwargs)


def make_key(directory: Path) -> tuple[Path, str]:
    key = directory / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key, (directory / "id_ed25519.pub").read_text().strip()


def write_inventory(
    path: Path,
    key: Path,
    hosts: dict[str, dict[str, Any]],
    groups: dict[str, list[str]] | None = None,
) -> Path:
    """An inventory as a user writes it: addresses, a user, a key."""
    inv: dict[str, Any] = {
        "all": {
            "vars": {
                "ansible_user": SSH_USER,
                "ansible_ssh_private_key_file": str(key),
                # Test boxes get new host keys on every start.
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            },
            "hosts": hosts,
            "children": {
                g: {"hosts": {h: {} for h in members}} for g, members in (groups or {}).items()
            },
        }
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    return path


@dataclass
class CliResult:
    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def doc(self) -> dict[str, Any]:
        return json.loads(self.stdout)  # type: ignore[no-any-return]


def dlsetup(*args: str, env: dict[str, str] | None = None, timeout: float = 1800) -> CliResult:
    """Run the real CLI as a user would: a subprocess."""
    t0 = time.monotonic()
    full_env = {**os.environ, **(env or {})}
    res = subprocess.run(
        [*DLSETUP, *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=str(REPO),
        check=False,
    )
    return CliResult(res.returncode, res.stdout, res.stderr, time.monotonic() - t0)


def snapshot(box: str) -> dict[str, str]:
    """What 'nothing changed' means: every package and every file under /etc."""
    return {
        "packages": sh(box, "dpkg-query -W -f='${Package} ${Version} ${Status}\\n' | sort"),
        "etc": sh(
            box,
            "find /etc -xdev \\( -type f -o -type l \\) -print0 | sort -z | "
            "xargs -0 sha256sum 2>/dev/null; find /etc -xdev -type d | sort",
        ),
        "holds": sh(box, "apt-mark showhold"),
    }


def remove_boxes(names: Iterator[str] | list[str]) -> None:
    for n in names:
        localbox.remove_box(n)


def nvidia_mirror_vars() -> dict[str, Any]:
    """Host vars that point the NVIDIA repositories at tests/aptrepo.py's stand-ins.

    NVIDIA's servers cannot be reached from CI; a lab without internet sets the
    same variables to its own mirror. The roles' code path is the users' one.
    """
    from tests import aptrepo  # noqa: PLC0415

    repos = aptrepo.up()
    ctk = repos["libnvidia-container"]
    return {
        "container_runtime_nvidia_repo_url": ctk["url"],
        "container_runtime_nvidia_repo_key_url": ctk["key_url"],
        "container_runtime_nvidia_repo_key_fingerprint": ctk["fingerprint"],
    }


# Plain (non-systemd) boxes reached through the docker connection, for tests
# that run one stage's playbooks with ansible-playbook itself rather than the CLI.


@contextlib.contextmanager
def plain_box(prefix: str, archive: str | None = None) -> Iterator[str]:
    """A fresh ``dlsetup/debian:12`` container named ``<prefix>-<random>``, removed after.

    ``archive`` names an apt archive folder on the host (tests/aptcache.py)
    that only this box uses: apt locks an archive while it installs, and it
    does not wait for a lock another scenario holds.
    """
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    volume = ["-v", aptcache.archive_volume(archive)] if archive else []
    subprocess.run(
        ["docker", "run", "-d", "--name", name, *volume, "dlsetup/debian:12", "sleep", "infinity"],
        check=True,
        capture_output=True,
    )
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


def playbook(
    box: str, extra: dict[str, Any], playbooks: list[str], *args: str
) -> subprocess.CompletedProcess[str]:
    """``ansible-playbook`` from this venv with the project's config, over docker exec."""
    argv = ["-i", f"{box},", "-c", "community.docker.docker"]
    return ansible_playbook([*argv, "-e", json.dumps(extra), *args, *playbooks])


def ansible_playbook(args: list[str], **env_extra: str) -> subprocess.CompletedProcess[str]:
    """``ansible-playbook ARGS`` from this venv with the project's config and collection."""
    bindir = Path(sys.executable).parent
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"),
        ANSIBLE_NOCOLOR="1",
        PATH=f"{bindir}:{os.environ['PATH']}",
        **env_extra,
    )
    argv = [str(bindir / "ansible-playbook"), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)


def stop_busy_apt(box: str) -> None:
    """Stop the stand-in for a busy apt (tests/fixtures/playbooks/apt_lock_take.yml,
    its pid in /run/dlsetup-test-locked) where it still holds apt's locks after
    a run that gave up on them."""
    sh(box, "kill $(cat /run/dlsetup-test-locked) 2>/dev/null || true")


def said(res: subprocess.CompletedProcess[str]) -> str:
    """ansible-playbook's output with its line folds undone (the yaml callback
    folds long messages), for a test that looks for a sentence in it."""
    return " ".join(res.stdout.split())


def recap(out: str) -> dict[str, int]:
    """The PLAY RECAP counts of ansible-playbook's output: ok, changed, failed..."""
    line = next(x for x in out.splitlines() if " : ok=" in x)
    return {k: int(v) for k, v in (f.split("=") for f in line.split(":", 1)[1].split())}
