"""Compare the robustness of trained checkpoints under the four perturbation families.

Accuracy of each model on the evaluation split under (a) additive white noise, (b)
multiplicative white noise, (c) salt-and-pepper noise and (d) adversarial attacks,
over a grid of strengths with a confidence interval per cell (docs/theory/experiments.md). Prints a
comparison table (rows: models; columns: perturbation x strength) and, with --plot,
writes the four-panel accuracy-versus-strength figure (PDF and PNG).

The default perturbations are those of the reproduction's zoo: white, multiplicative
and salt-and-pepper noise, FGSM and PGD at l_inf budgets 0.01, 0.03, 0.05. Every
checkpoint must have been trained on the task, split and split seed it is evaluated on
(the first checkpoint's, or --task); a checkpoint trained on other data is refused.
Rows are named by run folder and epoch; --epoch best evaluates each run's
best-validation checkpoint (checkpoints/best), --epoch N its epoch N.

Example:

  nrnn robustness runs/nrnn-digits runs/lip-digits --epoch best --plot robustness.png
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


#: The default perturbations and l_inf attack budgets (those of the reproduction's zoo,
#: nrnn_theory.experiments.model_analysis.PERTURBATIONS / ATTACK_EPS).
PERTURBATIONS_DEFAULT = (
    "white_noise",
    "multiplicative_noise",
    "salt_and_pepper",
    "fgsm_linf",
    "pgd_linf",
)
ATTACK_EPS_DEFAULT = (0.01, 0.03, 0.05)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nrnn_theory._vocabulary import DEFAULT_GRIDS, PERTURBATION_NAMES

    parser.add_argument(
        "checkpoints",
        nargs="+",
        help="checkpoints or run directories of nrnn train, or model files NAME.json",
    )
    add_checkpoint_data_options(parser)
    parser.add_argument(
        "--epoch",
        default="last",
        help="for run directories: 'last' (newest checkpoint), 'best' (best validation "
        "epoch, checkpoints/best) or an epoch number",
    )
    parser.add_argument(
        "--perturbations",
        default=",".join(PERTURBATIONS_DEFAULT),
        help=f"comma-separated subset of {', '.join(PERTURBATION_NAMES)}",
    )
    for name, grid in DEFAULT_GRIDS.items():
        if name in ("fgsm_linf", "pgd_linf"):
            grid = ATTACK_EPS_DEFAULT
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
    paths = [_at_epoch(p, args.epoch) for p in args.checkpoints]
    ckpts, task, xs, ys = load_checkpoint_data(paths, args)
    _check_same_data(paths, ckpts, args)
    names = _unique_names(paths, [getattr(ck, "epoch", None) for ck in ckpts])
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


def _at_epoch(path: str, epoch: str) -> str:
    """The checkpoint of run ``path`` at ``--epoch`` (a checkpoint directory is kept)."""
    from nrnn_theory.train.checkpoint import JSON_NAME, best_checkpoint

    p = Path(path)
    if not (p / "checkpoints").is_dir():  # a checkpoint directory (or a missing path)
        if epoch != "last":
            raise ValueError(
                f"--epoch {epoch}: {path} is not a run directory (no checkpoints/ folder); "
                "give the run folder to choose an epoch"
            )
        return path
    if epoch == "last":
        return path
    if epoch == "best":
        best = best_checkpoint(p)
        if best is None:
            raise ValueError(
                f"--epoch best: run {path} has no best-validation checkpoint (trained "
                "without a validation split, or by an older version)"
            )
        return str(best)
    try:
        n = int(epoch)
    except ValueError:
        raise ValueError(f"--epoch: expected 'last', 'best' or an integer, got {epoch!r}") from None
    target = p / "checkpoints" / f"epoch-{n:04d}"
    if not (target / JSON_NAME).is_file():
        kept = sorted(d.name for d in (p / "checkpoints").iterdir() if d.name.startswith("epoch-"))
        raise ValueError(f"--epoch {n}: run {path} has no such checkpoint (kept: {kept})")
    return str(target)


def _check_same_data(paths, ckpts, args) -> None:
    """Refuse a checkpoint trained on another task, split or split seed than the
    evaluated one (the first checkpoint's task, or --task)."""
    reference = dict(ckpts[0].task or {})
    if args.task is not None and args.task != reference.get("name"):
        reference = {"name": args.task}
    reference.pop("root", None)
    for path, ck in zip(paths, ckpts, strict=True):
        if ck.task is None:
            continue  # trained on data built in Python: only the shapes can be checked
        own = {k: v for k, v in ck.task.items() if k != "root"}
        if args.task is not None and set(reference) == {"name"}:
            differs = own.get("name") != reference["name"]
        else:
            differs = own != reference
        if differs:
            raise ValueError(
                f"checkpoint {path}: trained on {own}, but the evaluation uses "
                f"{reference}: a different task, split or split seed; evaluate it on its "
                "own data (alone or with checkpoints of the same data)"
            )


def _unique_names(paths, epochs=None) -> list[str]:
    """Short row names: the run folder names and epochs, made unique."""
    names: list[str] = []
    epochs = [None] * len(paths) if epochs is None else epochs
    for p, epoch in zip(paths, epochs, strict=True):
        path = Path(p)
        inside = path.name.startswith("epoch") or path.name == "best"
        base = (
            path.parent.parent.name
            if inside and path.parent.name == "checkpoints"
            else (path.name if not inside else path.parent.name)
        )
        if epoch is not None:
            base += f"@best(epoch {epoch})" if path.name == "best" else f"@epoch {epoch}"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names
