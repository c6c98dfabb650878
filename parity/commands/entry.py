"""The `parity` console script (and `python -m percepiano_parity`): the signal handlers go in before the rest
of the tool is imported, so a Ctrl-C or SIGTERM in the first moments (torch takes seconds to import) ends
the run with one line and 130 / 143, like one at any later point, never with a traceback.
"""

from __future__ import annotations

import sys

from percepiano_parity.core.interrupts import Interrupted, signals_as_interrupted


def main() -> int:
    """Run `parity` with the process's arguments; returns the exit code (see commands.cli)."""
    with signals_as_interrupted():
        try:
            from percepiano_parity.commands.cli import main as run

            return run()
        except Interrupted as exc:
            print(f"parity: error: {exc.word}", file=sys.stderr)
            return exc.exit_code


__all__ = ["main"]
