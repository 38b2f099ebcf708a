"""Checkpoint safety: code-free files, atomic writes, tamper and mismatch detection."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from nrnn_theory import NoiseSpec
from nrnn_theory.train import (
    CheckpointError,
    LipschitzRNN,
    NoisyRNN,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from nrnn_theory.train import checkpoint as ckpt_module


pytestmark = pytest.mark.usefixtures("single_thread")


def _trained(generator):
    model = NoisyRNN(
        2,
        5,
        3,
        noise=NoiseSpec.paper_code(add=0.02, mult=0.02),
        learn_step=True,
        generator=generator,
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xs = torch.rand(4, 6, 2, generator=generator)
    for _ in range(3):
        loss = model(xs, generator=generator).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_roundtrip_restores_model_optimizer_and_generators(tmp_path, generator):
    model, opt = _trained(generator)
    gen = torch.Generator().manual_seed(5)
    torch.rand(3, generator=gen)
    path = save_checkpoint(
        tmp_path / "c",
        model,
        epoch=4,
        step=12,
        optimizer=opt,
        generators={"noise": gen},
        task={"name": "digits", "seed": 0},
        data_fingerprint="abc",
        fit={"lr": 0.01},
        seed=9,
        history=[{"epoch": 1, "val_accuracy": 0.5}],
    )
    ck = load_checkpoint(path)
    assert (ck.epoch, ck.step, ck.seed, ck.task["name"], ck.data_fingerprint) == (
        4,
        12,
        9,
        "digits",
        "abc",
    )
    assert ck.history == ({"epoch": 1, "val_accuracy": 0.5},)
    assert not ck.model.training and ck.noise == model.noise
    for (name, p), q in zip(
        model.state_dict().items(), ck.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name
    fresh = torch.optim.Adam(ck.model.parameters(), lr=1.0)
    fresh.load_state_dict(ck.optimizer_state)
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"][0]["lr"] == b["param_groups"][0]["lr"] == 1e-2
    for pid, entries in a["state"].items():
        for key, value in entries.items():
            assert torch.equal(value, b["state"][pid][key]), (pid, key)
    restored = torch.Generator()
    restored.set_state(ck.generator_states["noise"])
    assert torch.equal(torch.rand(4, generator=restored), torch.rand(4, generator=gen))


def test_loading_runs_no_unpickler(tmp_path, generator, monkeypatch):
    model, opt = _trained(generator)
    save_checkpoint(tmp_path / "c", model, epoch=1, optimizer=opt)

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint load must not unpickle anything")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert load_checkpoint(tmp_path / "c").epoch == 1


def test_never_overwrites(tmp_path, generator):
    model, _ = _trained(generator)
    path = save_checkpoint(tmp_path / "c", model, epoch=1)
    before = _snapshot(path)
    with pytest.raises(FileExistsError, match="never overwritten"):
        save_checkpoint(path, model, epoch=2)
    assert _snapshot(path) == before


@pytest.mark.parametrize("where", ["tensors", "rename"])
def test_a_crash_while_writing_leaves_nothing_behind(tmp_path, generator, monkeypatch, where):
    model, opt = _trained(generator)
    import safetensors.torch

    def crash(*args, **kwargs):
        if where == "tensors":
            Path(args[1]).write_bytes(b"half a file")
        raise KeyboardInterrupt("simulated crash")

    if where == "tensors":
        monkeypatch.setattr(safetensors.torch, "save_file", crash)
    else:
        monkeypatch.setattr(ckpt_module.os, "rename", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "c", model, epoch=1, optimizer=opt)
    assert list(tmp_path.iterdir()) == []  # neither the checkpoint nor a temporary folder


def _rewrite_json(path: Path, edit, *, redigest: bool) -> None:
    meta = json.loads((path / "checkpoint.json").read_text())
    edit(meta)
    if redigest:  # what a (buggy) writer would produce: consistent digest, wrong content
        meta.pop("digest")
        canon = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
        meta["digest"] = hashlib.sha256(canon).hexdigest()
    (path / "checkpoint.json").write_text(json.dumps(meta))


def test_tampered_or_foreign_files_are_refused(tmp_path, generator):
    model, opt = _trained(generator)
    a = save_checkpoint(tmp_path / "a", model, epoch=1, optimizer=opt)
    b = save_checkpoint(tmp_path / "b", LipschitzRNN(2, 5, 3, generator=generator), epoch=1)
    # 1. an edited configuration (beta would silently change the dynamics)
    _rewrite_json(a, lambda m: m["model"].update(beta=0.5), redigest=False)
    with pytest.raises(CheckpointError, match="digest does not match.*modified"):
        load_checkpoint(a)
    # 2. a flipped byte in the weights
    c = save_checkpoint(tmp_path / "c", model, epoch=1)
    raw = bytearray((c / "tensors.safetensors").read_bytes())
    raw[-1] ^= 1
    (c / "tensors.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="SHA-256 does not match"):
        load_checkpoint(c)
    # 3. the weights of another (valid) checkpoint swapped in
    d = save_checkpoint(tmp_path / "d", model, epoch=1)
    (d / "tensors.safetensors").write_bytes((b / "tensors.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="modified or replaced"):
        load_checkpoint(d)
    # 4. consistent digest but a configuration the weights do not fit
    e = save_checkpoint(tmp_path / "e", model, epoch=1)
    _rewrite_json(e, lambda m: m["model"].update(hidden_size=6), redigest=True)
    with pytest.raises(CheckpointError, match=r"weight 'M_A' has shape \(5, 5\).*implies \(6, 6\)"):
        load_checkpoint(e)
    # 5. something else's JSON, garbage, an unrelated folder, nothing at all
    f = tmp_path / "f"
    f.mkdir()
    (f / "checkpoint.json").write_text(json.dumps({"epoch": 3}))
    with pytest.raises(CheckpointError, match="not an nrnn_theory checkpoint"):
        load_checkpoint(f)
    (f / "checkpoint.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable checkpoint JSON"):
        load_checkpoint(f)
    g = tmp_path / "g"
    g.mkdir()
    (g / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        load_checkpoint(g)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")


def test_run_directory_resolves_to_latest(tmp_path, generator):
    model, _ = _trained(generator)
    run = tmp_path / "run"
    for epoch in (1, 2, 10):
        save_checkpoint(run / "checkpoints" / f"epoch-{epoch:04d}", model, epoch=epoch)
    assert latest_checkpoint(run).name == "epoch-0010"
    assert load_checkpoint(run).epoch == 10
    assert latest_checkpoint(tmp_path) is None
    assert sorted(os.listdir(run / "checkpoints")) == ["epoch-0001", "epoch-0002", "epoch-0010"]


#: The noise as checkpoints written before NoiseSpec.to_dict (version 0.x) stored it:
#: the five fields, no schema key.
_OLD_NOISE = {
    "epsilon": 1.0,
    "sigma1": 0.02,
    "sigma2": 0.02,
    "structure": "diagonal",
    "convention": "paper_code",
}


def _to_old_layout(meta):
    assert meta["model"]["noise"] == {"schema": "NoiseSpec/1", **_OLD_NOISE}
    meta["model"]["noise"] = dict(_OLD_NOISE)
    penalty = (meta.get("fit") or {}).get("penalty")
    if penalty:
        penalty["noise"] = {k: v for k, v in penalty["noise"].items() if k != "schema"}


def test_checkpoint_in_the_old_noise_layout_loads_and_resumes(tmp_path, generator):
    """A checkpoint whose JSON stores the noise without a schema (the layout written by
    earlier versions) loads to the same model, and a run resumes from it."""
    from nrnn_theory.train import TaskData, fit

    x = torch.rand(8, 5, 2, generator=generator)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    task = TaskData("toy", x, y, x[:3], y[:3], x[:4], y[:4], num_classes=3, value_range=(0, 1))
    noise = NoiseSpec.paper_code(add=0.02, mult=0.02)
    kwargs = {"batch_size": 4, "lr": 1e-2, "device": "cpu", "quiet": True, "seed": 1}
    kwargs["lr_schedule"] = ()  # the default follows epochs: 2 epochs would decay at 1

    def model():
        return NoisyRNN(2, 5, 3, noise=noise, generator=torch.Generator().manual_seed(3))

    full = model()
    fit(full, task, epochs=2, **kwargs)
    run = tmp_path / "run"
    fit(model(), task, epochs=1, out_dir=run, **kwargs)
    _rewrite_json(latest_checkpoint(run), _to_old_layout, redigest=True)
    ck = load_checkpoint(run)
    assert ck.config["noise"] == _OLD_NOISE  # stored as written, read through from_dict
    assert ck.model.noise == noise and ck.noise == noise
    resumed = model()
    history = fit(resumed, task, epochs=2, out_dir=run, resume=True, **kwargs)
    assert history.epochs == 2
    for a, b in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
