"""What the VM tier's tests share besides the fixture: an inventory for a VM,
ansible-playbook runs against it, MokManager answered on the serial console."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dlsetup import vmbox
from tests.boxes import write_inventory

REPO = Path(__file__).resolve().parent.parent.parent
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
# Arrow down and Enter as a terminal sends them; MokManager reads the serial
# console through the firmware's terminal emulation.
DOWN = "\x1b[B"
ENTER = "\r"


def inventory(vm: vmbox.VM, path: Path, name: str = "vm1") -> Path:
    """The VM as a user lists a machine: a name, an address, a port, a key.

    Named, not listed as 127.0.0.1: the role takes the address 127.0.0.1 for
    the machine dlsetup runs on (which it never reboots on its own).
    """
    return write_inventory(
        path, vm.key, {name: {"ansible_host": "127.0.0.1", "ansible_port": vm.port}}
    )


def playbook(
    inv: Path, book: str, *extra: str, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook from the venv, with the project's ansible.cfg and roles."""
    exe = Path(sys.executable).parent / "ansible-playbook"
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
    }
    return subprocess.run(
        [str(exe), "-i", str(inv), str(PLAYBOOKS / book), *extra],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO),
        timeout=timeout,
        check=False,
    )


def read_json(vm: vmbox.VM, path: str) -> dict[str, object]:
    return json.loads(vm.ssh(f"cat {path}").stdout)  # type: ignore[no-any-return]


def enroll_mok(console: vmbox.Console, password: str, timeout: float = 600) -> None:
    """Answer MokManager as a user at the screen would: press a key in time,
    Enroll MOK, Continue, Yes, the password, Reboot."""
    console.expect(r"Press any key to perform MOK management", timeout)
    console.send(" ")
    console.expect(r"Enroll MOK", 120)
    time.sleep(2)
    console.send(DOWN + ENTER, pause=1.0)  # Continue boot -> Enroll MOK
    console.expect(r"View key 0", 120)
    time.sleep(2)
    console.send(DOWN + ENTER, pause=1.0)  # View key 0 -> Continue
    console.expect(r"Enroll the key\(s\)\?", 120)
    time.sleep(2)
    console.send(DOWN + ENTER, pause=1.0)  # No -> Yes
    console.expect(r"Password:", 120)
    time.sleep(1)
    console.send(password + ENTER, pause=0.3)
    console.expect(r"Reboot", 120)
    time.sleep(2)
    console.send(ENTER)
