"""ansible-runner events -> live progress and the end-of-run summary.

The collector is pure: it takes runner event dicts (as ansible-runner hands
them to ``event_handler``) and keeps per-host counts, failures, changes,
reported skips and whether a reboot is needed. Displays read from it.

The contract with the playbooks is data, not names (DESIGN.md, convention 14).
Two things are read, nothing else:

* The per-host fact ``dlsetup_result`` (documented in the collection's
  README), which the stages build up as they run through the dlsetup role's
  ``tasks/result.yml``: a ``set_fact`` event (``resolved_action``
  ``ansible.builtin.set_fact``) whose ``ansible_facts`` hold it. It says
  which stage the host is in (``stage``), each stage's skipped steps and
  whether it needs a reboot (``stages``), and the stages' structured reports
  (``reports``, e.g. ``dl_facts_report`` for ``dlsetup facts``).
* The failed task's ``resolved_action``.

A failure is bad input (exit 2) when its action is an input check
(:data:`INPUT_CHECK_ACTIONS`: argument specs, host vars, version
compatibility) or the host was in the ``preflight`` stage; it is a failed smoke
test (exit 4) when the host was in the ``smoke`` stage. Play and task names
are only shown, never matched.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from dlsetup.exitcodes import ExitCode

RESULT_FACT = "dlsetup_result"
SET_FACT_ACTIONS = frozenset({"ansible.builtin.set_fact", "ansible.legacy.set_fact", "set_fact"})
# Tasks that only check what was asked: wherever they fail, the input is bad.
INPUT_CHECK_ACTIONS = frozenset(
    {
        "ansible.builtin.validate_argument_spec",
        "dlsetup.box.validate_vars",
        "dlsetup.box.compat_check",
    }
)
# dlsetup_result.stage values with an exit code of their own.
STAGE_PREFLIGHT = "preflight"
STAGE_SMOKE = "smoke"


_PACKAGE_ACTIONS = {
    "apt",
    "package",
    "dnf",
    "yum",
    "ansible.builtin.apt",
    "ansible.builtin.package",
    "ansible.builtin.dnf",
    "ansible.builtin.yum",
    "ansible.builtin.apt_key",
    "ansible.builtin.dpkg_selections",
}
_FILE_ACTIONS = {
    "copy",
    "template",
    "file",
    "lineinfile",
    "blockinfile",
    "replace",
    "ansible.builtin.copy",
    "ansible.builtin.template",
    "ansible.builtin.file",
    "ansible.builtin.lineinfile",
    "ansible.builtin.blockinfile",
    "ansible.builtin.replace",
    "ansible.builtin.deb822_repository",
    "ansible.builtin.get_url",
    "community.general.ini_file",
    "dlsetup.box.files",
}
_DISK_ACTIONS = {
    "community.general.parted",
    "community.general.filesystem",
    "ansible.posix.mount",
    "parted",
    "filesystem",
    "mount",
}
_SERVICE_ACTIONS = {
    "ansible.builtin.service",
    "ansible.builtin.systemd",
    "ansible.builtin.systemd_service",
    "service",
    "systemd",
    "systemd_service",
}
_REBOOT_ACTIONS = {"ansible.builtin.reboot", "reboot"}


@dataclass
class Failure:
    task: str
    play: str
    msg: str
    category: str  # "task", "preflight", "smoke", "unreachable"


@dataclass
class Change:
    task: str
    action: str
    kind: str  # package, file, disk, service, other
    item: str | None = None


@dataclass
class HostSummary:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    unreachable: bool = False
    reboot_required: bool = False
    elapsed_s: float = 0.0
    current_task: str = ""
    failures: list[Failure] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    skipped_steps: list[dict[str, str]] = field(default_factory=list)
    # stages the no-op path proved unchanged since the box's last converged run
    # (their tasks were left out; dlsetup_result.stages.<stage>.verified)
    unchanged_stages: list[str] = field(default_factory=list)
    reports: dict[str, Any] = field(default_factory=dict)
    stage: str = ""  # dlsetup_result.stage: the last stage this host reached
    _first: float | None = None
    _last: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_first")
        d.pop("_last")
        d.pop("current_task")
        return d

    def take_result(self, result: dict[str, Any]) -> None:
        """Read the host's ``dlsetup_result`` (each event carries all of it so far)."""
        self.stage = str(result.get("stage") or "")
        stages = result.get("stages")
        stages = stages if isinstance(stages, dict) else {}
        parts = [p for p in stages.values() if isinstance(p, dict)]
        self.unchanged_stages = [
            str(name)
            for name, p in stages.items()
            if isinstance(p, dict) and p.get("verified") == "digest"
        ]
        self.skipped_steps = [
            {"step": str(s.get("step", "")), "reason": str(s.get("reason", ""))}
            for p in parts
            for s in (p.get("skipped") or [])
            if isinstance(s, dict)
        ]
        # One stage that needs a reboot is enough; another saying no does not clear it.
        self.reboot_required = any(bool(p.get("reboot_required")) for p in parts)
        reports = result.get("reports")
        self.reports = dict(reports) if isinstance(reports, dict) else {}


