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
    out/reproduce.log            one start line per task attempt, one end line per task

The zoo members and the studies are independent jobs (:func:`zoo_jobs`,
:func:`study_jobs`: :func:`run_member`, :func:`run_study`), run serially or as Dask
tasks by :mod:`nrnn_theory.experiments.executor`; the figures and the report follow.
Every stage skips what is already stored and verifies (``--resume``), so an
interrupted run continues where it stopped; a corrupt entry is recomputed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from nrnn_theory._contract import check_positive_int
from nrnn_theory._version import __version__
from nrnn_theory.experiments.claims import CLAIMS, scale_warnings, zoo_evidence, zoo_table
from nrnn_theory.experiments.executor import Job, TaskOutcome, local_cluster, run_jobs
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


if TYPE_CHECKING:
    from distributed import Client
else:  # dask is imported only where a cluster is used; annotations resolve to this
    Client = Any  # Any: a distributed.Client

__all__ = [
    "CLAIMS",
    "ReproductionResult",
    "build_report",
    "draw_figures",
    "draw_zoo_figures",
    "failure_summary",
    "load_zoo_records",
    "load_zoo_training",
    "open_run",
    "reproduce",
    "run_studies",
    "run_zoo",
    "stored_preset",
    "study_jobs",
    "write_report",
    "zoo_jobs",
]

