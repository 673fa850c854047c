"""Every apt step waits for apt's locks (dlsetup_apt_lock_timeout), on a
real apt and dpkg in a real container, with packages from Debian's mirror.

On a freshly installed box apt-daily and unattended-upgrades run for
minutes after boot and hold apt's locks; apt-get update and dpkg
--set-selections fail at once on a taken lock, apt-get install waits only
for dpkg's lock and only when told, and Ansible's apt module waits 60 s.
A stand-in for that busy apt (tests/fixtures/playbooks/apt_lock_take.yml:
a process holding the same fcntl locks apt and dpkg take) holds them
before each step, and the step starts only once they are taken. The steps
are the roles' own task files (tests/fixtures/playbooks/apt_lock.yml).
Another apt's download holds the archives' lock alone, which apt-get install
never waits for: the roles' installs try again while apt says so.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest

from dlsetup import localbox
from tests import aptcache
from tests.boxes import REPO, docker_ready, plain_box, playbook, recap, said, sh, stop_busy_apt

pytestmark = [pytest.mark.docker]

PLAY = str(REPO / "tests" / "fixtures" / "playbooks" / "apt_lock.yml")


@pytest.fixture(scope="module")
def box() -> Iterator[str]:
    """A fresh Debian 12 box without python3-apt: the base stage installs it
    with its shell, the first apt step of every run."""
    why = docker_ready()
    if why:
        pytest.skip(why)
    with plain_box("dlsetup-aptlock", archive="debian12-aptlock") as name:
        yield name


def status(box: str, package: str) -> str:
    """dpkg's status of the package ("install ok installed", "hold ok
    installed"), empty when dpkg does not know it."""
    return sh(box, f"dpkg-query -W -f='${{Status}}' {package} 2>/dev/null || true")


def play(box: str, hold: float, timeout: int, **extra: object) -> subprocess.CompletedProcess[str]:
    return playbook(box, {"hold": hold, "dlsetup_apt_lock_timeout": timeout, **extra}, [PLAY])


def test_a_base_stage_that_waits_less_than_the_lock_is_held_stops_and_says_why(
    box: str,
) -> None:
    res = play(box, hold=30, timeout=3)
    stop_busy_apt(box)
    assert res.returncode != 0, res.stdout[-3000:]
    assert recap(res.stdout)["failed"] == 1
    text = said(res)
    assert "Another apt held apt's lock for longer than dlsetup_apt_lock_timeout (3 s)" in text, (
        text[-3000:]
    )
    assert "Could not get lock /var/lib/" in text, text[-3000:]
    assert status(box, "python3-apt") == ""
    assert status(box, "nvme-cli") == ""


def test_every_step_waits_for_a_busy_apt_and_the_run_converges(box: str) -> None:
    """Each of the three steps starts while the locks are held (12 s): none
    fails, each is done."""
    res = play(box, hold=12, timeout=120)
    assert res.returncode == 0, res.stdout[-4000:]
    assert recap(res.stdout)["failed"] == 0
    assert status(box, "python3-apt") == "install ok installed"  # the base stage's shell
    assert status(box, "nvme-cli") == "hold ok installed"  # the apt module, then dpkg's hold
    assert sh(box, "apt-mark showhold").split() == ["nvme-cli"]
    assert "Package: nvme-cli" in sh(box, "cat /etc/apt/preferences.d/dlsetup-nvidia-driver")


@pytest.mark.parametrize(
    ("step", "words"),
    [
        ("install", "Could not get lock /var/lib/dpkg/lock-frontend"),
        ("hold", "dpkg --set-selections failed (2) (waited lock_timeout, 3 s, for the lock)"),
    ],
)
def test_a_later_stage_waits_as_long_as_the_base_stage_says(
    box: str, step: str, words: str
) -> None:
    """The later play's steps wait dlsetup_apt_lock_timeout, as the base stage
    hands it on, not their modules' own 60 s: told 3 s, with the locks held
    30 s, the busy step fails within the 30 s and says so."""
    res = play(box, hold=30, timeout=3, busy=[step], package="hello")
    stop_busy_apt(box)
    assert res.returncode != 0, res.stdout[-3000:]
    assert words in said(res), said(res)[-3000:]
    # the install left nothing installed; the hold, the package unheld
    assert status(box, "hello") == ("" if step == "install" else "install ok installed")


