"""``nrnn reproduce``: train the zoo, analyse it, run the theory studies, draw, report.

Layout of the output folder ``out``::

    out/config.json              the preset and tasks of this run (checked on --resume)
    out/runs/<task>/<model>/seed<s>/   training checkpoints (resumable)
    out/results/                 verified .json + .npz entries (ResultStore)
        <task>/<model>/seed<s>/train      training history
        <task>/<model>/seed<s>/analysis   every theory quantity of that model
        theory/<study>                    the theory-only studies
    out/figures/*.pdf, *.png
    out/report.md, out/report.html

Every stage skips what is already stored and verifies (``--resume``), so an
interrupted run continues where it stopped; a corrupt entry is recomputed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from nrnn_theory._version import __version__
from nrnn_theory.experiments._helpers import progress_bar
from nrnn_theory.experiments.claims import CLAIMS, scale_warnings, zoo_evidence, zoo_table
from nrnn_theory.experiments.report import (
    ClaimSection,
    Evidence,
    Report,
    Table,
    render_html,
    render_markdown,
)
from nrnn_theory.experiments.store import ResultStore, atomic_write_bytes, git_revision
from nrnn_theory.experiments.zoo import PRESETS, ZOO, Preset


__all__ = [
    "CLAIMS",
    "ReproductionResult",
    "build_report",
    "draw_figures",
    "draw_zoo_figures",
    "load_zoo_records",
    "load_zoo_training",
    "open_run",
    "reproduce",
    "run_studies",
    "run_zoo",
    "stored_preset",
    "write_report",
]

_FIGURES = {
    "flatness": ("C3a", "Hessian trace and top eigenvalue against the training noise"),
    "lyapunov": ("C3b", "Lyapunov spectra, clean and along a frozen noise path"),
    "margins": ("C3c", "Distribution of the empirical l2 input margins"),
    "robustness": ("C5", "Accuracy under the four inference-time perturbations"),
    "correlation": ("C5", "Robust accuracy against regularizer, flatness, exponent, margin"),
}


@dataclass(frozen=True)
class ReproductionResult:
    """Where a reproduction wrote its report, and the verdict of each claim.

    Attributes
    ----------
    out : Path
        The reproduction folder.
    report_md, report_html : Path
        The report, as Markdown and as one self-contained HTML page.
    verdicts : dict of str to str
        The verdict of each claim, by claim name.
    seconds : dict of str to float
        Wall-clock time of each stage.
    """

    out: Path
    report_md: Path
    report_html: Path
    verdicts: dict[str, str]
    seconds: dict[str, float]


def _studies() -> dict[str, Any]:
    from nrnn_theory.experiments.studies import STUDIES

    return STUDIES


def _check_out(out: Path, config: dict[str, Any], resume: bool) -> None:
    cfg_path = out / "config.json"
    if cfg_path.exists():
        if not resume:
            raise FileExistsError(
                f"out: {out} already holds a reproduction; pass --resume to continue it, "
                "or choose another --out (nothing was overwritten)"
            )
        try:
            stored = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"out: {cfg_path} is not a readable reproduction config ({exc})"
            ) from exc
        if stored.get("preset") != config["preset"] or stored.get("tasks") != config["tasks"]:
            raise ValueError(
                f"out: {out} was run with preset {stored.get('preset')!r} on tasks "
                f"{stored.get('tasks')}, not {config['preset']!r} on {config['tasks']}; "
                "resume it with the same options or choose another --out"
            )
    elif out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
        # (a reproduction writes config.json first: without it, only temporary leftovers
        # of that write can be its own, so even --resume must not touch the folder)
        raise FileExistsError(
            f"out: {out} exists, is not empty and is not a reproduction folder (no "
            "config.json); choose another --out (nothing was overwritten)"
        )


def _member_entries(task: str, model: str, seed: int) -> tuple[str, str]:
    base = f"{task}/{model}/seed{seed}"
    return f"{base}/train", f"{base}/analysis"


def _diverged_entry(task: str, model: str, seed: int) -> str:
    """The store entry recording that a member's training diverged."""
    return f"{task}/{model}/seed{seed}/diverged"


def _diverged_members(store: ResultStore, preset: Preset) -> list[str]:
    """``"task/model/seed N (epoch E)"`` for every member whose training diverged."""
    found = []
    for task in preset.tasks:
        for model in preset.models:
            for seed in preset.seeds:
                name = _diverged_entry(task, model, seed)
                if store.status(name) == "ok":
                    epoch = store.load(name).data.get("epoch")
                    found.append(f"{task}/{model}/seed {seed} (epoch {epoch})")
    return found


