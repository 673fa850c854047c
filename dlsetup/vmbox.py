"""Throw-away virtual machines: a Debian 12 UEFI disk image and QEMU to boot it.

What a container cannot show (firmware, Secure Boot, a kernel of its own,
reboots) a virtual machine can. This module builds a bootable Debian 12 disk
image the way ``dlsetup.localbox`` builds container images, and runs it under
QEMU with OVMF (Microsoft's keys enrolled, Secure Boot on), so that shim,
GRUB and the kernel are Debian's signed ones, as on a real server::

    python3 -m dlsetup.vmbox probe          # can QEMU run here, with which accelerator
    python3 -m dlsetup.vmbox image [--force]
    python3 -m dlsetup.vmbox boot           # boot one VM, print how to reach it, wait

The image is a GPT disk (ESP + ext4 root) made without loop devices or
mounts: debootstrap into a folder, ``mkfs.ext4 -d`` and ``mtools`` write the
file systems into the image file. It has a sudo user ``dl`` with the key
``.cache/vm/id_ed25519`` and sshd; it is cached under ``.cache/vm/`` with a
fingerprint of its inputs and rebuilt only when they change. Every VM runs on
a copy-on-write overlay of it and its own copy of the firmware's variables,
so the base stays clean. SSH is reached through QEMU's user-mode network, on a
free port of 127.0.0.1 only; the serial console goes to a log file and a
socket that a test can read and write (answering MokManager, for instance).

Standard library only, like localbox, whose mirror and CA helpers it uses.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dlsetup.localbox import BUILD_DIR, apt_sources, debian_mirrors, extra_ca_certs

REPO = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(os.environ.get("DLSETUP_VM_CACHE", str(REPO / ".cache" / "vm")))
OVMF_DIR = Path("/usr/share/OVMF")
OVMF_CODE = OVMF_DIR / "OVMF_CODE_4M.ms.fd"  # Microsoft's keys, Secure Boot enforced
OVMF_VARS = OVMF_DIR / "OVMF_VARS_4M.ms.fd"
QEMU = "qemu-system-x86_64"
SSH_USER = "dl"
SUITE = "bookworm"
DISK_SIZE_MIB = 6144
ESP_SIZE_MIB = 128
HOST_PACKAGES = ("qemu-system-x86", "ovmf", "qemu-utils", "debootstrap", "mtools", "dosfstools")

# What a freshly installed Debian 12 server with UEFI has, plus what a DKMS
# build needs (the driver stage installs those anyway; baking them in saves
# each test a download and an emulated dpkg run).
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "kmod",
    "iproute2",
    "procps",
    "openssh-server",
    "sudo",
    "python3",
    "python3-apt",
    "ca-certificates",
    "linux-image-amd64",
    "initramfs-tools",
    "zstd",  # initramfs-tools' default compressor; without it, gzip
    "shim-signed",
    "grub-efi-amd64-signed",
    "mokutil",
    "openssl",
    "dkms",
    "linux-headers-amd64",
    "gcc",
    "make",
    "libc6-dev",
)
# Bumped whenever the way the image is put together changes.
_BUILDER_VERSION = 2


class VMError(RuntimeError):
    """Something the VM machinery cannot do; the message says what to fix."""


def log(msg: str) -> None:
    print(f"[vmbox] {msg}", file=sys.stderr, flush=True)


def _run(argv: Sequence[str], what: str, **kw: object) -> str:
    res = subprocess.run(list(argv), text=True, capture_output=True, check=False, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        raise VMError(f"{what} failed ({res.returncode}): {(res.stdout + res.stderr)[-3000:]}")
    return str(res.stdout)


# ---------------------------------------------------------------- the image


def ssh_key() -> tuple[Path, str]:
    """The key the image trusts (made once, kept with the cached image)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    key = CACHE_DIR / "id_ed25519"
    if not key.exists():
        _run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dlsetup-vm", "-f", str(key)],
            "ssh-keygen",
        )
    return key, (CACHE_DIR / "id_ed25519.pub").read_text().strip()


def _grub_cfg(root_uuid: str) -> str:
    # GRUB writes to the firmware's console, which OVMF also sends to the
    # serial port: no serial module needed (the signed GRUB loads none).
    return (
        "set timeout=1\nset default=0\n"
        f"search --no-floppy --fs-uuid --set=root {root_uuid}\n"
        "menuentry 'Debian GNU/Linux' {\n"
        f"  linux /vmlinuz root=UUID={root_uuid} ro console=ttyS0,115200n8 console=tty0\n"
        "  initrd /initrd.img\n}\n"
    )


