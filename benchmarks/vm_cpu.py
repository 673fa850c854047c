#!/usr/bin/env python3
"""Which CPU model and how many vCPUs the VM tier's guest runs fastest on
under TCG (emulation), alone or beside other work.

    .venv/bin/python benchmarks/vm_cpu.py [MODEL ...]     # default: max Nehalem qemu64
    .venv/bin/python benchmarks/vm_cpu.py max --cpus 1,2 --busy 0,1

Boots the VM tier's cached image (python3 -m dlsetup.vmbox image) once per
model, vCPU count (--cpus, default the tier's own, vmbox.VM_CPUS) and host
load (--busy N: N processes spinning on the host beside the VM, as the other
CI stages keep a core busy; default 0), one after the other, and times what
the tier spends its time on:

- boot to SSH (firmware with Secure Boot, shim, GRUB, kernel, systemd);
- the guest's Python importing what an Ansible module imports, three times;
- the guest's Python compiling 60 stdlib files (AnsiballZ ships modules as
  source in a zip, so every module call compiles them), three times;
- `ansible -m command -a true` against the VM, four times: one whole module
  round trip, with this checkout's ansible.cfg;
- 300 runs of /bin/true from a shell (what dpkg's scripts and DKMS do: many
  short processes), twice;
- `update-initramfs -u`, twice (the kernel update's and the driver role's
  longest step in the guest).

Prints one JSON line per model and the machine it ran on. Not part of the
test suite; it asserts nothing. The figures of 2026-12-05 are in
docs/vm-tier.md, with why vmbox.TCG_CPU stays `max` although `qemu64`
measured faster (one full run on qemu64 hung at GRUB).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dlsetup import vmbox  # noqa: E402

IMPORTS = (
    "python3 -c 'import json, subprocess, locale, email.parser, http.client, "
    "zipfile, tempfile, shlex, platform, selectors'"
)
COMPILE = (
    'python3 -c \'import glob; [compile(open(f).read(), f, "exec") '
    'for f in sorted(glob.glob("/usr/lib/python3.11/*.py"))[:60]]\''
)

FORKS = "sh -c 'for i in $(seq 300); do /bin/true; done'"
INITRAMFS = "sudo -n update-initramfs -u"


def _spin() -> None:
    while True:
        pass


def measure(model: str, cpus: int, busy: int, workdir: Path) -> dict[str, object]:
    os.environ["DLSETUP_VM_CPU"] = model
    os.environ["DLSETUP_VM_CPUS"] = str(cpus)
    load = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(busy)]
    for proc in load:
        proc.start()
    t0 = time.monotonic()
    try:
        return _measure(model, cpus, busy, workdir, t0)
    finally:
        for proc in load:
            proc.terminate()


def _measure(model: str, cpus: int, busy: int, workdir: Path, t0: float) -> dict[str, object]:
    vm = vmbox.start(f"cpu-{model}-{cpus}-{busy}"[:40], "tcg")
    try:
        vm.wait_ssh(600)
        boot = time.monotonic() - t0

        def timed(cmd: str, n: int = 3) -> list[float]:
            out = []
            for _ in range(n):
                t = time.monotonic()
                vm.ssh(cmd)
                out.append(round(time.monotonic() - t, 2))
            return out

        inv = workdir / "vm_cpu.inv"
        inv.write_text(
            f"vm ansible_host=127.0.0.1 ansible_port={vm.port} ansible_user={vmbox.SSH_USER} "
            f"ansible_ssh_private_key_file={vm.key} ansible_ssh_common_args="
            "'-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n"
        )
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
        ansible = Path(sys.executable).parent / "ansible"
        calls = []
        for _ in range(4):
            t = time.monotonic()
            subprocess.run(
                [
                    str(ansible),
                    "vm",
                    "-i",
                    str(inv),
                    "-b",
                    "-m",
                    "ansible.builtin.command",
                    "-a",
                    "true",
                ],
                env=env,
                capture_output=True,
                check=True,
            )
            calls.append(round(time.monotonic() - t, 2))
        return {
            "cpu": model,
            "vcpus": cpus,
            "host_busy_processes": busy,
            "boot_to_ssh_s": round(boot, 1),
            "python_imports_s": timed(IMPORTS),
            "compile_60_files_s": timed(COMPILE),
            "ansible_command_true_s": calls,
            "300_processes_s": timed(FORKS, 2),
            "update_initramfs_s": timed(INITRAMFS, 2),
        }
    finally:
        vm.stop()
        shutil.rmtree(vm.workdir, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("models", nargs="*", default=["max", "Nehalem", "qemu64"])
    p.add_argument("--cpus", default=str(vmbox.VM_CPUS), help="vCPU counts to compare, e.g. 1,2")
    p.add_argument("--busy", default="0", help="host processes spinning beside, e.g. 0,1")
    args = p.parse_args()
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
         if ln.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    print(json.dumps({"machine": f"{cpu}, {os.cpu_count()} cores, kernel {platform.release()}",
                      "load": os.getloadavg()}))  # fmt: skip
    work = REPO / ".cache" / "vm"
    for model in args.models:
        for busy in (int(b) for b in args.busy.split(",")):
            for cpus in (int(c) for c in args.cpus.split(",")):
                print(json.dumps(measure(model, cpus, busy, work)), flush=True)


if __name__ == "__main__":
    main()
