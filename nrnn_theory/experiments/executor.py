"""Where the jobs of ``nrnn reproduce`` run: in this process, or as Dask tasks.

A reproduction is a set of independent, idempotent jobs (one per zoo member: train or
resume, analyse, write its verified store entries; one per theory-only study) whose
results land in a shared output folder. This module runs such a list of :class:`Job`
records and returns one :class:`TaskOutcome` per job:

- **serially**, in this process (``client=None``), for debugging and for one core;
- **on Dask** (``dask.distributed``), given a ``Client``: an embedded
  :func:`local_cluster` (worker processes, one per core by default), a scheduler
  address, or any cluster the caller built (``dask_jobqueue.SLURMCluster``, ...).

Both paths call the same task function, :func:`run_task`, with the same number of
torch threads per task and the global random generators seeded from the job's key, so
their stored results are bitwise identical on CPU. Only
small results cross the scheduler: the job record (names, sizes, paths), and back the
outcome (status, worker, seconds, the checksums of the entries written, the error
message). Models, tensors and data never do: each task reads its data and writes its
entries on the shared output folder itself.

Faults. A task that raises fails its job only: the outcome carries the message and
traceback, the other jobs finish, and the caller reports the failures. A worker that
dies mid-task (killed, out of memory) loses nothing: the scheduler reschedules the task
on another worker (bounded by the scheduler's ``distributed.scheduler.allowed-failures``,
and by ``retries`` for errors outside the job), and the job resumes from its newest
checkpoint; a half-written store entry is never used (entries are verified by checksum).

Shared storage. The client writes a marker file with a fresh token into the output
folder; every worker must read it back (checked for all workers before any job is
submitted, and again by each task), else the run stops with an error saying that the
output folder must be on storage shared by all workers.

Log. ``<out>/reproduce.log`` gets one ``start`` line per attempt (written by the task,
with its worker) and one ``end`` line per job (status, seconds, worker, resumed epoch,
error message).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import secrets
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nrnn_theory._contract import check_positive_int
from nrnn_theory._io import atomic_write_text
from nrnn_theory._record import Result


if TYPE_CHECKING:
    from distributed import Client
else:  # dask is imported only where a cluster is used; annotations resolve to this
    Client = Any  # Any: a distributed.Client


__all__ = [
    "FAIL_TASK_ENV",
    "LOG_NAME",
    "MARKER_NAME",
    "Job",
    "SharedStorageError",
    "TaskOutcome",
    "check_shared_storage",
    "default_workers",
    "local_cluster",
    "run_jobs",
    "run_task",
]

#: Test seam, for the tests only: a job whose key is listed in this variable (comma
#: separated) raises in its task, as a job with bad data would. Read in one place.
FAIL_TASK_ENV = "NRNN_TEST_FAIL_TASK"

#: The marker file of the shared-storage check, inside the output folder.
MARKER_NAME = ".nrnn-shared-storage"

#: The per-task log inside the output folder.
LOG_NAME = "reproduce.log"

#: Torch thread count and OpenMP/MKL variables set for each worker process.
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class SharedStorageError(RuntimeError):
    """A worker cannot see the output folder (it must be on storage shared by all)."""


@dataclass(frozen=True)
class Job:
    """One unit of work: ``fn(*args)``, run by :func:`run_task` on one worker.

    Attributes
    ----------
    key : str
        Unique name, e.g. ``"digits/lstm/seed0"`` or ``"theory/continuum"``.
    kind : {"member", "study"}
        What the job is (for the log and the summary).
    fn : callable
        A module-level function (it is sent to the workers by reference) returning a
        small ``dict`` of plain values: ``entries`` (entry name -> payload checksum),
        optionally ``resumed_from_epoch``, ``reused`` and ``diverged``.
    args : tuple
        Its arguments: small picklable values only (names, sizes, paths).
    gpu : bool
        The task holds one ``GPU`` resource of its worker.
    """

    key: str
    kind: Literal["member", "study"]
    fn: Callable[..., dict[str, object]]
    args: tuple[object, ...] = ()
    gpu: bool = False


@dataclass(frozen=True)
class TaskOutcome(Result):
    """What one job did.

    Attributes
    ----------
    key, kind : str
        The job's key and kind.
    status : {"ok", "failed"}
    error : str or None
        ``"ExceptionType: message"`` of a failed job.
    traceback : str or None
        The full traceback of a failed job (also in the log).
    worker : str
        The Dask worker address, or ``"in-process"``.
    host : str
    pid : int
        Process that ran the (last) attempt; 0 when it never ran.
    seconds : float
        Wall time of the (last) attempt.
    entries : dict of str to str
        Store entries written (or found verified), with their payload checksums.
    resumed_from_epoch : int or None
        Epoch of the checkpoint training resumed from (members; None: from scratch).
    reused : bool
        Everything was already stored and verified; nothing was computed.
    diverged : bool
        The member's training diverged (a result stored as ``<member>/diverged`` and
        listed in the report, not a failure).
    device : str
        The torch device the job computed on (``""`` when not reported).
    """

    key: str
    kind: str
    status: Literal["ok", "failed"]
    error: str | None = None
    traceback: str | None = None
    worker: str = "in-process"
    host: str = ""
    pid: int = 0
    seconds: float = 0.0
    entries: dict[str, str] = field(default_factory=dict)
    resumed_from_epoch: int | None = None
    reused: bool = False
    diverged: bool = False
    device: str = ""


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _append_log(out: Path, line: str) -> None:
    """One line appended with a single ``write`` (atomic for short lines on a local or
    NFS-with-O_APPEND file system); the log is informative, results live in the store."""
    fd = os.open(out / LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
    finally:
        os.close(fd)


def _read_marker(out: str, token: str) -> str | None:
    """``None`` if ``out``'s marker holds ``token`` here, else why not (runs on workers)."""
    path = Path(out) / MARKER_NAME
    try:
        found = path.read_text().strip()
    except OSError as exc:
        found = f"unreadable ({type(exc).__name__}: {exc})"
    if found == token:
        return None
    return (
        f"host {socket.gethostname()} (pid {os.getpid()}) cannot see the run's marker "
        f"{path}: {found if found.startswith('unreadable') else 'another run token'}; the "
        "output folder must be on storage shared by all workers (the same path on every "
        "machine, e.g. a network file system)"
    )


