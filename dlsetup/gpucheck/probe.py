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
    meta.json       {"captured_at": ..., "options": {...}, ...} optional

Replay rules:

* a file that is not under ``files/`` is absent (``read_file`` returns None);
* a command whose argv is not in ``commands.json`` is not found (rc 127); when
  the same argv was recorded several times the recordings are returned in
  order, the last one repeating; ``python -c SCRIPT`` commands whose script
  differs only after its first line (a versioned tag) still match;
* a directory listing comes from ``dirs.json``; a directory not named there is
  listed from what ``files/`` holds under it (so hand-made bundles need no
  ``dirs.json``), and is absent when ``files/`` has nothing there either;
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
import time
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
        self.meta: dict[str, Any] = dict(meta or {})
        self.meta.setdefault("captured_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        os.makedirs(os.path.join(bundle_dir, "files"), exist_ok=True)

    def read_file(self, path: str) -> str | None:
        text = self.inner.read_file(path)
        target = _bundle_file(self.bundle_dir, path)
        if text is not None and target is not None:
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "w", encoding="utf-8") as fh:
                    fh.write(text)
            except OSError:
                pass  # a path that is a file in one place and a dir in another: keep going
        return text

    def list_dir(self, path: str) -> list[str] | None:
        names = self.inner.list_dir(path)
        self.dirs[os.path.normpath(path)] = names
        return names

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        result = self.inner.run(argv, timeout)
        self.commands.append(result.to_json(list(argv)))
        return result

    def which(self, name: str) -> str | None:
        found = self.inner.which(name)
        self.whiches[name] = found
        return found

    def close(self) -> None:
        def dump(name: str, data: Any) -> None:
            with open(os.path.join(self.bundle_dir, name), "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1, sort_keys=name != "commands.json")
                fh.write("\n")

        dump("commands.json", self.commands)
        dump("dirs.json", self.dirs)
        dump("which.json", self.whiches)
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


class ReplayProbe(Probe):
    """Answers from a bundle written by CapturingProbe (or by hand)."""

    live = False
    mode = "replay"

    def __init__(self, bundle_dir: str) -> None:
        if not os.path.isdir(bundle_dir):
            raise BundleError(f"replay bundle {bundle_dir}: no such directory")
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
        dirs = _load_json(os.path.join(bundle_dir, "dirs.json"), {})
        whiches = _load_json(os.path.join(bundle_dir, "which.json"), {})
        meta = _load_json(os.path.join(bundle_dir, "meta.json"), {})
        if not (isinstance(dirs, dict) and isinstance(whiches, dict) and isinstance(meta, dict)):
            raise BundleError(f"{bundle_dir}: dirs.json, which.json, meta.json must be objects")
        self._dirs: dict[str, Any] = {os.path.normpath(k): v for k, v in dirs.items()}
        self._which: dict[str, Any] = whiches
        self.meta: dict[str, Any] = meta

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

    def which(self, name: str) -> str | None:
        if name in self._which:
            found = self._which[name]
            return None if found is None else str(found)
        for argv in self._commands:
            if argv[0] == name and any(r.rc != RC_NOT_FOUND for r in self._commands[argv]):
                return name if name.startswith("/") else "/usr/bin/" + name
        return None
