"""dlsetup.vmbox's decisions that need no VM: what QEMU is told, what the
console reader matches, when the image counts as stale. These run wherever
tests/vm runs, QEMU or not."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dlsetup import vmbox


def test_qemu_is_told_secure_boot_loopback_only_and_its_own_files(tmp_path: Path) -> None:
    argv = vmbox.qemu_argv(tmp_path, "tcg", 40022)
    joined = " ".join(argv)
    assert "hostfwd=tcp:127.0.0.1:40022-:22" in joined  # never on every interface
    assert "q35,smm=on" in joined
    assert "driver=cfi.pflash01,property=secure,value=on" in joined
    assert f"readonly=on,file={vmbox.OVMF_CODE}" in joined
    assert f"unit=1,file={tmp_path / 'vars.fd'}" in joined  # this VM's copy, not OVMF's
    assert f"file={tmp_path / 'overlay.qcow2'}" in joined  # the overlay, not the base
    assert "tcg,thread=multi" in joined
    assert "-accel kvm" in " ".join(vmbox.qemu_argv(tmp_path, "kvm", 40022))


def test_tcg_runs_max_unless_told_another_cpu_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max unless DLSETUP_VM_CPU names another (docs/vm-tier.md: qemu64 makes
    the guest's Python about 20 % faster; not the default yet)."""
    monkeypatch.delenv("DLSETUP_VM_CPU", raising=False)
    argv = vmbox.qemu_argv(tmp_path, "tcg", 40022)
    assert argv[argv.index("-cpu") + 1] == "max"
    monkeypatch.setenv("DLSETUP_VM_CPU", "qemu64")
    argv = vmbox.qemu_argv(tmp_path, "tcg", 40022)
    assert argv[argv.index("-cpu") + 1] == "qemu64"
    assert "-cpu" not in vmbox.qemu_argv(tmp_path, "kvm", 40022)


def test_one_vcpu_unless_told_another_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One vCPU (beside CI's other stages a 2-vCPU guest was 1.4 to 1.6 times
    slower, docs/benchmarks/vm-cpus-2026-12-07.md); DLSETUP_VM_CPUS another
    count; anything but a whole number of 1 or more is refused by name."""

    def smp() -> str:
        argv = vmbox.qemu_argv(tmp_path, "tcg", 40022)
        return argv[argv.index("-smp") + 1]

    monkeypatch.delenv("DLSETUP_VM_CPUS", raising=False)
    assert smp() == "1"
    monkeypatch.setenv("DLSETUP_VM_CPUS", "2")
    assert smp() == "2"
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("DLSETUP_VM_CPUS", bad)
        with pytest.raises(vmbox.VMError, match="DLSETUP_VM_CPUS: expected a whole number"):
            smp()


@contextlib.contextmanager
def _serial(tmp_path: Path, guest: Callable[[socket.socket], None]) -> Iterator[vmbox.Console]:
    """A Console on a socket whose other end ``guest`` plays, as QEMU's
    socket chardev would (the connection closes when ``guest`` returns)."""
    path = tmp_path / "serial.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            guest(conn)

    t = threading.Thread(target=serve)
    t.start()
    console = vmbox.Console(path)
    try:
        yield console
    finally:
        console.close()
        t.join()
        server.close()


def test_console_matches_past_escape_sequences_and_moves_on(tmp_path: Path) -> None:
    got: list[bytes] = []

    def guest(conn: socket.socket) -> None:
        conn.sendall(b"\x1b[2J\x1b[1;1HPress any \x1b[0mkey to perform MOK management\r\n")
        data = b""
        while not data.endswith(b"\r"):
            data += conn.recv(16)
        got.append(data)
        conn.sendall(b"\x1b[5;10HEnroll MOK\x1b[6;10HContinue boot")

    with _serial(tmp_path, guest) as console:
        console.expect(r"Press any key to perform MOK management", 10)
        console.send("\x1b[B\r", pause=0.01)
        console.expect(r"Enroll MOK", 10)
        with pytest.raises(vmbox.VMError, match="no 'Press any'"):
            console.expect(r"Press any", 0.5)  # already consumed
    assert got == [b"\x1b[B\r"]


def test_console_reads_what_arrives_split_inside_an_escape_or_a_character(
    tmp_path: Path,
) -> None:
    """The reader makes text of each chunk as it comes: an escape sequence or
    a UTF-8 character cut between two chunks still comes out whole, and a
    screen that never comes is reported with the bytes that did."""
    second, third = threading.Event(), threading.Event()

    def guest(conn: socket.socket) -> None:
        conn.sendall(b"Enr\x1b[5;1")  # cut inside the cursor move
        second.wait(10)
        conn.sendall(b"0Holl MOK \xe2\x94")  # cut inside U+2500
        third.wait(10)
        conn.sendall(b"\x80 done\x1b[0m")

    with _serial(tmp_path, guest) as console:
        try:
            _wait_for(lambda: console.text() == "Enr")  # the cut escape held back
            second.set()
            console.expect(r"Enroll MOK ", 10)
            third.set()
            assert console.expect(r"\S done", 10).group(0) == "\u2500 done"
            assert console.text() == "Enroll MOK \u2500 done"
            with pytest.raises(vmbox.VMError) as err:
                console.expect(r"View key 0", 0.5)
            assert "its last bytes as they came: b'Enr\\x1b[5;10Holl MOK" in str(err.value)
        finally:
            second.set()
            third.set()


def _wait_for(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_image_is_stale_when_an_input_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vmbox, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(vmbox, "debian_mirrors", lambda: ("http://a/debian", "http://a/sec"))
    first = vmbox.fingerprint()
    assert vmbox.fingerprint() == first
    vmbox.image_path().write_bytes(b"qcow2")
    (tmp_path / "debian12.json").write_text(f'{{"fingerprint": "{first}"}}')
    assert vmbox.image_current()
    monkeypatch.setattr(vmbox, "debian_mirrors", lambda: ("http://b/debian", "http://b/sec"))
    assert vmbox.fingerprint() != first
    assert not vmbox.image_current()
    monkeypatch.setattr(vmbox, "debian_mirrors", lambda: ("http://a/debian", "http://a/sec"))
    monkeypatch.setattr(vmbox, "PACKAGES", (*vmbox.PACKAGES, "tree"))
    assert not vmbox.image_current()


def test_qemu_ends_at_a_guest_reset_for_a_cold_start(tmp_path: Path) -> None:
    argv = vmbox.qemu_argv(tmp_path, "tcg", 40022)
    assert argv[argv.index("-action") + 1] == "reboot=shutdown"


# Stands in for QEMU (no guest can boot in a unit test): a socket chardev on
# serial.sock that logs what it sends to serial.log, as `-chardev
# socket,...,logfile=` does, and plays one scenario per run. Run 1 ends as
# QEMU does at a guest reset under `-action reboot=shutdown` (exit 0), at a
# power-off (exit 0 after Linux says so) or on an error (exit 1); run 2 shows
# MokManager's first screen and stays up until it is stopped.
FAKE_QEMU = r"""
import os, socket, sys, time
workdir, scenario = sys.argv[1], sys.argv[2]
runs = os.path.join(workdir, "runs")
n = (int(open(runs).read()) if os.path.exists(runs) else 0) + 1
open(runs, "w").write(str(n))
path = os.path.join(workdir, "serial.sock")
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(1)
conn, _ = srv.accept()
def say(text):
    conn.sendall(text.encode())
    with open(os.path.join(workdir, "serial.log"), "a") as log:
        log.write(text)
