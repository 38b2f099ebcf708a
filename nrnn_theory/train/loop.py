r"""Training: minibatch cross-entropy with noise injection, validation, checkpoints, resume.

:func:`fit` minimises the mean cross-entropy of the model's logits, with the model in
``train()`` mode so an NRNN injects its training noise (docs/theory/model.md: training
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

import dataclasses
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
from nrnn_theory._io import atomic_write_text
from nrnn_theory._record import Result
from nrnn_theory.dynamics import NonFiniteStateError, sample_noise
from nrnn_theory.stability import StepCheck, check_step
from nrnn_theory.train.checkpoint import (
    CheckpointError,
    best_checkpoint,
    checkpoint_dirs,
    load_checkpoint,
    save_checkpoint,
    update_best_checkpoint,
)
from nrnn_theory.train.data import TaskData
from nrnn_theory.train.models import MODELS, NoisyRNN, model_config, unwrap_model


__all__ = [
    "CRASH_AFTER_STEPS_ENV",
    "OPTIMIZERS",
    "FitHistory",
    "FitSettings",
    "TrainingDivergedError",
    "best_epoch",
    "default_lr_schedule",
    "evaluate",
    "fit",
    "lr_at_epoch",
    "resolve_device",
]


# ---------------------------------------------------------------------- records
@dataclass(frozen=True)
class FitHistory(Result):
    """What a training run (:func:`nrnn_theory.train.fit`) did, epoch by epoch.

    Attributes
    ----------
    records : tuple of dict
        One per completed epoch: ``epoch``, ``lr``, ``train_loss`` and
        ``train_accuracy`` (on the training batches, with the training noise),
        ``val_loss`` and ``val_accuracy`` (clean, ``None`` without a validation
        split), ``steps`` (optimizer steps so far) and ``seconds`` (of that epoch).
    test_loss, test_accuracy : float or None
        Clean cross-entropy and accuracy on the test split after the last epoch
        (``None`` if the run was interrupted).
    epochs : int
        Epochs completed.
    steps : int
        Optimizer steps completed.
    seconds : float
        Wall time of this call (a resumed run counts only its own part).
    task : str
        Task name.
    model : dict
        The model configuration (:func:`nrnn_theory.train.model_config`).
    device : str
        Device trained on.
    world_size : int
        Number of processes (DistributedDataParallel); 1 without.
    seed : int
        Seed of the shuffling and of the training noise.
    interrupted : bool
        True when the run stopped early (``stop_after_steps``).
    out_dir : str or None
        Run directory with ``history.jsonl`` and the checkpoints.
    best_epoch : int or None
        The selected epoch (1-based): highest validation accuracy, ties broken by the
        lower validation loss, then the earlier epoch; ``None`` without validation.
    selected : {"best", "last"}
        Whose weights the model ends with, and whose the test metrics are.
    stopped_early : bool
        True when early stopping (``patience``) ended the run before ``epochs``.
    step_check : StepCheck or None
        The sign of the final model's Euler step (:func:`nrnn_theory.check_step`) for
        the NRNN family, ``None`` for the other models; a warning is issued at the end
        of training when a learned step has entries <= 0.
    """

    records: tuple[dict[str, float | None], ...]
    test_loss: float | None
    test_accuracy: float | None
    epochs: int
    steps: int
    seconds: float
    task: str
    model: dict[str, object]
    device: str
    world_size: int
    seed: int
    interrupted: bool = False
    out_dir: str | None = None
    best_epoch: int | None = None
    selected: Literal["best", "last"] = "last"
    stopped_early: bool = False
    step_check: StepCheck | None = None

    @property
    def best_val_accuracy(self) -> float | None:
        """Highest validation accuracy over the epochs (``None`` without validation)."""
        vals = [r["val_accuracy"] for r in self.records if r.get("val_accuracy") is not None]
        return max(vals) if vals else None

    @property
    def still_improving(self) -> bool:
        """Whether the best validation epoch is the last one (a run that may not have
        converged); ``False`` without validation."""
        return self.best_epoch is not None and self.best_epoch == self.epochs


def best_epoch(records: Sequence[Mapping[str, Any]]) -> int | None:
    """The best-validation epoch of a history: highest ``val_accuracy``, ties broken by
    the lower ``val_loss``, then the earlier epoch (the selection rule of :func:`fit`).

    Parameters
    ----------
    records : sequence of dict
        Per-epoch records with ``epoch``, ``val_accuracy`` and ``val_loss``.

    Returns
    -------
    int or None
        The ``epoch`` of the best record; ``None`` when no record has a validation
        accuracy.

    Examples
    --------
    >>> best_epoch([{"epoch": 1, "val_accuracy": 0.8, "val_loss": 0.5},
    ...             {"epoch": 2, "val_accuracy": 0.9, "val_loss": 0.4},
    ...             {"epoch": 3, "val_accuracy": 0.9, "val_loss": 0.3}])
    3
    """
    best, best_key = None, None
    for r in records:
        key = _selection_key(r)
        if key is not None and (best_key is None or key > best_key):
            best, best_key = int(r["epoch"]), key
    return best


def _selection_key(record: Mapping[str, Any]) -> tuple[float, float] | None:
    """Larger is better: (validation accuracy, -validation loss); ``None`` without
    validation. A strict ``>`` on it keeps the earlier epoch on exact ties."""
    acc = record.get("val_accuracy")
    if acc is None:
        return None
    loss = record.get("val_loss")
    return float(acc), -(float(loss) if loss is not None else math.inf)


Penalty = Callable[[nn.Module, Tensor, Tensor], Tensor]


class TrainingDivergedError(NonFiniteStateError):
    """Training diverged: the loss or the hidden state became NaN or infinite.

    Raised by :func:`fit` before the epoch is checkpointed, so the run folder keeps its
    last finite checkpoint. Training is deterministic, so resuming such a run diverges
    again at the same step; the reproduction records the member as diverged.

    Attributes
    ----------
    epoch : int
        The epoch (from 1) that diverged.
    step : int
        Optimizer steps completed when it was detected.
    """

    def __init__(self, message: str, *, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step


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

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (default) or anything ``torch.device`` accepts.

    Returns
    -------
    torch.device

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

    Parameters
    ----------
    lr : float
        The initial learning rate.
    epoch : int
        The epoch, from 0.
    lr_schedule : sequence of int
        The milestone epochs.
    lr_decay : float
        The factor applied at each milestone.

    Returns
    -------
    float

    Examples
    --------
    >>> [lr_at_epoch(1.0, e, [2], 0.1) for e in range(4)]
    [1.0, 1.0, 0.1, 0.1]
    """
    k = sum(1 for m in lr_schedule if epoch >= m)
    return lr * lr_decay**k


