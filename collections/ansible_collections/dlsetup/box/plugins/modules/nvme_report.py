#!/usr/bin/python
# Copyright: dlsetup contributors
# Apache-2.0
"""Report every NVMe controller: identity, firmware slots, health, PCIe link.

Reads sysfs (/sys/class/nvme/nvmeX and the PCI device behind it) and, when
nvme-cli is installed, ``nvme list -o json``, ``nvme smart-log DEV -o json``,
``nvme fw-log DEV -o json`` and ``nvme id-ctrl DEV -o json``. Changes nothing
but, where asked (``fact_path``), the local fact it writes of that report.

The parsing and judgement are the collection's module_utils/nvme.py (pure
functions of the recorded text and of a sysfs tree, which
tests/unit/test_nvme_parse.py feeds recorded outputs); this file is its Ansible
interface. Runs on the target with the Python standard library (3.8+) and
Ansible's module_utils only.
"""

from __future__ import annotations

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dlsetup.box.plugins.module_utils.atomic import (
    ensure_dir,
    read_bytes,
    write_atomic,
)
from ansible_collections.dlsetup.box.plugins.module_utils.nvme import (
    build_report,
    fact_document,
    firmware_plan,
)

DOCUMENTATION = r"""
---
module: nvme_report
short_description: Report NVMe controllers (identity, firmware slots, SMART health, PCIe link)
description:
  - Lists the controllers under C(/sys/class/nvme) and reads model, serial, firmware revision
    and PCI address from sysfs, the PCIe link in use and the most the drive can do from the PCI
    device (C(current_link_speed), C(max_link_speed), C(current_link_width), C(max_link_width))
    and what the slot it sits in can do (the upstream port).
  - With nvme-cli installed it adds the SMART/health log (critical warning, temperature, spare,
    percentage used, media errors) and the firmware slot log.
  - Warns about a link that runs narrower or slower than drive and slot allow, naming the slot,
    and decodes the critical warning bits.
  - With O(firmware) it also plans a firmware update (whether it is needed and the commands).
  - With O(fact_path) it writes the report's fact document there as JSON (an Ansible local
    fact), outside check mode, making its folder (root:root 0755) where missing. Live readings
    (temperature, counters) change on every run, so that write is never reported as a change;
    a folder made or set right is.
  - Changes nothing else.
options:
  sysfs_root:
    description: Where sysfs is mounted (tests point this at a recorded tree).
    type: str
    default: /sys
  nvme_command:
    description: The nvme-cli executable (name or path).
    type: str
    default: nvme
  firmware:
    description:
      - A firmware update to plan, with keys C(device) (C(/dev/nvme0) or C(nvme0)), C(file)
        (path of the image on the target), C(version) (the revision the image holds),
        C(slot) and C(action) (C(nvme fw-commit) action 0, 1 or 3).
    type: dict
  fact_path:
    description:
      - Write the fact document (RV(fact)) to this file, e.g. C(/etc/ansible/facts.d/nvme.fact),
        outside check mode. One module run for the read and the fact.
    type: str
author:
  - dlsetup contributors
"""

EXAMPLES = r"""
- name: Report the NVMe drives
  dlsetup.box.nvme_report:
  register: report
"""

RETURN = r"""
controllers:
  description: One entry per NVMe controller, sorted by name.
  returned: always
  type: list
  elements: dict
  sample:
    - name: nvme0
      model: Samsung SSD 980 PRO 1TB
      serial: S5GXNF0R000000A
      firmware: 5B2QGXA7
      address: "0000:01:00.0"
      slot: "0000:01:00.0 (M.2 slot 1)"
      firmware_slots:
        active: 1
        next_reset: null
        count: 3
        slot1_read_only: false
        slots: [{slot: 1, revision: 5B2QGXA7, active: true, next_reset: false}]
      critical_warning: 0
      critical_warnings: []
      temperature_c: 38
      available_spare: 100
      available_spare_threshold: 10
      percentage_used: 1
      media_errors: 0
      link: {current_speed: 16.0 GT/s PCIe, max_speed: 16.0 GT/s PCIe, current_width: 4,
             max_width: 4}
      slot_link: {max_speed: 16.0 GT/s PCIe, max_width: 4}
      warnings: []
notes:
  description: What could not be read, and why (without nvme-cli only sysfs is read).
  returned: always
  type: list
  elements: str
summary:
  description: One line per controller (or one saying there is none), for people.
  returned: always
  type: list
  elements: str
fact:
  description: The report as the local fact nvme (what O(fact_path) holds), read by the smoke test.
  returned: always
  type: dict
firmware_plan:
  description: The planned firmware update, when O(firmware) was given.
  returned: when firmware is given
  type: dict
"""


def _runner(module, nvme):
    """run(argv) -> (rc, stdout, stderr) for nvme-cli, or None when it is not installed."""
    if not nvme:
        return None

    def run(argv):
        return module.run_command([nvme, *argv], environ_update={"LC_ALL": "C", "LANG": "C"})

    return run


def write_fact(module, path, fact):
    """Write the fact document to ``path`` (JSON, as the role's to_nice_json did), its
    folder root:root 0755 (atomic.ensure_dir). True where the folder was made or set right:
    the fact itself, live readings, is never a change."""
    changed = ensure_dir(module, os.path.dirname(path))
    data = (json.dumps(fact, indent=4, sort_keys=True) + "\n").encode("utf-8")
    if read_bytes(path) != data:
        write_atomic(path, data, 0o644)
    return changed


def main():
    module = AnsibleModule(
        argument_spec={
            "sysfs_root": {"type": "str", "default": "/sys"},
            "nvme_command": {"type": "str", "default": "nvme"},
            "firmware": {"type": "dict"},
            "fact_path": {"type": "str"},
        },
        supports_check_mode=True,
    )
    nvme = module.get_bin_path(module.params["nvme_command"])
    report = build_report(module.params["sysfs_root"], _runner(module, nvme))
    result = dict(report, changed=False, fact=fact_document(report))
    if module.params["fact_path"] and not module.check_mode:
        result["changed"] = write_fact(module, module.params["fact_path"], result["fact"])
    if module.params["firmware"]:
        plan = firmware_plan(report["controllers"], module.params["firmware"], nvme or "nvme")
        result["firmware_plan"] = plan
        if plan["error"]:
            module.fail_json(msg="NVMe firmware update: " + plan["error"], **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
