"""`dlsetup installer-config`: render the storage part of an OS installer's answers.

Not built yet (issue 3): the module is registered so the command exists.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host", metavar="HOST", help="the inventory host whose disk_layout_disks to use"
    )


def run(args: argparse.Namespace) -> int:
    print("dlsetup installer-config: not built yet (issue 3)", file=sys.stderr)
    return 2
