"""The executor of ``nrnn reproduce``: serial and Dask paths, faults, shared storage, log.

Oracles: the serial path is the reference, and a Dask run must store the same results
bit for bit (payloads and arrays; only wall times and the run folder differ); a worker
killed with SIGKILL mid-training must leave a complete run whose member resumed from
its checkpoint (the log's second ``start`` line and ``resumed_from_epoch``); an injected
failure must fail its member only and be named in the report. The real-cluster tests
start ``dask scheduler`` and two ``dask worker`` processes from the venv's ``bin``.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nrnn_theory.cli import main as cli_main
from nrnn_theory.experiments import executor, pipeline
from nrnn_theory.experiments.executor import (
    FAIL_TASK_ENV,
    LOG_NAME,
    MARKER_NAME,
    Job,
    SharedStorageError,
    check_shared_storage,
    run_jobs,
)
from nrnn_theory.experiments.store import ResultStore
from nrnn_theory.experiments.zoo import PRESETS
from nrnn_theory.train import latest_checkpoint


# ------------------------------------------------------------- serial path (fast)
def _threads_job(value: int) -> dict[str, object]:
    """A job reporting the torch threads it ran with."""
    return {"entries": {"threads": str(torch.get_num_threads()), "value": str(value)}}


def _raising_job() -> dict[str, object]:
    raise ValueError("non-finite dynamics in this member")


def test_serial_jobs_run_with_the_task_threads_and_one_failure_does_not_stop_the_others(
    tmp_path,
):
    before = torch.get_num_threads()
    jobs = [
        Job("a", "member", _threads_job, (1,)),
        Job("bad", "member", _raising_job),
        Job("c", "study", _threads_job, (3,)),
    ]
    lines = []
    outcomes = run_jobs(jobs, out=tmp_path, threads=1, progress=False, log=lines.append)
    assert [o.key for o in outcomes] == ["a", "bad", "c"]
    assert [o.status for o in outcomes] == ["ok", "failed", "ok"]
    assert outcomes[0].entries == {"threads": "1", "value": "1"}
    assert outcomes[2].entries["value"] == "3"
    assert outcomes[1].error == "ValueError: non-finite dynamics in this member"
    assert "_raising_job" in outcomes[1].traceback
    assert lines == ["task bad failed: ValueError: non-finite dynamics in this member"]
    assert torch.get_num_threads() == before  # restored after each task
    log = (tmp_path / LOG_NAME).read_text()
    for key in ("a", "bad", "c"):
        assert f" start {key} worker=in-process pid={os.getpid()}" in log
    assert " end bad status=failed" in log and "non-finite dynamics" in log
    assert " end a status=ok" in log
    assert not (tmp_path / MARKER_NAME).exists()  # the marker is removed afterwards
    assert outcomes[0].to_dict()["status"] == "ok"


def _global_draw_job() -> dict[str, object]:
    return {"entries": {"torch": str(torch.rand(()).item()), "np": str(np.random.rand())}}  # noqa: NPY002 - the legacy global generator, on purpose


def test_a_job_drawing_from_the_global_generators_gets_the_same_numbers_anywhere(tmp_path):
    # Oracle: the same job after other jobs and other draws of the caller draws the
    # same numbers; the caller's global generator state is left as it was.
    job = Job("g", "member", _global_draw_job)
    first = run_jobs([job], out=tmp_path, progress=False)[0].entries
    torch.manual_seed(123)
    np.random.seed(5)  # noqa: NPY002 - the legacy global generator, on purpose
    expected_next = (torch.rand(()).item(), np.random.rand())  # noqa: NPY002 - the legacy global generator, on purpose
    torch.manual_seed(123)
    np.random.seed(5)  # noqa: NPY002 - the legacy global generator, on purpose
    other = Job("h", "member", _global_draw_job)
    again = run_jobs([other, job], out=tmp_path, progress=False)
    assert again[1].entries == first and again[0].entries != first
    assert (torch.rand(()).item(), np.random.rand()) == expected_next  # noqa: NPY002 - the legacy global generator, on purpose


def test_the_test_seam_fails_the_named_job(tmp_path, monkeypatch):
    monkeypatch.setenv(FAIL_TASK_ENV, "x,z")
    jobs = [Job(k, "member", _threads_job, (0,)) for k in ("x", "y")]
    outcomes = run_jobs(jobs, out=tmp_path, progress=False, log=lambda _: None)
    assert [o.status for o in outcomes] == ["failed", "ok"]
    assert FAIL_TASK_ENV in outcomes[0].error


def test_run_jobs_rejects_duplicate_keys_and_bad_threads(tmp_path):
    job = Job("a", "member", _threads_job, (0,))
    with pytest.raises(ValueError, match="unique keys"):
        run_jobs([job, job], out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="threads"):
        run_jobs([job], out=tmp_path, threads=0, progress=False)


class _Client:
    """A client whose 'workers' read the marker from their own view of ``out``."""

    def __init__(self, views):
        self.views = views

    def run(self, fn, out, token):
        return {addr: fn(str(view), token) for addr, view in self.views.items()}


def test_shared_storage_check_names_each_worker_that_cannot_see_the_folder(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / MARKER_NAME).write_text("tok\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ok = _Client({"tcp://a:1": shared, "tcp://b:2": shared})
    check_shared_storage(ok, shared, "tok")
    bad = _Client({"tcp://a:1": shared, "tcp://b:2": elsewhere})
    with pytest.raises(SharedStorageError, match="storage shared by all workers") as info:
        check_shared_storage(bad, shared, "tok")
    assert "tcp://b:2" in str(info.value) and "tcp://a:1" not in str(info.value)
    stale = _Client({"tcp://a:1": shared})
    with pytest.raises(SharedStorageError, match="another run token"):
        check_shared_storage(stale, shared, "other")


def test_a_task_that_cannot_see_the_marker_fails_with_the_shared_storage_message(tmp_path):
    outcome = executor.run_task(Job("a", "member", _threads_job, (0,)), str(tmp_path), "t", 1)
    assert outcome.status == "failed"
    assert "SharedStorageError" in outcome.error and "shared by all workers" in outcome.error


def test_default_workers_is_cores_over_threads():
    cores = len(os.sched_getaffinity(0))
    assert executor.default_workers(1) == cores
    assert executor.default_workers(cores + 1) == 1


def test_cli_exit_status_counts_the_failed_tasks(tmp_path, monkeypatch, capsys):
    def fake_reproduce(*args, **kwargs):
        assert kwargs["executor"] == "local" and kwargs["threads_per_worker"] == 1
        return pipeline.ReproductionResult(
            tmp_path,
            tmp_path / "report.md",
            tmp_path / "report.html",
            {"C1": "supported"},
            {},
            {"digits/lstm/seed0": "ValueError: bad", "theory/x": "RuntimeError: no"},
            32,
        )

    monkeypatch.setattr(pipeline, "reproduce", fake_reproduce)
    assert cli_main(["reproduce", "--preset", "smoke", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "2 of 32 tasks failed: digits/lstm/seed0 (ValueError: bad); theory/x" in err


def test_cli_rejects_bad_worker_counts(tmp_path):
    assert cli_main(["reproduce", "--workers", "0", "--out", str(tmp_path / "o")]) == 2
    assert cli_main(["reproduce", "--threads-per-worker", "0", "--out", str(tmp_path)]) == 2


# ------------------------------------------------------------------ comparisons
_TIMING = {"seconds", "out_dir"}  # wall times and the run folder differ between runs


def _without_timing(x):
    if isinstance(x, dict):
        return {k: _without_timing(v) for k, v in x.items() if k not in _TIMING}
    if isinstance(x, list):
        return [_without_timing(v) for v in x]
    return x


def assert_same_results(a: Path, b: Path) -> None:
    """Every stored entry of two reproductions equal bit for bit (but wall times)."""
    sa, sb = ResultStore(a / "results"), ResultStore(b / "results")
    assert sa.names() == sb.names() and sa.names()
    for name in sa.names():
        ea, eb = sa.load(name), sb.load(name)
        assert _without_timing(ea.data) == _without_timing(eb.data), name
        assert sorted(ea.arrays) == sorted(eb.arrays), name
        for key in ea.arrays:
            x, y = ea.arrays[key], eb.arrays[key]
            assert x.dtype == y.dtype and x.shape == y.shape, (name, key)
            assert x.tobytes() == y.tobytes(), (name, key)


# -------------------------------------------------------------- real cluster (slow)
def _dask_cli() -> str:
    # dask[distributed] is a dependency of the package (setup.cfg): its command must be
    # there; a missing one is a broken installation, not a reason to skip
    path = Path(sys.executable).parent / "dask"
    assert path.exists(), f"the dask command is not installed beside {sys.executable}"
    return str(path)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker`` processes on localhost (random free
    ports), torn down afterwards; yields the scheduler address."""
    from distributed import Client

    dask = _dask_cli()
    folder = tmp_path_factory.mktemp("dask")
    sched_file = folder / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    common = {"cwd": folder, "env": env, "stdout": subprocess.DEVNULL}
    logs = [open(folder / name, "wb") for name in ("scheduler.err", "w0.err", "w1.err")]  # noqa: SIM115 - closed below
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
            + ["--scheduler-file", str(sched_file)],
            stderr=logs[0],
            **common,
        )
    ]
    try:
        deadline = time.monotonic() + 120
        while not sched_file.exists():
            assert time.monotonic() < deadline, (folder / "scheduler.err").read_text()
            time.sleep(0.2)
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [dask, "worker", "--scheduler-file", str(sched_file), "--nworkers", "1"]
                    + ["--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"]
                    + ["--local-directory", str(folder / f"w{i}")],
                    stderr=logs[1 + i],
                    **common,
                )
            )
        with Client(scheduler_file=str(sched_file), timeout=120) as client:
            client.wait_for_workers(2, timeout=180)
            address = client.scheduler.address
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in logs:
            f.close()