def check_shared_storage(client: Client, out: str | os.PathLike, token: str) -> None:
    """Check that every worker of ``client`` reads ``out``'s marker with ``token``.

    Parameters
    ----------
    client : distributed.Client
    out : path
        The output folder, where :func:`run_jobs` wrote the marker.
    token : str
        The marker's content.

    Raises
    ------
    SharedStorageError
        Naming each worker that cannot see the marker.
    """
    problems = client.run(_read_marker, str(out), token)
    bad = {addr: why for addr, why in problems.items() if why is not None}
    if bad:
        raise SharedStorageError(
            "out: the output folder must be on storage shared by all workers; "
            + "; ".join(f"worker {addr}: {why}" for addr, why in sorted(bad.items()))
        )


def _worker_identity() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "in-process"


@contextlib.contextmanager
def _seeded_global_rngs(key: str) -> Iterator[None]:
    """The global torch, numpy and ``random`` generators seeded from the job's key for
    the job (and restored afterwards): a job that draws from them gets the same numbers
    in any process, after any other job."""
    import random

    import numpy as np
    import torch

    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002 - the legacy global generator, on purpose
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)  # noqa: NPY002 - the legacy global generator, on purpose
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)  # noqa: NPY002 - the legacy global generator, on purpose
            random.setstate(py_state)


