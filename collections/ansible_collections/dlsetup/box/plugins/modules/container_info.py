#!/usr/bin/python
# Copyright: dlsetup contributors
# Apache-2.0
"""Whether the host is a container, for roles that decide on it in their tasks.

The answer is module_utils/container.py's, the same one nvidia_driver_state
gives; this file is only its Ansible interface.
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dlsetup.box.plugins.module_utils.container import (
    DETECT_VIRT,
    container_kind,
)

DOCUMENTATION = r"""
---
module: container_info
short_description: Whether the host is a container, and which kind
description:
  - Asks C(systemd-detect-virt --container) where it is installed, then the files Docker and
    Podman leave in the root (C(/.dockerenv), C(/run/.containerenv)) and PID 1's C(container=)
    variable.
  - A container boots no kernel of its own, cannot reboot its host and runs no udevd; roles
    skip those steps there and say why.
  - Changes nothing; always returns C(changed=false).
options:
  sysroot:
    description: Prefix for every path read (tests point it at a recorded tree; then
      C(systemd-detect-virt) is not asked).
    type: str
    default: ""
author:
  - dlsetup contributors
"""

EXAMPLES = r"""
- name: Ask whether the host is a container
  dlsetup.box.container_info:
  register: container
"""

RETURN = r"""
container:
  description: The host is a container.
  returned: always
  type: bool
  sample: true
kind:
  description: Which kind (docker, podman, lxc, systemd-nspawn ...); empty when not a container.
  returned: always
  type: str
  sample: docker
"""


def main():
    module = AnsibleModule(
        argument_spec={"sysroot": {"type": "str", "default": ""}},
        supports_check_mode=True,
    )
    sysroot = module.params["sysroot"]
    detect_virt = None
    tool = None if sysroot else module.get_bin_path(DETECT_VIRT[0])
    if tool:
        _rc, detect_virt, _err = module.run_command([tool, *DETECT_VIRT[1:]])
    kind = container_kind(sysroot, detect_virt)
    module.exit_json(changed=False, container=bool(kind), kind=kind)


if __name__ == "__main__":
    main()
