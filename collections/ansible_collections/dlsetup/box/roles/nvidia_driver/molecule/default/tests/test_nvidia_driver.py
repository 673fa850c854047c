"""nvidia_driver in Debian 12/13 systemd containers with Debian's real non-free
packages: installed, held three ways, nouveau blacklisted for the initramfs,
and the GPU-only steps reported as skipped with their reasons. (No GPU and no
host kernel headers exist here; module build, load and reboot are covered by
tests/unit/test_nvidia_driver_state.py and, on a GPU machine, by the smoke test.)"""

import json

DRIVER_PACKAGES = ["nvidia-driver", "nvidia-smi", "nvidia-kernel-dkms"]


def _release(host):
    return "12" if host.check_output("hostname").endswith("debian12") else "13"


def test_driver_packages_installed(host):
    for name in [*DRIVER_PACKAGES, "dkms", "initramfs-tools"]:
        assert host.package(name).is_installed, name
    version = host.package("nvidia-driver").version
    assert version.startswith("535." if _release(host) == "12" else "550."), version


def test_driver_stack_held_by_dpkg(host):
    selections = {
        name.split(":")[0]: sel  # "libnvidia-ml1:amd64" -> "libnvidia-ml1"
        for name, sel in (
            line.split() for line in host.check_output("dpkg --get-selections").splitlines()
        )
    }
    for name in [*DRIVER_PACKAGES, "nvidia-driver-libs", "libnvidia-ml1", "nvidia-kernel-support"]:
        assert selections.get(name) == "hold", (name, selections.get(name))
    # the toolkit and unrelated packages are not held
    assert selections.get("dkms") == "install"


def test_apt_pins_installed_versions(host):
    pins = host.file("/etc/apt/preferences.d/dlsetup-nvidia-driver")
    assert pins.exists and pins.mode == 0o644
    version = host.package("nvidia-driver").version
    pin = f"Package: nvidia-driver\nPin: version {version}\nPin-Priority: 1001"
    assert pin in pins.content_string
    policy = host.check_output("apt-cache policy nvidia-driver")
    assert "1001" in policy


def test_unattended_upgrades_leave_the_stack_alone(host):
    conf = host.file("/etc/apt/apt.conf.d/51dlsetup-nvidia-driver-unattended")
    assert conf.exists
    dump = host.check_output("apt-config dump Unattended-Upgrade::Package-Blacklist")
    assert '"^nvidia\\-driver$"' in dump or '"^nvidia-driver$"' in dump, dump
    assert "libnvidia\\-ml1" in dump or "libnvidia-ml1" in dump


def test_nouveau_blacklisted_and_initramfs_ready(host):
    conf = host.file("/etc/modprobe.d/dlsetup-blacklist-nouveau.conf")
    assert conf.exists
    assert "blacklist nouveau" in conf.content_string
    assert "options nouveau modeset=0" in conf.content_string
    # initramfs-tools copies /etc/modprobe.d into the image (its hook-functions)
    assert host.file("/usr/sbin/update-initramfs").exists
    hook = host.file("/usr/share/initramfs-tools/hooks/kmod")
    assert "modprobe.d" in hook.content_string
    # modprobe itself reads the blacklist
    assert "blacklist nouveau" in host.check_output("modprobe --showconfig | grep -w nouveau")


def test_non_free_components_enabled(host):
    sources = host.file("/etc/apt/sources.list.d/debian.sources").content_string
    for line in sources.splitlines():
        if line.startswith("Components:"):
            assert line.split()[1:] == ["main", "contrib", "non-free", "non-free-firmware"]


def test_dkms_registered_but_nothing_built_in_a_container(host):
    status = host.check_output("dkms status")
    assert "nvidia" in status and "added" in status, status


def test_gpu_only_steps_reported_skipped_with_reasons(host):
    facts = json.loads(host.file("/root/nvidia_driver-facts.json").content_string)
    steps = {s["step"]: s["reason"] for s in facts["skipped"]}
    assert "inside a container" in steps["nvidia module built by DKMS for every installed kernel"]
    assert "inside a container" in steps["nvidia module loaded and nvidia-smi talking to the GPU"]
    assert "kernel headers for the running kernel" in steps
    # the headers metapackage is installed in a container only when named
    # (tests/integration/test_nvidia_driver_dkms.py names it and builds for real)
    assert "inside a container" in steps["kernel headers metapackage (headers for every future kernel)"]
    assert not host.package("linux-headers-amd64").is_installed
    assert facts["reboot_required"] is False
    assert facts["report"]["kernel_modules"] == "proprietary"
    assert "nvidia-driver" in facts["report"]["held"]


def test_persistence_mode_on_a_headless_box(host):
    """No display manager here: persistence mode is on by default. Debian ships
    nvidia-persistenced apart from the driver; it is enabled (not started: no GPU)."""
    assert host.package("nvidia-persistenced").is_installed
    assert host.service("nvidia-persistenced").is_enabled
    assert "nvidia-persistenced" in host.check_output("apt-mark showhold")


def test_dev_char_symlinks_made_at_boot(host):
    """The /dev/char link maker runs at boot (its unit is enabled) and from udev when
    the driver binds (the rule); its links are tested in
    tests/integration/test_nvidia_driver_nvidia_repo.py."""
    assert host.file("/usr/local/sbin/dlsetup-nvidia-dev-char").mode == 0o755
    assert host.file("/etc/udev/rules.d/71-dlsetup-nvidia-dev-char.rules").contains("RUN+=")
    assert host.service("dlsetup-nvidia-dev-char").is_enabled


def test_no_fabric_manager_without_nvswitch(host):
    assert not host.package("nvidia-fabricmanager").is_installed
    assert host.run("dpkg -l 'nvidia-fabricmanager*'").rc != 0


def test_state_file_for_the_next_run(host):
    state = json.loads(host.file("/var/lib/dlsetup/nvidia_driver.json").content_string)
    assert state["reboot_required"] is False
    assert state["mok_enroll_pending"] is False
    dkms_version = host.package("nvidia-kernel-dkms").version
    assert state["installed_version"] == dkms_version.rsplit("-", 1)[0]


def test_nvidia_smi_present_but_no_gpu(host):
    res = host.run("nvidia-smi")
    assert host.file("/usr/bin/nvidia-smi").exists
    assert res.rc != 0  # no driver loaded, no GPU: nvidia-smi says so (exit 9)