def test_an_install_waits_for_another_apts_download(box: str) -> None:
    """Another apt that is downloading (PackageKit fetching updates on a
    desktop box, someone's apt-get --download-only) holds the archives' lock
    and not dpkg's, and apt-get install does not wait for that lock however
    long it is told: the nvme role's install, started while it is held 12 s,
    fails on it, is tried again (plugins/test/apt.py) and installs."""
    res = play(
        box,
        hold=12,
        timeout=120,
        busy=["install"],
        package="sl",
        locks=["/var/cache/apt/archives/lock"],
    )
    stop_busy_apt(box)
    assert res.returncode == 0, res.stdout[-4000:]
    # it met the lock (so the wait was needed), then installed
    assert "FAILED - RETRYING: [dlsetup-aptlock" in res.stdout, res.stdout[-4000:]
    assert status(box, "sl") == "hold ok installed"


# apt-daily as systemd runs it on a freshly booted box, stood in for by a
# drop-in (the real unit, its ExecStart replaced): while it "downloads the
# upgrades" it holds the lists' and the archives' lock for 20 s, as
# apt.systemd.daily does.
APT_DAILY_STAND_IN = """[Service]
ExecStart=
ExecStart=/usr/bin/python3 -c 'import fcntl, time; \
held = [open(p, "a") for p in ("/var/lib/apt/lists/lock", "/var/cache/apt/archives/lock")]; \
[fcntl.lockf(f, fcntl.LOCK_EX) for f in held]; time.sleep(20)'
"""


@pytest.fixture(scope="module")
def systemd_box() -> Iterator[str]:
    """A booted Debian 12 box (systemd, apt's own apt-daily units) with
    python3-apt already installed, so that the base stage's shell installs
    nothing and the first apt step after it is the apt module's."""
    why = docker_ready()
    if why:
        pytest.skip(why)
    name = f"dlsetup-aptdaily-{uuid.uuid4().hex[:8]}"
    localbox.ensure_box(
        localbox.BoxSpec(
            name=name,
            volumes=[aptcache.archive_volume("debian12-aptlock-systemd")],
            labels={"io.dlsetup.test": "1"},
        )
    )
    try:
        sh(name, "apt-get -qq update && apt-get install -qq -y --no-install-recommends python3-apt")
        yield name
    finally:
        localbox.remove_box(name)


def test_the_run_waits_for_apt_daily_before_its_first_apt_step(systemd_box: str) -> None:
    box = systemd_box
    sh(box, "mkdir -p /etc/systemd/system/apt-daily.service.d")
    sh(
        box,
        f"cat > /etc/systemd/system/apt-daily.service.d/dlsetup-test.conf <<'EOF'\n{APT_DAILY_STAND_IN}EOF",
    )
    sh(box, "systemctl daemon-reload && systemctl start --no-block apt-daily.service")
    # running, and holding the archives' lock (a try to take it fails)
    sh(
        box,
        "for _ in $(seq 100); do [ $(systemctl is-active apt-daily.service) = activating ] && "
        '! python3 -c \'import fcntl; fcntl.lockf(open("/var/cache/apt/archives/lock", "a"), '
        "fcntl.LOCK_EX | fcntl.LOCK_NB)' 2>/dev/null && exit 0; sleep 0.1; done; exit 1",
    )
    # What the wait is for: apt-get install does not wait for the archives'
    # lock, however long it is told to wait for dpkg's.
    out = sh(
        box,
        "apt-get install -y -q -o DPkg::Lock::Timeout=60 nvme-cli 2>&1; echo rc=$?",
    )
    assert "Could not get lock /var/cache/apt/archives/lock" in out and "rc=100" in out, out
    # The run: no stand-in of its own (busy=[]); the nvme role's install is
    # the first apt step after the base stage, and it meets no lock.
    res = play(box, hold=0, timeout=120, busy=[])
    assert res.returncode == 0, res.stdout[-4000:]
    assert sh(box, "systemctl is-active apt-daily.service || true").strip() == "inactive"
    assert status(box, "nvme-cli") == "hold ok installed"