def _rootfs_files(
    pubkey: str, archive: str, security: str, root_uuid: str, esp_uuid: str
) -> dict[str, str]:
    """Every file the builder writes into the root file system, by path."""
    return {
        "etc/hostname": "dlsetup-vm\n",
        "etc/hosts": "127.0.0.1 localhost\n127.0.1.1 dlsetup-vm\n",
        "etc/fstab": (
            f"UUID={root_uuid} / ext4 errors=remount-ro 0 1\n"
            f"UUID={esp_uuid} /boot/efi vfat umask=0077,nofail 0 1\n"
        ),
        "etc/apt/sources.list.d/debian.sources": apt_sources(SUITE, archive, security),
        "etc/systemd/network/10-wired.network": "[Match]\nName=en*\n\n[Network]\nDHCP=yes\n",
        "etc/resolv.conf": "nameserver 10.0.2.3\n",  # QEMU user-mode network's DNS
        # A kernel update under emulation spent 464 s of its 553 in
        # update-initramfs with the default MODULES=most (every storage and
        # file system driver, gzip). `dep` takes what this VM boots with;
        # written after debootstrap, so the image's own initramfs (made in
        # the chroot, where `dep` would see the build host) keeps `most`.
        "etc/initramfs-tools/conf.d/dlsetup-vm.conf": "MODULES=dep\n",
        "etc/default/grub.d/dlsetup-vm.cfg": (
            'GRUB_CMDLINE_LINUX="console=ttyS0,115200n8 console=tty0"\nGRUB_TIMEOUT=1\n'
        ),
        "boot/grub/grub.cfg": _grub_cfg(root_uuid),
        f"etc/sudoers.d/{SSH_USER}": f"{SSH_USER} ALL=(ALL) NOPASSWD: ALL\n",
        f"home/{SSH_USER}/.ssh/authorized_keys": pubkey + "\n",
    }


def fingerprint() -> str:
    """Changes whenever an input of the image changes, so a stale image is rebuilt."""
    _, pubkey = ssh_key()
    archive, security = debian_mirrors()
    h = hashlib.sha256()
    files = _rootfs_files(pubkey, archive, security, "ROOT", "ESP")
    h.update(
        json.dumps([SUITE, PACKAGES, DISK_SIZE_MIB, ESP_SIZE_MIB, files, _BUILDER_VERSION]).encode()
    )
    for cert in extra_ca_certs():
        h.update(cert.read_bytes())
    return h.hexdigest()[:16]


def image_path() -> Path:
    return CACHE_DIR / "debian12.qcow2"


def image_current() -> bool:
    meta = CACHE_DIR / "debian12.json"
    if not image_path().is_file() or not meta.is_file():
        return False
    return bool(json.loads(meta.read_text()).get("fingerprint") == fingerprint())


def _chroot(root: Path, *argv: str) -> str:
    return _run(["chroot", str(root), *argv], f"chroot {' '.join(argv)}", env=_chroot_env())


def _chroot_env() -> dict[str, str]:
    return {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LANG": "C.UTF-8",
    }


def _configure(root: Path, files: dict[str, str]) -> None:
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    for rel, text in files.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)  # resolv.conf may be a dangling link
        dest.write_text(text)
    (root / f"etc/sudoers.d/{SSH_USER}").chmod(0o440)
    certs = extra_ca_certs()
    if certs:
        dest = root / "usr/local/share/ca-certificates"
        dest.mkdir(parents=True, exist_ok=True)
        for c in certs:
            shutil.copy2(c, dest / c.name)
        _chroot(root, "update-ca-certificates")
    if not (root / f"home/{SSH_USER}/.profile").exists():
        _chroot(root, "useradd", "-m", "-s", "/bin/bash", SSH_USER)
    _chroot(root, "chown", "-R", f"{SSH_USER}:{SSH_USER}", f"/home/{SSH_USER}")
    (root / f"home/{SSH_USER}/.ssh").chmod(0o700)
    _chroot(root, "systemctl", "enable", "systemd-networkd.service")
    # A console on the serial port, to read what the machine says.
    _chroot(root, "systemctl", "enable", "serial-getty@ttyS0.service")
    for link in ("vmlinuz", "initrd.img"):
        if not (root / link).exists():
            raise VMError(f"the kernel's /{link} link is missing in the image")
    (root / "etc/machine-id").write_text("")  # a new one per VM, at its first boot
    for d in ("var/lib/apt/lists", "var/cache/apt/archives"):
        for f in (root / d).glob("*"):
            if f.is_file():
                f.unlink()


