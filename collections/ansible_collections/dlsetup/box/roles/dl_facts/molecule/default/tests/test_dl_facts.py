"""dl_facts in a fresh systemd container: the fact script is installed and
reports what is really there (no GPU, the right OS), and dl_host.fact holds the
collection modules' answers: a Docker container (container_info) and the
kernels /lib/modules holds here with the NVIDIA module's state for each
(nvidia_driver_state, scope kernels)."""

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
    # container detection is module_utils/container.py's (dl_host.fact), not the script's
    assert "in_container" not in facts
    assert not facts["virtualization"].startswith("container")
    assert facts["nvidia_gpu_count"] == 0
    assert facts["kernel_modules"]["nvidia"] is False
    assert facts["memory_bytes"] > 0
    assert "errors" not in facts, facts.get("errors")


def test_ansible_sees_the_facts(host):
    local = host.ansible("setup", "filter=ansible_local")["ansible_facts"]["ansible_local"]
    assert local["dl"]["schema"] == 1


def test_host_fact_says_docker_container_and_lists_the_kernels(host):
    f = host.file("/etc/ansible/facts.d/dl_host.fact")
    assert f.exists
    assert f.mode == 0o644
    fact = json.loads(f.content_string)
    assert fact["schema"] == 1
    assert fact["in_container"] is True
    assert fact["container"] == {"container": True, "kind": "docker"}
    running = host.check_output("uname -r")
    assert fact["running_kernel"] == running
    # in a container a kernel counts when /lib/modules/<v> has headers (build/Makefile)
    # or /boot/vmlinuz-<v> exists: whatever this image holds, the fact says the same
    expected = host.check_output(
        "for v in $(ls /lib/modules 2>/dev/null); do "
        "if [ -e /boot/vmlinuz-$v ] || [ -f /lib/modules/$v/build/Makefile ]; then echo $v; fi; "
        "done"
    ).split()
    assert sorted(k["kernel"] for k in fact["kernels"]) == sorted(expected)
    # converge.yml's stand-in headers tree: listed, not running, no DKMS so no module
    assert "6.1.0-99-amd64" in expected
    stand_in = next(k for k in fact["kernels"] if k["kernel"] == "6.1.0-99-amd64")
    assert stand_in == {
        "kernel": "6.1.0-99-amd64",
        "running": False,
        "image": False,
        "headers": True,
        "module": "missing",
        "dkms": "not built",
    }
    for k in fact["kernels"]:
        assert set(k) == {"kernel", "running", "image", "headers", "module", "dkms"}
        assert k["running"] is (k["kernel"] == running)
        assert k["module"] in ("built", "missing", "no-headers")


def test_ansible_sees_the_host_fact(host):
    local = host.ansible("setup", "filter=ansible_local")["ansible_facts"]["ansible_local"]
    assert local["dl_host"]["container"]["kind"] == "docker"
    assert isinstance(local["dl_host"]["kernels"], list)
