#!/usr/bin/python
# Copyright: dlsetup contributors
# Apache-2.0
"""Plan a disk layout: what exists, what the spec asks, what to do, what is refused.

The module reads the disks (``lsblk --json -b -O``, ``sfdisk --json``,
``blkid -p -o export``), the fstab and the current mounts, and returns a plan;
beside it, whether the hardware clock is in local time (``timedatectl``), for
the role's clock step (one module run instead of two).
It never changes anything. The judgement is the collection's
module_utils/disk_plan.py (pure functions, unit-tested there); this file is
its Ansible interface.
"""

from __future__ import annotations

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dlsetup.box.plugins.module_utils.disk_plan import (
    TOOLS,
    build_plan,
    gather_disk_facts,
    note_missing_tools,
    refusal_message,
)

DOCUMENTATION = r"""
---
module: disk_layout_plan
short_description: Plan partitions, filesystems and mounts for a disk spec, changing nothing
description:
  - Reads the disks named in O(disks) with C(lsblk), C(sfdisk) and C(blkid), the fstab and
    the current mounts, and returns what would have to be done to make them match the spec.
  - Partitions are identified by GPT name, or by O(disks[].partitions[].uuid) (PARTUUID or
    filesystem UUID) or O(disks[].partitions[].fs_label) where given. Partitions the spec does
    not name are listed in RV(unmanaged) and never touched.
  - Fails, naming the disk, the partition and the field, when the spec asks for anything unsafe
    or impossible; the caller is expected to act only on a plan that did not fail.
  - Also reads whether the hardware clock keeps local time (C(timedatectl show)), returned
    as RV(local_rtc).
  - Always returns C(changed=false).
options:
  disks:
    description: The disk spec, as in the role variable C(disk_layout_disks).
    type: list
    elements: dict
    required: true
  safe_mode:
    description: When true, no existing filesystem is ever reformatted, whatever C(wipe) says.
    type: bool
    default: true
  fstab_path:
    description: The fstab to compare mount entries against.
    type: str
    default: /etc/fstab
  mount_prefix:
    description: Prefix for every mount point (tests mount under a temporary directory).
    type: str
    default: ""
  data_nofail:
    description: Add C(nofail) to the options of every mount other than C(/) and C(/boot*).
    type: bool
    default: true
author:
  - dlsetup contributors
"""

EXAMPLES = r"""
- name: Plan the disk layout
  dlsetup.box.disk_layout_plan:
    disks:
      - device: /dev/disk/by-id/nvme-Samsung_SSD_960_EVO_1TB_XXXX
        partitions:
          - {name: EFI, size: 512MiB, fstype: vfat, mount: /boot/efi, preserve: true}
          - {name: scratch, size: 100%, fstype: ext4, mount: /scratch}
  register: plan
"""

RETURN = r"""
actions:
  description: What would have to be done, in order.
  returned: always
  type: list
  elements: dict
  sample:
    - {action: create_table, disk: /dev/sdb, device: /dev/sdb, table: gpt}
    - {action: create_partition, disk: /dev/sdb, device: /dev/sdb, table: gpt, number: 1,
       name: data, start: 2048, end: 1953523711, size_bytes: 1000203091968, flags: [],
       partition_device: /dev/sdb1}
    - {action: mkfs, disk: /dev/sdb, device: /dev/sdb1, fstype: ext4, label: data,
       opts: "-L data", force: false, exists: false, reason: new partition}
    - {action: mount, device: /dev/sdb1, uuid: null, path: /data, fstype: ext4,
       opts: "defaults,nofail", state: mounted, dump: 0, passno: 2, pending: true,
       changes: [fstab, mount]}
mounts:
  description:
    - Every mount the spec asks for (changed or not), parents before children, each with
      device, uuid (null until the filesystem exists), path, fstype, opts, state, dump, passno
      and path_exists.
  returned: always
  type: list
  elements: dict
unmanaged:
  description: Partitions on the spec's disks that the spec does not name; never touched.
  returned: always
  type: list
  elements: dict
refusals:
  description: What the plan refuses to do, each with disk, partition, field and msg.
  returned: always
  type: list
  elements: dict
notes:
  description: Things worth knowing that are not refusals (size differences, added nofail).
  returned: always
  type: list
  elements: str
disks:
  description: What was found on each disk (table, partitions, filesystems, free space).
  returned: always
  type: list
  elements: dict
windows:
  description: Whether a Windows partition (NTFS, BitLocker, Microsoft reserved) was found.
  returned: always
  type: dict
  sample: {present: true, partitions: [{disk: /dev/nvme0n1, device: /dev/nvme0n1p3, why: ntfs}]}
tools:
  description: Path of each tool the role's tasks use (parted, mkfs.*, ...); null if missing.
  returned: always
  type: dict
summary:
  description: Count of actions by kind.
  returned: always
  type: dict
report:
  description: The plan as human-readable text.
  returned: always
  type: str
local_rtc:
  description:
    - C(yes) when the hardware clock keeps local time, C(no) when UTC, as C(timedatectl show
      --property=LocalRTC) says; empty where timedatectl is missing or cannot answer (no
      systemd as PID 1, e.g. a container), where the clock's mode is read from /etc/adjtime.
  returned: always
  type: str
  sample: "no"
"""


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def _local_rtc(module, run):
    """timedatectl's LocalRTC ('yes' or 'no'), or '' where it cannot say."""
    timedatectl = module.get_bin_path("timedatectl")
    if not timedatectl:
        return ""
    rc, out, _err = run([timedatectl, "show", "--property=LocalRTC", "--value"])
    answer = out.strip()
    return answer if rc == 0 and answer in ("yes", "no") else ""


def main():
    module = AnsibleModule(
        argument_spec={
            "disks": {"type": "list", "elements": "dict", "required": True},
            "safe_mode": {"type": "bool", "default": True},
            "fstab_path": {"type": "str", "default": "/etc/fstab"},
            "mount_prefix": {"type": "str", "default": ""},
            "data_nofail": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    for tool in ("lsblk", "blkid"):
        module.get_bin_path(tool, required=True)
    has_sfdisk = module.get_bin_path("sfdisk") is not None

    def run(argv):
        return module.run_command(argv, environ_update={"LC_ALL": "C", "LANG": "C"})

    facts = {}
    for disk in module.params["disks"]:
        device = disk.get("device") if isinstance(disk, dict) else None
        if isinstance(device, str) and device.startswith("/") and device not in facts:
            facts[device] = gather_disk_facts(device, run, sfdisk=has_sfdisk)

    plan = build_plan(
        module.params["disks"],
        facts,
        safe_mode=module.params["safe_mode"],
        fstab_text=_read(module.params["fstab_path"]),
        mounts_text=_read("/proc/self/mounts"),
        mount_prefix=module.params["mount_prefix"],
        data_nofail=module.params["data_nofail"],
    )
    for entry in plan["mounts"]:
        entry["path_exists"] = os.path.isdir(entry["path"])
    note_missing_tools(plan, {tool: module.get_bin_path(tool) for tool in TOOLS})
    plan["local_rtc"] = _local_rtc(module, run)
    if plan["refusals"]:
        module.fail_json(msg=refusal_message(plan), changed=False, **plan)
    module.exit_json(changed=False, **plan)


if __name__ == "__main__":
    main()
