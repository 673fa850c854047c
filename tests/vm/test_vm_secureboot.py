"""Secure Boot with a real machine owner key, a kernel update, and a real
reboot-and-resume (issue 15, scenarios 2, 3 and 1), in one VM and through the
real CLI (`dlsetup provision --host vm1 --tags driver` over SSH): each boot
under emulation costs a minute or two, so the three share the reboot into
MokManager.

The VM boots OVMF with Microsoft's keys and Secure Boot enforced, then
Debian's signed shim, GRUB and kernel, which locks itself down: only modules
signed by a key the firmware or shim trusts load.

The driver package is a stand-in: `dlsetup-vmtest-dkms`, a .deb the test
builds from tests/vm/dkms (a tiny module) and serves to the VM from a local
apt source, given to the role as `nvidia_driver_packages` with
`nvidia_driver_dkms_module: dlsetup-vmtest`. Like nvidia-kernel-dkms it puts
its source under /usr/src and has DKMS build it at install. The NVIDIA
module's own DKMS build takes far too long under emulation; the container
tier proves that build (tests/integration, the DKMS test). The steps:

1. First run: the role sees Secure Boot on, creates the MOK, writes DKMS's
   signing configuration and queues the key with mokutil before DKMS builds
   anything, installs the package (DKMS builds and signs the module), and
   stops, saying to reboot with someone at the console (never an unattended
   reboot into MokManager). The kernel refuses the module: the key is not
   enrolled yet.
2. A kernel update, as unattended-upgrades brings one (scenario 3): apt
   upgrades the kernel metapackages (linux-image-amd64 and the
   linux-headers-amd64 the role keeps installed) from the VM's own sources,
   bookworm-security included, which pulls a newer ABI than the point
   release the image ships (the test first checks that one exists). The
   kernel's and the headers' postinst hooks run DKMS: right after apt,
   without the test calling dkms, the module is installed for the new kernel
   and signed with the MOK. /vmlinuz, which the image's GRUB boots
   (update-grub's newest-first default on an installed server), now points
   at the new kernel. Where the archive has no newer ABI than the image, the
   cloud flavour of the candidate ABI (another real, Debian-signed kernel)
   stands in for it, and the test says so.
3. Second run, with `nvidia_driver_mok_at_console: true` (someone is at the
   screen): the role reboots the VM through ansible.builtin.reboot
   (scenario 1, reboot-and-resume for real, for a reason a GPU-less box
   really has: the key waiting in MokManager) while the test answers
   MokManager on the serial console as a user at the screen would (Enroll
   MOK, Continue, Yes, password, Reboot); the run waits through both boots
   and finishes in the new boot: boot id changed, the new kernel running,
   the key enrolled. The module DKMS built at the kernel's install then
   loads, and the same module with its signature stripped is refused.
4. Third run: changed=0.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dlsetup import vmbox
from tests.aptrepo import _stanza, build_deb
from tests.boxes import CliResult, dlsetup, write_inventory
from tests.vm.helpers import enroll_mok, read_json

HERE = Path(__file__).resolve().parent
LOGS = HERE.parent.parent / ".cache" / "logs"
MOK_DIR = "/var/lib/dlsetup/mok"
PASSWORD = "dlsetup-vm"  # a throw-away VM's MOK password
MODULE = "dlsetup_vmtest"
DKMS_MODULE = "dlsetup-vmtest/1.0"
APT = "sudo env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300"


PACKAGE = "dlsetup-vmtest-dkms"
REPO_DIR = "/srv/dlsetup-vmtest-repo"


def _package_repo(vm: vmbox.VM, tmp: Path) -> None:
    """The stand-in driver package in a local apt source on the VM, as a
    vendor's archive serves nvidia-kernel-dkms: the module's source under
    /usr/src, registered with DKMS and built at install."""
    src = HERE / "dkms" / "dlsetup-vmtest"
    pkg = {
        "name": PACKAGE,
        "version": "1.0-1",
        "architecture": "all",
        "depends": "dkms",
        "section": "kernel",
        "description": "tiny DKMS module standing in for the NVIDIA module (dlsetup VM tier)",
        "files": {
            f"/usr/src/dlsetup-vmtest-1.0/{f.name}": f.read_text() for f in sorted(src.iterdir())
        },
        "postinst": (
            "#!/bin/sh\nset -e\n"
            'if [ "$1" = configure ]; then\n'
            "  dkms add -m dlsetup-vmtest -v 1.0 || true\n"
            "  dkms install -m dlsetup-vmtest -v 1.0\n"
            "fi\n"
        ),
        "prerm": "#!/bin/sh\ndkms remove -m dlsetup-vmtest -v 1.0 --all || true\n",
    }
    repo = tmp / "repo"
    repo.mkdir()
    deb = build_deb(pkg, repo)
    (repo / "Packages").write_text(_stanza(pkg, deb, repo))
    tar = subprocess.run(["tar", "-C", str(repo), "-c", "."], capture_output=True, check=True)
    subprocess.run(
        vm.ssh_argv(f"sudo mkdir -p {REPO_DIR} && sudo tar -C {REPO_DIR} -x"),
        input=tar.stdout,
        capture_output=True,
        check=True,
    )
    vm.ssh(
        "printf '%s\\n' '# dlsetup VM tier: the stand-in driver package (local, test only)' "
        f"'Types: deb' 'URIs: file:{REPO_DIR}' 'Suites: ./' 'Trusted: yes' "
        "| sudo tee /etc/apt/sources.list.d/dlsetup-vmtest.sources >/dev/null"
    )
    # read as a user who adds a source does (that source alone)
    vm.ssh(
        "sudo apt-get update -q -o Dir::Etc::SourceList=/etc/apt/sources.list.d/dlsetup-vmtest.sources"
        " -o Dir::Etc::SourceParts=- -o APT::Get::List-Cleanup=0",
        timeout=600,
    )


def _inventory(vm: vmbox.VM, path: Path, **extra: object) -> Path:
    """The VM as a user lists a machine (a name, an address, a port, a key),
    with the stand-in package as the driver and a MOK password. Named, not
    listed as 127.0.0.1: the VM is not the machine dlsetup runs on."""
    host = {
        "ansible_host": "127.0.0.1",
        "ansible_port": vm.port,
        "nvidia_driver_packages": [PACKAGE],
        "nvidia_driver_dkms_module": "dlsetup-vmtest",
        "nvidia_driver_mok_password": PASSWORD,
        "nvidia_driver_reboot_timeout": 1800,  # two boots under emulation, a person typing
        # nvidia-persistenced serves GPUs (none here) and would pull the NVIDIA libraries
        "nvidia_driver_persistence": False,
        **extra,
    }
    return write_inventory(path, vm.key, {"vm1": host})


def _provision(inv: Path) -> CliResult:
    return dlsetup(
        "provision", "--host", "vm1", "-i", str(inv), "--tags", "driver", "--json", timeout=3600
    )


def _failed(res: CliResult) -> str:
    return f"rc={res.rc}\n{res.stdout[-4000:]}\n{res.stderr[-3000:]}"


def _load(vm: vmbox.VM, command: str) -> subprocess.CompletedProcess[str]:
    return vm.ssh(f"sudo {command} 2>&1", check=False)


def _abi(release: str) -> tuple[int, ...]:
    """6.1.0-57-amd64 -> (6, 1, 0, 57): what orders Debian's kernel ABIs."""
    m = re.match(r"(\d+)\.(\d+)\.(\d+)-(\d+)-", release)
    assert m, f"not a Debian kernel release: {release!r}"
    return tuple(int(x) for x in m.groups())


