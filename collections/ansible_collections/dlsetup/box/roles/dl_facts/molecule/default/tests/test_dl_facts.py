"""dl_facts in a fresh systemd container: the fact script is installed and
reports what is really there (a container, no GPU, the right OS)."""

import json


def test_fact_script_installed(host):
    f = host.file("/etc/ansible/facts.d/dl.fact")
    assert f.exists
    assert f.user == "root"
    assert f.mode == 0o755


def test_fact_script_reports_this_box(host):
    out = host.check_output("/etc/ansible/facts.d/dl.fact")
    facts = json.loads(out)
    name = host.check_output("hostname")
    assert facts["os"]["id"] == "debian"
    assert facts["os"]["version"] == ("12" if name.endswith("debian12") else "13")
    assert facts["in_container"] is True
    assert facts["virtualization"].startswith("container")
    assert facts["nvidia_gpu_count"] == 0
    assert facts["kernel_modules"]["nvidia"] is False
    assert facts["memory_bytes"] > 0
    assert "errors" not in facts, facts.get("errors")


def test_ansible_sees_the_facts(host):
    local = host.ansible("setup", "filter=ansible_local")["ansible_facts"]["ansible_local"]
    assert local["dl"]["schema"] == 1
