"""Issue 19: interrupted or diverged reproduction members, and stored analysis values
that are a deterministic function of (checkpoint, seed).

Oracles: an uninterrupted run of the same member (bitwise-equal weights), the same
analysis under two different global random states (identical values), and the store
entry / report line a diverged member must produce.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from nrnn_theory.experiments import pipeline
from nrnn_theory.experiments.store import ResultStore
from nrnn_theory.experiments.zoo import PRESETS, ZOO, train_member
from nrnn_theory.train import TrainingDivergedError, load_task


SMOKE = PRESETS["smoke"]


@pytest.fixture(scope="module")
def digits():
    return load_task("digits", seed=0)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_member_folder_without_checkpoint_restarts_bitwise(digits, tmp_path):
    """A member killed before its first checkpoint leaves a run folder with only fit's
    own files; the reproduction trains it again from scratch instead of refusing."""
    full, _ = train_member(ZOO["nrnn_small"], SMOKE, digits, seed=0, run_dir=tmp_path / "a")
    run = tmp_path / "b"
    run.mkdir()
    (run / "history.jsonl").write_text("")  # what fit writes before anything else
    (run / ".history.jsonl.abc.tmp").write_text("half")  # an interrupted atomic write
    again, history = train_member(ZOO["nrnn_small"], SMOKE, digits, seed=0, run_dir=run)
    a, b = _weights(full), _weights(again)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert history.epochs == SMOKE.epochs
    assert not [p for p in run.rglob(".*")]


def test_analysis_is_a_function_of_checkpoint_and_seed(digits):
    """Every stored analysis value (the clean top Lyapunov exponent included) is the
    same whatever the global random state was before the call."""
    from nrnn_theory.experiments.model_analysis import analyse_member
    from nrnn_theory.experiments.zoo import member_config
    from nrnn_theory.train import build_model

    config = member_config(ZOO["nrnn_small"], SMOKE, digits)
    results = []
    for global_seed in (1, 2):
        model = build_model(config, generator=torch.Generator().manual_seed(0))
        torch.manual_seed(global_seed)
        np.random.seed(global_seed)  # noqa: NPY002 (the legacy global state is the point)
        results.append(analyse_member(model, digits, SMOKE, seed=3))
    (d1, a1), (d2, a2) = results
    assert json.dumps(d1, sort_keys=True) == json.dumps(d2, sort_keys=True)
    assert d1["lyapunov_top"] is not None
    assert a1.keys() == a2.keys()
    for key in a1:
        np.testing.assert_array_equal(a1[key], a2[key], err_msg=key)


def test_a_diverged_member_is_stored_and_reported(tmp_path, monkeypatch):
    """A member whose training diverges is recorded as diverged (a store entry, a line
    in the report), skipped on resume, and does not block the reproduction."""
    from nrnn_theory.experiments import zoo

    calls = []

    def diverging(member, *args, **kwargs):
        calls.append(member.name if hasattr(member, "name") else member)
        raise TrainingDivergedError("training diverged in epoch 1 at step 2: x", epoch=1, step=2)

    monkeypatch.setattr(zoo, "train_member", diverging)
    preset = dataclasses.replace(SMOKE, models=("nrnn_small",), seeds=(0,))
    out = tmp_path / "run"
    pipeline.open_run(out, preset, resume=False)
    lines = []
    pipeline.run_zoo(preset, out=out, progress=False, log=lines.append)
    assert len(calls) == 1
    assert any("diverged" in line for line in lines), lines
    entry = ResultStore(out / "results").load("digits/nrnn_small/seed0/diverged")
    assert entry.data["status"] == "diverged" and entry.data["epoch"] == 1
    md, _, _ = pipeline.write_report(out, preset)
    assert "diverged in training" in md.read_text()
    assert "digits/nrnn_small/seed 0 (epoch 1)" in md.read_text()
    pipeline.run_zoo(preset, out=out, progress=False, log=lines.append)  # resumed
    assert len(calls) == 1  # a stored divergence is a result: not trained again
