"""gpu_smoke_test on a box without GPU: the checks ran with the box's python3,
said why they could not pass, and left nothing behind."""

import json


def _result(host):
    return json.loads(host.file("/root/gpu-smoke-test.json").content_string)


def test_report_says_no_nvidia_gpu(host):
    report = _result(host)["report"]
    assert report["passed"] is False
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["nvidia-gpu-present"]["status"] == "fail"
    assert checks["nvidia-gpu-present"]["message"].startswith("no NVIDIA GPU found")
    assert checks["nvidia-gpu-present"]["remedy"]
    assert report["host"]["hostname"] == host.check_output("hostname")


def test_skip_mode_records_the_reason(host):
    (step,) = _result(host)["skipped"]
    assert step["step"] == "GPU smoke test"
    assert step["reason"].startswith("no NVIDIA GPU found")


def test_nothing_left_on_the_box(host):
    left = host.run("find / -xdev -name 'dlsetup-gpucheck-*' 2>/dev/null")
    assert left.stdout.strip() == ""
