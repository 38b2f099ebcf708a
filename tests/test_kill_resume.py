"""Issue 19: runs killed with SIGKILL at any instant resume to exactly the result of an
uninterrupted run.

``nrnn train``: killed by the test-only fault injection at fixed steps (after the first
step, mid-epoch, at an epoch's last step) and from outside at random instants (which
may fall in start-up, an epoch or a checkpoint write); ``nrnn reproduce --preset smoke``:
killed from outside at random instants (start-up, training, analysis, studies) one or
more times. The oracle is the uninterrupted run: bitwise-equal tensors in the final
checkpoints and identical stored values (timings excluded). The seed of the random
instants is printed on failure (``NRNN_KILL_SEED`` to replay).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nrnn_theory.experiments.store import ResultStore
from nrnn_theory.train import latest_checkpoint
from nrnn_theory.train.loop import CRASH_AFTER_STEPS_ENV


pytestmark = pytest.mark.slow

TRAIN = ["--task", "digits", "--hidden", "8", "--batch-size", "100", "--add", "0.02",
         "--mult", "0.02", "--lr", "0.01", "--epochs", "3", "--seed", "4", "--quiet"]  # fmt: skip
SEED = int(os.environ.get("NRNN_KILL_SEED", str(random.SystemRandom().randrange(10**6))))


def _env(**extra):
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)


def _nrnn(*args, env=None, timeout=1800):
    return subprocess.run(
        [sys.executable, "-m", "nrnn_theory.cli", *args],
        env=env or _env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _kill_after(args, seconds: float) -> int | None:
    """Start ``nrnn args``, SIGKILL it after ``seconds``; the exit code if it ended first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nrnn_theory.cli", *args],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None


def _tensors(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(run) / "tensors.safetensors"))


def _assert_same_tensors(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        assert torch.equal(a[key], b[key]), f"{what}: {key} (seed {SEED})"


def _untimed(value):
    """``value`` without wall-clock fields (they differ between any two runs)."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if "second" not in k and k != "time"}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


@pytest.fixture(scope="module")
def reference_train(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "full"
    t0 = time.perf_counter()
    res = _nrnn("train", *TRAIN, "--out", str(out))
    assert res.returncode == 0, res.stderr
    return out, time.perf_counter() - t0


@pytest.mark.parametrize("crash", [1, 6, 13, 20])  # 13 steps per epoch
def test_train_killed_at_a_step_resumes_bitwise(reference_train, tmp_path, crash):
    full, _ = reference_train
    run = tmp_path / "killed"
    killed = _nrnn(
        "train", *TRAIN, "--out", str(run), env=_env(**{CRASH_AFTER_STEPS_ENV: str(crash)})
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = _nrnn("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_tensors(_tensors(full), _tensors(run), f"crash after {crash} steps")
    hist = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (full / "history.jsonl").read_text().splitlines()]
    assert _untimed(hist) == _untimed(ref)


def test_train_killed_at_random_instants_resumes_bitwise(reference_train, tmp_path):
    full, seconds = reference_train
    rng = random.Random(SEED)
    run = tmp_path / "killed"
    args = ["train", *TRAIN, "--out", str(run)]
    for _ in range(3):
        code = _kill_after(args, rng.uniform(0.0, 0.8) * seconds)
        if code is not None:  # it finished before the kill
            assert code == 0
            break
        # the options are needed only if it died before its first checkpoint
        args = ["train", "--resume", str(run), *TRAIN]
    resumed = _nrnn("train", "--resume", str(run), *TRAIN)
    assert resumed.returncode == 0, (SEED, resumed.stderr)
    _assert_same_tensors(_tensors(full), _tensors(run), f"random kills (seed {SEED})")


def _store_values(out: Path) -> dict[str, tuple]:
    store = ResultStore(out / "results")
    values = {}
    for name in store.names():
        assert store.status(name) == "ok", name
        entry = store.load(name)
        arrays = {k: np.asarray(v).tolist() for k, v in (entry.arrays or {}).items()}
        values[name] = (_untimed(entry.data), arrays)
    # run folders are recorded with their paths: compare them relative to the output
    # (NaN/inf become strings, so that equal values compare equal)
    text = json.dumps(values).replace(str(out), "<out>")
    return json.loads(text, parse_constant=lambda name: name)


@pytest.fixture(scope="module")
def reference_reproduction(tmp_path_factory):
    out = tmp_path_factory.mktemp("repro") / "full"
    t0 = time.perf_counter()
    res = _nrnn("reproduce", "--preset", "smoke", "--out", str(out), "--quiet", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    return out, time.perf_counter() - t0


def test_reproduction_killed_at_random_instants_resumes_to_the_same_values(
    reference_reproduction, tmp_path
):
    full, seconds = reference_reproduction
    rng = random.Random(SEED)
    out = tmp_path / "killed"
    base = ["reproduce", "--preset", "smoke", "--out", str(out), "--quiet", "--device", "cpu"]
    for k in range(2):
        args = base + (["--resume"] if k or out.exists() else [])
        if _kill_after(args, rng.uniform(0.02, 0.6) * seconds) is not None:
            break
    resumed = _nrnn(*base, "--resume")
    assert resumed.returncode == 0, (SEED, resumed.stderr)
    a, b = _store_values(full), _store_values(out)
    assert a.keys() == b.keys(), (SEED, sorted(set(a) ^ set(b)))
    for name in a:
        assert a[name] == b[name], (SEED, name)
    for member in (full / "runs").rglob("seed*"):
        twin = out / member.relative_to(full)
        _assert_same_tensors(_tensors(member), _tensors(twin), str(member.relative_to(full)))
