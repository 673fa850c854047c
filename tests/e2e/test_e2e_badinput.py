"""Bad input, generated: malformed host vars give exit 2, name the field, change nothing.

Hypothesis writes host_vars/box1.yml files as a user might get them wrong:

* wrong types: a value of the wrong type for a typed variable of any role
  (bool, int, list and dict variables, read from every role's
  meta/argument_specs.yml, so new roles are covered as they land; str and
  path variables accept anything Ansible can turn into a string);
* unknown `<role>_*` keys: a role's prefix with a name the role does not take;
* impossible sizes in disk_layout_disks (no unit, zero, negative, over 100%);
* duplicate mount points in disk_layout_disks;
* incompatible versions: an nvidia_driver_branch that the distribution's own
  driver package is not (guarded on nvidia_driver's argument spec existing;
  without a GPU in the box, cuda_version has nothing to be checked against,
  so it is not generated);
* a cuDNN NVIDIA did not package under the names the cuda role installs
  (cuDNN 8 and older with `cuda_source: nvidia`), refused GPU or not.

The disk kinds are caught in preflight by disk_layout's own planner (called
from the collection's plugins/action/validate_vars.py), before base or facts change
anything.

Each example is a real `dlsetup provision --host box1 --json` against one
box (a fresh systemd container over SSH, never provisioned) that all examples
share; a snapshot of its packages, holds and every file under /etc before and
after each example must be equal. Few examples per kind (each is a real run
of ~10 s), derandomized so CI sees the same ones every time.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.dlsetup.box.plugins.action import validate_vars
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dlsetup import content
from tests.boxes import (
    Box,
    Boxes,
    dlsetup,
    snapshot,
    write_inventory,
)

BOX = "dlsetup-e2e-badin"
EXAMPLES = 2  # per kind; each is a real run

_BOOLISH = {"yes", "no", "true", "false", "on", "off", "y", "n", "t", "f", "1", "0", "1.0", "0.0"}


def _load_specs() -> dict[str, dict[str, Any]]:
    """role -> options of its main entry point, as preflight reads them."""
    return validate_vars.load_specs(content.roles_dir())  # type: ignore[no-any-return]


SPECS = _load_specs()
TYPED = sorted(
    (name, opt["type"])
    for opts in SPECS.values()
    for name, opt in opts.items()
    if opt.get("type") in ("bool", "int", "list", "dict")
)

words = st.text(string.ascii_lowercase, min_size=3, max_size=10)


def wrong_value(kind: str) -> st.SearchStrategy[Any]:
    if kind == "bool":
        return words.filter(lambda w: w not in _BOOLISH) | st.lists(
            st.integers(2, 9), min_size=1, max_size=3
        )
    if kind == "int":
        return words | st.lists(words, min_size=1, max_size=2)
    if kind == "list":
        return st.dictionaries(words, st.integers(), min_size=1, max_size=2)
    return st.lists(st.integers(), min_size=1, max_size=3)  # dict


@st.composite
def wrong_type(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    name, kind = draw(st.sampled_from(TYPED))
    return {name: draw(wrong_value(kind))}, [name]


@st.composite
def unknown_key(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    role = draw(st.sampled_from(sorted(SPECS)))
    suffix = draw(words.filter(lambda w: f"{role}_{w}" not in SPECS[role]))
    name = f"{role}_{suffix}"
    value = draw(st.one_of(st.booleans(), st.integers(), words))
    return {name: value}, [name]


def _disks(partitions: list[dict[str, Any]]) -> dict[str, Any]:
    # A disk that does not exist: the spec is refused before any disk is read.
    return {
        "disk_layout_disks": [
            {
                "device": "/dev/disk/by-id/dlsetup-e2e-nonexistent",
                "table": "gpt",
                "partitions": partitions,
            }
        ]
    }


impossible_sizes = st.one_of(
    st.integers(1, 4096).map(str),  # no unit
    st.integers(-512, 0).map(lambda n: f"{n}GiB"),
    st.integers(101, 1000).map(lambda n: f"{n}%"),
    st.sampled_from(["0MiB", "512KiB", "12 parsecs", "GiB", "1.5.2GiB"]),
)


@st.composite
def impossible_size(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    size = draw(impossible_sizes)
    return _disks([{"name": "data", "size": size, "fstype": "ext4", "mount": "/data"}]), [
        "disk_layout_disks",
        "size",
    ]


@st.composite
def duplicate_mount(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    mount = "/" + draw(words)
    parts = [{"name": f"p{i}", "size": "1GiB", "fstype": "ext4", "mount": mount} for i in range(2)]
    return _disks(parts), ["disk_layout_disks", "mount"]


@st.composite
def incompatible_version(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    # Debian 12's own driver package is 535; any other branch with the
    # distribution's packages cannot be installed.
    branch = draw(st.sampled_from(["470", "525", "550", "560", "570", "580"]))
    return {"nvidia_driver_source": "distro", "nvidia_driver_branch": branch}, [
        "nvidia_driver_branch"
    ]


@st.composite
def unpackaged_cudnn(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    # The cuda role names cuDNN 9's packages; NVIDIA packaged cuDNN 8 and
    # older under other names. Checked with or without a GPU in the box.
    cudnn = draw(st.sampled_from(["7", "8", "8.9"]))
    return {"cuda_source": "nvidia", "cuda_version": "12.8", "cuda_cudnn_version": cudnn}, [
        "cuda_cudnn_version",
        "cuDNN 9 and newer",
    ]


# Every kind runs: the roles they aim at (disk_layout, nvidia_driver) exist
# now, so the skips that waited for them are gone.
KINDS: dict[str, Any] = {
    "wrong-type": pytest.param(wrong_type(), id="wrong-type"),
    "unknown-key": pytest.param(unknown_key(), id="unknown-key"),
    "impossible-size": pytest.param(impossible_size(), id="impossible-size"),
    "duplicate-mount": pytest.param(duplicate_mount(), id="duplicate-mount"),
    "incompatible-version": pytest.param(incompatible_version(), id="incompatible-version"),
    "unpackaged-cudnn": pytest.param(unpackaged_cudnn(), id="unpackaged-cudnn"),
}


@pytest.fixture(scope="module")
def box(boxes: Boxes) -> tuple[Path, Path, Box]:
    return boxes.work, boxes.key, boxes.start(BOX)


_counter = iter(range(10**6))


@pytest.mark.parametrize("case", list(KINDS.values()))
def test_malformed_host_vars_exit_2_name_the_field_change_nothing(
    box: tuple[Path, Path, Box], case: st.SearchStrategy[tuple[dict[str, Any], list[str]]]
) -> None:
    work, key, b = box

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        # No shrinking: every step of it is another real run. The failing
        # example is printed as it is.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(case)
    def check(example: tuple[dict[str, Any], list[str]]) -> None:
        host_vars, named = example
        inv_dir = work / f"inv{next(_counter)}"
        inv = write_inventory(inv_dir / "hosts.yml", key, {"box1": {"ansible_host": b.address}})
        (inv_dir / "host_vars").mkdir()
        (inv_dir / "host_vars" / "box1.yml").write_text(yaml.safe_dump(host_vars))
        before = snapshot(BOX)
        res = dlsetup("provision", "--host", "box1", "-i", str(inv), "--json")
        assert res.rc == 2, f"{host_vars}: rc {res.rc}\n{res.stdout[-3000:]}{res.stderr[-2000:]}"
        failures = res.doc["hosts"]["box1"]["failures"]
        msgs = " ".join(f["msg"] for f in failures)
        for word in named:
            assert word in msgs, f"{host_vars}: {word!r} not named in: {msgs}"
        assert failures[0]["category"] == "preflight", failures
        assert snapshot(BOX) == before, f"{host_vars} changed the box"

    check()
