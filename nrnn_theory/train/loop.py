r"""Training: minibatch cross-entropy with noise injection, validation, checkpoints, resume.

:func:`fit` minimises the mean cross-entropy of the model's logits, with the model in
``train()`` mode so an NRNN injects its training noise (THEORY.md §2: training
minimises :math:`\mathbb E\,\ell(h^\epsilon_T)`, inference uses :math:`\epsilon = 0`).
An optional ``penalty(model, xs, ys)`` is added to the loss (the explicit regularizer
plugs in there: :func:`~nrnn_theory.train.explicit_regularizer_penalty`). Validation and
test metrics are always clean (``eval()`` mode).

Determinism: on CPU, a run is a function of the model's initial weights, the data and
``seed``. The shuffling and the noise draws come from two generators seeded from
``seed`` whose states are stored in each checkpoint, the learning-rate schedule is a
function of the epoch, and nothing else is random; an interrupted run resumed from its
last checkpoint therefore ends with bitwise the same weights as an uninterrupted one.

Under ``torch.distributed`` (``torchrun``, see :mod:`nrnn_theory.train.distributed`)
the model is wrapped in ``DistributedDataParallel``; each global batch of
``batch_size`` examples is split across the processes, every process draws the noise
of the whole global batch and uses its own rows, and the loss is scaled so that the
averaged gradient is that of the global batch: training equals single-process
training up to floating-point summation order. Only rank 0 logs and writes files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nrnn_theory._contract import (
    check_choice,
    check_nonnegative,
    check_positive,
    check_positive_int,
)
from nrnn_theory.dynamics import sample_noise
from nrnn_theory.results import FitHistory
from nrnn_theory.train.checkpoint import (
    CheckpointError,
    checkpoint_dirs,
    load_checkpoint,
    save_checkpoint,
)
from nrnn_theory.train.data import TaskData
from nrnn_theory.train.models import MODELS, NoisyRNN, _unwrap, model_config


__all__ = ["OPTIMIZERS", "evaluate", "fit", "lr_at_epoch", "resolve_device"]

Penalty = Callable[[nn.Module, Tensor, Tensor], Tensor]


def _adam(params, lr, weight_decay, momentum):
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _adamw(params, lr, weight_decay, momentum):
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _sgd(params, lr, weight_decay, momentum):
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum)


def _rmsprop(params, lr, weight_decay, momentum):
    return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay, momentum=momentum)


#: Optimizer name -> constructor ``(params, lr, weight_decay, momentum)``.
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": _adam,
    "adamw": _adamw,
    "sgd": _sgd,
    "rmsprop": _rmsprop,
}

HISTORY_NAME = "history.jsonl"
SUMMARY_NAME = "summary.json"


# ----------------------------------------------------------------------------- helpers
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available (the current CUDA device), else CPU.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"device: expected 'auto', a device string or torch.device, got {device!r}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available")
    return dev


def lr_at_epoch(lr: float, epoch: int, lr_schedule: Sequence[int], lr_decay: float) -> float:
    """Step decay: ``lr * lr_decay**k`` in epoch ``epoch`` (0-based) after ``k`` milestones.

    A milestone ``m`` applies from epoch ``m`` on (the authors' "x0.1 at epoch 90").

    Examples
    --------
    >>> [lr_at_epoch(1.0, e, [2], 0.1) for e in range(4)]
    [1.0, 1.0, 0.1, 0.1]
    """
    k = sum(1 for m in lr_schedule if epoch >= m)
    return lr * lr_decay**k


def _derive_seed(seed: int, purpose: str) -> int:
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    raise ValueError("model: has no floating-point parameters")  # pragma: no cover


def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce(values: list[float], device: torch.device, world: int) -> list[float]:
    if world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _append_line(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record, allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _penalty_record(penalty: object) -> Any:
    if penalty is None:
        return None
    config = getattr(penalty, "config", None)
    if callable(config):
        return config()
    return getattr(penalty, "__qualname__", repr(penalty))


def _clean(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


# ----------------------------------------------------------------------------- evaluate
@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: TaskData,
    split: Literal["train", "val", "test"] = "test",
    *,
    batch_size: int = 1000,
    device: str | torch.device | None = None,
) -> dict[str, float | int | None]:
    """Clean cross-entropy and accuracy of a model on one split.

    The model is put in ``eval()`` mode (so an NRNN injects no noise) and restored to
    its previous mode afterwards. Under ``torch.distributed`` every process evaluates
    a shard and the sums are all-reduced.

    Parameters
    ----------
    model : nn.Module
    data : TaskData
    split : {"train", "val", "test"}
    batch_size : int
    device : optional
        Default: the device of the model's parameters.

    Returns
    -------
    dict
        ``{"loss": ..., "accuracy": ..., "n": ...}``; loss and accuracy are ``None``
        for an empty split.

    Examples
    --------
    >>> from nrnn_theory.train import LipschitzRNN, TaskData
    >>> x, y = torch.zeros(4, 3, 1), torch.tensor([0, 1, 0, 1])
    >>> task = TaskData("toy", x, y, x, y, x, y, num_classes=2, value_range=(0.0, 1.0))
    >>> m = LipschitzRNN(1, 4, 2, generator=torch.Generator().manual_seed(0))
    >>> evaluate(m, task, "test")["accuracy"]
    0.5
    """
    inner = _unwrap(model)
    batch_size = check_positive_int("batch_size", batch_size)
    if device is None:
        device = next(inner.parameters()).device
    device = resolve_device(device)
    dtype = _model_dtype(inner)
    rank, world = _dist_info()
    n = data.size(split)
    index = torch.arange(n)
    if world > 1:
        index = index.tensor_split(world)[rank]
    was_training = inner.training
    inner.eval()
    loss_sum = 0.0
    correct = 0.0
    try:
        for idx in index.split(batch_size):
            x = data.inputs(split, idx).to(device=device, dtype=dtype)
            y = data.labels(split, idx).to(device)
            logits = inner(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += float((logits.argmax(dim=1) == y).sum())
    finally:
        inner.train(was_training)
    loss_sum, correct = _all_reduce([loss_sum, correct], device, world)
    if n == 0:
        return {"loss": None, "accuracy": None, "n": 0}
    return {"loss": loss_sum / n, "accuracy": correct / n, "n": n}


# ---------------------------------------------------------------------------------- fit
def _validate_data(model: nn.Module, data: TaskData) -> None:
    if not isinstance(data, TaskData):
        raise TypeError(f"data: expected a TaskData (see load_task), got {type(data).__name__}")
    config = model_config(model)
    D, C = config["input_size"], config["num_classes"]
    if data.input_size != D:
        raise ValueError(
            f"data: the model takes inputs with D = {D} values per step, but task "
            f"{data.name!r} has D = {data.input_size}; build the model with "
            f"input_size={data.input_size}"
        )
    if data.num_classes != C:
        raise ValueError(
            f"data: the model has {C} classes, but task {data.name!r} has {data.num_classes}; "
            f"build the model with num_classes={data.num_classes}"
        )
    for split in ("train", "val", "test"):
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        if x.numel() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"data.{split}_x: expected finite values, got NaN or inf")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= C):
            raise ValueError(
                f"data.{split}_y: expected labels in [0, {C}), got labels from "
                f"{int(y.min())} to {int(y.max())}"
            )


def _check_out_dir(out_dir: Path, resume: bool) -> None:
    if resume:
        if not out_dir.is_dir():
            raise CheckpointError(f"out_dir: {out_dir} does not exist; nothing to resume")
        if not checkpoint_dirs(out_dir):
            raise CheckpointError(
                f"out_dir: {out_dir} is not a checkpoint directory (no checkpoints/epoch-NNNN "
                "inside); nothing to resume"
            )
        return
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(
            f"out_dir: {out_dir} exists and is not empty; refusing to overwrite it. Resume it "
            "(resume=True, nrnn train --resume DIR) or choose a new directory"
        )


def _settings_diff(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(stored) | set(current)):
        if key in ("epochs", "world_size"):
            continue  # may change on resume: the noise and batches do not depend on them
        if stored.get(key) != current.get(key):
            out.append(f"{key}: checkpoint {stored.get(key)!r}, now {current.get(key)!r}")
    return out


def fit(
    model: nn.Module,
    data: TaskData,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam",
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    lr_schedule: Sequence[int] = (),
    lr_decay: float = 0.1,
    grad_clip: float | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    penalty: Penalty | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    keep_checkpoints: int = 2,
    eval_batch_size: int = 1000,
    quiet: bool = False,
    stop_after_steps: int | None = None,
) -> FitHistory:
    r"""Train a sequence classifier by minibatch cross-entropy, with noise in train mode.

    .. math:: \min_\theta\ \frac1N\sum_i \ell\big(\mathrm{model}_\theta(x_i;\,\eta_i), y_i\big)
              \;+\; \mathrm{penalty}(\theta)

    with fresh noise draws :math:`\eta_i` for every batch (THEORY.md §2).

    Parameters
    ----------
    model : nn.Module
        A model of :data:`~nrnn_theory.train.MODELS`; trained in place (moved to
        ``device``).
    data : TaskData
        Its ``input_size`` and ``num_classes`` must match the model.
    epochs : int
        Total number of epochs (a resumed run continues up to this number).
    batch_size : int
        Global minibatch size (split across processes under torch.distributed).
    lr : float
        Initial learning rate, > 0.
    optimizer : {"adam", "adamw", "sgd", "rmsprop"}
        See :data:`OPTIMIZERS`.
    weight_decay, momentum : float
        Passed to the optimizer (``momentum`` for SGD and RMSprop only).
    lr_schedule : sequence of int
        Epochs (0-based) from which the learning rate is multiplied by ``lr_decay``,
        e.g. ``[90]`` with ``lr_decay=0.1`` for the authors' schedule (THEORY.md §11).
    lr_decay : float
        Factor applied at each milestone.
    grad_clip : float, optional
        Clip the global gradient norm to this value.
    seed : int
        Seeds the shuffling and the noise draws (not the model's initialisation: pass a
        ``generator`` when building the model).
    device : str or torch.device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    penalty : callable, optional
        ``penalty(model, xs, ys) -> scalar tensor`` added to the loss of each batch
        (``model`` unwrapped, in train mode; ``xs``, ``ys`` the batch, rows in shuffled
        order). It should be a mean over the batch so that it scales like the loss. Its
        batch-size-weighted mean is logged per epoch as ``train_penalty``, separately
        from ``train_loss`` (the cross-entropy alone); the objective is their sum. A
        penalty with a ``config()`` method (such as
        :func:`~nrnn_theory.train.explicit_regularizer_penalty`) is recorded by that
        JSON record in the checkpoints (``Checkpoint.fit["penalty"]``), otherwise by
        its name; one with a ``check_model(model)`` method has it called before
        training starts, and one whose ``uses_generator`` is true is called as
        ``penalty(model, xs, ys, generator=g)`` with the training-noise generator.
    out_dir : str or Path, optional
        Run directory: ``history.jsonl`` (one JSON record per epoch), checkpoints in
        ``checkpoints/epoch-NNNN`` after every epoch and ``summary.json`` at the end.
        It must not exist or be empty, unless ``resume``.
    resume : bool
        Continue the run in ``out_dir`` from its latest checkpoint. The model
        configuration, data and settings (except ``epochs``) must match the checkpoint.
    keep_checkpoints : int
        Number of most recent checkpoints kept in ``out_dir``.
    eval_batch_size : int
        Batch size of validation and test evaluation.
    quiet : bool
        No progress bar and no per-epoch lines.
    stop_after_steps : int, optional
        Stop after this many optimizer steps in total, writing nothing more, as if the
        process had been killed there (used to test resuming).

    Returns
    -------
    FitHistory

    Raises
    ------
    ValueError, TypeError
        Invalid settings, a data/model mismatch, NaN inputs or labels out of range;
        raised before anything is trained or written.
    FileExistsError
        ``out_dir`` holds something and ``resume`` is False.
    CheckpointError
        ``resume`` with an ``out_dir`` that is not a checkpoint directory, or a
        checkpoint that does not match the model, data or settings.

    Examples
    --------
    >>> from nrnn_theory.train import LipschitzRNN, TaskData
    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.rand(8, 5, 1, generator=g), torch.tensor([0, 1] * 4)
    >>> task = TaskData("toy", x, y, x[:2], y[:2], x[:4], y[:4], num_classes=2,
    ...                 value_range=(0.0, 1.0))
    >>> model = LipschitzRNN(1, 4, 2, generator=g)
    >>> hist = fit(model, task, epochs=2, batch_size=4, lr=1e-2, device="cpu", quiet=True)
    >>> hist.epochs, hist.steps, 0.0 <= hist.test_accuracy <= 1.0
    (2, 4, True)
    """
    t_start = time.perf_counter()
    # ---------------------------------------------------------------- validation
    if not isinstance(model, nn.Module) or type(_unwrap(model)) not in MODELS.values():
        raise TypeError(
            f"model: expected one of {', '.join(c.__name__ for c in MODELS.values())}, "
            f"got {type(model).__name__}"
        )
    inner = _unwrap(model)
    _validate_data(inner, data)
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    lr = check_positive("lr", lr)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    weight_decay = check_nonnegative("weight_decay", weight_decay)
    momentum = check_nonnegative("momentum", momentum)
    lr_decay = check_positive("lr_decay", lr_decay)
    schedule = [check_positive_int("lr_schedule entry", m, minimum=0) for m in lr_schedule]
    if grad_clip is not None:
        grad_clip = check_positive("grad_clip", grad_clip)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TypeError(f"seed: expected a non-negative integer, got {seed!r}")
    if penalty is not None and not callable(penalty):
        raise TypeError(f"penalty: expected a callable (model, xs, ys) -> Tensor, got {penalty!r}")
    if penalty is not None and callable(getattr(penalty, "check_model", None)):
        penalty.check_model(inner)
    keep_checkpoints = check_positive_int("keep_checkpoints", keep_checkpoints)
    eval_batch_size = check_positive_int("eval_batch_size", eval_batch_size)
    if stop_after_steps is not None:
        stop_after_steps = check_positive_int("stop_after_steps", stop_after_steps)
    if not isinstance(resume, bool):
        raise TypeError(f"resume: expected a bool, got {resume!r}")
    if resume and out_dir is None:
        raise ValueError("resume: needs out_dir, the run directory to resume")
    rank, world = _dist_info()
    dev = resolve_device(device)
    run_dir = None if out_dir is None else Path(out_dir)
    if run_dir is not None:
        _check_out_dir(run_dir, resume)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # every rank has checked out_dir before rank 0 writes to it

    settings = {
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": optimizer,
        "weight_decay": weight_decay,
        "momentum": momentum,
        "lr_schedule": schedule,
        "lr_decay": lr_decay,
        "grad_clip": grad_clip,
        "seed": seed,
        "eval_batch_size": eval_batch_size,
        "penalty": _penalty_record(penalty),
        "world_size": world,
        "epochs": epochs,
    }
    config = model_config(inner)

    # ------------------------------------------------------------- state set-up
    ckpt = None
    if resume:
        ckpt = load_checkpoint(run_dir, map_location="cpu")
        if ckpt.config != config:
            diff = sorted(
                k for k in set(ckpt.config) | set(config) if ckpt.config.get(k) != config.get(k)
            )
            raise CheckpointError(
                f"resume: the model's configuration differs from the checkpoint's in {diff}"
            )
        if ckpt.data_fingerprint != data.fingerprint():
            raise CheckpointError(
                f"resume: the data differ from those the checkpoint in {ckpt.path} was trained "
                f"on (task {ckpt.task.get('name') if ckpt.task else None!r})"
            )
        diff = _settings_diff(ckpt.fit or {}, settings)
        if diff:
            raise CheckpointError(
                "resume: settings differ from the checkpoint's: " + "; ".join(diff)
            )
    inner.to(dev)
    dtype = _model_dtype(inner)
    ddp_model: nn.Module = inner
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(
            inner, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    opt = OPTIMIZERS[optimizer](inner.parameters(), lr, weight_decay, momentum)
    shuffle_gen = torch.Generator().manual_seed(_derive_seed(seed, "shuffle"))
    noise_gen = torch.Generator(device=dev).manual_seed(_derive_seed(seed, "noise"))
    history: list[dict[str, Any]] = []
    start_epoch, step = 0, 0
    if ckpt is not None:
        with torch.no_grad():
            inner.load_state_dict(ckpt.model.state_dict())
        opt.load_state_dict(ckpt.optimizer_state)
        shuffle_gen.set_state(ckpt.generator_states["shuffle"])
        noise_gen.set_state(ckpt.generator_states["noise"].to("cpu"))
        history = list(ckpt.history)
        start_epoch, step = ckpt.epoch, ckpt.step
    is_writer = rank == 0 and run_dir is not None
    if is_writer:
        run_dir.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(r, allow_nan=False) + "\n" for r in history)
        _atomic_write_text(run_dir / HISTORY_NAME, lines)

    nrnn = inner if isinstance(inner, NoisyRNN) else None
    task_spec = data.spec or None
    fingerprint = data.fingerprint() if is_writer else None  # hashes all the data
    show = not quiet and rank == 0
    log = sys.stderr
    if show:
        print(
            f"training {type(inner).__name__} on {data.describe()}; device {dev}"
            + (f", {world} processes" if world > 1 else "")
            + (f"; resuming after epoch {start_epoch}" if ckpt is not None else ""),
            file=log,
        )
    from tqdm.auto import tqdm

    N = data.size("train")
    interrupted = False
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        lr_now = lr_at_epoch(lr, epoch, schedule, lr_decay)
        for group in opt.param_groups:
            group["lr"] = lr_now
        inner.train()
        perm = torch.randperm(N, generator=shuffle_gen)
        batches = perm.split(batch_size)
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        penalty_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.float64, device=dev)
        seen = 0
        bar = tqdm(
            total=len(batches),
            desc=f"epoch {epoch + 1}/{epochs}",
            disable=not show,
            leave=False,
            file=log,
            dynamic_ncols=True,
        )
        for bidx in batches:
            B = len(bidx)
            local = bidx.tensor_split(world)[rank] if world > 1 else bidx
            if world > 1 and B < world:
                continue  # a shard would be empty on some rank: every rank skips it
            x = data.inputs("train", local).to(device=dev, dtype=dtype, non_blocking=True)
            y = data.labels("train", local).to(dev, non_blocking=True)
            kwargs: dict[str, Any] = {}
            if nrnn is not None:
                noise = nrnn.resolve_noise()
                if noise is not None and world > 1:
                    # Draw the whole global batch's noise, keep this rank's rows.
                    lo = sum(len(c) for c in bidx.tensor_split(world)[:rank])
                    eta = sample_noise(
                        noise,
                        B,
                        x.shape[1],
                        nrnn.hidden_size,
                        dtype=dtype,
                        device=dev,
                        generator=noise_gen,
                    )
                    kwargs["eta"] = eta[lo : lo + len(local)]
                elif noise is not None:
                    kwargs["generator"] = noise_gen
            logits = ddp_model(x, **kwargs)
            batch_loss = F.cross_entropy(logits, y, reduction="sum")
            loss = batch_loss * (world / B)
            if penalty is not None:
                if getattr(penalty, "uses_generator", False):  # e.g. a sampled estimate
                    pen = penalty(inner, x, y, generator=noise_gen)
                else:
                    pen = penalty(inner, x, y)
                loss = loss + pen * (len(local) * world / B)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(inner.parameters(), grad_clip)
            opt.step()
            step += 1
            with torch.no_grad():
                loss_sum += batch_loss.detach().double()
                if penalty is not None:
                    penalty_sum += pen.detach().double() * len(local)
                correct += (logits.detach().argmax(dim=1) == y).sum().double()
            seen += len(local)
            bar.update(1)
            if show:
                bar.set_postfix(
                    loss=f"{float(batch_loss.detach()) / len(local):.4f}", refresh=False
                )
            if stop_after_steps is not None and step >= stop_after_steps:
                interrupted = True
                break
        bar.close()
        if interrupted:
            break
        total_loss, total_correct, total_seen, total_penalty = _all_reduce(
            [float(loss_sum), float(correct), float(seen), float(penalty_sum)], dev, world
        )
        val = evaluate(inner, data, "val", batch_size=eval_batch_size, device=dev)
        record = {
            "epoch": epoch + 1,
            "lr": lr_now,
            "train_loss": _clean(total_loss / max(total_seen, 1)),
            "train_accuracy": total_correct / max(total_seen, 1),
            **(
                {"train_penalty": _clean(total_penalty / max(total_seen, 1))}
                if penalty is not None
                else {}
            ),
            "val_loss": _clean(val["loss"]) if val["loss"] is not None else None,
            "val_accuracy": val["accuracy"],
            "steps": step,
            "seconds": time.perf_counter() - t0,
        }
        history.append(record)
        if is_writer:
            ckpt_path = run_dir / "checkpoints" / f"epoch-{epoch + 1:04d}"
            save_checkpoint(
                ckpt_path,
                inner,
                epoch=epoch + 1,
                step=step,
                optimizer=opt,
                generators={"shuffle": shuffle_gen, "noise": noise_gen},
                task=task_spec,
                data_fingerprint=fingerprint,
                fit=settings,
                seed=seed,
                history=history,
            )
            _append_line(run_dir / HISTORY_NAME, record)
            for old in checkpoint_dirs(run_dir)[:-keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        if show:
            val_txt = (
                f", val loss {record['val_loss']:.4f}, val acc {record['val_accuracy']:.4f}"
                if record["val_accuracy"] is not None
                else ""
            )
            tqdm.write(
                f"epoch {epoch + 1}/{epochs}: train loss {record['train_loss']:.4f}, "
                f"train acc {record['train_accuracy']:.4f}{val_txt} "
                f"({record['seconds']:.1f} s)",
                file=log,
            )

    test = {"loss": None, "accuracy": None}
    if not interrupted:
        test = evaluate(inner, data, "test", batch_size=eval_batch_size, device=dev)
    del ddp_model  # ENVIRONMENT.md §5: drop the DDP wrapper before the process group
    result = FitHistory(
        records=tuple(history),
        test_loss=_clean(test["loss"]) if test["loss"] is not None else None,
        test_accuracy=test["accuracy"],
        epochs=len(history),
        steps=step,
        seconds=time.perf_counter() - t_start,
        task=data.name,
        model=config,
        device=str(dev),
        world_size=world,
        seed=seed,
        interrupted=interrupted,
        out_dir=None if run_dir is None else str(run_dir),
    )
    if is_writer and not interrupted:
        _atomic_write_text(
            run_dir / SUMMARY_NAME, json.dumps(result.to_dict(), indent=1, allow_nan=False) + "\n"
        )
    return result