def _esp(path: Path, root: Path, volid: str, root_uuid: str) -> None:
    _run(["truncate", "-s", f"{ESP_SIZE_MIB}M", str(path)], "truncate")
    _run(["mkfs.vfat", "-F", "32", "-i", volid, "-n", "ESP", str(path)], "mkfs.vfat")
    shim = root / "usr/lib/shim/shimx64.efi.signed"
    mm = root / "usr/lib/shim/mmx64.efi.signed"
    grub = root / "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
    stub = path.parent / "grub-esp.cfg"
    # What grub-install leaves on the ESP: find the root file system, read its grub.cfg.
    stub.write_text(
        f"search --no-floppy --fs-uuid --set=root {root_uuid}\n"
        "set prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n"
    )
    img = ["-i", str(path)]
    _run(["mmd", *img, "::/EFI", "::/EFI/BOOT", "::/EFI/debian"], "mmd")
    # The removable-media path the firmware boots with empty variables, and
    # Debian's own folder (the signed GRUB's prefix); MokManager beside shim.
    for folder, shim_name in (("BOOT", "BOOTX64.EFI"), ("debian", "shimx64.efi")):
        for src, name in (
            (shim, shim_name),
            (grub, "grubx64.efi"),
            (mm, "mmx64.efi"),
            (stub, "grub.cfg"),
        ):
            _run(["mcopy", *img, str(src), f"::/EFI/{folder}/{name}"], "mcopy")


def build_image(force: bool = False) -> str:
    """Build (or keep) the cached VM image; returns what was done."""
    want = fingerprint()
    if not force and image_current():
        return f"{image_path()}: up to date"
    for tool in ("debootstrap", "mkfs.ext4", "mkfs.vfat", "mcopy", "sgdisk", "qemu-img"):
        if shutil.which(tool) is None:
            raise VMError(f"{tool} is missing: apt-get install {' '.join(HOST_PACKAGES)} gdisk")
    _, pubkey = ssh_key()
    archive, security = debian_mirrors()
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    root_uuid = str(uuid.uuid4())
    volid = uuid.uuid4().hex[:8].upper()
    esp_uuid = f"{volid[:4]}-{volid[4:]}"
    with tempfile.TemporaryDirectory(dir=BUILD_DIR, prefix="vm.") as tmp:
        work = Path(tmp)
        root = work / "root"
        log(f"debootstrap {SUITE} from {archive}")
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(PACKAGES),
                "--components=main,contrib,non-free,non-free-firmware",
                SUITE,
                str(root),
                archive,
            ],
            "debootstrap",
        )
        t_boot = time.monotonic() - t0
        _configure(root, _rootfs_files(pubkey, archive, security, root_uuid, esp_uuid))
        sector = 512
        total = DISK_SIZE_MIB * 1024 * 1024 // sector
        esp_start = 2048
        root_start = esp_start + ESP_SIZE_MIB * 2048
        root_end = total - 2048 - 1  # room for the backup GPT
        _esp(work / "esp.img", root, volid, root_uuid)
        root_img = work / "root.img"
        _run(
            ["truncate", "-s", str((root_end - root_start + 1) * sector), str(root_img)], "truncate"
        )
        _run(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-U",
                root_uuid,
                "-L",
                "root",
                "-d",
                str(root),
                str(root_img),
            ],
            "mkfs.ext4 -d",
        )
        disk = work / "disk.raw"
        _run(["truncate", "-s", f"{DISK_SIZE_MIB}M", str(disk)], "truncate")
        _run(
            [
                "sgdisk",
                f"-n1:{esp_start}:{root_start - 1}",
                "-t1:ef00",
                "-c1:EFI System",
                f"-n2:{root_start}:{root_end}",
                "-t2:8304",
                "-c2:root",
                str(disk),
            ],
            "sgdisk",
        )
        for img, start in ((work / "esp.img", esp_start), (root_img, root_start)):
            _run(
                [
                    "dd",
                    f"if={img}",
                    f"of={disk}",
                    "bs=1M",
                    f"seek={start * sector}",
                    "oflag=seek_bytes",
                    "conv=notrunc,sparse",
                    "status=none",
                ],
                "dd",
            )
        out = work / "debian12.qcow2"
        _run(["qemu-img", "convert", "-O", "qcow2", str(disk), str(out)], "qemu-img convert")
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        os.replace(out, image_path())
    took = time.monotonic() - t0
    (CACHE_DIR / "debian12.json").write_text(
        json.dumps({"fingerprint": want, "built_s": round(took), "debootstrap_s": round(t_boot)})
        + "\n"
    )
    return f"{image_path()}: built in {took:.0f} s (debootstrap {t_boot:.0f} s)"