@pytest.fixture(scope="module")
def serial_smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "run"
    code = cli_main(
        ["reproduce", "--preset", "smoke", "--out", str(out), "--executor", "serial", "--quiet"]
    )
    assert code == 0
    return out


@pytest.mark.slow
def test_smoke_through_a_scheduler_stores_the_serial_results_bitwise(
    dask_cluster, serial_smoke, tmp_path
):
    out = tmp_path / "dask"
    code = cli_main(
        ["reproduce", "--preset", "smoke", "--out", str(out), "--scheduler", dask_cluster]
        + ["--quiet"]
    )
    assert code == 0
    assert_same_results(serial_smoke, out)
    log = (out / LOG_NAME).read_text()
    workers = {w.split()[0] for w in log.split(" worker=")[1:]}
    assert len(workers) == 2, log  # both workers ran tasks
    assert _report_lines(out) == _report_lines(serial_smoke)


def _report_lines(out: Path) -> list[str]:
    """The report without the lines that depend on the run: its date, its folder (in the
    re-run command) and its stage times."""
    varying = ("stage times", "**date**", "**re-run**")
    lines = (out / "report.md").read_text().splitlines()
    return [ln for ln in lines if not any(v in ln for v in varying)]


def _trained_checkpoint(run_dir: Path) -> bool:
    """Whether the run holds a checkpoint of at least one trained epoch."""
    ckpt = latest_checkpoint(run_dir) if run_dir.is_dir() else None
    return ckpt is not None and ckpt.name != "epoch-0000"


