"""The nvme role's public interface: defaults/main.yml and meta/argument_specs.yml
agree, and preflight's validator (plugins/action/validate_vars.py) takes
the documented settings and names a mistyped one."""

from __future__ import annotations

from types import ModuleType

import yaml
from ansible_collections.dlsetup.box.plugins.action import validate_vars

from dlsetup import content

ROLE = content.roles_dir() / "nvme"


def validator() -> ModuleType:
    return validate_vars


def specs() -> dict:
    data = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    return data["argument_specs"]["main"]["options"]


def test_every_default_is_typed_with_the_same_default():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    options = specs()
    for key, value in defaults.items():
        assert key in options, f"{key} is in defaults/main.yml but not in argument_specs"
        if value is not None:
            assert options[key].get("default") == value, key


def test_validator_accepts_documented_settings():
    v = validator()
    good = {
        "nvme_apst_max_latency_us": 0,
        "nvme_io_scheduler": "none",
        "nvme_firmware_file": "/srv/fw/980pro-5B2QGXB7.bin",
        "nvme_firmware_device": "/dev/nvme0",
        "nvme_firmware_version": "5B2QGXB7",
        "nvme_firmware_slot": 2,
        "nvme_firmware_action": 1,
    }
    assert v.validate(good, v.load_specs(content.roles_dir(), ["nvme"]), {}) == []


def test_validator_names_bad_settings():
    v = validator()
    bad = {"nvme_apst_latency_us": 0, "nvme_firmware_action": 2, "nvme_io_scheduler": "cfq"}
    errors = " ".join(v.validate(bad, v.load_specs(content.roles_dir(), ["nvme"]), {}))
    assert "nvme_apst_latency_us" in errors and "nvme_apst_max_latency_us" in errors
    assert "nvme_firmware_action" in errors
    assert "nvme_io_scheduler" in errors
