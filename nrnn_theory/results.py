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


__all__ = [
    "ContinuousRegularizer",
    "ConventionMapping",
    "ExplicitRegularizer",
    "NoiseGapEstimate",
    "RegularizerConvergence",
    "Result",
    "to_jsonable",
]


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
class ExplicitRegularizer(Result):
    r"""Exact small-noise regularizer of THEORY.md §6, per example.

    :math:`\hat Q` and :math:`\hat R` do not contain :math:`\epsilon^2`; the predicted
    noise gap is :math:`\tfrac{\epsilon^2}{2}(\hat Q + \hat R)` (see
    :func:`~nrnn_theory.explicit_regularizer` for how :math:`\epsilon` enters each
    convention). Tensors keep their autograd graph.

    Attributes
    ----------
    Q, R, total : Tensor, shape (B,)
        :math:`\hat Q = 2g^\top m_M`, :math:`\hat R = \mathrm{tr}(H_\ell\hat\Sigma_M)`, and
        their sum (the noise-space Hessian trace).
    noise_gap : Tensor, shape (B,)
        :math:`\tfrac{\epsilon^2}{2}(\hat Q + \hat R)`: predicted
        :math:`\mathbb E\,\ell(h_M) - \ell(\bar h_M)` around the reference chain.
    mean_shift : Tensor, shape (B,)
        :math:`\ell(\bar h^{(s)}_M) - \ell(\bar h^{(d)}_M)`, exact: reference (mean-step)
        chain minus inference chain; zero for ``"sde"``.
    predicted_gap : Tensor, shape (B,)
        ``mean_shift + noise_gap``: predicted train-minus-inference loss gap.
    reference_loss, clean_loss : Tensor, shape (B,)
        Loss of the reference chain and of the inference (clean) chain.
    per_step_Q, per_step_R : Tensor, shape (B, M), or None
        Contributions of the noise injected at each step (``method="adjoint"`` or
        ``"naive"``); rows sum to ``Q`` and ``R``.
    covariance : Tensor, shape (B, H, H), or None
        :math:`\hat\Sigma_M`, the covariance of the first-order state perturbation
        :math:`h^{(1)}_M` per unit :math:`\epsilon` (``method="forward"``).
    mean_correction : Tensor, shape (B, H), or None
        :math:`m_M = \mathbb E\,h^{(2)}_M`, the second-order mean shift of the state per
        unit :math:`\epsilon^2` (``method="forward"``).
    epsilon : float
    noise : NoiseSpec
    convention, structure, method, loss : str
    """

    Q: Any
    R: Any
    total: Any
    noise_gap: Any
    mean_shift: Any
    predicted_gap: Any
    reference_loss: Any
    clean_loss: Any
    per_step_Q: Any
    per_step_R: Any
    covariance: Any
    mean_correction: Any
    epsilon: float
    noise: Any
    convention: str
    structure: str
    method: str
    loss: str

    @property
    def Q_mean(self) -> torch.Tensor:
        """Batch mean of ``Q`` (0-dim, differentiable)."""
        return self.Q.mean()

    @property
    def R_mean(self) -> torch.Tensor:
        """Batch mean of ``R`` (0-dim, differentiable)."""
        return self.R.mean()

    @property
    def total_mean(self) -> torch.Tensor:
        """Batch mean of ``total`` (0-dim, differentiable)."""
        return self.total.mean()

    @property
    def predicted_gap_mean(self) -> torch.Tensor:
        """Batch mean of ``predicted_gap`` (0-dim, differentiable)."""
        return self.predicted_gap.mean()

    def to_dict(self) -> dict[str, Any]:
        """Fields plus the batch means, as JSON-ready data."""
        out = super().to_dict()
        for name in ("Q_mean", "R_mean", "total_mean", "predicted_gap_mean"):
            out[name] = float(getattr(self, name))
        return out


@dataclass(frozen=True)
class NoiseGapEstimate(Result):
    r"""Antithetic Monte Carlo estimate of the noisy-minus-clean loss (THEORY.md §6).

    Attributes
    ----------
    gap, stderr : Tensor, shape (B,)
        Per-example estimate of :math:`\mathbb E\,\ell_{\rm noisy} - \ell_{\rm clean}` (clean
        = inference chain) and its standard error; with the control variate when
        ``control_variate``.
    predicted : Tensor, shape (B,)
        Exact second-order prediction (``ExplicitRegularizer.predicted_gap``).
    plain_gap, plain_stderr : Tensor, shape (B,)
        The antithetic estimate without control variate.
    mean, mean_stderr, predicted_mean, plain_mean, plain_mean_stderr : float
        The same over the batch mean.
    n_pairs : int
        Antithetic pairs per example.
    epsilon : float
    noise : NoiseSpec
    convention, loss : str
    control_variate : bool
    """

    gap: Any
    stderr: Any
    predicted: Any
    plain_gap: Any
    plain_stderr: Any
    mean: float
    mean_stderr: float
    predicted_mean: float
    plain_mean: float
    plain_mean_stderr: float
    n_pairs: int
    epsilon: float
    noise: Any
    convention: str
    control_variate: bool
    loss: str

    @property
    def residual(self) -> torch.Tensor:
        r"""``gap - predicted`` (B,): the estimated :math:`O(\epsilon^4)` remainder."""
        return self.gap - self.predicted


@dataclass(frozen=True)
class ContinuousRegularizer(Result):
    r"""Continuous-time regularizer :math:`Q, R` of THEORY.md §5, per example.

    Attributes
    ----------
    Q, R, total, noise_gap : Tensor, shape (B,)
        :math:`Q = 2g^\top m_T`, :math:`R = \mathrm{tr}(H_\ell\Sigma_T)`, their sum and
        :math:`\tfrac{\epsilon^2}{2}(Q + R)`.
    loss_value : Tensor, shape (B,)
        :math:`\ell(\bar h_T)` of the ODE solution.
    horizon : float
        :math:`T = M\Delta t`.
    epsilon : float
    noise : NoiseSpec
    solver : str
    n_substeps : int
    loss : str
    """

    Q: Any
    R: Any
    total: Any
    noise_gap: Any
    loss_value: Any
    horizon: float
    epsilon: float
    noise: Any
    solver: str
    n_substeps: int
    loss: str


@dataclass(frozen=True)
class RegularizerConvergence(Result):
    r"""Discrete regularizer against its continuous limit at fixed horizon (THEORY.md §6).

    Attributes
    ----------
    dts : Tensor, shape (L,)
        Step sizes, coarse to fine.
    Q_hat, R_hat : Tensor, shape (L, B)
        Discrete values per level and example.
    Q, R : Tensor, shape (B,)
        Continuous-time values.
    error : Tensor, shape (L,)
        :math:`\max_b|\hat Q_b + \hat R_b - Q_b - R_b|` per level.
    order : float
        Least-squares slope of ``log(error)`` against ``log(dts)`` (about 1 expected).
    noise : NoiseSpec
    """

    dts: Any
    Q_hat: Any
    R_hat: Any
    Q: Any
    R: Any
    error: Any
    order: float
    noise: Any
