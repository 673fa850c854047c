#!/usr/bin/env python3
"""Which CPU model the VM tier's guest runs fastest on under TCG (emulation).

    .venv/bin/python benchmarks/vm_cpu.py [MODEL ...]     # default: max Nehalem qemu64

Boots the VM tier's cached image (python3 -m dlsetup.vmbox image) once per
model, one after the other, and times what the tier spends its time on:

- boot to SSH (firmware with Secure Boot, shim, GRUB, kernel, systemd);
- the guest's Python importing what an Ansible module imports, three times;
- the guest's Python compiling 60 stdlib files (AnsiballZ ships modules as
  source in a zip, so every module call compiles them), three times;
- `ansible -m command -a true` against the VM, four times: one whole module
  round trip, with this checkout's ansible.cfg.

Prints one JSON line per model and the machine it ran on. Not part of the
test suite; it asserts nothing. The figures of 2026-12-05 are in
docs/vm-tier.md, with why vmbox.TCG_CPU stays `max` although `qemu64`
measured faster (one full run on qemu64 hung at GRUB).
"""

from __future__ import annotations

import json
import os
import platform
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


def measure(model: str, workdir: Path) -> dict[str, object]:
    os.environ["DLSETUP_VM_CPU"] = model
    t0 = time.monotonic()
    vm = vmbox.start(f"cpu-{model}"[:40], "tcg")
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
            "boot_to_ssh_s": round(boot, 1),
            "python_imports_s": timed(IMPORTS),
            "compile_60_files_s": timed(COMPILE),
            "ansible_command_true_s": calls,
        }
    finally:
        vm.stop()


def main() -> None:
    models = sys.argv[1:] or ["max", "Nehalem", "qemu64"]
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
         if ln.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    print(json.dumps({"machine": f"{cpu}, {os.cpu_count()} cores, kernel {platform.release()}",
                      "load": os.getloadavg()}))  # fmt: skip
    work = REPO / ".cache" / "vm"
    for model in models:
        print(json.dumps(measure(model, work)), flush=True)


if __name__ == "__main__":
    main()
