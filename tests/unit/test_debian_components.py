"""Which Debian apt source lines the dlsetup role's debian_components.yml
rewrites: its two patterns and replacements, rendered by Ansible's own templar
and applied with Python's re as ansible.builtin.replace applies them (per
line, MULTILINE). The driver and the toolkit both ask for these components.

Debian 12's installer writes "main non-free-firmware": the old patterns took
non-free-firmware as the sign that the rest was there, and left such a
machine without non-free, where the driver is."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from dlsetup import content
from tests.templating import render

ROLE = content.roles_dir() / "dlsetup"
TASKS = ROLE / "tasks" / "debian_components.yml"
NEEDED = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__dlsetup_debian_components"]


def test_the_components_are_the_four_of_debian_12() -> None:
    assert NEEDED == ["main", "contrib", "non-free", "non-free-firmware"]


def _rules() -> list[tuple[str, str]]:
    block = yaml.safe_load(TASKS.read_text())[0]
    variables: dict[str, Any] = {"__dlsetup_debian_components": NEEDED}
    variables["__dlsetup_components_all_there"] = render(
        block["vars"]["__dlsetup_components_all_there"], variables
    )
    rules = []
    for task in block["block"]:
        args = task.get("ansible.builtin.replace")
        if args:
            rules.append((render(args["regexp"], variables), render(args["replace"], variables)))
    assert len(rules) == 2  # deb822 and one-line
    return rules


def rewrite(text: str) -> str:
    for regexp, replace in _rules():
        text = re.sub(regexp, replace, text, flags=re.MULTILINE)
    return text


ALL = "Components: main contrib non-free non-free-firmware"


@pytest.mark.parametrize(
    ("line", "after"),
    [
        ("Components: main non-free-firmware", ALL),  # Debian 12's installer
        ("Components: main", ALL),
        ("Components: main contrib non-free-firmware", ALL),
        (ALL, ALL),
        # already all there, in another order: left as it is
        ("Components: main non-free-firmware non-free contrib",
         "Components: main non-free-firmware non-free contrib"),
        ("deb http://deb.debian.org/debian bookworm main non-free-firmware",
         "deb http://deb.debian.org/debian bookworm main contrib non-free non-free-firmware"),
        ("deb [signed-by=/k.gpg] http://m/debian bookworm-updates main",
         "deb [signed-by=/k.gpg] http://m/debian bookworm-updates main contrib non-free non-free-firmware"),
        ("deb http://deb.debian.org/debian bookworm main contrib non-free non-free-firmware",
         "deb http://deb.debian.org/debian bookworm main contrib non-free non-free-firmware"),
    ],
)  # fmt: skip
def test_a_source_gets_every_component_once(line: str, after: str) -> None:
    once = rewrite(line)
    assert once == after
    assert rewrite(once) == once  # a second run changes nothing


def test_other_lines_are_left_alone() -> None:
    text = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n# main\n"
    assert rewrite(text) == text
