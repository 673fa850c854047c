# Copyright: dlsetup contributors
# Apache-2.0
"""Read a small file whole, replace one atomically, and make a folder with
the attributes asked for: the one home of these for the collection's modules
(files, package_hold, docker_daemon_json, converged_state, nvme_report).

Runs on the target with the Python standard library only (``ensure_dir``
takes the calling module's AnsibleModule).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile


def read_bytes(path: str) -> bytes | None:
    """The file's bytes, or None where it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def write_atomic(path: str, data: bytes, mode: int, keep_existing: bool = False) -> None:
    """The new content under a temporary name in the same folder, with its
    mode, fsynced, then renamed, and the folder fsynced: a reader (or a crash)
    sees the old file or the new one, never half of one, and the rename
    survives a power cut.

    ``keep_existing``: a file that is there keeps its mode and owner (a file
    the user owns, such as daemon.json); a new one gets ``mode``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    st = None
    if keep_existing:
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), stat.S_IMODE(st.st_mode) if st else mode)
            if st is not None:
                with contextlib.suppress(PermissionError):  # not root (tests): stays ours
                    os.fchown(f.fileno(), st.st_uid, st.st_gid)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def ensure_dir(
    module, path: str, mode: str = "0755", owner: str = "root", group: str = "root"
) -> bool:
    """The folder ``path`` with this mode, owner and group, set the way Ansible's
    file module sets them (``set_fs_attributes_if_different``). True where it
    was made or an attribute was set. In check mode a missing folder is
    reported, not made."""
    made = not os.path.isdir(path)
    if made:
        if module.check_mode:
            return True
        os.makedirs(path, exist_ok=True)
    attrs = module.load_file_common_arguments(
        {"path": path, "mode": mode, "owner": owner, "group": group}
    )
    return bool(module.set_fs_attributes_if_different(attrs, False)) or made
