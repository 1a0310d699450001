"""``python -m safeload``: the same command line as the ``safeload`` script."""

from __future__ import annotations

import sys

from safeload._cli import main

if __name__ == "__main__":
    sys.exit(main())
