"""The roles' shape (DESIGN.md conventions 2 and 13): one way to pick OS-specific
vars, no vars file that only repeats another, and meta/main.yml naming every
other role a role uses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dlsetup import content

ROLES = sorted(p for p in content.roles_dir().iterdir() if (p / "tasks" / "main.yml").is_file())

# The dispatch every role with OS-specific vars files runs, in this order.
CHAIN = [
    "{{ ansible_facts['distribution'] }}-{{ ansible_facts['distribution_major_version'] }}.yml",
    "{{ ansible_facts['distribution'] }}.yml",
    "{{ ansible_facts['os_family'] }}.yml",
    "main.yml",
]


def os_vars_files(role: Path) -> list[Path]:
    return sorted(
        p for p in (role / "vars").glob("*.yml") if p.name != "main.yml"
    )  # none without vars/


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_os_specific_vars_are_picked_by_the_one_first_found_chain(role: Path) -> None:
    tasks = yaml.safe_load((role / "tasks" / "main.yml").read_text())
    # A role whose other entry points need the same vars (cuda's packages.yml)
    # keeps the load in tasks/os_vars.yml, which main.yml includes first.
    if any(t.get("ansible.builtin.include_tasks") == "os_vars.yml" for t in tasks):
        assert tasks[0].get("ansible.builtin.include_tasks") == "os_vars.yml", role.name
        tasks = tasks + yaml.safe_load((role / "tasks" / "os_vars.yml").read_text())
    loads = [t for t in tasks if "ansible.builtin.include_vars" in t]
    if not os_vars_files(role):
        assert loads == [], f"{role.name} has no OS-specific vars to load"
        return
    assert len(loads) == 1, role.name
    task = loads[0]
    assert task["name"] == "Load the OS-specific variables"
    assert "lookup('ansible.builtin.first_found'" in task["ansible.builtin.include_vars"]
    (chain,) = task["vars"].values()
    assert chain["files"] == CHAIN
    assert chain["paths"] == ["{{ role_path }}/vars"]
    for f in os_vars_files(role):  # every file is reachable by some host
        assert re.fullmatch(r"(Debian|Ubuntu|RedHat)(-\d+)?\.yml", f.name), f


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_os_specific_tasks_are_setup_os_family(role: Path) -> None:
    text = (role / "tasks" / "main.yml").read_text()
    setups = sorted(p.name for p in (role / "tasks").glob("setup-*.yml"))
    if setups:
        assert "include_tasks: \"setup-{{ ansible_facts['os_family'] }}.yml\"" in text, role.name
        assert all(re.fullmatch(r"setup-(Debian|RedHat)\.yml", s) for s in setups), setups


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_no_vars_file_repeats_another(role: Path) -> None:
    """An OS file holds only what differs from main.yml, and from its siblings."""
    main_file = role / "vars" / "main.yml"
    main = (yaml.safe_load(main_file.read_text()) or {}) if main_file.is_file() else {}
    files = {f.name: yaml.safe_load(f.read_text()) or {} for f in os_vars_files(role)}
    for name, data in files.items():
        same = sorted(k for k, v in data.items() if k in main and main[k] == v)
        assert same == [], f"{role.name}/vars/{name} repeats main.yml: {same}"
    names = sorted(files)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert files[a] != files[b], f"{role.name}: vars/{a} and vars/{b} hold the same"


def include_roles(role: Path) -> set[tuple[str, str]]:
    calls = set()
    for f in (role / "tasks").glob("*.yml"):
        for task in walk(yaml.safe_load(f.read_text()) or []):
            inc: Any = task.get("ansible.builtin.include_role")
            if inc and inc["name"] != f"dlsetup.box.{role.name}":
                calls.add((inc["name"], inc.get("tasks_from", "main")))
    return calls


def walk(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for t in tasks:
        out.append(t)
        for key in ("block", "rescue", "always"):
            out.extend(walk(t.get(key) or []))
    return out


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_meta_names_every_role_used(role: Path) -> None:
    """Each include_role of another role is an entry point (tasks_from), listed
    in meta/main.yml; a whole role used would be a dependency instead, and a
    role both depended on and included would run twice."""
    text = (role / "meta" / "main.yml").read_text()
    meta = yaml.safe_load(text)
    deps = {d if isinstance(d, str) else d["role"] for d in meta.get("dependencies") or []}
    listed = set(re.findall(r"^#\s+(dlsetup\.box\.\w+) tasks_from: (\w+)", text, re.M))
    calls = include_roles(role)
    assert all(tf != "main" for _, tf in calls), (
        f"{role.name} includes a whole role: make it a dependency"
    )
    assert listed == calls, role.name
    assert not deps & {name for name, _ in calls}, (
        f"{role.name}: a dependency also included runs twice"
    )


def test_the_python3_apt_skip_reason_is_written_once() -> None:
    """Every role that leaves a package step out of a plan on a box without
    python3-apt gives the base stage's one reason (the fact dlsetup_apt_not_ready_reason)."""
    where = [
        str(f.relative_to(content.roles_dir()))
        for f in content.roles_dir().rglob("*.yml")
        if "python3-apt is not installed yet" in f.read_text()
    ]
    assert where == ["dlsetup/tasks/base.yml"]


