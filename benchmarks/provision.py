#!/usr/bin/env python3
"""How long a user waits: the three comparisons of issue 7, side by side in one run.

    .venv/bin/python benchmarks/provision.py [--skip-tags cuda] [--repeat 3] [--full-repeat 3]

writes docs/benchmarks/provision-<date>.md and .json, with the machine named
(CPU, cores, RAM, kernel, read from /proc). Not part of the test suite: it
reports numbers and asserts nothing.

The boxes are the end-to-end tests' boxes (tests/boxes.py: systemd containers
from the project's Debian 12 image, sshd, a sudo user, reached over SSH by
address). Every box fetches packages through one apt-cacher-ng container
(tests/aptcache.py), so downloads come from the same place for every side of
every comparison. A first, untimed provision fills that cache: after it, the
timed runs all see the same warm cache and nothing in them measures the
internet.

1. Full provision of a fresh box, against one bare `apt-get update &&
   apt-get install --no-install-recommends` of exactly the packages the
   provision installed, at their versions (with the vendor sources it added),
   in an identical fresh box: the floor set by downloads and dpkg. Without
   --no-install-recommends apt would add the recommends of every package
   (CUDA's alone are gigabytes) and the floor would install more than
   dlsetup did; after it, both boxes are checked to hold the same packages.
   (The set and the sources are those of the untimed warm-up provision, the
   same site, so the floor can also run first.) --full-repeat pairs are
   taken one after the other, dlsetup first in even pairs and the floor first
   in odd ones, each side after a `sync` (untimed) so that neither pays for
   the other's writeback, and their medians are compared. Target <= 1.25x
   (issue 16).
2. No-op re-provision of that converged box, against `ansible -m setup` on
   the same box with the project's ansible.cfg (Ansible's own floor): median
   of --repeat runs each. Target <= 15 s and <= 10x (issue 16).
3. Four fresh boxes in one run (--host lab, forks), against the one fresh box
   of comparison 1. Target <= 2x. Left out with --no-lab.

The previous result (the newest docs/benchmarks/provision-*.json of an
earlier date, or --previous) is shown beside the new one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import aptcache  # noqa: E402
from tests.boxes import (  # noqa: E402
    Box,
    dlsetup,
    docker_ready,
    make_key,
    remove_boxes,
    sh,
    start_box,
    write_inventory,
)

PREFIX = "dlsetup-bench-"
TARGETS = {"full": 1.25, "noop_ratio": 10.0, "noop_seconds": 15.0, "lab": 2.0}


def machine() -> dict[str, Any]:
    """The machine the numbers come from, from /proc."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    models = [
        ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")
    ]
    mem_kib = next(
        int(ln.split()[1])
        for ln in Path("/proc/meminfo").read_text().splitlines()
        if ln.startswith("MemTotal")
    )
    return {
        "cpu": models[0] if models else platform.processor() or "?",
        "cores": len(models) or os.cpu_count(),
        "ram_gib": round(mem_kib / 1024**2, 1),
        "kernel": Path("/proc/sys/kernel/osrelease").read_text().strip(),
        "os": _os_release(),
        "docker": subprocess.run(
            ["docker", "version", "-f", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
    }


def content_hash() -> str:
    """What is being measured: the collection dlsetup.box as it is on disk."""
    import hashlib  # noqa: PLC0415

    h = hashlib.sha256()
    for f in sorted((REPO / "collections").rglob("*")):
        if f.is_file() and "molecule" not in f.parts:
            h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def commit() -> str:
    """The checkout's commit, which the numbers belong to."""
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    ).stdout.strip()


def loadavg() -> str:
    """1, 5 and 15 minute load averages: other work on the machine skews every number."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _os_release() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "?"


def packages(box: str) -> dict[str, str]:
    out = sh(box, "dpkg-query -W -f='${db:Status-Abbrev}|${Package}|${Version}\\n'")
    return {
        p: v for st, p, v in (r.split("|") for r in out.splitlines()) if st.strip() in ("ii", "hi")
    }


class Bench:
    def __init__(self, work: Path, profile: list[str], repeat: int) -> None:
        self.work = work
        self.profile = profile
        self.repeat = repeat
        self.key, self.pub = make_key(work)
        self.names: list[str] = []
        self.cache = aptcache.up(f"{PREFIX}aptcache")
        self.log: list[str] = []

    def say(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)
        self.log.append(msg)

    def box(self, name: str) -> Box:
        full = PREFIX + name
        self.names.append(full)
        b = start_box(full, self.pub)
        # The cache for the boxes' own apt set-up too (before dlsetup_apt_proxy is applied).
        conf = f'Acquire::http::Proxy "{self.cache.url}";'
        sh(full, f"echo '{conf}' > /etc/apt/apt.conf.d/00bench-proxy")
        return b

    def inventory(self, name: str, boxes: dict[str, Box]) -> Path:
        # NVIDIA's repository is on the internet, out of reach here: as in the
        # demo, the Container Toolkit is left out (Docker itself is installed).
        hosts = {
            h: {
                "ansible_host": b.address,
                "dlsetup_apt_proxy": self.cache.url,
                "container_runtime_nvidia_toolkit": False,
            }
            for h, b in boxes.items()
        }
        return write_inventory(
            self.work / name / "hosts.yml", self.key, hosts, groups={"lab": list(boxes)}
        )

    def provision(self, inv: Path, host: str, *extra: str) -> tuple[float, dict[str, Any]]:
        res = dlsetup(
            "provision",
            "--host",
            host,
            "-i",
            str(inv),
            *self.profile,
            *extra,
            "--json",
            timeout=7200,
        )
        if res.rc != 0:
            raise SystemExit(
                f"provision of {host} failed ({res.rc}):\n{res.stdout[-4000:]}{res.stderr[-2000:]}"
            )
        return res.seconds, res.doc

    def remove(self, *names: str) -> None:
        full = [PREFIX + n for n in names]
        remove_boxes(full)
        self.names = [n for n in self.names if n not in full]

    def close(self) -> None:
        remove_boxes(self.names)
        aptcache.down(self.cache.container)


def median_of(n: int, fn: Any) -> tuple[float, list[float]]:
    runs = [fn() for _ in range(n)]
    return statistics.median(runs), runs


def noop_comparison(b: Bench, inv1: Path, repeat: int) -> dict[str, Any]:
    """2. No-op re-provision vs ansible -m setup, same box (and the full walk beside)."""
    unchanged: list[list[str]] = []

    def noop() -> float:
        t, d = b.provision(inv1, "one")
        assert d["hosts"]["one"]["changed"] == 0, d["hosts"]["one"]["changes"]
        unchanged.append(d["hosts"]["one"].get("unchanged_stages", []))
        return t

    def walk_all() -> float:
        t, d = b.provision(inv1, "one", "--verify-all")
        assert d["hosts"]["one"]["changed"] == 0, d["hosts"]["one"]["changes"]
        return t

    def setup() -> float:
        t0 = time.monotonic()
        subprocess.run(
            [
                str(Path(sys.executable).parent / "ansible"),
                "one",
                "-i",
                str(inv1),
                "-m",
                "setup",
            ],
            capture_output=True,
            check=True,
            cwd=REPO,
            env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        )
        return time.monotonic() - t0

    t_noop, noop_runs = median_of(repeat, noop)
    t_setup, setup_runs = median_of(repeat, setup)
    t_walk, walk_runs = median_of(repeat, walk_all)
    b.say(
        f"no-op re-provision: {t_noop:.1f} s (median of {noop_runs}), stages proved "
        f"unchanged: {unchanged}; ansible -m setup: {t_setup:.1f} s; every task walked "
        f"(--verify-all): {t_walk:.1f} s (median of {walk_runs})"
    )
    return {
        "noop_s": round(t_noop, 1),
        "noop_runs_s": [round(x, 1) for x in noop_runs],
        "setup_s": round(t_setup, 1),
        "setup_runs_s": [round(x, 1) for x in setup_runs],
        "ratio": round(t_noop / t_setup, 2),
        "target_ratio": TARGETS["noop_ratio"],
        "target_s": TARGETS["noop_seconds"],
        "unchanged_stages": unchanged[-1] if unchanged else [],
        "verify_all_s": round(t_walk, 1),
        "verify_all_runs_s": [round(x, 1) for x in walk_runs],
    }


@dataclass
class Pair:
    """One full provision of a fresh box and the floor beside it."""

    provision_s: float
    bare_s: float
    new: list[str]
    only_bare: list[str]
    only_one: list[str]
    doc: dict[str, Any]
    inventory: Path


@dataclass
class Reference:
    """What the warm-up provision installed (package -> version) and the apt
    sources and keys it added: every floor installs exactly this."""

    versions: dict[str, str]
    sources_tar: bytes


def settle() -> None:
    """Untimed, before each timed side: write out what earlier runs left dirty
    (gigabytes of unpacked packages) so that neither side pays the other's
    writeback."""
    subprocess.run(["sync"], check=True)


def new_packages(name: str, before: dict[str, str]) -> dict[str, str]:
    """Packages (-> version) the box holds now that it did not hold before."""
    return {p: v for p, v in packages(PREFIX + name).items() if p not in before}


def reference(name: str, before: dict[str, str]) -> Reference:
    tar = subprocess.run(
        ["docker", "exec", PREFIX + name, "tar", "-C", "/", "-cf", "-",
         "etc/apt/sources.list.d", "etc/apt/keyrings"],
        capture_output=True,
        check=False,
    )  # fmt: skip
    return Reference(new_packages(name, before), tar.stdout)


def floor(b: Bench, name: str, ref: Reference) -> tuple[float, set[str]]:
    """One bare `apt-get update && apt-get install --no-install-recommends` of
    the reference set, at its versions, in a fresh box: (seconds, new packages)."""
    b.box(name)
    # Untimed: the vendor sources and keys the provision added (if any).
    subprocess.run(
        ["docker", "exec", "-i", PREFIX + name, "tar", "-C", "/", "-xf", "-"],
        input=ref.sources_tar,
        capture_output=True,
        check=True,
    )
    before = packages(PREFIX + name)
    settle()
    t0 = time.monotonic()
    sh(
        PREFIX + name,
        "export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/dev/null && "
        "apt-get install -y -q --no-install-recommends "
        f"{' '.join(f'{p}={v}' for p, v in sorted(ref.versions.items()))} >/dev/null",
    )
    return time.monotonic() - t0, set(new_packages(name, before))


def full_pair(b: Bench, i: int, ref: Reference) -> Pair:
    """Provision a fresh box and, in another fresh box, install the reference
    set with one bare apt-get; both timed, each after a sync. Even pairs run
    dlsetup first, odd pairs the floor first, so that neither side always
    follows the other."""
    one_name, bare_name = ("one", "bare") if i == 0 else (f"one{i}", f"bare{i}")

    def provision() -> tuple[float, dict[str, Any], list[str], Path]:
        one = b.box(one_name)
        before = packages(PREFIX + one_name)
        inv = b.inventory(one_name, {one_name: one})
        settle()
        t, doc = b.provision(inv, one_name)
        new = sorted(new_packages(one_name, before))
        manual = sorted(set(sh(PREFIX + one_name, "apt-mark showmanual").split()) & set(new))
        b.say(
            f"full provision {i + 1}: {t:.1f} s, {len(new)} new packages ({len(manual)} asked for)"
        )
        return t, doc, new, inv

    def bare() -> tuple[float, set[str]]:
        t, got = floor(b, bare_name, ref)
        b.say(
            f"bare apt-get install --no-install-recommends of the same {len(ref.versions)} "
            f"packages {i + 1}: {t:.1f} s"
        )
        return t, got

    if i % 2 == 0:
        t_full, doc, new, inv = provision()
        t_bare, bare_new = bare()
    else:
        t_bare, bare_new = bare()
        t_full, doc, new, inv = provision()
    only_bare, only_one = sorted(bare_new - set(new)), sorted(set(new) - bare_new)
    b.say(
        f"pair {i + 1} ({'dlsetup' if i % 2 == 0 else 'floor'} first): same package set after: "
        f"{not (only_bare or only_one)}"
        + (f" (only bare: {only_bare}; only dlsetup: {only_one})" if only_bare or only_one else "")
    )
    if i > 0:  # only the first pair's dlsetup box is used again: free the disk
        b.remove(one_name, bare_name)
    else:
        b.remove(bare_name)
    return Pair(t_full, t_bare, new, only_bare, only_one, doc, inv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    profile = [a for t in args.skip_tags for a in ("--skip-tags", t)]
    load_start = loadavg()
    content_start = content_hash()
    b = Bench(work, profile, args.repeat)
    try:
        # Warm the cache with an untimed provision.
        warm = b.box("warm")
        warm_before = packages(PREFIX + "warm")
        t_cold, _ = b.provision(b.inventory("warm", {"warm": warm}), "warm")
        b.say(f"warm-up provision (cold cache, not compared): {t_cold:.1f} s")
        ref = reference("warm", warm_before)
        b.remove("warm")

        # 1. Full provision vs bare apt-get install of the same set, in pairs
        # taken one after the other (dlsetup first, then floor first ...) so
        # that the machine's own swings (a shared host) fall on both sides;
        # the medians are compared. The first pair's dlsetup box is the
        # converged box of comparison 2.
        pairs = [full_pair(b, i, ref) for i in range(args.full_repeat)]
        t_full = statistics.median(p.provision_s for p in pairs)
        t_bare = statistics.median(p.bare_s for p in pairs)
        first = pairs[0]
        new, doc = first.new, first.doc
        # what any pair's two boxes did not share (empty: every pair matched)
        only_bare = sorted(set().union(*(p.only_bare for p in pairs)))
        only_one = sorted(set().union(*(p.only_one for p in pairs)))
        inv1 = first.inventory

        noop_result = noop_comparison(b, inv1, args.repeat)

        # 3. Four fresh boxes in one run vs the one fresh box of 1.
        lab_result: dict[str, Any] | None = None
        if not args.no_lab:
            lab = {f"lab{i}": b.box(f"lab{i}") for i in range(1, 5)}
            t_lab, lab_doc = b.provision(b.inventory("lab", lab), "lab", "--forks", "4")
            b.say(f"4 boxes in one run: {t_lab:.1f} s")
            hits = aptcache.stats(b.cache.container)
            lab_result = {
                "lab_s": round(t_lab, 1),
                "one_s": round(t_full, 1),
                "ratio": round(t_lab / t_full, 2),
                "target_ratio": TARGETS["lab"],
                "hosts_ok": sorted(h for h, s in lab_doc["hosts"].items() if s["failed"] == 0),
                "cache_debs_served": hits.debs_served,
                "cache_deb_hits": hits.deb_hits,
            }
        if content_hash() != content_start:
            # A site that changed under the run compares different things.
            raise SystemExit("the collection changed during the run: results discarded")
    finally:
        b.close()

    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "profile": (" ".join(profile) or "full site")
        + " (NVIDIA Container Toolkit off: its repository is on the internet)",
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "commit": commit(),
        "comparisons": {
            "full_vs_bare_apt": {
                "provision_s": round(t_full, 1),
                "bare_apt_s": round(t_bare, 1),
                "ratio": round(t_full / t_bare, 2),
                "provision_runs_s": [round(p.provision_s, 1) for p in pairs],
                "bare_apt_runs_s": [round(p.bare_s, 1) for p in pairs],
                "target_ratio": TARGETS["full"],
                "packages": len(new),
                "bare_options": "--no-install-recommends",
                "alternated": True,
                "same_packages": not (only_bare or only_one),
                "only_bare": only_bare,
                "only_dlsetup": only_one,
                "cold_cache_provision_s": round(t_cold, 1),
            },
            "noop_vs_setup": {**noop_result, "tasks_ok": doc["hosts"]["one"]["ok"]},
            "lab4_vs_one": lab_result,
        },
        "log": b.log,
    }


def _verdict(ok: bool) -> str:
    return "meets the target" if ok else "**misses the target**"


def _rows(r: dict[str, Any]) -> list[tuple[str, str, float, float, float, str, bool]]:
    """(key, what, dlsetup s, floor s, ratio, target, met) for each comparison run."""
    c = r["comparisons"]
    f, n, lab = c["full_vs_bare_apt"], c["noop_vs_setup"], c.get("lab4_vs_one")
    bare = "bare `apt-get install" + (
        " --no-install-recommends`" if f.get("bare_options") else "` (with recommends)"
    )
    rows = [
        (
            "full",
            f"full provision of a fresh box vs {bare} of the same {f['packages']} packages",
            f["provision_s"],
            f["bare_apt_s"],
            f["ratio"],
            f"<= {f['target_ratio']}x",
            f["ratio"] <= f["target_ratio"],
        ),
        (
            "noop",
            "no-op re-provision vs `ansible -m setup`",
            n["noop_s"],
            n["setup_s"],
            n["ratio"],
            f"<= {n['target_ratio']}x and <= {n['target_s']} s",
            n["ratio"] <= n["target_ratio"] and n["noop_s"] <= n["target_s"],
        ),
    ]
    if lab:
        rows.append(
            (
                "lab",
                "4 fresh boxes in one run vs 1 fresh box",
                lab["lab_s"],
                lab["one_s"],
                lab["ratio"],
                f"<= {lab['target_ratio']}x",
                lab["ratio"] <= lab["target_ratio"],
            )
        )
    return rows


def _medians(r: dict[str, Any], key: str) -> str:
    """How many runs a comparison's figures are medians of (two results side
    by side may have taken different numbers)."""
    c = r["comparisons"]
    if key == "full":
        pairs = len(c["full_vs_bare_apt"].get("provision_runs_s", []))
        return f" (medians of {pairs} pairs)" if pairs > 1 else ""
    if key == "noop":
        return f" (median of {len(c['noop_vs_setup']['noop_runs_s'])})"
    return ""


_ALTERNATED = "; dlsetup first in even pairs, the floor first in odd ones; each side after a sync"


def markdown(r: dict[str, Any], previous: dict[str, Any] | None = None) -> str:
    m, c = r["machine"], r["comparisons"]
    f, n, lab = c["full_vs_bare_apt"], c["noop_vs_setup"], c.get("lab4_vs_one")
    table = "\n".join(
        [
            "| comparison | dlsetup | floor | ratio | target | |",
            "|---|---:|---:|---:|---:|---|",
            *(
                f"| {a}{_medians(r, k)} | {b} s | {c_} s | {ratio}x | {t} | {_verdict(ok)} |"
                for k, a, b, c_, ratio, t, ok in _rows(r)
            ),
        ]
    )
    side = ""
    if previous:
        old = {k: (b, c_, ratio) for k, _, b, c_, ratio, _, _ in _rows(previous)}
        lines = [
            f"| comparison | before ({previous['date'][:10]}, {previous['commit']}) "
            f"| now ({r['date'][:10]}, {r['commit']}) |",
            "|---|---:|---:|",
        ]
        for k, a, b, c_, ratio, _, _ in _rows(r):
            if k in old:
                ob, oc, oratio = old[k]
                lines.append(
                    f"| {a} | {ob} s / {oc} s = {oratio}x{_medians(previous, k)} "
                    f"| {b} s / {c_} s = {ratio}x{_medians(r, k)} |"
                )
        pm = previous["machine"]
        side = (
            "\nBefore and after, side by side (dlsetup / floor = ratio; the earlier "
            "full-provision floor installed with recommends where it says so above). "
            "The earlier run's "
            f"machine: {pm['cpu']}, {pm['cores']} cores, {pm['ram_gib']} GiB RAM, kernel "
            f"{pm['kernel']}; load at its start {previous['loadavg_start']}, at its end "
            f"{previous['loadavg_end']}.\n\n" + "\n".join(lines) + "\n"
        )
    same = (
        "not checked (a run from before the check existed)"
        if "same_packages" not in f
        else "both boxes hold the same packages afterwards"
        if f["same_packages"]
        else "**the two boxes do not hold the same packages afterwards**: only the bare box "
        f"{f.get('only_bare')}, only dlsetup's {f.get('only_dlsetup')}"
    )
    walked = (
        f"\nStages the no-op runs proved unchanged in one read (tasks left out): "
        f"{', '.join(n['unchanged_stages']) or 'none'}. The same re-provision walking every "
        f"task (`--verify-all`): {n['verify_all_s']} s (runs: {n['verify_all_runs_s']} s)."
        if "verify_all_s" in n
        else ""
    )
    lab_line = (
        f"The lab's apt cache served {lab['cache_debs_served']} .deb downloads, "
        f"{lab['cache_deb_hits']} of them without going to the mirror."
        if lab
        else "The four-box comparison was not run (--no-lab)."
    )
    full_runs = (
        f"Full provisions: {f['provision_runs_s']} s; their floors: {f['bare_apt_runs_s']} s "
        "(in pairs, one after the other" + (_ALTERNATED if f.get("alternated") else "") + ").\n"
        if "provision_runs_s" in f
        else ""
    )
    return f"""# Provisioning benchmark, {r["date"][:10]}

