"""Jinja tests for the roles' apt steps.

    until: __installed is not dlsetup.box.apt_archives_busy
    retries: "{{ (dlsetup_apt_lock_timeout | default(60) | int) // 5 }}"
    delay: 5

apt-get install (which the apt module runs) waits for dpkg's lock when told
(the module's lock_timeout), but never for the archives' lock
(/var/cache/apt/archives/lock): another apt that is downloading packages
holds it without dpkg's lock (PackageKit fetching updates on a desktop box,
someone's `apt-get --download-only`, unattended-upgrades' download), and the
install then fails at once. The base stage waits for apt-daily's and
unattended-upgrades' own runs; every apt module step that installs, and the
cuda role's `apt-get clean` (a command: the apt module's clean drops apt-get's
stderr), tries again while this test says the archives were busy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# apt's own lines (the apt module runs apt-get in the C locale):
#   E: Could not get lock /var/cache/apt/archives/lock. It is held by process 4242 (packagekitd)
#   E: Unable to lock directory /var/cache/apt/archives/
ARCHIVES_LOCK = re.compile(
    r"(?:Could not get lock|Unable to lock directory) /var/cache/apt/archives/"
)


def apt_archives_busy(result: Any) -> bool:
    """A registered apt module (or apt-get command) result that failed because
    another apt held the archives' lock; False for a success, a skip and any
    other failure."""
    if not isinstance(result, Mapping) or not result.get("failed"):
        return False
    said = "\n".join(str(result.get(key) or "") for key in ("msg", "stderr", "stdout"))
    return ARCHIVES_LOCK.search(said) is not None


class TestModule:
    def tests(self) -> dict[str, Any]:
        return {"apt_archives_busy": apt_archives_busy}
