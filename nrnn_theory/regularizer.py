r"""The small-noise regularizer of noise injection, exact and by Monte Carlo
(docs/theory/regularizer.md).

For the chain :math:`h_{k+1} = h_k + s\odot f(h_k, x_k) + \epsilon\,G(h_k, x_k)\,\eta_k`
with standardized, symmetric draws :math:`\eta_k` (docs/theory/regularizer.md),

.. math:: \mathbb E\,\ell(h_M) = \ell(\bar h_M) + \tfrac{\epsilon^2}{2}\,[\hat Q + \hat R]
          + O(\epsilon^4),

where :math:`\bar h` is the reference chain (:math:`\eta = 0`) and :math:`\hat Q, \hat R`
do **not** contain :math:`\epsilon^2`:

* :math:`\hat R = \mathrm{tr}(H_\ell\hat\Sigma_M)` (state sensitivity seen by the loss),
* :math:`\hat Q = 2g^\top m_M` (curvature of the drift; zero for a linear drift),

with :math:`\hat\Sigma_{k+1} = \tilde J_k\hat\Sigma_k\tilde J_k^\top + C_k`,
:math:`m_{k+1} = \tilde J_k m_k + \tfrac12 s\odot\hat v_k`,
:math:`(\hat v_k)_l = \tanh''(z_{k,l})(W\hat\Sigma_kW^\top)_{ll}` and
:math:`C_k = G_kG_k^\top`. Equivalently :math:`\hat Q + \hat R = \mathrm{tr}\,\nabla_u^2
\mathcal G(0)`, the Hessian trace of the loss with respect to the injected noise.

How :math:`\epsilon` enters
---------------------------
``"sde"``: :math:`s = \Delta t` (or ``params.step``), :math:`G = \sqrt{\Delta t}\,\sigma(h)`
and :math:`C_k = \Delta t\,\Gamma_k`; the noise level is ``noise.epsilon`` and
:math:`\hat Q, \hat R` scale with :math:`\sigma_1^2, \sigma_1\sigma_2, \sigma_2^2`.

``"paper_code"``: :math:`a = \epsilon\sigma_1` (``add_noise``) and :math:`\mu =
\epsilon\sigma_2` (``mult_noise``). The reference chain moves with the *mean* step
:math:`s = (1-\mu/2)\,d` and, per unit :math:`\epsilon`,
:math:`C_k = \sigma_1^2I + \tfrac{\sigma_2^2}{12}\mathrm{diag}(d\odot f(\bar h_k))^2`.
:meth:`NoiseSpec.paper_code` sets :math:`\epsilon = 1`, so then :math:`\hat Q, \hat R`
carry :math:`a^2, \mu^2` exactly as in docs/theory/regularizer.md and the noise gap is
:math:`\tfrac12(\hat Q + \hat R)`. Training and inference chains differ (inference uses
:math:`d`), so the predicted train-minus-inference gap adds the exact mean-step shift
:math:`\ell(\bar h^{(s)}_M) - \ell(\bar h^{(d)}_M)` from two clean runs.

Functions
---------
:func:`explicit_regularizer`
    Exact :math:`\hat Q, \hat R` per example (forward recursion, adjoint pass with
    per-step attribution, or the naive O(M^2) formula); differentiable.
:func:`regularizer_penalty`
    The predicted gap as a scalar training penalty.
:func:`estimate_noise_gap`
    Antithetic Monte Carlo of :math:`\mathbb E\,\ell(\text{noisy}) - \ell(\text{clean})`
    with the pathwise control variate of docs/theory/regularizer.md.
:func:`continuous_regularizer`
    The continuous-time :math:`Q, R` of docs/theory/regularizer.md from the moment ODEs.
:func:`regularizer_convergence`
    :math:`(\hat Q, \hat R)\to(Q, R)` as :math:`\Delta t\to0` at fixed horizon.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from nrnn_theory._contract import (
    check_choice,
    check_noise,
    check_params,
    check_positive_int,
    check_real,
    check_state,
    check_xs,
    is_transformed,
)
from nrnn_theory._linalg import sym
from nrnn_theory._record import Result
from nrnn_theory._step import SQRT12, StepKernel
from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory.dynamics import NonFiniteStateError, rollout, sample_noise
from nrnn_theory.losses import check_labels, cross_entropy_derivatives


__all__ = [
    "CONTINUOUS_SOLVERS",
    "LOSSES",
    "METHODS",
    "ContinuousRegularizer",
    "ExplicitRegularizer",
    "NoiseGapEstimate",
    "RegularizerConvergence",
    "continuous_regularizer",
    "estimate_noise_gap",
    "explicit_regularizer",
    "regularizer_convergence",
    "regularizer_penalty",
]


def _batch_mean(field: str) -> property:
    """A property: the batch mean of the (B,) tensor ``field`` (0-dim, differentiable)."""

    def mean(self) -> torch.Tensor:
        return getattr(self, field).mean()

    mean.__doc__ = f"Batch mean of ``{field}`` (0-dim, differentiable)."
    return property(mean)


# ---------------------------------------------------------------------- records
@dataclass(frozen=True)
class ExplicitRegularizer(Result):
    r"""Exact small-noise regularizer of docs/theory/regularizer.md, per example.

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

    Q: Tensor
    R: Tensor
    total: Tensor
    noise_gap: Tensor
    mean_shift: Tensor
    predicted_gap: Tensor
    reference_loss: Tensor
    clean_loss: Tensor
    per_step_Q: Tensor | None
    per_step_R: Tensor | None
    covariance: Tensor | None
    mean_correction: Tensor | None
    epsilon: float
    noise: NoiseSpec
    convention: str
    structure: str
    method: str
    loss: str

    Q_mean = _batch_mean("Q")
    R_mean = _batch_mean("R")
    total_mean = _batch_mean("total")
    predicted_gap_mean = _batch_mean("predicted_gap")

    def to_dict(self) -> dict[str, Any]:
        """Fields plus the batch means, as JSON-ready data."""
        out = super().to_dict()
        for name in ("Q_mean", "R_mean", "total_mean", "predicted_gap_mean"):
            out[name] = float(getattr(self, name))
        return out


@dataclass(frozen=True)
class NoiseGapEstimate(Result):
    r"""Antithetic Monte Carlo estimate of the noisy-minus-clean loss (docs/theory/regularizer.md).

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

    gap: Tensor
    stderr: Tensor
    predicted: Tensor
    plain_gap: Tensor
    plain_stderr: Tensor
    mean: float
    mean_stderr: float
    predicted_mean: float
    plain_mean: float
    plain_mean_stderr: float
    n_pairs: int
    epsilon: float
    noise: NoiseSpec
    convention: str
    control_variate: bool
    loss: str

    @property
    def residual(self) -> torch.Tensor:
        r"""``gap - predicted`` (B,): the estimated :math:`O(\epsilon^4)` remainder."""
        return self.gap - self.predicted


@dataclass(frozen=True)
class ContinuousRegularizer(Result):
    r"""Continuous-time regularizer :math:`Q, R` of docs/theory/regularizer.md, per example.

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

    Q: Tensor
    R: Tensor
    total: Tensor
    noise_gap: Tensor
    loss_value: Tensor
    horizon: float
    epsilon: float
    noise: NoiseSpec
    solver: str
    n_substeps: int
    loss: str