def load_zoo_records(store: ResultStore, task: str, preset: Preset):
    """``{model: [(data, arrays), ...]}`` of the verified analyses of one task."""
    records: dict[str, list] = {}
    for model in preset.models:
        for seed in preset.seeds:
            _, name = _member_entries(task, model, seed)
            if store.status(name) == "ok":
                entry = store.load(name)
                records.setdefault(model, []).append((entry.data, entry.arrays))
    return records


def load_zoo_training(store: ResultStore, task: str, preset: Preset) -> dict[str, list]:
    """``{model: [training record, ...]}`` (:class:`~nrnn_theory.train.FitHistory` as
    stored) of the verified training entries of one task."""
    out: dict[str, list] = {}
    for model in preset.models:
        for seed in preset.seeds:
            name, _ = _member_entries(task, model, seed)
            if store.status(name) == "ok":
                out.setdefault(model, []).append(store.load(name).data)
    return out


def build_report(
    store: ResultStore, preset: Preset, *, meta: dict[str, str], figure_names: Sequence[str]
) -> Report:
    """The claims checklist of a reproduction, computed from the stored results."""
    evidence: dict[str, list[Evidence]] = {k: [] for k in CLAIMS}
    figures: dict[str, list[str]] = {k: [] for k in CLAIMS}
    captions: dict[str, str] = {}
    tables: list[Table] = []
    notes: dict[str, list[str]] = {k: [] for k in CLAIMS}
    banner: list[str] = []
    for task in preset.tasks:
        records = load_zoo_records(store, task, preset)
        if not records:
            continue
        banner += scale_warnings(records, task, load_zoo_training(store, task, preset))
        for key, lines in zoo_evidence(records, task).items():
            evidence[key] += lines
        tables.append(zoo_table(records, task))
        for kind, (claim, caption) in _FIGURES.items():
            name = f"{kind}_{_slug(task)}"
            if name in figure_names:
                figures[claim].append(name)
                captions[name] = f"{caption} ({task})"
    for name, study in _studies().items():
        entry_name = f"theory/{name}"
        if store.status(entry_name) != "ok":
            continue
        entry = store.load(entry_name)
        evidence[study.claim] += list(study.evidence(entry))
        fig = f"theory_{name}"
        if fig in figure_names:
            figures[study.claim].append(fig)
            captions[fig] = study.title
    notes["C4"].append(
        "Certificates of the trained zoo models (clean and with the reference noise) are "
        "counted in the zoo summary table; they are sufficient conditions, so a model "
        "without a certificate is not thereby unstable."
    )
    claims = tuple(
        ClaimSection(
            key,
            title,
            statement,
            theory,
            tuple(evidence[key]),
            tuple(figures[key]),
            tuple(notes[key]),
        )
        for key, (title, statement, theory) in CLAIMS.items()
    )
    return Report(
        "Noisy RNNs: the paper's claims, checked",
        meta,
        claims,
        tuple(tables),
        captions,
        tuple(banner),
    )


def _slug(task: str) -> str:
    return task.replace(":", "-").replace("/", "-")


def _resolve(preset: str | Preset, tasks: Sequence[str] | None) -> Preset:
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
        preset = PRESETS[preset]
    if not isinstance(preset, Preset):
        raise TypeError(f"preset: expected a preset name or a Preset, got {preset!r}")
    return preset.with_tasks(tuple(tasks)) if tasks else preset


def open_run(out: str | Path, preset: Preset, *, resume: bool) -> ResultStore:
    """Check and create the output folder of a reproduction; returns its result store.

    Raises
    ------
    FileExistsError
        ``out`` holds a reproduction (or anything else) and ``resume`` is False.
    ValueError
        ``resume`` of a folder made with another preset or other tasks.
    """
    if not isinstance(resume, bool):
        raise TypeError(f"resume: expected a bool, got {resume!r}")
    out = Path(out)
    config = {
        "preset": preset.name,
        "tasks": list(preset.tasks),
        "sizes": dataclasses.asdict(preset),
    }
    _check_out(out, config, resume)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "config.json", json.dumps(config, indent=1).encode())
    return ResultStore(out / "results")