def default_lr_schedule(epochs: int) -> tuple[int, ...]:
    """The default decay milestones of ``epochs`` epochs: ``(floor(0.9 * epochs),)``.

    The authors' tuned runs decay the learning rate x0.1 at epoch 90 of 100
    (docs/theory/experiments.md); this keeps that fraction for any length (none when it would be
    epoch 0).

    Parameters
    ----------
    epochs : int
        Total number of epochs, >= 1.

    Returns
    -------
    tuple of int

    Examples
    --------
    >>> default_lr_schedule(100), default_lr_schedule(35), default_lr_schedule(1)
    ((90,), (31,), ())
    """
    epochs = check_positive_int("epochs", epochs)
    milestone = (9 * epochs) // 10
    return (milestone,) if milestone >= 1 else ()


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
    inner = unwrap_model(model)
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


#: Names ``fit`` writes in a run folder; leftovers of an interrupted write start with
#: a dot (``_io``'s temporary names).
_RUN_FILES = (HISTORY_NAME, SUMMARY_NAME, "checkpoints")


def _is_leftover(path: Path) -> bool:
    """A temporary file or folder of an interrupted atomic write (``_io``)."""
    return path.name.startswith(".") and (".tmp" in path.name)


def _run_leftovers(out_dir: Path) -> list[Path] | None:
    """What a run folder without a checkpoint holds, if it is all ``fit``'s own files.

    Returns the paths to delete before starting the run from scratch (its history, its
    summary, temporary leftovers of interrupted writes), or ``None`` when the folder
    holds anything else (which is never deleted).
    """
    found: list[Path] = []
    for p in out_dir.iterdir():
        if p.name == "checkpoints" and p.is_dir() and not p.is_symlink():
            inner = list(p.iterdir())
            if not all(_is_leftover(q) for q in inner):
                return None
            found += inner
        elif (p.name in _RUN_FILES and p.is_file() and not p.is_symlink()) or _is_leftover(p):
            found.append(p)
        else:
            return None
    return found


def _remove(paths: Sequence[Path]) -> None:
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)


