#!/usr/bin/python
# Copyright: dlsetup contributors
# Apache-2.0
"""Merge keys into /etc/docker/daemon.json, keeping every key it does not name.

Docker's daemon.json is shared: the user, nvidia-ctk, a registry mirror tool
and dlsetup all write to it. Overwriting it from a template (what other
provisioning tools do) silently drops everyone else's settings. This module
only sets the top-level keys it is given and removes the ones it is told to;
everything else stays, in the order it was in.

The file is written only when its parsed content changes (a reformatted but
equal file is left alone), and then atomically: a temporary file in the same
directory, fsync, rename over the old one, fsync of the directory. An
interrupted run leaves either the old file or the new one, never half of one.
A daemon.json that is not valid JSON is never touched: the module fails and
says where the error is.

``merge()`` and ``write_atomic()`` are plain functions, unit-tested in
tests/unit/test_docker_daemon_json.py.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dlsetup.box.plugins.module_utils import atomic

DOCUMENTATION = r"""
---
module: docker_daemon_json
short_description: Merge keys into Docker's daemon.json without dropping anyone else's
description:
  - Sets the top-level keys in O(set) and removes those in O(remove); every other key of
    the file stays as it is, in its order.
  - Writes only when the parsed content changes, atomically (temporary file, fsync, rename).
  - Fails, leaving the file untouched, when the file is not valid JSON or not a JSON object.
  - Supports check mode and diff mode.
options:
  path:
    description: The daemon configuration file.
    type: path
    default: /etc/docker/daemon.json
  set:
    description: Top-level keys to set, with their values (a value replaces the key's whole value).
    type: dict
    default: {}
  remove:
    description: Top-level keys to remove when present.
    type: list
    elements: str
    default: []
  mode:
    description: Permissions of a file the module creates (an existing file keeps its own).
    type: raw
    default: "0644"
author:
  - dlsetup contributors
"""

EXAMPLES = r"""
- name: Put Docker's images on the scratch disk, keep whatever else is configured
  docker_daemon_json:
    set:
      data-root: /scratch/docker
    remove: [default-runtime]
"""

RETURN = r"""
config:
  description: The configuration after the merge (what the file holds, or would hold in check mode).
  returned: always
  type: dict
set_keys:
  description: Keys whose value was added or changed.
  returned: always
  type: list
  elements: str
removed_keys:
  description: Keys that were removed.
  returned: always
  type: list
  elements: str
"""


class DaemonJsonError(ValueError):
    """daemon.json cannot be merged (not JSON, or not a JSON object)."""


def parse(text: str, path: str = "daemon.json") -> dict[str, Any]:
    """The file's object; an empty file counts as {} (dockerd reads it so too)."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DaemonJsonError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DaemonJsonError(
            f"{path} holds a JSON {type(data).__name__}, not an object; dockerd cannot read it"
        )
    return data


def merge(
    current: dict[str, Any], set_keys: dict[str, Any], remove: list[str]
) -> tuple[dict[str, Any], list[str], list[str]]:
    """(new config, keys set or changed, keys removed); ``current`` is not modified.

    A key both set and removed is an error of the caller.
    """
    both = sorted(set(set_keys) & set(remove))
    if both:
        raise DaemonJsonError(f"keys both set and removed: {', '.join(both)}")
    new = dict(current)
    changed = []
    for key, value in set_keys.items():
        if key not in new or new[key] != value:
            changed.append(key)
        new[key] = value
    removed = [key for key in remove if key in new]
    for key in removed:
        del new[key]
    return new, changed, removed


def render(config: dict[str, Any]) -> str:
    """The text written: 4-space indent, as dockerd's docs and nvidia-ctk write it."""
    return json.dumps(config, indent=4) + "\n"


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` so that a crash leaves the old or the new file
    (module_utils.atomic). An existing file keeps its permissions and owner."""
    atomic.write_atomic(path, text.encode("utf-8"), mode, keep_existing=True)


def _mode(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(str(value), 8)


def run_module() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/etc/docker/daemon.json"},
            "set": {"type": "dict", "default": {}},
            "remove": {"type": "list", "elements": "str", "default": []},
            "mode": {"type": "raw", "default": "0644"},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    exists = os.path.exists(path)
    before_text = ""
    if exists:
        try:
            with open(path, encoding="utf-8") as fh:
                before_text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            module.fail_json(msg=f"cannot read {path}: {exc}; it was left as it is")
    try:
        current = parse(before_text, path)
        new, set_keys, removed = merge(current, module.params["set"], module.params["remove"])
    except DaemonJsonError as exc:
        module.fail_json(
            msg=f"{exc}. dlsetup merges its keys into this file and never overwrites it, "
            "so it was left untouched: fix it (or move it away) and run again.",
            path=path,
        )
    changed = bool(set_keys or removed) or (not exists and bool(new))
    result: dict[str, Any] = {
        "changed": changed,
        "path": path,
        "config": new,
        "set_keys": set_keys,
        "removed_keys": removed,
    }
    if changed and module._diff:
        result["diff"] = {
            "before_header": path if exists else f"{path} (absent)",
            "after_header": path,
            "before": render(current) if exists else "",
            "after": render(new),
        }
    if changed and not module.check_mode:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o755, exist_ok=True)
            write_atomic(path, render(new), _mode(module.params["mode"]))
        except OSError as exc:
            module.fail_json(msg=f"cannot write {path}: {exc}; the old file is unchanged", **result)
    module.exit_json(**result)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
