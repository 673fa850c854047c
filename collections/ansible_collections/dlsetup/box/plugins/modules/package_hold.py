#!/usr/bin/python
"""Hold the installed packages whose names match, at their versions, in one module run.

Three locks, so that neither dlsetup, nor ``apt upgrade``, nor
unattended-upgrades can split a stack whose parts must match (the NVIDIA
kernel module and its userspace): a dpkg hold, an apt pin on the installed
version (priority 1001), and an unattended-upgrades blacklist entry.

The role did this in three or four tasks (list the packages, ``apt-mark
hold``, write the two files, and in the cuda stage a ``stat`` first): each a
module run of 0.25-0.3 s on the box, ``apt-mark`` over a second as it loads
apt's cache (docs/benchmarks/task-cost-2026-12-06.md). One process does it
all here: one ``dpkg-query``, one ``dpkg --set-selections`` for the packages
not held yet (what ``apt-mark hold`` runs), the two files written only where
their bytes differ. Check mode changes nothing and says what would change.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dlsetup.box.plugins.module_utils.atomic import read_bytes, write_atomic

DOCUMENTATION = r"""
module: package_hold
short_description: Hold, pin and blacklist the installed packages whose names match
description:
  - Lists the installed packages (dpkg), keeps those whose name matches O(match) from its
    start (Python C(re.match), as Jinja's C(match) test), and holds those not held yet with
    one C(dpkg --set-selections) (what C(apt-mark hold) does).
  - Writes O(pin_file), an apt preferences file pinning each at its installed version with
    priority 1001, and O(blacklist_file), an unattended-upgrades package blacklist, each only
    where its bytes differ. With no matching package installed, neither file is touched.
  - Supports check mode (nothing is held or written) and diff mode (one diff per file).
options:
  match:
    description: The regular expression a package's name must match from its start.
    type: str
    required: true
  pin_file:
    description: The apt preferences file to write.
    type: path
    required: true
  blacklist_file:
    description: The apt.conf file with the unattended-upgrades blacklist to write.
    type: path
    required: true
  comment:
    description: Lines written at the top of both files (without comment marks).
    type: list
    elements: str
    default: []
  only_where_pinned:
    description: Do nothing unless O(pin_file) exists already (a later stage keeping the
      hold of an earlier one up to date, where the user has one).
    type: bool
    default: false
  lock_timeout:
    description: Seconds to wait for dpkg's lock while another apt or dpkg holds it (a fresh
      box's unattended-upgrades), trying again every 2 s, as C(ansible.builtin.apt) waits
      (whose default this is). C(dpkg --set-selections) itself fails at once on a taken lock.
    type: int
    default: 60
author: dlsetup
"""

EXAMPLES = r"""
- name: Hold the driver stack
  dlsetup.box.package_hold:
    match: "^(nvidia-driver|libcuda1)$"
    pin_file: /etc/apt/preferences.d/dlsetup-nvidia-driver
    blacklist_file: /etc/apt/apt.conf.d/51dlsetup-nvidia-driver-unattended
    comment: [Managed by dlsetup (nvidia_driver)]
"""

RETURN = r"""
stack:
  description: the installed packages that match, in dpkg's order
  type: list
  elements: dict
  returned: always
  contains:
    name: {description: the package (with ":arch" for a foreign architecture), type: str}
    version: {description: the installed version, type: str}
held_now:
  description: the packages this run held (were not held before)
  type: list
  elements: str
  returned: always
changed_paths:
  description: the files written
  type: list
  elements: str
  returned: always
skipped_reason:
  description: why nothing was done (only_where_pinned and no pin file)
  type: str
  returned: when nothing was done
"""


def parse_dpkg(out: str, match: re.Pattern[str]) -> list[dict[str, Any]]:
    """dpkg-query lines "<status abbrev>|<binary:Package>|<Version>": the
    installed packages (desired install or hold, state installed) whose name
    (without ":arch") matches."""
    stack = []
    for line in out.splitlines():
        status, _, rest = line.partition("|")
        name, _, version = rest.partition("|")
        if len(status) < 2 or status[0] not in "hi" or status[1] != "i":
            continue
        package = name.split(":", 1)[0]
        if not match.match(package):
            continue
        stack.append(
            {"name": name, "package": package, "version": version, "held": status[0] == "h"}
        )
    return stack


def pins(stack: list[dict[str, Any]], comment: list[str]) -> str:
    lines = [f"# {c}" if c else "#" for c in comment]
    seen = set()
    for p in stack:
        if p["package"] in seen:  # a pin names the package, every architecture
            continue
        seen.add(p["package"])
        lines += [
            "",
            f"Package: {p['package']}",
            f"Pin: version {p['version']}",
            "Pin-Priority: 1001",
        ]
    return "\n".join(lines) + "\n"


def blacklist(stack: list[dict[str, Any]], comment: list[str]) -> str:
    names = list(dict.fromkeys(p["package"] for p in stack))
    lines = [f"// {c}" if c else "//" for c in comment]
    lines.append("Unattended-Upgrade::Package-Blacklist {")
    lines += [f'    "^{re.escape(n)}$";' for n in names]
    lines.append("};")
    return "\n".join(lines) + "\n"


def _write(module: AnsibleModule, path: str, text: str) -> None:
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        module.fail_json(msg=f"{path}: the folder {folder} does not exist")
    write_atomic(path, text.encode("utf-8"), 0o644)


# What dpkg says when another process holds its lock (LC_ALL=C): "dpkg
# frontend lock was locked by another process with pid N" (or "database
# lock"; dpkg 1.20 and newer), "dpkg frontend is locked by another process"
# (1.19, Ubuntu 20.04).
_LOCKED = re.compile(r"locked by another process")


def set_selections(module: AnsibleModule, selections: str, result: dict[str, Any]) -> None:
    """dpkg --set-selections, tried again every 2 s while another process
    holds dpkg's lock, until lock_timeout."""
    dpkg = module.get_bin_path("dpkg", required=True)
    # dpkg reads the selections from a file, not a pipe: on a taken lock it
    # exits before it reads, and writing into its closed pipe fails the
    # module (EPIPE) instead of telling the lock.
    path = os.path.join(module.tmpdir, "selections")
    with open(path, "w", encoding="utf-8") as f:
        f.write(selections)
    deadline = time.monotonic() + module.params["lock_timeout"]
    while True:
        rc, _, err = module.run_command(
            ["/bin/sh", "-c", 'exec "$0" --set-selections < "$1"', dpkg, path],
            environ_update={"LC_ALL": "C"},
        )
        if rc == 0:
            return
        if _LOCKED.search(err) and time.monotonic() < deadline:
            time.sleep(2)
            continue
        waited = (
            f" (waited lock_timeout, {module.params['lock_timeout']} s, for the lock)"
            if _LOCKED.search(err)
            else ""
        )
        module.fail_json(
            msg=f"dpkg --set-selections failed ({rc}){waited}: {err.strip()}", **result
        )


def run(module: AnsibleModule) -> dict[str, Any]:
    p = module.params
    result: dict[str, Any] = {"changed": False, "stack": [], "held_now": [], "changed_paths": []}
    if p["only_where_pinned"] and not os.path.exists(p["pin_file"]):
        result["skipped_reason"] = f"{p['pin_file']} does not exist: nothing is held here"
        return result
    try:
        match = re.compile(p["match"])
    except re.error as e:
        module.fail_json(msg=f"match: not a regular expression ({e}): {p['match']}")
    query = module.get_bin_path("dpkg-query", required=True)
    rc, out, err = module.run_command(
        [query, "-W", "-f", "${db:Status-Abbrev}|${binary:Package}|${Version}\n"]
    )
    if rc != 0:
        module.fail_json(msg=f"dpkg-query failed ({rc}): {err.strip()}")
    stack = parse_dpkg(out, match)
    result["stack"] = [{"name": s["name"], "version": s["version"]} for s in stack]
    if not stack:
        return result

    to_hold = [s["name"] for s in stack if not s["held"]]
    if to_hold and not module.check_mode:
        set_selections(module, "".join(f"{n} hold\n" for n in to_hold), result)
    result["held_now"] = to_hold

    diffs = []
    for path, text in (
        (p["pin_file"], pins(stack, p["comment"])),
        (p["blacklist_file"], blacklist(stack, p["comment"])),
    ):
        old = read_bytes(path)
        if old == text.encode("utf-8"):
            continue
        result["changed_paths"].append(path)
        before = "" if old is None else old.decode("utf-8", "replace")
        diffs.append({"before_header": path, "after_header": path, "before": before, "after": text})
        if not module.check_mode:
            _write(module, path, text)
    result["changed"] = bool(to_hold or result["changed_paths"])
    if module._diff and diffs:
        result["diff"] = diffs
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "match": {"type": "str", "required": True},
            "pin_file": {"type": "path", "required": True},
            "blacklist_file": {"type": "path", "required": True},
            "comment": {"type": "list", "elements": "str", "default": []},
            "only_where_pinned": {"type": "bool", "default": False},
            "lock_timeout": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
