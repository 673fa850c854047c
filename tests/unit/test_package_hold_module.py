"""The hold module (the collection's plugins/modules/package_hold.py): the
nvidia_driver role's three locks on the driver stack in one module run.

The module file runs as Ansible runs it. dpkg is stood in for by two small
scripts first on PATH, over a status file under the test's folder: a box
with NVIDIA's driver installed cannot exist here, and the host's own dpkg
must not be changed by a unit test. The stand-ins answer the one query and
the one command the module uses, as dpkg does. The real dpkg path runs in
the nvidia_driver molecule scenario and the e2e tier (holds, pins and the
unattended-upgrades blacklist checked on the box).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from ansible_collections.dlsetup.box.plugins.modules import package_hold

from dlsetup import content
from tests.modules import run_module_file

MODULE = Path(package_hold.__file__)
VARS = content.roles_dir() / "nvidia_driver" / "vars" / "main.yml"
DRIVER_REGEX = str(yaml.safe_load(VARS.read_text())["__nvidia_driver_hold_regex"]).strip()

# dpkg-query -W -f '${db:Status-Abbrev}|${binary:Package}|${Version}\n'
# stand-in: prints the status file; dpkg --set-selections: sets "h" on each
# "<name> hold" line of its input, and logs its input.
DPKG_QUERY = """#!/bin/sh
cat "$(dirname "$0")/status"
"""
DPKG = """#!/bin/sh
[ "$1" = --set-selections ] || exit 2
dir=$(dirname "$0")
while read -r name want; do
  [ -n "$name" ] || continue
  [ "$want" = hold ] || exit 3
  echo "$name" >> "$dir/selections.log"
  sed -i "s/^i\\(.\\) |$name|/h\\1 |$name|/" "$dir/status"
