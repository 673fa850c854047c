"""State the nvme role leaves in a Debian systemd container without NVMe drives.

Real state only: packages installed, the udev rule's exact text (and, where
udevadm can check rules, that udev accepts it), fstrim.timer enabled, the
facts file gpucheck reads, the GRUB drop-in where APST is set. No drive, no
running udevd, no boot loader here: the role must say so, not pretend.
"""

import json

RULE = "/etc/udev/rules.d/60-dlsetup-nvme-scheduler.rules"
DROPIN = "/etc/default/grub.d/60-dlsetup-nvme-apst.cfg"


def reported(host):
    return json.loads(host.file("/root/nvme-facts.json").content_string)


def test_tools_installed(host):
    for pkg in ("nvme-cli", "smartmontools"):
        assert host.package(pkg).is_installed, pkg
    assert host.run("nvme version").rc == 0
    assert host.run("smartctl --version").rc == 0


def test_udev_rule_sets_scheduler_none_for_nvme_namespaces(host):
    rule = host.file(RULE)
    assert rule.exists and rule.user == "root" and rule.mode == 0o644
    lines = [
        line
        for line in rule.content_string.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == [
        'ACTION=="add|change", SUBSYSTEM=="block", KERNEL=="nvme[0-9]*n[0-9]*", '
        'ENV{DEVTYPE}=="disk", ATTR{queue/scheduler}="none"'
    ]


def test_udev_reads_the_rule_without_complaint(host):
    # `udevadm test` loads every rules file and names the invalid ones (no udevd needed).
    out = host.run("udevadm test /sys/class/mem/null 2>&1").stdout
    assert f"Reading rules file: {RULE}" in out
    assert not [line for line in out.splitlines() if line.startswith(RULE + ":")], out


def test_udevadm_verify_accepts_the_rule(host):
    # `udevadm verify` exists from systemd 254: Debian 13 (257), not Debian 12 (252).
    if host.run("udevadm verify --help").rc != 0:
        assert host.system_info.release.startswith("12")
        return
    result = host.run(f"udevadm verify {RULE}")
    assert result.rc == 0, result.stdout + result.stderr


def test_fstrim_timer_enabled(host):
    assert host.service("fstrim.timer").is_enabled
    assert host.run("systemctl is-enabled fstrim.timer").stdout.strip() == "enabled"


def test_nvme_fact_is_valid_json_with_no_controllers(host):
    fact = host.file("/etc/ansible/facts.d/nvme.fact")
    assert fact.exists and fact.mode == 0o644  # not executable: Ansible reads it as JSON
    assert json.loads(fact.content_string) == {"controllers": []}


def test_role_says_there_are_no_drives(host):
    report = reported(host)["report"]
    assert report["controllers"] == []
    assert report["count"] == 0
    assert report["summary"] == ["no NVMe drives found"]
    assert report["notes"] == []  # nvme-cli is installed and ran


def test_live_udev_trigger_reported_skipped(host):
    steps = {s["step"]: s["reason"] for s in reported(host)["skipped"]}
    reason = steps["apply the NVMe scheduler rule now (udevadm trigger)"]
    assert "udevd does not run here" in reason and "next boot" in reason
    assert "container" in steps["start fstrim.timer"]


def test_apst_only_where_asked(host):
    facts = reported(host)
    steps = {s["step"]: s["reason"] for s in facts["skipped"]}
    step = "put nvme_core.default_ps_max_latency_us on the kernel command line"
    if host.backend.get_hostname() == "nvme-debian13":
        text = host.file(DROPIN).content_string
        assert (
            'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX nvme_core.default_ps_max_latency_us=5500"'
            in text.splitlines()
        )
        assert "container boots no kernel of its own" in steps[step]
        # A container has no kernel of its own to reboot into.
        assert facts["reboot_required"] is False
    else:
        assert not host.file(DROPIN).exists
        assert step not in steps
        assert facts["reboot_required"] is False