def _check_out_dir(out_dir: Path, resume: bool) -> bool:
    """Check the run folder; returns True when there is a checkpoint to resume from.

    With ``resume``, a folder without a checkpoint (a run stopped before its first
    one was written, or a new folder) starts from scratch; its own leftovers (history,
    temporary files) are removed only then, once every other check has passed.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"out_dir: {out_dir} exists and is not a directory")
    if resume:
        if not out_dir.exists() or checkpoint_dirs(out_dir):
            return out_dir.exists()
        if _run_leftovers(out_dir) is None:
            raise CheckpointError(
                f"out_dir: {out_dir} is not a checkpoint or run folder: it holds no "
                "checkpoints/epoch-NNNN and files that are not a training run's; nothing to "
                "resume, and nothing was deleted"
            )
        return False
    found = _run_leftovers(out_dir) if out_dir.exists() else []
    if found is None or not all(_is_leftover(p) for p in found):  # temporary files only
        raise FileExistsError(
            f"out_dir: {out_dir} exists and is not empty; refusing to overwrite it. Resume it "
            "(resume=True, nrnn train --resume DIR) or choose a new directory"
        )
    return False


def _default_schedule(settings: dict[str, Any]) -> bool:
    """Whether a settings record's ``lr_schedule`` is the default for its ``epochs``."""
    epochs = settings.get("epochs")
    if not isinstance(epochs, int) or epochs < 1:
        return False
    return tuple(settings.get("lr_schedule") or ()) == default_lr_schedule(epochs)


def _settings_diff(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(stored) | set(current)):
        if key in ("epochs", "world_size", "schema", "patience", "restore_best"):
            continue  # may change on resume: the noise and batches do not depend on them
        if key == "lr_schedule" and _default_schedule(stored) and _default_schedule(current):
            continue  # the default follows epochs; the resumed run keeps the stored one
        if stored.get(key) != current.get(key):
            out.append(f"{key}: checkpoint {stored.get(key)!r}, now {current.get(key)!r}")
    return out


# ------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class FitSettings(Result):
    """What fixes a training run's optimisation: the settings of :func:`fit`.

    Validated on construction (a ``ValueError``/``TypeError`` names the field). Each
    checkpoint stores them (``Checkpoint.fit``, with the penalty and the number of
    processes), and a resumed run must use the same ones, except ``epochs``.
    ``nrnn train`` builds this record from its options; ``fit(model, data, epochs=...,
    lr=...)`` builds it from the keywords.

    Attributes
    ----------
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
    lr_schedule : tuple of int, optional
        Epochs (0-based) from which the learning rate is multiplied by ``lr_decay``.
        Unset (``None``): one decay at ``floor(0.9 * epochs)``, the authors' tuned
        schedule (x0.1 at epoch 90 of 100, docs/theory/experiments.md) scaled to ``epochs``
        (none when that is epoch 0); resolved on construction, so a resumed run keeps
        its schedule. ``()``: no decay.
    lr_decay : float
        Factor applied at each milestone.
    grad_clip : float or None
        Clip the global gradient norm to this value.
    seed : int
        Seeds the shuffling and the noise draws (not the model's initialisation: pass a
        ``generator`` when building the model).
    eval_batch_size : int
        Batch size of validation and test evaluation.
    patience : int or None
        Early stopping: stop when ``patience`` epochs in a row have not improved on the
        best validation epoch (the selection rule of ``restore_best``). ``None``: train
        all ``epochs``. Needs a validation split.
    restore_best : bool
        Validation-based model selection: the best epoch is the one with the highest
        clean validation accuracy, ties broken by the lower validation loss (then the
        earlier epoch). With ``True`` the model ends with that epoch's weights and the
        test metrics are that model's; ``False`` keeps the last epoch's. Either way the
        run folder keeps the best epoch's checkpoint as ``checkpoints/best``. Without a
        validation split the best epoch is the last one.

    Examples
    --------
    >>> FitSettings(epochs=3, lr_schedule=[2]).lr_schedule
    (2,)
    >>> FitSettings(epochs=100).lr_schedule  # the default follows the epochs
    (90,)
    """

    # The defaults are those of the authors' driver (docs/theory/experiments.md), shared by fit()
    # and ``nrnn train`` (which reads them from here).
    epochs: int = 35
    batch_size: int = 128
    lr: float = 0.01
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.0
    lr_schedule: tuple[int, ...] | None = None
    lr_decay: float = 0.1
    grad_clip: float | None = None
    seed: int = 0
    eval_batch_size: int = 1000
    patience: int | None = None
    restore_best: bool = True

    def __post_init__(self) -> None:
        def put(name, value):
            object.__setattr__(self, name, value)

        put("epochs", check_positive_int("epochs", self.epochs))
        put("batch_size", check_positive_int("batch_size", self.batch_size))
        put("lr", check_positive("lr", self.lr))
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        put("weight_decay", check_nonnegative("weight_decay", self.weight_decay))
        put("momentum", check_nonnegative("momentum", self.momentum))
        put("lr_decay", check_positive("lr_decay", self.lr_decay))
        if self.lr_schedule is None:
            put("lr_schedule", default_lr_schedule(self.epochs))
        schedule = [check_positive_int("lr_schedule entry", m, minimum=0) for m in self.lr_schedule]
        put("lr_schedule", tuple(schedule))
        if self.grad_clip is not None:
            put("grad_clip", check_positive("grad_clip", self.grad_clip))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise TypeError(f"seed: expected a non-negative integer, got {self.seed!r}")
        put("eval_batch_size", check_positive_int("eval_batch_size", self.eval_batch_size))
        if self.patience is not None:
            put("patience", check_positive_int("patience", self.patience))
        if not isinstance(self.restore_best, bool):
            raise TypeError(f"restore_best: expected a bool, got {self.restore_best!r}")

    @classmethod
    def from_checkpoint(cls, fit_record: dict[str, Any], **changes) -> FitSettings:
        """The settings stored in a checkpoint (``Checkpoint.fit``), with ``changes``.

        Parameters
        ----------
        fit_record : dict
            The checkpoint's ``fit`` record (:meth:`to_dict` plus ``penalty`` and
            ``world_size``, which are not settings and are ignored here).
        **changes
            Fields to replace, e.g. ``epochs=60`` to continue a run further.

        Returns
        -------
        FitSettings
        """
        fields = {k: v for k, v in fit_record.items() if k not in ("penalty", "world_size")}
        return dataclasses.replace(cls.from_dict(fields), **changes)


