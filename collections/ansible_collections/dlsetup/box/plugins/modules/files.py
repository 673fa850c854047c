#!/usr/bin/python
"""Write several small files, and the folders they live in, in one module run.

``ansible.builtin.copy`` and ``template`` cost two to three round trips per
file (a remote stat, then the copy or a file-attribute pass): the nvidia_driver
role's eight small files were about 20 of a first run's module calls, 2 to 5 s
each on a slow host (the VM tier measures it under emulation). This module
takes their rendered contents and does the same work in one process on the
host: create the folders, compare each file's bytes, write only the ones that
differ (temporary file in the same folder, fsync, rename), and set owner,
group and mode where they differ. Check mode changes nothing and says what
would change; diff mode shows each changed file.

Meant for small text files whose content the task renders (``content``, or
``lookup('template', ...)`` / ``lookup('file', ...)``); large or binary files
stay with ``ansible.builtin.copy``.
"""

from __future__ import annotations

import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dlsetup.box.plugins.module_utils.atomic import (
    ensure_dir,
    read_bytes,
    write_atomic,
)

DOCUMENTATION = r"""
module: files
short_description: Write several small files and their folders in one module run
description:
  - Creates each folder of O(dirs) that is missing and sets owner, group and mode where they
    differ.
  - Writes each file of O(files) whose bytes differ from O(files[].content), atomically
    (temporary file in the same folder, fsync, rename), and sets owner, group and mode where
    they differ. A file with the same bytes is not rewritten.
  - Supports check mode (nothing is written) and diff mode (one diff per changed file).
options:
  dirs:
    description: Folders to create first (parents included), in order.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: The folder., type: path, required: true}
      mode: {description: Its mode (octal string)., type: str, default: "0755"}
      owner: {description: Its owner., type: str, default: root}
      group: {description: Its group., type: str, default: root}
  files:
    description: The files to write.
    type: list
    elements: dict
    default: []
    suboptions:
      dest: {description: The file., type: path, required: true}
      content: {description: Its whole content (text)., type: str, required: true}
      mode: {description: Its mode (octal string)., type: str, default: "0644"}
      owner: {description: Its owner., type: str, default: root}
      group: {description: Its group., type: str, default: root}
author: dlsetup
"""

EXAMPLES = r"""
- name: Make DKMS sign every module it builds with the key
  dlsetup.box.files:
    dirs:
      - {path: /var/lib/dlsetup/mok, mode: "0700"}
    files:
      - dest: /etc/dkms/framework.conf.d/dlsetup-mok.conf
        content: |
          mok_signing_key="/var/lib/dlsetup/mok/dlsetup-mok.priv"
"""

RETURN = r"""
changed_paths:
  description: the folders created and the files written, or whose owner, group or mode changed
  type: list
  elements: str
  returned: always
"""


def _attrs(module: AnsibleModule, path: str, item: dict[str, Any]) -> dict[str, Any]:
    return module.load_file_common_arguments(
        {"path": path, "mode": item["mode"], "owner": item["owner"], "group": item["group"]}
    )


def _dirs(module: AnsibleModule, changed_paths: list[str]) -> None:
    for d in module.params["dirs"]:
        if ensure_dir(module, d["path"], d["mode"], d["owner"], d["group"]):
            changed_paths.append(d["path"])


def _files(module: AnsibleModule, changed_paths: list[str], diffs: list[dict[str, str]]) -> None:
    for f in module.params["files"]:
        dest = f["dest"]
        new = f["content"].encode("utf-8")
        old = read_bytes(dest)
        if old != new:
            changed_paths.append(dest)
            if module._diff:
                before = "" if old is None else old.decode("utf-8", "replace")
                diffs.append(
                    {
                        "before_header": dest,
                        "after_header": dest,
                        "before": before,
                        "after": f["content"],
                    }
                )
            if module.check_mode:
                continue
            if not os.path.isdir(os.path.dirname(dest)):
                module.fail_json(msg=f"{dest}: the folder {os.path.dirname(dest)} does not exist")
            write_atomic(dest, new, int(f["mode"], 8))
        attrs_changed = module.set_fs_attributes_if_different(_attrs(module, dest, f), False)
        if attrs_changed and dest not in changed_paths:
            changed_paths.append(dest)


def run(module: AnsibleModule) -> dict[str, Any]:
    changed_paths: list[str] = []
    diffs: list[dict[str, str]] = []
    _dirs(module, changed_paths)
    _files(module, changed_paths, diffs)
    result: dict[str, Any] = {"changed": bool(changed_paths), "changed_paths": changed_paths}
    if diffs:
        result["diff"] = diffs
    return result


def main() -> None:
    owner_spec = {
        "mode": {"type": "str"},
        "owner": {"type": "str", "default": "root"},
        "group": {"type": "str", "default": "root"},
    }
    module = AnsibleModule(
        argument_spec={
            "dirs": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "path": {"type": "path", "required": True},
                    **owner_spec,
                    "mode": {"type": "str", "default": "0755"},
                },
            },
            "files": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "dest": {"type": "path", "required": True},
                    "content": {"type": "str", "required": True},
                    **owner_spec,
                    "mode": {"type": "str", "default": "0644"},
                },
            },
        },
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
