"""Whether a stage can prove the box unchanged since its last converged run.

The no-op path of a re-provision (issue 16, the README's "What a no-op run
checks"). A stage is converged, and its detailed tasks may be left out, when
all of these hold:

* the last run on this box recorded the stage as finished (no failure, no
  reboot pending) in ``/var/lib/dlsetup/converged.json``;
* the stage's inputs are the same: the collection's roles, plugins and
  playbooks (every byte), the host's settings (every option the roles'
  argument specs document, as templated now), the distribution and the GPUs
  the preflight probe found;
* the box's side is the same: one read (the converged_state module) of every
  file, folder listing, systemd unit and command in
  ``__dlsetup_converged_state`` (roles/dlsetup/vars/main.yml), among them
  dpkg's status file (every package, version and hold), /etc/fstab and the
  block-device mounts, /etc/docker, /etc/modprobe.d, /var/lib/dkms and the
  running kernel.

Anything else, or ``dlsetup_verify_all: true`` (``dlsetup provision
--verify-all``), walks the stage's tasks as before. ``mode: record`` (the last
play of site.yml) writes the record for every stage that finished in this run,
with the box's state read after the last stage.

:func:`decide` and :func:`stage_record` are the decisions, pure and
unit-tested (tests/unit/test_stage_digest.py); the ActionModule gathers inputs.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible_collections.dlsetup.box.plugins.action.validate_vars import load_specs

COLLECTION = Path(__file__).resolve().parents[2]
CONTENT_DIRS = ("roles", "plugins", "playbooks")
RECORD_SCHEMA = 1
# Variables that steer a run but are not the box's settings (how long apt waits
# for its locks changes nothing on the box).
NOT_INPUTS = {"dlsetup_result", "dlsetup_verify_all", "dlsetup_apt_lock_timeout"}
# What a stage may hand back of its own (dlsetup_result.stages.<stage>) that
# is about this run, not the box: never carried over from a record.
RUN_ONLY = {"verified"}


def content_digest(root: Path = COLLECTION) -> str:
    """Every file of the collection's roles, plugins and playbooks (no tests, no caches)."""
    h = hashlib.sha256()
    for top in CONTENT_DIRS:
        for path in sorted((root / top).rglob("*")):
            rel = path.relative_to(root)
            if not path.is_file() or "molecule" in rel.parts or "__pycache__" in rel.parts:
                continue
            h.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def plain(value: Any) -> Any:
    """A variable's value as JSON can hold it, the same way every run."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple | set | frozenset):
        items = [plain(v) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, set | frozenset) else items
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(plain(value), sort_keys=True).encode()).hexdigest()


# The parts of a stage's inputs, by what a user would call them.
INPUT_WORDS = {
    "content": "dlsetup's roles and playbooks",
    "vars": "the host's dlsetup variables",
    "facts": "the OS or the GPUs found",
}


def stage_inputs(content: str, variables: str, facts: dict[str, Any]) -> dict[str, str]:
    """One digest per part of a stage's inputs (INPUT_WORDS), so a change can be named.

    ``variables`` is settings_digest() of the host's settings, taken once per run at
    the first stage's check (``settings_digest`` argument after it): later stages
    would see the facts earlier stages set, which are not settings.
    """
    return {"content": content, "vars": variables, "facts": _digest(facts)}


def settings_digest(variables: dict[str, Any]) -> str:
    return _digest(variables)


def settings(specs: dict[str, dict[str, Any]]) -> set[str]:
    """The options of the roles' argument specs that a user sets: not those documented
    as internal (the facts a run hands back: reports, probes, skipped steps)."""
    names = set()
    for options in specs.values():
        for name, spec in options.items():
            words = (spec or {}).get("description", "")
            words = " ".join(words) if isinstance(words, list) else str(words)
            if not words.lstrip().lower().startswith("internal"):
                names.add(name)
    return names - NOT_INPUTS


def changed_items(old: dict[str, str], new: dict[str, str]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def walk_without_reading(
    stage: str, inputs: dict[str, str], record: Any, *, verify_all: bool = False
) -> str:
    """Why the stage's tasks are walked whatever the box holds now, or "" when only
    the box's state can decide (decide() compares it).

    The record is written only by the last play of a run, so the record one read
    found at a run's first check holds for every later stage of that run: a
    stage this decides needs no read of the box of its own.
    """
    if verify_all:
        return "every task walked on request (--verify-all)"
    if not isinstance(record, dict) or record.get("schema") != RECORD_SCHEMA:
        return "no record of a converged run on this box (first run, or a reinstall)"
    entry = (record.get("stages") or {}).get(stage)
    if not isinstance(entry, dict):
        return f"the last run did not finish the {stage} stage"
    old = entry.get("inputs") if isinstance(entry.get("inputs"), dict) else {}
    moved = [INPUT_WORDS.get(k, k) for k in sorted(inputs) if old.get(k) != inputs[k]]
    if moved:
        return "its inputs changed: " + ", ".join(moved)
    return ""


def decide(
    stage: str,
    inputs: dict[str, str],
    box: dict[str, Any],
    record: Any,
    *,
    verify_all: bool = False,
) -> tuple[bool, str]:
    """(converged, why): whether the stage's tasks may be left out, and the reason in words.

    ``box``: what converged_state read now (``state``, ``items``); ``record``: what
    it found of the last converged run.
    """
    walk = walk_without_reading(stage, inputs, record, verify_all=verify_all)
    if walk:
        return False, walk
    assert isinstance(record, dict)  # walk_without_reading said so
    if record.get("state") != box.get("state"):
        diff = changed_items(record.get("items") or {}, box.get("items") or {})
        shown = ", ".join(diff[:4]) + (f" and {len(diff) - 4} more" if len(diff) > 4 else "")
        return False, f"the box changed since the last converged run: {shown or 'its state'}"
    return True, f"unchanged since the converged run of {record.get('time', '?')}"


def stage_record(checked: dict[str, Any], result: dict[str, Any], reports: dict[str, Any]) -> dict:
    """The stages that finished in this run, as the record keeps them.

    ``checked``: stage -> its inputs (stage_inputs, from its check in this run);
    ``result``: dlsetup_result; ``reports``: stage -> the reports it handed back.
    A stage whose part is missing (it did not run: a --tags run, a failure)
    or that waits for a reboot is left out, so its next run walks its tasks.
    """
    stages = result.get("stages") if isinstance(result, dict) else None
    stages = stages if isinstance(stages, dict) else {}
    kept = {}
    for stage, inputs in sorted(checked.items()):
        part = stages.get(stage)
        if not isinstance(part, dict) or part.get("reboot_required"):
            continue
        kept[stage] = {
            "inputs": inputs,
            "part": {k: v for k, v in part.items() if k not in RUN_ONLY},
            "reports": (reports or {}).get(stage) or {},
        }
    return kept


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def _variables(self, task_vars: dict[str, Any]) -> dict[str, Any]:
        """The host's settings: every option the roles' argument specs document, as
        templated now (not the facts a run sets, such as reports or probes)."""
        names = settings(load_specs(COLLECTION / "roles"))
        out = {}
        for name in sorted(names):
            if name not in task_vars:
                continue
            try:
                out[name] = self._templar.template(task_vars[name])
            except Exception:  # an unrenderable value counts as written
                out[name] = task_vars[name]
        return out

    def _read_box(self, args: dict[str, Any], task_vars: dict[str, Any], record: dict | None):
        module_args = {k: args["state"].get(k, []) for k in ("paths", "names", "units", "commands")}
        module_args["mounts"] = bool(args["state"].get("mounts"))
        module_args["record_path"] = args["record_path"]
        if record is not None:
            module_args["record"] = record
        out = self._execute_module(
            module_name="dlsetup.box.converged_state", module_args=module_args, task_vars=task_vars
        )
        if out.get("failed"):
            why = out.get("msg", "reading the box failed")
            raise AnsibleError(f"dlsetup.box.stage_digest: {why}")
        return out

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        for field in ("mode", "state", "record_path"):
            if field not in args:
                raise AnsibleError(f"dlsetup.box.stage_digest: {field} is required")
        if args["mode"] == "record":
            return self._record(result, args, task_vars)
        stage = str(args.get("stage") or "")
        if not stage:
            raise AnsibleError("dlsetup.box.stage_digest: stage is required with mode check")
        facts = task_vars.get("ansible_facts") or {}
        gpus = (task_vars.get("dl_facts_probe") or {}).get("gpus") or []
        inputs = stage_inputs(
            content_digest(),
            str(args.get("settings_digest") or "") or settings_digest(self._variables(task_vars)),
            {
                "os": [
                    facts.get(k) for k in ("distribution", "distribution_version", "architecture")
                ],
                "gpus": [g.get("pci_id") for g in gpus if isinstance(g, dict)],
            },
        )
        verify_all = bool(args.get("verify_all"))
        # The record as this run's first check read it (converged.yml keeps it):
        # where it decides alone, the box is not read again (walk_without_reading).
        record_read = bool(args.get("record_read"))
        record = args.get("record") if record_read else None
        box: dict[str, Any] = {}
        if not (verify_all or (record_read and walk_without_reading(stage, inputs, record))):
            box = self._read_box(args, task_vars, None)
            record, record_read = box.get("record"), True
        converged, why = decide(stage, inputs, box, record, verify_all=verify_all)
        entry = ((record or {}).get("stages") or {}).get(stage) or {} if converged else {}
        result.update(
            changed=False,
            converged=converged,
            inputs=inputs,
            msg=f"{stage}: {'converged, tasks left out' if converged else 'tasks walked'}: {why}",
            why=why,
            part=entry.get("part") or {},
            reports=entry.get("reports") or {},
            box_read=bool(box),
            record_read=record_read,
            record=record,
        )
        return result

    def _record(self, result: dict, args: dict[str, Any], task_vars: dict[str, Any]) -> dict:
        stages = stage_record(
            dict(args.get("checked") or {}), args.get("result") or {}, args.get("reports") or {}
        )
        record = {
            "schema": RECORD_SCHEMA,
            "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "stages": stages,
        }
        box = self._read_box(args, task_vars, record)
        result.update(
            changed=False,  # bookkeeping of dlsetup's own, not a change to the box's setup
            recorded=sorted(stages),
            msg=f"recorded as converged: {', '.join(sorted(stages)) or 'no stage'}",
            state=box["state"],
        )
        return result