def run_zoo(
    preset: Preset,
    *,
    out: str | Path,
    data_root: str | Path | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Train and analyse every (task, model, seed) of ``preset`` that ``out`` does not
    already hold; returns the seconds per task. Call :func:`open_run` first."""
    from nrnn_theory.experiments.model_analysis import analyse_member
    from nrnn_theory.experiments.zoo import train_member
    from nrnn_theory.train import load_task
    from nrnn_theory.train.loop import TrainingDivergedError, resolve_device

    out = Path(out)
    store = ResultStore(out / "results")
    dev = resolve_device(device)
    seconds = {}
    for task in preset.tasks:
        t0 = time.perf_counter()
        data = load_task(task, seed=0, root=data_root)
        jobs = [(m, s) for m in preset.models for s in preset.seeds]
        done = diverged = 0
        for model_name, seed in progress_bar(
            jobs, total=len(jobs), desc=f"zoo {task}", progress=progress
        ):
            train_name, analysis_name = _member_entries(task, model_name, seed)
            diverged_name = _diverged_entry(task, model_name, seed)
            if store.status(analysis_name) == "ok" or store.status(diverged_name) == "ok":
                done += 1
                continue
            run_dir = out / "runs" / _slug(task) / model_name / f"seed{seed}"
            try:
                model, history = train_member(
                    ZOO[model_name], preset, data, seed=seed, run_dir=run_dir, device=str(dev)
                )
            except TrainingDivergedError as exc:
                # deterministic: a resume would diverge again, so it is a result, stored
                store.save(
                    diverged_name,
                    {"status": "diverged", "epoch": exc.epoch, "step": exc.step, "error": str(exc)},
                    config={"member": model_name, "seed": seed, "preset": preset.name},
                )
                diverged += 1
                log(f"zoo {task}: {model_name} seed {seed} diverged: {exc}")
                continue
            store.save(
                train_name,
                history.to_dict(),
                config={"member": model_name, "seed": seed, "preset": preset.name, "task": task},
            )
            result, arrays = analyse_member(model, data, preset, seed=seed)
            store.save(
                analysis_name,
                {"model": model_name, "task": task, **result},
                arrays=arrays,
                config={"preset": preset.name},
            )
        seconds[f"zoo {task}"] = time.perf_counter() - t0
        took = seconds[f"zoo {task}"]
        failed = f", {diverged} diverged" if diverged else ""
        log(f"zoo {task}: {len(jobs)} trained models ({done} reused{failed}) in {took:.0f} s")
    return seconds


def run_studies(
    preset: Preset, *, out: str | Path, names: Sequence[str] | None = None, progress: bool = True
) -> list[str]:
    """Run the theory-only studies (all, or ``names``) that ``out`` does not already
    hold, at the preset's study size; returns the names run or reused."""
    store = ResultStore(Path(out) / "results")
    studies = _studies()
    names = list(studies) if names is None else list(names)
    for name in names:
        if name not in studies:
            raise ValueError(f"names: expected studies among {sorted(studies)}, got {name!r}")
        entry = f"theory/{name}"
        if store.status(entry) == "ok":
            continue
        data, arrays = studies[name].run(preset.study_preset, seed=0, progress=progress)
        store.save(entry, data, arrays=arrays, config={"preset": preset.study_preset, "seed": 0})
    return names


def reproduce(
    preset: str | Preset = "quick",
    *,
    tasks: Sequence[str] | None = None,
    out: str | Path = "reproduction",
    resume: bool = False,
    data_root: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> ReproductionResult:
    """Run the whole reproduction and write its report.

    Parameters
    ----------
    preset : {"smoke", "quick", "standard", "full"} or Preset
        Sizes (:data:`nrnn_theory.experiments.zoo.PRESETS`).
    tasks : sequence of str, optional
        Override the preset's tasks.
    out : path
        Output folder (layout in the module docstring). It must be new or empty unless
        ``resume``.
    resume : bool
        Continue a reproduction in ``out``: verified results are reused, training
        resumes from its newest checkpoint, corrupt entries are recomputed.
    data_root : path, optional
        Folder with the files of local-path tasks (full MNIST, ECG5000; see
        :func:`nrnn_theory.train.load_task`).
    device : str
        Training and analysis device ("auto": CUDA when available).
    progress : bool
        Progress bars on stderr.
    log : callable
        Receives one line per stage.

    Returns
    -------
    ReproductionResult
    """
    from nrnn_theory.train.loop import resolve_device

    preset = _resolve(preset, tasks)
    out = Path(out)
    store = open_run(out, preset, resume=resume)
    seconds: dict[str, float] = {}
    dev = resolve_device(device)
    seconds.update(
        run_zoo(preset, out=out, data_root=data_root, device=dev, progress=progress, log=log)
    )
    t0 = time.perf_counter()
    names = run_studies(preset, out=out, progress=progress)
    seconds["studies"] = time.perf_counter() - t0
    log(f"theory studies ({', '.join(names)}) in {seconds['studies']:.0f} s")

    # ------------------------------------------------------------ figures
    t0 = time.perf_counter()
    figure_names = draw_figures(store, preset, out / "figures")
    seconds["figures"] = time.perf_counter() - t0
    log(f"{len(figure_names)} figures in {seconds['figures']:.0f} s -> {out / 'figures'}")

    md, html_path, verdicts = write_report(
        out, preset, device=dev, seconds=seconds, figure_names=figure_names
    )
    log(f"report: {md} and {html_path}")
    return ReproductionResult(out, md, html_path, verdicts, seconds)


def write_report(
    out: str | Path,
    preset: Preset,
    *,
    device: str | torch.device = "cpu",
    seconds: dict[str, float] | None = None,
    figure_names: Sequence[str] | None = None,
) -> tuple[Path, Path, dict[str, str]]:
    """Write ``out/report.md`` and ``out/report.html`` from the stored results.

    ``figure_names`` are the figures present in ``out/figures`` (default: every figure
    name whose PNG exists there). Returns the two paths and the verdict of each claim.
    """
    out = Path(out)
    store = ResultStore(out / "results")
    figure_dir = out / "figures"
    if figure_names is None:
        figure_names = sorted(p.stem for p in figure_dir.glob("*.png"))
    rerun = f"nrnn reproduce --preset {preset.name} --out {out}"
    if preset.name not in PRESETS:
        rerun = f"nrnn_theory.experiments.pipeline.reproduce(<custom preset {preset.name!r}>)"
    elif dataclasses.replace(PRESETS[preset.name], tasks=preset.tasks) != preset:
        rerun = f"nrnn_theory.experiments.pipeline.reproduce(<modified preset {preset.name!r}>)"
    elif PRESETS[preset.name].tasks != preset.tasks:
        rerun += "".join(f" --task {t}" for t in preset.tasks)
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "re-run": f"`{rerun}`",
        "preset": preset.name,
        "tasks": ", ".join(preset.tasks),
        "models": ", ".join(preset.models),
        "seeds": ", ".join(map(str, preset.seeds)),
        "package": f"nrnn_theory {__version__} (git {git_revision() or 'unknown'})",
        "torch": f"{torch.__version__} on {device}",
    }
    diverged = _diverged_members(store, preset)
    if diverged:  # reported, not silently missing from the tables
        meta["diverged in training (not analysed)"] = "; ".join(diverged)
    if seconds:
        meta["stage times (s)"] = ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
    report = build_report(store, preset, meta=meta, figure_names=figure_names)
    md = out / "report.md"
    html_path = out / "report.html"
    atomic_write_bytes(md, render_markdown(report, figure_dir="figures").encode())
    atomic_write_bytes(html_path, render_html(report, figure_dir).encode())
    return md, html_path, {c.key: c.verdict for c in report.claims}


def stored_preset(out: str | Path) -> Preset:
    """The preset (with its tasks) a reproduction in ``out`` was run with."""
    path = Path(out) / "config.json"
    try:
        config = json.loads(path.read_text())
        return Preset(**{**config["sizes"], **_tuples(config["sizes"])})
    except FileNotFoundError:
        raise FileNotFoundError(f"out: {path} not found; is {out} a reproduction folder?") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"out: {path} is not a reproduction config ({exc})") from exc


