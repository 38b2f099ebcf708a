"""Frozen result records returned by the analysis functions.

Each carries what is needed to trust it (standard errors, sample counts, the
convention and assumptions used) and converts to plain JSON-ready data with
:meth:`Result.to_dict`. Tensors are converted to nested lists of floats.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


__all__ = ["ConventionMapping", "FitHistory", "Result", "to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """Convert tensors, arrays, dataclasses and containers to JSON-ready Python data.

    Non-finite floats become the strings ``"nan"``, ``"inf"`` and ``"-inf"`` so
    the output is strict JSON.

    Examples
    --------
    >>> to_jsonable({"a": torch.tensor([1.0, float("inf")]), "b": (1, 2)})
    {'a': [1.0, 'inf'], 'b': [1, 2]}
    """
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class Result:
    """Base class of result records: frozen, with a JSON-ready :meth:`to_dict`."""

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready Python data (see :func:`to_jsonable`)."""
        return to_jsonable(self)


@dataclass(frozen=True)
class ConventionMapping(Result):
    r"""How a ``"paper_code"`` noise corresponds to an Euler-Maruyama (``"sde"``) one.

    Attributes
    ----------
    source, target : NoiseSpec
        The ``"paper_code"`` spec and the ``"sde"`` spec matching its additive part
        exactly in law (:math:`\epsilon\sigma_1 = a/\sqrt{\Delta t}`).
    dt : float
        Time step used by the mapping.
    drift_scale : float
        :math:`1 - \mu/2`: the mean of the multiplicative factor. The noisy
        ``"paper_code"`` chain moves with mean step :math:`(1-\mu/2)\,d`.
    drift_variance : float
        :math:`\mu^2/12`: the variance of the multiplicative factor; one step's
        covariance gains :math:`\tfrac{\mu^2}{12}\mathrm{diag}(d\odot f)^2`, i.e.
        :math:`\tfrac{\mu^2\Delta t}{12}\mathrm{diag}(f)^2` per unit time.
    exact : bool
        True when :math:`\mu = 0`: the two conventions then agree in law.
    note : str
        What is not reproduced, in words.
    """

    source: Any
    target: Any
    dt: float
    drift_scale: float
    drift_variance: float
    exact: bool
    note: str


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
    """

    records: tuple[dict[str, Any], ...]
    test_loss: float | None
    test_accuracy: float | None
    epochs: int
    steps: int
    seconds: float
    task: str
    model: dict[str, Any]
    device: str
    world_size: int
    seed: int
    interrupted: bool = False
    out_dir: str | None = None

    @property
    def best_val_accuracy(self) -> float | None:
        """Highest validation accuracy over the epochs (``None`` without validation)."""
        vals = [r["val_accuracy"] for r in self.records if r.get("val_accuracy") is not None]
        return max(vals) if vals else None
