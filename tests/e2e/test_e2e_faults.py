"""Faults outside our control, through the real CLI: an apt mirror, and an apt
proxy, that do not answer.

A user points a role's repository setting at a mirror that is down. Here:
nvidia_driver with `nvidia_driver_source: nvidia` and
`nvidia_driver_repo_url` at a closed port on the box's own 127.0.0.1; the
key URL and fingerprint are those of the project's local signed repository
(tests/aptrepo.py, the stand-in for NVIDIA's server), so the key is fetched
and checked and the failure is the repository itself. The role adds the source
through roles/dlsetup/tasks/apt_source.yml.

Asserted: the run fails (exit 1) with a message that names the repository
(nvidia-cuda) and its URL and says the source was removed; no source under
/etc/apt names the dead mirror any more, and apt still updates cleanly. Run with `--tags driver`: the
other stages have nothing to do with the fault.

The second test points `dlsetup_apt_proxy` at a closed port on a fresh box
(no python3-apt yet, as a minimal Debian install): the base stage fails naming
the lists apt could not fetch and the proxy, not "Unable to locate package
python3-apt", and installs nothing.

The third gives a fresh box an apt that fetches its lists but will not
install python3-apt (a pin of -1): the base stage fails saying so, with apt's
own words, and changes nothing (packages, holds, /etc).

The fourth gives a box proxies of its own beside dlsetup_apt_proxy (a dead
one where Ubuntu's installer leaves its proxy, and a file an older dlsetup
wrote): dlsetup's proxy is the one apt uses; a proxy in /etc/apt/apt.conf,
which apt reads last, wins, and the run says so in its summary.

(An unreachable host, exit 3 with the other hosts finishing, is in
test_e2e_ssh.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import aptcache, aptrepo
from tests.boxes import (
    REPO,
    Box,
    Boxes,
    dlsetup,
    exists,
    sh,
    snapshot,
    write_inventory,
)

BOX = "dlsetup-e2e-fault1"
DEAD_URL = "http://127.0.0.1:9/nvidia-cuda/"  # nothing listens on port 9 in the box


def _site_has_driver_stage() -> bool:
    site = yaml.safe_load((REPO / "playbooks" / "site.yml").read_text()) or []
    return any(p.get("ansible.builtin.import_playbook") == "driver.yml" for p in site)


@pytest.fixture(scope="module")
def box(boxes: Boxes) -> tuple[Path, Path, Box]:
    return boxes.work, boxes.key, boxes.start(BOX)


@pytest.mark.skipif(not _site_has_driver_stage(), reason="site.yml has no driver stage yet")
def test_dead_apt_mirror_names_the_repository_and_leaves_no_source(
    box: tuple[Path, Path, Box],
) -> None:
    work, key, b = box
    repo: dict[str, Any] = aptrepo.up()["dlsetup-selftest"]
    inv = write_inventory(
        work / "dead-mirror" / "hosts.yml",
        key,
        {
            "box1": {
                "ansible_host": b.address,
                "nvidia_driver_source": "nvidia",
                "nvidia_driver_repo_url": DEAD_URL,
                "nvidia_driver_repo_key_url": repo["key_url"],
                "nvidia_driver_repo_key_fingerprint": repo["fingerprint"],
            }
        },
    )
    res = dlsetup("provision", "--host", "box1", "-i", str(inv), "--tags", "driver", "--json")
    assert res.rc == 1, res.stdout[-4000:] + res.stderr[-2000:]
    failures = res.doc["hosts"]["box1"]["failures"]
    msgs = " ".join(f["msg"] for f in failures)
    assert "nvidia-cuda" in msgs and DEAD_URL in msgs, msgs
    assert "removed" in msgs, msgs  # says the source was taken out again
    assert not exists(BOX, "/etc/apt/sources.list.d/nvidia-cuda.sources")
    # No source anywhere still points at the dead mirror (other stages that ran
    # before may have added their own, working, sources: those may stay).
    left = sh(BOX, "grep -rl '127.0.0.1:9' /etc/apt/sources.list /etc/apt/sources.list.d || true")
    assert left.strip() == "", f"sources still naming the dead mirror: {left}"
    # apt is left working: no broken source makes every later update fail.
    out = sh(BOX, "apt-get update 2>&1")
    assert "127.0.0.1:9" not in out, out


DEAD_PROXY = "http://127.0.0.1:9"  # nothing listens on port 9 in the box


def test_dead_apt_proxy_on_a_fresh_box_names_the_lists_not_python3_apt(boxes: Boxes) -> None:
    """A fresh box (no python3-apt, as a minimal Debian install) and a
    dlsetup_apt_proxy that does not answer: apt-get update exits 0 and only
    warns, so the old path failed later with "Unable to locate package
    python3-apt". The run must fail in the base stage naming the lists and the
    proxy, and install nothing."""
    b = boxes.start("dlsetup-e2e-fault2")
    assert sh(b.name, "dpkg-query -W -f='${Status}' python3-apt 2>/dev/null || true") == ""
    before = sh(b.name, "dpkg-query -W -f='${Package}=${Version}\\n' | sort")
    inv = write_inventory(
        boxes.work / "dead-proxy" / "hosts.yml",
        boxes.key,
        {"box2": {"ansible_host": b.address, "dlsetup_apt_proxy": DEAD_PROXY}},
    )
    res = dlsetup("provision", "--host", "box2", "-i", str(inv), "--tags", "facts", "--json")
    assert res.rc == 1, res.stdout[-4000:] + res.stderr[-2000:]
    host = res.doc["hosts"]["box2"]
    msgs = " ".join(f["msg"] for f in host["failures"])
    assert "could not download its package lists" in msgs, msgs
    assert "Failed to fetch" in msgs and "127.0.0.1:9" in msgs, msgs  # apt's own lines
    assert f"dlsetup_apt_proxy (now {DEAD_PROXY})" in msgs, msgs
    assert "Unable to locate package" not in msgs, msgs
    assert [(f["play"], f["task"]) for f in host["failures"]] == [
        ("Base system", "Stop when apt could not fetch its lists or install python3-apt")
    ], host["failures"]
    # Nothing installed: the package set is what it was.
    assert sh(b.name, "dpkg-query -W -f='${Package}=${Version}\\n' | sort") == before


def test_python3_apt_apt_will_not_install_is_named_with_apts_words(boxes: Boxes) -> None:
    """A fresh box whose apt fetches its lists but will not install
    python3-apt (here a pin of priority -1, as a site's own apt preferences
    can; a conflict or a broken dpkg state end the same way): the base stage
    stops with "apt could not install python3-apt" and apt's own lines, not
    with the lists' message (they were fetched), and changes nothing."""
    b = boxes.start("dlsetup-e2e-fault3")
    assert sh(b.name, "dpkg-query -W -f='${Status}' python3-apt 2>/dev/null || true") == ""
    sh(
        b.name,
        "printf 'Package: python3-apt\\nPin: release *\\nPin-Priority: -1\\n'"
        " > /etc/apt/preferences.d/no-python3-apt",
    )
    before = snapshot(b.name)
    inv = write_inventory(
        boxes.work / "no-python3-apt" / "hosts.yml",
        boxes.key,
        {"box3": {"ansible_host": b.address}},
    )
    res = dlsetup("provision", "--host", "box3", "-i", str(inv), "--tags", "facts", "--json")
    assert res.rc == 1, res.stdout[-4000:] + res.stderr[-2000:]
    host = res.doc["hosts"]["box3"]
    msgs = " ".join(f["msg"] for f in host["failures"])
    assert "apt could not install python3-apt" in msgs, msgs
    assert "has no installation candidate" in msgs, msgs  # apt's own words
    assert "could not download its package lists" not in msgs, msgs
    assert "dlsetup_apt_proxy" in msgs, (
        msgs
    )  # where a lab's cache is set, named as the next place to look
    assert [(f["play"], f["task"]) for f in host["failures"]] == [
        ("Base system", "Stop when apt could not fetch its lists or install python3-apt")
    ], host["failures"]
    assert snapshot(b.name) == before  # packages, holds and every file under /etc