def _tuples(sizes: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) for k, v in sizes.items() if isinstance(v, list)}


def draw_zoo_figures(store: ResultStore, preset: Preset, figure_dir: Path) -> list[str]:
    """Draw the zoo figures of every task with stored analyses; returns their names."""
    from nrnn_theory.experiments import zoo_plots

    plotters = {
        "flatness": zoo_plots.plot_flatness,
        "lyapunov": zoo_plots.plot_lyapunov,
        "margins": zoo_plots.plot_margins,
        "robustness": zoo_plots.plot_robustness_curves,
        "correlation": zoo_plots.plot_correlations,
    }
    names = []
    for task in preset.tasks:
        records = load_zoo_records(store, task, preset)
        if not records:
            continue
        for kind, plot in plotters.items():
            name = f"{kind}_{_slug(task)}"
            plot(records, figure_dir / name, task=task)
            names.append(name)
    return names


def draw_figures(store: ResultStore, preset: Preset, figure_dir: Path) -> list[str]:
    """Draw every figure (zoo and theory studies) whose results are stored; returns the
    figure names."""
    names = draw_zoo_figures(store, preset, figure_dir)
    for name, study in _studies().items():
        if store.status(f"theory/{name}") == "ok":
            study.plot(store.load(f"theory/{name}"), figure_dir)
            names.append(f"theory_{name}")
    return names