# ---------------------------------------------------------------- running


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Console:
    """The VM's serial console: what it printed, and a keyboard to type on.

    The reader thread only appends what arrives, and ``expect`` makes plain
    text only of the bytes that came since its last look. (It once made
    plain text of the whole buffer, boot log and all, for every chunk that
    arrived, while the reader waited on the lock to append the next one;
    MokManager draws a screen in many small chunks.)"""

    def __init__(self, path: Path, reconnect: Callable[[], Path | None] | None = None) -> None:
        self._sock = _connect(path)
        # Called when the connection ends (QEMU exited): the path of the next
        # QEMU's socket to read on (the same console, a power cycle later), or
        # None for the end.
        self._reconnect = reconnect
        self._closed = False
        self._buf = bytearray()
        self._cond = threading.Condition()
        # what expect has made plain text of: raw bytes up to _done, decoded
        # (a split UTF-8 sequence waits in the decoder, a split escape
        # sequence in _held) and stripped of escape sequences into _text
        self._done = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""
        self._text = ""
        self._mark = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            if not data and self._follow():
                continue
            with self._cond:
                if not data:
                    self._cond.notify_all()
                    return
                self._buf += data
                self._cond.notify_all()

    def _follow(self) -> bool:
        """The connection ended: read on from the next QEMU's socket where
        there is one (True)."""
        path = None if self._closed or self._reconnect is None else self._reconnect()
        if path is None:
            return False
        try:
            sock = _connect(path, timeout=30)  # the new QEMU makes it first thing
        except OSError:
            return False
        with self._cond:
            if self._closed:
                sock.close()
                return False
            self._sock.close()
            self._sock = sock
        return True

    def following(self) -> bool:
        """Whether the reader still reads (or waits for the next QEMU)."""
        return self._reader.is_alive()

    def _catch_up(self) -> None:
        """Make plain text of the bytes that came since the last call (the
        caller holds the lock)."""
        new = bytes(self._buf[self._done :])
        self._done += len(new)
        text = self._held + self._decoder.decode(new)
        cut = _unfinished_escape(text)
        self._held = text[cut:]
        self._text += _plain(text[:cut])

    def text(self) -> str:
        """Everything the console printed, without escape sequences (one that
        the next chunk has yet to finish is not shown)."""
        with self._cond:
            self._catch_up()
            return self._text

    def expect(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait for ``pattern`` (a regex on the text without escape sequences)
        after the last match, and move past it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._catch_up()
                m = rx.search(self._text, self._mark)
                if m:
                    self._mark = m.end()
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    tail = self._text[self._mark :][-1500:]
                    raw = bytes(self._buf[-600:])
                    raise VMError(
                        f"console: no {pattern!r} within {timeout:.0f} s; it said:\n{tail}\n"
                        f"its last bytes as they came: {raw!r}"
                    )
                self._cond.wait(min(left, 1.0))

    def send(self, data: str, pause: float = 0.0) -> None:
        """Type ``data``; with ``pause``, one key at a time (escape sequences whole)."""
        if not pause:
            self._sock.sendall(data.encode())
            return
        for key in re.findall(r"\x1b\[[A-Z]|.", data, flags=re.S):
            self._sock.sendall(key.encode())
            time.sleep(pause)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            sock = self._sock
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def _connect(path: Path, timeout: float = 10) -> socket.socket:
    """Connect to QEMU's serial socket, waiting for QEMU to make it."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _powered_off(serial_log: Path) -> bool:
    """Whether the last thing Linux said on the console before QEMU ended
    was its power-off (a reset says "reboot: Restarting system" or "reboot:
    machine restart"; the firmware's own reset, nothing)."""
    try:
        with serial_log.open("rb") as f:
            f.seek(max(0, serial_log.stat().st_size - 8192))
            tail = f.read().decode(errors="replace")
    except OSError:
        return False
    said = re.findall(r"reboot: ([A-Za-z][A-Za-z ]*)", tail)
    return bool(said) and said[-1].strip().lower() == "power down"


# The escape sequences a firmware or Linux console sends: a control sequence
# (ESC [ parameters, ended by a letter) or a character-set choice (ESC ( or
# ESC ), ended by one more character). Their starts, without the end, are what
# a chunk can leave cut.
_CSI, _CHARSET = r"\x1b\[[0-9;?]*", r"\x1b[()]"


def _plain(text: str) -> str:
    """Console text without ANSI escape sequences."""
    return re.sub(rf"{_CSI}[A-Za-z]|{_CHARSET}[A-Z0-9]", "", text)


def _unfinished_escape(text: str) -> int:
    """Where an escape sequence that has not ended yet starts at the end of
    ``text`` (len(text) where none does)."""
    m = re.search(rf"(?:{_CSI}|{_CHARSET}|\x1b)\Z", text)
    return m.start() if m else len(text)


@dataclass
class VM:
    """One running QEMU guest on an overlay of the cached image."""

    name: str
    workdir: Path
    accel: str
    port: int
    key: Path
    proc: subprocess.Popen[bytes] | None = None
    console: Console | None = None
    started: float = field(default_factory=time.monotonic)
    # QEMU's command line (qemu_argv); each power cycle runs it again
    argv: list[str] = field(default_factory=list)
    # times QEMU was started again after the guest reset (see power_cycle)
    power_cycles: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stopping: bool = False

    def boot(self) -> None:
        """Start QEMU and attach the serial console (which follows it across
        power cycles)."""
        with self._lock:
            self.proc = self._launch()
        try:
            self.console = Console(self.workdir / "serial.sock", reconnect=self.power_cycle)
        except OSError as exc:
            said = (self.workdir / "qemu.log").read_text(errors="replace")[-2000:]
            self.stop()
            raise VMError(f"{self.name}: QEMU did not start: {said}") from exc

    def _launch(self) -> subprocess.Popen[bytes]:
        with (self.workdir / "qemu.log").open("ab") as qlog:
            return subprocess.Popen(
                self.argv,
                stdout=qlog,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def power_cycle(self) -> Path | None:
        """QEMU ended: where the guest reset (QEMU runs with ``-action
        reboot=shutdown``), start a new QEMU on the same disk and firmware
        variables, as a cold start, and return its serial socket; None where
        the guest powered off, QEMU failed, or we stop it.

        A reset inside one QEMU under TCG twice left the firmware spinning
        with nothing on the console for as long as the test waited (docs/vm-
        tier.md): a new QEMU never takes that path. What a reset keeps (the
        disk, the variables MokManager reads, the SSH port) lives in files
        and on the command line."""
        proc = self.proc
        if proc is None:
            return None
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            return None  # the socket closed but QEMU lives on: not a reset
        with self._lock:
            if self._stopping or rc != 0 or _powered_off(self.serial_log):
                return None
            self.proc = self._launch()
            self.power_cycles += 1
        log(f"{self.name}: the guest reset; QEMU started again (power cycle {self.power_cycles})")
        return self.workdir / "serial.sock"

    @property
    def serial_log(self) -> Path:
        return self.workdir / "serial.log"

    def ssh_argv(self, *command: str, user: str = SSH_USER) -> list[str]:
        return [
            "ssh",
            "-i", str(self.key),
            "-p", str(self.port),
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=10",
            f"{user}@127.0.0.1",
            *command,
        ]  # fmt: skip

    def ssh(
        self, command: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            self.ssh_argv(command), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and res.returncode != 0:
            raise VMError(
                f"{self.name}: {command!r} failed ({res.returncode}): {res.stdout}{res.stderr}"
            )
        return res

    def running(self) -> bool:
        if self.proc is not None and self.proc.poll() is None:
            return True
        # QEMU ended: the console's reader decides whether a new one starts
        # (power_cycle) and stops following when none does
        return self.console is not None and self.console.following()

    def wait_ssh(self, timeout: float = 300) -> float:
        """Wait until sshd answers; returns the seconds waited."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if not self.running():
                qlog = (self.workdir / "qemu.log").read_text(errors="replace").strip()
                raise VMError(f"{self.name}: QEMU exited: {' '.join(qlog.split())[-500:]}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                if self.ssh("true", check=False, timeout=20).returncode == 0:
                    return time.monotonic() - t0
            time.sleep(2)
        raise VMError(
            f"{self.name}: no SSH on 127.0.0.1:{self.port} within {timeout:.0f} s; "
            f"serial log {self.serial_log}:\n{_plain(self.serial_log.read_text(errors='replace'))[-2000:]}"  # noqa: E501
        )

    def boot_id(self) -> str:
        return self.ssh("cat /proc/sys/kernel/random/boot_id").stdout.strip()

    def stop(self, keep: bool = False) -> None:
        """Power the VM off (no guest shutdown: the overlay is thrown away)."""
        with self._lock:
            self._stopping = True  # no power cycle from here on
            proc = self.proc
        if self.console is not None:
            self.console.close()
            self.console = None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not keep:
            for f in ("overlay.qcow2", "vars.fd"):
                (self.workdir / f).unlink(missing_ok=True)


TCG_CPU = "max"
# One vCPU: beside CI's other stages (a core kept busy), a 2-vCPU guest under
# TCG booted, forked and built its initramfs 1.4 to 1.6 times slower than a
# 1-vCPU one (docs/benchmarks/vm-cpus-2026-12-07.md, benchmarks/vm_cpu.py).
# DLSETUP_VM_CPUS overrides.
VM_CPUS = 1


def vm_cpus() -> int:
    said = os.environ.get("DLSETUP_VM_CPUS") or str(VM_CPUS)
    if not said.isdigit() or int(said) < 1:
        raise VMError(
            f"DLSETUP_VM_CPUS: expected a whole number of vCPUs (1 or more), got {said!r}"
        )
    return int(said)


def qemu_argv(
    workdir: Path, accel: str, port: int, memory_mib: int = 2048, cpus: int | None = None
) -> list[str]:
    # -cpu host fails on machines that are themselves virtual (an MSR QEMU
    # cannot set): KVM runs QEMU's default CPU model. Under TCG, `max`, the
    # model every passing run of the tier used. `DLSETUP_VM_CPU=qemu64` makes
    # the guest's Python about 20 % faster (docs/vm-tier.md), but one of its
    # three full runs hung at GRUB after MokManager: not the default until
    # that is understood.
    if cpus is None:
        cpus = vm_cpus()
    accel_opts = ["-accel", "kvm"] if accel == "kvm" else [
        "-accel", "tcg,thread=multi", "-cpu", os.environ.get("DLSETUP_VM_CPU") or TCG_CPU
    ]  # fmt: skip
    return [
        QEMU,
        "-name", workdir.name,
        "-machine", "q35,smm=on",
        *accel_opts,
        "-smp", str(cpus),
        "-m", str(memory_mib),
        # Secure Boot: the firmware's variable store may only be written from SMM.
        "-global", "driver=cfi.pflash01,property=secure,value=on",
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
        "-drive", f"if=pflash,format=raw,unit=1,file={workdir / 'vars.fd'}",
        # cache=unsafe: a throw-away disk; QEMU writes what it holds when it
        # ends at a guest reset (a clean exit), so the next QEMU reads it all.
        "-drive", f"file={workdir / 'overlay.qcow2'},if=virtio,format=qcow2,cache=unsafe",
        "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=net0",
        "-device", "virtio-rng-pci",
        "-display", "none",
        "-chardev", f"socket,id=ser0,path={workdir / 'serial.sock'},server=on,wait=off,"
                    f"logfile={workdir / 'serial.log'},logappend=on",
        "-serial", "chardev:ser0",
        "-pidfile", str(workdir / "qemu.pid"),
        # A guest reset ends QEMU; VM.power_cycle starts it again (a cold start).
        "-action", "reboot=shutdown",
    ]  # fmt: skip


def start(name: str = "vm", accel: str | None = None, workdir: Path | None = None) -> VM:
    """Boot a VM on a fresh overlay of the cached image (built when missing)."""
    base = image_path()
    if not base.is_file():
        raise VMError(f"no VM image at {base}: python3 -m dlsetup.vmbox image")
    key, _ = ssh_key()
    accel = accel or accelerator()
    if workdir is None:
        (CACHE_DIR / "run").mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(dir=CACHE_DIR / "run", prefix=name + "."))
    _run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            str(base),
            str(workdir / "overlay.qcow2"),
        ],
        "qemu-img create",
    )
    shutil.copyfile(OVMF_VARS, workdir / "vars.fd")
    port = free_port()
    vm = VM(
        name=name, workdir=workdir, accel=accel, port=port, key=key,
        argv=qemu_argv(workdir, accel, port),
    )  # fmt: skip
    try:
        vm.boot()
    except VMError:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return vm


@contextlib.contextmanager
def running(name: str = "vm", accel: str | None = None, ssh_timeout: float = 300) -> Iterator[VM]:
    vm = start(name, accel)
    try:
        vm.wait_ssh(ssh_timeout)
        yield vm
    finally:
        vm.stop()


# ---------------------------------------------------------------- probe


def qemu_missing() -> str | None:
    """None when QEMU, qemu-img and OVMF are here; else what to install."""
    missing = [t for t in (QEMU, "qemu-img") if shutil.which(t) is None]
    missing += [str(p) for p in (OVMF_CODE, OVMF_VARS) if not p.is_file()]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install qemu-system-x86 ovmf qemu-utils)"
    return None


def _kvm_opens() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def _host_key() -> str:
    qemu = _run([QEMU, "--version"], "qemu --version").splitlines()[0]
    u = os.uname()
    return f"{qemu} | {u.release} {u.version} {u.machine}"


def accelerator(probe_timeout: float = 120) -> str:
    """'kvm' where a KVM guest really boots to SSH here, else 'tcg'.

    /dev/kvm opening is not enough: on a machine that is itself virtual a KVM
    guest can hang in early boot. So the first call boots the image under KVM
    once and keeps the verdict (per QEMU and host kernel) in the cache.
    ``DLSETUP_VM_ACCEL=kvm|tcg`` decides without a probe.
    """
    forced = os.environ.get("DLSETUP_VM_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced
    if not _kvm_opens():
        return "tcg"
    verdict_file = CACHE_DIR / "accel.json"
    key = _host_key()
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads(verdict_file.read_text())
        if cached.get("host") == key and cached.get("accel") in ("kvm", "tcg"):
            return str(cached["accel"])
    log(f"probing KVM: booting the image under KVM (up to {probe_timeout:.0f} s)")
    t0 = time.monotonic()
    try:
        vm = start("kvm-probe", accel="kvm")
    except VMError as exc:
        verdict, why = "tcg", f"QEMU did not start under KVM: {' '.join(str(exc).split())[:300]}"
    else:
        try:
            vm.wait_ssh(probe_timeout)
            verdict, why = "kvm", f"KVM guest reached SSH in {time.monotonic() - t0:.0f} s"
        except VMError as exc:
            verdict, why = "tcg", f"KVM guest did not reach SSH: {str(exc).splitlines()[0]}"
        finally:
            vm.stop()
            shutil.rmtree(vm.workdir, ignore_errors=True)
    log(f"accelerator: {verdict} ({why})")
    verdict_file.write_text(json.dumps({"host": key, "accel": verdict, "why": why}) + "\n")
    return verdict


# ---------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python3 -m dlsetup.vmbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("probe", help="say whether QEMU can run here and which accelerator works")
    i = sub.add_parser("image", help="build the VM image when it is missing or stale")
    i.add_argument("--force", action="store_true", help="rebuild even when up to date")
    b = sub.add_parser("boot", help="boot one VM, print how to reach it, keep it until Ctrl-C")
    b.add_argument("--accel", choices=["kvm", "tcg"])
    args = p.parse_args(argv)
    try:
        if args.cmd == "probe":
            why = qemu_missing()
            if why:
                print(f"cannot run VMs: {why}")
                return 1
            accel = accelerator() if image_path().is_file() else "unknown until the image is built"
            print(f"QEMU runs; accelerator: {accel}")
        elif args.cmd == "image":
            log(build_image(args.force))
        else:
            with running("boot", args.accel) as vm:
                print(" ".join(vm.ssh_argv()))
                print(f"serial log: {vm.serial_log}")
                with contextlib.suppress(KeyboardInterrupt):
                    while vm.running():
                        time.sleep(1)
    except VMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
