"""Where the Ansible content (playbooks, roles, plugins, sample inventory) lives.

In a checkout (or an editable install) it is the repository root; in an
installed wheel it is shipped inside the package as ``dlsetup/_content``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def root() -> Path:
    """Directory that holds ansible.cfg, playbooks/ and roles/."""
    checkout = _PACKAGE_DIR.parent
    if (checkout / "playbooks" / "site.yml").is_file() and (checkout / "ansible.cfg").is_file():
        return checkout
    shipped = _PACKAGE_DIR / "_content"
    if (shipped / "playbooks" / "site.yml").is_file():
        return shipped
    raise RuntimeError(
        f"dlsetup's Ansible content was not found next to {_PACKAGE_DIR}: "
        "reinstall the package (pip install dlsetup)"
    )


def playbook(name: str) -> Path:
    """Absolute path of ``playbooks/<name>``."""
    return root() / "playbooks" / name


def ansible_cfg() -> Path:
    return root() / "ansible.cfg"


def roles_dir() -> Path:
    return root() / "roles"


def sample_inventory() -> Path:
    return root() / "inventory" / "sample"
