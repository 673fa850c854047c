"""roles/dlsetup/tasks/prefetch.yml and prefetched.yml against a real apt in a
real container, with packages from Debian's mirror.

In a whole provision the base stage starts downloading the driver stage's
packages, and the driver stage the cuda and docker stages' while its own
install runs; each later stage hands its files to apt before it installs
(playbooks/site.yml). Here a small package plays a later stage's and another
this stage's: the download runs beside a real apt install, and afterwards apt
installs the downloaded package with every network source cut off, which it
can only do from the files handed to it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.boxes import (
    docker_ready,
    downloads_left,
    exists,
    plain_box,
    playbook,
    recap,
    said,
    sh,
)

REPO = Path(__file__).resolve().parents[2]
PLAY = REPO / "tests" / "fixtures" / "playbooks" / "prefetch.yml"
FOLDER = "/var/cache/dlsetup/prefetch/later"
AFTER = "/var/cache/dlsetup/prefetch/after"
# An apt that reaches nothing: a proxy on a closed port, for http and https.
OFFLINE = (
    "-o Acquire::http::Proxy=http://127.0.0.1:9 -o Acquire::https::Proxy=http://127.0.0.1:9"
    " -o Acquire::Retries=0"
)

pytestmark = [pytest.mark.docker]


@pytest.fixture(scope="module")
def box() -> Iterator[str]:
    """One box for the module: the second test's install of make finds it there."""
    why = docker_ready()
    if why:
        pytest.skip(why)
    with plain_box("dlsetup-prefetch") as name:
        yield name


def play(
    box: str, later: list[str], beside: list[str], **extra: object
) -> subprocess.CompletedProcess[str]:
    return playbook(box, {"later": later, "beside": beside, **extra}, [str(PLAY)])


def installs_offline(box: str, package: str) -> None:
    """apt installs it with no network at all: only from a handed-over file."""
    out = sh(
        box,
        f"DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {OFFLINE} {package} 2>&1",
    )
    assert "Get:" not in out, out
    assert "install ok installed" in sh(box, f"dpkg-query -W -f='${{Status}}' {package}")


def test_the_download_beside_an_install_is_what_apt_installs_later(box: str) -> None:
    res = play(box, ["hello"], ["make"])
    assert res.returncode == 0, res.stdout[-4000:]
    assert recap(res.stdout)["failed"] == 0
    assert "download ahead of the later stage" not in said(res)
    # This stage's own install went ahead beside the download.
    assert "install ok installed" in sh(box, "dpkg-query -W -f='${Status}' make")
    # The file is in apt's archive folder; dlsetup's folder and the job file are gone.
    assert sh(box, "ls /var/cache/apt/archives/hello_*.deb").strip()
    assert not exists(box, FOLDER)
    assert downloads_left(box) == ""
    installs_offline(box, "hello")


def test_one_job_downloads_two_stages_and_each_gets_its_own(box: str) -> None:
    res = play(box, ["cowsay"], ["make"], after=["sl"])
    assert res.returncode == 0, res.stdout[-4000:]
    assert "download ahead of the" not in said(res)
    assert not exists(box, FOLDER) and not exists(box, AFTER)
    assert downloads_left(box) == ""
    installs_offline(box, "cowsay")
    installs_offline(box, "sl")


def test_a_stage_does_not_wait_for_the_download_of_the_stage_after_it(box: str) -> None:
    """The second stage's download (texlive-full: gigabytes) is still running
    when the first stage's hand-over is done: the playbook's kill step fails
    where it finds nothing to kill. Killed then, as a reboot would, the
    second stage says its download did not finish."""
    res = play(box, ["fortune-mod"], ["make"], after=["texlive-full"], kill_after_first=True)
    assert res.returncode == 0, res.stdout[-4000:]
    assert "download ahead of the later stage" not in said(res)
    assert "The download ahead of the after stage did not finish" in said(res)
    installs_offline(box, "fortune-mod")
    left = downloads_left(box)
    assert left == "", left
    assert not exists(box, FOLDER) and not exists(box, AFTER)


def test_packages_of_a_source_not_added_yet_are_left_to_their_stage(box: str) -> None:
    """The cuda stage adds NVIDIA's repository itself where the driver stage
    does not: its packages are named with that source, and where the source
    file is not there yet, apt could not find them; nothing is downloaded and
    nothing said (no failure to report), the stage's install downloads them.
    Named with a source that is there (the image's debian.sources), the
    download goes ahead as for any other."""
    sh(box, "rm -f /var/cache/apt/archives/tree_*.deb")
    res = play(box, ["tree"], ["make"], later_source="dlsetup-not-added-yet")
    assert res.returncode == 0, res.stdout[-4000:]
    assert "download ahead of the later stage" not in said(res)
    assert sh(box, "ls /var/cache/apt/archives/ | grep '^tree_'; true").strip() == ""
    assert not exists(box, FOLDER)
    assert downloads_left(box) == ""
    res = play(box, ["figlet"], ["make"], later_source="debian")
    assert res.returncode == 0, res.stdout[-4000:]
    assert "download ahead of the later stage" not in said(res)
    installs_offline(box, "figlet")


def test_a_download_that_fails_is_said_and_costs_nothing_else(box: str) -> None:
    res = play(box, ["dlsetup-no-such-package"], ["make"])
    assert res.returncode == 0, res.stdout[-4000:]
    assert "The download ahead of the later stage failed" in said(res)
    assert "dlsetup-no-such-package" in res.stdout
    assert "install ok installed" in sh(box, "dpkg-query -W -f='${Status}' make")
    assert not exists(box, FOLDER)


def test_a_download_a_reboot_stopped_is_not_waited_for(box: str) -> None:
    """texlive-full (gigabytes) is still coming down two seconds in; killing the
    job's wrapper and the download stands in for a reboot of the box. The later
    stage says so and goes on at once: it does not wait for a result that will
    never be written."""
    res = play(box, ["texlive-full"], ["make"], kill_download=True)
    assert res.returncode == 0, res.stdout[-4000:]
    assert "did not finish (the box rebooted during it?)" in said(res)
    # (the pattern does not match grep's own command line)
    left = downloads_left(box)
    assert left == "", left
    assert not exists(box, FOLDER)
    # No hour-long wait: the lock was free, and the result was tried five times.
    assert "Wait for the download ahead of this stage to end" in res.stdout
