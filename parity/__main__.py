"""`python -m percepiano_parity ...` (or `python -m parity ...`) runs the `parity` command."""

import sys

from percepiano_parity.commands.entry import main

if __name__ == "__main__":
    sys.exit(main())