done
"""

STATUS = """\
ii |nvidia-driver|535.309.01-0+deb12u1
hi |nvidia-smi|535.309.01-0+deb12u1
ii |libcuda1:amd64|535.309.01-0+deb12u1
ii |libcuda1:i386|535.309.01-0+deb12u1
ii |libnvidia-container1:amd64|1.17.8-1
ii |nvidia-cuda-toolkit|11.8.89~11.8.0-5~deb12u1
rc |nvidia-kernel-open-dkms|530.41.03-1
ii |bash|5.2.15-2+b7
"""


def box(tmp_path: Path, status: str = STATUS) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("dpkg-query", DPKG_QUERY), ("dpkg", DPKG)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (bin_dir / "status").write_text(status)
    (tmp_path / "etc").mkdir()
    return bin_dir


def run(tmp_path: Path, bin_dir: Path, check: bool = False, **extra: object) -> dict:
    args = {
        "match": DRIVER_REGEX,
        "pin_file": str(tmp_path / "etc" / "pin"),
        "blacklist_file": str(tmp_path / "etc" / "uu"),
        "comment": ["Managed by a test"],
        **extra,
    }
    return run_module_file(MODULE, tmp_path, args, check=check, path_first=bin_dir)


def held(bin_dir: Path) -> list[str]:
    lines = (bin_dir / "status").read_text().splitlines()
    return [line.split("|")[1] for line in lines if line.startswith("h")]


def test_holds_pins_and_blacklists_the_driver_stack_then_changes_nothing(tmp_path):
    bin_dir = box(tmp_path)
    first = run(tmp_path, bin_dir)
    assert first["changed"] is True, first
    # the driver stack only: not the CUDA toolkit, not the container library,
    # not a package removed with its config left ("rc")
    assert [p["name"] for p in first["stack"]] == [
        "nvidia-driver",
        "nvidia-smi",
        "libcuda1:amd64",
        "libcuda1:i386",
    ]
    # one dpkg call, for the ones not held yet (nvidia-smi was)
    assert first["held_now"] == ["nvidia-driver", "libcuda1:amd64", "libcuda1:i386"]
    assert (bin_dir / "selections.log").read_text().split() == first["held_now"]
    assert held(bin_dir) == ["nvidia-driver", "nvidia-smi", "libcuda1:amd64", "libcuda1:i386"]

    pin = (tmp_path / "etc" / "pin").read_text()
    assert pin.startswith("# Managed by a test\n")
    stanzas = re.findall(r"Package: (\S+)\nPin: version (\S+)\nPin-Priority: 1001", pin)
    # one stanza per package name: a pin applies to every architecture
    assert stanzas == [
        ("nvidia-driver", "535.309.01-0+deb12u1"),
        ("nvidia-smi", "535.309.01-0+deb12u1"),
        ("libcuda1", "535.309.01-0+deb12u1"),
    ]
    uu = (tmp_path / "etc" / "uu").read_text()
    assert uu.startswith("// Managed by a test\nUnattended-Upgrade::Package-Blacklist {\n")
    assert re.findall(r'"(.+)";', uu) == ["^nvidia\\-driver$", "^nvidia\\-smi$", "^libcuda1$"]
    assert uu.endswith("};\n")
    assert first["changed_paths"] == [str(tmp_path / "etc" / "pin"), str(tmp_path / "etc" / "uu")]

    second = run(tmp_path, bin_dir)
    assert second["changed"] is False, second
    assert second["held_now"] == [] and second["changed_paths"] == []
    assert (bin_dir / "selections.log").read_text().split() == first["held_now"]


def test_a_new_version_rewrites_the_pin(tmp_path):
    bin_dir = box(tmp_path)
    run(tmp_path, bin_dir)
    status = bin_dir / "status"
    status.write_text(
        status.read_text().replace("hi |nvidia-smi|535.309.01", "hi |nvidia-smi|535.400.01")
    )
    again = run(tmp_path, bin_dir)
    assert again["changed"] is True and again["held_now"] == []
    assert again["changed_paths"] == [str(tmp_path / "etc" / "pin")]
    assert (
        "Package: nvidia-smi\nPin: version 535.400.01-0+deb12u1\n"
        in (tmp_path / "etc" / "pin").read_text()
    )


def test_check_mode_holds_and_writes_nothing_and_says_what_would_change(tmp_path):
    bin_dir = box(tmp_path)
    res = run(tmp_path, bin_dir, check=True)
    assert res["changed"] is True
    assert res["held_now"] == ["nvidia-driver", "libcuda1:amd64", "libcuda1:i386"]
    assert [d["before_header"] for d in res["diff"]] == [
        str(tmp_path / "etc" / "pin"),
        str(tmp_path / "etc" / "uu"),
    ]
    assert held(bin_dir) == ["nvidia-smi"]
    assert not (bin_dir / "selections.log").exists()
    assert not (tmp_path / "etc" / "pin").exists() and not (tmp_path / "etc" / "uu").exists()


def test_only_where_pinned_does_nothing_without_the_pin_file(tmp_path):
    bin_dir = box(tmp_path)
    res = run(tmp_path, bin_dir, only_where_pinned=True)
    assert res["changed"] is False and res["stack"] == []
    assert "does not exist" in res["skipped_reason"]
    assert held(bin_dir) == ["nvidia-smi"]
    assert not (tmp_path / "etc" / "pin").exists()


def test_only_where_pinned_keeps_an_existing_hold_up_to_date(tmp_path):
    bin_dir = box(tmp_path)
    (tmp_path / "etc" / "pin").write_text("# an older hold\n")
    res = run(tmp_path, bin_dir, only_where_pinned=True)
    assert res["changed"] is True
    assert held(bin_dir) == ["nvidia-driver", "nvidia-smi", "libcuda1:amd64", "libcuda1:i386"]
    assert "Package: libcuda1\n" in (tmp_path / "etc" / "pin").read_text()


def test_no_driver_installed_touches_nothing(tmp_path):
    bin_dir = box(tmp_path, "ii |bash|5.2.15-2+b7\n")
    res = run(tmp_path, bin_dir)
    assert res == {**res, "changed": False, "stack": [], "held_now": [], "changed_paths": []}
    assert not (tmp_path / "etc" / "pin").exists() and not (tmp_path / "etc" / "uu").exists()


def test_a_bad_regex_is_named(tmp_path):
    bin_dir = box(tmp_path)
    res = run(tmp_path, bin_dir, match="^(nvidia")
    assert res["failed"] is True
    assert res["msg"].startswith("match: not a regular expression")