#: Test seam, for the tests only: with this variable set to N in its environment, a
#: training process kills itself with SIGKILL after N optimizer steps (nothing more is
#: written), as a real crash would; the tests of ``nrnn train --resume`` use it.
CRASH_AFTER_STEPS_ENV = "NRNN_TEST_CRASH_AFTER_STEPS"


def _crash_after_steps() -> int | None:
    value = os.environ.get(CRASH_AFTER_STEPS_ENV)
    return None if not value else check_positive_int(CRASH_AFTER_STEPS_ENV, int(value))


def _crash() -> None:  # pragma: no cover - the process ends here
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


# ---------------------------------------------------------------------------------- fit
def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module) or type(unwrap_model(model)) not in MODELS.values():
        raise TypeError(
            f"model: expected one of {', '.join(c.__name__ for c in MODELS.values())}, "
            f"got {type(model).__name__}"
        )
    return unwrap_model(model)


def _settings(settings: object, options: dict[str, Any]) -> FitSettings:
    if settings is None:
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(FitSettings)})
        if unknown:
            raise TypeError(f"fit: unexpected keyword argument(s) {unknown}")
        return FitSettings(**options)
    if options:
        raise TypeError(
            f"fit: give the settings either as a FitSettings or as keywords, not both "
            f"(got settings and {sorted(options)})"
        )
    if not isinstance(settings, FitSettings):
        raise TypeError(f"settings: expected a FitSettings, got {type(settings).__name__}")
    return settings


def _resume_checkpoint(run_dir: Path, inner: nn.Module, data: TaskData, record: dict[str, Any]):
    """The latest checkpoint of ``run_dir``, checked against the model, data and settings."""
    ckpt = load_checkpoint(run_dir, map_location="cpu")
    # Compare through the rebuilt model and penalty: a checkpoint written by an older
    # version stores the same noise in another (un-versioned) layout.
    stored, config = model_config(ckpt.model), model_config(inner)
    if stored != config:
        diff = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
        raise CheckpointError(
            f"resume: the model's configuration differs from the checkpoint's in {diff}"
        )
    if ckpt.data_fingerprint != data.fingerprint():
        raise CheckpointError(
            f"resume: the data differ from those the checkpoint in {ckpt.path} was trained "
            f"on (task {ckpt.task.get('name') if ckpt.task else None!r})"
        )
    stored_settings = dict(ckpt.fit or {})
    if ckpt.explicit_regularizer is not None:
        stored_settings["penalty"] = ckpt.explicit_regularizer.config()
    diff = _settings_diff(stored_settings, record)
    if diff:
        raise CheckpointError("resume: settings differ from the checkpoint's: " + "; ".join(diff))
    return ckpt


def _step_check(inner: nn.Module) -> StepCheck | None:
    """The step sign of an NRNN-family model (``None`` for the others)."""
    if not isinstance(inner, NoisyRNN):
        return None
    with torch.no_grad():
        return check_step(inner.nrnn_params())


