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


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line on stderr too (``nrnn CMD: error: ...``), exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default once, in the format the option accepts (``S1,S2``
    for a list), and keeps the line breaks of the description.

    No ``(default: ...)`` is added where the help already states it ("default" or
    "unset:" in the text), for flags, or for an unset (``None``) default.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text
            or "unset:" in text
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)
            or action.nargs == 0
        ):
            return text
        if isinstance(default, list | tuple):
            # nargs options take separate words; the others parse "S1,S2"
            shown = (" " if action.nargs is not None else ",").join(str(v) for v in default)
        else:
            shown = str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``nrnn`` argument parser.

    Parameters
    ----------
    commands : iterable of str, optional
        Subcommands whose arguments are built (their modules imported); the others
        are listed with their one-line help only. Default: all of them.
    """
    full = set(COMMANDS) if commands is None else set(commands)
    parser = _Parser(
        prog="nrnn",
        description="Noisy recurrent neural networks: train, analyse, certify, reproduce.",
    )
    parser.add_argument("--version", action="version", version=f"nrnn_theory {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of an error instead of its one-line message",
    )
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
        p.set_defaults(_run=module.run)
    return parser


#: Exception types that mean bad input, a bad file or a diverging computation, not a
#: bug: ``CheckpointError`` and ``NonFiniteStateError`` are ``ValueError``\ s; ``OSError``
#: covers ``PermissionError``, ``NotADirectoryError``, ``FileExistsError``, ...
_EXPECTED = (ValueError, TypeError, OSError, ImportError, FloatingPointError)


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (an ``OSError`` keeps its path)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


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
    args.argv = argv  # the JSON output records its command line
    if args.command is None:
        parser.print_help()
        return 0
    if args.debug:
        return int(args._run(args) or 0)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"nrnn {args.command}: interrupted", file=sys.stderr)
        return 130
    except _EXPECTED as exc:  # bad input, files, checkpoints, non-finite states
        print(f"nrnn {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: still one line, the traceback with --debug
        print(
            f"nrnn {args.command}: internal error: {type(exc).__name__}: {_one_line(exc)} "
            "(run nrnn --debug ... for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
