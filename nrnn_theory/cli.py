"""The ``nrnn`` command line: a thin dispatcher over ``nrnn_theory._cli`` modules.

Run ``nrnn --help`` (or ``python -m nrnn_theory.cli --help``, the form torchrun
needs) for the list of subcommands. Each subcommand lives in its own module under
:mod:`nrnn_theory._cli` exposing ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; heavy imports happen inside ``run``.

Start-up is kept short: this module imports neither torch nor the package's numeric
modules, ``nrnn --help`` and ``nrnn --version`` import no subcommand module (the
one-line help of each is in :data:`SUMMARIES`), and ``nrnn CMD ...`` builds the
arguments of ``CMD`` alone.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence

from nrnn_theory._version import __version__


__all__ = ["COMMANDS", "SUMMARIES", "build_parser", "main"]

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

#: Subcommand name -> its one-line help, the module's ``HELP`` (a test keeps them equal),
#: so that ``nrnn --help`` imports no subcommand module.
SUMMARIES: dict[str, str] = {
    "demo": "roll a small NRNN out on digit sequences, with and without noise",
    "train": "train a noisy RNN or a baseline (digits, MNIST, UCR/UEA, ...)",
    "margins": "certified and empirical input margins of a checkpoint",
    "robustness": "accuracy of checkpoints under noise, salt-and-pepper and attacks",
    "analyse": "explicit noise regularizer and Hessian flatness of a checkpoint",
    "certify": "stability certificates of a checkpoint beside measured Lyapunov exponents",
    "reproduce": "train the zoo, compute every theory quantity, draw figures, write the report",
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default and keeps the line breaks of the description."""


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``nrnn`` argument parser.

    Parameters
    ----------
    commands : iterable of str, optional
        Subcommands whose arguments are built (their modules imported); the others
        are listed with their one-line help only. Default: all of them.
    """
    full = set(COMMANDS) if commands is None else set(commands)
    parser = argparse.ArgumentParser(
        prog="nrnn",
        description="Noisy recurrent neural networks: train, analyse, certify, reproduce.",
    )
    parser.add_argument("--version", action="version", version=f"nrnn_theory {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        if name not in full:
            sub.add_parser(name, help=SUMMARIES[name])
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=(module.__doc__ or module.HELP).strip(),
            formatter_class=_HelpFormatter,
        )
        module.add_arguments(p)
        if not any("--threads" in act.option_strings for act in p._actions):
            p.add_argument(
                "--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
            )
        p.set_defaults(_run=module.run)
    return parser


def _set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads N`` (every subcommand has it) before the command runs."""
    n = getattr(args, "threads", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"--threads: expected an integer >= 0, got {n!r}")
    if n:
        import torch

        torch.set_num_threads(n)


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the top level takes no option values)."""
    for token in argv:
        if not token.startswith("-"):
            return token
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nrnn`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command(argv)
    parser = build_parser(() if command not in COMMANDS else (command,))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        _set_threads(args)
        return int(args._run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, ImportError) as exc:
        print(f"nrnn {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
