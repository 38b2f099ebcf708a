r"""Margins of a classifier: score margins, input-output Jacobians, certified radii.

Implements docs/theory/margins.md (R5). For logits :math:`s(x)` of an input sequence
:math:`x \in \mathbb R^{T\times D}` and a class :math:`y`:

* the **score margin** :math:`o(x) = s_y - \max_{j\ne y}s_j`;
* the **input-output Jacobian** :math:`J(x) = \partial s/\partial x`, shape (C, T*D),
  which for the clean ``"sde"`` model is

  .. math:: \frac{\partial s}{\partial x_k} = V\hat\Phi_{M,k+1}
            \,\mathrm{diag}\big(s\odot\tanh'(z_k)\big)\,U,\qquad
            \hat\Phi_{M,k+1} = \tilde J_{M-1}\cdots\tilde J_{k+1},

  and its spectral norm by power iteration on :math:`JJ^\top` (a C x C matrix)
  with one JVP and one VJP per iteration, never forming :math:`J`;
* the **certified** lower bound on the :math:`\ell_2` input margin: the sound global
  form of docs/theory/margins.md with :math:`\rho \ge \|\tilde J_k\|_2` on every trajectory
  (docs/theory/stability.md (f)), in float64;
* the **local** first-order estimate
  :math:`\min_j (s_y - s_j)/\|\nabla_x(s_y - s_j)\|_2`, **not certified**.

Empirical margins (attacks) are in :mod:`nrnn_theory.attacks`; the test
``certified <= empirical`` is the check of docs/theory/oracles.md V9.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from nrnn_theory._contract import (
    check_choice,
    check_finite,
    check_generator,
    check_linalg_dtype,
    check_params,
    check_positive,
    check_positive_int,
    check_state,
    check_tensor,
)
from nrnn_theory._model import as_model, check_inputs, evaluate, resolve_labels
from nrnn_theory._record import Result
from nrnn_theory._step import StepKernel
from nrnn_theory._types import NRNNParams
from nrnn_theory.attacks import EmpiricalMargin
from nrnn_theory.dynamics import NonFiniteStateError
from nrnn_theory.stability import OneSided, step_norm_terms


__all__ = [
    "JACOBIAN_NORM_METHODS",
    "JacobianNorm",
    "LocalMarginEstimate",
    "MarginCertificate",
    "MarginSummary",
    "certified_margin",
    "format_margin_summary",
    "input_output_jacobian",
    "jacobian_gram",
    "jacobian_spectral_norm",
    "local_margin_estimate",
    "margin_growth",
    "margin_summary",
    "score_margin",
]


# ---------------------------------------------------------------------- records
@dataclass(frozen=True)
class JacobianNorm(Result):
    r"""Spectral norm of the input-output Jacobian :math:`J(x) = \partial s/\partial x`.

    :math:`J(x)` has shape (C, T*D) per example: the logits against the whole input
    sequence. Not a certificate (docs/theory/margins.md): it holds at ``x`` only, and power
    iteration approaches :math:`\|J\|_2` from below.

    Attributes
    ----------
    norm : Tensor, shape (B,)
        :math:`\|J(x)\|_2` (largest singular value), in the inputs' dtype.
    residual : Tensor, shape (B,)
        :math:`\|JJ^\top u - \lambda u\|_2` at the final unit iterate ``u``, with
        :math:`\lambda` its Rayleigh quotient (an eigenvalue of :math:`JJ^\top` lies
        within it; ``inf`` where it exceeds the dtype's range, which happens only once
        :math:`\|J\|_2^2` does). Zero for ``method="gram"``.
    converged : Tensor, shape (B,), bool
        Whether the relative change of :math:`\lambda` fell below ``rtol``.
    n_iter : int
        Iterations run (products with :math:`JJ^\top`); 0 for ``method="gram"``.
    method : str
        ``"power"`` (JVP/VJP power iteration) or ``"gram"`` (exact C x C Gram matrix).
    """

    norm: Tensor
    residual: Tensor
    converged: Tensor
    n_iter: int
    method: str


@dataclass(frozen=True)
class MarginCertificate(Result):
    r"""Certified lower bound on the :math:`\ell_2` input margin, per example
    (docs/theory/margins.md).

    For every class :math:`j \ne y` the score gap :math:`s_y - s_j` is globally
    :math:`L_j`-Lipschitz in the input sequence, with

    .. math:: L_j = \|(e_y - e_j)^\top V\|_2\,\max_i|s_i|\,\|U\|_2
              \Big(\sum_{k<M}\rho^{2(M-1-k)}\Big)^{1/2},

    so no perturbation of :math:`\ell_2` norm below
    :math:`\min_j (s_y - s_j)/L_j` changes the prediction away from ``y``.

    Attributes
    ----------
    radius : Tensor, shape (B,), float64
        The certified radius; 0 where ``y`` is not the predicted class.
    score_margin : Tensor, shape (B,), float64
        :math:`s_y - \max_{j\ne y}s_j` of the clean model, computed in float64.
    labels : Tensor, shape (B,)
        The class ``y`` certified (the prediction unless labels were given).
    runner_up : Tensor, shape (B,)
        The class ``j`` attaining the minimum.
    lipschitz : Tensor, shape (B, C), float64
        :math:`L_j`; ``inf`` at ``j = y``.
    rho : float
        Bound on :math:`\|\tilde J_k\|_2` over every trajectory (docs/theory/stability.md (f)).
    rho_terms : dict
        The candidate forms of :math:`\rho` and the quantities entering them.
    step_max : float
        :math:`\max_i|s_i|` of the drift step (``dt`` or the per-unit ``step``).
    U_norm : float
        :math:`\|U\|_2`.
    n_steps : int
        Sequence length :math:`M`.
    growth : float
        :math:`(\sum_{k<M}\rho^{2(M-1-k)})^{1/2}`.
    method, certified, dtype, assumptions : str, bool, str, str
        What was computed, that it is a certificate, the arithmetic, and the
        assumptions in words.
    """

    radius: Tensor
    score_margin: Tensor
    labels: Tensor
    runner_up: Tensor
    lipschitz: Tensor
    rho: float
    rho_terms: dict[str, float]
    step_max: float
    U_norm: float
    n_steps: int
    growth: float
    method: str
    certified: bool
    dtype: str
    assumptions: str


@dataclass(frozen=True)
class LocalMarginEstimate(Result):
    r"""First-order (linearized) margin at ``x``: **not certified** (docs/theory/margins.md).

    .. math:: \hat\gamma(x) = \min_{j\ne y}\frac{s_y(x) - s_j(x)}
              {\|\nabla_x(s_y - s_j)(x)\|_2}

    It equals the exact :math:`\ell_2` margin for an affine model and is the
    distance of DeepFool's first step; for a nonlinear model it is neither an upper
    nor a lower bound.

    Attributes
    ----------
    estimate : Tensor, shape (B,)
    score_margin : Tensor, shape (B,)
    labels, runner_up : Tensor, shape (B,)
    pair_gradient_norm : Tensor, shape (B, C)
        :math:`\|\nabla_x(s_y - s_j)\|_2`; 0 at ``j = y``.
    certified : bool
        Always False.
    """

    estimate: Tensor
    score_margin: Tensor
    labels: Tensor
    runner_up: Tensor
    pair_gradient_norm: Tensor
    certified: bool


@dataclass(frozen=True)
class MarginSummary(Result):
    r"""Distribution of certified and empirical margins over a test set.

    Attributes
    ----------
    n_examples : int
    certified_quantiles, empirical_quantiles, ratio_quantiles : dict
        Quantiles (``"min"``, ``"q10"``, ``"q25"``, ``"median"``, ``"q75"``, ``"q90"``,
        ``"max"``) and ``"mean"`` of the certified radii, of the empirical distances
        (finite ones) and of empirical / certified (where both are finite and the
        certified radius is positive).
    tight_factor : float
        The factor ``c`` of ``fraction_tight``.
    fraction_tight : float
        Fraction of examples with ``empirical <= c * certified`` and
        ``certified > 0``: the bound is tight within ``c``.
    n_violations : int
        Examples with ``certified > empirical``; a sound certificate gives 0.
    n_unbroken : int
        Examples no attack broke (empirical distance ``inf``).
    n_zero_certified : int
        Examples whose certified radius is 0 (e.g. misclassified).
    norm : str
    """

    n_examples: int
    certified_quantiles: dict[str, float]
    empirical_quantiles: dict[str, float]
    ratio_quantiles: dict[str, float]
    tight_factor: float
    fraction_tight: float
    n_violations: int
    n_unbroken: int
    n_zero_certified: int
    norm: str


# ------------------------------------------------------------------------ score margin
def score_margin(scores: Tensor, labels: Tensor | None = None) -> Tensor:
    r"""Score (logit) margin :math:`o = s_y - \max_{j\ne y}s_j` per example.

    Parameters
    ----------
    scores : Tensor, shape (B, C)
        Logits, ``C >= 2``.
    labels : Tensor, shape (B,), optional
        Classes ``y``; default the predicted classes, which makes the margin
        non-negative. With true labels it is negative on misclassified examples.

    Returns
    -------
    Tensor, shape (B,)

    Examples
    --------
    >>> score_margin(torch.tensor([[2.0, 0.5, 1.0], [0.0, 3.0, 1.0]]))
    tensor([1., 2.])
    >>> score_margin(torch.tensor([[2.0, 0.5, 1.0]]), torch.tensor([2]))
    tensor([-1.])
    """
    scores = check_tensor("scores", scores)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(
            f"scores: expected logits of shape (B, C) with C >= 2, got {tuple(scores.shape)}"
        )
    check_finite("scores", scores)
    y = resolve_labels(labels, scores)
    return _score_margin(scores, y)


def _score_margin(scores: Tensor, y: Tensor) -> Tensor:
    own = scores.gather(1, y.unsqueeze(1)).squeeze(1)
    others = scores.scatter(1, y.unsqueeze(1), float("-inf"))
    return own - others.max(dim=1).values


# ------------------------------------------------------------- analytic linearization
class _Linearization:
    r"""The clean NRNN linearized along one batch of trajectories (docs/theory/margins.md).

    One forward pass stores :math:`s\odot\tanh'(z_k)` (B, T, H). With
    :math:`M_1 = I + \mathrm{diag}(s)\alpha A` the step Jacobian is
    :math:`\tilde J_k = M_1 + \mathrm{diag}(s\odot\tanh'(z_k))W` and the input
    Jacobian :math:`\mathrm{diag}(s\odot\tanh'(z_k))U`, so products with :math:`J`
    (tangent pass) and :math:`J^\top` (adjoint pass) are a few dense products per
    step: O(T B H^2) time each, O(T B H) memory. Each step is three or four tensor
    operations, since at T = 784 and moderate H the cost is mostly per-operation
    overhead.
    """

    _CHUNK = 128  # steps whose input gradients are gathered before a Gram update

    def __init__(self, params: NRNNParams, xs: Tensor, h0: Tensor | None) -> None:
        self.params = params
        k = StepKernel(params, None)
        s = k.s
        self.T = xs.shape[1]
        B, H = xs.shape[0], params.hidden_size
        h = xs.new_zeros(B, H) if h0 is None else h0
        qs = []
        with torch.no_grad():
            for ux in k.project(xs).unbind(1):
                f, act = k.drift(h, ux)
                h = h + s * f
                qs.append(s * (1.0 - act * act))
            self.qs = torch.stack(qs, dim=1)  # (B, T, H): s * tanh'(z_k)
            self.scores = h @ params.V.mT + params.c
            if not bool(torch.isfinite(self.scores).all()):
                raise NonFiniteStateError(self._overflow_message(k, xs, h0))
            eye = torch.eye(H, dtype=xs.dtype, device=xs.device)
            M1 = eye + s.unsqueeze(1) * (params.alpha * params.A) if k.has_linear else eye
            self.R_adj = torch.cat([M1, params.W], dim=0)  # (2H, H): [lam, g] @ R_adj
            self.R_tan = torch.cat([M1.mT, params.W.mT], dim=1)  # (H, 2H): delta @ R_tan

    def _overflow_message(self, k: StepKernel, xs: Tensor, h0: Tensor | None) -> str:
        """Where the clean trajectory first leaves the finite numbers (recomputed)."""
        h = xs.new_zeros(xs.shape[0], self.params.hidden_size) if h0 is None else h0
        for step, ux in enumerate(k.project(xs).unbind(1)):
            f, _ = k.drift(h, ux)
            h = h + k.s * f
            if not bool(torch.isfinite(h).all()):
                return (
                    f"the hidden state became non-finite (NaN or inf) at step {step} of "
                    f"{self.T} (0-based): the model overflows {xs.dtype}; reduce dt or the "
                    "weights, or use float64"
                )
        return (
            f"the scores V h_T + c are not finite although the states are: the readout "
            f"overflows {xs.dtype}; use float64 or smaller weights"
        )

    def jvp(self, v: Tensor) -> Tensor:
        """:math:`J v` for tangents ``v`` (B, T, D); returns (B, C)."""
        p = self.params
        H = p.hidden_size
        uv = (v @ p.U.mT).unbind(1)
        delta = v.new_zeros(v.shape[0], H)
        for qs, u in zip(self.qs.unbind(1), uv, strict=True):
            P = delta @ self.R_tan
            delta = torch.addcmul(P[:, :H], qs, P[:, H:] + u)
        return delta @ p.V.mT

    def _adjoint(self, u: Tensor, sink: Callable[[Tensor], None]) -> None:
        """Adjoint pass for cotangents ``u`` (B, K, C), last step first.

        ``sink(grad_x_k)`` receives the input gradients (B, K, D) for k = T-1, ..., 0.
        """
        p = self.params
        lam = u @ p.V  # (B, K, H): cotangent of h_T
        for qs in reversed(self.qs.unsqueeze(2).unbind(1)):
            g = lam * qs
            sink(g @ p.U)
            lam = torch.cat([lam, g], dim=-1) @ self.R_adj

    def vjp(self, u: Tensor) -> Tensor:
        r""":math:`J^\top u` for cotangents ``u`` (B, K, C); returns (B, K, T, D)."""
        grads: list[Tensor] = []
        self._adjoint(u, grads.append)
        return torch.stack(grads[::-1], dim=2)

    def gram(self) -> Tensor:
        r""":math:`JJ^\top` (B, C, C) by one adjoint pass with C cotangents."""
        B, C = self.scores.shape
        eye = torch.eye(C, dtype=self.scores.dtype, device=self.scores.device)
        G = self.scores.new_zeros(B, C, C)
        chunk: list[Tensor] = []

        def flush() -> None:
            X = torch.cat(chunk, dim=-1)  # (B, C, n * D)
            G.add_(X @ X.mT)
            chunk.clear()

        def sink(gx: Tensor) -> None:
            chunk.append(gx)
            if len(chunk) == self._CHUNK:
                flush()

        self._adjoint(eye.expand(B, C, C), sink)
        if chunk:
            flush()
        return 0.5 * (G + G.mT)


def _require_finite(func: str, what: str, t: Tensor) -> None:
    if not bool(torch.isfinite(t).all()):
        raise NonFiniteStateError(
            f"{func}: {what} is not finite: it overflows {t.dtype} although the states "
            "are finite; "
            + ("use float64 or smaller weights" if t.dtype != torch.float64 else "smaller weights")
        )


def _linearize(params: object, xs: object, h0: object) -> _Linearization:
    params = check_params(params)
    xs = check_inputs(params, xs)
    if h0 is not None:
        h0 = check_state(params, h0, "h0", xs.shape[0])
    return _Linearization(params.detach(), xs.detach(), None if h0 is None else h0.detach())


def input_output_jacobian(params: NRNNParams, xs: Tensor, *, h0: Tensor | None = None) -> Tensor:
    r"""Dense input-output Jacobian of the clean model, shape (B, C, T*D).

    .. math:: J(x)_{c,(k,d)} = \frac{\partial s_c}{\partial x_{k,d}},\qquad
              \frac{\partial s}{\partial x_k} = V\hat\Phi_{M,k+1}
              \mathrm{diag}\big(s\odot\tanh'(z_k)\big)U

    (docs/theory/margins.md), by one analytic adjoint pass with C cotangents along the clean
    trajectory. Flattening is time-major: column ``k * D + d`` is input value
    ``xs[:, k, d]``.

    Parameters
    ----------
    params : NRNNParams
    xs : Tensor, shape (B, T, D)
    h0 : Tensor, shape (B, H), optional

    Returns
    -------
    Tensor, shape (B, C, T*D)
        Not differentiable (computed without autograd).

    Notes
    -----
    Memory O(B C T D): meant for short sequences and tests. For the norm of
    :math:`J` on long sequences use :func:`jacobian_spectral_norm`, and for the
    C x C matrix :math:`JJ^\top` :func:`jacobian_gram`; neither forms :math:`J`.

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(1), W=torch.zeros(1, 1), U=torch.ones(1, 1),
    ...                b=torch.zeros(1), V=torch.ones(2, 1), c=torch.zeros(2), dt=0.5)
    >>> input_output_jacobian(p, torch.zeros(1, 2, 1))
    tensor([[[0.2500, 0.5000],
             [0.2500, 0.5000]]])
    """
    lin = _linearize(params, xs, h0)
    B, C = lin.scores.shape
    eye = torch.eye(C, dtype=lin.scores.dtype, device=lin.scores.device)
    J = lin.vjp(eye.expand(B, C, C)).reshape(B, C, -1)
    _require_finite("input_output_jacobian", "the Jacobian", J)
    return J


def jacobian_gram(params: NRNNParams, xs: Tensor, *, h0: Tensor | None = None) -> Tensor:
    r"""The C x C matrix :math:`J(x)J(x)^\top` of the clean model, shape (B, C, C).

    .. math:: JJ^\top = \sum_{k<M}\frac{\partial s}{\partial x_k}
              \Big(\frac{\partial s}{\partial x_k}\Big)^\top

    accumulated during one adjoint pass with C cotangents: O(T B H^2 C) time and
    O(B H (T + C)) memory, :math:`J` itself is never formed. Its entries give every
    pair norm :math:`\|(e_i - e_j)^\top J\|_2^2 = G_{ii} - 2G_{ij} + G_{jj}`.

    Parameters
    ----------
    params : NRNNParams
    xs : Tensor, shape (B, T, D)
        Input sequences.
    h0 : Tensor, shape (B, H), optional
        Initial state (default zeros).

    Returns
    -------
    Tensor, shape (B, C, C)

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(1), W=torch.zeros(1, 1), U=torch.ones(1, 1),
    ...                b=torch.zeros(1), V=torch.ones(2, 1), c=torch.zeros(2), dt=0.5)
    >>> jacobian_gram(p, torch.zeros(1, 2, 1))
    tensor([[[0.3125, 0.3125],
             [0.3125, 0.3125]]])
    """
    G = _linearize(params, xs, h0).gram()
    _require_finite("jacobian_gram", "J J^T", G)
    return G


# --------------------------------------------------------------------- spectral norm
JacobianNormMethod = Literal["power", "gram"]


def _row_norm(t: Tensor) -> Tensor:
    """Euclidean norm of each example (dim 0) without overflowing the squares: the rows
    are scaled by their largest entry first (``torch.linalg.vector_norm`` squares them
    in the dtype, so a float32 row with entries ~1e20 has norm inf there)."""
    flat = t.flatten(1)
    m = flat.abs().amax(dim=1)
    scaled = flat / m.clamp_min(torch.finfo(t.dtype).tiny).unsqueeze(1)
    return torch.linalg.vector_norm(scaled, dim=1) * m


def _power_iteration(
    jt: Callable[[Tensor], Tensor],
    j: Callable[[Tensor], Tensor],
    u: Tensor,
    max_iter: int,
    rtol: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    r"""Power iteration for :math:`\|J\|_2` on a batch, alternating :math:`J^\top` and
    :math:`J` with the iterate rescaled to unit norm after each (so nothing is squared:
    the norm is found wherever it is representable in the dtype).

    With :math:`v = J^\top u`, :math:`s = \|v\|` and :math:`w = J v/s`, the Rayleigh
    quotient of :math:`JJ^\top` at :math:`u` is :math:`\lambda = s^2` and its residual
    :math:`\|JJ^\top u - \lambda u\| = s\,\|w - s u\|`. Returns ``(sigma, residual,
    converged, n)``; raises ``NonFiniteStateError`` naming the step where a
    product is not finite (the Jacobian overflows the dtype).
    """
    B = u.shape[0]
    tiny = torch.finfo(u.dtype).tiny
    u = u / _row_norm(u).unsqueeze(1)
    sigma = torch.full_like(u[:, 0], float("nan"))
    converged = torch.zeros_like(sigma, dtype=torch.bool)
    residual = torch.full_like(sigma, float("inf"))
    n = 0

    def expand(x: Tensor, like: Tensor) -> Tensor:
        return x.reshape(B, *([1] * (like.dim() - 1)))

    for n in range(1, max_iter + 1):  # noqa: B007 - n is reported
        v = jt(u)
        s = _row_norm(v)
        w = j(v / expand(s.clamp_min(tiny), v))
        t = _row_norm(w)
        if not bool(torch.isfinite(s).all() and torch.isfinite(t).all()):
            what = "J^T u" if not bool(torch.isfinite(s).all()) else "J v"
            raise NonFiniteStateError(
                f"jacobian_spectral_norm: the product {what} is not finite at power-iteration "
                f"step {n}: the Jacobian (or the model's states) overflows {u.dtype}; use "
                "float64 inputs and parameters, or a model whose outputs stay finite"
            )
        residual = s * _row_norm(w - s.unsqueeze(1) * u)  # inf only if s^2 overflows
        # J^T u = 0: u is in the null space; sigma = 0 is then the exact top value only
        # if J = 0, which the next random direction cannot distinguish; report 0.
        change = (1 - (sigma / s.clamp_min(tiny)).square()).abs()  # of lambda = s^2
        converged = (change <= rtol) | (s == 0)
        sigma = s
        u = torch.where((t > 0).unsqueeze(1), w / t.clamp_min(tiny).unsqueeze(1), u)
        if bool(converged.all()):
            break
    return sigma, residual, converged, n


def _power_norm(
    lin_or_model, xs: Tensor, C: int, max_iter: int, rtol: float, generator
) -> JacobianNorm:
    B = xs.shape[0]
    u0 = torch.randn(B, C, dtype=xs.dtype, device=xs.device, generator=generator)
    if isinstance(lin_or_model, _Linearization):
        lin = lin_or_model

        def jt(u: Tensor) -> Tensor:
            return lin.vjp(u.unsqueeze(1)).squeeze(1)

        def j(v: Tensor) -> Tensor:
            return lin.jvp(v).reshape(B, C)

    else:
        jt, j = _autograd_products(lin_or_model, xs)

    sigma, residual, converged, n = _power_iteration(jt, j, u0, max_iter, rtol)
    return JacobianNorm(
        norm=sigma, residual=residual, converged=converged, n_iter=n, method="power"
    )


JACOBIAN_NORM_METHODS: tuple[str, ...] = ("power", "gram")


def _autograd_products(
    model: Callable[[Tensor], Tensor], xs: Tensor
) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    r"""``u -> J^T u`` and ``v -> J v`` for a callable model, by reverse mode only.

    One forward pass and one differentiable backward pass build
    :math:`g(u') = J^\top u'`, linear in a dummy cotangent :math:`u'`. Then
    :math:`J^\top u` is a backward pass through the forward graph and
    :math:`Jv = \partial\langle g(u'), v\rangle/\partial u'` a backward pass through
    the backward graph (the "double-backward" JVP). Both run in autograd's engine,
    which at long sequence lengths is much faster than forward-mode AD.
    """
    x = xs.detach().requires_grad_(True)
    with torch.enable_grad():
        scores = model(x)
        dummy = torch.zeros_like(scores, requires_grad=True)
        (g,) = torch.autograd.grad(scores, x, dummy, create_graph=True)

    def jt(u: Tensor) -> Tensor:
        with torch.enable_grad():
            (v,) = torch.autograd.grad(scores, x, u, retain_graph=True)
        return v.detach()

    def j(v: Tensor) -> Tensor:
        with torch.enable_grad():
            (w,) = torch.autograd.grad(g, dummy, v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(scores) if w is None else w.detach()

    return jt, j


def jacobian_spectral_norm(
    model: NRNNParams | Callable[[Tensor], Tensor],
    xs: Tensor,
    *,
    method: JacobianNormMethod = "power",
    max_iter: int = 100,
    rtol: float = 1e-6,
    generator: torch.Generator | None = None,
) -> JacobianNorm:
    r"""Spectral norm :math:`\|J(x)\|_2` of the input-output Jacobian, per example.

    .. math:: \|J\|_2^2 = \lambda_{\max}(JJ^\top),\qquad
              u \leftarrow \frac{J(J^\top u)}{\|J(J^\top u)\|_2}

    Power iteration on the C x C operator :math:`JJ^\top`: each iteration is one
    vector-Jacobian product (:math:`J^\top u`, an adjoint pass) and one
    Jacobian-vector product (:math:`Jv`, a tangent pass). :math:`J` (C x T*D per
    example) is never formed, so memory is O(B T H) for an NRNN whatever C.

    Parameters
    ----------
    model : NRNNParams or callable
        An NRNN (clean logits; its tangent and adjoint passes are analytic, along
        the stored trajectory) or any differentiable ``model(xs) -> logits (B, C)``
        whose examples do not interact (products by reverse-mode autograd:
        :math:`J^\top u` directly, :math:`Jv` by double backward).
    xs : Tensor, shape (B, T, D)
    method : {"power", "gram"}
        ``"power"`` (default, any model). ``"gram"`` (NRNNParams only) forms the
        exact C x C matrix :func:`jacobian_gram` with one adjoint pass of C
        cotangents and takes its top eigenvalue: exact, and cheaper than power
        iteration when C is small and the spectrum is not well separated.
    max_iter : int
        Cap on power iterations. Convergence is geometric in
        :math:`(\lambda_2/\lambda_1)`; since :math:`JJ^\top` is only C x C, a few
        tens usually suffice.
    rtol : float
        Stop when the Rayleigh quotient of every example changes by less than
        ``rtol`` relative (``converged`` says which did).
    generator : torch.Generator, optional
        Start vectors; ``None`` means fresh randomness.

    Returns
    -------
    JacobianNorm
        ``norm`` (B,) in the inputs' dtype, ``residual``, ``converged``, ``n_iter``.
        **Not certified**: it holds at ``xs`` only (docs/theory/margins.md), and power
        iteration approaches the norm from below.

    References
    ----------
    .. [1] docs/theory/margins.md (algorithm: power iteration on :math:`JJ^\top` via VJP/JVP).

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(1), W=torch.zeros(1, 1), U=torch.ones(1, 1),
    ...                b=torch.zeros(1), V=torch.ones(2, 1), c=torch.zeros(2), dt=0.5)
    >>> g = torch.Generator().manual_seed(0)
    >>> r = jacobian_spectral_norm(p, torch.zeros(1, 2, 1), generator=g)
    >>> round(float(r.norm[0]), 4), round(math.sqrt(2 * 0.3125), 4)
    (0.7906, 0.7906)
    """
    check_choice("method", method, JACOBIAN_NORM_METHODS)
    check_positive_int("max_iter", max_iter)
    rtol = check_positive("rtol", rtol)
    check_generator(generator, xs.device if isinstance(xs, Tensor) else None)
    if method == "gram":
        if not isinstance(model, NRNNParams):
            raise ValueError(
                "method: 'gram' needs NRNNParams (analytic adjoint); use 'power' for a "
                f"callable model, got {type(model).__name__}"
            )
        check_linalg_dtype("xs", check_tensor("xs", xs), "method='gram' (eigvalsh)")
        G = jacobian_gram(model, xs)  # raises NonFiniteStateError if it overflows
        lam = torch.linalg.eigvalsh(G)[:, -1].clamp_min(0.0)
        B = G.shape[0]
        return JacobianNorm(
            norm=lam.sqrt(),
            residual=torch.zeros_like(lam),
            converged=torch.ones(B, dtype=torch.bool, device=G.device),
            n_iter=0,
            method="gram",
        )
    if isinstance(model, NRNNParams):
        lin = _linearize(model, xs, None)
        return _power_norm(lin, xs, lin.scores.shape[1], max_iter, rtol, generator)
    fn = as_model(model)
    xs = check_inputs(model, xs).detach()
    C = evaluate(fn, xs[:1]).shape[1]
    return _power_norm(fn, xs, C, max_iter, rtol, generator)


# ------------------------------------------------------------------- local estimate
def local_margin_estimate(
    model: NRNNParams | Callable[[Tensor], Tensor],
    xs: Tensor,
    labels: Tensor | None = None,
) -> LocalMarginEstimate:
    r"""First-order margin :math:`\min_j (s_y - s_j)/\|\nabla_x(s_y - s_j)\|_2`: **not certified**.

    The distance from ``x`` to the nearest decision boundary of the model
    linearized at ``x`` (docs/theory/margins.md, the along-trajectory form). Exact for affine
    models; for an NRNN the Jacobian varies along the path and this is an estimate,
    not a bound.

    Parameters
    ----------
    model : NRNNParams or callable
        NRNNParams: all pair norms from :func:`jacobian_gram` (one adjoint pass).
        A callable ``xs -> logits``: one VJP per class.
    xs : Tensor, shape (B, T, D)
    labels : Tensor, shape (B,), optional
        Default: the predicted classes. Misclassified examples get a negative
        estimate.

    Returns
    -------
    LocalMarginEstimate
        ``estimate`` (B,), ``pair_gradient_norm`` (B, C), ``certified=False``.

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(1), W=torch.zeros(1, 1), U=torch.ones(1, 1),
    ...                b=torch.zeros(1), V=torch.tensor([[1.0], [-1.0]]),
    ...                c=torch.zeros(2), dt=0.5)
    >>> local_margin_estimate(p, torch.ones(1, 1, 1)).estimate
    tensor([1.8134])

    Here :math:`s_0 - s_1 = \tanh(x)`, so the exact margin is 1: the linearization
    overshoots (the certified radius of :func:`certified_margin` is
    :math:`\tanh 1 = 0.76`).
    """
    if isinstance(model, NRNNParams):
        lin = _linearize(model, xs, None)
        scores = lin.scores
        y = resolve_labels(labels, scores)
        G = lin.gram()
        _require_finite("local_margin_estimate", "J J^T", G)
        diag = torch.diagonal(G, dim1=1, dim2=2)
        Gyy = diag.gather(1, y.unsqueeze(1))
        Gyj = G.gather(1, y.view(-1, 1, 1).expand(-1, 1, G.shape[2])).squeeze(1)
        pair = (Gyy - 2.0 * Gyj + diag).clamp_min(0.0).sqrt()
    else:
        fn = as_model(model)
        xs = check_inputs(model, xs).detach()
        scores = evaluate(fn, xs)
        if not bool(torch.isfinite(scores).all()):
            raise NonFiniteStateError(
                "local_margin_estimate: the model's scores are not finite (NaN or inf) on "
                f"{int((~torch.isfinite(scores).all(dim=1)).sum())} of {len(scores)} inputs"
            )
        y = resolve_labels(labels, scores)
        C = scores.shape[1]
        with torch.enable_grad():
            _, vjp_fn = torch.func.vjp(fn, xs)
            onehot_y = torch.nn.functional.one_hot(y, C).to(xs.dtype)
            cols = []
            for j in range(C):
                u = onehot_y - torch.nn.functional.one_hot(torch.full_like(y, j), C).to(xs.dtype)
                (g,) = vjp_fn(u)
                cols.append(g.detach().flatten(1).norm(dim=1))
        pair = torch.stack(cols, dim=1)
    gap = scores.gather(1, y.unsqueeze(1)) - scores  # (B, C)
    is_y = torch.nn.functional.one_hot(y, scores.shape[1]).bool()
    ratio = torch.where(is_y, torch.inf, gap / pair)  # gap > 0 and pair = 0 -> inf
    ratio = torch.where(~is_y & (pair == 0) & (gap <= 0), -torch.inf, ratio)
    est, runner = ratio.min(dim=1)
    return LocalMarginEstimate(
        estimate=est,
        score_margin=_score_margin(scores, y),
        labels=y,
        runner_up=runner,
        pair_gradient_norm=torch.where(is_y, 0.0, pair),
        certified=False,
    )


# -------------------------------------------------------------- certified (global) bound
def _spectral_norm(M: Tensor) -> float:
    return float(torch.linalg.matrix_norm(M, ord=2)) if M.numel() else 0.0


def margin_growth(rho: float, n_steps: int) -> float:
    r"""The factor :math:`(\sum_{k<M}\rho^{2(M-1-k)})^{1/2}` of the certified bound.

    .. math:: \sum_{i=0}^{M-1}\rho^{2i} = \frac{\rho^{2M} - 1}{\rho^2 - 1}
              = \frac{\mathrm{expm1}(2M\log\rho)}{\mathrm{expm1}(2\log\rho)}

    evaluated with ``expm1`` so that it is accurate near :math:`\rho = 1` (limit
    :math:`M`); ``inf`` on overflow, which certifies radius 0.

    Parameters
    ----------
    rho : float
        A bound :math:`\rho \ge 0` on the spectral norm of every step Jacobian.
    n_steps : int
        The number of steps :math:`M \ge 1`.

    Returns
    -------
    float

    Examples
    --------
    >>> margin_growth(1.0, 4), margin_growth(0.0, 3), round(margin_growth(0.5, 2), 6)
    (2.0, 1.0, 1.118034)
    """
    if isinstance(rho, bool) or not isinstance(rho, int | float):
        raise TypeError(f"rho: expected a real number, got {type(rho).__name__}")
    rho = float(rho)
    n_steps = check_positive_int("n_steps", n_steps)
    if math.isnan(rho) or rho < 0:
        raise ValueError(f"rho: expected a number >= 0 (or inf), got {rho}")
    if math.isinf(rho):
        return math.inf
    if rho == 0.0:
        return 1.0
    if rho == 1.0:
        return math.sqrt(n_steps)
    lr = math.log(rho)
    try:
        total = math.expm1(2.0 * n_steps * lr) / math.expm1(2.0 * lr)
    except OverflowError:
        return math.inf
    return math.sqrt(total)


_CERTIFICATE_ASSUMPTIONS = (
    "clean (noise-free, inference) model; drift alpha*A*h + tanh(W h + U x + b) stepped "
    "with s = dt or the per-unit step; tanh' in (0, 1] (L_a = 1); rho bounds "
    "||I + diag(s)(alpha A + D W)||_2 for every diagonal D in [0, 1] "
    "(docs/theory/stability.md (f), nrnn_theory.stability.step_norm_bound), "
    "so L_j bounds the Lipschitz constant of s_y - s_j over the whole input space and "
    "the radius is global (r = inf in docs/theory/margins.md). Computed in float64; exact "
    "arithmetic is assumed (rounding of relative size ~1e-13 is not accounted for)."
)


def certified_margin(
    params: NRNNParams,
    xs: Tensor,
    labels: Tensor | None = None,
    *,
    h0: Tensor | None = None,
    one_sided: OneSided = "auto",
) -> MarginCertificate:
    r"""Certified lower bound on the :math:`\ell_2` input margin of the clean NRNN.

    docs/theory/margins.md, sound global form: with :math:`\rho \ge \|\tilde J_k\|_2` on every
    trajectory (docs/theory/stability.md (f)),

    .. math:: L_j = \|(e_y - e_j)^\top V\|_2\,\max_i|s_i|\,\|U\|_2
              \Big(\sum_{k<M}\rho^{2(M-1-k)}\Big)^{1/2},\qquad
              \gamma(x) \ge \min_{j\ne y}\frac{s_y(x) - s_j(x)}{L_j}.

    Since :math:`\partial s/\partial x_k = V\hat\Phi_{M,k+1}\mathrm{diag}(s\odot
    \tanh'(z_k))U`, Cauchy-Schwarz over :math:`k` bounds
    :math:`\|\nabla_x(s_y - s_j)\|_2 \le L_j` at *every* input, so no
    :math:`\ell_2` perturbation (of the whole T x D sequence) smaller than the
    radius changes the prediction away from ``y``.

    Parameters
    ----------
    params : NRNNParams
    xs : Tensor, shape (B, T, D)
    labels : Tensor, shape (B,), optional
        Classes to certify; default the predictions. Examples whose label is not
        the prediction get radius 0.
    h0 : Tensor, shape (B, H), optional
        Initial state (default zeros); it does not depend on the input.
    one_sided : {"auto", "midpoint", "standard", "relaxation", "exact"}
        How :func:`nrnn_theory.stability.step_norm_bound` bounds the one-sided constant
        in :math:`\rho` (see :func:`nrnn_theory.stability.one_sided_constant`). Every
        choice is sound. ``"auto"`` (default): exact vertex enumeration for
        :math:`H \le 12`, the convex relaxation above (tighter than ``"midpoint"``, at
        the cost of an iterative search: about a second at :math:`H = 64`).
        ``"midpoint"``: closed form, instant, looser. Since the bound scales like
        :math:`\rho^{-M}`, a slightly smaller :math:`\rho` can enlarge the radius
        several-fold on long sequences.

    Returns
    -------
    MarginCertificate
        ``radius`` (B,) float64 and every quantity it used.

    Notes
    -----
    Computed in float64 whatever the parameters' dtype: the certificate is for the
    model in exact arithmetic. The bound grows like :math:`\rho^{M}` when
    :math:`\rho > 1`, so on long sequences it is informative only for contractive
    (:math:`\rho \le 1`) or nearly contractive models; compare with the empirical
    margins of :mod:`nrnn_theory.attacks` (:func:`margin_summary`).

    References
    ----------
    .. [1] docs/theory/margins.md (margin bound, after Sokolić et al. 2017),
       docs/theory/stability.md (f) (rho).

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(1), W=torch.zeros(1, 1), U=torch.ones(1, 1),
    ...                b=torch.zeros(1), V=torch.tensor([[1.0], [-1.0]]),
    ...                c=torch.zeros(2), dt=0.5)
    >>> cert = certified_margin(p, torch.ones(1, 1, 1))
    >>> round(float(cert.radius[0]), 4), cert.rho
    (0.7616, 0.5)
    """
    params = check_params(params)
    xs = check_inputs(params, xs)
    B = xs.shape[0]
    if h0 is not None:
        h0 = check_state(params, h0, "h0", B)
    p64 = params.detach().to(torch.float64)
    x64 = xs.detach().to(torch.float64)
    k = StepKernel(p64, None)
    h = x64.new_zeros(B, p64.hidden_size) if h0 is None else h0.detach().to(torch.float64)
    with torch.no_grad():
        for ux in k.project(x64).unbind(1):
            f, _ = k.drift(h, ux)
            h = h + k.s * f
        scores = h @ p64.V.mT + p64.c
    y = resolve_labels(labels, scores).to(scores.device)
    M = xs.shape[1]
    terms = step_norm_terms(p64, one_sided, None)
    rho = terms["rho"]
    growth = margin_growth(rho, M)
    step_max = float(p64.drift_step.abs().max())
    U_norm = _spectral_norm(p64.U)
    Vy = p64.V[y]  # (B, H)
    pair_V = (Vy.unsqueeze(1) - p64.V.unsqueeze(0)).norm(dim=2)  # (B, C)
    scale = step_max * U_norm * growth
    C = p64.num_classes
    is_y = torch.nn.functional.one_hot(y, C).bool()
    L = torch.where(is_y, torch.inf, pair_V * scale if math.isfinite(scale) else torch.inf)
    gap = scores.gather(1, y.unsqueeze(1)) - scores
    per_j = torch.where(is_y, torch.inf, gap / L)  # L = inf (overflow) gives radius 0
    # L_j = 0 (V rows equal): s_y - s_j is constant, the pair never flips if gap > 0.
    per_j = torch.where(~is_y & (L == 0), torch.where(gap > 0, torch.inf, 0.0), per_j)
    radius, runner = per_j.min(dim=1)
    radius = radius.clamp_min(0.0)
    return MarginCertificate(
        radius=radius,
        score_margin=_score_margin(scores, y),
        labels=y,
        runner_up=runner,
        lipschitz=L,
        rho=rho,
        rho_terms=terms,
        step_max=step_max,
        U_norm=U_norm,
        n_steps=M,
        growth=growth,
        method=(
            "global Lipschitz bound (docs/theory/margins.md with rho from "
            f"docs/theory/stability.md (f), one-sided constant {one_sided!r})"
        ),
        certified=True,
        dtype="float64",
        assumptions=_CERTIFICATE_ASSUMPTIONS,
    )


# ---------------------------------------------------------------------------- summary
_QUANTILES = (("q10", 0.10), ("q25", 0.25), ("median", 0.5), ("q75", 0.75), ("q90", 0.90))


def _describe(values: Tensor) -> dict[str, float]:
    v = values.detach().to(torch.float64).cpu()
    v = v[torch.isfinite(v)]
    if v.numel() == 0:
        return {"n": 0}
    out = {"n": int(v.numel()), "mean": float(v.mean()), "min": float(v.min())}
    for name, q in _QUANTILES:
        out[name] = float(torch.quantile(v, q))
    out["max"] = float(v.max())
    return out


def margin_summary(
    certified: MarginCertificate | Tensor,
    empirical: EmpiricalMargin | Tensor,
    *,
    tight_factor: float = 2.0,
    norm: str | None = None,
) -> MarginSummary:
    r"""Distribution of certified and empirical margins, and how tight the bound is.

    Parameters
    ----------
    certified : MarginCertificate or Tensor, shape (B,)
        Certified radii (:func:`certified_margin`).
    empirical : EmpiricalMargin or Tensor, shape (B,)
        Attack distances (:func:`nrnn_theory.attacks.minimal_perturbation`), ``inf``
        where no attack succeeded. Compare like with like: an :math:`\ell_2`
        certificate with :math:`\ell_2` attacks.
    tight_factor : float
        The bound counts as tight on an example when
        ``empirical <= tight_factor * certified`` (default 2).
    norm : str, optional
        Label of the norm (default taken from ``empirical``, else ``"l2"``).

    Returns
    -------
    MarginSummary
        Quantiles of both distributions and of their ratio, ``fraction_tight``, and
        ``n_violations`` (certified > empirical, which a sound certificate never
        gives).

    Examples
    --------
    >>> s = margin_summary(torch.tensor([0.5, 1.0, 0.0]), torch.tensor([0.8, 3.0, 0.2]))
    >>> s.fraction_tight, s.n_violations, s.n_zero_certified
    (0.3333333333333333, 0, 1)
    """
    tight_factor = check_positive("tight_factor", tight_factor)
    if isinstance(empirical, EmpiricalMargin):
        norm = norm or empirical.norm
        emp = empirical.distance
    else:
        emp = check_tensor("empirical", empirical)
    cert = certified.radius if isinstance(certified, MarginCertificate) else certified
    cert = check_tensor("certified", cert)
    if cert.ndim != 1 or emp.shape != cert.shape:
        raise ValueError(
            f"empirical: expected shape {tuple(cert.shape)} to match certified (B,), got "
            f"{tuple(emp.shape)}"
        )
    if cert.numel() == 0:
        raise ValueError("certified: expected at least one example, got an empty tensor")
    cert = cert.detach().to(torch.float64).cpu()
    emp = emp.detach().to(torch.float64).cpu()
    if bool((cert < 0).any()) or bool(torch.isnan(cert).any()) or bool(torch.isnan(emp).any()):
        raise ValueError("certified, empirical: expected non-negative radii without NaN")
    positive = cert > 0
    both = positive & torch.isfinite(emp) & torch.isfinite(cert)
    tight = positive & (emp <= tight_factor * cert)
    return MarginSummary(
        n_examples=int(cert.numel()),
        certified_quantiles=_describe(cert),
        empirical_quantiles=_describe(emp),
        ratio_quantiles=_describe(emp[both] / cert[both]),
        tight_factor=tight_factor,
        fraction_tight=float(tight.double().mean()),
        n_violations=int((cert > emp).sum()),
        n_unbroken=int(torch.isinf(emp).sum()),
        n_zero_certified=int((~positive).sum()),
        norm=norm or "l2",
    )


def format_margin_summary(summary: MarginSummary, *, title: str | None = None) -> str:
    """A plain-text table of a :class:`MarginSummary` (what ``nrnn margins`` prints).

    Parameters
    ----------
    summary : MarginSummary
        From :func:`margin_summary`.
    title : str, optional
        First line of the table (default: the norm and the number of examples).

    Returns
    -------
    str

    Examples
    --------
    >>> s = margin_summary(torch.tensor([0.5, 1.0]), torch.tensor([0.8, 3.0]))
    >>> print(format_margin_summary(s).splitlines()[0])
    margins (l2), 2 examples
    """
    if not isinstance(summary, MarginSummary):
        raise TypeError(f"summary: expected MarginSummary, got {type(summary).__name__}")
    head = title or f"margins ({summary.norm}), {summary.n_examples} examples"
    cols = ("n", "min", "q10", "q25", "median", "q75", "q90", "max", "mean")
    rows = [
        ("certified", summary.certified_quantiles),
        ("empirical", summary.empirical_quantiles),
        ("emp / cert", summary.ratio_quantiles),
    ]
    width = 11
    lines = [head, f"{'':<12}" + "".join(f"{c:>{width}}" for c in cols)]
    for label, q in rows:
        cells = []
        for c in cols:
            v = q.get(c)
            if v is None:
                cells.append(f"{'-':>{width}}")
            elif c == "n":
                cells.append(f"{v:>{width}d}")
            else:
                cells.append(f"{v:>{width}.4g}")
        lines.append(f"{label:<12}" + "".join(cells))
    lines.append(
        f"bound tight within {summary.tight_factor:g}x on {100 * summary.fraction_tight:.1f}% "
        f"of examples; certified > empirical on {summary.n_violations} (must be 0); "
        f"unbroken by the attack: {summary.n_unbroken}; certified radius 0: "
        f"{summary.n_zero_certified}"
    )
    return "\n".join(lines)