@dataclass(frozen=True)
class RegularizerConvergence(Result):
    r"""Discrete regularizer vs. its continuous limit at fixed horizon (docs/theory/regularizer.md).

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

    dts: Tensor
    Q_hat: Tensor
    R_hat: Tensor
    Q: Tensor
    R: Tensor
    error: Tensor
    order: float
    noise: NoiseSpec


Method = Literal["forward", "adjoint", "naive"]
Solver = Literal["rk4", "solve_ivp"]
LossFn = Callable[[Tensor, Tensor], Tensor]

#: Time steps whose input projection is computed at once (bounds no-grad memory).
_CHUNK = 128
#: Elements of noise draws held at once by :func:`estimate_noise_gap`.
_MC_BUDGET = 1 << 22


# ------------------------------------------------------------------------------- losses
@dataclass(frozen=True)
class _Loss:
    """A loss on the readout with its value and its first two derivatives in ``h``."""

    name: str
    value: Callable[[NRNNParams, Tensor, Tensor], Tensor]
    derivatives: Callable[[NRNNParams, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]
    check: Callable[[NRNNParams, object, int], Tensor]


def _ce_value(params: NRNNParams, h: Tensor, labels: Tensor) -> Tensor:
    s = h @ params.V.mT + params.c
    return torch.nn.functional.cross_entropy(s, labels, reduction="none")


def _ce_check(params: NRNNParams, labels: object, batch: int) -> Tensor:
    return check_labels(labels, batch, params.num_classes, params.device)


#: Named losses: value, closed-form gradient and Hessian in ``h`` (docs/theory/model.md).
LOSSES: dict[str, _Loss] = {
    "cross_entropy": _Loss("cross_entropy", _ce_value, cross_entropy_derivatives, _ce_check),
}


def _callable_loss(fn: LossFn) -> _Loss:
    """Wrap ``fn(logits (B, C), labels (B, ...)) -> (B,)``; derivatives by ``torch.func``."""

    def value(params: NRNNParams, h: Tensor, labels: Tensor) -> Tensor:
        out = fn(h @ params.V.mT + params.c, labels)
        if not isinstance(out, Tensor) or out.shape != (h.shape[0],):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"loss: expected the callable to return per-example losses of shape "
                f"({h.shape[0]},) (e.g. reduction='none'), got {got}"
            )
        return out

    def derivatives(params: NRNNParams, h: Tensor, labels: Tensor):
        V, c = params.V, params.c

        def single(h1: Tensor, y1: Tensor) -> Tensor:
            return fn((h1 @ V.mT + c).unsqueeze(0), y1.unsqueeze(0)).reshape(())

        loss = value(params, h, labels)
        g = torch.func.vmap(torch.func.grad(single))(h, labels)
        # reverse-over-reverse: forward-mode AD would load torch's jit decompositions,
        # which warn (DeprecationWarning) on first use in torch 2.13
        hess = torch.func.vmap(torch.func.jacrev(torch.func.jacrev(single)))(h, labels)
        return loss, g, hess

    def check(params: NRNNParams, labels: object, batch: int) -> Tensor:
        if not isinstance(labels, Tensor):
            raise TypeError(f"labels: expected a torch.Tensor, got {type(labels).__name__}")
        if labels.ndim == 0 or labels.shape[0] != batch:
            raise ValueError(
                f"labels: expected a leading dimension of {batch} to match xs, got shape "
                f"{tuple(labels.shape)}"
            )
        if labels.device != params.device:
            raise ValueError(f"labels: expected device {params.device}, got {labels.device}")
        return labels

    name = getattr(fn, "__name__", type(fn).__name__)
    return _Loss(name, value, derivatives, check)


def _resolve_loss(loss: object) -> _Loss:
    if isinstance(loss, str):
        check_choice("loss", loss, LOSSES)
        return LOSSES[loss]
    if callable(loss):
        return _callable_loss(loss)
    raise TypeError(
        f"loss: expected one of {', '.join(map(repr, LOSSES))} or a callable "
        f"(logits, labels) -> per-example losses, got {type(loss).__name__}"
    )


# ------------------------------------------------------------------------ noise pieces
@dataclass(frozen=True)
class _UnitNoise:
    r"""Noise covariance per unit :math:`\epsilon`: :math:`C_k = G_kG_k^\top / \epsilon^2`.

    ``kind`` is ``"diagonal"``, ``"scalar"`` or ``"paper_code"``; ``g_add``/``g_mult`` the
    levels of :class:`~nrnn_theory._step.StepKernel` at :math:`\epsilon = 1` (the kernel's
    own levels vanish with :math:`\epsilon`, so they cannot be divided out at 0).
    """

    kind: str
    g_add: float
    g_mult: float

    @classmethod
    def of(cls, params: NRNNParams, noise: NoiseSpec) -> _UnitNoise:
        if noise.convention == "paper_code":
            return cls("paper_code", noise.sigma1, noise.sigma2 / SQRT12)
        root = math.sqrt(params.dt)
        return cls(noise.structure, root * noise.sigma1, root * noise.sigma2)

    def diagonal(self, h: Tensor, f: Tensor, d: Tensor) -> Tensor:
        """Diagonal of ``C`` (B, H) for the diagonal kinds; ``d`` is the drift step."""
        if self.kind == "diagonal":
            return (self.g_add + self.g_mult * h) ** 2
        return self.g_add**2 + (self.g_mult * d * f) ** 2

    def add_to(self, S: Tensor, h: Tensor, f: Tensor, d: Tensor) -> Tensor:
        """``S + C`` for a batch of matrices ``S`` (B, H, H); updates a fresh ``S`` in place."""
        if self.kind == "scalar":
            hv = self.g_mult * h
            S = torch.baddbmm(S, hv.unsqueeze(-1), hv.unsqueeze(-2))
            S.diagonal(dim1=-2, dim2=-1).add_(self.g_add**2)
            return S
        S.diagonal(dim1=-2, dim2=-1).add_(self.diagonal(h, f, d))
        return S

    def trace_with(self, P: Tensor, h: Tensor, f: Tensor, d: Tensor) -> Tensor:
        """``tr(C P)`` (B,) for a batch of matrices ``P`` (B, H, H)."""
        if self.kind == "scalar":
            hv = self.g_mult * h
            quad = (hv.unsqueeze(-2) @ P @ hv.unsqueeze(-1)).reshape(h.shape[0])
            return self.g_add**2 * torch.diagonal(P, dim1=-2, dim2=-1).sum(-1) + quad
        return (self.diagonal(h, f, d) * torch.diagonal(P, dim1=-2, dim2=-1)).sum(-1)

    def dense(self, h: Tensor, f: Tensor, d: Tensor) -> Tensor:
        """``C`` as a batch of dense matrices (B, H, H)."""
        if self.kind == "scalar":
            hv = self.g_mult * h
            eye = torch.eye(h.shape[-1], dtype=h.dtype, device=h.device)
            return self.g_add**2 * eye + hv.unsqueeze(-1) * hv.unsqueeze(-2)
        return torch.diag_embed(self.diagonal(h, f, d))


def _apply_noise(kernel: StepKernel, h: Tensor, f: Tensor, eta: Tensor) -> Tensor:
    r""":math:`G(h)\eta` of the kernel (its :math:`\epsilon` included) at states ``h``."""
    H = kernel.H
    if kernel.mode == "paper_code":
        return kernel.g_add * eta[..., :H] + kernel.g_mult * kernel.s * f * eta[..., H:]
    if kernel.structure == "diagonal":
        return (kernel.g_add + kernel.g_mult * h) * eta
    return kernel.g_add * eta[..., :H] + kernel.g_mult * h * eta[..., H:]


def _apply_noise_derivative(kernel: StepKernel, h1: Tensor, jf_h1: Tensor, eta: Tensor) -> Tensor:
    r""":math:`\partial_hG[h_1]\,\eta`; ``jf_h1`` is :math:`\partial_hf\,h_1`."""
    H = kernel.H
    if kernel.mode == "paper_code":
        return kernel.g_mult * kernel.s * jf_h1 * eta[..., H:]
    if kernel.structure == "diagonal":
        return kernel.g_mult * h1 * eta
    return kernel.g_mult * h1 * eta[..., H:]


def _tanh_second(act: Tensor) -> Tensor:
    r""":math:`\tanh''(z) = -2\tanh(z)(1-\tanh^2(z))` from ``act = tanh(z)``."""
    return -2.0 * act * (1.0 - act * act)


def _curvature_diag(W: Tensor, S: Tensor) -> Tensor:
    r""":math:`(WSW^\top)_{ll}` for symmetric ``S`` (B, H, H) -> (B, H): one GEMM."""
    return ((S @ W.mT) * W.mT).sum(-2)


# ------------------------------------------------------------------------ clean passes
def _steps(kernel: StepKernel, xs: Tensor):
    """Input projections ``U x_k + b`` one step at a time (chunked, ``unbind``)."""
    for chunk in xs.split(_CHUNK, dim=1):
        yield from kernel.project(chunk).unbind(1)


def _reference_pass(kernel: StepKernel, xs: Tensor, h0: Tensor):
    """The reference chain (eta = 0): final state and the per-step (h, tanh z, f)."""
    h = h0
    hs, acts, fs = [], [], []
    for ux in _steps(kernel, xs):
        f, act = kernel.drift(h, ux)
        hs.append(h)
        acts.append(act)
        fs.append(f)
        h = torch.addcmul(h, kernel.s_mean, f)  # == kernel.advance(h, ux, None)[0]
    return h, hs, acts, fs


def _final_state(kernel: StepKernel, xs: Tensor, h0: Tensor) -> Tensor:
    h = h0
    for ux in _steps(kernel, xs):
        h = kernel.advance(h, ux, None)[0]
    return h


# --------------------------------------------------------------- the three exact methods
class _Exact(NamedTuple):
    Q: Tensor
    R: Tensor
    ref_loss: Tensor
    per_Q: Tensor | None
    per_R: Tensor | None
    Sigma: Tensor | None
    m: Tensor | None


def _forward(kernel, unit, loss, params, xs, h0, labels):
    """Forward covariance recursion: O(M H^3) per example, memory O(H^2)."""
    B, H = h0.shape
    W, s, d = params.W, kernel.s_mean, kernel.s
    h = h0
    Sigma = h0.new_zeros(B, H, H)
    m = h0.new_zeros(B, H)
    for ux in _steps(kernel, xs):
        f, act = kernel.drift(h, ux)
        J = kernel.jacobian(h, act, None)
        v = _tanh_second(act) * _curvature_diag(W, Sigma)
        m = (J @ m.unsqueeze(-1)).squeeze(-1) + 0.5 * s * v
        # Every use of Sigma (tr(H_l Sigma), diag(W Sigma W^T)) sees only its symmetric
        # part, and the asymmetric rounding part is transported linearly like Sigma
        # itself, so no per-step symmetrization is needed.
        Sigma = unit.add_to(J @ Sigma @ J.mT, h, f, d)
        h = h + s * f
    ref_loss, g, Hl = loss.derivatives(params, h, labels)
    R = (Hl * Sigma).sum((-2, -1))
    Q = 2.0 * (g * m).sum(-1)
    return _Exact(Q, R, ref_loss, None, None, sym(Sigma), m)


def _adjoint(kernel, unit, loss, params, xs, h0, labels):
    r"""Adjoint pass with per-step attribution to the noise injected at each step.

    Backward from :math:`P_M = H_\ell`, :math:`\lambda_M = g`, :math:`S_M = 0`:
    :math:`P_k = \tilde J_k^\top P_{k+1}\tilde J_k`,
    :math:`S_k = \tilde J_k^\top S_{k+1}\tilde J_k + W^\top\mathrm{diag}(\lambda_{k+1}\odot
    s\odot\tanh''(z_k))W`, :math:`\lambda_k = \tilde J_k^\top\lambda_{k+1}`; step ``k``
    contributes :math:`\mathrm{tr}(C_kP_{k+1})` to R and :math:`\mathrm{tr}(C_kS_{k+1})` to Q.
    """
    W, s, d = params.W, kernel.s_mean, kernel.s
    hM, hs, acts, fs = _reference_pass(kernel, xs, h0)
    ref_loss, g, Hl = loss.derivatives(params, hM, labels)
    P, T, lam = Hl, Hl, g  # T = P + S
    per_R, per_Q = [], []
    for h, act, f in zip(reversed(hs), reversed(acts), reversed(fs), strict=True):
        r_k = unit.trace_with(P, h, f, d)
        per_R.append(r_k)
        per_Q.append(unit.trace_with(T, h, f, d) - r_k)
        J = kernel.jacobian(h, act, None)
        c = lam * s * _tanh_second(act)
        N = W.mT @ (c.unsqueeze(-1) * W)
        P = J.mT @ P @ J
        T = torch.baddbmm(N, J.mT, T @ J)
        lam = (J.mT @ lam.unsqueeze(-1)).squeeze(-1)
    per_R = torch.stack(per_R[::-1], dim=1)
    per_Q = torch.stack(per_Q[::-1], dim=1)
    return _Exact(per_Q.sum(1), per_R.sum(1), ref_loss, per_Q, per_R, None, None)


def _naive(kernel, unit, loss, params, xs, h0, labels):
    r"""Explicit product-of-Jacobians sums of docs/theory/regularizer.md, O(M^2 H^3): tests only.

    Forms every :math:`\hat\Phi_{k,j+1}` by repeated products and evaluates
    :math:`\hat\Sigma_k = \sum_{j<k}\hat\Phi_{k,j+1}C_j\hat\Phi_{k,j+1}^\top`,
    :math:`\hat R = \sum_k\mathrm{tr}(C_k\hat\Phi_{M,k+1}^\top H_\ell\hat\Phi_{M,k+1})`,
    :math:`\hat Q = g^\top\sum_k\hat\Phi_{M,k+1}(s\odot\hat v_k)`.
    """
    W, s, d = params.W, kernel.s_mean, kernel.s
    hM, hs, acts, fs = _reference_pass(kernel, xs, h0)
    M = len(hs)
    B, H = h0.shape
    ref_loss, g, Hl = loss.derivatives(params, hM, labels)
    Js = [kernel.jacobian(h, a, None) for h, a in zip(hs, acts, strict=True)]
    Cs = [unit.dense(h, f, d) for h, f in zip(hs, fs, strict=True)]
    eye = torch.eye(H, dtype=h0.dtype, device=h0.device).expand(B, H, H)
    # Phi_{M,k+1} for every k, each from scratch.
    phis = []
    for k in range(M):
        Phi = eye
        for j in range(M - 1, k, -1):
            Phi = Phi @ Js[j]
        phis.append(Phi)
    lams = [(Phi.mT @ g.unsqueeze(-1)).squeeze(-1) for Phi in phis]  # lambda_{k+1}
    per_R = torch.stack(
        [((Phi.mT @ Hl @ Phi) * C).sum((-2, -1)) for Phi, C in zip(phis, Cs, strict=True)], 1
    )
    per_Q = [torch.zeros_like(g[:, 0]) for _ in range(M)]
    Q = torch.zeros_like(g[:, 0])
    for k in range(1, M):  # Sigma_0 = 0 contributes nothing
        nk = lams[k] * s * _tanh_second(acts[k])  # N_k = W^T diag(nk) W
        Nk = W.mT @ (nk.unsqueeze(-1) * W)
        Phi = eye  # Phi_{k, j+1}
        Sigma = torch.zeros_like(Nk)
        for j in range(k - 1, -1, -1):
            term = Phi @ Cs[j] @ Phi.mT
            Sigma = Sigma + term
            per_Q[j] = per_Q[j] + (Nk * term).sum((-2, -1))
            Phi = Phi @ Js[j]
        v = _tanh_second(acts[k]) * _curvature_diag(W, Sigma)
        Q = Q + (lams[k] * s * v).sum(-1)
    per_Q = torch.stack(per_Q, dim=1)
    return _Exact(Q, per_R.sum(1), ref_loss, per_Q, per_R, None, None)


#: Exact algorithms for :func:`explicit_regularizer`.
METHODS: dict[str, Callable] = {"forward": _forward, "adjoint": _adjoint, "naive": _naive}


# ----------------------------------------------------------------------- public: exact
def _prepare(params, xs, labels, noise, h0, loss):
    params = check_params(params)
    noise = check_noise(noise)
    if noise is None:
        raise ValueError("noise: expected a NoiseSpec (the noise whose effect is wanted), got None")
    xs = check_xs(params, xs)
    B = xs.shape[0]
    h0 = xs.new_zeros(B, params.hidden_size) if h0 is None else check_state(params, h0, "h0", B)
    loss_fn = _resolve_loss(loss)
    labels = loss_fn.check(params, labels, B)
    return params, xs, labels, noise, h0, loss_fn


def _check_result(name: str, allow_nonfinite: bool, *tensors: Tensor) -> None:
    if allow_nonfinite or any(is_transformed(t) for t in tensors):
        return
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        raise NonFiniteStateError(
            f"{name}: the result is not finite (NaN or inf): the reference chain or the "
            "covariance recursion overflowed. Reduce dt, the weights or the number of "
            "steps, or pass allow_nonfinite=True to get the result."
        )


def explicit_regularizer(
    params: NRNNParams,
    xs: Tensor,
    labels: Tensor,
    noise: NoiseSpec,
    *,
    h0: Tensor | None = None,
    loss: str | LossFn = "cross_entropy",
    method: Method = "forward",
    allow_nonfinite: bool = False,
) -> ExplicitRegularizer:
    r"""Exact small-noise regularizer :math:`\hat Q, \hat R` per example.

    .. math:: \mathbb E\,\ell_{\rm train} - \ell_{\rm inference}
              = \underbrace{\ell(\bar h^{(s)}_M) - \ell(\bar h^{(d)}_M)}_{\text{mean shift}}
              + \tfrac{\epsilon^2}{2}(\hat Q + \hat R) + O(\epsilon^4),

    with :math:`\hat R = \mathrm{tr}(H_\ell\hat\Sigma_M)`, :math:`\hat Q = 2g^\top m_M`
    (module docstring; docs/theory/regularizer.md). The mean shift is zero for ``"sde"``.

    Parameters
    ----------
    params : NRNNParams
        The model; every output is differentiable in its tensors.
    xs : Tensor, shape (B, M, D)
        Input sequences.
    labels : Tensor, shape (B,)
        Class indices for ``"cross_entropy"``; for a callable loss, any tensor with
        leading dimension B that the callable accepts.
    noise : NoiseSpec
        The injected noise and its convention (``"sde"``, either structure, or
        ``"paper_code"``). Its levels fix :math:`C_k`; its ``epsilon`` only scales the
        predicted gap (``"sde"``) or also sets the reference step (``"paper_code"``).
    h0 : Tensor, shape (B, H), optional
        Initial state (default zeros).
    loss : {"cross_entropy"} or callable
        The readout loss. A callable ``loss(logits (B, C), labels) -> (B,)`` must
        return per-example losses and work under ``torch.func`` (its gradient and
        Hessian in ``h`` are taken with ``vmap(grad)``/``vmap(jacrev(jacrev))``).
    method : {"forward", "adjoint", "naive"}
        ``"forward"`` (default): the covariance recursion, O(M H^3) per example and
        memory O(H^2) per example (O(M H^2) when differentiated). ``"adjoint"``: the
        same cost plus O(M H) memory for the clean trajectory, and per-step
        attribution ``per_step_R``/``per_step_Q``. ``"naive"``: the explicit
        product-of-Jacobians sums, O(M^2 H^3), for testing.
    allow_nonfinite : bool
        Return non-finite values instead of raising.

    Returns
    -------
    ExplicitRegularizer
        ``Q``, ``R``, ``total``, ``noise_gap``, ``mean_shift``, ``predicted_gap``,
        ``reference_loss``, ``clean_loss`` (each (B,)), ``per_step_Q``/``per_step_R``
        (B, M) (adjoint and naive methods), ``covariance`` :math:`\hat\Sigma_M` (B, H, H)
        and ``mean_correction`` :math:`m_M` (B, H) (forward method), and the noise record.

    Raises
    ------
    TypeError, ValueError
        On bad inputs (the message names the argument), an unknown ``loss`` or
        ``method``, or a callable loss that does not return shape (B,).
    NonFiniteStateError
        If the recursion overflows (unless ``allow_nonfinite``).

    Notes
    -----
    ``per_step_R[:, k]`` and ``per_step_Q[:, k]`` attribute the regularizer to the
    noise injected at step ``k``: their sum is
    :math:`\mathrm{tr}\,\nabla^2_{u_k}\mathcal G(0)`, the diagonal block of the
    noise-space Hessian (the adjoint :math:`S_k` recursion is derived from
    docs/theory/regularizer.md's :math:`\hat Q = \sum_k\lambda_{k+1}^\top(s\odot\hat v_k)`
    by writing each term as :math:`\mathrm{tr}(N_k\hat\Sigma_k)` and transporting it
    back to the noise).
    No :math:`\hat\Phi` product is formed except by ``method="naive"``.

    :math:`\hat R \ge 0` for cross-entropy (:math:`H_\ell` and :math:`\hat\Sigma_M` are
    PSD), but :math:`\hat Q` has either sign, so on some examples of a trained model the
    predicted gap is negative (noise lowers their loss) or near zero. The expansion is
    asymptotic: check it with :func:`estimate_noise_gap`, whose ``residual`` shrinks
    like :math:`\epsilon^4`.

    References
    ----------
    .. [1] docs/theory/regularizer.md (recursions, adjoint, noise-space identity),
       docs/theory/oracles.md V1-V3.

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(2), W=torch.tensor([[0.5, 1.0], [-1.0, 0.5]]),
    ...                U=torch.tensor([[1.0], [-0.5]]), b=torch.zeros(2), V=torch.eye(2),
    ...                c=torch.zeros(2), dt=0.1)
    >>> r = explicit_regularizer(p, torch.ones(3, 5, 1), torch.tensor([0, 1, 0]),
    ...                          NoiseSpec(epsilon=0.1, sigma1=1.0))
    >>> r.R.shape, round(float(r.R[0]), 4), round(float(r.Q[0]), 5)
    (torch.Size([3]), 0.1787, 0.05175)
    """
    params, xs, labels, noise, h0, loss_fn = _prepare(params, xs, labels, noise, h0, loss)
    check_choice("method", method, METHODS)
    kernel = StepKernel(params, noise)
    unit = _UnitNoise.of(params, noise)
    Q, R, ref_loss, per_Q, per_R, Sigma, m = METHODS[method](
        kernel, unit, loss_fn, params, xs, h0, labels
    )
    if kernel.mode == "paper_code" and noise.multiplicative > 0:
        clean_loss = loss_fn.value(params, _final_state(StepKernel(params, None), xs, h0), labels)
    else:
        clean_loss = ref_loss
    eps2 = noise.epsilon**2
    total = Q + R
    noise_gap = 0.5 * eps2 * total
    mean_shift = ref_loss - clean_loss
    _check_result("explicit_regularizer", allow_nonfinite, Q, R, ref_loss, clean_loss)
    return ExplicitRegularizer(
        Q=Q,
        R=R,
        total=total,
        noise_gap=noise_gap,
        mean_shift=mean_shift,
        predicted_gap=mean_shift + noise_gap,
        reference_loss=ref_loss,
        clean_loss=clean_loss,
        per_step_Q=per_Q,
        per_step_R=per_R,
        covariance=Sigma,
        mean_correction=m,
        epsilon=noise.epsilon,
        noise=noise,
        convention=noise.convention,
        structure=noise.structure,
        method=method,
        loss=loss_fn.name,
    )


def regularizer_penalty(
    params: NRNNParams,
    xs: Tensor,
    labels: Tensor,
    noise: NoiseSpec,
    *,
    weight: float = 1.0,
    h0: Tensor | None = None,
    loss: str | LossFn = "cross_entropy",
) -> Tensor:
    r"""Batch-mean predicted train-minus-inference gap, a differentiable scalar penalty.

    .. math:: \mathrm{penalty} = w\cdot\frac1B\sum_b\Big[\ell(\bar h^{(s)}_{M,b}) -
              \ell(\bar h^{(d)}_{M,b}) + \tfrac{\epsilon^2}{2}(\hat Q_b + \hat R_b)\Big]

    Adding it to the clean loss gives the second-order approximation of the loss a
    model trained *with* ``noise`` minimizes, so a noise-free model can be trained
    with the regularizer instead (docs/theory/regularizer.md); for ``"sde"`` the mean-shift term is
    zero. Bind ``noise``/``weight`` with :func:`functools.partial` to get a
    ``(params, xs, labels) -> Tensor`` penalty.

    Parameters
    ----------
    params : NRNNParams
        The model; the penalty is differentiable in its tensors.
    xs : Tensor, shape (B, M, D)
        Input sequences.
    labels : Tensor, shape (B,)
    noise : NoiseSpec
        The noise whose effect the penalty stands for, in either convention.
    weight : float
        The factor :math:`w` (default 1).
    h0 : Tensor, shape (B, H), optional
        Initial state (default zeros).
    loss : {"cross_entropy"} or callable
        As in :func:`explicit_regularizer`.

    Returns
    -------
    Tensor
        A 0-dim tensor.

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(2), W=torch.tensor([[0.5, 1.0], [-1.0, 0.5]]),
    ...                U=torch.tensor([[1.0], [-0.5]]), b=torch.zeros(2), V=torch.eye(2),
    ...                c=torch.zeros(2), dt=0.1)
    >>> pen = regularizer_penalty(p, torch.ones(3, 5, 1), torch.tensor([0, 1, 0]),
    ...                           NoiseSpec(epsilon=0.1, sigma1=1.0))
    >>> pen.shape, round(float(pen), 6)
    (torch.Size([]), 0.000916)
    """
    weight = check_real("weight", weight)  # a NaN weight would silently poison the loss
    if isinstance(xs, torch.Tensor) and xs.ndim == 3 and xs.shape[0] == 0:
        raise ValueError("xs: expected at least one example (B >= 1), got an empty batch")
    r = explicit_regularizer(params, xs, labels, noise, h0=h0, loss=loss)
    return weight * r.predicted_gap.mean()


# ------------------------------------------------------------------ public: Monte Carlo
def _pathwise(kernel, params, hs, acts, fs, eta, nc):
    r"""Pathwise :math:`h^{(1)}_M, h^{(2)}_M` for ``nc`` pairs per example.

    Theory: docs/theory/regularizer.md.

    ``eta`` is (nc * B, M, r) with sample ``i * B + b`` belonging to example ``b``.
    """
    B, H = hs[0].shape
    s = kernel.s_mean
    h1 = hs[0].new_zeros(nc, B, H)
    h2 = torch.zeros_like(h1)
    etas = eta.reshape(nc, B, *eta.shape[1:]).unbind(2)

    def jf(x, dact):  # d f / d h applied to x (nc, B, H); also returns W x
        y = x @ kernel.RT
        if kernel.has_linear:
            Wx = y[..., H:]
            return y[..., :H] + dact * Wx, Wx
        return dact * y, y

    for h, act, f, e in zip(hs, acts, fs, etas, strict=True):
        dact = 1.0 - act * act
        jf1, Wh1 = jf(h1, dact)
        jf2, _ = jf(h2, dact)
        h2 = (
            h2
            + s * jf2
            + 0.5 * s * _tanh_second(act) * Wh1 * Wh1
            + _apply_noise_derivative(kernel, h1, jf1, e)
        )
        h1 = h1 + s * jf1 + _apply_noise(kernel, h, f, e)
    return h1, h2


class _Moments:
    """Running sums of per-example and batch-mean samples (float64)."""

    def __init__(self, B: int, device) -> None:
        z = torch.zeros(B, dtype=torch.float64, device=device)
        self.s1, self.s2 = z.clone(), z.clone()
        self.m1 = self.m2 = 0.0
        self.n = 0

    def add(self, y: Tensor) -> None:  # y: (nc, B)
        y = y.detach().to(torch.float64)
        self.s1 += y.sum(0)
        self.s2 += (y * y).sum(0)
        bm = y.mean(1)
        self.m1 += float(bm.sum())
        self.m2 += float((bm * bm).sum())
        self.n += y.shape[0]

    def estimate(self):
        n = self.n
        mean = self.s1 / n
        var = ((self.s2 - n * mean * mean) / (n - 1)).clamp_min(0.0)
        bmean = self.m1 / n
        bvar = max((self.m2 - n * bmean * bmean) / (n - 1), 0.0)
        return mean, (var / n).sqrt(), bmean, math.sqrt(bvar / n)


def estimate_noise_gap(
    params: NRNNParams,
    xs: Tensor,
    labels: Tensor,
    noise: NoiseSpec,
    *,
    n_pairs: int,
    generator: torch.Generator | None = None,
    control_variate: bool = True,
    h0: Tensor | None = None,
    loss: str | LossFn = "cross_entropy",
) -> NoiseGapEstimate:
    r"""Antithetic Monte Carlo estimate of the noisy-minus-clean loss gap.

    Each pair shares one noise path :math:`\eta` (from :func:`~nrnn_theory.sample_noise`)
    between :math:`+\eta` and :math:`-\eta` rollouts:

    .. math:: Y = \tfrac12\big[\ell(h_M(\eta)) + \ell(h_M(-\eta))\big] - \ell(\bar h_M),
              \qquad Z = Y - \epsilon^2\big(g^\top h^{(2)}_M
              + \tfrac12 h^{(1)\top}_MH_\ell h^{(1)}_M\big),

    where :math:`\bar h` is the reference chain and :math:`h^{(1)}, h^{(2)}` follow the
    pathwise recursions of docs/theory/regularizer.md on the same :math:`\eta`. The control variate
    has mean exactly :math:`\tfrac{\epsilon^2}{2}(\hat Q + \hat R)`, so
    :math:`\bar Z + \tfrac{\epsilon^2}2(\hat Q + \hat R)` is unbiased for the gap and
    :math:`Z = O(\epsilon^4)` pathwise. For ``"paper_code"`` the exact mean shift
    :math:`\ell(\bar h^{(s)}_M) - \ell(\bar h^{(d)}_M)` is added, so ``gap`` is the
    train-minus-inference gap.

    Parameters
    ----------
    params, xs, labels, noise, h0, loss
        As for :func:`explicit_regularizer`.
    n_pairs : int
        Antithetic pairs per example (>= 2). Standard errors shrink like
        ``n_pairs ** -0.5``.
    generator : torch.Generator, optional
        Source of the noise; ``None`` means fresh randomness. The same generator state
        gives the same paths, so a sweep over ``noise.scaled(eps)`` with equally seeded
        generators uses common random numbers.
    control_variate : bool
        Use :math:`Z` (default) or plain :math:`Y` for ``gap``/``stderr``; the plain
        estimate is reported in ``plain_gap``/``plain_stderr`` either way.

    Returns
    -------
    NoiseGapEstimate
        Per-example ``gap``, ``stderr``, ``predicted`` (B,) and batch-mean ``mean``,
        ``mean_stderr``, ``predicted_mean``; ``residual = gap - predicted`` estimates
        the :math:`O(\epsilon^4)` remainder.

    Notes
    -----
    Costs two rollouts per pair (plus two linear recursions with the control
    variate). Pairs are processed in chunks so that at most about 4M noise values are
    held at once. Not differentiable (estimates are detached).

    References
    ----------
    .. [1] docs/theory/regularizer.md ("Monte Carlo"), docs/theory/oracles.md V1.

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(2), W=torch.tensor([[0.5, 1.0], [-1.0, 0.5]]),
    ...                U=torch.tensor([[1.0], [-0.5]]), b=torch.zeros(2), V=torch.eye(2),
    ...                c=torch.zeros(2), dt=0.1)
    >>> est = estimate_noise_gap(p, torch.ones(3, 5, 1), torch.tensor([0, 1, 0]),
    ...     NoiseSpec(epsilon=0.1, sigma1=1.0), n_pairs=200,
    ...     generator=torch.Generator().manual_seed(0))
    >>> bool((est.residual.abs() <= 4 * est.stderr + 1e-6).all())
    True
    """
    params, xs, labels, noise, h0, loss_fn = _prepare(params, xs, labels, noise, h0, loss)
    n_pairs = check_positive_int("n_pairs", n_pairs, minimum=2)
    B, M, _ = xs.shape
    if B == 0:
        raise ValueError("xs: expected at least one example (B >= 1), got an empty batch")
    H = params.hidden_size
    with torch.no_grad():
        exact = explicit_regularizer(params, xs, labels, noise, h0=h0, loss=loss)
        predicted = exact.predicted_gap.detach()
        kernel = StepKernel(params, noise)
        plain = _Moments(B, xs.device)
        cv = _Moments(B, xs.device)
        if kernel.mode == "clean":  # no noise: the gap is exactly zero
            zero = torch.zeros(B, dtype=torch.float64, device=xs.device)
            for acc in (plain, cv):
                acc.add(zero.expand(n_pairs, B))
        else:
            hM, hs, acts, fs = _reference_pass(kernel, xs, h0)
            ref_loss, g, Hl = loss_fn.derivatives(params, hM, labels)
            r = kernel.r
            chunk = max(1, min(n_pairs, _MC_BUDGET // (B * M * r)))
            done = 0
            while done < n_pairs:
                nc = min(chunk, n_pairs - done)
                eta = sample_noise(
                    noise, nc * B, M, H, dtype=xs.dtype, device=xs.device, generator=generator
                )
                xs_rep = xs.repeat(nc, 1, 1)
                h0_rep = h0.repeat(nc, 1)
                lab_rep = labels.repeat(nc, *([1] * (labels.ndim - 1)))
                lp = loss_fn.value(
                    params, rollout(params, xs_rep, noise=noise, h0=h0_rep, eta=eta), lab_rep
                )
                lm = loss_fn.value(
                    params, rollout(params, xs_rep, noise=noise, h0=h0_rep, eta=-eta), lab_rep
                )
                y = (0.5 * (lp + lm)).reshape(nc, B) - ref_loss
                plain.add(y)
                if control_variate:
                    h1, h2 = _pathwise(kernel, params, hs, acts, fs, eta, nc)
                    quad = ((h1.unsqueeze(-2) @ Hl).squeeze(-2) * h1).sum(-1)
                    cv.add(y - ((g * h2).sum(-1) + 0.5 * quad))
                done += nc
    shift = exact.mean_shift.detach().to(torch.float64)
    p_mean, p_se, p_bmean, p_bse = plain.estimate()
    p_mean = p_mean + shift
    p_bmean = p_bmean + float(shift.mean())
    if control_variate:
        z_mean, z_se, z_bmean, z_bse = cv.estimate()
        noise_gap = exact.noise_gap.detach().to(torch.float64)
        gap = z_mean + noise_gap + shift
        mean = z_bmean + float((noise_gap + shift).mean())
        se, mean_se = z_se, z_bse
    else:
        gap, se, mean, mean_se = p_mean, p_se, p_bmean, p_bse
    dtype = xs.dtype
    return NoiseGapEstimate(
        gap=gap.to(dtype),
        stderr=se.to(dtype),
        predicted=predicted,
        plain_gap=p_mean.to(dtype),
        plain_stderr=p_se.to(dtype),
        mean=float(mean),
        mean_stderr=float(mean_se),
        predicted_mean=float(predicted.to(torch.float64).mean()),
        plain_mean=float(p_bmean),
        plain_mean_stderr=float(p_bse),
        n_pairs=n_pairs,
        epsilon=noise.epsilon,
        noise=noise,
        convention=noise.convention,
        control_variate=control_variate,
        loss=loss_fn.name,
    )


# ---------------------------------- public: continuous time (docs/theory/regularizer.md)
def _moment_rhs(params: NRNNParams, unit: _UnitNoise, ux: Tensor):
    r"""Moment-ODE right-hand side (docs/theory/regularizer.md) for a fixed input projection.

    :math:`\dot{\bar h} = f`, :math:`\dot\Sigma = J\Sigma + \Sigma J^\top + \Gamma`,
    :math:`\dot m = Jm + \tfrac12 v`, with :math:`J = \alpha A + \mathrm{diag}(\tanh'(z))W`.
    """
    A, W, alpha = params.A, params.W, params.alpha

    def rhs(h, S, m):
        act = torch.tanh(h @ W.mT + ux)
        f = act if alpha == 0.0 else alpha * (h @ A.mT) + act
        K = (1.0 - act * act).unsqueeze(-1) * W
        if alpha != 0.0:
            K = K + alpha * A
        KS = K @ S
        dS = unit.add_to(KS + KS.mT, h, f, f)  # Gamma: unit "sde" levels per unit time
        dm = (K @ m.unsqueeze(-1)).squeeze(-1) + 0.5 * _tanh_second(act) * _curvature_diag(W, S)
        return f, dS, dm

    return rhs


def _rk4(params, unit, xs, h0, n_substeps):
    B, H = h0.shape
    h, S, m = h0, h0.new_zeros(B, H, H), h0.new_zeros(B, H)
    tau = params.dt / n_substeps
    ker = StepKernel(params, None)
    for ux in _steps(ker, xs):
        rhs = _moment_rhs(params, unit, ux)
        for _ in range(n_substeps):
            k1 = rhs(h, S, m)
            k2 = rhs(*(y + 0.5 * tau * k for y, k in zip((h, S, m), k1, strict=True)))
            k3 = rhs(*(y + 0.5 * tau * k for y, k in zip((h, S, m), k2, strict=True)))
            k4 = rhs(*(y + tau * k for y, k in zip((h, S, m), k3, strict=True)))
            h, S, m = (
                y + tau / 6.0 * (a + 2.0 * b + 2.0 * c + d)
                for y, a, b, c, d in zip((h, S, m), k1, k2, k3, k4, strict=True)
            )
            S = sym(S)
    return h, S, m


def _solve_ivp(params, unit, xs, h0, n_substeps):
    """scipy ``solve_ivp`` (DOP853, rtol 1e-11) per input interval, float64 numpy."""
    from scipy.integrate import solve_ivp

    p64 = params.detach().to(torch.float64)
    B, H = h0.shape
    ker = StepKernel(p64, None)
    uxs = ker.project(xs.detach().to(torch.float64))
    y = np.concatenate(
        [h0.detach().to(torch.float64).cpu().numpy(), np.zeros((B, H * H)), np.zeros((B, H))],
        axis=1,
    ).ravel()

    def unpack(v):
        v = torch.from_numpy(v.reshape(B, -1))
        return v[:, :H], v[:, H : H + H * H].reshape(B, H, H), v[:, H + H * H :]

    for ux in uxs.cpu().unbind(1):
        rhs = _moment_rhs(p64, unit, ux)

        def fun(_t, v, rhs=rhs):
            dh, dS, dm = rhs(*unpack(v))
            return torch.cat([dh, dS.reshape(B, -1), dm], dim=1).numpy().ravel()

        sol = solve_ivp(fun, (0.0, params.dt), y, method="DOP853", rtol=1e-11, atol=1e-13)
        if not sol.success:  # pragma: no cover - scipy failure on a stiff or overflowing system
            raise RuntimeError(f"continuous_regularizer: solve_ivp failed: {sol.message}")
        y = sol.y[:, -1]
    h, S, m = unpack(y)
    return (t.to(dtype=h0.dtype, device=h0.device) for t in (h, S, m))


#: Integrators of the moment ODEs for :func:`continuous_regularizer`.
CONTINUOUS_SOLVERS: dict[str, Callable] = {"rk4": _rk4, "solve_ivp": _solve_ivp}


def continuous_regularizer(
    params: NRNNParams,
    xs: Tensor,
    labels: Tensor,
    noise: NoiseSpec,
    *,
    h0: Tensor | None = None,
    loss: str | LossFn = "cross_entropy",
    solver: Solver = "rk4",
    n_substeps: int = 4,
) -> ContinuousRegularizer:
    r"""Continuous-time regularizer :math:`Q, R` of docs/theory/regularizer.md from the moment ODEs.

    .. math:: \mathbb E\,\ell(h^\epsilon_T) = \ell(\bar h_T) + \tfrac{\epsilon^2}{2}[Q + R]
              + O(\epsilon^4),\qquad R = \mathrm{tr}(H_\ell\Sigma_T),\quad Q = 2g^\top m_T,

    where :math:`\dot{\bar h} = f(\bar h, x)`, :math:`\dot\Sigma = J\Sigma + \Sigma J^\top
    + \Gamma`, :math:`\dot m = Jm + \tfrac12 v` from zero (docs/theory/regularizer.md),
    with the input held at :math:`x_k` on :math:`[k\Delta t, (k+1)\Delta t)` and
    :math:`T = M\Delta t`.

    Parameters
    ----------
    params, xs, labels, h0, loss
        As for :func:`explicit_regularizer`; ``params.step`` must be None (a uniform
        step defines the SDE's time).
    noise : NoiseSpec
        An ``"sde"`` spec: :math:`\Gamma = \mathrm{diag}((\sigma_1 + \sigma_2\bar h)^2)`
        (diagonal) or :math:`\sigma_1^2I + \sigma_2^2\bar h\bar h^\top` (scalar).
    solver : {"rk4", "solve_ivp"}
        ``"rk4"`` (default): classical RK4 in torch with ``n_substeps`` steps per input
        interval, error :math:`O((\Delta t/n)^4)`, differentiable. ``"solve_ivp"``:
        scipy DOP853 at ``rtol=1e-11`` per interval in float64 numpy; an oracle, not
        differentiable.
    n_substeps : int
        RK4 steps per input interval.

    Returns
    -------
    ContinuousRegularizer

    Raises
    ------
    ValueError
        For a ``"paper_code"`` noise or a per-unit ``params.step``.

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(2), W=torch.tensor([[0.5, 1.0], [-1.0, 0.5]]),
    ...                U=torch.tensor([[1.0], [-0.5]]), b=torch.zeros(2), V=torch.eye(2),
    ...                c=torch.zeros(2), dt=0.1)
    >>> r = continuous_regularizer(p, torch.ones(3, 5, 1), torch.tensor([0, 1, 0]),
    ...                            NoiseSpec(epsilon=0.1, sigma1=1.0))
    >>> round(float(r.R[0]), 4), r.horizon
    (0.1673, 0.5)
    """
    params, xs, labels, noise, h0, loss_fn = _prepare(params, xs, labels, noise, h0, loss)
    if noise.convention != "sde":
        raise ValueError(
            f"noise: expected convention 'sde' (the continuous-time limit is an SDE), got "
            f"{noise.convention!r}; map it with paper_code_to_sde first"
        )
    if params.step is not None:
        raise ValueError(
            "params.step: expected None (a uniform step dt) for the continuous-time "
            "regularizer, got a per-unit step"
        )
    check_choice("solver", solver, CONTINUOUS_SOLVERS)
    n_substeps = check_positive_int("n_substeps", n_substeps)
    unit = _UnitNoise(noise.structure, noise.sigma1, noise.sigma2)  # per unit time
    h, S, m = CONTINUOUS_SOLVERS[solver](params, unit, xs, h0, n_substeps)
    ell, g, Hl = loss_fn.derivatives(params, h, labels)
    R = (Hl * S).sum((-2, -1))
    Q = 2.0 * (g * m).sum(-1)
    _check_result("continuous_regularizer", False, Q, R)
    return ContinuousRegularizer(
        Q=Q,
        R=R,
        total=Q + R,
        noise_gap=0.5 * noise.epsilon**2 * (Q + R),
        loss_value=ell,
        horizon=params.dt * xs.shape[1],
        epsilon=noise.epsilon,
        noise=noise,
        solver=solver,
        n_substeps=n_substeps,
        loss=loss_fn.name,
    )


def regularizer_convergence(
    params: NRNNParams,
    xs: Tensor,
    labels: Tensor,
    noise: NoiseSpec,
    *,
    refinements: tuple[int, ...] = (1, 2, 4, 8, 16),
    h0: Tensor | None = None,
    loss: str | LossFn = "cross_entropy",
    n_substeps: int = 8,
) -> RegularizerConvergence:
    r"""Discrete :math:`(\hat Q, \hat R)` against continuous :math:`(Q, R)` as :math:`\Delta t\to0`.

    For each refinement ``r`` the step becomes :math:`\Delta t/r` and each input is held
    for ``r`` steps, so the horizon :math:`T = M\Delta t` and the piecewise-constant
    input path are fixed; docs/theory/regularizer.md predicts first-order convergence. The
    continuous values come from :func:`continuous_regularizer` (RK4 with
    ``n_substeps`` per original interval, error :math:`O(\Delta t^4)`).

    Parameters
    ----------
    params : NRNNParams
        The model at the coarsest step ``params.dt``; a per-unit ``step`` is not allowed.
    xs : Tensor, shape (B, M, D)
        Input sequences at the coarsest step.
    labels : Tensor, shape (B,)
    noise : NoiseSpec
        An ``"sde"`` noise.
    refinements : tuple of int
        At least two positive step refinement factors (default ``(1, 2, 4, 8, 16)``).
    h0 : Tensor, shape (B, H), optional
        Initial state (default zeros).
    loss : {"cross_entropy"} or callable
        As in :func:`explicit_regularizer`.
    n_substeps : int
        RK4 sub-steps per original interval for the continuous reference.

    Returns
    -------
    RegularizerConvergence
        ``dts`` (L,), per-example ``Q_hat``/``R_hat`` (L, B), ``Q``/``R`` (B,), the
        max-over-examples error of :math:`\hat Q + \hat R` per level (L,) and the fitted
        log-log ``order``.

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(2, dtype=torch.float64), W=torch.eye(2, dtype=torch.float64),
    ...     U=torch.ones(2, 1, dtype=torch.float64), b=torch.zeros(2, dtype=torch.float64),
    ...     V=torch.eye(2, dtype=torch.float64), c=torch.zeros(2, dtype=torch.float64), dt=0.1)
    >>> conv = regularizer_convergence(p, torch.ones(1, 4, 1, dtype=torch.float64),
    ...     torch.tensor([0]), NoiseSpec(sigma1=1.0), refinements=(1, 2, 4))
    >>> round(conv.order, 1)
    1.0
    """
    params, xs, labels, noise, h0, loss_fn = _prepare(params, xs, labels, noise, h0, loss)
    if not isinstance(refinements, tuple | list) or len(refinements) < 2:
        raise ValueError(
            f"refinements: expected at least two refinement factors, got {refinements!r}"
        )
    for r in refinements:
        check_positive_int("refinements", r)
    cont = continuous_regularizer(
        params, xs, labels, noise, h0=h0, loss=loss, n_substeps=n_substeps
    )
    Qh, Rh, dts = [], [], []
    for r in refinements:
        p_r = params.replace(dt=params.dt / r)
        x_r = xs.repeat_interleave(r, dim=1)
        res = explicit_regularizer(p_r, x_r, labels, noise, h0=h0, loss=loss)
        Qh.append(res.Q)
        Rh.append(res.R)
        dts.append(params.dt / r)
    Q_hat, R_hat = torch.stack(Qh), torch.stack(Rh)
    err = ((Q_hat + R_hat) - cont.total).abs().amax(dim=1)
    le = np.log(err.detach().to(torch.float64).cpu().numpy())
    order = float(np.polyfit(np.log(np.asarray(dts)), le, 1)[0])
    return RegularizerConvergence(
        dts=torch.tensor(dts, dtype=xs.dtype),
        Q_hat=Q_hat,
        R_hat=R_hat,
        Q=cont.Q,
        R=cont.R,
        error=err,
        order=order,
        noise=noise,
    )