def run_task(job: Job, out: str, token: str, threads: int) -> TaskOutcome:
    """Run one job with ``threads`` torch threads and return its outcome.

    The task function of both executors (serial and Dask). It checks the shared
    storage marker, logs a ``start`` line, runs ``job.fn(*job.args)`` (with the global
    random generators seeded from ``job.key``, so that a job drawing from them gets the
    same numbers wherever and after whatever it runs) and returns a
    :class:`TaskOutcome`; an exception of the job becomes a ``"failed"`` outcome
    with its message (it is not retried: bad data fail again).

    Parameters
    ----------
    job : Job
    out : str
        The output folder.
    token : str
        The marker token of this run.
    threads : int
        Torch intra-op threads of the task (restored afterwards).

    Returns
    -------
    TaskOutcome
    """
    import torch

    worker = _worker_identity()
    common = {"key": job.key, "kind": job.kind, "worker": worker}
    common |= {"host": socket.gethostname(), "pid": os.getpid()}
    t0 = time.perf_counter()
    previous = torch.get_num_threads()
    try:
        problem = _read_marker(out, token)
        if problem is not None:
            raise SharedStorageError(problem)
        _append_log(Path(out), f"{_now()} start {job.key} worker={worker} pid={os.getpid()}")
        if job.key in os.environ.get(FAIL_TASK_ENV, "").split(","):
            raise RuntimeError(f"{FAIL_TASK_ENV} injected a failure into {job.key}")
        torch.set_num_threads(threads)
        with _seeded_global_rngs(job.key):
            result = job.fn(*job.args)
    except Exception as exc:  # noqa: BLE001 - any failure of a job is reported, not raised
        return TaskOutcome(
            **common,
            status="failed",
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
            seconds=time.perf_counter() - t0,
        )
    finally:
        torch.set_num_threads(previous)
    resumed = result.get("resumed_from_epoch")
    return TaskOutcome(
        **common,
        status="ok",
        seconds=time.perf_counter() - t0,
        entries={str(k): str(v) for k, v in dict(result.get("entries", {})).items()},
        resumed_from_epoch=None if resumed is None else int(resumed),
        reused=bool(result.get("reused", False)),
        diverged=bool(result.get("diverged", False)),
        device=str(result.get("device", "")),
    )


