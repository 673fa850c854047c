# Copyright: dlsetup contributors
# Apache-2.0
"""Read a small file whole, and replace one atomically: shared by the
collection's modules that write files they render (files, package_hold).

Runs on the target with the Python standard library only.
"""

from __future__ import annotations

import os
import tempfile


def read_bytes(path: str) -> bytes | None:
    """The file's bytes, or None where it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def write_atomic(path: str, data: bytes, mode: int) -> None:
    """The new content under a temporary name in the same folder, with its
    mode, then renamed: a reader (or a crash) sees the old file or the new
    one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), mode)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
