"""The sample inventory users copy must pass the same validation preflight
runs on every host (the collection's plugins/action/validate_vars.py), and that
validation must name a bad variable."""

from __future__ import annotations

from types import ModuleType

import yaml
from ansible_collections.dlsetup.box.plugins.action import validate_vars

from dlsetup import content

SAMPLE = content.sample_inventory()


def validator() -> ModuleType:
    return validate_vars


def sample_vars() -> dict[str, object]:
    merged: dict[str, object] = {}
    for f in sorted((SAMPLE / "group_vars").rglob("*.yml")) + sorted(
        (SAMPLE / "host_vars").glob("*.yml")
    ):
        merged.update(yaml.safe_load(f.read_text()) or {})
    return merged


def test_sample_host_vars_are_valid() -> None:
    v = validator()
    hv = sample_vars()
    assert "disk_layout_disks" in hv  # the seed machine is described, not just commented
    assert v.validate(hv, v.load_specs(content.roles_dir()), {}) == []


def test_validation_names_wrong_type_and_unknown_key() -> None:
    v = validator()
    specs = v.load_specs(content.roles_dir())
    hv = sample_vars()
    bad = {**hv, "disk_layout_disks": "sdb", "disk_layout_safe_mod": False}
    errors = " ".join(v.validate(bad, specs, {}))
    assert "disk_layout_disks" in errors
    assert "disk_layout_safe_mod" in errors and "disk_layout_safe_mode" in errors


def test_disk_spec_shape_is_checked_by_the_roles_own_planner() -> None:
    """Preflight refuses what disk_layout would refuse later: exit 2, before any change."""
    v = validator()
    disks = [
        {
            "device": "/dev/sdb",
            "partitions": [
                {"name": "data", "size": "0MiB", "fstype": "ext4", "mount": "/data"},
                {"name": "more", "size": "100%", "fstype": "ext4", "mount": "/data"},
            ],
        }
    ]
    errors = v.shape_errors({"disk_layout_disks": disks}, content.roles_dir())
    text = "\n".join(errors)
    assert "disk_layout_disks[0].partitions[0].size" in text
    assert "disk_layout_disks[0].partitions[1].mount" in text and "/data" in text
    assert (
        v.shape_errors(
            {"disk_layout_disks": sample_vars()["disk_layout_disks"]}, content.roles_dir()
        )
        == []
    )


def test_sample_group_vars_list_every_option_of_every_role() -> None:
    """The README promises that group_vars/all lists every role option with its default."""
    text = "\n".join(f.read_text() for f in sorted((SAMPLE / "group_vars").rglob("*.yml")))
    missing = [
        opt
        for defaults in sorted(content.roles_dir().glob("*/defaults/main.yml"))
        for opt in yaml.safe_load(defaults.read_text()) or {}
        if f"{opt}:" not in text
    ]
    assert missing == []
