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
    "ConventionMapping",
    "HessianEigenvalues",
    "HessianTrace",
    "HiddenStateHessian",
    "Result",
    "SpectralDensity",
    "TraceEstimate",
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


# ----------------------------------------------------------------- flatness (THEORY.md §7)
@dataclass(frozen=True)
class TraceEstimate(Result):
    r"""A Hutchinson estimate of a Hessian trace (:func:`~nrnn_theory.estimate_hessian_trace`).

    Attributes
    ----------
    mean : float
        :math:`\frac1N\sum_j z_j^\top H z_j`.
    stderr : float
        Sample standard deviation over :math:`\sqrt N` (``nan`` when ``N = 1``).
    n_probes : int
        Probes used, ``N``.
    samples : Tensor, shape (N,)
        The individual :math:`z_j^\top H z_j`.
    block_means, block_stderrs : dict[str, float]
        Per-block estimates :math:`z_B^\top(Hz)_B` and their standard errors; the
        block samples sum to ``samples``.
    converged : bool or None
        Whether the ``rtol``/``atol`` stopping rule was met; ``None`` when none was set.
    n_params : int
        Dimension ``n`` of the parameter space.
    """

    mean: float
    stderr: float
    n_probes: int
    samples: Any
    block_means: dict
    block_stderrs: dict
    converged: bool | None
    n_params: int


@dataclass(frozen=True)
class HessianTrace(Result):
    """The exact Hessian trace (:func:`~nrnn_theory.hessian_trace`).

    Attributes
    ----------
    trace : float
    blocks : dict[str, float]
        Trace of each diagonal block; they sum to ``trace``.
    diagonal : Tensor, shape (n,)
        The Hessian's diagonal in the flat layout of
        :func:`~nrnn_theory.params_to_vector`.
    n_params : int
    n_hvps : int
        Hessian-vector products used (``n``).
    """

    trace: float
    blocks: dict
    diagonal: Any
    n_params: int
    n_hvps: int


@dataclass(frozen=True)
class HessianEigenvalues(Result):
    r"""Extreme Hessian eigenvalues (:func:`~nrnn_theory.hessian_eigenvalues`).

    Attributes
    ----------
    eigenvalues : Tensor, shape (k,)
        Descending for ``which="largest"`` or ``"magnitude"``, ascending for ``"smallest"``.
    residuals : Tensor, shape (k,)
        :math:`\|H y_i - \lambda_i y_i\|` for the unit Ritz vectors :math:`y_i`, computed
        with ``k`` extra products. By Weyl's bound each :math:`\lambda_i` lies within its
        residual of an exact eigenvalue.
    eigenvectors : Tensor, shape (k, n), or None
        Unit vectors in the flat layout, if requested.
    which : str
    method : str
        ``"lanczos"`` or ``"power"``.
    converged : bool
        Whether the tolerance was met within ``max_iter``.
    n_hvps : int
        Hessian-vector products used.
    n_params : int
    """

    eigenvalues: Any
    residuals: Any
    eigenvectors: Any
    which: str
    method: str
    converged: bool
    n_hvps: int
    n_params: int


@dataclass(frozen=True)
class SpectralDensity(Result):
    r"""A Hessian eigenvalue density by stochastic Lanczos quadrature.

    Returned by :func:`~nrnn_theory.estimate_spectral_density`.

    Attributes
    ----------
    nodes, weights : Tensor, shape (n_probes, n_steps)
        Gauss quadrature nodes (Ritz values) and weights (squared first components) per
        probe; each row of ``weights`` sums to 1.
    grid, density : Tensor, shape (n_grid,)
        The Gaussian-smoothed density :math:`\phi(t)`, which integrates to 1.
    bandwidth : float
        Kernel standard deviation :math:`\sigma`.
    moments, moment_stderrs : Tensor, shape (max_moment + 1,)
        Estimates of :math:`\mathrm{tr}(H^q)/n`, :math:`q = 0, 1, \dots`, and their standard
        errors over probes (``nan`` for one probe).
    n_probes, n_steps, n_params : int
    """

    nodes: Any
    weights: Any
    grid: Any
    density: Any
    bandwidth: float
    moments: Any
    moment_stderrs: Any
    n_probes: int
    n_steps: int
    n_params: int


@dataclass(frozen=True)
class HiddenStateHessian(Result):
    r"""The loss curvature in the final hidden state (:func:`~nrnn_theory.hidden_state_hessian`).

    Attributes
    ----------
    state : Tensor, shape (B, H)
        :math:`h_M`.
    loss : Tensor, shape (B,)
    grad : Tensor, shape (B, H)
        :math:`g = V^\top(p - e_y)`.
    hessian : Tensor, shape (B, H, H)
        :math:`H_\ell = V^\top\Pi_pV`.
    trace : Tensor, shape (B,)
    eigenvalues : Tensor, shape (B, H)
        Ascending; non-negative up to rounding, at most ``C - 1`` non-zero.
    """

    state: Any
    loss: Any
    grad: Any
    hessian: Any
    trace: Any
    eigenvalues: Any
