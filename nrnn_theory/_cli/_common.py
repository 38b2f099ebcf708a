"""Helpers shared by the subcommands: JSON output, checkpoints and their data."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Parsers are built without torch (``nrnn CMD --help`` stays fast): the numeric modules
# are imported inside the functions that run a command.
from nrnn_theory._vocabulary import CONVENTIONS, NOISE_STRUCTURES


if TYPE_CHECKING:
    from nrnn_theory._types import NoiseSpec


__all__ = [
    "UserModel",
    "add_checkpoint_arguments",
    "add_checkpoint_data_options",
    "add_noise_options",
    "add_output_options",
    "add_run_options",
    "apply_run_options",
    "cli_device",
    "emit_json",
    "load_checkpoint_data",
    "load_model_or_checkpoint",
    "progress",
    "run_metadata",
    "noise_from_options",
]


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """Add the ``--json`` option and the run options (:func:`add_run_options`)."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_run_options(parser)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--quiet`` and ``--threads``, which every subcommand takes."""
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars or chatter on standard error"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="torch CPU threads (0: torch's default)",
    )


def apply_run_options(args: argparse.Namespace) -> None:
    """Set torch's thread count from ``--threads`` (0: leave torch's default)."""
    threads = getattr(args, "threads", 0) or 0
    if threads < 0:
        raise ValueError(f"--threads: expected an integer >= 0, got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)


def progress(args: argparse.Namespace, total: int, desc: str, unit: str = "step"):
    """A tqdm progress bar with ETA on standard error; off with ``--quiet``, and when
    standard error is not a terminal (tqdm's ``disable=None``)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=True if getattr(args, "quiet", False) else None,
        leave=False,
        dynamic_ncols=True,
    )


def run_metadata(args: argparse.Namespace | None = None) -> dict[str, str]:
    """``package_version``, ``command_line`` and ``date`` (UTC, ISO 8601) of this run."""
    import datetime
    import shlex

    from nrnn_theory._version import __version__

    argv = getattr(args, "argv", None)
    argv = list(sys.argv[1:]) if argv is None else list(argv)
    return {
        "package_version": __version__,
        "command_line": shlex.join(["nrnn", *argv]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def emit_json(data: Any, args: argparse.Namespace | None = None) -> None:
    """Print ``data`` as indented, strict JSON on standard output; a dict gets the
    :func:`run_metadata` of ``args`` first."""
    if isinstance(data, dict):
        data = {**run_metadata(args), **data}
    from nrnn_theory._record import to_jsonable

    json.dump(to_jsonable(data), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def add_checkpoint_arguments(parser: argparse.ArgumentParser, *, examples: int) -> None:
    """The positional ``checkpoint`` and the evaluation-data options of a subcommand that
    analyses one checkpoint, on its first ``examples`` examples by default."""
    parser.add_argument(
        "checkpoint",
        help="checkpoint or run directory of nrnn train, or a model file NAME.json of your "
        "own nn.RNN (nrnn_theory.train.save_model_file)",
    )
    add_checkpoint_data_options(parser)
    parser.set_defaults(examples=examples)


def add_checkpoint_data_options(parser: argparse.ArgumentParser) -> None:
    """Options choosing the evaluation data of checkpoint-based subcommands."""
    parser.add_argument(
        "--task",
        default=None,
        help="task to evaluate on (default: the task the first checkpoint was trained on)",
    )
    parser.add_argument(
        "--data",
        default=None,
        metavar="FILE.npz",
        help="your own data instead of a task: arrays x (N, T, D) and y (N,), optionally "
        "split or x_test/y_test, ... (format: nrnn_theory.train.user_files; a file with x "
        "and y only is the test split)",
    )
    parser.add_argument(
        "--data-root", default=None, help="folder with the files of a local-path task"
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=["train", "val", "test"],
        help="split of the task or of --data evaluated on",
    )
    parser.add_argument(
        "--examples", type=int, default=None, help="use only the first N examples of the split"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of all randomness")
    parser.add_argument(
        "--device", default="cpu", help="device for the computation (cpu, cuda, cuda:1, ...)"
    )


def cli_device(device: str):
    """``--device`` as a ``torch.device``; a ``ValueError`` naming ``--device`` if bad."""
    from nrnn_theory.train.loop import resolve_device

    try:
        return resolve_device(device)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--{exc}") from None


@dataclass(frozen=True, eq=False)
class UserModel:
    """A model file of your own (``nrnn_theory.train.load_model_file``) in the place of a
    checkpoint: the attributes the subcommands read from a checkpoint."""

    path: Path
    model: Any  # nn.Module (torch is not imported at parse time)
    config: dict[str, object]
    task: dict[str, object] | None = None


def _is_model_file(path: str) -> bool:
    return Path(path).suffix in (".json", ".safetensors")


def load_model_or_checkpoint(path: str, device):
    """A checkpoint of ``nrnn train`` (folder) or a model file of your own (``.json``)."""
    import torch

    from nrnn_theory.train import load_checkpoint, load_model_file

    if not _is_model_file(path):
        return load_checkpoint(path, map_location=device)
    model = load_model_file(path).to(torch.device(device))
    rnn = model.rnn
    config = {
        "model": "torch_rnn",
        "input_size": rnn.input_size,
        "hidden_size": rnn.hidden_size,
        "num_classes": model.fc.out_features,
    }
    return UserModel(path=Path(path).with_suffix(".json"), model=model, config=config)


def load_checkpoint_data(paths, args):
    """Load checkpoints and the evaluation data they are checked against.

    Returns ``(checkpoints, task, xs, ys)``. The data is ``--data`` (a data file of your
    own, whose labels must be classes of the first model), else ``--task`` or the first
    checkpoint's own task (with its split seed); every checkpoint must take inputs of
    the data's dimension and predict its number of classes, else a ``ValueError``
    names the checkpoint. A path ending in ``.json`` is a model file of your own.
    """

    from nrnn_theory.train import load_data_file, load_task

    apply_run_options(args)
    if args.examples is not None and args.examples < 1:
        raise ValueError(f"--examples: expected an integer >= 1, got {args.examples}")
    device = cli_device(args.device)
    ckpts = [load_model_or_checkpoint(p, device) for p in paths]
    own_data = getattr(args, "data", None)
    if own_data is not None:
        for flag, value in (("--task", args.task), ("--data-root", args.data_root)):
            if value is not None:
                raise ValueError(f"{flag}: expected either --data or {flag}, got both")
        n_cls = ckpts[0].config.get("num_classes")
        task = load_data_file(own_data, num_classes=n_cls if isinstance(n_cls, int) else None)
        name = task.name
    else:
        task_args = dict(ckpts[0].task or {})
        if args.task is not None and args.task != task_args.get("name"):
            task_args = {"name": args.task}
        if "name" not in task_args:
            raise ValueError(
                f"--task: {paths[0]} records no task; pass --task or your own --data FILE.npz"
            )
        name = task_args.pop("name")
        if args.data_root is not None:
            task_args["root"] = args.data_root
        task = load_task(name, **task_args)
    xs, ys = task.inputs(args.split), task.labels(args.split)
    if args.examples is not None:
        xs, ys = xs[: args.examples], ys[: args.examples]
    if len(xs) == 0:
        raise ValueError(f"--split: the {args.split} split of {name!r} is empty")
    for path, ck in zip(paths, ckpts, strict=True):
        d_in, n_cls = ck.config.get("input_size"), ck.config.get("num_classes")
        if own_data is not None:
            ok = d_in == task.input_size and isinstance(n_cls, int) and n_cls > int(ys.max())
            if not ok:
                raise ValueError(
                    f"checkpoint {path}: expected a model for the data of {own_data} (input "
                    f"size {task.input_size}, labels up to {int(ys.max())}), got input size "
                    f"{d_in} and {n_cls} classes"
                )
        elif d_in != task.input_size or n_cls != task.num_classes:
            raise ValueError(
                f"checkpoint {path}: expected a model for task {name!r} (input size "
                f"{task.input_size}, {task.num_classes} classes), got input size {d_in} and "
                f"{n_cls} classes"
            )
    dtype = next(ckpts[0].model.parameters()).dtype
    return ckpts, task, xs.to(device=device, dtype=dtype), ys.to(device)


def add_noise_options(parser: argparse.ArgumentParser, *, from_checkpoint: bool) -> None:
    """The noise options of every subcommand that takes a noise, in one group.

    ``--add`` and ``--mult`` are the levels in the vocabulary of the authors' code
    (``--convention paper_code``: add_noise a and mult_noise mu) or the Euler-Maruyama
    levels eps*sigma1 and eps*sigma2 (``--convention sde``; docs/theory/conventions.md), and
    ``--noise-structure`` the ``"sde"`` structure. :func:`noise_from_options` turns them
    into a :class:`~nrnn_theory.NoiseSpec`.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    from_checkpoint : bool
        True leaves every option unset: set, they replace a checkpoint's own training
        noise (the analyses of ``nrnn analyse`` and ``nrnn certify``). False gives them
        the defaults of :meth:`NoiseSpec.paper_code() <nrnn_theory.NoiseSpec.paper_code>`
        (``nrnn train``: no noise unless asked for; levels 0, ``paper_code``,
        ``diagonal``).
    """
    if from_checkpoint:
        group = parser.add_argument_group(
            "noise (default: the checkpoint's own training noise)",
            "Set --add and/or --mult to use this noise instead of the checkpoint's own; the "
            "names and meaning are those of nrnn train (docs/theory/conventions.md).",
        )
        add, mult, convention, structure = None, None, None, None
        unset = {"convention": " (unset: paper_code)", "structure": " (unset: diagonal)"}
    else:
        group = parser.add_argument_group("noise (nrnn, antisymmetric)")
        add, mult, convention, structure = 0.0, 0.0, "paper_code", "diagonal"
        unset = {"convention": "", "structure": ""}
    group.add_argument(
        "--add", type=float, default=add, help="additive noise level (add_noise a, or eps*sigma1)"
    )
    group.add_argument(
        "--mult",
        type=float,
        default=mult,
        help="multiplicative noise level (mult_noise mu, or eps*sigma2)",
    )
    group.add_argument(
        "--convention",
        default=convention,
        choices=list(CONVENTIONS),
        help="discretization of the noise (docs/theory/conventions.md)" + unset["convention"],
    )
    group.add_argument(
        "--noise-structure",
        default=structure,
        choices=list(NOISE_STRUCTURES),
        help="sde: one Brownian motion per unit, or one shared for the multiplicative part"
        + unset["structure"],
    )


def noise_from_options(args: argparse.Namespace) -> NoiseSpec | None:
    """The :class:`~nrnn_theory.NoiseSpec` of the options of :func:`add_noise_options`.

    ``None`` when neither ``--add`` nor ``--mult`` is set (only possible with
    ``from_checkpoint=True``); ``--convention`` or ``--noise-structure`` without a level is then
    an error (it would silently be ignored otherwise). A level that is negative or not
    finite is an error naming its flag.
    """
    if args.add is None and args.mult is None:
        for flag, value in (
            ("--convention", args.convention),
            ("--noise-structure", args.noise_structure),
        ):
            if value is not None:
                raise ValueError(
                    f"{flag}: expected together with --add and/or --mult, got it alone"
                )
        return None
    for flag, value in (("--add", args.add), ("--mult", args.mult)):
        if value is not None and not (value >= 0.0 and value < float("inf")):
            raise ValueError(f"{flag}: expected a finite level >= 0, got {value}")
    from nrnn_theory._types import NoiseSpec

    return NoiseSpec(
        epsilon=1.0,
        sigma1=args.add or 0.0,
        sigma2=args.mult or 0.0,
        structure=args.noise_structure or "diagonal",
        convention=args.convention or "paper_code",
    )