def _item_label(item: Any) -> str | None:
    if item is None:
        return None
    if isinstance(item, dict):
        for key in ("name", "path", "dest", "device", "key", "src"):
            if key in item:
                return str(item[key])
    return str(item)


def _kind(action: str) -> str:
    if action in _PACKAGE_ACTIONS:
        return "package"
    if action in _FILE_ACTIONS:
        return "file"
    if action in _DISK_ACTIONS:
        return "disk"
    if action in _SERVICE_ACTIONS:
        return "service"
    if action in _REBOOT_ACTIONS:
        return "reboot"
    return "other"


def _action(data: dict[str, Any]) -> str:
    """The task's action as Ansible resolved it (``ansible.builtin.copy`` for ``copy``)."""
    return str(data.get("resolved_action") or data.get("task_action") or "")


def _result_message(res: dict[str, Any]) -> str:
    msg = res.get("msg")
    text = msg if isinstance(msg, str) else ""
    for key in ("stderr", "module_stderr", "stdout"):
        val = res.get(key)
        if isinstance(val, str) and val.strip() and val.strip() not in text:
            text = (text + "\n" if text else "") + val.strip()[-1500:]
            break
    if not text and isinstance(res.get("results"), list):
        for sub in res["results"]:
            if isinstance(sub, dict) and sub.get("failed"):
                return _result_message(sub)
    return text or "(no message)"


