"""The end-to-end tier's split over two xdist workers (tests/e2e/conftest.py).

Two rules the split must keep: the files that share the host's loop devices
are in one group (they must never run at once), and every end-to-end file is
placed by hand in the table, so a new file is balanced on purpose rather
than left to run as a group of its own.
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import GROUPS, LOOP_DISK_FILES, xdist_group

E2E = Path(__file__).resolve().parent.parent / "e2e"


def test_the_loop_disk_files_share_one_group() -> None:
    assert len({xdist_group(f) for f in LOOP_DISK_FILES}) == 1


def test_every_end_to_end_file_is_placed_in_the_table() -> None:
    files = {p.name for p in E2E.glob("test_*.py")}
    assert files == set(GROUPS), sorted(files ^ set(GROUPS))


def test_two_groups_and_the_long_files_apart() -> None:
    assert set(GROUPS.values()) == {"e2e-a", "e2e-b"}
    assert xdist_group("test_e2e_interrupt.py") != xdist_group("test_e2e_ssh.py")


def test_a_file_not_in_the_table_is_its_own_group() -> None:
    assert xdist_group("test_e2e_new.py") == "test_e2e_new.py"
