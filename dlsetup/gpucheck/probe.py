"""The I/O boundary of the smoke test: every input is read through a Probe.

Three implementations:

* ``LiveProbe`` reads the real system.
* ``CapturingProbe`` wraps another probe and records everything it returns into
  a bundle directory, so a problem seen on a remote box can be replayed later.
* ``ReplayProbe`` answers from such a bundle, offline.

Bundle layout (a directory)::

    files/<absolute path without the leading slash>   every file that was read
    commands.json   [{"argv": [...], "rc": N, "stdout": "...", "stderr": "..."}, ...]
    dirs.json       {"/abs/dir": ["name", ...] or null, ...}   directory listings
    which.json      {"name": "/abs/path" or null, ...}          PATH look-ups
    links.json      {"/abs/link": "target" or null, ...}         symlinks read (sysfs driver links)
    calls.json      [{"name": ..., "args": [...], "value": {...}}, ...]   in-process calls
    meta.json       {"captured_at": ..., "options": {...}, ...} optional

A *call* is work done inside the gpucheck process that no command or file
shows: the CUDA driver API (cuDriverGetVersion, the self-test through ctypes),
cuDNN handle creation. The check hands the probe a function returning a JSON
object; the live probe runs it, the capturing probe records its value, and the
replay probe answers that value without touching any hardware. What a call
does through the probe while it runs (the PCIe reading under the self-test's
load) is part of its value and is not recorded a second time, so a replay
serves every command in the order the live run asked for it. For the same
reason the capturing probe records only the thread that created it: the only
other threads are the ones a call starts.

Commands asked for with a timeout of 0 or less are not run: the run's time
budget is spent; the answer (rc 124) is recorded like any other, so a replay
meets the same refusal.

Replay rules:

* a directory is a bundle only when it holds ``commands.json`` and ``files/``
  (what every capture writes); anything else is refused as bad input;
* a file that is not under ``files/`` is absent (``read_file`` returns None);
* a command whose argv is not in ``commands.json`` is not found (rc 127); when
  the same argv was recorded several times the recordings are returned in
  order, the last one repeating; ``python -c SCRIPT`` commands whose script
  differs only after its first line (a versioned tag) still match;
* a directory listing comes from ``dirs.json``; a directory not named there is
  listed from what ``files/`` holds under it (so hand-made bundles need no
  ``dirs.json``), and is absent when ``files/`` has nothing there either;
* a symlink's target comes from ``links.json``; one not there is absent (None);
* a call's value comes from ``calls.json``, matched by name and arguments, the
  recordings served in order, the last repeating; a call not recorded answers
  None (an older or hand-made bundle), and the check says it could not judge;
* ``which(name)`` comes from ``which.json``; a name not there resolves to
  ``/usr/bin/<name>`` when a command starting with that name was recorded with
  an rc other than 127, and to None otherwise.

Standard library only: this file runs on the target host with its python3.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RC_NOT_FOUND = 127
RC_NOT_EXECUTABLE = 126
RC_TIMEOUT = 124
MAX_FILE_BYTES = 4 * 1024 * 1024
READ_CHUNK = 4096

# Directories added to PATH for live commands: ldconfig, lspci and modinfo
# live in sbin on Debian and a non-root PATH lacks it.
EXTRA_PATH = ("/usr/local/sbin", "/usr/sbin", "/sbin")
NOT_RUN = "not run: the time budget of the whole run is spent"
#: What every capture writes; a replay refuses a directory without them.
BUNDLE_MARKERS = ("commands.json", "files")


class BundleError(Exception):
    """A replay bundle is missing or malformed (bad input: exit 2)."""


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def found(self) -> bool:
        return self.rc != RC_NOT_FOUND

    @property
    def output(self) -> str:
        """stdout and stderr together (nvidia-smi prints its errors on stdout)."""
        parts = [p.strip() for p in (self.stdout, self.stderr) if p.strip()]
        return "\n".join(parts)

    def to_json(self, argv: list[str]) -> dict[str, Any]:
        return {"argv": argv, "rc": self.rc, "stdout": self.stdout, "stderr": self.stderr}


class Probe:
    """Interface: how the checks see the machine."""

    #: True when the probe may touch the hardware directly (ctypes on libcuda).
    live = False
    #: Human description for the report header.
    description = ""
    #: "live", "capture" or "replay".
    mode = "live"

    def read_file(self, path: str) -> str | None:
        raise NotImplementedError

    def list_dir(self, path: str) -> list[str] | None:
        raise NotImplementedError

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        raise NotImplementedError

    def which(self, name: str) -> str | None:
        raise NotImplementedError

    def read_link(self, path: str) -> str | None:
        """The target of a symlink (``/sys/bus/pci/devices/X/driver``); None if absent."""
        raise NotImplementedError

    def call(
        self, name: str, args: list[str], fn: Callable[[], dict[str, Any]]
    ) -> dict[str, Any] | None:
        """An in-process call (see the module docstring): runs ``fn`` on a live probe.

        None means the probe cannot answer (a replay bundle without that recording).
        """
        return fn()

    def close(self) -> None:
        """Flush whatever the probe keeps (the capturing probe writes its bundle)."""


def _live_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep)
    for extra in EXTRA_PATH:
        if extra not in path:
            path.append(extra)
    env["PATH"] = os.pathsep.join(path)
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="replace")


class LiveProbe(Probe):
    live = True
    description = "live"

    def __init__(self) -> None:
        self._env = _live_env()

    def read_file(self, path: str) -> str | None:
        # Read in small chunks: /proc/sys files fail a read larger than a page or two
        # with ENOMEM.
        chunks: list[bytes] = []
        size = 0
        try:
            with open(path, "rb") as fh:
                while size < MAX_FILE_BYTES:
                    chunk = fh.read(READ_CHUNK)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
        except (OSError, ValueError):
            return None
        return b"".join(chunks).decode("utf-8", errors="replace")

    def list_dir(self, path: str) -> list[str] | None:
        try:
            return sorted(os.listdir(path))
        except (OSError, ValueError):
            return None

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        if timeout <= 0:
            return CommandResult(RC_TIMEOUT, "", NOT_RUN)
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=max(timeout, 0.1),
                env=self._env,
                check=False,
            )
        except FileNotFoundError:
            return CommandResult(RC_NOT_FOUND, "", f"{argv[0]}: command not found")
        except PermissionError as exc:
            return CommandResult(RC_NOT_EXECUTABLE, "", f"{argv[0]}: {exc}")
        except subprocess.TimeoutExpired as exc:
            return CommandResult(
                RC_TIMEOUT,
                _decode(exc.stdout),
                _decode(exc.stderr) + f"\n{argv[0]}: timed out after {timeout:.0f} s",
            )
        except OSError as exc:
            return CommandResult(RC_NOT_EXECUTABLE, "", f"{argv[0]}: {exc}")
        return CommandResult(proc.returncode, _decode(proc.stdout), _decode(proc.stderr))

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self._env["PATH"])

    def read_link(self, path: str) -> str | None:
        try:
            return os.readlink(path)
        except (OSError, ValueError):
            return None


def _bundle_file(bundle: str, path: str) -> str | None:
    """Where an absolute path lives inside a bundle; None for a path escaping it."""
    if not path.startswith("/"):
        return None
    rel = os.path.normpath(path).lstrip("/")
    if rel in ("", ".") or rel.startswith(".."):
        return None
    return os.path.join(bundle, "files", rel)


class CapturingProbe(Probe):
    """Records every answer of ``inner`` into a bundle directory."""

    def __init__(self, inner: Probe, bundle_dir: str, meta: dict[str, Any] | None = None) -> None:
        self.inner = inner
        self.bundle_dir = bundle_dir
        self.live = inner.live
        self.mode = "capture"
        self.description = f"{inner.description}, captured to {bundle_dir}"
        self.commands: list[dict[str, Any]] = []
        self.dirs: dict[str, list[str] | None] = {}
        self.whiches: dict[str, str | None] = {}
        self.links: dict[str, str | None] = {}
        self.calls: list[dict[str, Any]] = []
        self._owner = threading.get_ident()
        self._in_call = 0
        self.meta: dict[str, Any] = dict(meta or {})
        self.meta.setdefault("captured_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        os.makedirs(os.path.join(bundle_dir, "files"), exist_ok=True)

    def _recording(self) -> bool:
        """Inside a call or another thread, the call's value records what happens."""
        return self._in_call == 0 and threading.get_ident() == self._owner

    def read_file(self, path: str) -> str | None:
        text = self.inner.read_file(path)
        target = _bundle_file(self.bundle_dir, path)
        if text is not None and target is not None and self._recording():
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "w", encoding="utf-8") as fh:
                    fh.write(text)
            except OSError:
                pass  # a path that is a file in one place and a dir in another: keep going
        return text

    def list_dir(self, path: str) -> list[str] | None:
        names = self.inner.list_dir(path)
        if self._recording():
            self.dirs[os.path.normpath(path)] = names
        return names

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        result = self.inner.run(argv, timeout)
        if self._recording():
            self.commands.append(result.to_json(list(argv)))
        return result

    def which(self, name: str) -> str | None:
        found = self.inner.which(name)
        if self._recording():
            self.whiches[name] = found
        return found

    def read_link(self, path: str) -> str | None:
        target = self.inner.read_link(path)
        if self._recording():
            self.links[os.path.normpath(path)] = target
        return target

    def call(
        self, name: str, args: list[str], fn: Callable[[], dict[str, Any]]
    ) -> dict[str, Any] | None:
        recording = self._recording()
        self._in_call += 1
        try:
            value = self.inner.call(name, args, fn)
        finally:
            self._in_call -= 1
        if recording and value is not None:
            self.calls.append({"name": name, "args": list(args), "value": value})
        return value

    def close(self) -> None:
        def dump(name: str, data: Any) -> None:
            with open(os.path.join(self.bundle_dir, name), "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1, sort_keys=name != "commands.json")
                fh.write("\n")

        dump("commands.json", self.commands)
        dump("dirs.json", self.dirs)
        dump("which.json", self.whiches)
        dump("links.json", self.links)
        dump("calls.json", self.calls)
        dump("meta.json", self.meta)


def _script_tag(argv: list[str]) -> tuple[str, ...] | None:
    """Key for ``python -c SCRIPT``: the interpreter and the script's first line."""
    if len(argv) >= 3 and argv[1] == "-c" and "python" in os.path.basename(argv[0]):
        return (argv[0], "-c", argv[2].split("\n", 1)[0], *argv[3:])
    return None


def _load_json(path: str, default: Any) -> Any:
    if not os.path.exists(path):
        return default
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: {exc}") from exc


def _load_calls(bundle_dir: str) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    calls = _load_json(os.path.join(bundle_dir, "calls.json"), [])
    if not isinstance(calls, list):
        raise BundleError(f"{bundle_dir}/calls.json: expected a list")
    found: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for i, entry in enumerate(calls):
        try:
            key = (str(entry["name"]), *[str(a) for a in entry["args"]])
            value = entry["value"]
        except (KeyError, TypeError) as exc:
            raise BundleError(
                f"{bundle_dir}/calls.json entry {i}: needs name, args, value ({exc})"
            ) from exc
        if not isinstance(value, dict):
            raise BundleError(f"{bundle_dir}/calls.json entry {i}: value must be an object")
        found.setdefault(key, []).append(value)
    return found


class ReplayProbe(Probe):
    """Answers from a bundle written by CapturingProbe (or by hand)."""

    live = False
    mode = "replay"

    def __init__(self, bundle_dir: str) -> None:
        if not os.path.isdir(bundle_dir):
            raise BundleError(f"replay bundle {bundle_dir}: no such directory")
        missing = [m for m in BUNDLE_MARKERS if not os.path.exists(os.path.join(bundle_dir, m))]
        if missing:
            raise BundleError(
                f"{bundle_dir} is not a gpucheck capture: it has no {' and no '.join(missing)} "
                "(a bundle is the directory `gpucheck --capture DIR` or `dlsetup smoke --local "
                "--capture DIR` writes)"
            )
        self.bundle_dir = bundle_dir
        self.description = f"replay of {bundle_dir}"
        commands = _load_json(os.path.join(bundle_dir, "commands.json"), [])
        if not isinstance(commands, list):
            raise BundleError(f"{bundle_dir}/commands.json: expected a list")
        self._commands: dict[tuple[str, ...], list[CommandResult]] = {}
        self._tagged: dict[tuple[str, ...], list[CommandResult]] = {}
        self._served: dict[tuple[str, ...], int] = {}
        for i, entry in enumerate(commands):
            try:
                argv = [str(a) for a in entry["argv"]]
                result = CommandResult(int(entry["rc"]), str(entry["stdout"]), str(entry["stderr"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise BundleError(
                    f"{bundle_dir}/commands.json entry {i}: needs argv, rc, stdout, stderr ({exc})"
                ) from exc
            if not argv:
                raise BundleError(f"{bundle_dir}/commands.json entry {i}: empty argv")
            self._commands.setdefault(tuple(argv), []).append(result)
            tag = _script_tag(argv)
            if tag is not None:
                self._tagged.setdefault(tag, []).append(result)
        objects = {
            name: _load_json(os.path.join(bundle_dir, name + ".json"), {})
            for name in ("dirs", "which", "links", "meta")
        }
        if not all(isinstance(v, dict) for v in objects.values()):
            raise BundleError(
                f"{bundle_dir}: dirs.json, which.json, links.json, meta.json must be objects"
            )
        self._dirs: dict[str, Any] = {os.path.normpath(k): v for k, v in objects["dirs"].items()}
        self._which: dict[str, Any] = objects["which"]
        self._links: dict[str, Any] = {os.path.normpath(k): v for k, v in objects["links"].items()}
        self.meta: dict[str, Any] = objects["meta"]
        self._calls = _load_calls(bundle_dir)
        self._calls_served: dict[tuple[str, ...], int] = {}

    def read_file(self, path: str) -> str | None:
        target = _bundle_file(self.bundle_dir, path)
        if target is None or not os.path.isfile(target):
            return None
        with open(target, "rb") as fh:
            return fh.read(MAX_FILE_BYTES).decode("utf-8", errors="replace")

    def list_dir(self, path: str) -> list[str] | None:
        key = os.path.normpath(path)
        if key in self._dirs:
            names = self._dirs[key]
            return None if names is None else sorted(str(n) for n in names)
        target = _bundle_file(self.bundle_dir, path)
        if target is None or not os.path.isdir(target):
            return None
        return sorted(os.listdir(target))

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        key = tuple(argv)
        results = self._commands.get(key)
        if results is None:
            tag = _script_tag(list(argv))
            if tag is not None and tag in self._tagged:
                key, results = tag, self._tagged[tag]
        if not results:
            return CommandResult(RC_NOT_FOUND, "", f"{argv[0]}: command not found (not in bundle)")
        served = self._served.get(key, 0)
        self._served[key] = served + 1
        return results[min(served, len(results) - 1)]

    def read_link(self, path: str) -> str | None:
        target = self._links.get(os.path.normpath(path))
        return None if target is None else str(target)

    def call(
        self, name: str, args: list[str], fn: Callable[[], dict[str, Any]]
    ) -> dict[str, Any] | None:
        key = (name, *args)
        values = self._calls.get(key)
        if not values:
            return None
        served = self._calls_served.get(key, 0)
        self._calls_served[key] = served + 1
        return values[min(served, len(values) - 1)]

    def which(self, name: str) -> str | None:
        if name in self._which:
            found = self._which[name]
            return None if found is None else str(found)
        for argv in self._commands:
            if argv[0] == name and any(r.rc != RC_NOT_FOUND for r in self._commands[argv]):
                return name if name.startswith("/") else "/usr/bin/" + name
        return None
