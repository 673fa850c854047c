"""roles/dlsetup/tasks/apt_source.yml against a real apt in a real container.

The repositories come from tests/aptrepo.py: signed local repositories served
over http by a project container. They stand in for NVIDIA's and Docker's
servers, which CI cannot reach; the task file is the one the roles run on a
user's box. A stand-in names its own key URL and fingerprint, so it takes the
fetch-once path (fetched, fingerprint checked on the host); a key given as
text takes the path of the vendor keys kept in roles/dlsetup/files/keys/.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import aptrepo
from tests.boxes import docker_ready, plain_box, playbook, recap, said, sh, stop_busy_apt

REPO = Path(__file__).resolve().parents[2]
PLAY = REPO / "tests" / "fixtures" / "playbooks" / "apt_source.yml"
BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.docker]


@pytest.fixture(scope="module")
def repos() -> dict[str, Any]:
    why = docker_ready()
    if why:
        pytest.skip(why)
    return aptrepo.up()


@pytest.fixture(scope="module")
def box() -> Iterator[str]:
    """One fresh box for the module: the tests use distinct source names, in order."""
    with plain_box("dlsetup-aptsrc") as name:
        yield name


def play(box: str, extra: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return playbook(box, extra, [str(PLAY)], *args)


def state(box: str) -> str:
    """Everything a failed apt_source may leave behind."""
    return sh(
        box,
        "ls -la /etc/apt/sources.list.d /etc/apt/keyrings 2>&1;"
        " cat /etc/apt/sources.list.d/*.sources 2>/dev/null; true",
    )


def test_adds_a_signed_source_installs_from_it_and_repeats_without_change(
    repos: dict[str, Any], box: str
) -> None:
    repo = repos["dlsetup-selftest"]
    # Check mode on a fresh box: nothing changes, and the caller is told.
    before = state(box)
    res = play(box, {"repo": repo, "package": "dlsetup-hello"}, "--check")
    assert res.returncode == 0, res.stdout
    assert state(box) == before

    res = play(box, {"repo": repo, "package": "dlsetup-hello"})
    assert res.returncode == 0, res.stdout
    src = sh(box, "cat /etc/apt/sources.list.d/dlsetup-selftest.sources")
    assert f"URIs: {repo['url']}" in src
    assert "Signed-By: /etc/apt/keyrings/dlsetup-dlsetup-selftest.asc" in src
    fpr = sh(box, "gpg --show-keys --with-colons /etc/apt/keyrings/dlsetup-dlsetup-selftest.asc")
    assert f":{repo['fingerprint']}:" in fpr
    assert sh(box, "cat /usr/share/dlsetup-hello/hello.txt").startswith("hello")
    # Trusted for this repository only: not in apt's global keyrings (no apt-key).
    trusted = sh(
        box,
        "for k in /etc/apt/trusted.gpg /etc/apt/trusted.gpg.d/*; do"
        ' [ -f "$k" ] && gpg --show-keys --with-colons "$k"; done; true',
    )
    assert repo["fingerprint"] not in trusted

    again = play(box, {"repo": repo, "package": "dlsetup-hello"})
    assert again.returncode == 0, again.stdout
    assert recap(again.stdout)["changed"] == 0, again.stdout


def test_a_key_with_another_fingerprint_is_refused_and_removed(
    repos: dict[str, Any], box: str
) -> None:
    repo = dict(repos["dlsetup-selftest"], fingerprint="EB693B3035CD5710E231E123A4B469963BF863CC")
    res = play(box, {"repo": repo, "source_name": "wrong-key"})
    assert res.returncode == 2, res.stdout
    assert "not the pinned EB693B3035CD5710E231E123A4B469963BF863CC" in res.stdout
    assert "for the wrong-key repository" in res.stdout
    assert "wrong-key" not in state(box)


def test_a_key_given_as_text_is_installed_as_it_is(repos: dict[str, Any], box: str) -> None:
    """The path of a key kept in files/keys/: no fetch, no fingerprint check on the host."""
    # Another repository than the first test's: apt refuses one URL with two Signed-By.
    repo = repos["libnvidia-container"]
    key = (aptrepo.CACHE / "srv" / "libnvidia-container" / aptrepo.KEY_FILE).read_text()
    extra = {"repo": dict(repo, key_url="http://127.0.0.1:9/unreachable"), "repo_key": key,
             "source_name": "given-key"}  # fmt: skip
    res = play(box, extra)
    assert res.returncode == 0, res.stdout
    assert sh(box, "cat /etc/apt/keyrings/dlsetup-given-key.asc").strip() == key.strip()
    assert "Signed-By: /etc/apt/keyrings/dlsetup-given-key.asc" in sh(
        box, "cat /etc/apt/sources.list.d/given-key.sources"
    )
    again = play(box, extra)
    assert again.returncode == 0, again.stdout
    assert recap(again.stdout)["changed"] == 0, again.stdout
    sh(box, "rm /etc/apt/sources.list.d/given-key.sources /etc/apt/keyrings/dlsetup-given-key.asc")


def test_a_repository_that_does_not_answer_leaves_no_source_behind(
    repos: dict[str, Any], box: str
) -> None:
    good = repos["dlsetup-selftest"]
    # The key is reachable, the repository URL is not (a closed port on the server).
    dead = dict(good, url=good["url"].replace(":8080/", ":8081/"))
    res = play(box, {"repo": dead, "source_name": "dead-mirror"})
    assert res.returncode == 2, res.stdout
    assert "could not read the dead-mirror repository at" in res.stdout
    assert ":8081/" in res.stdout
    assert "dead-mirror.sources" not in state(box)
    # apt itself is left working.
    sh(box, "apt-get update -qq")


@pytest.mark.parametrize(("wait", "works"), [(60, True), (3, False)], ids=["waits", "gives-up"])
def test_the_lists_update_waits_for_a_busy_apt(
    repos: dict[str, Any], box: str, wait: int, works: bool
) -> None:
    """apt-get update fails at once where another apt (a fresh box's
    apt-daily) holds the lists' lock: the source's update is tried again up
    to dlsetup_apt_lock_timeout. Held 10 s: waited 60, the source is added and
    read; waited 3, the run stops saying so, and the source is removed again."""
    # a repository no earlier test added (two sources of one URL with
    # different keyrings are an apt error)
    repo = repos["libnvidia-container"]
    name = f"busy-{wait}"
    res = play(
        box, {"repo": repo, "source_name": name, "hold": 10, "dlsetup_apt_lock_timeout": wait}
    )
    stop_busy_apt(box)
    if works:
        assert res.returncode == 0, res.stdout[-3000:]
        assert f"{name}.sources" in state(box)
        assert repo["url"].rstrip("/") in sh(box, "apt-cache policy")
        sh(box, f"rm /etc/apt/sources.list.d/{name}.sources /etc/apt/keyrings/dlsetup-{name}.asc")
    else:
        assert res.returncode == 2, res.stdout[-3000:]
        words = said(res)
        assert (
            "Another apt held apt's lists for longer than dlsetup_apt_lock_timeout (3 s)" in words
        ), words[-3000:]
        assert "Could not get lock /var/lib/apt/lists/lock" in words, words[-3000:]
        assert f"{name}.sources" not in state(box)
