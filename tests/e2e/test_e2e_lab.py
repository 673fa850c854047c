"""A lab: `dlsetup provision --host lab` over 4 boxes in one run, with a shared apt cache.

The boxes are systemd containers over SSH (as in test_e2e_ssh.py), listed in
an inventory group `lab` by address. The shared cache is an apt-cacher-ng
container the test builds (tests/aptcache.py: the project's Debian 12 image
plus apt-cacher-ng from Debian's mirror) and reaches by its container address;
the inventory points `dlsetup_apt_proxy` at it, as a user with a cache on one
machine of the lab would. Ansible's forks run the boxes in parallel.

Asserted: every box converges (exit 0, no failure, the proxy set in apt's
configuration), and the cache served .deb files that it fetched from the
mirror only once (its access log). Reported, not asserted: the lab's wall time
and a single box's (a fifth box provisioned alone afterwards, against the then
warm cache: the ratio flatters the single box; benchmarks/provision.py makes
the fair comparison).

Profile: `--skip-tags cuda,driver,docker,nvidia-container,smoke`, lighter
than the full site to stay inside CI's budget on 2 cores: the CUDA toolkit
(1.6 GB), the driver (243 MB, DKMS) and Docker four times over would take many
minutes, and their steps on a lab are the same as on one box
(test_e2e_ssh.py runs the whole site, test_e2e_interrupt.py driver and docker).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import aptcache
from tests.boxes import (
    Box,
    Boxes,
    dlsetup,
    sh,
    write_inventory,
)

pytestmark = [
    pytest.mark.slow,
]

LAB = [f"dlsetup-e2e-lab{i}" for i in range(1, 5)]
SOLO = "dlsetup-e2e-lab-solo"
PROFILE = ("--skip-tags", "cuda,driver,docker,nvidia-container,smoke")


@pytest.fixture(scope="module")
def lab(
    boxes: Boxes,
) -> Iterator[tuple[Path, Path, Boxes, aptcache.Cache, dict[str, Box]]]:
    try:
        cache = aptcache.up()
        started = {f"lab{i}": boxes.start(n) for i, n in enumerate(LAB, 1)}
        yield boxes.work, boxes.key, boxes, cache, started
    finally:
        aptcache.down()


def test_lab_of_four_in_one_run_shares_the_apt_cache(
    lab: tuple[Path, Path, Boxes, aptcache.Cache, dict[str, Box]],
) -> None:
    work, key, kept, cache, boxes = lab
    proxy = {"dlsetup_apt_proxy": cache.url}
    inv = write_inventory(
        work / "lab" / "hosts.yml",
        key,
        {h: {"ansible_host": b.address, **proxy} for h, b in boxes.items()},
        groups={"lab": list(boxes)},
    )
    res = dlsetup("provision", "--host", "lab", "-i", str(inv), "--forks", "4", *PROFILE, "--json")
    assert res.rc == 0, res.stdout[-4000:] + res.stderr[-2000:]
    doc = res.doc
    assert sorted(doc["hosts"]) == sorted(boxes)
    for host, hs in doc["hosts"].items():
        assert hs["failed"] == 0 and hs["unreachable"] is False, (host, hs["failures"])
        assert hs["ok"] > 0
    for name in LAB:
        conf = sh(name, "apt-config dump Acquire::http::Proxy")
        assert cache.url in conf, f"{name}: apt does not use the lab's cache: {conf}"
        assert sh(name, "test -x /etc/ansible/facts.d/dl.fact && echo yes").strip() == "yes"

    stats = aptcache.stats()
    assert stats.debs_served > 0, "no package went through the lab's cache"
    assert stats.deb_hits > 0, (
        f"the cache fetched every .deb it served: fetched {sum(stats.fetched.values())}, "
        f"served {stats.debs_served}"
    )

    # One box alone, for the report: same profile, same (now warm) cache.
    solo = kept.start(SOLO)
    inv1 = write_inventory(
        work / "solo" / "hosts.yml", key, {"solo": {"ansible_host": solo.address, **proxy}}
    )
    t0 = time.monotonic()
    one = dlsetup("provision", "--host", "solo", "-i", str(inv1), *PROFILE, "--json")
    one_s = time.monotonic() - t0
    assert one.rc == 0, one.stdout[-3000:]
    print(
        f"\nlab of {len(LAB)} in one run: {res.seconds:.1f} s; one box alone: {one_s:.1f} s "
        f"(ratio {res.seconds / one_s:.2f}); cache: {stats.debs_served} .deb served, "
        f"{stats.deb_hits} from the cache"
    )
