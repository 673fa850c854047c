"""Local throw-away boxes: the Docker engine, Debian base images, systemd containers.

``dlsetup demo`` and the test harness share this module. It uses the standard
library only, so ``scripts/setup-host`` can run it with the system python3
before the project's venv exists::

    python3 -m dlsetup.localbox engine start|stop|status
    python3 -m dlsetup.localbox images [--force] [NAME ...]

Base images are built with debootstrap from the Debian mirror this machine's
apt already uses (or ``DLSETUP_DEBIAN_MIRROR``), with the machine's extra CA
certificates installed (TLS-intercepting proxies) and Debian's non-free
components enabled (NVIDIA's packages live there). An image that exists with
the current builder's fingerprint is not rebuilt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

STATE_DIR = Path(os.environ.get("DLSETUP_STATE", "/var/lib/dlsetup"))
# Image roots are large: /var/tmp, not a tmpfs /tmp. Only root builds there.
BUILD_DIR = Path(os.environ.get("DLSETUP_BUILD_DIR", "/var/tmp/dlsetup-build"))  # noqa: S108
DEFAULT_MIRROR = "http://deb.debian.org/debian"
LABEL = "io.dlsetup.builder"


class LocalBoxError(RuntimeError):
    """Something the local box machinery cannot do; the message says what to fix."""


@dataclass(frozen=True)
class ImageSpec:
    """A Debian base image that dlsetup builds with debootstrap."""

    name: str  # docker tag
    suite: str  # bookworm, trixie
    systemd: bool
    packages: tuple[str, ...] = ()

    def include(self) -> list[str]:
        base = ["python3", "sudo", "ca-certificates"]
        if self.systemd:
            # What a freshly installed Debian server has that matters to us:
            # an init, D-Bus, and sshd to be reached like a real box.
            base += [
                "systemd",
                "systemd-sysv",
                "dbus",
                "openssh-server",
                "iproute2",
                "kmod",
                "procps",
            ]
        return base + list(self.packages)


IMAGES: dict[str, ImageSpec] = {
    "debian12": ImageSpec("dlsetup/debian:12", "bookworm", systemd=False),
    "debian12-systemd": ImageSpec("dlsetup/debian:12-systemd", "bookworm", systemd=True),
    "debian13-systemd": ImageSpec("dlsetup/debian:13-systemd", "trixie", systemd=True),
}

# Units that make no sense in a container: masked in systemd images.
_MASKED_UNITS = (
    "systemd-udevd.service",
    "systemd-udevd-kernel.socket",
    "systemd-udevd-control.socket",
    "systemd-udev-trigger.service",
    "systemd-modules-load.service",
    "getty@tty1.service",
    "console-getty.service",
    "systemd-remount-fs.service",
    "systemd-firstboot.service",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "systemd-logind.service",
)


def log(msg: str) -> None:
    print(f"[localbox] {msg}", file=sys.stderr, flush=True)


def _run(argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), text=True, check=False, **kw)  # type: ignore[call-overload,no-any-return]


# ---------------------------------------------------------------- apt mirror


def _sources_uris(text: str) -> list[str]:
    uris: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("URIs:"):
            uris += line.split()[1:]
        elif line.startswith("deb ") and not line.startswith("deb-src"):
            parts = [p for p in line.split() if not p.startswith("[")]
            # deb [opts] URI suite comps: after dropping options, URI is parts[1]
            opts_dropped = [p for p in parts if "=" not in p or "://" in p]
            if len(opts_dropped) > 1:
                uris.append(opts_dropped[1])
    return uris


def debian_mirrors(sources_dir: Path = Path("/etc/apt")) -> tuple[str, str]:
    """(archive, security archive) as this machine's apt uses them.

    ``DLSETUP_DEBIAN_MIRROR`` / ``DLSETUP_DEBIAN_SECURITY_MIRROR`` override.
    """
    env_main = os.environ.get("DLSETUP_DEBIAN_MIRROR")
    env_sec = os.environ.get("DLSETUP_DEBIAN_SECURITY_MIRROR")
    uris: list[str] = []
    for f in [sources_dir / "sources.list", *sorted((sources_dir / "sources.list.d").glob("*"))]:
        if f.is_file() and f.suffix in (".sources", ".list", ""):
            uris += _sources_uris(f.read_text(errors="replace"))
    archive = next((u for u in uris if "security" not in u), DEFAULT_MIRROR)
    security = next((u for u in uris if "security" in u), archive.rstrip("/") + "-security")
    return (env_main or archive).rstrip("/"), (env_sec or security).rstrip("/")


def extra_ca_certs(ca_dir: Path = Path("/usr/local/share/ca-certificates")) -> list[Path]:
    """Locally added CA certificates (corporate / intercepting proxies)."""
    return sorted(p for p in ca_dir.rglob("*.crt") if p.is_file()) if ca_dir.is_dir() else []


def apt_sources(suite: str, archive: str, security: str) -> str:
    comps = "main contrib non-free non-free-firmware"
    return (
        f"Types: deb\nURIs: {archive}\nSuites: {suite} {suite}-updates\nComponents: {comps}\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {suite}-security\nComponents: {comps}\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


# ---------------------------------------------------------------- engine


def engine_answers(timeout: float = 10) -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return _run(["docker", "info"], capture_output=True, timeout=timeout).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def ensure_engine() -> bool:
    """Make sure a Docker engine answers; start dockerd when needed.

    Returns True when this call started dockerd (its PID is kept in
    ``$DLSETUP_STATE/dockerd.pid`` so that ``stop_engine`` stops only that one).
    """
    if engine_answers():
        return False
    if shutil.which("docker") is None or shutil.which("dockerd") is None:
        raise LocalBoxError(
            "no Docker engine: install it first (Debian/Ubuntu: apt-get install docker.io), "
            "or run scripts/setup-host"
        )
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    logf = (STATE_DIR / "dockerd.log").open("ab")
    proc = subprocess.Popen(
        ["dockerd"],
        stdout=logf,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (STATE_DIR / "dockerd.pid").write_text(str(proc.pid))
    log(f"started dockerd (pid {proc.pid}, log {STATE_DIR / 'dockerd.log'})")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if engine_answers():
            return True
        time.sleep(0.5)
    tail = (STATE_DIR / "dockerd.log").read_text(errors="replace").splitlines()[-15:]
    raise LocalBoxError("dockerd did not come up:\n" + "\n".join(tail))


def stop_engine() -> bool:
    """Stop the dockerd that ensure_engine started; leave any other engine alone."""
    pidfile = STATE_DIR / "dockerd.pid"
    if not pidfile.is_file():
        return False
    pid = int(pidfile.read_text().strip() or 0)
    pidfile.unlink()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    for _ in range(60):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    return True


# ---------------------------------------------------------------- images


def builder_fingerprint(spec: ImageSpec) -> str:
    """Changes whenever what goes into the image changes, so stale images rebuild."""
    h = hashlib.sha256()
    h.update(json.dumps([spec.suite, spec.include(), _MASKED_UNITS, 3]).encode())
    for cert in extra_ca_certs():
        h.update(cert.read_bytes())
    return h.hexdigest()[:16]


def image_fingerprint(name: str) -> str | None:
    res = _run(
        ["docker", "image", "inspect", "-f", '{{ index .Config.Labels "' + LABEL + '" }}', name],
        capture_output=True,
    )
    return res.stdout.strip() if res.returncode == 0 else None


def _configure_rootfs(root: Path, spec: ImageSpec, archive: str, security: str) -> None:
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(
        apt_sources(spec.suite, archive, security)
    )
    certs = extra_ca_certs()
    if certs:
        dest = root / "usr/local/share/ca-certificates"
        dest.mkdir(parents=True, exist_ok=True)
        for c in certs:
            shutil.copy2(c, dest / c.name)
        _run(["chroot", str(root), "update-ca-certificates"], capture_output=True)
    # Containers have no console and no hardware; keep apt lean but faithful.
    (root / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    if spec.systemd:
        for unit in _MASKED_UNITS:
            link = root / "etc/systemd/system" / unit
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to("/dev/null")
        (root / "etc/machine-id").write_text("")
        # sshd host keys are generated per container at first boot.
        for key in (root / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        keys_unit = root / "etc/systemd/system/dlsetup-sshkeys.service"
        keys_unit.write_text(
            "[Unit]\nDescription=Generate sshd host keys\nBefore=ssh.service\n"
            "ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\n\n"
            "[Service]\nType=oneshot\nExecStart=/usr/bin/ssh-keygen -A\n\n"
            "[Install]\nWantedBy=multi-user.target\n"
        )
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / "dlsetup-sshkeys.service"
        if not link.is_symlink():
            link.symlink_to("/etc/systemd/system/dlsetup-sshkeys.service")
    for d in ("var/lib/apt/lists", "var/cache/apt/archives"):
        for f in (root / d).glob("*"):
            if f.is_file():
                f.unlink()


def build_image(key: str, force: bool = False) -> str:
    """Build (or keep) the image ``IMAGES[key]``; returns what was done."""
    spec = IMAGES[key]
    want = builder_fingerprint(spec)
    if not force and image_fingerprint(spec.name) == want:
        return f"{spec.name}: up to date"
    if shutil.which("debootstrap") is None:
        raise LocalBoxError("debootstrap is missing: apt-get install debootstrap")
    archive, security = debian_mirrors()
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir=BUILD_DIR, prefix=key + ".") as tmp:
        root = Path(tmp) / "root"
        argv = [
            "debootstrap",
            "--variant=minbase",
            "--include=" + ",".join(spec.include()),
            "--components=main,contrib,non-free,non-free-firmware",
            spec.suite,
            str(root),
            archive,
        ]
        log(f"{spec.name}: debootstrap {spec.suite} from {archive}")
        res = _run(argv, capture_output=True)
        if res.returncode != 0:
            raise LocalBoxError(
                f"debootstrap for {spec.name} failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}"
            )
        _configure_rootfs(root, spec, archive, security)
        changes = [f"LABEL {LABEL}={want}", "ENV container=docker"]
        if spec.systemd:
            changes += ['CMD ["/lib/systemd/systemd"]']
        else:
            changes += ['CMD ["sleep", "infinity"]']
        tar = subprocess.Popen(
            ["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
        )
        assert tar.stdout is not None
        try:
            imp = _run(
                [
                    "docker",
                    "import",
                    *[a for c in changes for a in ("--change", c)],
                    "-",
                    spec.name,
                ],
                stdin=tar.stdout,
                capture_output=True,
            )
        finally:
            tar.stdout.close()  # an import that stops reading must not leave tar blocked
            try:
                tar.wait(timeout=60)
            except subprocess.TimeoutExpired:
                tar.kill()
                tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise LocalBoxError(f"docker import of {spec.name} failed: {imp.stderr.strip()}")
    return f"{spec.name}: built in {time.monotonic() - t0:.0f} s"


def build_images(keys: Sequence[str], force: bool = False) -> list[str]:
    unknown = [k for k in keys if k not in IMAGES]
    if unknown:
        raise LocalBoxError(f"unknown image(s) {unknown}; expected some of {sorted(IMAGES)}")
    with ThreadPoolExecutor(max_workers=max(1, len(keys))) as pool:
        return list(pool.map(lambda k: build_image(k, force), keys))


# ---------------------------------------------------------------- containers


@dataclass
class BoxSpec:
    """A systemd container that stands in for a freshly installed machine."""

    name: str
    image: str = IMAGES["debian12-systemd"].name
    hostname: str | None = None
    # Named, not privileged: --privileged fails on these machines and is poor
    # practice. ALL minus SYS_RESOURCE is what a box running Docker needs.
    cap_add: list[str] = field(default_factory=lambda: ["ALL"])
    cap_drop: list[str] = field(default_factory=lambda: ["SYS_RESOURCE"])
    volumes: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)

    def run_argv(self) -> list[str]:
        argv = [
            "docker",
            "run",
            "-d",
            "--name",
            self.name,
            "--hostname",
            self.hostname or self.name,
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--tmpfs",
            "/tmp:exec",  # noqa: S108  a tmpfs inside the box, not a path on this machine
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--cgroupns=host",
            "--security-opt",
            "apparmor=unconfined",
            "--security-opt",
            "seccomp=unconfined",
            "--label",
            "io.dlsetup.box=1",
            # systemd halts cleanly on SIGRTMIN+3 (SIGTERM makes it re-execute).
            "--stop-signal",
            "SIGRTMIN+3",
        ]
        for c in self.cap_add:
            argv += ["--cap-add", c]
        for c in self.cap_drop:
            argv += ["--cap-drop", c]
        for v in self.volumes:
            argv += ["-v", v]
        for d in self.devices:
            argv += ["--device", d]
        for k, v in self.labels.items():
            argv += ["--label", f"{k}={v}"]
        return [*argv, *self.extra_args, self.image]


def container_state(name: str) -> str | None:
    res = _run(["docker", "inspect", "-f", "{{.State.Status}}", name], capture_output=True)
    return res.stdout.strip() if res.returncode == 0 else None


def wait_for_systemd(name: str, timeout: float = 60) -> None:
    """Wait until systemd in the box has finished booting (running or degraded)."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        res = _run(["docker", "exec", name, "systemctl", "is-system-running"], capture_output=True)
        state = res.stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(0.5)
    raise LocalBoxError(
        f"systemd in box {name} did not finish booting (state: {state or 'unknown'})"
    )


