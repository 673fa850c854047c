"""The order the integration files start in (tests/integration/conftest.py).

scripts/test runs the tier on xdist workers (two, or one beside the VM tier)
with `--no-loadscope-reorder`, so files start in collection order: the DKMS
compile, the longest file by far, must start first, and every file is placed
on purpose.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest import START_ORDER, start_rank

REPO = Path(__file__).resolve().parents[2]
INTEGRATION = REPO / "tests" / "integration"


def test_the_dkms_compile_starts_first() -> None:
    assert START_ORDER[0] == "test_nvidia_driver_dkms.py"
    assert start_rank("test_nvidia_driver_dkms.py") == 0


def test_every_integration_file_is_placed() -> None:
    files = {p.name for p in INTEGRATION.glob("test_*.py")}
    assert files == set(START_ORDER), sorted(files ^ set(START_ORDER))


def test_a_file_not_placed_starts_after_the_placed_ones() -> None:
    assert start_rank("test_new.py") == len(START_ORDER)


def test_scripts_test_keeps_the_collection_order() -> None:
    script = (REPO / "scripts" / "test").read_text()
    line = next(ln for ln in script.splitlines() if "tests/integration" in ln and "--dist" in ln)
    assert "--no-loadscope-reorder" in line
