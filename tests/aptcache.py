"""Apt caches for end-to-end tests, so that boxes don't each download the same packages.

Two kinds, for two purposes:

* :func:`archive_volume`: the host's apt archive folder bind-mounted as a box's
  /var/cache/apt/archives (what the molecule scenarios share). A fresh box then
  installs from .debs already here: cheap, but apt does not go through any
  network cache, so it says nothing about a lab.
* :func:`up`: an apt-cacher-ng container (``dlsetup-e2e-aptcache``), the shared
  cache a lab puts on one machine, built by the test itself from the project's
  dlsetup/debian:12 image with apt-cacher-ng from Debian's mirror (the mirror
  the image already uses). Boxes reach it by its container address through
  ``dlsetup_apt_proxy``; :func:`stats` reads its access log to tell what it
  fetched upstream and what it served from its cache.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from dlsetup import localbox

REPO = Path(__file__).resolve().parent.parent
IMAGE = "dlsetup/e2e-aptcacher:12-2"  # bump the tag when the build below changes
CONTAINER = "dlsetup-e2e-aptcache"
PORT = 3142
_ACCESS_LOG = "/var/log/apt-cacher-ng/apt-cacher.log"


def archive_volume(name: str = "e2e-debian12") -> str:
    """A docker -v argument sharing an apt archive folder of the host (.cache/ is
    gitignored). apt locks the folder while it downloads and does not wait for
    the lock: boxes that install at the same time need different folders, so
    the e2e tests, which run one box at a time, use their own, not the one the
    molecule scenarios share."""
    path = REPO / ".cache" / "apt" / "archives" / name
    (path / "partial").mkdir(parents=True, exist_ok=True)
    return f"{path}:/var/cache/apt/archives:rw"


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def _image_exists(name: str) -> bool:
    return _docker("image", "inspect", name, check=False).returncode == 0


def build_image() -> str:
    """dlsetup/debian:12 + apt-cacher-ng, installed from the image's own Debian mirror."""
    if _image_exists(IMAGE):
        return IMAGE
    builder = f"{CONTAINER}-build"
    _docker("rm", "-f", builder, check=False)
    base = localbox.IMAGES["debian12"].name
    res = _docker(
        "run",
        "--name",
        builder,
        base,
        "bash",
        "-c",
        "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -q; "
        "apt-get install -y -q --no-install-recommends apt-cacher-ng; apt-get clean; "
        # Proxy every mirror as the boxes name it: without this, apt-cacher-ng
        # swaps a Debian mirror for one of its own list (unreachable here,
        # and not the mirror the user chose).
        "sed -i -E 's/^(Remap-(debrep|secdeb|uburep):)/#\\1/' /etc/apt-cacher-ng/acng.conf",
        check=False,
    )
    if res.returncode != 0:
        _docker("rm", "-f", builder, check=False)
        raise RuntimeError(f"building {IMAGE} failed: {res.stderr[-2000:]}")
    _docker(
        "commit",
        "--change",
        'CMD ["/usr/sbin/apt-cacher-ng", "-c", "/etc/apt-cacher-ng", "ForeGround=1"]',
        builder,
        IMAGE,
    )
    _docker("rm", "-f", builder, check=False)
    return IMAGE


@dataclass
class Cache:
    container: str
    address: str

    @property
    def url(self) -> str:
        return f"http://{self.address}:{PORT}"


def up(name: str = CONTAINER) -> Cache:
    """A fresh apt-cacher-ng (empty cache, empty log) and its proxy URL."""
    build_image()
    _docker("rm", "-f", name, check=False)
    _docker("run", "-d", "--name", name, "--label", "io.dlsetup.test=1", IMAGE)
    address = _docker(
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        name,
    ).stdout.strip()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        probe = _docker(
            "exec",
            name,
            "bash",
            "-c",
            f"exec 3<>/dev/tcp/127.0.0.1/{PORT} && echo up",
            check=False,
        )
        if probe.stdout.strip() == "up":
            return Cache(name, address)
        time.sleep(0.3)
    raise RuntimeError(f"apt-cacher-ng in {name} did not answer on port {PORT}")


def down(name: str = CONTAINER) -> None:
    _docker("rm", "-f", name, check=False)


@dataclass
class Stats:
    fetched: Counter[str]  # path -> times fetched from upstream ("I" lines)
    served: Counter[str]  # path -> times sent to a client ("O" lines)

    @property
    def deb_hits(self) -> int:
        """.deb downloads served from the cache without going upstream again."""
        return sum(
            max(0, n - self.fetched.get(p, 0)) for p, n in self.served.items() if p.endswith(".deb")
        )

    @property
    def debs_served(self) -> int:
        return sum(n for p, n in self.served.items() if p.endswith(".deb"))


def stats(name: str = CONTAINER) -> Stats:
    """Parse apt-cacher-ng's log: `time|I, O or E|bytes|client|path` per line
    (I: fetched from the mirror, O: sent to a client, E: an error)."""
    log = _docker("exec", name, "cat", _ACCESS_LOG, check=False).stdout
    fetched: Counter[str] = Counter()
    served: Counter[str] = Counter()
    for line in log.splitlines():
        parts = line.split("|")
        if len(parts) < 5:
            continue
        kind, path = parts[1], parts[4]
        if kind == "I":
            fetched[path] += 1
        elif kind == "O":
            served[path] += 1
    return Stats(fetched, served)