def _member_preset(epochs: int):
    return dataclasses.replace(PRESETS["smoke"], models=("lipschitz",), seeds=(0,), epochs=epochs)


@pytest.mark.slow
def test_a_worker_killed_mid_training_loses_nothing(dask_cluster, tmp_path):
    from distributed import Client

    out = tmp_path / "killed"
    preset = _member_preset(epochs=12)
    run_dir = out / "runs" / "digits" / "lipschitz" / "seed0"
    key = "digits/lipschitz/seed0"
    with Client(dask_cluster) as client:
        box = {}
        thread = threading.Thread(
            target=lambda: box.update(
                result=pipeline.reproduce(
                    preset, out=out, client=client, progress=False, log=lambda _: None
                )
            )
        )
        thread.start()
        deadline = time.monotonic() + 300
        # Observable training: the member's first trained checkpoint (after the initial
        # state, epoch-0000), then its worker's pid from the task's start line in the log.
        while not _trained_checkpoint(run_dir):
            assert time.monotonic() < deadline and thread.is_alive(), "no checkpoint"
            time.sleep(0.02)
        start = [ln for ln in (out / LOG_NAME).read_text().splitlines() if f"start {key} " in ln]
        pid = int(start[0].rsplit("pid=", 1)[1])
        assert pid in client.run(os.getpid).values()  # a worker process of the cluster
        os.kill(pid, signal.SIGKILL)
        thread.join(timeout=600)
        assert not thread.is_alive()
    result = box["result"]
    assert result.failures == {}
    log = (out / LOG_NAME).read_text()
    starts = [ln for ln in log.splitlines() if f"start {key} " in ln]
    assert len(starts) == 2, log  # the task ran again, on a live worker
    assert f"pid={pid}" not in starts[1]
    end = next(ln for ln in log.splitlines() if f"end {key} " in ln)
    assert "status=ok" in end and "resumed_from_epoch=" in end, end
    assert int(end.split("resumed_from_epoch=")[1].split()[0]) >= 1
    store = ResultStore(out / "results")
    history = store.load(f"{key}/train").data
    assert history["epochs"] == 12 and len(history["records"]) == 12
    assert store.status(f"{key}/analysis") == "ok"
    report = (out / "report.md").read_text()
    for claim in pipeline.CLAIMS:
        assert f"**{claim}**" in report
    assert "failed tasks" not in report