class EventCollector:
    """Accumulates a run's events into per-host summaries."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.hosts: dict[str, HostSummary] = {}
        self.play = ""
        self.task = ""
        self.playbook = ""
        self._clock = clock
        self._start = clock()
        self.stats_seen = False
        self.warnings: list[str] = []

    # -- helpers
    def host(self, name: str) -> HostSummary:
        if name not in self.hosts:
            self.hosts[name] = HostSummary()
        return self.hosts[name]

    def _touch(self, hs: HostSummary) -> None:
        now = self._clock()
        if hs._first is None:
            hs._first = now
        hs._last = now
        hs.elapsed_s = round(hs._last - hs._first, 1)

    @staticmethod
    def _category(hs: HostSummary, action: str) -> str:
        """What a failed task means, from its action and the stage its host is in."""
        if action in INPUT_CHECK_ACTIONS or hs.stage == STAGE_PREFLIGHT:
            return "preflight"
        if hs.stage == STAGE_SMOKE:
            return "smoke"
        return "task"

    # -- the handler
    def __call__(self, event: dict[str, Any]) -> bool:
        self.handle(event)
        return True

    def handle(self, event: dict[str, Any]) -> None:
        name = event.get("event", "")
        data: dict[str, Any] = event.get("event_data") or {}
        if name.startswith("playbook_on_"):
            self._playbook_event(name, data)
            return
        host = data.get("host")
        if not host or not name.startswith("runner_on_"):
            if name == "warning" and event.get("stdout"):
                self.warnings.append(str(event["stdout"]).strip())
            return
        self._host_event(name, str(host), data)

    def _playbook_event(self, name: str, data: dict[str, Any]) -> None:
        if name == "playbook_on_start":
            self.playbook = str(data.get("playbook", ""))
        elif name == "playbook_on_play_start":
            self.play = str(data.get("play", data.get("name", "")))
        elif name in ("playbook_on_task_start", "playbook_on_handler_task_start"):
            self.task = str(data.get("task", data.get("name", "")))
        elif name == "playbook_on_stats":
            self._stats(data)

    def _host_event(self, name: str, host: str, data: dict[str, Any]) -> None:
        hs = self.host(host)
        self._touch(hs)
        task = str(data.get("task", self.task))
        play = str(data.get("play", self.play))
        hs.current_task = task
        action = _action(data)
        res: dict[str, Any] = data.get("res") or {}
        outcome = name.removeprefix("runner_on_")  # ok, failed, skipped, unreachable, ...
        facts = res.get("ansible_facts")
        if (
            outcome == "ok"
            and action in SET_FACT_ACTIONS
            and isinstance(facts, dict)
            and isinstance(facts.get(RESULT_FACT), dict)
        ):
            hs.take_result(facts[RESULT_FACT])
        if outcome == "skipped":
            hs.skipped += 1
        elif outcome == "unreachable":
            hs.unreachable = True
            hs.failures.append(Failure(task, play, _result_message(res), "unreachable"))
        elif outcome == "failed" and data.get("ignore_errors"):
            hs.ignored += 1
        elif outcome == "failed":
            hs.failed += 1
            hs.failures.append(
                Failure(task, play, _result_message(res), self._category(hs, action))
            )
        elif outcome == "ok":
            hs.ok += 1
            if res.get("changed"):
                self._changed(hs, task, action, res)

    @staticmethod
    def _changed(hs: HostSummary, task: str, action: str, res: dict[str, Any]) -> None:
        hs.changed += 1
        items = res.get("results") if isinstance(res.get("results"), list) else None
        if not items:
            hs.changes.append(Change(task, action, _kind(action), _item_label(res.get("item"))))
            return
        for sub in items:
            if isinstance(sub, dict) and sub.get("changed"):
                hs.changes.append(Change(task, action, _kind(action), _item_label(sub.get("item"))))

    def _stats(self, data: dict[str, Any]) -> None:
        self.stats_seen = True
        keys = {
            "ok": "ok",
            "changed": "changed",
            "failures": "failed",
            "skipped": "skipped",
            "rescued": "rescued",
            "ignored": "ignored",
        }
        for stat_key, attr in keys.items():
            for host, count in (data.get(stat_key) or {}).items():
                setattr(self.host(host), attr, int(count))
        for host in data.get("dark") or {}:
            self.host(host).unreachable = True

    # -- results
    def elapsed(self) -> float:
        return round(float(self._clock() - self._start), 1)

    def exit_code(self, status: str) -> int:
        """The CLI's exit code from the runner status and what the events said."""
        if status == "canceled":
            return ExitCode.INTERRUPTED
        cats = {f.category for hs in self.hosts.values() for f in hs.failures}
        if "preflight" in cats:
            return ExitCode.BAD_INPUT
        if "smoke" in cats:
            return ExitCode.SMOKE_FAILED
        if "task" in cats or any(hs.failed for hs in self.hosts.values()):
            return ExitCode.TASK_FAILED
        if "unreachable" in cats or any(hs.unreachable for hs in self.hosts.values()):
            return ExitCode.UNREACHABLE
        if status != "successful":
            return ExitCode.TASK_FAILED
        return ExitCode.OK

    def to_dict(self, status: str) -> dict[str, Any]:
        return {
            "playbook": self.playbook,
            "status": status,
            "exit_code": self.exit_code(status),
            "elapsed_s": self.elapsed(),
            "hosts": {h: s.to_dict() for h, s in sorted(self.hosts.items())},
        }