def _candidate(vm: vmbox.VM, meta: str) -> str:
    """The kernel release apt's candidate of a metapackage depends on."""
    show = vm.ssh(f"apt-cache show --no-all-versions {meta}").stdout
    m = re.search(r"^Depends:.*?\blinux-image-(\S+)", show, re.M)
    assert m, show
    return m.group(1)


def _kernel_update(vm: vmbox.VM, old: str) -> tuple[str, str, str]:
    """Install a newer kernel as unattended-upgrades would; returns (new
    kernel release, what it stands for, apt's output)."""
    vm.ssh(f"{APT} update", timeout=900)
    new = _candidate(vm, "linux-image-amd64")
    if _abi(new) > _abi(old):
        # Both metapackages are installed: installing them upgrades them to
        # the candidate, which pulls the new ABI's image and headers. No
        # recommends: the image was made without them (apparmor would come).
        metas = "linux-image-amd64 linux-headers-amd64"
        what = f"security update: {old} -> {new} (linux-image-amd64 from bookworm-security)"
    else:
        # No newer ABI than the image's in the archive today: another real,
        # Debian-signed kernel with its own release stands in for it.
        metas = "linux-image-cloud-amd64 linux-headers-cloud-amd64"
        new = _candidate(vm, "linux-image-cloud-amd64")
        what = f"no newer ABI than {old} in the archive; {new} (cloud flavour) stands in for it"
    assert new != old
    assert vm.ssh(f"sudo test -e /lib/modules/{new}", check=False).returncode != 0
    res = vm.ssh(f"{APT} install --no-install-recommends {metas} 2>&1", timeout=1800)
    return new, what, res.stdout


