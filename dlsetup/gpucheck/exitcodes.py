"""Exit codes of the standalone smoke test (python3 -m dlsetup.gpucheck on the target).

gpucheck runs on the box with the standard library alone and may not import the
rest of dlsetup, so it keeps this copy of the codes it uses; a unit test holds
it to dlsetup.exitcodes.ExitCode, the one definition of the CLI's codes.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    BAD_INPUT = 2
    SMOKE_FAILED = 4
    INTERRUPTED = 130