_FIGURES = {
    "flatness": ("C3a", "Hessian trace and top eigenvalue against the training noise"),
    "lyapunov": ("C3b", "Lyapunov spectra, clean and along a frozen noise path"),
    "margins": ("C3c", "Distribution of the empirical ℓ₂ input margins"),
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
    failures : dict of str to str
        The jobs that failed (key -> ``"ExceptionType: message"``); empty if none.
    tasks : int
        Number of jobs (zoo members and studies) of the run.
    """

    out: Path
    report_md: Path
    report_html: Path
    verdicts: dict[str, str]
    seconds: dict[str, float]
    failures: dict[str, str] = field(default_factory=dict)
    tasks: int = 0


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
            claim.title,
            claim.statement,
            claim.theory,
            tuple(evidence[key]),
            tuple(figures[key]),
            tuple(notes[key]),
            claim.direction,
        )
        for key, claim in CLAIMS.items()
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


def _load_data(task: str, data_root: str | Path | None):
    """The task's data, loaded once per process (a worker runs many members of a task)."""
    from nrnn_theory.train import load_task

    key = (task, None if data_root is None else str(data_root))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one task's data at a time
        _DATA_CACHE[key] = load_task(task, seed=0, root=data_root)
    return _DATA_CACHE[key]


_DATA_CACHE: dict[tuple[str, str | None], Any] = {}


def run_member(
    out: str | Path,
    task: str,
    model_name: str,
    seed: int,
    preset: Preset,
    data_root: str | Path | None = None,
    device: str = "auto",
) -> dict[str, object]:
    """The job of one zoo member: train (or resume) it, analyse it, write its two
    verified store entries; skipped when its analysis is already stored and verifies.

    Package-internal (the executor's member task, :mod:`nrnn_theory.experiments.executor`).
    Returns small values only: the entries written with their payload checksums, the
    epoch training resumed from (``None``: from scratch) and whether all was reused.
    """
    from nrnn_theory.experiments.model_analysis import analyse_member
    from nrnn_theory.experiments.zoo import train_member
    from nrnn_theory.train import latest_checkpoint
    from nrnn_theory.train.loop import TrainingDivergedError, resolve_device

    out = Path(out)
    store = ResultStore(out / "results")
    train_name, analysis_name = _member_entries(task, model_name, seed)
    diverged_name = _diverged_entry(task, model_name, seed)
    if store.status(analysis_name) == "ok":
        return {"entries": _checksums(store, analysis_name), "reused": True}
    if store.status(diverged_name) == "ok":  # deterministic: resuming diverges again
        return {"entries": _checksums(store, diverged_name), "reused": True, "diverged": True}
    data = _load_data(task, data_root)
    run_dir = out / "runs" / _slug(task) / model_name / f"seed{seed}"
    ckpt = latest_checkpoint(run_dir) if run_dir.is_dir() else None
    resumed = None if ckpt is None else _checkpoint_epoch(ckpt)
    dev = str(resolve_device(device))
    try:
        model, history = train_member(
            ZOO[model_name], preset, data, seed=seed, run_dir=run_dir, device=dev
        )
    except TrainingDivergedError as exc:  # a result (listed in the report), not a failure
        store.save(
            diverged_name,
            {"status": "diverged", "epoch": exc.epoch, "step": exc.step, "error": str(exc)},
            config={"member": model_name, "seed": seed, "preset": preset.name},
        )
        return {"entries": _checksums(store, diverged_name), "diverged": True, "device": dev}
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
    return {
        "entries": _checksums(store, train_name, analysis_name),
        "resumed_from_epoch": resumed,
        "device": dev,
    }


def _checkpoint_epoch(path: Path) -> int | None:
    """The epoch of a checkpoint folder named ``epoch-NNNN`` (None for another name)."""
    name = Path(path).name
    return int(name.split("-")[-1]) if name.startswith("epoch-") else None


def _checksums(store: ResultStore, *names: str) -> dict[str, str]:
    return {n: str(store.load(n).meta["data_sha256"]) for n in names}


def run_study(out: str | Path, name: str, preset: Preset) -> dict[str, object]:
    """The job of one theory-only study: run it at the preset's study size and store
    it; skipped when stored and verified. Package-internal (the executor's study task)."""
    store = ResultStore(Path(out) / "results")
    entry = f"theory/{name}"
    if store.status(entry) == "ok":
        return {"entries": _checksums(store, entry), "reused": True}
    data, arrays = _studies()[name].run(preset.study_preset, seed=0, progress=False)
    store.save(entry, data, arrays=arrays, config={"preset": preset.study_preset, "seed": 0})
    return {"entries": _checksums(store, entry)}


def zoo_jobs(
    preset: Preset, *, out: str | Path, data_root: str | Path | None = None, device: str = "auto"
) -> list[Job]:
    """One :class:`~nrnn_theory.experiments.executor.Job` per (task, model, seed) of
    ``preset``: :func:`run_member` on the output folder ``out``. Members on CUDA hold one
    ``GPU`` resource of their worker."""
    gpu = str(device).startswith("cuda")
    root = None if data_root is None else str(data_root)
    return [
        Job(
            f"{task}/{model}/seed{seed}",
            "member",
            run_member,
            (str(out), task, model, seed, preset, root, str(device)),
            gpu=gpu,
        )
        for task in preset.tasks
        for model in preset.models
        for seed in preset.seeds
    ]


def study_jobs(preset: Preset, *, out: str | Path, names: Sequence[str] | None = None) -> list[Job]:
    """One :class:`~nrnn_theory.experiments.executor.Job` per theory-only study (all, or
    ``names``): :func:`run_study` on the output folder ``out``."""
    studies = _studies()
    names = list(studies) if names is None else list(names)
    for name in names:
        if name not in studies:
            raise ValueError(f"names: expected studies among {sorted(studies)}, got {name!r}")
    return [Job(f"theory/{name}", "study", run_study, (str(out), name, preset)) for name in names]


def _raise_failures(outcomes: Sequence[TaskOutcome]) -> None:
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise RuntimeError(failure_summary(outcomes))


def failure_summary(outcomes: Sequence[TaskOutcome]) -> str:
    """``"2 of 34 tasks failed: key (Error: message); ..."`` (empty if none failed)."""
    failed = [o for o in outcomes if o.status == "failed"]
    if not failed:
        return ""
    listed = "; ".join(f"{o.key} ({o.error})" for o in failed)
    return f"{len(failed)} of {len(outcomes)} tasks failed: {listed}"


def run_zoo(
    preset: Preset,
    *,
    out: str | Path,
    data_root: str | Path | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    log: Callable[[str], None] = print,
    client: Client | None = None,
    threads: int = 1,
) -> dict[str, float]:
    """Train and analyse every (task, model, seed) of ``preset`` that ``out`` does not
    already hold (serially, or on ``client``'s Dask workers); returns the seconds of the
    stage. Call :func:`open_run` first.

    Raises
    ------
    RuntimeError
        Some members failed (the others are stored; the message lists the failures).
    """
    t0 = time.perf_counter()
    jobs = zoo_jobs(preset, out=out, data_root=data_root, device=str(device))
    outcomes = run_jobs(jobs, out=out, client=client, threads=threads, progress=progress, log=log)
    took = time.perf_counter() - t0
    reused = sum(o.reused for o in outcomes)
    diverged = sum(o.diverged for o in outcomes)
    failed = f", {diverged} diverged in training" if diverged else ""
    log(f"zoo: {len(jobs)} trained models ({reused} reused{failed}) in {took:.0f} s")
    _raise_failures(outcomes)
    return {"zoo": took}


def run_studies(
    preset: Preset,
    *,
    out: str | Path,
    names: Sequence[str] | None = None,
    progress: bool = True,
    client: Client | None = None,
    threads: int = 1,
) -> list[str]:
    """Run the theory-only studies (all, or ``names``) that ``out`` does not already
    hold, at the preset's study size (serially, or on ``client``'s Dask workers);
    returns the names run or reused.

    Raises
    ------
    RuntimeError
        Some studies failed (the message lists them).
    """
    jobs = study_jobs(preset, out=out, names=names)
    outcomes = run_jobs(jobs, out=out, client=client, threads=threads, progress=progress)
    _raise_failures(outcomes)
    return [job.key.split("/", 1)[1] for job in jobs]


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
    executor: Literal["serial", "local"] = "serial",
    workers: int | None = None,
    threads_per_worker: int = 1,
    scheduler: str | None = None,
    client: Client | None = None,
    dashboard: bool = False,
) -> ReproductionResult:
    """Run the whole reproduction and write its report.

    The zoo members and the theory-only studies are independent jobs
    (:mod:`nrnn_theory.experiments.executor`): run here one after another
    (``executor="serial"``, the default of this function), on an embedded Dask
    ``LocalCluster`` of worker processes (``executor="local"``, the default of
    ``nrnn reproduce``), on the Dask scheduler at ``scheduler``, or on the workers of
    ``client`` (any ``distributed.Client``, e.g. of a ``dask_jobqueue.SLURMCluster``).
    The figures and the report are drawn here once every job has ended. Stored
    results do not depend on where the jobs ran (bitwise, on CPU).

    Parameters
    ----------
    preset : {"smoke", "quick", "standard", "full"} or Preset
        Sizes (:data:`nrnn_theory.experiments.zoo.PRESETS`).
    tasks : sequence of str, optional
        Override the preset's tasks.
    out : path
        Output folder (layout in the module docstring). It must be new or empty unless
        ``resume``; with Dask workers it must be on storage that all of them see.
    resume : bool
        Continue a reproduction in ``out``: verified results are reused, training
        resumes from its newest checkpoint, corrupt entries are recomputed.
    data_root : path, optional
        Folder with the files of local-path tasks (full MNIST, ECG5000; see
        :func:`nrnn_theory.train.load_task`); seen by every worker.
    device : str
        Training and analysis device ("auto": CUDA when available, on each worker).
        With ``"cuda"`` each member task holds one ``GPU`` resource of its worker.
    progress : bool
        One progress bar over the jobs, on stderr.
    log : callable
        Receives one line per stage and per failed job.
    executor : {"serial", "local"}
        Where the jobs run when neither ``scheduler`` nor ``client`` is given.
    workers : int, optional
        Worker processes of the local cluster (default: one per core, over
        ``threads_per_worker``); 1 means serial.
    threads_per_worker : int
        Torch threads of each job, on every path.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``).
    client : distributed.Client, optional
        Run on this client's workers (not closed here).
    dashboard : bool
        Serve the dashboard of the local cluster.

    Returns
    -------
    ReproductionResult
        With ``failures`` (job key -> message); the report names them too.
    """
    from nrnn_theory.train.loop import resolve_device

    check_positive_int("threads_per_worker", threads_per_worker)
    if executor not in ("serial", "local"):
        raise ValueError(f"executor: expected 'serial' or 'local', got {executor!r}")
    if workers is not None:
        check_positive_int("workers", workers)
    if client is not None and scheduler is not None:
        raise ValueError("client, scheduler: give one of them, not both")
    preset = _resolve(preset, tasks)
    out = Path(out)
    store = open_run(out, preset, resume=resume)
    seconds: dict[str, float] = {}
    jobs = zoo_jobs(preset, out=out, data_root=data_root, device=str(device))
    jobs += study_jobs(preset, out=out)
    t0 = time.perf_counter()
    with _executor_client(
        client=client,
        scheduler=scheduler,
        executor=executor,
        workers=workers,
        threads_per_worker=threads_per_worker,
        dashboard=dashboard,
        gpus=str(device).startswith("cuda"),
        log=log,
    ) as run_on:
        outcomes = run_jobs(
            jobs, out=out, client=run_on, threads=threads_per_worker, progress=progress, log=log
        )
    seconds["jobs"] = time.perf_counter() - t0
    reused = sum(o.reused for o in outcomes)
    failures = {o.key: str(o.error) for o in outcomes if o.status == "failed"}
    # The device the members computed on (on their workers); the local one if all reused.
    devices = sorted({o.device for o in outcomes if o.device})
    dev = ", ".join(devices) if devices else str(resolve_device(device))
    log(f"{len(jobs)} tasks ({reused} reused, {len(failures)} failed) in {seconds['jobs']:.0f} s")

    # ------------------------------------------------------------ figures
    t0 = time.perf_counter()
    figure_names = draw_figures(store, preset, out / "figures")
    seconds["figures"] = time.perf_counter() - t0
    log(f"{len(figure_names)} figures in {seconds['figures']:.0f} s -> {out / 'figures'}")

    md, html_path, verdicts = write_report(
        out,
        preset,
        device=dev,
        seconds=seconds,
        figure_names=figure_names,
        failures=failure_summary(outcomes),
    )
    log(f"report: {md} and {html_path}")
    return ReproductionResult(out, md, html_path, verdicts, seconds, failures, len(jobs))


