"""The command line every data generator in tools/ shares: rewrite its module, or --check it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def write_or_check(description: str, data: Path, render: Callable[[], str], tool: str) -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="exit 1 if the checked-in data is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if data.read_text() != text:
            print(f"{data} is stale: run python {tool}", file=sys.stderr)
            return 1
        return 0
    data.write_text(text)
    return 0
