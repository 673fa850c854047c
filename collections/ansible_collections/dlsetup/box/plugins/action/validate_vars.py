"""Validate a host's variables against every role's meta/argument_specs.yml.

Runs on the controller (no connection to the host), so the preflight play can
reject bad input for all hosts before any task changes anything. A variable
that starts with a role's prefix (``disk_layout_``, ``nvidia_driver_``, ...)
but that the role does not take is reported as unknown: a typo must not be
silently ignored on a machine whose disks are at stake.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible_collections.dlsetup.box.plugins.module_utils import disk_plan


def load_specs(roles_dir: Path, roles: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """role name -> options of its main entry point."""
    specs: dict[str, dict[str, Any]] = {}
    for spec_file in sorted(roles_dir.glob("*/meta/argument_specs.yml")):
        role = spec_file.parent.parent.name
        if roles and role not in roles:
            continue
        data = yaml.safe_load(spec_file.read_text()) or {}
        main = (data.get("argument_specs") or {}).get("main") or {}
        specs[role] = main.get("options") or {}
    return specs


def validate(
    provided: dict[str, Any], specs: dict[str, dict[str, Any]], prefixes: dict[str, str]
) -> list[str]:
    """Error messages (empty when valid); each names the variable."""
    errors: list[str] = []
    for role, options in specs.items():
        prefix = prefixes.get(role, role + "_")
        mine = {k: v for k, v in provided.items() if k.startswith(prefix)}
        unknown = sorted(k for k in mine if k not in options)
        for key in unknown:
            close = difflib.get_close_matches(key, list(options), n=3, cutoff=0.75)
            hint = f"; did you mean {', '.join(close[:3])}?" if close else ""
            errors.append(
                f"{key}: unknown variable for role {role}{hint} "
                f"(it takes: {', '.join(sorted(options))})"
            )
        known = {k: v for k, v in mine.items() if k in options}
        if not known:
            continue
        result = ArgumentSpecValidator(options).validate(known, validate_role_argument_spec=True)
        for msg in result.error_messages:
            if msg.startswith("Unsupported parameters"):
                continue  # reported above, with the role's vocabulary
            errors.append(f"{msg} (role {role})")
    return errors


# Checks beyond types, for variables whose shape carries meaning: the role's
# own planner (module_utils, as the role's module imports it) validates them,
# so preflight and the role never disagree.
# variable -> (planner module_utils, function(value, refusals))
SHAPE_CHECKS = {
    "disk_layout_disks": (disk_plan, "normalise_spec"),
}


def shape_errors(provided: dict[str, Any], roles_dir: Path | None = None) -> list[str]:
    """Messages from the roles' own spec checks (sizes, duplicate mount points ...)."""
    errors: list[str] = []
    for var, (mod, func) in SHAPE_CHECKS.items():
        if var not in provided:
            continue
        refusals = mod.Refusals()
        getattr(mod, func)(provided[var], refusals)
        for r in refusals.items:
            where = " ".join(f"{k} {r[k]}" for k in ("disk", "partition") if r.get(k) is not None)
            errors.append(f"{r.get('field') or var}: {r['msg']}" + (f" ({where})" if where else ""))
    return errors


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        roles_dir = Path(str(self._task.args.get("roles_dir", "")))
        if not roles_dir.is_dir():
            raise AnsibleError(f"dlsetup.box.validate_vars: roles_dir {roles_dir} is not a folder")
        prefixes = dict(self._task.args.get("prefixes") or {})
        specs = load_specs(roles_dir, self._task.args.get("roles"))
        wanted = tuple(prefixes.get(r, r + "_") for r in specs)
        provided = {k: task_vars[k] for k in task_vars if k.startswith(wanted)}
        provided = self._templar.template(provided)
        errors = validate(provided, specs, prefixes)
        if not errors:
            errors = shape_errors(provided, roles_dir)
        result["changed"] = False
        result["validated"] = sorted(provided)
        if errors:
            result["failed"] = True
            result["argument_errors"] = errors
            host = task_vars.get("inventory_hostname", "?")
            result["msg"] = f"bad host vars for {host}:\n  - " + "\n  - ".join(errors)
        else:
            result["msg"] = f"{len(provided)} variable(s) valid for {len(specs)} role(s)"
        return result
