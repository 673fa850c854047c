#!/usr/bin/python
# Copyright: dlsetup contributors
# Apache-2.0
"""One read of everything a converged box's stages depend on, in one round trip.

The no-op path of a re-provision (issue 16): the stage_digest action plugin
sends the list of what to read (roles/dlsetup/vars/main.yml,
``__dlsetup_converged_state``), this module returns a digest of each item and
the record the last converged run left on the box, or writes a new record.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import stat
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dlsetup.box.plugins.module_utils.atomic import write_atomic

DOCUMENTATION = r"""
---
module: converged_state
short_description: Digest of the files, units and commands a converged box depends on
description:
  - Reads each listed path (a glob). A file counts by its content, owner and mode, a symbolic
    link by its target (never followed), a directory by the names, types, sizes, modes and link
    targets of everything under it (the contents of files under a directory are not read; list
    a file by itself to compare its content).
  - Reads each listed path of O(names) by existence only, the running kernel's release and, with
    O(mounts), the mounts of block devices (C(/dev/...), what the disks stage mounts), not the
    overlay and namespace mounts a container engine makes and removes as it runs.
  - Asks systemd once for the listed units' C(ActiveState) and C(UnitFileState), and runs each
    listed command (argv; a missing program counts as its own answer).
  - Returns one digest per item and one for them all, and the record at O(record_path).
  - With O(record), writes it to O(record_path) (0600, atomically) with the digests read now.
  - Only writes the record; never changes anything else.
options:
  paths:
    description: Globs read by content (files) or by listing (directories).
    type: list
    elements: str
    default: []
  names:
    description: Globs recorded by existence only (C(/sys/module/nouveau)).
    type: list
    elements: str
    default: []
  mounts:
    description: Count the mounts of block devices (source, mount point, type, options).
    type: bool
    default: false
  units:
    description: systemd units whose active and enablement state count.
    type: list
    elements: str
    default: []
  commands:
    description: Commands (argv lists) whose exit code and output count.
    type: list
    elements: list
    default: []
  record_path:
    description: Where the last converged run's record lives.
    type: path
    required: true
  record:
    description: When given, written to O(record_path) with C(state) and C(items) set to what was
      read now.
    type: dict
author:
  - dlsetup contributors
"""

EXAMPLES = r"""
- name: Read the converged state
  dlsetup.box.converged_state:
    paths: [/var/lib/dpkg/status, /etc/docker]
    units: [docker.service]
    record_path: /var/lib/dlsetup/converged.json
  register: state
"""

RETURN = r"""
state:
  description: Digest of every item together.
  returned: always
  type: str
items:
  description: Item (path, C(unit:NAME), C(cmd:ARGV), C(kernel)) to its digest.
  returned: always
  type: dict
record:
  description: The record found at O(record_path) before this call; null when none or unreadable.
  returned: always
  type: dict
"""

# Directories can be large (/var/lib/dkms): names only, and never more than
# this many entries; past it the listing counts as its size alone.
MAX_ENTRIES = 20000


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry(path: str, st: os.stat_result) -> str:
    kind = stat.S_IFMT(st.st_mode)
    line = f"{kind:o} {stat.S_IMODE(st.st_mode):o} {st.st_uid} {st.st_gid}"
    if stat.S_ISLNK(st.st_mode):
        return f"{line} -> {os.readlink(path)}"
    if stat.S_ISREG(st.st_mode):
        return f"{line} {st.st_size}"
    return line


def _file_digest(path: str, st: os.stat_result) -> str:
    h = hashlib.sha256(_entry(path, st).encode())
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:  # /sys files that refuse a read, a socket
        h.update(f"unreadable {e.errno}".encode())
    return h.hexdigest()


def _dir_digest(path: str, skip: str = "") -> str:
    lines = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(root, name)
            if full == skip or name.startswith(".converged."):
                continue
            try:
                lines.append(f"{os.path.relpath(full, path)} {_entry(full, os.lstat(full))}")
            except OSError:
                lines.append(f"{os.path.relpath(full, path)} vanished")
        if len(lines) > MAX_ENTRIES:
            return _sha(f"over {MAX_ENTRIES} entries".encode())
    return _sha("\n".join(lines).encode())


def path_digest(path: str, skip: str = "") -> str:
    """A file by content, a link by target, a directory by listing; '-' if absent."""
    try:
        st = os.lstat(path)
    except OSError:
        return "-"
    if path == skip:
        return "-"
    if stat.S_ISDIR(st.st_mode):
        return _dir_digest(path, skip)
    if stat.S_ISREG(st.st_mode):
        return _file_digest(path, st)
    return _sha(_entry(path, st).encode())


def _expand(pattern: str) -> list[str]:
    return sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]


def read_items(params: dict, run=subprocess.run) -> dict[str, str]:
    """Item name -> digest, for everything the parameters list."""
    skip = params["record_path"]
    items: dict[str, str] = {"kernel": os.uname().release}
    for pattern in params.get("paths") or []:
        found = [p for p in _expand(pattern) if p != skip]
        for path in found:
            items[path] = path_digest(path, skip)
        if not found:
            items[pattern] = "-"
    for pattern in params.get("names") or []:
        items[f"exists:{pattern}"] = " ".join(p for p in _expand(pattern) if os.path.lexists(p))
    if params.get("mounts"):
        items["mounts"] = block_mounts()
    units = params.get("units") or []
    if units:
        items["units"] = _run_digest(
            run, ["systemctl", "show", "--property=Id,ActiveState,UnitFileState", *units]
        )
    for argv in params.get("commands") or []:
        items["cmd:" + " ".join(argv)] = _run_digest(run, [str(a) for a in argv])
    return items


def block_mounts(path: str = "/proc/self/mounts") -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.split()[:4] for line in f]
    except OSError as e:
        return f"unreadable {e.errno}"
    return _sha(json.dumps(sorted(f for f in lines if f and f[0].startswith("/dev/"))).encode())


def _run_digest(run, argv: list[str]) -> str:
    try:
        done = run(argv, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"not run: {type(e).__name__}"
    return _sha(b"%d\n" % done.returncode + done.stdout + done.stderr)


def total(items: dict[str, str]) -> str:
    return _sha(json.dumps(items, sort_keys=True).encode())


def load_record(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_record(path: str, record: dict) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o755, exist_ok=True)
    text = json.dumps(record, indent=1, sort_keys=True) + "\n"
    write_atomic(path, text.encode("utf-8"), 0o600)


def main():
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "str", "default": []},
            "names": {"type": "list", "elements": "str", "default": []},
            "mounts": {"type": "bool", "default": False},
            "units": {"type": "list", "elements": "str", "default": []},
            "commands": {"type": "list", "elements": "list", "default": []},
            "record_path": {"type": "path", "required": True},
            "record": {"type": "dict"},
        },
        supports_check_mode=True,
    )
    params = module.params
    items = read_items(params)
    found = load_record(params["record_path"])
    changed = False
    if params["record"] is not None:
        new = dict(params["record"], state=total(items), items=items)
        # The time is when the box was first found converged this way: a
        # record that says the same again is left as it is.
        changed = {**new, "time": None} != {**(found or {}), "time": None}
        if changed and not module.check_mode:
            write_record(params["record_path"], new)
    module.exit_json(changed=changed, state=total(items), items=items, record=found)


if __name__ == "__main__":
    main()
