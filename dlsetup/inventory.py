"""Which inventory to use and which hosts a pattern means.

Lookup order: ``-i`` (repeatable), else ``./inventory/`` when it holds an
inventory, else ``$XDG_CONFIG_HOME/dlsetup/inventory``. Without ``-i`` the
demo box's inventory (written by ``dlsetup demo``) is added when it exists, so
``--host demo`` works from anywhere. A host name that is in no inventory is taken
as an address to reach over SSH (``user@address`` sets the SSH user).
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dlsetup import content

_INVENTORY_FILES = ("hosts.yml", "hosts.yaml", "hosts.ini", "hosts", "inventory.yml")
_ADDRESS = re.compile(
    r"^(?:(?P<user>[a-z_][a-z0-9_.-]*)@)?(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*|\[?[0-9a-fA-F:]+\]?)$"
)


class InventoryError(ValueError):
    """Bad inventory or host pattern (exit code 2)."""


def add_inventory_argument(p: argparse.ArgumentParser) -> None:
    """-i/--inventory, as every command that reads an inventory takes it."""
    p.add_argument(
        "-i",
        "--inventory",
        action="append",
        metavar="INVENTORY",
        help="inventory file or folder (repeatable); default ./inventory/, "
        "then $XDG_CONFIG_HOME/dlsetup/inventory",
    )


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "dlsetup"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dlsetup"


def demo_inventory_path() -> Path:
    return state_dir() / "demo" / "inventory.yml"


def _holds_inventory(d: Path) -> bool:
    return d.is_dir() and any((d / f).is_file() for f in _INVENTORY_FILES)


def resolve_sources(explicit: list[str] | None, cwd: Path | None = None) -> list[str]:
    """Inventory sources for a run, in the documented lookup order."""
    sources: list[str] = []
    if explicit:
        for src in explicit:
            p = Path(src).expanduser()
            if not p.exists():
                raise InventoryError(
                    f"inventory '{src}' does not exist (-i expects a file or folder)"
                )
            sources.append(str(p.resolve()))
    else:
        local = (cwd or Path.cwd()) / "inventory"
        user = config_dir() / "inventory"
        for candidate in (local, user):
            if _holds_inventory(candidate):
                sources.append(str(candidate.resolve()))
                break
        # The demo box joins the automatic lookup only: an explicit -i means
        # exactly those inventories (`--host all` must not reach the demo box).
        demo = demo_inventory_path()
        if demo.is_file():
            sources.append(str(demo))
    return sources


@dataclass
class Target:
    """The resolved target of a run."""

    sources: list[str]
    limit: str
    hosts: list[str]
    adhoc: bool = False


def strict_inventory(sources: list[str], loader: Any = None) -> Any:
    """An ``InventoryManager`` over ``sources`` that raises on any source it cannot parse.

    Ansible reads its settings once, when ``ansible.constants`` is first
    imported; an environment variable set later (another command or test in
    the same process got there first) is ignored, and a broken inventory
    becomes a warning and an empty host list. So the two switches are set on
    the constants themselves as well.
    """
    os.environ.setdefault("ANSIBLE_CONFIG", str(content.ansible_cfg()))
    os.environ["ANSIBLE_INVENTORY_UNPARSED_FAILED"] = "True"
    os.environ["ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED"] = "True"
    from ansible import constants  # noqa: PLC0415  (heavy import, only when needed)
    from ansible.inventory.manager import InventoryManager  # noqa: PLC0415
    from ansible.parsing.dataloader import DataLoader  # noqa: PLC0415

    constants.INVENTORY_UNPARSED_IS_FAILED = True
    constants.INVENTORY_ANY_UNPARSED_IS_FAILED = True
    return InventoryManager(loader=loader or DataLoader(), sources=sources)


def _load_hosts(sources: list[str], pattern: str) -> list[str]:
    from ansible.errors import AnsibleError  # noqa: PLC0415  (heavy import, only when needed)

    if not sources:
        return []
    try:
        inv = strict_inventory(sources)
        return [h.name for h in inv.get_hosts(pattern)]
    except AnsibleError as exc:
        raise InventoryError(f"inventory could not be read: {exc.message}") from exc


def resolve_target(
    pattern: str, explicit: list[str] | None, workdir: Path, cwd: Path | None = None
) -> Target:
    """Resolve ``--host PATTERN``; writes an ad-hoc inventory into ``workdir`` if needed."""
    if not pattern or pattern.strip() != pattern:
        raise InventoryError(
            "--host: expected a host, a group or an Ansible pattern, got an empty value"
        )
    sources = resolve_sources(explicit, cwd)
    hosts = _load_hosts(sources, pattern)
    if hosts:
        return Target(sources, pattern, hosts)
    m = _ADDRESS.match(pattern)
    if not m:
        where = ", ".join(sources) if sources else "no inventory found (-i, ./inventory/, "
        where += "" if sources else f"{config_dir() / 'inventory'})"
        raise InventoryError(f"--host '{pattern}' matches no host in {where}")
    host, user = m.group("host").strip("[]"), m.group("user")
    hostvars: dict[str, str] = {"ansible_host": host}
    if user:
        hostvars["ansible_user"] = user
    adhoc = workdir / "adhoc-inventory.yml"
    adhoc.write_text(yaml.safe_dump({"all": {"hosts": {host: hostvars}}}))
    return Target([*sources, str(adhoc)], host, [host], adhoc=True)


def parse_extravars(values: list[str] | None) -> dict[str, object]:
    """``-e KEY=VAL`` (string), ``-e @file.yml`` or ``-e '{"k": 1}'``, as ansible-playbook."""
    out: dict[str, object] = {}
    for raw in values or []:
        if raw.startswith("@"):
            path = Path(raw[1:]).expanduser()
            if not path.is_file():
                raise InventoryError(f"-e {raw}: file '{path}' does not exist")
            data = yaml.safe_load(path.read_text())
            if not isinstance(data, dict):
                raise InventoryError(f"-e {raw}: expected a YAML/JSON mapping of variables")
            out.update(data)
        elif raw.lstrip().startswith("{"):
            data = yaml.safe_load(raw)
            if not isinstance(data, dict):
                raise InventoryError(f"-e {raw}: expected a mapping")
            out.update(data)
        elif "=" in raw:
            for part in raw.split():
                key, sep, val = part.partition("=")
                if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                    raise InventoryError(f"-e {raw}: expected KEY=VALUE with KEY a variable name")
                out[key] = val
        else:
            raise InventoryError(f"-e {raw}: expected KEY=VALUE, @FILE or a JSON/YAML mapping")
    return out