def ensure_box(spec: BoxSpec) -> str:
    """Create or start the box; returns 'created', 'started' or 'running'."""
    state = container_state(spec.name)
    if state == "running":
        return "running"
    if state is not None:
        res = _run(["docker", "start", spec.name], capture_output=True)
        if res.returncode != 0:
            raise LocalBoxError(f"cannot start box {spec.name}: {res.stderr.strip()}")
        wait_for_systemd(spec.name)
        return "started"
    res = _run(spec.run_argv(), capture_output=True)
    if res.returncode != 0:
        raise LocalBoxError(f"cannot create box {spec.name}: {res.stderr.strip()}")
    wait_for_systemd(spec.name)
    return "created"


def remove_box(name: str) -> bool:
    if container_state(name) is None:
        return False
    _run(["docker", "rm", "-f", "-v", name], capture_output=True)
    return True


# ---------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python3 -m dlsetup.localbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("engine", help="start, stop or report the Docker engine")
    e.add_argument("action", choices=["start", "stop", "status"])
    i = sub.add_parser("images", help="build the base images that are missing or stale")
    i.add_argument("names", nargs="*", help=f"default: all of {', '.join(IMAGES)}")
    i.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = p.parse_args(argv)
    try:
        if args.cmd == "engine":
            if args.action == "start":
                started = ensure_engine()
                log("engine started" if started else "engine answers")
            elif args.action == "stop":
                log(
                    "stopped the dockerd we started"
                    if stop_engine()
                    else "no dockerd of ours to stop"
                )
            else:
                up = engine_answers()
                print("running" if up else "stopped")
                return 0 if up else 1
        else:
            ensure_engine()
            for line in build_images(args.names or list(IMAGES), args.force):
                log(line)
    except LocalBoxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