def _role_tasks() -> list[tuple[str, dict[str, Any]]]:
    """(role task file, task) of every task of every role, blocks walked."""
    return [
        (str(f.relative_to(content.roles_dir())), task)
        for f in sorted(content.roles_dir().glob("*/tasks/*.yml"))
        for task in walk(yaml.safe_load(f.read_text()) or [])
    ]


def _apt_steps() -> list[tuple[str, str, dict[str, Any]]]:
    """(role task file, module, arguments) of every task that takes apt's or
    dpkg's lock through a module: the apt module and the hold module."""
    return [
        (where, module, task[module])
        for where, task in _role_tasks()
        for module in ("ansible.builtin.apt", "dlsetup.box.package_hold")
        if module in task
    ]


def test_every_apt_step_waits_as_long_as_the_run_says() -> None:
    """A fresh box's apt-daily and unattended-upgrades hold apt's locks for
    minutes: every apt module and hold module step in every role waits
    dlsetup_apt_lock_timeout (the base stage hands it on; a role run alone
    keeps the module's own wait). The integration test
    (tests/integration/test_apt_lock.py) holds the locks before three of them."""
    steps = _apt_steps()
    assert len(steps) >= 14, steps  # every role that installs: found, not an empty walk
    wrong = [
        (where, module)
        for where, module, args in steps
        if "dlsetup_apt_lock_timeout" not in str(args.get("lock_timeout", ""))
    ]
    assert wrong == []


def test_every_apt_install_tries_again_while_another_apt_downloads() -> None:
    """apt-get install never waits for the archives' lock, which another apt
    holds alone while it downloads: every apt module step that installs
    packages tries again while its result says so (plugins/test/apt.py), up
    to dlsetup_apt_lock_timeout. The integration test meets the lock before
    the nvme role's install. The toolkit's clean runs apt-get clean itself
    (the apt module's clean drops apt-get's stderr) and tries again the same
    way."""
    installs = [
        (where, task)
        for where, task in _role_tasks()
        if "name" in (task.get("ansible.builtin.apt") or {})
        or task.get("ansible.builtin.command") == {"argv": ["apt-get", "clean"]}
    ]
    assert len(installs) >= 11, installs
    wrong = [
        (where, task.get("name"))
        for where, task in installs
        if task.get("until") != f"{task.get('register')} is not dlsetup.box.apt_archives_busy"
        or "dlsetup_apt_lock_timeout" not in str(task.get("retries", ""))
        or task.get("delay") != 5
    ]
    assert wrong == []


def test_every_apt_command_waits_for_the_lock_too() -> None:
    """apt-get update and apt-mark (dpkg --set-selections) fail at once on a
    taken lock, whatever they are told: where a role runs them itself, it
    tries again up to dlsetup_apt_lock_timeout (an until loop, or the base
    stage's shell loop). apt-get's --download-only into dlsetup's own folders
    takes no lock (Debug::NoLocking)."""
    unguarded, seen = [], 0
    for where, task in _role_tasks():
        for module in ("ansible.builtin.command", "ansible.builtin.shell"):
            args = task.get(module)
            if args is None:
                continue
            text = (
                str(args.get("argv") or args.get("cmd") or args)
                if isinstance(args, dict)
                else str(args)
            )
            if not re.search(r"\bapt-get\b|\bapt-mark\b|--set-selections", text):
                continue
            seen += 1
            guarded = (
                "dlsetup_apt_lock_timeout" in str(task.get("retries", ""))
                or "dlsetup_apt_lock_timeout" in text
                or "Debug::NoLocking" in text
            )
            if not guarded:
                unguarded.append((where, task.get("name")))
    assert seen >= 4  # base's shell, apt_source's update, the prefetch, the driver's unhold
    assert unguarded == []
