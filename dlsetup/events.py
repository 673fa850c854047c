"""ansible-runner events -> live progress and the end-of-run summary.

The collector is pure: it takes runner event dicts (as ansible-runner hands
them to ``event_handler``) and keeps per-host counts, failures, changes,
reported skips and whether a reboot is needed. Displays read from it.

Conventions the roles follow so that the summary can say more than counts:

* ``set_fact: <role>_skipped: [{step: ..., reason: ...}, ...]`` records steps
  the role deliberately did not run (no GPU, in a container, ...).
* ``set_fact: <role>_reboot_required: true`` records that a reboot is pending.
* ``set_fact: <role>_report: {...}`` hands a structured report to the CLI
  (``dlsetup facts`` reads ``dl_facts_report``).

(Each role sets facts with its own prefix, as ansible-lint's
``var-naming[no-role-prefix]`` asks.)
* Plays whose name starts with ``Preflight`` validate input: a failure there
  is bad input (exit 2). Plays whose name starts with ``Smoke test`` run the
  smoke test: a failure there is a failed smoke test (exit 4).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from dlsetup.exitcodes import ExitCode

PREFLIGHT_PREFIX = "Preflight"
SMOKE_PREFIX = "Smoke test"


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
}
_DISK_ACTIONS = {
    "community.general.parted",
    "community.general.filesystem",
    "ansible.posix.mount",
    "parted",
    "filesystem",
    "mount",
}


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
    reports: dict[str, Any] = field(default_factory=dict)
    skipped_by: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    reboot_by: dict[str, bool] = field(default_factory=dict)
    _first: float | None = None
    _last: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_first")
        d.pop("_last")
        d.pop("current_task")
        d.pop("skipped_by")
        d.pop("reboot_by")
        return d


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
    if action.endswith(("service", "systemd", "systemd_service")):
        return "service"
    if action.endswith("reboot"):
        return "reboot"
    return "other"


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

    def _category(self, play: str) -> str:
        if play.startswith(PREFLIGHT_PREFIX):
            return "preflight"
        if play.startswith(SMOKE_PREFIX):
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
        res: dict[str, Any] = data.get("res") or {}
        facts = res.get("ansible_facts") or {}
        if isinstance(facts, dict):
            self._role_facts(hs, facts)
        if name == "runner_on_skipped":
            hs.skipped += 1
        elif name == "runner_on_unreachable":
            hs.unreachable = True
            hs.failures.append(Failure(task, play, _result_message(res), "unreachable"))
        elif name == "runner_on_failed" and data.get("ignore_errors"):
            hs.ignored += 1
        elif name == "runner_on_failed":
            hs.failed += 1
            hs.failures.append(Failure(task, play, _result_message(res), self._category(play)))
        elif name == "runner_on_ok":
            hs.ok += 1
            if res.get("changed"):
                self._changed(hs, task, str(data.get("task_action", "")), res)

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

    @staticmethod
    def _role_facts(hs: HostSummary, facts: dict[str, Any]) -> None:
        for key, val in facts.items():
            if key.endswith("_skipped") and isinstance(val, list):
                hs.skipped_by[key] = [
                    {"step": str(s.get("step", "")), "reason": str(s.get("reason", ""))}
                    for s in val
                    if isinstance(s, dict)
                ]
                hs.skipped_steps = [s for steps in hs.skipped_by.values() for s in steps]
            elif key.endswith("_reboot_required"):
                hs.reboot_by[key] = bool(val)
                hs.reboot_required = any(hs.reboot_by.values())
            elif key.endswith("_report"):
                hs.reports[key] = val

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
