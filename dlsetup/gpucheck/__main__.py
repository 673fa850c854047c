"""Entry point: ``python3 -m dlsetup.gpucheck`` or ``python3 /some/dir/gpucheck``.

Run as a directory, Python puts the directory itself on sys.path and runs this
file outside any package, so the relative imports of the modules would fail.
In that case the directory's parent goes on sys.path instead and the
directory is imported as a package under its own name (keep it a valid
module name, e.g. ``gpucheck``).
"""

from __future__ import annotations

import importlib
import os
import sys


def _run() -> int:
    if __package__:
        from .cli import main  # noqa: PLC0415 (only valid inside the package)

        return main()
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == here:
        del sys.path[0]
    sys.path.insert(0, os.path.dirname(here))
    cli = importlib.import_module(os.path.basename(here) + ".cli")
    return int(cli.main())


if __name__ == "__main__":
    sys.exit(_run())