def test_secure_boot_mok_kernel_update_and_reboot_through_the_cli(
    vm: vmbox.VM, tmp_path: Path
) -> None:
    times: dict[str, object] = {}
    t_step = time.monotonic()

    def took(step: str) -> None:
        nonlocal t_step
        now = time.monotonic()
        times[step] = round(now - t_step)
        t_step = now
        # kept on success too: docs/vm-tier.md quotes the step times
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / "vm-secureboot-steps.json").write_text(json.dumps(times, indent=1) + "\n")

    assert "SecureBoot enabled" in vm.ssh("mokutil --sb-state").stdout
    assert "Secure boot enabled" in vm.ssh("sudo dmesg").stdout
    old = vm.ssh("uname -r").stdout.strip()
    _package_repo(vm, tmp_path)

    # 1. first run: key made and queued, package installed, module signed; a stop
    inv = _inventory(vm, tmp_path / "hosts.yml")
    first = _provision(inv)
    assert first.rc == 0, _failed(first)
    host = first.doc["hosts"]["vm1"]
    assert host["failed"] == 0 and host["changed"] > 0
    assert host["reboot_required"] is True
    assert "with someone at its console" in first.stdout
    assert "nvidia_driver_mok_at_console: true" in first.stdout
    state = read_json(vm, "/var/lib/dlsetup/nvidia_driver.json")
    assert state["secure_boot"] == "enabled" and state["mok"] == "pending"
    assert state["mok_enroll_pending"] is True and state["reboot_required"] is True
    assert (
        "enrollment request"
        in vm.ssh(f"sudo mokutil --test-key {MOK_DIR}/dlsetup-mok.der", check=False).stdout
    )
    conf = vm.ssh("cat /etc/dkms/framework.conf.d/dlsetup-mok.conf").stdout
    assert f'mok_signing_key="{MOK_DIR}/dlsetup-mok.priv"' in conf
    assert vm.ssh(f"dpkg-query -W -f '${{Status}}' {PACKAGE}").stdout == "install ok installed"
    status = vm.ssh("sudo dkms status").stdout
    assert re.search(rf"^{re.escape(DKMS_MODULE)}, {re.escape(old)}, \S+: installed", status, re.M)
    signer = vm.ssh(f"sudo modinfo -F signer {MODULE}").stdout.strip()
    assert signer.startswith("dlsetup module signing key")
    refused = _load(vm, f"modprobe {MODULE}")
    assert refused.returncode != 0, refused.stdout
    refusal = refused.stdout.strip()
    took("1 first run")

    # 2. a newer kernel arrives; its install hooks have DKMS build and sign
    # the module for it (the test itself only reads dkms status)
    new, what, apt_out = _kernel_update(vm, old)
    LOGS.mkdir(parents=True, exist_ok=True)
    (LOGS / "vm-kernel-update.apt.log").write_text(apt_out)
    took("2 kernel update")
    times["kernels"] = what
    status = vm.ssh("sudo dkms status").stdout
    assert re.search(
        rf"^{re.escape(DKMS_MODULE)}, {re.escape(new)}, \S+: installed", status, re.M
    ), status + apt_out[-3000:]
    # the kernel's (or the headers') postinst hook ran DKMS for the new kernel
    dkms_lines = [line for line in apt_out.splitlines() if "dkms" in line.lower()]
    times["apt: dkms"] = dkms_lines[:12]
    assert any(new in line for line in dkms_lines), apt_out[-3000:]
    kos = vm.ssh(f"sudo ls /lib/modules/{new}/updates/dkms/").stdout.split()
    ko = next((k for k in kos if k.startswith(f"{MODULE}.ko")), None)
    assert ko, kos
    ko_path = f"/lib/modules/{new}/updates/dkms/{ko}"
    assert vm.ssh(f"sudo modinfo -F signer {ko_path}").stdout.strip() == signer
    assert vm.ssh(f"sudo modinfo -F vermagic {ko_path}").stdout.startswith(f"{new} ")
    # the link the image's GRUB boots (update-grub's first entry on a server)
    assert vm.ssh("readlink /vmlinuz").stdout.strip().endswith(f"vmlinuz-{new}")
    vm.ssh(f"sudo test -s /boot/initrd.img-{new}")
    # the same module without its signature: sign-file appends the signature
    # after the ELF, and strip rewrites the ELF without it (the kernel's
    # module-signing docs: a signed module may not be stripped). Before, the
    # test built the source again unsigned: 30 s under emulation for the same
    # proof, a module for this kernel that differs only in lacking the key.
    unsigned_ko = f"/var/tmp/unsigned/{MODULE}.ko"
    unpack = "xz -dc" if ko.endswith(".xz") else "cat"
    vm.ssh(
        f"sudo rm -rf /var/tmp/unsigned && sudo mkdir /var/tmp/unsigned && sudo sh -c "
        f"'{unpack} {ko_path} > /var/tmp/unsigned/signed.ko' "
        f"&& sudo strip --strip-debug -o {unsigned_ko} /var/tmp/unsigned/signed.ko"
    )
    assert vm.ssh(f"sudo modinfo -F signer {unsigned_ko}").stdout.strip() == ""
    assert vm.ssh(f"sudo modinfo -F vermagic {unsigned_ko}").stdout.startswith(f"{new} ")
    took("2 unsigned copy")

    # 3. second run, someone at the console: the role reboots into MokManager,
    # the test enrolls the key there, the run carries on in the new boot
    inv = _inventory(vm, tmp_path / "hosts.yml", nvidia_driver_mok_at_console=True)
    # MokManager waits 10 s for a key, which a person at the screen makes;
    # this test reads the serial console of an emulated machine that may be
    # busy, so it gives MokManager 60 s (the firmware variable MokTimeout,
    # set as a user would with mokutil; the role does not touch it).
    vm.ssh("sudo mokutil --timeout 60")
    boot_before = vm.boot_id()
    cycles_before = vm.power_cycles
    t0 = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(_provision, inv)
        assert vm.console is not None
        try:
            # the run reaches its reboot after the base stage and the driver
            # stage's checks, minutes under emulation
            enroll_mok(vm.console, PASSWORD, timeout=2400)
        finally:
            second = run.result()
    assert second.rc == 0, _failed(second)
    host = second.doc["hosts"]["vm1"]
    assert host["failed"] == 0 and host["reboot_required"] is False
    assert any(c["action"].endswith("reboot") for c in host["changes"]), host["changes"]
    assert vm.boot_id() != boot_before
    # the kernel running now started after the run did, and it is the new one
    assert float(vm.ssh("cut -d' ' -f1 /proc/uptime").stdout) < time.monotonic() - t0
    assert vm.ssh("uname -r").stdout.strip() == new
    state = read_json(vm, "/var/lib/dlsetup/nvidia_driver.json")
    assert state["mok"] == "enrolled" and state["reboot_required"] is False
    # each reset started a new QEMU (vmbox.VM.power_cycle): the guest's reboot
    # into MokManager and MokManager's own (the firmware may reset once more)
    times["power cycles"] = vm.power_cycles - cycles_before
    assert vm.power_cycles - cycles_before >= 2
    took("3 second run, reboot")

    # enrolled; the module DKMS built at the kernel's install loads in it,
    # the unsigned one is refused
    assert (
        "is already enrolled"
        in vm.ssh(f"sudo mokutil --test-key {MOK_DIR}/dlsetup-mok.der", check=False).stdout
    )
    assert "SecureBoot enabled" in vm.ssh("mokutil --sb-state").stdout
    loaded = _load(vm, f"modprobe {MODULE}")
    assert loaded.returncode == 0, loaded.stdout
    assert MODULE in vm.ssh("lsmod").stdout
    assert f"{MODULE}: loaded" in vm.ssh("sudo dmesg").stdout
    vm.ssh(f"sudo modprobe -r {MODULE}")
    unsigned = _load(vm, f"insmod /var/tmp/unsigned/{MODULE}.ko")
    assert unsigned.returncode != 0, unsigned.stdout
    took("3 load")

    # 4. third run: nothing to change
    third = _provision(inv)
    assert third.rc == 0, _failed(third)
    host = third.doc["hosts"]["vm1"]
    assert host["changed"] == 0, host["changes"]
    assert host["reboot_required"] is False
    took("4 third run")
    print(
        f"kernels: {what}\nbefore enrollment: {refusal}\n"
        f"unsigned after enrollment: {unsigned.stdout.strip()}\nsteps: {times}"
    )
