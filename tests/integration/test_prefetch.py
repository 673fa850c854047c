"""roles/dlsetup/tasks/prefetch.yml and prefetched.yml against a real apt in a
real container, with packages from Debian's mirror.

In a whole provision the driver stage starts downloading the cuda stage's
packages while its own install runs, and the cuda stage hands the files to apt
before it installs (playbooks/site.yml). Here a small package plays the
toolkit and another the driver: the download runs beside a real apt install,
and afterwards apt installs the downloaded package with every network source
cut off, which it can only do from the files handed to it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.boxes import docker_ready, plain_box, playbook, recap, sh

REPO = Path(__file__).resolve().parents[2]
PLAY = REPO / "tests" / "fixtures" / "playbooks" / "prefetch.yml"
FOLDER = "/var/cache/dlsetup/prefetch/later"
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


def play(box: str, later: list[str], beside: list[str]) -> subprocess.CompletedProcess[str]:
    return playbook(box, {"later": later, "beside": beside}, [str(PLAY)])


def test_the_download_beside_an_install_is_what_apt_installs_later(box: str) -> None:
    res = play(box, ["hello"], ["make"])
    assert res.returncode == 0, res.stdout[-4000:]
    assert recap(res.stdout)["failed"] == 0
    assert "download ahead of the later stage failed" not in res.stdout
    # This stage's own install went ahead beside the download.
    assert "install ok installed" in sh(box, "dpkg-query -W -f='${Status}' make")
    # The file is in apt's archive folder; dlsetup's folder and the job file are gone.
    assert sh(box, "ls /var/cache/apt/archives/hello_*.deb").strip()
    assert sh(box, f"test -e {FOLDER} && echo left || echo gone").strip() == "gone"
    assert sh(box, "ls -A /root/.ansible_async 2>/dev/null | wc -l").strip() == "0"
    # apt installs it with no network at all: from the handed-over file.
    out = sh(box, f"DEBIAN_FRONTEND=noninteractive apt-get install -y {OFFLINE} hello 2>&1")
    assert "Get:" not in out, out
    assert "install ok installed" in sh(box, "dpkg-query -W -f='${Status}' hello")


def test_a_download_that_fails_is_said_and_costs_nothing_else(box: str) -> None:
    res = play(box, ["dlsetup-no-such-package"], ["make"])
    assert res.returncode == 0, res.stdout[-4000:]
    assert "The download ahead of the later stage failed" in res.stdout
    assert "dlsetup-no-such-package" in res.stdout
    assert "install ok installed" in sh(box, "dpkg-query -W -f='${Status}' make")
    assert sh(box, f"test -e {FOLDER} && echo left || echo gone").strip() == "gone"
