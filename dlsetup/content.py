"""Where the Ansible content lives: the collection dlsetup.box, ansible.cfg and
the sample inventory.

In a checkout (or an editable install) the collection is
``collections/ansible_collections/dlsetup/box`` and ansible.cfg is at the
repository root. An installed wheel puts the collection in site-packages
(``ansible_collections/dlsetup/box``, where Ansible finds it by itself) and
ships ansible.cfg and the sample inventory as ``dlsetup/_content``.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
COLLECTION = "dlsetup.box"
_COLLECTION_PARTS = ("ansible_collections", "dlsetup", "box")


@cache
def root() -> Path:
    """Directory that holds ansible.cfg and inventory/sample."""
    checkout = _PACKAGE_DIR.parent
    if (checkout / "ansible.cfg").is_file() and (checkout / "collections").is_dir():
        return checkout
    shipped = _PACKAGE_DIR / "_content"
    if (shipped / "ansible.cfg").is_file():
        return shipped
    raise RuntimeError(
        f"dlsetup's Ansible configuration was not found next to {_PACKAGE_DIR}: "
        "reinstall the package (pip install dlsetup)"
    )


@cache
def collection_dir() -> Path:
    """The collection dlsetup.box: the checkout's, else the installed one."""
    checkout = _PACKAGE_DIR.parent / "collections" / Path(*_COLLECTION_PARTS)
    if (checkout / "galaxy.yml").is_file():
        return checkout
    spec = importlib.util.find_spec(".".join(_COLLECTION_PARTS))
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "playbooks" / "site.yml").is_file():
            return Path(location)
    raise RuntimeError(
        f"the Ansible collection {COLLECTION} was not found (checkout or site-packages): "
        "reinstall the package (pip install dlsetup)"
    )


def collections_path() -> Path:
    """The folder that holds ``ansible_collections/`` with dlsetup.box in it."""
    return collection_dir().parents[2]


def playbook(name: str) -> Path:
    """Absolute path of the collection's ``playbooks/<name>``."""
    return collection_dir() / "playbooks" / name


def ansible_cfg() -> Path:
    return root() / "ansible.cfg"


def roles_dir() -> Path:
    return collection_dir() / "roles"


def sample_inventory() -> Path:
    return root() / "inventory" / "sample"