def default_workers(threads_per_worker: int = 1) -> int:
    """Worker processes of the embedded cluster: the usable cores over the threads of
    each (at least 1).

    Parameters
    ----------
    threads_per_worker : int

    Returns
    -------
    int

    Examples
    --------
    >>> default_workers(threads_per_worker=10**6)
    1
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // threads_per_worker)


def local_cluster(
    workers: int | None = None,
    *,
    threads_per_worker: int = 1,
    dashboard: bool = False,
    gpus_per_worker: int = 0,
):
    """An embedded ``distributed.LocalCluster`` of worker processes for torch jobs.

    Each worker runs one task at a time; ``threads_per_worker`` is the torch thread
    count of its tasks (and its OpenMP/MKL variables). Close it after use (it is a
    context manager).

    Parameters
    ----------
    workers : int, optional
        Worker processes (default :func:`default_workers`).
    threads_per_worker : int
        Torch threads per task.
    dashboard : bool
        Serve the Dask dashboard (on port 8787, or a free one; it needs ``bokeh``);
        off by default.
    gpus_per_worker : int
        ``GPU`` resource of each worker (tasks on CUDA request one).

    Returns
    -------
    distributed.LocalCluster
    """
    check_positive_int("threads_per_worker", threads_per_worker)
    workers = default_workers(threads_per_worker) if workers is None else workers
    check_positive_int("workers", workers)
    try:
        from distributed import LocalCluster
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ImportError(
            "the Dask executor needs dask.distributed: pip install 'dask[distributed]'"
        ) from exc
    env = {name: str(threads_per_worker) for name in _THREAD_VARS}
    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        # Without the dashboard, the scheduler's bare HTTP endpoint (health, metrics)
        # listens on a free port of the loopback interface only.
        dashboard_address=":8787" if dashboard else "127.0.0.1:0",
        scheduler_kwargs={"dashboard": dashboard},
        env=env,
        resources={"GPU": gpus_per_worker} if gpus_per_worker else None,
    )


@contextlib.contextmanager
def _marker(out: Path) -> Iterator[str]:
    token = secrets.token_hex(16)
    path = out / MARKER_NAME
    atomic_write_text(path, token + "\n")
    try:
        yield token
    finally:
        path.unlink(missing_ok=True)


def _end_line(o: TaskOutcome) -> str:
    line = f"{_now()} end {o.key} status={o.status} seconds={o.seconds:.1f} worker={o.worker}"
    if o.reused:
        line += " reused"
    if o.diverged:
        line += " diverged"
    if o.resumed_from_epoch is not None:
        line += f" resumed_from_epoch={o.resumed_from_epoch}"
    if o.error:
        line += f" error={o.error!r}"
    return line


def _lost(job: Job, exc: BaseException) -> TaskOutcome:
    """The outcome of a job whose task never returned (its workers kept dying, or an
    error outside the job)."""
    return TaskOutcome(
        key=job.key,
        kind=job.kind,
        status="failed",
        error=f"{type(exc).__name__}: {exc}",
        traceback="".join(traceback.format_exception(exc)),
        worker="unknown",
    )


def run_jobs(
    jobs: Sequence[Job],
    *,
    out: str | os.PathLike,
    client: Client | None = None,
    threads: int = 1,
    retries: int = 2,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[TaskOutcome]:
    """Run ``jobs`` serially (``client=None``) or on ``client``'s Dask workers.

    Parameters
    ----------
    jobs : sequence of Job
        Unique keys.
    out : path
        The output folder (shared by all workers; holds the marker and the log).
    client : distributed.Client, optional
        Where to run; ``None`` runs every job in this process, in order.
    threads : int
        Torch threads of each task (the same on both paths, so results are identical).
    retries : int
        Dask retries of a task that errs outside its job (its exceptions are outcomes).
    progress : bool
        One progress bar over the jobs (with ETA) on stderr.
    log : callable
        Receives one line per failed job.

    Returns
    -------
    list of TaskOutcome
        In the order of ``jobs``.

    Raises
    ------
    SharedStorageError
        A worker cannot see the output folder.

    Examples
    --------
    >>> import tempfile
    >>> def double(x):
    ...     return {"entries": {"x": str(2 * x)}}
    >>> jobs = [Job("a", "member", double, (21,)), Job("b", "member", double, (5,))]
    >>> [(o.status, o.entries) for o in run_jobs(jobs, out=tempfile.mkdtemp(), progress=False)]
    [('ok', {'x': '42'}), ('ok', {'x': '10'})]
    """
    check_positive_int("threads", threads)
    check_positive_int("retries", retries, minimum=0)
    keys = [job.key for job in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"jobs: expected unique keys, got {keys}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    outcomes: dict[str, TaskOutcome] = {}
    bar = None
    if progress and jobs:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="reproduce", unit="task", file=sys.stderr)

    def record(outcome: TaskOutcome) -> None:
        outcomes[outcome.key] = outcome
        _append_log(out, _end_line(outcome))
        if outcome.status == "failed":
            log(f"task {outcome.key} failed: {outcome.error}")
            _append_log(out, (outcome.traceback or "").rstrip())
        if bar is not None:
            bar.update(1)

    try:
        with _marker(out) as token:
            if client is None:
                for job in jobs:
                    record(run_task(job, str(out), token, threads))
            else:
                from distributed import as_completed

                check_shared_storage(client, out, token)
                by_future = {}
                for job in jobs:
                    future = client.submit(
                        run_task,
                        job,
                        str(out),
                        token,
                        threads,
                        key=f"nrnn-{job.key}-{token[:8]}",
                        pure=False,
                        retries=retries,
                        resources={"GPU": 1} if job.gpu else None,
                    )
                    by_future[future] = job
                for future in as_completed(list(by_future)):
                    try:
                        record(future.result())
                    except Exception as exc:  # noqa: BLE001 - a lost task fails its job only
                        record(_lost(by_future[future], exc))
    finally:
        if bar is not None:
            bar.close()
    return [outcomes[k] for k in keys]
