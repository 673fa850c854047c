"""Preflight on supported systems: it passes, probes the hardware, and
leaves nothing behind (it must never change a host)."""

import json


def test_probe_saw_the_box(host):
    probe = json.loads(host.file("/root/preflight-probe.json").content_string)
    assert probe["os"]["id"] == "debian"
    assert probe["in_container"] is True
    assert probe["nvidia_gpu_count"] == 0


def test_preflight_installed_nothing(host):
    # The probe ran from a temporary copy: no local facts, no packages.
    assert not host.file("/etc/ansible/facts.d").exists
    assert not host.package("pciutils").is_installed
