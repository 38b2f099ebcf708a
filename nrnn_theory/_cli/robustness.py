"""Compare the robustness of trained checkpoints under the four perturbation families.

Accuracy of each model on the evaluation split under (a) additive white noise, (b)
multiplicative white noise, (c) salt-and-pepper noise and (d) adversarial attacks,
over a grid of strengths with a confidence interval per cell (THEORY.md §11). Prints a
comparison table (rows: models; columns: perturbation x strength) and, with --plot,
writes the four-panel accuracy-versus-strength figure (PDF and PNG).

Example:

  nrnn robustness runs/nrnn-digits runs/lip-digits --plot robustness.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nrnn_theory._cli._common import (
    add_checkpoint_data_options,
    add_output_options,
    emit_json,
    load_checkpoint_data,
    progress,
)


HELP = "accuracy of checkpoints under noise, salt-and-pepper and attacks"


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nrnn_theory.robustness import DEFAULT_GRIDS, DEFAULT_PERTURBATIONS, PERTURBATIONS

    parser.add_argument(
        "checkpoints",
        nargs="+",
        help="checkpoints or run directories of nrnn train, or model files NAME.json",
    )
    add_checkpoint_data_options(parser)
    parser.add_argument(
        "--perturbations",
        default=",".join(DEFAULT_PERTURBATIONS),
        help=f"comma-separated subset of {', '.join(PERTURBATIONS)}",
    )
    for name, grid in DEFAULT_GRIDS.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}-grid",
            type=_floats,
            default=grid,
            metavar="S1,S2,...",
            help=f"strengths of {name}",
        )
    parser.add_argument("--draws", type=int, default=5, help="random draws per noise strength")
    parser.add_argument("--attack-steps", type=int, default=20, help="PGD steps")
    parser.add_argument(
        "--plot",
        default=None,
        help="write the four-panel figure to exactly this file (.png or .pdf, by its suffix)",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite the --plot file if it exists"
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    add_output_options(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from nrnn_theory.robustness import (
        PERTURBATIONS,
        comparison_table,
        format_comparison_table,
        robustness_sweep,
    )

    perturbations = [p.strip() for p in args.perturbations.split(",") if p.strip()]
    unknown = [p for p in perturbations if p not in PERTURBATIONS]
    if unknown:
        raise ValueError(
            f"--perturbations: expected names from {', '.join(PERTURBATIONS)}, "
            f"got {', '.join(unknown)}"
        )
    grids = {p: getattr(args, f"{p}_grid") for p in perturbations}
    plot = None if args.plot is None else _plot_target(args.plot, force=args.force)
    ckpts, task, xs, ys = load_checkpoint_data(args.checkpoints, args)
    names = _unique_names(args.checkpoints)
    sweeps = {}
    bar = progress(args, len(ckpts), f"robustness on {len(xs)} examples", unit="model")
    for name, ck in zip(names, ckpts, strict=True):
        bar.set_postfix_str(name)
        sweeps[name] = robustness_sweep(
            ck.model,
            xs,
            ys,
            perturbations=perturbations,
            grids=grids,
            n_draws=args.draws,
            data_range=task.value_range,
            attack_steps=args.attack_steps,
            name=name,
            generator=torch.Generator(device=xs.device).manual_seed(args.seed),
        )
        bar.update()
    bar.close()
    table = comparison_table(sweeps)
    figure = None
    if plot is not None:
        figure = [str(_write_plot(sweeps, plot, task.name, force=args.force))]
    if args.json:
        emit_json(
            {
                "task": task.name,
                "split": args.split,
                "n_examples": len(xs),
                "table": table,
                "sweeps": sweeps,
                "figure": figure,
            },
            args,
        )
        return 0
    style = "markdown" if args.markdown else "text"
    print(format_comparison_table(table, style=style))
    if figure:
        print("figure: " + ", ".join(figure))
    return 0


def _plot_target(path: str, *, force: bool) -> Path:
    """Check ``--plot`` before any work: a .png/.pdf name in an existing folder, not an
    existing file unless ``--force``."""
    target = Path(path)
    if target.suffix.lower() not in (".png", ".pdf"):
        raise ValueError(f"--plot: expected a file name ending in .png or .pdf, got {path!r}")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"--plot: the folder {str(target.parent)!r} does not exist")
    if target.is_dir():
        raise IsADirectoryError(f"--plot: {path!r} is a folder")
    if target.exists() and not force:
        raise FileExistsError(
            f"--plot: {path!r} exists; refusing to overwrite it (pass --force to replace it)"
        )
    return target


def _write_plot(sweeps, target: Path, task_name: str, *, force: bool) -> Path:
    """Draw the figure and write exactly ``target`` (atomically), no sibling file."""
    import tempfile

    from nrnn_theory._io import atomic_write_bytes
    from nrnn_theory.experiments.zoo_plots import plot_robustness

    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".nrnn-plot-") as tmp:
        pdf, png = plot_robustness(sweeps, Path(tmp) / "figure", title=f"task {task_name}")
        data = (pdf if target.suffix.lower() == ".pdf" else png).read_bytes()
    if target.exists() and not force:  # created while the sweep ran
        raise FileExistsError(
            f"--plot: {str(target)!r} exists; refusing to overwrite it (pass --force)"
        )
    return atomic_write_bytes(target, data)


def _unique_names(paths) -> list[str]:
    """Short row names: the run folder names, made unique."""
    names: list[str] = []
    for p in paths:
        path = Path(p)
        base = path.name if not path.name.startswith("epoch") else path.parent.name
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names