@dataclass
class _Best:
    """The best-validation epoch so far and a copy of its weights (internal to fit)."""

    epoch: int | None = None
    key: tuple[float, float] | None = None
    state: dict[str, Tensor] | None = None

    def update(self, entry: dict[str, Any], inner: nn.Module) -> bool:
        """Record ``entry`` (just trained into ``inner``); True if it is the new best."""
        key = _selection_key(entry)
        if key is None or (self.key is not None and not key > self.key):
            return False
        self.epoch, self.key = int(entry["epoch"]), key
        self.state = {k: v.detach().clone() for k, v in inner.state_dict().items()}
        return True

    def patience_spent(self, epochs_done: int, patience: int | None) -> bool:
        """Early stopping: ``patience`` epochs without a new best."""
        return (
            patience is not None
            and self.epoch is not None
            and (epochs_done - self.epoch >= patience)
        )

    def restore(self, inner: nn.Module) -> bool:
        """Load the best weights into ``inner``; False when there is no best epoch."""
        if self.state is None:
            return False
        with torch.no_grad():
            inner.load_state_dict(self.state)
        return True

    @classmethod
    def resume(cls, history: list[dict[str, Any]], run_dir: Path | None, inner: nn.Module):
        """The best of a resumed run: its epoch from the history, its weights from the
        run's ``checkpoints/best`` (or from the resumed checkpoint when that is the
        best epoch)."""
        epoch = best_epoch(history)
        if epoch is None:
            return cls()
        key = _selection_key(next(r for r in history if int(r["epoch"]) == epoch))
        state = None
        if epoch == len(history):
            state = {k: v.detach().clone() for k, v in inner.state_dict().items()}
        elif run_dir is not None and (path := best_checkpoint(run_dir)) is not None:
            ck = load_checkpoint(path, map_location="cpu")
            if ck.epoch == epoch:
                state = {
                    k: v.to(p.device)
                    for (k, v), p in zip(
                        ck.model.state_dict().items(), inner.state_dict().values(), strict=True
                    )
                }
        if state is None:
            warnings.warn(
                f"resume: the best-validation checkpoint of epoch {epoch} is missing from "
                f"{run_dir}; model selection continues from the epochs still to train",
                RuntimeWarning,
                stacklevel=3,
            )
            return cls()
        return cls(epoch=epoch, key=key, state=state)


@dataclass
class _Run:
    """The state of one training run between epochs (internal to :func:`fit`)."""

    inner: nn.Module
    model: nn.Module  # inner, or its DistributedDataParallel wrapper
    data: TaskData
    settings: FitSettings
    penalty: Penalty | None
    opt: torch.optim.Optimizer
    shuffle_gen: torch.Generator
    noise_gen: torch.Generator
    device: torch.device
    dtype: torch.dtype
    rank: int
    world: int
    show: bool
    step: int = 0
    stop_after_steps: int | None = None
    crash_after_steps: int | None = None

    def _noise_kwargs(self, bidx: Tensor, local: Tensor, T: int) -> dict[str, Any]:
        """``generator=`` or, under DDP, this rank's rows of the global batch's noise."""
        nrnn = self.inner if isinstance(self.inner, NoisyRNN) else None
        noise = None if nrnn is None else nrnn.resolve_noise()
        if noise is None:
            return {}
        if self.world == 1:
            return {"generator": self.noise_gen}
        B = len(bidx)
        lo = sum(len(c) for c in bidx.tensor_split(self.world)[: self.rank])
        eta = sample_noise(
            noise,
            B,
            T,
            nrnn.hidden_size,
            dtype=self.dtype,
            device=self.device,
            generator=self.noise_gen,
        )
        return {"eta": eta[lo : lo + len(local)]}

    def train_epoch(self, epoch: int) -> tuple[dict[str, float | None] | None, float]:
        """One epoch; returns its training metrics (``None`` if stopped) and its lr."""
        from tqdm.auto import tqdm

        cfg, dev, world = self.settings, self.device, self.world
        lr_now = lr_at_epoch(cfg.lr, epoch, cfg.lr_schedule, cfg.lr_decay)
        for group in self.opt.param_groups:
            group["lr"] = lr_now
        self.inner.train()
        perm = torch.randperm(self.data.size("train"), generator=self.shuffle_gen)
        batches = perm.split(cfg.batch_size)
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        penalty_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.float64, device=dev)
        seen = 0
        bar = tqdm(
            total=len(batches),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not self.show,
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        for bidx in batches:
            B = len(bidx)
            local = bidx.tensor_split(world)[self.rank] if world > 1 else bidx
            if world > 1 and B < world:
                continue  # a shard would be empty on some rank: every rank skips it
            x = self.data.inputs("train", local).to(device=dev, dtype=self.dtype, non_blocking=True)
            y = self.data.labels("train", local).to(dev, non_blocking=True)
            try:
                logits = self.model(x, **self._noise_kwargs(bidx, local, x.shape[1]))
            except NonFiniteStateError as exc:
                raise TrainingDivergedError(
                    f"training diverged in epoch {epoch + 1} at step {self.step + 1}: {exc}",
                    epoch=epoch + 1,
                    step=self.step,
                ) from exc
            batch_loss = F.cross_entropy(logits, y, reduction="sum")
            loss = batch_loss * (world / B)
            if self.penalty is not None:
                if getattr(self.penalty, "uses_generator", False):  # e.g. a sampled estimate
                    pen = self.penalty(self.inner, x, y, generator=self.noise_gen)
                else:
                    pen = self.penalty(self.inner, x, y)
                loss = loss + pen * (len(local) * world / B)
            if world == 1 and not bool(torch.isfinite(loss.detach())):
                # before the step, so the weights stay finite (under DDP the epoch's
                # all-reduced loss is checked instead: a rank alone must not stop)
                raise TrainingDivergedError(
                    f"training diverged in epoch {epoch + 1} at step {self.step + 1}: the "
                    "loss is not finite; the last finite checkpoint is kept",
                    epoch=epoch + 1,
                    step=self.step,
                )
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.inner.parameters(), cfg.grad_clip)
            self.opt.step()
            self.step += 1
            if self.crash_after_steps is not None and self.step >= self.crash_after_steps:
                _crash()
            with torch.no_grad():
                loss_sum += batch_loss.detach().double()
                if self.penalty is not None:
                    penalty_sum += pen.detach().double() * len(local)
                correct += (logits.detach().argmax(dim=1) == y).sum().double()
            seen += len(local)
            bar.update(1)
            if self.show:
                bar.set_postfix(
                    loss=f"{float(batch_loss.detach()) / len(local):.4f}", refresh=False
                )
            if self.stop_after_steps is not None and self.step >= self.stop_after_steps:
                bar.close()
                return None, lr_now
        bar.close()
        total_loss, total_correct, total_seen, total_penalty = _all_reduce(
            [float(loss_sum), float(correct), float(seen), float(penalty_sum)], dev, world
        )
        if not (math.isfinite(total_loss) and math.isfinite(total_penalty)):
            what = "loss" if not math.isfinite(total_loss) else "penalty"
            raise TrainingDivergedError(
                f"training diverged in epoch {epoch + 1} (by step {self.step}): the training "
                f"{what} is not finite; the last finite checkpoint is kept",
                epoch=epoch + 1,
                step=self.step,
            )
        metrics: dict[str, float | None] = {
            "train_loss": _clean(total_loss / max(total_seen, 1)),
            "train_accuracy": total_correct / max(total_seen, 1),
        }
        if self.penalty is not None:
            metrics["train_penalty"] = _clean(total_penalty / max(total_seen, 1))
        return metrics, lr_now


