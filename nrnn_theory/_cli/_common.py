"""Helpers shared by the subcommands: JSON output and progress settings."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nrnn_theory.results import to_jsonable


__all__ = ["add_output_options", "emit_json"]


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """Add the ``--json`` and ``--quiet`` options every subcommand shares."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or chatter")


def emit_json(data: Any) -> None:
    """Print ``data`` as indented, strict JSON on standard output."""
    json.dump(to_jsonable(data), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")
