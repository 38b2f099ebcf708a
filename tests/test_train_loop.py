"""fit(): history, files, determinism, resume, bad input before training, DDP (issue 4)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from nrnn_theory import NoiseSpec
from nrnn_theory.train import (
    CheckpointError,
    FitSettings,
    LipschitzRNN,
    LSTMClassifier,
    NoisyRNN,
    best_checkpoint,
    build_model,
    evaluate,
    fit,
    load_checkpoint,
    load_task,
    model_config,
    spawn_fit,
)
from nrnn_theory.train.loop import best_epoch, default_lr_schedule, lr_at_epoch

from _tolerances import tol


pytestmark = pytest.mark.usefixtures("single_thread")

SMALL_NOISE = NoiseSpec.paper_code(add=0.02, mult=0.02)


@pytest.fixture(scope="module")
def digits():
    return load_task("digits", seed=0)


@pytest.fixture(scope="module")
def tiny(digits):
    """A 300-example slice of digits: fast enough for many short runs."""
    return dataclasses.replace(
        digits,
        train_x=digits.train_x[:300],
        train_y=digits.train_y[:300],
        val_x=digits.val_x[:100],
        val_y=digits.val_y[:100],
        test_x=digits.test_x[:100],
        test_y=digits.test_y[:100],
        spec={},
    )


def _model(seed=0, **kw):
    kw.setdefault("noise", SMALL_NOISE)
    return NoisyRNN(1, 8, 10, generator=torch.Generator().manual_seed(seed), **kw)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _without_time(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_fit_records_history_and_writes_the_run(tiny, tmp_path):
    model = _model()
    hist = fit(
        model,
        tiny,
        epochs=3,
        batch_size=32,
        lr=1e-2,
        device="cpu",
        quiet=True,
        out_dir=tmp_path / "run",
        keep_checkpoints=2,
    )
    assert hist.epochs == 3 and hist.steps == 3 * math.ceil(300 / 32) and not hist.interrupted
    assert [r["epoch"] for r in hist.records] == [1, 2, 3]
    assert 0 <= hist.test_accuracy <= 1 and hist.best_val_accuracy is not None
    lines = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == list(hist.records)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "best",
        "epoch-0002",
        "epoch-0003",
    ]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_accuracy"] == hist.test_accuracy and summary["model"] == model_config(
        model
    )
    assert load_checkpoint(tmp_path / "run").epoch == 3
    # model selection: the model ends with the best validation epoch's weights
    ck = load_checkpoint(best_checkpoint(tmp_path / "run"))
    assert hist.selected == "best" and ck.epoch == hist.best_epoch
    assert _same(_weights(ck.model), _weights(model))
    # the returned test metrics are the clean ones
    assert evaluate(model, tiny, "test")["accuracy"] == hist.test_accuracy


def test_evaluate_matches_a_direct_computation(tiny):
    model = _model(noise=NoiseSpec(sigma1=5.0)).train()
    with torch.no_grad():
        logits = model.eval()(tiny.val_x)
    model.train()
    out = evaluate(model, tiny, "val", batch_size=7)
    assert model.training  # mode restored
    acc = float((logits.argmax(1) == tiny.val_y).double().mean())
    loss = float(torch.nn.functional.cross_entropy(logits, tiny.val_y))
    assert out["n"] == 100 and out["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert out["loss"] == pytest.approx(loss, rel=1e-5)


def test_fit_is_deterministic_given_the_seed(tiny):
    runs = []
    for seed in (0, 0, 1):
        model = _model()
        fit(model, tiny, epochs=2, batch_size=50, lr=1e-2, seed=seed, device="cpu", quiet=True)
        runs.append(_weights(model))
    assert _same(runs[0], runs[1])
    assert not _same(runs[0], runs[2])


def test_interrupted_then_resumed_equals_uninterrupted(tiny, tmp_path):
    kw = dict(batch_size=40, lr=1e-2, seed=3, device="cpu", quiet=True, lr_schedule=[2])
    full = _model()
    h_full = fit(full, tiny, epochs=3, out_dir=tmp_path / "full", **kw)
    part = _model()
    h_part = fit(part, tiny, epochs=3, out_dir=tmp_path / "part", stop_after_steps=12, **kw)
    assert h_part.interrupted and h_part.epochs == 1  # 8 steps per epoch: died in epoch 2
    assert sorted(p.name for p in (tmp_path / "part" / "checkpoints").iterdir()) == [
        "best",
        "epoch-0000",  # the initial state, written before anything else
        "epoch-0001",
    ]
    resumed = _model(seed=99)  # the weights come from the checkpoint, not the init
    h_res = fit(resumed, tiny, epochs=3, out_dir=tmp_path / "part", resume=True, **kw)
    assert _same(_weights(resumed), _weights(full))
    assert _without_time(h_res.records) == _without_time(h_full.records)
    assert h_res.test_accuracy == h_full.test_accuracy
    lines = (tmp_path / "part" / "history.jsonl").read_text().splitlines()
    assert _without_time(json.loads(x) for x in lines) == _without_time(h_full.records)
    # extending a finished run continues from its last epoch
    h_more = fit(resumed, tiny, epochs=4, out_dir=tmp_path / "part", resume=True, **kw)
    assert h_more.epochs == 4 and h_more.records[-1]["lr"] == pytest.approx(1e-3)


@pytest.mark.parametrize("stop", [3, 8])  # in the first epoch; at its last step
def test_killed_before_the_first_epoch_checkpoint_resumes_bitwise(tiny, tmp_path, stop):
    """Issue 19: a run stopped before its first epoch ends resumes from the initial
    checkpoint (epoch-0000) to the weights of an uninterrupted run."""
    kw = dict(batch_size=40, lr=1e-2, seed=5, device="cpu", quiet=True)
    full = _model()
    h_full = fit(full, tiny, epochs=2, out_dir=tmp_path / "full", **kw)
    h_part = fit(_model(), tiny, epochs=2, out_dir=tmp_path / "part", stop_after_steps=stop, **kw)
    assert h_part.interrupted and h_part.epochs == 0
    assert (tmp_path / "part" / "history.jsonl").read_text() == ""
    resumed = _model(seed=99)
    h_res = fit(resumed, tiny, epochs=2, out_dir=tmp_path / "part", resume=True, **kw)
    assert _same(_weights(resumed), _weights(full))
    assert _without_time(h_res.records) == _without_time(h_full.records)


def test_a_folder_with_history_but_no_checkpoint_restarts_from_scratch(tiny, tmp_path):
    """Only fit's own files (history, temporary leftovers) are there: resume=True starts
    the run again from the given model, with the history truncated to match."""
    kw = dict(batch_size=100, lr=1e-2, seed=1, device="cpu", quiet=True)
    full = _model()
    h_full = fit(full, tiny, epochs=1, out_dir=tmp_path / "full", **kw)
    run = tmp_path / "run"
    (run / "checkpoints" / ".epoch-0001.tmp-abc").mkdir(parents=True)  # killed mid-write
    (run / "history.jsonl").write_text('{"epoch": 1, "stale": true}\n')
    (run / ".history.jsonl.x1.tmp").write_text("half")
    restarted = _model()
    h = fit(restarted, tiny, epochs=1, out_dir=run, resume=True, **kw)
    assert _same(_weights(restarted), _weights(full))
    assert _without_time(h.records) == _without_time(h_full.records)
    lines = (run / "history.jsonl").read_text().splitlines()
    assert _without_time(json.loads(x) for x in lines) == _without_time(h_full.records)
    assert sorted(p.name for p in run.rglob("*") if p.name.startswith(".")) == []
    # resume=True on a folder that does not exist yet simply starts the run
    fresh = _model()
    fit(fresh, tiny, epochs=1, out_dir=tmp_path / "new", resume=True, **kw)
    assert _same(_weights(fresh), _weights(full))
    # ... but a folder with someone else's files is never touched
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "history.jsonl").write_text("x")
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(CheckpointError, match="nothing was deleted"):
        fit(_model(), tiny, epochs=1, out_dir=tmp_path / "mine", resume=True, **kw)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["history.jsonl", "notes.txt"]


def test_a_diverging_run_raises_and_keeps_its_last_finite_checkpoint(tiny, tmp_path):
    """A loss that turns non-finite stops training with TrainingDivergedError naming the
    epoch; nothing non-finite is checkpointed, and resuming diverges the same way."""
    from nrnn_theory.train.loop import TrainingDivergedError

    calls = {"n": 0}

    def penalty(model, xs, ys):  # finite for the first epoch (3 batches), then NaN
        calls["n"] += 1
        return model.V.sum() * (0.0 if calls["n"] <= 3 else float("nan"))

    kw = dict(batch_size=100, lr=1e-2, device="cpu", quiet=True, penalty=penalty)
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match="diverged in epoch 2") as info:
        fit(_model(), tiny, epochs=3, out_dir=run, **kw)
    assert info.value.epoch == 2 and info.value.step == 3  # the 4th step is not taken
    ck = load_checkpoint(run)
    assert ck.epoch == 1 and all(bool(torch.isfinite(v).all()) for v in ck.model.parameters())
    calls["n"] = 3  # the penalty is a function of the step: resumed at step 3
    with pytest.raises(TrainingDivergedError, match="diverged in epoch 2"):
        fit(_model(), tiny, epochs=3, out_dir=run, resume=True, **kw)


def test_resume_refuses_a_different_run(tiny, digits, tmp_path):
    kw = dict(batch_size=100, device="cpu", quiet=True)
    fit(_model(), tiny, epochs=1, lr=1e-2, out_dir=tmp_path / "run", **kw)
    with pytest.raises(CheckpointError, match="settings differ.*lr: checkpoint 0.01, now 0.02"):
        fit(_model(), tiny, epochs=2, lr=2e-2, out_dir=tmp_path / "run", resume=True, **kw)
    with pytest.raises(CheckpointError, match="data differ"):
        other = dataclasses.replace(tiny, train_y=tiny.train_y.flip(0))
        fit(_model(), other, epochs=2, lr=1e-2, out_dir=tmp_path / "run", resume=True, **kw)
    with pytest.raises(
        CheckpointError, match=r"configuration differs from the checkpoint's in \['noise'\]"
    ):
        fit(
            _model(noise=None), tiny, epochs=2, lr=1e-2, out_dir=tmp_path / "run", resume=True, **kw
        )


def test_a_settings_record_trains_exactly_like_the_keywords(tiny, tmp_path):
    settings = FitSettings(epochs=2, batch_size=100, lr=1e-2, lr_schedule=[1], seed=3)
    a, b = _model(), _model()
    kw = dict(device="cpu", quiet=True)
    h_rec = fit(a, tiny, settings, out_dir=tmp_path / "run", **kw)
    h_kw = fit(b, tiny, epochs=2, batch_size=100, lr=1e-2, lr_schedule=[1], seed=3, **kw)
    assert _same(_weights(a), _weights(b))
    assert _without_time(h_rec.records) == _without_time(h_kw.records)
    stored = load_checkpoint(tmp_path / "run").fit
    assert FitSettings.from_checkpoint(stored) == settings
    assert FitSettings.from_checkpoint(stored, epochs=5) == dataclasses.replace(settings, epochs=5)
    with pytest.raises(TypeError, match="either as a FitSettings or as keywords"):
        fit(_model(), tiny, settings, lr=0.1, **kw)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['learning_rate'\]"):
        fit(_model(), tiny, epochs=1, learning_rate=0.1, **kw)
    with pytest.raises(TypeError, match="settings: expected a FitSettings"):
        fit(_model(), tiny, {"epochs": 1}, **kw)
    with pytest.raises(ValueError, match="lr_schedule entry: expected an integer >= 0"):
        FitSettings(epochs=1, lr_schedule=(-1,))


def _bad_calls(tiny, tmp_path):
    nan_data = dataclasses.replace(tiny, train_x=tiny.train_x.clone())
    nan_data.train_x[5, 3, 0] = float("nan")  # mutated after validation
    five = dataclasses.replace(tiny, num_classes=10)
    return [
        (dict(model=NoisyRNN(2, 8, 10, noise=None)), ValueError, "D = 2 values per step.*D = 1"),
        (dict(model=LipschitzRNN(1, 8, 5)), ValueError, "the model has 5 classes.*has 10"),
        (dict(data=nan_data), ValueError, r"data.train_x: expected finite values"),
        (dict(lr=0.0), ValueError, "lr: expected a number > 0, got 0.0"),
        (dict(lr=-1e-3), ValueError, "lr: expected a number > 0"),
        (dict(lr=float("nan")), ValueError, "lr: expected a finite number"),
        (dict(epochs=0), ValueError, "epochs: expected an integer >= 1"),
        (dict(optimizer="lbfgs"), ValueError, "optimizer: expected one of 'adam'"),
        (dict(model=torch.nn.Linear(1, 10)), TypeError, "model: expected one of"),
        (
            dict(data=five, resume=True, out_dir=tmp_path / "afile"),
            FileExistsError,
            "exists and is not a directory",
        ),
        (
            dict(resume=True, out_dir=tmp_path / "notckpt"),
            CheckpointError,
            "files that are not a training run's",
        ),
        (dict(out_dir=tmp_path / "existing"), FileExistsError, "refusing to overwrite"),
    ]


def test_bad_input_fails_before_any_training(tiny, tmp_path):
    (tmp_path / "notckpt").mkdir()
    (tmp_path / "notckpt" / "data.txt").write_text("mine")
    (tmp_path / "afile").write_text("mine")
    fit(_model(), tiny, epochs=1, lr=1e-2, device="cpu", quiet=True, out_dir=tmp_path / "existing")
    files_before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for overrides, exc, pattern in _bad_calls(tiny, tmp_path):
        model = overrides.pop("model", _model())
        before = _weights(model)
        kwargs = dict(data=tiny, epochs=2, lr=1e-2, device="cpu", quiet=True) | overrides
        data = kwargs.pop("data")
        with pytest.raises(exc, match=pattern):
            fit(model, data, **kwargs)
        assert _same(_weights(model), before), pattern
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == files_before


def test_penalty_is_added_to_the_loss(tiny):
    calls = []

    def penalty(model, xs, ys):
        calls.append((type(model).__name__, tuple(xs.shape), tuple(ys.shape)))
        return 10.0 * model.V.square().sum()

    plain, shrunk = _model(), _model()
    fit(plain, tiny, epochs=1, batch_size=100, lr=1e-2, device="cpu", quiet=True)
    fit(shrunk, tiny, epochs=1, batch_size=100, lr=1e-2, device="cpu", quiet=True, penalty=penalty)
    assert calls == [("NoisyRNN", (100, 64, 1), (100,))] * 3
    assert float(shrunk.V.detach().norm()) < float(plain.V.detach().norm())


def test_gradient_clipping_bounds_the_step(tiny):
    model = LipschitzRNN(1, 8, 10, generator=torch.Generator().manual_seed(0))
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    fit(
        model,
        tiny,
        epochs=1,
        batch_size=300,
        lr=1.0,
        optimizer="sgd",
        grad_clip=1e-3,
        device="cpu",
        quiet=True,
    )
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    # one SGD step of lr 1 on a gradient clipped to norm 1e-3
    assert float((after - before).norm()) == pytest.approx(1e-3, rel=1e-4)


def test_learning_rate_schedule(tiny):
    assert [lr_at_epoch(0.1, e, [1, 3], 0.5) for e in range(5)] == [0.1, 0.05, 0.05, 0.025, 0.025]
    hist = fit(
        _model(), tiny, epochs=3, batch_size=150, lr=1e-2, lr_schedule=[1], device="cpu", quiet=True
    )
    assert [r["lr"] for r in hist.records] == pytest.approx([1e-2, 1e-3, 1e-3])


def test_baselines_train_through_fit(tiny):
    model = LSTMClassifier(1, 8, 10, generator=torch.Generator().manual_seed(0))
    hist = fit(model, tiny, epochs=1, batch_size=100, lr=1e-2, device="cpu", quiet=True)
    assert hist.model["model"] == "lstm" and math.isfinite(hist.records[0]["train_loss"])


def test_two_gloo_processes_equal_single_process_training(digits):
    """DDP with 2 gloo processes vs one process on the same global batches.

    Set-up and teardown as in docs/environment.md, *DDP on CPU*.

    float64 and noise on: every rank draws the noise of the whole global batch and uses
    its rows, so only the summation order of the gradient differs.
    """
    config = {
        "model": "nrnn",
        "input_size": 1,
        "hidden_size": 8,
        "num_classes": 10,
        "dtype": "float64",
        "noise": {"sigma1": 0.02, "sigma2": 0.02, "convention": "paper_code"},
    }
    fit_kwargs = {"epochs": 2, "batch_size": 64, "lr": 1e-2, "seed": 3}
    state, hist = spawn_fit(
        config, {"name": "digits", "seed": 0}, fit_kwargs, world_size=2, model_seed=1
    )
    single = build_model(config, generator=torch.Generator().manual_seed(1))
    ref = fit(single, digits, device="cpu", quiet=True, **fit_kwargs)
    assert hist["world_size"] == 2 and hist["steps"] == ref.steps
    for name, value in single.state_dict().items():
        torch.testing.assert_close(state[name], value, **tol("reduction"))
    assert hist["test_accuracy"] == pytest.approx(ref.test_accuracy, abs=1 / digits.size("test"))


def test_model_selection_keeps_the_best_validation_epoch(tiny, tmp_path):
    # A 1000x learning-rate jump at epoch 2 (0-based) wrecks the model in its last epoch:
    # selection must end with an earlier epoch's weights, the last checkpoint must differ.
    settings = FitSettings(epochs=3, batch_size=32, lr=1e-2, lr_schedule=(2,), lr_decay=1e3)
    model = _model()
    hist = fit(model, tiny, settings, device="cpu", quiet=True, out_dir=tmp_path / "run")
    vals = [r["val_accuracy"] for r in hist.records]
    assert vals[2] < max(vals[:2])  # the setup did wreck the last epoch
    assert hist.best_epoch == best_epoch(hist.records) < 3 and hist.selected == "best"
    best = load_checkpoint(best_checkpoint(tmp_path / "run"))
    assert best.epoch == hist.best_epoch and _same(_weights(best.model), _weights(model))
    assert hist.test_accuracy == evaluate(best.model, tiny, "test")["accuracy"]
    last = load_checkpoint(tmp_path / "run")
    assert last.epoch == 3 and not _same(_weights(last.model), _weights(model))
    # restore_best=False keeps the last epoch's weights (and still writes best/)
    kept = _model()
    h2 = fit(
        kept,
        tiny,
        dataclasses.replace(settings, restore_best=False),
        device="cpu",
        quiet=True,
        out_dir=tmp_path / "run2",
    )
    assert h2.selected == "last" and h2.best_epoch == hist.best_epoch
    assert _same(_weights(load_checkpoint(tmp_path / "run2").model), _weights(kept))
    assert best_checkpoint(tmp_path / "run2") is not None


def test_selection_rule_breaks_ties_by_the_lower_validation_loss():
    recs = [
        {"epoch": 1, "val_accuracy": 0.9, "val_loss": 0.5},
        {"epoch": 2, "val_accuracy": 0.9, "val_loss": 0.3},
        {"epoch": 3, "val_accuracy": 0.9, "val_loss": 0.3},
        {"epoch": 4, "val_accuracy": 0.8, "val_loss": 0.1},
    ]
    assert best_epoch(recs) == 2  # lower loss wins a tie, then the earlier epoch
    assert best_epoch([{"epoch": 1, "val_accuracy": None, "val_loss": None}]) is None


def test_early_stopping_after_patience_epochs_without_improvement(tiny):
    # lr = 1e-30 leaves the weights unchanged: every epoch ties with epoch 1, which stays
    # the best (the earlier epoch wins exact ties), so patience=2 stops after epoch 3.
    hist = fit(
        _model(), tiny, FitSettings(epochs=6, lr=1e-30, patience=2), device="cpu", quiet=True
    )
    assert hist.stopped_early and len(hist.records) == 3 and hist.best_epoch == 1
    full = fit(_model(), tiny, FitSettings(epochs=4, lr=1e-30), device="cpu", quiet=True)
    assert not full.stopped_early and len(full.records) == 4
    no_val = dataclasses.replace(tiny, val_x=tiny.val_x[:0], val_y=tiny.val_y[:0])
    with pytest.raises(ValueError, match="patience"):
        fit(_model(), no_val, FitSettings(epochs=2, patience=1), device="cpu", quiet=True)


def test_lr_decay_default_follows_the_epochs():
    assert FitSettings(epochs=100).lr_schedule == (90,) == default_lr_schedule(100)
    assert FitSettings(epochs=40).lr_schedule == (36,)
    assert FitSettings(epochs=1).lr_schedule == ()
    assert FitSettings(epochs=40, lr_schedule=()).lr_schedule == ()


def test_a_learned_step_below_zero_is_flagged_at_the_end_of_training(tiny):
    model = _model(learn_step=True)
    with torch.no_grad():
        model.step[:3] = -0.05
    with pytest.warns(RuntimeWarning, match="learned step has entries <= 0"):
        hist = fit(model, tiny, FitSettings(epochs=1, lr=1e-30), device="cpu", quiet=True)
    assert hist.step_check.flagged and hist.step_check.n_nonpositive == 3
    ok = fit(_model(learn_step=True), tiny, FitSettings(epochs=1, lr=1e-30), quiet=True)
    assert ok.step_check.learned and not ok.step_check.flagged