@contextlib.contextmanager
def _executor_client(
    *,
    client: Client | None,
    scheduler: str | None,
    executor: str,
    workers: int | None,
    threads_per_worker: int,
    dashboard: bool,
    gpus: bool,
    log: Callable[[str], None],
) -> Iterator[Client | None]:
    """The client the jobs run on (``None``: serial), started and closed here unless
    given."""
    if client is not None:
        yield client
        return
    if scheduler is not None:
        from distributed import Client

        with Client(scheduler) as remote:
            log(f"Dask scheduler {scheduler}: {len(remote.scheduler_info()['workers'])} workers")
            yield remote
        return
    if executor == "serial" or workers == 1:
        yield None
        return
    from distributed import Client

    with (
        local_cluster(
            workers,
            threads_per_worker=threads_per_worker,
            dashboard=dashboard,
            gpus_per_worker=1 if gpus else 0,
        ) as cluster,
        Client(cluster) as local,
    ):
        n = len(cluster.workers)
        link = f"; dashboard {local.dashboard_link}" if dashboard else ""
        log(f"local Dask cluster: {n} worker processes x {threads_per_worker} thread(s){link}")
        yield local


def write_report(
    out: str | Path,
    preset: Preset,
    *,
    device: str | torch.device = "cpu",
    seconds: dict[str, float] | None = None,
    figure_names: Sequence[str] | None = None,
    failures: str = "",
) -> tuple[Path, Path, dict[str, str]]:
    """Write ``out/report.md`` and ``out/report.html`` from the stored results.

    ``figure_names`` are the figures present in ``out/figures`` (default: every figure
    name whose PNG exists there); ``failures`` (:func:`failure_summary`) is shown in the
    report's header when not empty. Returns the two paths and the verdict of each claim.
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
    if failures:
        meta["failed tasks"] = failures
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