def _log_epoch(record: dict[str, Any], epochs: int) -> None:
    from tqdm.auto import tqdm

    val_txt = (
        f", val loss {record['val_loss']:.4f}, val acc {record['val_accuracy']:.4f}"
        if record["val_accuracy"] is not None
        else ""
    )
    tqdm.write(
        f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f}, "
        f"train acc {record['train_accuracy']:.4f}{val_txt} ({record['seconds']:.1f} s)",
        file=sys.stderr,
    )


def fit(
    model: nn.Module,
    data: TaskData,
    settings: FitSettings | None = None,
    *,
    device: str | torch.device = "auto",
    penalty: Penalty | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    keep_checkpoints: int = 2,
    quiet: bool = False,
    stop_after_steps: int | None = None,
    **options: Any,  # Any: the fields of FitSettings, each checked by it
) -> FitHistory:
    r"""Train a sequence classifier by minibatch cross-entropy, with noise in train mode.

    .. math:: \min_\theta\ \frac1N\sum_i \ell\big(\mathrm{model}_\theta(x_i;\,\eta_i), y_i\big)
              \;+\; \mathrm{penalty}(\theta)

    with fresh noise draws :math:`\eta_i` for every batch (docs/theory/model.md).

    Parameters
    ----------
    model : nn.Module
        A model of :data:`~nrnn_theory.train.MODELS`; trained in place (moved to
        ``device``).
    data : TaskData
        Its ``input_size`` and ``num_classes`` must match the model.
    settings : FitSettings, optional
        Epochs, batch size, optimizer, learning-rate schedule, gradient clipping, seed
        and evaluation batch size. Instead of a record, its fields may be given as
        keywords (``fit(model, data, epochs=40, lr=1e-2)``), not both.
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
        ``checkpoints/epoch-NNNN`` of the initial state (``epoch-0000``, written before
        anything else) and after every epoch, the best-validation epoch's in
        ``checkpoints/best`` (model selection, see :class:`FitSettings`) and
        ``summary.json`` at the end. It must not exist or be empty, unless ``resume``.
    resume : bool
        Continue the run in ``out_dir`` from its latest checkpoint; the model
        configuration, data and settings (except ``epochs``) must match it. A run killed
        at any instant resumes to bitwise the same weights (CPU). A folder without a
        checkpoint (new, or a run stopped before its first checkpoint) starts from
        scratch with ``model`` as given: its history and temporary leftovers are
        removed, and a folder holding anything else is refused.
    keep_checkpoints : int
        Number of most recent checkpoints kept in ``out_dir``.
    quiet : bool
        No progress bar and no per-epoch lines.
    stop_after_steps : int, optional
        Stop after this many optimizer steps in total, writing nothing more, as if the
        process had been killed there (used to test resuming).
    **options
        The fields of :class:`FitSettings`, when ``settings`` is not given.

    Returns
    -------
    FitHistory
        With ``restore_best`` (the default) the model ends with the weights of the
        best validation epoch (``best_epoch``), and the test metrics are its own.

    Warns
    -----
    RuntimeWarning
        When the final model's learned per-unit step has entries <= 0
        (``FitHistory.step_check``; docs/theory/conventions.md).

    Raises
    ------
    ValueError, TypeError
        Invalid settings, a data/model mismatch, NaN inputs or labels out of range,
        ``patience`` without a validation split; raised before anything is trained or
        written.
    FileExistsError
        ``out_dir`` holds something and ``resume`` is False, or is a file.
    CheckpointError
        ``resume`` with an ``out_dir`` holding files that are not a run's, or a
        checkpoint that does not match the model, data or settings.
    TrainingDivergedError
        The loss or the state became non-finite (the epoch is not checkpointed).

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
    cfg = _settings(settings, options)
    inner = _check_model(model)
    _validate_data(inner, data)
    if penalty is not None and not callable(penalty):
        raise TypeError(f"penalty: expected a callable (model, xs, ys) -> Tensor, got {penalty!r}")
    if penalty is not None and callable(getattr(penalty, "check_model", None)):
        penalty.check_model(inner)
    keep_checkpoints = check_positive_int("keep_checkpoints", keep_checkpoints)
    if stop_after_steps is not None:
        stop_after_steps = check_positive_int("stop_after_steps", stop_after_steps)
    if not isinstance(resume, bool):
        raise TypeError(f"resume: expected a bool, got {resume!r}")
    if resume and out_dir is None:
        raise ValueError("resume: needs out_dir, the run directory to resume")
    crash_after = _crash_after_steps()
    has_val = data.size("val") > 0
    if cfg.patience is not None and not has_val:
        raise ValueError(
            f"patience: early stopping needs a validation split, but task {data.name!r} has "
            "none (load it with val_fraction > 0)"
        )
    rank, world = _dist_info()
    dev = resolve_device(device)
    run_dir = None if out_dir is None else Path(out_dir)
    has_checkpoint = False
    if run_dir is not None:
        has_checkpoint = _check_out_dir(run_dir, resume)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # every rank has checked out_dir before rank 0 writes to it

    record = {**cfg.to_dict(), "penalty": _penalty_record(penalty), "world_size": world}
    config = model_config(inner)

    # ------------------------------------------------------------- state set-up
    ckpt = None if not has_checkpoint else _resume_checkpoint(run_dir, inner, data, record)
    if ckpt is not None and ckpt.fit is not None:
        stored_schedule = tuple(ckpt.fit.get("lr_schedule") or ())
        if stored_schedule != cfg.lr_schedule:  # both defaults (checked): keep the run's
            cfg = dataclasses.replace(cfg, lr_schedule=stored_schedule)
            record["lr_schedule"] = list(stored_schedule)
    inner.to(dev)
    dtype = _model_dtype(inner)
    ddp_model: nn.Module = inner
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(
            inner, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    opt = OPTIMIZERS[cfg.optimizer](inner.parameters(), cfg.lr, cfg.weight_decay, cfg.momentum)
    run = _Run(
        inner=inner,
        model=ddp_model,
        data=data,
        settings=cfg,
        penalty=penalty,
        opt=opt,
        shuffle_gen=torch.Generator().manual_seed(_derive_seed(cfg.seed, "shuffle")),
        noise_gen=torch.Generator(device=dev).manual_seed(_derive_seed(cfg.seed, "noise")),
        device=dev,
        dtype=dtype,
        rank=rank,
        world=world,
        show=not quiet and rank == 0,
        stop_after_steps=stop_after_steps,
        crash_after_steps=crash_after,
    )
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if ckpt is not None:
        with torch.no_grad():
            inner.load_state_dict(ckpt.model.state_dict())
        opt.load_state_dict(ckpt.optimizer_state)
        run.shuffle_gen.set_state(ckpt.generator_states["shuffle"])
        run.noise_gen.set_state(ckpt.generator_states["noise"].to("cpu"))
        history = list(ckpt.history)
        start_epoch, run.step = ckpt.epoch, ckpt.step
    best = _Best.resume(history, run_dir, inner) if ckpt is not None else _Best()
    is_writer = rank == 0 and run_dir is not None
    task_spec = data.spec or None
    fingerprint = data.fingerprint() if is_writer else None  # hashes all the data

    def checkpoint(epoch: int, run: _Run) -> Path:  # run passed: it is deleted below
        return save_checkpoint(
            run_dir / "checkpoints" / f"epoch-{epoch:04d}",
            inner,
            epoch=epoch,
            step=run.step,
            optimizer=opt,
            generators={"shuffle": run.shuffle_gen, "noise": run.noise_gen},
            task=task_spec,
            data_fingerprint=fingerprint,
            fit=record,
            seed=cfg.seed,
            history=history,
        )

    if is_writer:
        # Only fit's own files are removed: a fresh start clears the history and the
        # leftovers of a run stopped before its first checkpoint (checked above); a
        # resumed one the temporary files of an interrupted write and a stale summary.
        if ckpt is None:
            _remove((_run_leftovers(run_dir) or []) if run_dir.exists() else [])
        else:
            _remove([p for p in run_dir.iterdir() if _is_leftover(p)])
            _remove([p for p in (run_dir / "checkpoints").iterdir() if _is_leftover(p)])
            if start_epoch < cfg.epochs:
                (run_dir / SUMMARY_NAME).unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        if ckpt is None:
            checkpoint(0, run)  # the initial state: from now on --resume always has a checkpoint
        lines = "".join(json.dumps(r, allow_nan=False) + "\n" for r in history)
        atomic_write_text(run_dir / HISTORY_NAME, lines)  # truncated to the checkpoint's
    if run.show:
        print(
            f"training {type(inner).__name__} on {data.describe()}; device {dev}"
            + (f", {world} processes" if world > 1 else "")
            + (f"; resuming after epoch {start_epoch}" if ckpt is not None else ""),
            file=sys.stderr,
        )

    interrupted = False
    stopped_early = best.patience_spent(len(history), cfg.patience)
    for epoch in range(start_epoch, cfg.epochs if not stopped_early else start_epoch):
        t0 = time.perf_counter()
        metrics, lr_now = run.train_epoch(epoch)
        if metrics is None:
            interrupted = True
            break
        val = evaluate(inner, data, "val", batch_size=cfg.eval_batch_size, device=dev)
        entry = {
            "epoch": epoch + 1,
            "lr": lr_now,
            **metrics,
            "val_loss": _clean(val["loss"]) if val["loss"] is not None else None,
            "val_accuracy": val["accuracy"],
            "steps": run.step,
            "seconds": time.perf_counter() - t0,
        }
        history.append(entry)
        improved = best.update(entry, inner)
        if is_writer:
            epoch_dir = checkpoint(epoch + 1, run)
            _append_line(run_dir / HISTORY_NAME, entry)
            if improved:
                update_best_checkpoint(run_dir, epoch_dir)
            for old in checkpoint_dirs(run_dir)[:-keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        if run.show:
            _log_epoch(entry, cfg.epochs)
        if best.patience_spent(len(history), cfg.patience):
            stopped_early = epoch + 1 < cfg.epochs
            break

    test = {"loss": None, "accuracy": None}
    selected = "last"
    if not interrupted:
        if cfg.restore_best and best.restore(inner):
            selected = "best"
        test = evaluate(inner, data, "test", batch_size=cfg.eval_batch_size, device=dev)
    steps_check = _step_check(inner)
    if steps_check is not None and steps_check.learned and steps_check.flagged and rank == 0:
        warnings.warn(
            f"fit: the trained model's learned step has entries <= 0: {steps_check.message}",
            RuntimeWarning,
            stacklevel=2,
        )
    steps = run.step
    # docs/environment.md, *DDP on CPU*: drop the DDP wrapper before the process group
    del ddp_model, run
    result = FitHistory(
        records=tuple(history),
        test_loss=_clean(test["loss"]) if test["loss"] is not None else None,
        test_accuracy=test["accuracy"],
        epochs=len(history),
        steps=steps,
        seconds=time.perf_counter() - t_start,
        task=data.name,
        model=config,
        device=str(dev),
        world_size=world,
        seed=cfg.seed,
        interrupted=interrupted,
        out_dir=None if run_dir is None else str(run_dir),
        best_epoch=best.epoch,
        selected=selected,
        stopped_early=stopped_early,
        step_check=steps_check,
    )
    if is_writer and not interrupted:
        atomic_write_text(
            run_dir / SUMMARY_NAME, json.dumps(result.to_dict(), indent=1, allow_nan=False) + "\n"
        )
    return result