def test_dlsetup_apt_proxy_wins_over_a_boxs_own_and_a_later_one_is_reported(
    boxes: Boxes,
) -> None:
    """apt reads /etc/apt/apt.conf.d in name order and the last proxy wins.
    Ubuntu's installer writes its proxy to 90curtin-aptproxy (here a dead one:
    were it used, nothing would download); dlsetup's file is read after it.
    01dlsetup-proxy is where dlsetup wrote before: it is removed. Then a proxy
    in /etc/apt/apt.conf, read after the whole folder: the run converges (it
    names the same cache, spelt with a slash) and reports that apt uses it,
    not dlsetup_apt_proxy. The apt-cacher-ng is the lab's cache a user points
    dlsetup_apt_proxy at (tests/aptcache.py), one of this test's own."""
    cache = aptcache.up("dlsetup-e2e-aptcache-fault4")
    try:
        b = boxes.start("dlsetup-e2e-fault4")
        for f in ("01dlsetup-proxy", "90curtin-aptproxy"):
            sh(b.name, f"echo 'Acquire::http::Proxy \"{DEAD_PROXY}\";' > /etc/apt/apt.conf.d/{f}")
        inv = write_inventory(
            boxes.work / "own-proxy" / "hosts.yml",
            boxes.key,
            {"box4": {"ansible_host": b.address, "dlsetup_apt_proxy": cache.url}},
        )
        args = ("provision", "--host", "box4", "-i", str(inv), "--tags", "facts", "--json")
        res = dlsetup(*args)
        assert res.rc == 0, res.stdout[-4000:] + res.stderr[-2000:]
        assert sh(b.name, "apt-config dump Acquire::http::Proxy").strip() == (
            f'Acquire::http::Proxy "{cache.url}";'
        )
        assert not exists(b.name, "/etc/apt/apt.conf.d/01dlsetup-proxy")
        assert exists(b.name, "/etc/apt/apt.conf.d/90curtin-aptproxy")  # not dlsetup's to remove
        assert sh(b.name, "dpkg-query -W -f='${Status}' python3-apt") == "install ok installed"
        steps = res.doc["hosts"]["box4"]["skipped_steps"]
        assert not [s for s in steps if "proxy" in s["step"]], steps

        later = cache.url + "/"
        sh(b.name, f"echo 'Acquire::http::Proxy \"{later}\";' > /etc/apt/apt.conf")
        res = dlsetup(*args)
        assert res.rc == 0, res.stdout[-4000:] + res.stderr[-2000:]
        steps = res.doc["hosts"]["box4"]["skipped_steps"]
        said = [s for s in steps if "dlsetup_apt_proxy" in s["step"]]
        assert len(said) == 1, steps
        assert f"apt uses {later} " in said[0]["reason"], said
        assert "/etc/apt/apt.conf " in said[0]["reason"] + " ", said  # the file that names it
        assert "99dlsetup-proxy" in said[0]["reason"], said
    finally:
        aptcache.down("dlsetup-e2e-aptcache-fault4")