try:
    if n == 1:
        say("Debian GNU/Linux 12 dl ttyS0\r\n")
        if scenario == "reset":
            say("[  812.1] reboot: machine restart\r\n")
            sys.exit(0)
        if scenario == "poweroff":
            say("[  812.1] reboot: Power down\r\n")
            sys.exit(0)
        sys.exit(1)
    say("\x1b[2J\x1b[1;1HPress any key to perform MOK management\r\n")
    time.sleep(60)
finally:
    conn.close()
    srv.close()
    os.unlink(path)
"""


@contextlib.contextmanager
def _fake_vm(tmp_path: Path, scenario: str) -> Iterator[vmbox.VM]:
    script = tmp_path / "fake_qemu.py"
    script.write_text(FAKE_QEMU)
    workdir = tmp_path / "vm"
    workdir.mkdir()
    vm = vmbox.VM(
        name="fake", workdir=workdir, accel="tcg", port=0, key=tmp_path / "key",
        argv=[sys.executable, str(script), str(workdir), scenario],
    )  # fmt: skip
    vm.boot()
    try:
        yield vm
    finally:
        vm.stop()


def test_a_guest_reset_starts_qemu_again_and_the_console_reads_on(tmp_path: Path) -> None:
    """The guest's reset ends QEMU; a new one starts on the same files and
    the console carries on from where it was, as the MokManager step of the
    VM tier needs (the reboot into MokManager is such a reset)."""
    with _fake_vm(tmp_path, "reset") as vm:
        assert vm.console is not None
        vm.console.expect(r"reboot: machine restart", 10)
        vm.console.expect(r"Press any key to perform MOK management", 10)
        assert vm.power_cycles == 1
        assert (vm.workdir / "runs").read_text() == "2"
        assert vm.running()
        second = vm.proc
    assert second is not None and second.poll() is not None  # stopped, not started again
    assert (vm.workdir / "runs").read_text() == "2"


@pytest.mark.parametrize("scenario", ["poweroff", "error"])
def test_a_power_off_or_a_failed_qemu_is_not_started_again(tmp_path: Path, scenario: str) -> None:
    with _fake_vm(tmp_path, scenario) as vm:
        assert vm.console is not None
        _wait_for(lambda: not vm.running())
        with pytest.raises(vmbox.VMError, match="no 'Press any key'"):
            vm.console.expect(r"Press any key", 5)
        assert vm.power_cycles == 0
        assert (vm.workdir / "runs").read_text() == "1"


def test_powered_off_reads_the_last_thing_linux_said(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    assert not vmbox._powered_off(log)  # no log: a reset (the firmware's own says nothing)
    log.write_text("reboot: Power down\r\nBdsDxe: loading Boot0001\r\nreboot: machine restart\r\n")
    assert not vmbox._powered_off(log)
    log.write_text("reboot: Restarting system\r\n...\r\n[ 9.0] reboot: Power down\r\n")
    assert vmbox._powered_off(log)
