"""What the VM tier's tests share besides the fixture: files read on the VM,
MokManager answered on the serial console."""

from __future__ import annotations

import json
import time

from dlsetup import vmbox

# Arrow down and Enter as a terminal sends them; MokManager reads the serial
# console through the firmware's terminal emulation.
DOWN = "\x1b[B"
ENTER = "\r"


def read_json(vm: vmbox.VM, path: str) -> dict[str, object]:
    return json.loads(vm.ssh(f"cat {path}").stdout)  # type: ignore[no-any-return]


def enroll_mok(console: vmbox.Console, password: str, timeout: float = 600) -> None:
    """Answer MokManager as a user at the screen would: press a key in time,
    Enroll MOK, Continue, Yes, the password (again if it asks again), Reboot.
    Each screen may take minutes to draw under emulation on a busy machine."""
    console.expect(r"Press any key to perform MOK management", timeout)
    console.send(" ")
    # Each screen is known by any of its lines: on a loaded machine a CI run
    # once got the menu without its first two items (Continue boot, Enroll
    # MOK); the menu was there all the same, and it is the keys that count.
    console.expect(r"Continue boot|Enroll MOK|Enroll key from disk|Enroll hash from disk", 300)
    time.sleep(2)
    console.send(DOWN + ENTER, pause=1.0)  # Continue boot -> Enroll MOK
    console.expect(r"\[Enroll MOK\]|View key 0", 300)
    time.sleep(2)
    console.send(DOWN + ENTER, pause=1.0)  # View key 0 -> Continue
    # the question, or its answers: on a loaded machine the serial console
    # once lost the question's bytes while the No / Yes under it arrived
    console.expect(r"Enroll the key\(s\)\?|Yes", 300)
    time.sleep(2)
    console.send(DOWN + ENTER, pause=1.0)  # No -> Yes
    console.expect(r"Password:", 300)
    for _ in range(3):  # MokManager asks again when a key was lost on the way
        time.sleep(1)
        console.send(password + ENTER, pause=0.5)
        # the menu again, now with Reboot first and chosen
        if console.expect(r"Reboot|Perform MOK management|Password:", 300).group(0) != "Password:":
            break
    else:
        raise vmbox.VMError("console: MokManager refused the password three times")
    time.sleep(2)
    console.send(ENTER)
