"""Shared set-up of the virtual-machine tier: Debian 12 under QEMU + OVMF.

What a container cannot show is shown here: firmware with Secure Boot on,
Debian's signed shim, GRUB and kernel, reboots, kernel modules loading (or
being refused) in the kernel they were built for. Each test boots its own VM
on a copy-on-write overlay of the image ``dlsetup.vmbox`` builds and caches
(``make vm`` builds it first), reached over SSH on 127.0.0.1 like any host.

Skipped, with the reason, where QEMU or OVMF is missing or the image is not
built: building it takes minutes, so a plain ``pytest`` never does it.
"""

from __future__ import annotations

import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from dlsetup import vmbox

REPO = Path(__file__).resolve().parent.parent.parent
LOGS = REPO / ".cache" / "logs"


def vm_ready() -> str | None:
    """None when a VM can be booted here, else why not."""
    why = vmbox.qemu_missing()
    if why:
        return f"QEMU cannot run here: {why}"
    if not vmbox.image_current():
        return "VM image missing or stale: python3 -m dlsetup.vmbox image (make vm builds it)"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm: boots a QEMU virtual machine (tests/vm)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # only the tests that boot a VM; the others check vmbox's decisions
    vm_items = [
        i for i in items if "tests/vm/" in str(i.path) and "vm" in getattr(i, "fixturenames", ())
    ]
    why = vm_ready() if vm_items else None
    for item in vm_items:
        item.add_marker(pytest.mark.vm)
        if why is not None:
            item.add_marker(pytest.mark.skip(reason=why))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    if rep.when == "call":
        item.stash[_FAILED] = rep.failed
    return rep


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def vm(request: pytest.FixtureRequest) -> Iterator[vmbox.VM]:
    """A booted VM (Secure Boot on) with sshd, user `dl` (passwordless sudo) and our key.

    Its serial console is ``vm.console``; the log is kept under .cache/logs
    when the test fails.
    """
    machine = vmbox.start(request.node.name[:40])
    try:
        machine.wait_ssh(600)
        yield machine
    finally:
        machine.stop()
        if request.node.stash.get(_FAILED, True):
            LOGS.mkdir(parents=True, exist_ok=True)
            if machine.serial_log.is_file():
                shutil.copyfile(machine.serial_log, LOGS / f"vm-{request.node.name}.serial.log")
        shutil.rmtree(machine.workdir, ignore_errors=True)
