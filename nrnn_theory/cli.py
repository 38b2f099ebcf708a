"""The ``nrnn`` command line: a thin dispatcher over ``nrnn_theory._cli`` modules.

Run ``nrnn --help`` (or ``python -m nrnn_theory.cli --help``, the form torchrun
needs) for the list of subcommands. Each subcommand lives in its own module under
:mod:`nrnn_theory._cli` exposing ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; heavy imports happen inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nrnn_theory._version import __version__


__all__ = ["COMMANDS", "build_parser", "main"]

#: Subcommand name -> module implementing it.
COMMANDS: dict[str, str] = {
    "demo": "nrnn_theory._cli.demo",
    "train": "nrnn_theory._cli.train",
    "margins": "nrnn_theory._cli.margins",
    "robustness": "nrnn_theory._cli.robustness",
    "analyse": "nrnn_theory._cli.analyse",
    "certify": "nrnn_theory._cli.certify",
    "reproduce": "nrnn_theory._cli.reproduce",
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default and keeps the line breaks of the description."""


def build_parser() -> argparse.ArgumentParser:
    """The ``nrnn`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="nrnn",
        description="Noisy recurrent neural networks: train, analyse, certify, reproduce.",
    )
    parser.add_argument("--version", action="version", version=f"nrnn_theory {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=(module.__doc__ or module.HELP).strip(),
            formatter_class=_HelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nrnn`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, ImportError) as exc:
        print(f"nrnn {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
