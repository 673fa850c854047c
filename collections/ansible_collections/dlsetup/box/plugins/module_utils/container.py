# Copyright: dlsetup contributors
# Apache-2.0
"""Whether the host is a container, and which kind: one answer for every module.

A container boots no kernel of its own, cannot reboot its host and runs no
udevd, so several roles decide on it. They ask the module container_info (the
nvme role) or a module that imports this file (nvidia_driver_state); the answer
is the same everywhere because it is computed here only.

Pure of the system root (tests point it at a folder) and of what
``systemd-detect-virt --container`` printed. Standard library only.
"""

from __future__ import annotations

import os
import re

DETECT_VIRT = ("systemd-detect-virt", "--container")

# Files a container runtime leaves in the container's root: path -> its kind.
RUNTIME_MARKERS = (("/.dockerenv", "docker"), ("/run/.containerenv", "podman"))

# What systemd-detect-virt prints: one word (docker, lxc, podman, systemd-nspawn, wsl ...).
_KIND = re.compile(r"^[A-Za-z0-9_.-]+$")


def _pid1_container_variable(sysroot):
    """The container= variable a runtime sets for PID 1 (systemd's own convention)."""
    try:
        with open(sysroot + "/proc/1/environ", "rb") as handle:
            env = handle.read()
    except OSError:
        return None
    for entry in env.split(b"\0"):
        if entry.startswith(b"container="):
            return entry.split(b"=", 1)[1].decode("utf-8", "replace").strip() or "container"
    return None


def container_kind(sysroot="", detect_virt=None):
    """'docker', 'lxc', 'podman', ... when the system under sysroot is a container; '' if not.

    detect_virt is what ``systemd-detect-virt --container`` printed, None when it
    was not run (not installed, or a recorded sysroot). It knows most runtimes;
    then the files Docker and Podman leave in the root and PID 1's container=
    variable are asked, in that order.
    """
    lines = (detect_virt or "").strip().splitlines()
    said = lines[0].strip() if lines else ""
    if said and said != "none" and _KIND.match(said):
        return said
    for path, kind in RUNTIME_MARKERS:
        if os.path.exists(sysroot + path):
            return kind
    return _pid1_container_variable(sysroot) or ""