@pytest.mark.slow
def test_a_failing_member_fails_alone_on_the_local_cluster(tmp_path, monkeypatch):
    # The default executor (an embedded LocalCluster): its worker processes inherit the
    # test seam from this process's environment.
    monkeypatch.setenv(FAIL_TASK_ENV, "digits/lipschitz/seed0")
    preset = dataclasses.replace(_member_preset(epochs=1), seeds=(0, 1))
    out = tmp_path / "failing"
    lines = []
    result = pipeline.reproduce(
        preset, out=out, executor="local", workers=2, progress=False, log=lines.append
    )
    assert set(result.failures) == {"digits/lipschitz/seed0"}
    assert FAIL_TASK_ENV in result.failures["digits/lipschitz/seed0"]
    assert result.tasks == 2 + len(pipeline.study_jobs(preset, out=out))
    store = ResultStore(out / "results")
    assert store.status("digits/lipschitz/seed1/analysis") == "ok"
    assert store.status("digits/lipschitz/seed0/analysis") == "missing"
    report = (out / "report.md").read_text()
    assert "failed tasks" in report and "digits/lipschitz/seed0" in report
    assert any("digits/lipschitz/seed0 failed" in ln for ln in lines)
    assert "status=failed" in (out / LOG_NAME).read_text()
    assert "local Dask cluster: 2 worker processes" in "\n".join(lines)


def test_same_results_check_catches_a_changed_array(tmp_path):
    # The comparison used above can fail: one changed bit in an array is caught.
    for name in ("a", "b"):
        ResultStore(tmp_path / name / "results").save(
            "e", {"x": 1, "seconds": 2.0}, arrays={"v": np.arange(3.0)}
        )
    assert_same_results(tmp_path / "a", tmp_path / "b")
    ResultStore(tmp_path / "b" / "results").save(
        "e", {"x": 1, "seconds": 5.0}, arrays={"v": np.nextafter(np.arange(3.0), 9)}
    )
    with pytest.raises(AssertionError):
        assert_same_results(tmp_path / "a", tmp_path / "b")
