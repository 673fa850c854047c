"""Real disks for the disk_layout tests: loop-device images built with sfdisk and mkfs.

Everything here runs on the host as root. The images stand in for the disks of a
dual-boot deep-learning box:

* dual-boot: GPT with an ESP (vfat, files written with mtools), a Microsoft
  reserved partition, an NTFS "Basic data partition" with files (written through
  an ntfs-3g mount), an NTFS Windows recovery partition, a linux root (ext4) and
  free space at the end;
* data: GPT with one ext4 partition "data" (label data) holding files;
* blank: no partition table at all;
* superfloppy: ext4 on the whole disk, no partition table;
* dos: an MBR (dos) partition table.

This kernel has no vfat driver: the ESP is read and written with mtools, never
mounted.

`python tests/disk_images.py record tests/fixtures/disk_layout` rebuilds the
images and records what the planning module reads from them (lsblk, sfdisk,
blkid) into the JSON fixtures the unit tests use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ansible_collections.dlsetup.box.plugins.module_utils import disk_plan

REPO = Path(__file__).resolve().parents[1]

GPT_ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
GPT_MSR = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
GPT_BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
GPT_WINRE = "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC"
GPT_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

NEEDED_TOOLS = (
    "losetup",
    "partx",
    "sfdisk",
    "blkid",
    "lsblk",
    "parted",
    "mkfs.ext4",
    "mkfs.vfat",
    "mkfs.ntfs",
    "ntfslabel",
    "ntfs-3g",
    "mcopy",
    "mmd",
    "mkfs.xfs",
)

# What the tests write and later check, per filesystem: path -> size in bytes.
ESP_FILES = {
    "EFI/Microsoft/Boot/bootmgfw.efi": 96 * 1024,
    "EFI/Microsoft/Boot/BCD": 24 * 1024,
    "EFI/debian/grubx64.efi": 64 * 1024,
}
NTFS_FILES = {
    "Windows/System32/ntoskrnl.exe": 512 * 1024,
    "Users/ada/Documents/thesis.docx": 128 * 1024,
    "Users/ada/Pictures/cat.jpg": 200 * 1024,
}
DATA_FILES = {
    "datasets/imagenet/shard-000.tar": 1024 * 1024,
    "datasets/imagenet/shard-001.tar": 1024 * 1024,
    "checkpoints/resnet50/epoch-90.pt": 512 * 1024,
    "README.txt": 100,
}
ROOT_FILES = {"etc/hostname": 16, "home/ada/.bashrc": 2048}


def sh(
    *argv: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LC_ALL": "C", "MTOOLS_SKIP_CHECK": "1"}
    proc = subprocess.run(
        list(argv), check=False, input=stdin, capture_output=True, text=True, env=env
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def host_problem() -> str | None:
    """Why these tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (loop devices, mkfs, mount)"
    missing = [t for t in NEEDED_TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing host tools: {', '.join(missing)} (run scripts/setup-host)"
    if not Path("/dev/loop-control").exists():
        return "no /dev/loop-control: loop devices are not available"
    probe = sh("losetup", "-f", check=False)
    if probe.returncode != 0:
        return f"losetup cannot find a free loop device: {probe.stderr.strip()}"
    return None


class LoopDisks:
    """Images and loop devices under one work directory, all undone by cleanup()."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.loops: list[str] = []

    # -- images ------------------------------------------------------------
    def image(self, name: str, size_mib: int) -> Path:
        path = self.workdir / f"{name}.img"
        with path.open("wb") as handle:
            handle.truncate(size_mib * 1024 * 1024)
        return path

    def attach(self, image: Path) -> str:
        loop = sh("losetup", "-f", "--show", "-P", str(image)).stdout.strip()
        self.loops.append(loop)
        self.rescan(loop)
        return loop

    @staticmethod
    def rescan(loop: str) -> None:
        """Make the kernel see the partition table (sfdisk on a loop device does not)."""
        sh("partx", "-u", loop, check=False)

    def mountpoint(self, name: str) -> Path:
        path = self.workdir / "mnt-tools" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- undo ----------------------------------------------------------------
    def mounts_below(self) -> list[str]:
        """Mount points under the work dir or on our loop devices, deepest first."""
        found = []
        with open("/proc/self/mounts", encoding="utf-8") as handle:
            for line in handle:
                source, target = line.split()[:2]
                target = target.replace("\\040", " ")
                mine = target.startswith(str(self.workdir)) or any(
                    source == loop or source.startswith(f"{loop}p") for loop in self.loops
                )
                if mine:
                    found.append(target)
        return sorted(set(found), key=lambda t: t.count("/"), reverse=True)

    def unmount_all(self) -> None:
        for _ in range(3):
            targets = self.mounts_below()
            if not targets:
                return
            for target in targets:
                if sh("umount", target, check=False).returncode != 0:
                    sh("umount", "-l", target, check=False)

    def cleanup(self) -> None:
        self.unmount_all()
        for loop in reversed(self.loops):
            for _ in range(5):
                if sh("losetup", "-d", loop, check=False).returncode == 0:
                    break
                time.sleep(0.2)
        self.loops.clear()


# -- building the disks -------------------------------------------------------


def write_table(disks: LoopDisks, loop: str, script: str) -> None:
    sh("sfdisk", "--quiet", "--wipe", "always", loop, stdin=script)
    disks.rescan(loop)


def payload(size: int) -> bytes:
    return os.urandom(size)


def write_tree(root: Path, files: dict[str, int]) -> None:
    for rel, size in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload(size))


def write_esp(disks: LoopDisks, node: str) -> None:
    staging = disks.workdir / "esp-staging"
    shutil.rmtree(staging, ignore_errors=True)
    write_tree(staging, ESP_FILES)
    for rel in sorted({str(Path(r).parent) for r in ESP_FILES}, key=len):
        parts = Path(rel).parts
        for depth in range(1, len(parts) + 1):
            sh("mmd", "-D", "s", "-i", node, "::/" + "/".join(parts[:depth]), check=False)
    for rel in ESP_FILES:
        sh("mcopy", "-o", "-i", node, str(staging / rel), "::/" + rel)
    shutil.rmtree(staging)


def write_mounted(disks: LoopDisks, node: str, files: dict[str, int], ntfs: bool = False) -> None:
    target = disks.mountpoint(Path(node).name)
    if ntfs:
        sh("ntfs-3g", node, str(target))
    else:
        sh("mount", node, str(target))
    try:
        write_tree(target, files)
    finally:
        sh("umount", str(target))


def build_dualboot(disks: LoopDisks, name: str = "dualboot", size_mib: int = 512) -> str:
    """ESP 32MiB, MSR 16MiB, NTFS 64MiB, WinRE 16MiB, linux-root 96MiB, then free space."""
    loop = disks.attach(disks.image(name, size_mib))
    write_table(
        disks,
        loop,
        "\n".join(
            [
                "label: gpt",
                f'size=32MiB, type={GPT_ESP}, name="EFI"',
                f'size=16MiB, type={GPT_MSR}, name="Microsoft reserved partition"',
                f'size=64MiB, type={GPT_BASIC_DATA}, name="Basic data partition"',
                f'size=16MiB, type={GPT_WINRE}, name="Recovery"',
                f'size=96MiB, type={GPT_LINUX}, name="linux-root"',
            ]
        )
        + "\n",
    )
    sh("mkfs.vfat", "-n", "EFI", f"{loop}p1")
    write_esp(disks, f"{loop}p1")
    sh("mkfs.ntfs", "--quiet", "--fast", "--label", "Windows", f"{loop}p3")
    write_mounted(disks, f"{loop}p3", NTFS_FILES, ntfs=True)
    sh("mkfs.ntfs", "--quiet", "--fast", "--label", "Recovery", f"{loop}p4")
    # mkfs.ntfs seeds its serial from the clock: two in one second share a UUID.
    sh("ntfslabel", "--new-serial", f"{loop}p4")
    sh("mkfs.ext4", "-q", "-L", "linux-root", f"{loop}p5")
    write_mounted(disks, f"{loop}p5", ROOT_FILES)
    return loop


def build_data(disks: LoopDisks, name: str = "data", size_mib: int = 128) -> str:
    loop = disks.attach(disks.image(name, size_mib))
    write_table(disks, loop, f'label: gpt\ntype={GPT_LINUX}, name="data"\n')
    sh("mkfs.ext4", "-q", "-L", "data", f"{loop}p1")
    write_mounted(disks, f"{loop}p1", DATA_FILES)
    return loop


def build_blank(disks: LoopDisks, name: str = "blank", size_mib: int = 64) -> str:
    return disks.attach(disks.image(name, size_mib))


def build_superfloppy(disks: LoopDisks, name: str = "superfloppy", size_mib: int = 32) -> str:
    loop = disks.attach(disks.image(name, size_mib))
    sh("mkfs.ext4", "-q", "-L", "whole", loop)
    return loop


def build_dos(disks: LoopDisks, name: str = "dos", size_mib: int = 32) -> str:
    loop = disks.attach(disks.image(name, size_mib))
    write_table(disks, loop, "label: dos\nsize=16MiB, type=83\n")
    sh("mkfs.ext4", "-q", "-L", "old", f"{loop}p1")
    return loop


# -- looking at the disks -----------------------------------------------------


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every regular file below root, by relative path."""
    digests = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "System Volume Information" not in path.parts:
            digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def esp_digest(disks: LoopDisks, node: str) -> dict[str, str]:
    out = disks.workdir / "esp-read"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    sh("mcopy", "-s", "-n", "-i", node, "::/*", str(out))
    try:
        return tree_digest(out)
    finally:
        shutil.rmtree(out)


def current_mountpoint(node: str) -> str | None:
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        for line in handle:
            source, target = line.split()[:2]
            if source == node:
                return target.replace("\\040", " ")
    return None


def fs_digest(disks: LoopDisks, node: str, ntfs: bool = False) -> dict[str, str]:
    """Checksums of every file on a filesystem, read-only (mounted or not)."""
    mounted = current_mountpoint(node)
    if mounted:
        return tree_digest(Path(mounted))
    target = disks.mountpoint(Path(node).name + "-ro")
    if ntfs:
        sh("ntfs-3g", "-o", "ro", node, str(target))
    else:
        sh("mount", "-o", "ro", node, str(target))
    try:
        return tree_digest(target)
    finally:
        sh("umount", str(target))


def table_digest(image: Path) -> str:
    """sha256 of both GPT copies (first 34 and last 33 sectors) of an image."""
    size = image.stat().st_size
    with image.open("rb") as handle:
        head = handle.read(34 * 512)
        handle.seek(size - 33 * 512)
        tail = handle.read()
    return hashlib.sha256(head + tail).hexdigest()


def blkid_value(node: str, key: str) -> str | None:
    proc = sh("blkid", "-p", "-o", "value", "-s", key, node, check=False)
    return proc.stdout.strip() or None


def record_facts(device: str) -> dict:
    """What disk_layout_plan reads from one disk (the planner's own gatherer)."""

    def run(argv: list[str]) -> tuple[int, str, str]:
        proc = sh(*argv, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    return disk_plan.gather_disk_facts(device, run)


def mounts_of(loops: list[str]) -> str:
    """The lines of /proc/self/mounts for partitions of these loop devices only."""
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        return "".join(
            line for line in handle if any(line.startswith(f"{loop}p") for loop in loops)
        )


# -- boxes with real disks ----------------------------------------------------

# Containers of the disk tests are named with this prefix.
BOX_PREFIX = "dlsetup-disk-"

# docker run arguments for a box that sees the host's loop devices
# (/work/shared/TESTING.md): block major 7 (loop), 259 (extended partition
# numbers), /dev/loop-control, and the host's /dev so that the partition
# nodes the role creates (partx -u) appear in the box too. The box's caps
# (ALL but SYS_RESOURCE) and apparmor=unconfined come from localbox.BoxSpec.
LOOP_BOX_ARGS = [
    "--device-cgroup-rule=b 7:* rmw",
    "--device-cgroup-rule=c 10:237 rmw",
    "--device-cgroup-rule=b 259:* rmw",
]
LOOP_BOX_VOLUMES = ["/dev:/dev"]


def raw_digest(node: str) -> str:
    """sha256 of every byte of a block device (a partition): byte-identical or not."""
    os.sync()
    digest = hashlib.sha256()
    with open(node, "rb") as handle:
        for block in iter(lambda: handle.read(4 * 1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


# -- driving the role ---------------------------------------------------------


def lab_spec(dualboot: str, data: str, blank: str) -> list[dict]:
    """The spec the tests apply: the issue's example, scaled to the images."""
    return [
        {
            "device": dualboot,
            "partitions": [
                # No vfat in this kernel: the ESP's mount is checked in fstab, not mounted.
                {
                    "name": "EFI",
                    "size": "32MiB",
                    "fstype": "vfat",
                    "mount": "/boot/efi",
                    "mount_state": "present",
                    "preserve": True,
                },
                {"name": "Microsoft reserved partition", "size": "16MiB", "preserve": True},
                {
                    "name": "Basic data partition",
                    "size": "64MiB",
                    "fstype": "ntfs",
                    "preserve": True,
                },
                {
                    "name": "linux-root",
                    "size": "96MiB",
                    "fstype": "ext4",
                    "mount": "/",
                    "preserve": True,
                },
                {
                    "name": "scratch",
                    "size": "100%",
                    "fstype": "ext4",
                    "mount": "/scratch",
                    "mount_options": "defaults,noatime,nofail",
                },
            ],
        },
        {
            "device": data,
            "partitions": [
                {
                    "name": "data",
                    "size": "100%",
                    "fstype": "ext4",
                    "fs_label": "data",
                    "mount": "/data",
                    "mount_options": "defaults,nofail",
                },
            ],
        },
        {
            "device": blank,
            "table": "gpt",
            "partitions": [
                {
                    "name": "models",
                    "size": "50%",
                    "fstype": "ext4",
                    "fs_label": "models",
                    "mount": "/models",
                },
                {"name": "cache", "size": "100%", "fstype": "ext4"},
            ],
        },
    ]


class RoleRun:
    """One ansible-playbook run of playbooks/disks.yml, parsed from the json callback."""

    def __init__(self, proc: subprocess.CompletedProcess[str], log: Path) -> None:
        self.rc = proc.returncode
        self.log = log
        self.stderr = proc.stderr
        try:
            self.data = json.loads(proc.stdout[proc.stdout.index("{") :])
        except ValueError:
            self.data = {"plays": [], "stats": {}}
        self.stats = self.data.get("stats", {}).get("localhost", {})

    @property
    def changed(self) -> int:
        return int(self.stats.get("changed", -1))

    @property
    def failed(self) -> bool:
        return self.rc != 0

    def results(self, task_name: str) -> list[dict]:
        found = []
        for play in self.data.get("plays", []):
            for task in play.get("tasks", []):
                if task["task"]["name"] == task_name or task["task"]["name"].endswith(
                    " : " + task_name
                ):
                    found.append(task["hosts"].get("localhost", {}))
        return found

    def result(self, task_name: str) -> dict:
        found = self.results(task_name)
        assert found, f"task {task_name!r} did not run; see {self.log}"
        return found[-1]

    @property
    def plan(self) -> dict:
        return self.result("Plan the disk layout")

    def failure_messages(self) -> str:
        msgs = []
        for play in self.data.get("plays", []):
            for task in play.get("tasks", []):
                res = task["hosts"].get("localhost", {})
                if res.get("failed"):
                    msgs.append(str(res.get("msg")))
        return "\n".join(msgs) + self.stderr

    def changed_tasks(self) -> list[str]:
        names = []
        for play in self.data.get("plays", []):
            for task in play.get("tasks", []):
                if task["hosts"].get("localhost", {}).get("changed"):
                    names.append(task["task"]["name"])
        return names

    def explain(self) -> str:
        return (
            f"rc={self.rc} changed={self.changed_tasks()} log={self.log}\n"
            + self.failure_messages()[-3000:]
        )


def ansible_playbook() -> str:
    local = Path(sys.executable).parent / "ansible-playbook"
    if local.exists():
        return str(local)
    found = shutil.which("ansible-playbook")
    assert found, "ansible-playbook not found (run scripts/setup-host)"
    return found


def run_role(
    workdir: Path,
    variables: dict,
    *,
    check: bool = False,
    diff: bool = False,
    extra: tuple[str, ...] = (),
) -> RoleRun:
    """Apply playbooks/disks.yml to localhost; mounts and fstab live under workdir.

    The host's /etc/fstab, /etc/adjtime and /etc/default/grub are never touched:
    the role's fstab path, adjtime path, GRUB files and mount prefix point into
    workdir. No packages are installed (the host has the tools).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    runs = sorted(workdir.glob("run-*.json"))
    n = len(runs) + 1
    base = {
        "__disk_layout_mount_prefix": str(workdir / "root"),
        "disk_layout_fstab_path": str(workdir / "fstab"),
        "__disk_layout_adjtime_path": str(workdir / "adjtime"),
        "__disk_layout_grub_default_file": str(workdir / "default-grub"),
        "__disk_layout_update_grub_argv": [
            "/usr/bin/touch",
            str(workdir / "grub-menu-regenerated"),
        ],
        "disk_layout_install_packages": False,
        "ansible_become": False,
        "ansible_python_interpreter": sys.executable,
    }
    vars_file = workdir / f"run-{n:02d}.json"
    vars_file.write_text(json.dumps({**base, **variables}, indent=1))
    cmd = [
        ansible_playbook(),
        "-i",
        "localhost,",
        "-c",
        "local",
        str(REPO / "playbooks" / "disks.yml"),
        "-e",
        f"@{vars_file}",
        *extra,
    ]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
    }
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=REPO, env=env)
    log = workdir / f"run-{n:02d}.log"
    log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return RoleRun(proc, log)


def record(outdir: Path) -> None:
    """Build the images, record the planner's inputs before and after a real run.

    pristine.json        the dual-boot, data and blank disks as built
    after-first-run.json the same disks after the role applied lab_spec(), with
                         the fstab it wrote and the mounts it made
    superfloppy.json     ext4 on a whole disk, no partition table
    dos.json             an MBR partition table
    """
    outdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="dl-record-"))
    disks = LoopDisks(workdir)

    def save(name: str, devices: dict[str, str], **extra: object) -> None:
        doc = {
            "devices": devices,
            "facts": {d: record_facts(d) for d in devices.values()},
            "fstab": "",
            "mounts": "",
            "mount_prefix": "",
            **extra,
        }
        (outdir / f"{name}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        print(f"recorded {name}: {devices}")

    try:
        devices = {
            "dualboot": build_dualboot(disks),
            "data": build_data(disks),
            "blank": build_blank(disks),
        }
        save("pristine", devices)
        run = run_role(workdir / "role", {"disk_layout_disks": lab_spec(**devices)})
        if run.failed:
            raise RuntimeError(run.explain())
        save(
            "after-first-run",
            devices,
            fstab=(workdir / "role" / "fstab").read_text(),
            mounts=mounts_of(list(devices.values())),
            mount_prefix=str(workdir / "role" / "root"),
        )
        save("superfloppy", {"superfloppy": build_superfloppy(disks)})
        save("dos", {"dos": build_dos(disks)})
    finally:
        disks.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


# -- the sample machine's plan ------------------------------------------------

# The disks of inventory/sample/host_vars/mybox.yml, at their real sizes.
SAMPLE_NVME = "/dev/disk/by-id/nvme-Samsung_SSD_960_EVO_1TB_S3X9NB0K000000"
SAMPLE_HDD = "/dev/disk/by-id/ata-WDC_WD30EFRX-68EUZN0_WD-WCC4N0000000"
SAMPLE_NVME_BYTES = 1_000_204_886_016  # Samsung 960 EVO 1TB
SAMPLE_HDD_BYTES = 3_000_592_982_016  # WD Red 3TB


def build_sample_disks(disks: LoopDisks) -> dict[str, str]:
    """Sparse images shaped like the seed machine's disks, as they are before dlsetup.

    NVMe: ESP 512MiB (vfat), MSR 16MiB, Windows 200GiB (NTFS), Windows recovery
    529MiB (NTFS, unnamed, as Windows makes it), linux-root 300GiB (ext4), the
    rest free. HDD: an empty GPT (a new disk, initialised).
    """

    def sparse(name: str, size: int) -> str:
        path = disks.workdir / f"{name}.img"
        with path.open("wb") as handle:
            handle.truncate(size)
        return disks.attach(path)

    nvme = sparse("sample-nvme", SAMPLE_NVME_BYTES)
    write_table(
        disks,
        nvme,
        "\n".join(
            [
                "label: gpt",
                f'size=512MiB, type={GPT_ESP}, name="EFI"',
                f'size=16MiB, type={GPT_MSR}, name="Microsoft reserved partition"',
                f'size=200GiB, type={GPT_BASIC_DATA}, name="Basic data partition"',
                f"size=529MiB, type={GPT_WINRE}",
                f'size=300GiB, type={GPT_LINUX}, name="linux-root"',
            ]
        )
        + "\n",
    )
    sh("mkfs.vfat", "-F", "32", "-n", "EFI", f"{nvme}p1")
    sh("mkfs.ntfs", "--quiet", "--fast", "--label", "Windows", f"{nvme}p3")
    sh("mkfs.ntfs", "--quiet", "--fast", "--label", "Recovery", f"{nvme}p4")
    sh("ntfslabel", "--new-serial", f"{nvme}p4")
    sh("mkfs.ext4", "-q", "-E", "lazy_itable_init=1,lazy_journal_init=1", f"{nvme}p5")
    hdd = sparse("sample-hdd", SAMPLE_HDD_BYTES)
    write_table(disks, hdd, "label: gpt\n")
    return {"nvme": nvme, "hdd": hdd}


def sample_plan(out: Path) -> None:
    """`dlsetup plan --host mybox --tags disks` against a box with the sample's disks.

    The inventory is inventory/sample with mybox pointed at the box; the box sees
    the loop devices as /dev/disk/by-id/... links (made in the box's own /dev),
    so host_vars/mybox.yml is used exactly as it is.
    """
    import shutil as _shutil  # noqa: PLC0415

    sys.path.insert(0, str(REPO))
    from tests.boxes import dlsetup, make_key, remove_boxes, start_box, write_inventory  # noqa: PLC0415

    box_name = f"{BOX_PREFIX}sample"
    workdir = Path(tempfile.mkdtemp(prefix="dl-sample-"))
    disks = LoopDisks(workdir)
    try:
        loops = build_sample_disks(disks)
        nodes = [
            str(p)
            for loop in loops.values()
            for p in [Path(loop), *sorted(Path("/dev").glob(Path(loop).name + "p*"))]
        ]
        key, pub = make_key(workdir)
        box = start_box(box_name, pub, devices=nodes)
        links = {SAMPLE_NVME: loops["nvme"], SAMPLE_HDD: loops["hdd"]}
        subprocess.run(
            ["docker", "exec", box_name, "sh", "-c", "mkdir -p /dev/disk/by-id && "
             + " && ".join(f"ln -sf {dev} {link}" for link, dev in links.items())],
            check=True,
        )  # fmt: skip
        inv = workdir / "inventory"
        _shutil.copytree(REPO / "inventory" / "sample", inv)
        write_inventory(inv / "hosts.yml", key, {"mybox": {"ansible_host": box.address}})
        env = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
        argv = ["plan", "--host", "mybox", "-i", str(inv), "--tags", "disks"]
        res = dlsetup(*argv, env=env)
        doc = dlsetup(*argv, "--json", env=env).doc
        host = doc["hosts"]["mybox"]
        sections = [
            "# Real output, produced by\n"
            "#   python tests/disk_images.py sample-plan docs/disk-plan-sample.txt\n"
            "# against a box whose disks are sparse images of the sizes in\n"
            "# inventory/sample/host_vars/mybox.yml, seen under the same /dev/disk/by-id\n"
            f"# names: NVMe {SAMPLE_NVME_BYTES} bytes with EFI, MSR, Windows, Windows\n"
            f"# recovery and linux-root; HDD {SAMPLE_HDD_BYTES} bytes with an empty GPT.\n"
            "# host_vars/mybox.yml is used as it is. Nothing was changed.\n",
            "$ dlsetup plan --host mybox --tags disks\n"
            + (
                res.stdout + res.stderr
                if res.rc in (0, 1) and "Traceback" not in res.stderr
                else f"(this version of the CLI could not print its table: exit code {res.rc}, "
                + res.stderr.strip().splitlines()[-1]
                + ")\n"
            ),
            "$ dlsetup plan --host mybox --tags disks --json   # the disk plan it carries:\n"
            + f"status: {doc['status']}, exit code {doc['exit_code']}\n\n"
            + "\n".join(host["reports"].get("disk_layout_report", {}).get("plan", []))
            + "\n\nwould change:\n"
            + "".join(
                f"  {c['kind']:<8} {c['task']}" + (f" [{c['item']}]" if c["item"] else "") + "\n"
                for c in host["changes"]
            )
            + "left out:\n"
            + "".join(f"  {s['step']}: {s['reason']}\n" for s in host["skipped_steps"]),
        ]
        out.write_text("\n".join(sections))
        print(f"wrote {out} (dlsetup plan exit code {res.rc})")
    finally:
        remove_boxes([box_name])
        disks.cleanup()
        _shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("record", "sample-plan"):
        problem = host_problem()
        if problem:
            sys.exit(f"cannot {sys.argv[1]}: {problem}")
        if sys.argv[1] == "record":
            record(Path(sys.argv[2]))
        else:
            sample_plan(Path(sys.argv[2]))
    else:
        sys.exit("usage: disk_images.py record OUTDIR | sample-plan OUTFILE")
