"""End to end over SSH: the real `dlsetup` CLI, as a subprocess, against
systemd containers that stand in for freshly installed machines (sshd, a sudo
user, our key), listed in an inventory by address as a user lists real boxes.

What a container cannot be (a GPU, a kernel module, a reboot) is reported as
skipped by the roles; everything else runs for real: the whole site.yml but
its CUDA stage, with the driver from Debian's non-free packages and the NVIDIA
Container Toolkit from tests/aptrepo.py's signed stand-in for NVIDIA's
repository.

Profile: `--skip-tags cuda`. The CUDA toolkit (1.6 GB of packages) is
provisioned in the full site by test_e2e_demo.py and on its own by the cuda
role's molecule scenario; over SSH it has no step of its own (an apt install
and files, as the other stages here), and it took about a minute of this
file's CI time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.boxes import (
    Box,
    dlsetup,
    downloads_left,
    exists,
    make_key,
    nvidia_mirror_vars,
    remove_boxes,
    sh,
    snapshot,
    start_box,
    write_inventory,
)

BOXES = ("dlsetup-e2e-box1", "dlsetup-e2e-box2")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, dict[str, Box]]]:
    work = tmp_path_factory.mktemp("e2e")
    key, pub = make_key(work)
    boxes = {n.rsplit("-", 1)[1]: start_box(n, pub) for n in BOXES}
    try:
        yield work, key, boxes
    finally:
        remove_boxes(list(BOXES))


def inventory(
    work: Path,
    key: Path,
    boxes: dict[str, Box],
    name: str = "hosts.yml",
    extra: dict[str, dict[str, object]] | None = None,
) -> Path:
    hosts = {h: {"ansible_host": b.address, **((extra or {}).get(h, {}))} for h, b in boxes.items()}
    return write_inventory(work / name.replace(".yml", "") / "hosts.yml", key, hosts)


def changed_host_vars() -> dict[str, object]:
    """box1's vars from the changed-var step on: the tests after it keep them,
    so that box1 stays converged and their runs of it are no-op runs."""
    return {
        **nvidia_mirror_vars(),
        "container_runtime_daemon_options": {"log-driver": "local"},
        "nvme_io_scheduler": "mq-deadline",
    }


# Every stage but CUDA's (see the module's docstring).
PROFILE = ("--skip-tags", "cuda")
# The stages with a no-op path (tasks/converged.yml) this profile runs, in order.
STAGES = ["base", "disks", "nvme", "driver", "docker"]


def test_provision_over_ssh_then_again_changes_nothing(
    lab: tuple[Path, Path, dict[str, Box]],
) -> None:
    work, key, boxes = lab
    inv = inventory(work, key, {"box1": boxes["box1"]}, extra={"box1": nvidia_mirror_vars()})
    # Debian 12's installer enables main and non-free-firmware only; the
    # driver is in non-free, its DKMS helpers in contrib.
    sources = "/etc/apt/sources.list.d/debian.sources"
    sh(BOXES[0], f"sed -i 's/^Components:.*/Components: main non-free-firmware/' {sources}")
    first = dlsetup("provision", "--host", "box1", "-i", str(inv), *PROFILE, "--json")
    assert first.rc == 0, first.stderr + first.stdout
    doc = first.doc
    box1 = doc["hosts"]["box1"]
    assert doc["exit_code"] == 0 and doc["status"] == "successful"
    assert box1["failed"] == 0 and box1["unreachable"] is False
    assert box1["changed"] > 0 and box1["ok"] > box1["changed"]
    # Real state on the box, reached over SSH with become.
    for line in sh(BOXES[0], f"grep '^Components:' {sources}").splitlines():
        assert set(line.split()[1:]) == {"main", "contrib", "non-free", "non-free-firmware"}, line
    assert "hold" in sh(BOXES[0], "dpkg --get-selections nvidia-driver")
    assert "nvidia" in sh(BOXES[0], "docker info --format '{{json .Runtimes}}'")
    assert sh(BOXES[0], "command -v nvcc || true").strip() == ""  # the stage left out
    facts = sh(BOXES[0], "/etc/ansible/facts.d/dl.fact")
    assert '"nvidia_gpu_count": 0' in facts
    assert sh(BOXES[0], "stat -c '%U %a' /etc/ansible/facts.d/dl.fact").strip() == "root 755"
    # The downloads ahead (the driver's from the base stage on, Docker's
    # beside the driver's install) were each handed over: no folder, no job
    # result file, no download still running.
    assert sh(BOXES[0], "ls -A /var/cache/dlsetup/prefetch 2>/dev/null || true").strip() == ""
    assert downloads_left(BOXES[0]) == ""

    # Every task walked again (--verify-all): the tasks themselves change nothing.
    again = dlsetup(
        "provision", "--host", "box1", "-i", str(inv), *PROFILE, "--json", "--verify-all"
    )
    assert again.rc == 0, again.stderr
    assert again.doc["hosts"]["box1"]["changed"] == 0, again.doc["hosts"]["box1"].get("changes")
    assert again.doc["hosts"]["box1"]["failed"] == 0
    assert again.doc["hosts"]["box1"]["unchanged_stages"] == []
    # The no-op path: each stage proves the box unchanged in one read, leaves its tasks out.
    noop = dlsetup("provision", "--host", "box1", "-i", str(inv), *PROFILE, "--json")
    assert noop.rc == 0, noop.stderr
    assert noop.doc["hosts"]["box1"]["changed"] == 0, noop.doc["hosts"]["box1"].get("changes")
    assert noop.doc["hosts"]["box1"]["unchanged_stages"] == STAGES
    assert noop.doc["hosts"]["box1"]["ok"] < again.doc["hosts"]["box1"]["ok"] / 2

    # A changed host var on the converged box converges in one run: a Docker
    # daemon option (daemon.json merged, Docker restarted) and an NVMe option
    # (the udev rule rewritten). The run after it changes nothing again.
    changed_vars = changed_host_vars()
    inv2 = inventory(
        work, key, {"box1": boxes["box1"]}, name="changed.yml", extra={"box1": changed_vars}
    )
    assert sh(BOXES[0], "docker info --format '{{.LoggingDriver}}'").strip() != "local"
    # With them, dlsetup's APST drop-in as an earlier run with
    # nvme_apst_max_latency_us set left it (and GRUB's drop-in folder): the
    # option is null here, so the run removes it (the removal runs where the
    # nvme stage's read finds the file).
    dropin = "/etc/default/grub.d/60-dlsetup-nvme-apst.cfg"
    sh(BOXES[0], f"mkdir -p /etc/default/grub.d && echo 'GRUB_CMDLINE_LINUX=x' > {dropin}")
    third = dlsetup("provision", "--host", "box1", "-i", str(inv2), *PROFILE, "--json")
    assert third.rc == 0, third.stderr + third.stdout
    assert not exists(BOXES[0], dropin)
    assert third.doc["hosts"]["box1"]["changed"] > 0
    assert sh(BOXES[0], "docker info --format '{{.LoggingDriver}}'").strip() == "local"
    assert json.loads(sh(BOXES[0], "cat /etc/docker/daemon.json"))["log-driver"] == "local"
    rule = sh(BOXES[0], "cat /etc/udev/rules.d/60-dlsetup-nvme-scheduler.rules")
    assert 'ATTR{queue/scheduler}="mq-deadline"' in rule
    fourth = dlsetup("provision", "--host", "box1", "-i", str(inv2), *PROFILE, "--json")
    assert fourth.rc == 0, fourth.stderr
    assert fourth.doc["hosts"]["box1"]["changed"] == 0, fourth.doc["hosts"]["box1"].get("changes")
    assert fourth.doc["hosts"]["box1"]["unchanged_stages"] == STAGES

    # Drift: a file a stage manages, removed behind dlsetup's back, is seen by
    # the one read and put back by the next run: the stages up to the nvme
    # stage, which writes the rule, walk; once it is back the box is again as
    # recorded, and the stages after it prove that in their own read.
    rule = "/etc/udev/rules.d/60-dlsetup-nvme-scheduler.rules"
    sh(BOXES[0], f"rm {rule}")
    fifth = dlsetup("provision", "--host", "box1", "-i", str(inv2), *PROFILE, "--json")
    assert fifth.rc == 0, fifth.stderr
    assert fifth.doc["hosts"]["box1"]["changed"] > 0
    assert fifth.doc["hosts"]["box1"]["unchanged_stages"] == ["driver", "docker"]
    assert 'ATTR{queue/scheduler}="mq-deadline"' in sh(BOXES[0], f"cat {rule}")


def test_facts_over_ssh_as_json(lab: tuple[Path, Path, dict[str, Box]]) -> None:
    work, key, boxes = lab
    inv = inventory(work, key, {"box1": boxes["box1"]})
    res = dlsetup("facts", "--host", "box1", "-i", str(inv))
    assert res.rc == 0, res.stderr
    assert "Debian GNU/Linux 12" in res.stdout
    assert "no GPU found" in res.stdout
    assert "container" in res.stdout


@pytest.mark.parametrize(
    ("bad_vars", "named"),
    [
        ({"dl_facts_dri": "/etc/ansible/facts.d"}, "dl_facts_dri"),
        ({"dlsetup_allow_reboot_local": "perhaps"}, "dlsetup_allow_reboot_local"),
    ],
    ids=["unknown-key", "not-a-bool"],
)
def test_bad_host_vars_exit_2_and_change_nothing(
    lab: tuple[Path, Path, dict[str, Box]], bad_vars: dict[str, object], named: str
) -> None:
    work, key, boxes = lab
    # box2 is never provisioned: it must stay exactly as the installer left it,
    # and box1 (good vars, same run) must not be touched either.
    inv = inventory(work, key, boxes, name=f"bad-{named}.yml", extra={"box2": bad_vars})
    before = {b: snapshot(n) for b, n in zip(("box1", "box2"), BOXES, strict=True)}
    res = dlsetup("provision", "--host", "all", "-i", str(inv), "--json")
    assert res.rc == 2, res.stdout + res.stderr
    doc = res.doc
    msgs = " ".join(f["msg"] for h in doc["hosts"].values() for f in h["failures"])
    assert named in msgs
    assert doc["hosts"]["box2"]["failures"][0]["category"] == "preflight"
    after = {b: snapshot(n) for b, n in zip(("box1", "box2"), BOXES, strict=True)}
    assert after == before
    assert not exists(BOXES[1], "/etc/ansible/facts.d")


def test_unreachable_host_exit_3_others_finish(lab: tuple[Path, Path, dict[str, Box]]) -> None:
    work, key, boxes = lab
    hosts = {
        # The vars box1 converged with in the first test: its run here is a
        # no-op run, every stage walked to its end and proved unchanged.
        "box1": {"ansible_host": boxes["box1"].address, **changed_host_vars()},
        # Nothing listens on port 9 here: the connection is refused at once.
        "ghost": {"ansible_host": "127.0.0.1", "ansible_port": 9},
    }
    inv = write_inventory(work / "unreachable" / "hosts.yml", key, hosts)
    res = dlsetup("provision", "--host", "all", "-i", str(inv), *PROFILE, "--json")
    assert res.rc == 3, res.stdout + res.stderr
    doc = res.doc
    assert doc["hosts"]["ghost"]["unreachable"] is True
    assert doc["hosts"]["ghost"]["failures"][0]["category"] == "unreachable"
    assert doc["hosts"]["box1"]["failed"] == 0
    assert doc["hosts"]["box1"]["ok"] > 0
    # box1 ran the site (the profile), not just preflight: every stage reached its
    # one read and proved the box unchanged, and nothing changed.
    assert doc["hosts"]["box1"]["unchanged_stages"] == STAGES, doc["hosts"]["box1"]
    assert doc["hosts"]["box1"]["changed"] == 0, doc["hosts"]["box1"].get("changes")


def test_unknown_host_is_taken_as_address_and_unreachable(
    lab: tuple[Path, Path, dict[str, Box]],
) -> None:
    work, key, boxes = lab
    inv = inventory(work, key, {"box1": boxes["box1"]}, name="adhoc.yml")
    # A loopback address with no sshd behind it: only this machine is ever a target.
    res = dlsetup("provision", "--host", "127.0.0.9", "-i", str(inv), "--json")
    assert res.rc == 3, res.stdout + res.stderr
    assert res.doc["hosts"]["127.0.0.9"]["unreachable"] is True


def test_plan_of_a_fresh_debian_install_names_the_packages_it_cannot_resolve(
    lab: tuple[Path, Path, dict[str, Box]],
) -> None:
    """box2 made as Debian 12's installer leaves a machine: sources with main and
    non-free-firmware only (the driver is in non-free, DKMS helpers in contrib)
    and python3-apt installed, so a plan asks apt. The plan cannot resolve the
    driver's and the toolkit's packages before the run enables those components:
    it says so and still plans the rest of those stages, changing nothing."""
    work, key, boxes = lab
    sh(
        BOXES[1],
        "sed -i 's/^Components:.*/Components: main non-free-firmware/' "
        "/etc/apt/sources.list.d/debian.sources && export DEBIAN_FRONTEND=noninteractive && "
        "apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "
        "python3-apt >/dev/null",
    )
    inv = inventory(work, key, {"box2": boxes["box2"]}, name="plan.yml")
    before = snapshot(BOXES[1])
    # the two stages that need the components (the others plan as in any plan)
    res = dlsetup("plan", "--host", "box2", "-i", str(inv), "--tags", "driver,cuda", "--json")
    assert res.rc == 0, res.stdout[-3000:] + res.stderr[-2000:]
    box2 = res.doc["hosts"]["box2"]
    assert box2["failed"] == 0, box2["failures"]
    left_out = {s["step"]: s["reason"] for s in box2["skipped_steps"]}
    for step in ("driver packages in the plan", "CUDA toolkit packages in the plan"):
        assert "Debian components main contrib non-free non-free-firmware" in left_out[step]
    planned = [c["task"] for c in box2["changes"]]
    assert "Enable the components (deb822 sources)" in planned
    # the rest of those stages is planned as usual
    assert "Blacklist nouveau (also inside the initramfs)" in planned
    assert "Set PATH and CUDA_HOME for login shells" in planned
    assert snapshot(BOXES[1]) == before
