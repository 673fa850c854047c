"""`dlsetup demo`, the embedded default, as a user runs it: the first run
provisions the throw-away box with the whole site, the second changes nothing,
and --destroy removes it. The box gets its own container name and state dir so
that a user's demo box is never touched.

The NVIDIA driver and the CUDA toolkit come from Debian's real non-free
packages. The NVIDIA Container Toolkit comes from the local signed repository
of tests/aptrepo.py, which stands in for NVIDIA's libnvidia-container servers
(unreachable from CI); the demo is told so with the same -e mirror settings a
lab without internet uses. Nothing in the box has a GPU: the GPU-only steps
must be reported as skipped, with their reasons."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dlsetup import localbox
from tests import aptrepo
from tests.boxes import dlsetup, sh

BOX = "dlsetup-test-demo"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    e = {"DLSETUP_DEMO_BOX": BOX, "XDG_STATE_HOME": str(tmp_path / "state")}
    localbox.remove_box(BOX)
    try:
        yield e
    finally:
        dlsetup("demo", "--destroy", env=e)
        localbox.remove_box(BOX)


def test_demo_provisions_then_changes_nothing_then_destroys(
    env: dict[str, str], tmp_path: Path
) -> None:
    repo = aptrepo.up()["libnvidia-container"]
    mirror = tmp_path / "mirror.json"
    mirror.write_text(
        json.dumps(
            {
                "container_runtime_nvidia_toolkit": True,
                "container_runtime_nvidia_repo_url": repo["url"],
                "container_runtime_nvidia_repo_key_url": repo["key_url"],
                "container_runtime_nvidia_repo_key_fingerprint": repo["fingerprint"],
            }
        )
    )
    first = dlsetup("demo", "--json", "-e", f"@{mirror}", env=env)
    assert first.rc == 0, first.stderr + first.stdout
    demo = first.doc["hosts"]["demo"]
    assert demo["failed"] == 0 and demo["changed"] > 0
    assert sh(BOX, "test -x /etc/ansible/facts.d/dl.fact && echo yes").strip() == "yes"

    # The whole stack, from Debian's packages (and the toolkit's stand-in repository).
    held = sh(BOX, "dpkg --get-selections | awk '$2 == \"hold\" {print $1}'").split()
    assert "nvidia-driver" in held, held
    assert "blacklist nouveau" in sh(BOX, "cat /etc/modprobe.d/*.conf")
    assert "release 11.8" in sh(BOX, "bash -lc 'nvcc --version'")
    runtimes = json.loads(sh(BOX, "docker info --format '{{json .Runtimes}}'"))
    assert "nvidia" in runtimes
    steps = " ".join(f"{s['step']}: {s['reason']}" for s in demo["skipped_steps"])
    assert "GPU" in steps, demo["skipped_steps"]

    second = dlsetup("demo", "--json", "-e", f"@{mirror}", env=env)
    assert second.rc == 0, second.stderr
    assert second.doc["hosts"]["demo"]["changed"] == 0, second.doc["hosts"]["demo"].get("changes")
    assert second.doc["hosts"]["demo"]["failed"] == 0
    # the no-op path: every stage proved unchanged in one read
    assert second.doc["hosts"]["demo"]["unchanged_stages"] == [
        "base", "disks", "nvme", "driver", "cuda", "docker"
    ]  # fmt: skip

    # Without -i, --host demo finds the demo box from anywhere.
    facts = dlsetup("facts", "--host", "demo", "--json", env=env)
    assert facts.rc == 0, facts.stderr
    report = facts.doc["hosts"]["demo"]["reports"]["dl_facts_report"]
    assert report["in_container"] is True and report["nvidia_gpu_count"] == 0
    # The table names the NVMe drives the nvme stage found, or says there are
    # none. A container sees the host's sysfs: the host's drives are the box's.
    table = dlsetup("facts", "--host", "demo", env=env)
    assert table.rc == 0, table.stderr
    drives = sorted(p.name for p in Path("/sys/class/nvme").glob("nvme*"))
    if drives:
        assert all(d in table.stdout for d in drives), table.stdout
    else:
        assert "no NVMe drives" in table.stdout, table.stdout
    assert "run the nvme stage" not in table.stdout, table.stdout  # it ran: nvme.fact is there

    gone = dlsetup("demo", "--destroy", env=env)
    assert gone.rc == 0
    assert localbox.container_state(BOX) is None
    assert not (Path(env["XDG_STATE_HOME"]) / "dlsetup" / "demo" / "inventory.yml").exists()