Made with `benchmarks/provision.py` at commit {r["commit"]}; profile: {r["profile"]}.

Machine: {m["cpu"]}, {m["cores"]} cores, {m["ram_gib"]} GiB RAM, kernel {m["kernel"]},
{m["os"]}, Docker {m["docker"]}. Boxes are systemd containers from the project's
Debian 12 image reached over SSH; every package comes through one apt-cacher-ng
container that an untimed provision filled first, so no timed run measures the
internet (that cold-cache provision took {f["cold_cache_provision_s"]} s).
Load average (1, 5, 15 min) at the start {r["loadavg_start"]}, at the end {r["loadavg_end"]}:
other work on the machine during the run slows every side of every comparison.

{table}

{full_runs}No-op runs: {n["noop_runs_s"]} s; `ansible -m setup` runs: {n["setup_runs_s"]} s.{walked}
The floor of the full provision: {same}.
{lab_line}
{side}
Log:

```
{chr(10).join(r["log"])}
```
"""


def latest_previous(out: Path, today: str) -> dict[str, Any] | None:
    """The newest earlier result in the results folder, to show beside this one."""
    # by stem: "provision-D.json" must sort before "provision-D-label.json"
    older = sorted(
        (p for p in out.glob("provision-*.json") if p.stem < f"provision-{today}"),
        key=lambda p: p.stem,
    )
    return json.loads(older[-1].read_text()) if older else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--skip-tags", action="append", default=[], help="stages left out (as dlsetup's)"
    )
    p.add_argument("--repeat", type=int, default=3, help="runs of each no-op measurement")
    p.add_argument(
        "--full-repeat",
        type=int,
        default=3,
        help="pairs of (full provision, bare apt-get floor) taken one after the other; "
        "their medians are compared",
    )
    p.add_argument(
        "--work", default=str(REPO / ".cache" / "bench"), help="scratch folder (keys, inventories)"
    )
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks"), help="where the results go")
    p.add_argument("--no-lab", action="store_true", help="leave out the four-box comparison")
    p.add_argument("--previous", help="an earlier result (.json) to show beside this one")
    p.add_argument(
        "--label", default="", help="appended to the file names (a second run of the same day)"
    )
    args = p.parse_args(argv)
    why = docker_ready()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    result = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"provision-{result['date'][:10]}{'-' + args.label if args.label else ''}"
    previous = (
        json.loads(Path(args.previous).read_text())
        if args.previous
        else latest_previous(out, result["date"][:10])
    )
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result, previous))
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
