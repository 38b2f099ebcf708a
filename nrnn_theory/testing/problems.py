r"""Closed-form problems and exact references used as oracles (docs/theory/oracles.md).

Each function builds a problem whose answer is known independently of the code under
test: a random NRNN of a chosen stability family whose one-sided constant is known by
construction (:func:`stability_family_params`), linear drifts and linear RNNs with
closed-form exponents and margins, exact Euler-Maruyama exponents of scalar geometric
Brownian motion by quadrature, a quadratic loss with a known Hessian, and the Lorenz
system with a hand-written Jacobian.

Examples
--------
>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> p, lam = stability_family_params("stable", 4, 2, 3, generator=g)
>>> lam < 0
True
>>> round(em_gbm_exponent(1.0, 0.0, 0.1), 6)  # log(1.1) / 0.1
0.953102
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nrnn_theory._oracles import em_gbm_exponent, normal_expectation
from nrnn_theory._types import NRNNParams


__all__ = [
    "STABILITY_FAMILIES",
    "em_gbm_exponent",
    "em_linear_scalar_exponent",
    "em_scalar_pathwise_rate",
    "gbm_exact",
    "linear_params",
    "linear_rnn_classifier",
    "lorenz_rk4",
    "normal_expectation",
    "one_step_margin",
    "quadratic_problem",
    "random_params",
    "random_symmetric",
    "scalar_pathwise_log_bound",
    "stability_family_params",
]

#: The stability families of :func:`stability_family_params`.
STABILITY_FAMILIES: tuple[str, ...] = ("stable", "near_critical", "unstable")


def random_params(
    H: int,
    D: int,
    C: int,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    dt: float = 0.1,
    scale: float = 1.0,
    alpha: float = 1.0,
    per_unit_step: bool = False,
) -> NRNNParams:
    """A random NRNN with O(1) weights scaled by ``scale / sqrt(H)``.

    Parameters
    ----------
    H, D, C : int
        Hidden size, input size, number of classes.
    generator : torch.Generator
        Source of every entry.
    dtype : torch.dtype
        Dtype of the parameters.
    dt : float
        Step size.
    scale : float
        Scale of ``A`` and ``W``.
    alpha : float
        Weight of the linear term.
    per_unit_step : bool
        Draw a per-unit step in ``[0.5, 1.5] * dt`` instead of a scalar one.

    Returns
    -------
    NRNNParams
    """

    def r(*shape, s=1.0):
        return s * torch.randn(*shape, generator=generator, dtype=dtype)

    k = scale / math.sqrt(H)
    step = None
    if per_unit_step:
        step = dt * (0.5 + torch.rand(H, generator=generator, dtype=dtype))
    return NRNNParams(
        A=r(H, H, s=k),
        W=r(H, H, s=k),
        U=r(H, D),
        b=r(H, s=0.1),
        V=r(C, H, s=1 / math.sqrt(H)),
        c=r(C, s=0.1),
        dt=dt,
        step=step,
        alpha=alpha,
    )


def stability_family_params(
    family: str,
    H: int,
    D: int,
    C: int,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    dt: float = 0.1,
    gamma: float | None = None,
) -> tuple[NRNNParams, float]:
    r"""A random NRNN whose standard one-sided constant is known by construction.

    With :math:`\alpha = 1`, :math:`A = -\gamma I + S` (:math:`S` skew-symmetric, so
    :math:`\mathrm{sym}\,A = -\gamma I`) and :math:`W` scaled to spectral norm
    :math:`w`, the standard constant of docs/theory/stability.md is exactly
    :math:`\lambda_* = -\gamma + w` (tanh has :math:`L_a = 1`):

    * ``"stable"``: :math:`\gamma > 0`, :math:`w = u\gamma` with :math:`u \in [0, 0.8]`,
      so :math:`\lambda_* \le -0.2\gamma < 0` (contraction certified);
    * ``"near_critical"``: :math:`w = \gamma(1 + t)`, :math:`|t| \le 0.05`, so
      :math:`|\lambda_*| \le 0.05\gamma`;
    * ``"unstable"``: :math:`A = +\gamma I + S`: the linear part expands at rate
      :math:`\gamma` while the tanh term is bounded, so states grow like
      :math:`e^{\gamma t}` and :math:`\lambda_* = \gamma + w > 0`.

    Parameters
    ----------
    family : {"stable", "near_critical", "unstable"}
        The family.
    H, D, C : int
        Hidden size, input size and number of classes.
    generator : torch.Generator
        Source of every random entry.
    dtype : torch.dtype
        Dtype of the parameters.
    dt : float
        Step size.
    gamma : float, optional
        :math:`\gamma` (default: drawn uniformly from [0.5, 2]).

    Returns
    -------
    params : NRNNParams
        The model.
    lambda_star : float
        Its standard one-sided constant :math:`\lambda_*`, by construction.
    """
    if family not in STABILITY_FAMILIES:
        raise ValueError(f"family: expected one of {', '.join(STABILITY_FAMILIES)}, got {family!r}")
    g = float(0.5 + 1.5 * torch.rand((), generator=generator, dtype=torch.float64))
    gamma = g if gamma is None else float(gamma)
    if not gamma > 0:
        raise ValueError(f"gamma: expected a number > 0, got {gamma}")
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    if family == "stable":
        w = 0.8 * u * gamma
    elif family == "near_critical":
        w = gamma * (1.0 + 0.1 * (u - 0.5))
    else:
        w = u * gamma
    M = torch.randn(H, H, generator=generator, dtype=torch.float64)
    S = (M - M.T) / (2.0 * math.sqrt(H))
    sign = 1.0 if family == "unstable" else -1.0
    A = sign * gamma * torch.eye(H, dtype=torch.float64) + S
    W = torch.randn(H, H, generator=generator, dtype=torch.float64)
    norm = float(torch.linalg.matrix_norm(W, ord=2))
    W = W * (w / norm) if norm > 0 else W * 0.0
    base = random_params(H, D, C, generator=generator, dtype=torch.float64, dt=dt)
    params = NRNNParams(A=A, W=W, U=base.U, b=base.b, V=base.V, c=base.c, dt=dt, alpha=1.0).to(
        dtype=dtype
    )
    return params, sign * gamma + w


def gbm_exact(x0: float, lam: float, sigma: float, t: float, brownian: torch.Tensor):
    r"""Exact geometric Brownian motion :math:`x_0\exp((\lambda-\sigma^2/2)t+\sigma B_t)`.

    Parameters
    ----------
    x0, lam, sigma, t : float
        Start, drift rate, noise level and time.
    brownian : Tensor
        :math:`B_t` (any shape).

    Returns
    -------
    Tensor
        :math:`x_t`, shaped like ``brownian``.
    """
    return x0 * torch.exp((lam - 0.5 * sigma**2) * t + sigma * brownian)


def linear_rnn_classifier(
    H: int, D: int, C: int, *, T: int, generator: torch.Generator, dt: float = 0.2
):
    r"""A linear RNN :math:`h_{k+1} = h_k + \Delta t(Ah_k + Ux_k)` with readout :math:`Vh_T + c`.

    The package's drift always contains tanh, so this model is written here. It is
    affine in the input sequence, :math:`s = Jx + c` with
    :math:`\partial s/\partial x_k = V(I + \Delta tA)^{T-1-k}\Delta t\,U`, which gives
    closed-form margins: :math:`\ell_2` distance :math:`\min_j (s_y - s_j)/\|w_j\|_2`
    and :math:`\ell_\infty` distance :math:`\min_j (s_y - s_j)/\|w_j\|_1` with
    :math:`w_j = (e_y - e_j)^\top J`.

    Returns ``(model, J)``: a callable (B, T, D) -> (B, C) and the dense J of shape
    (C, T*D), time-major, computed from matrix powers (not autograd).

    Parameters
    ----------
    H, D, C : int
        Hidden size, input size, number of classes.
    T : int
        Number of steps.
    generator : torch.Generator
        Source of the weights.
    dt : float
        Step size.

    Returns
    -------
    model : callable
        ``model(xs)`` for ``xs`` of shape (B, T, D), float64.
    J : Tensor, shape (C, T*D)
        The dense input-output Jacobian.
    """
    dtype = torch.float64
    A = 0.5 * torch.randn(H, H, generator=generator, dtype=dtype) / math.sqrt(H)
    U = torch.randn(H, D, generator=generator, dtype=dtype)
    V = torch.randn(C, H, generator=generator, dtype=dtype)
    c = 0.1 * torch.randn(C, generator=generator, dtype=dtype)
    step = torch.eye(H, dtype=dtype) + dt * A

    def model(xs: torch.Tensor) -> torch.Tensor:
        h = xs.new_zeros(xs.shape[0], H)
        for x in xs.unbind(1):
            h = h @ step.mT + dt * (x @ U.mT)
        return h @ V.mT + c

    blocks = [V @ torch.linalg.matrix_power(step, T - 1 - k) @ (dt * U) for k in range(T)]
    return model, torch.cat(blocks, dim=1)


def one_step_margin(params: NRNNParams, xs: torch.Tensor) -> torch.Tensor:
    r"""Exact :math:`\ell_2` margin of a one-unit NRNN with ``W = 0`` on one-step inputs.

    With :math:`H = 1`, :math:`T = 1`, :math:`h_0 = 0` and :math:`W = 0` the logits are
    :math:`s = V s_1\tanh(w) + c` with :math:`w = u^\top x + b`: they depend on the
    input only through :math:`w`. Class ``j`` overtakes the prediction ``y`` where
    :math:`\tanh(w) = t_j = -(c_y - c_j)/((V_y - V_j)s_1)`, reachable iff
    :math:`|t_j| < 1`, at input distance :math:`|\operatorname{artanh}t_j - w|/\|u\|`.
    The margin is the smallest such distance (``inf`` if none is reachable).

    Parameters
    ----------
    params : NRNNParams
        One unit (``H = 1``) with ``W = 0``.
    xs : Tensor, shape (B, 1, D)
        One-step inputs.

    Returns
    -------
    Tensor, shape (B,)
        The exact margins, float64.
    """
    assert params.hidden_size == 1 and xs.shape[1] == 1 and bool((params.W == 0).all())
    p = params.to(torch.float64)
    x = xs[:, 0].to(torch.float64)
    u = p.U[0]
    w0 = x @ u + p.b[0]
    s1 = float(p.drift_step[0])
    v = p.V[:, 0]
    scores = v * s1 * torch.tanh(w0)[:, None] + p.c
    y = scores.argmax(1)
    out = torch.full((xs.shape[0],), math.inf, dtype=torch.float64)
    for i in range(xs.shape[0]):
        for j in range(p.num_classes):
            a = float(v[y[i]] - v[j]) * s1
            if j == int(y[i]) or a == 0.0:
                continue
            t = -float(p.c[y[i]] - p.c[j]) / a
            if abs(t) < 1.0:
                d = abs(math.atanh(t) - float(w0[i])) / float(u.norm())
                out[i] = min(float(out[i]), d)
    return out


def random_symmetric(
    n: int,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    eigenvalues: torch.Tensor | None = None,
) -> torch.Tensor:
    """A random symmetric (n, n) matrix: ``Q diag(eigenvalues) Q^T`` with Haar-like ``Q``.

    Default eigenvalues are i.i.d. standard normal (an indefinite spectrum).

    Parameters
    ----------
    n : int
        Size.
    generator : torch.Generator
        Source of the rotation (and of the eigenvalues when not given).
    dtype : torch.dtype
        Dtype of the matrix.
    eigenvalues : Tensor, shape (n,), optional
        The spectrum.

    Returns
    -------
    Tensor, shape (n, n)
    """
    if eigenvalues is None:
        eigenvalues = torch.randn(n, generator=generator, dtype=dtype)
    Q, R = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=dtype))
    Q = Q * torch.sign(torch.diagonal(R))
    M = Q @ torch.diag(eigenvalues.to(dtype)) @ Q.T
    return 0.5 * (M + M.T)


def quadratic_problem(Hmat: torch.Tensor, *, generator: torch.Generator):
    r"""The quadratic loss :math:`\tfrac12\theta^\top H\theta + b^\top\theta` of
    docs/theory/oracles.md V8.

    The parameter vector is split into two named blocks (``"x"`` of shape (n1,) and
    ``"y"`` of shape (n - n1,) reshaped to a column) so that layout and block code paths
    are exercised. Returns ``(loss_fn, params, H)``; the Hessian is exactly ``H`` in the
    flat layout ``[x, y]``.

    Parameters
    ----------
    Hmat : Tensor, shape (n, n)
        The symmetric Hessian.
    generator : torch.Generator
        Source of ``b`` and the point.

    Returns
    -------
    loss_fn : callable
        ``loss_fn(params) -> Tensor`` (scalar).
    params : dict of str to Tensor
        The point, as two named blocks.
    H : Tensor, shape (n, n)
        ``Hmat``.
    """
    n = Hmat.shape[0]
    n1 = max(1, n // 2)
    dtype = Hmat.dtype
    b = torch.randn(n, generator=generator, dtype=dtype)
    theta = torch.randn(n, generator=generator, dtype=dtype)

    def loss_fn(p):
        v = torch.cat([p["x"], p["y"].reshape(-1)]) if n > n1 else p["x"]
        return 0.5 * v @ (Hmat @ v) + b @ v

    params = {"x": theta[:n1]}
    if n > n1:
        params["y"] = theta[n1:].reshape(-1, 1)
    return loss_fn, params, Hmat


def linear_params(A: torch.Tensor, *, dt: float, D: int = 1, C: int = 2) -> NRNNParams:
    """An NRNN whose drift is exactly linear, ``f(h) = A h`` (W = 0, U = 0, b = 0).

    Parameters
    ----------
    A : Tensor, shape (H, H)
        The drift matrix.
    dt : float
        Step size.
    D, C : int
        Input size and number of classes.

    Returns
    -------
    NRNNParams
    """
    H = A.shape[0]
    z = {"dtype": A.dtype, "device": A.device}
    return NRNNParams(
        A=A,
        W=torch.zeros(H, H, **z),
        U=torch.zeros(H, D, **z),
        b=torch.zeros(H, **z),
        V=torch.ones(C, H, **z),
        c=torch.zeros(C, **z),
        dt=dt,
    )


def em_linear_scalar_exponent(mu: complex, sigma: float, dt: float) -> float:
    r"""Exponent of :math:`I + \Delta tA + \sigma\sqrt{\Delta t}\xi_kI` for an eigenvalue
    :math:`\mu` of :math:`A` (docs/theory/oracles.md V5): :math:`\mathbb E\log|1 + \Delta t\mu +
    \sigma\sqrt{\Delta t}\xi|/\Delta t`, by quadrature (split at the real root if any).

    Parameters
    ----------
    mu : complex
        An eigenvalue of :math:`A`.
    sigma : float
        Scalar noise level.
    dt : float
        Step size.

    Returns
    -------
    float
    """
    mu = complex(mu)
    if mu.imag == 0.0:
        return em_gbm_exponent(mu.real, sigma, dt)
    a = 1.0 + dt * mu.real
    bb = dt * mu.imag
    s = sigma * math.sqrt(dt)
    return normal_expectation(lambda x: 0.5 * np.log((a + s * x) ** 2 + bb**2)) / dt


def scalar_pathwise_log_bound(
    c: torch.Tensor, lam_hat: float, kappa: float, dt: float
) -> torch.Tensor:
    r"""Per-step bound on :math:`\log\|(1+c)I + \Delta tK\|_2` for any :math:`K` with
    :math:`\lambda_{\max}(\mathrm{sym}K)\le\hat\lambda` and :math:`\|K\|_2\le\kappa`.

    :math:`\|((1+c)I + \Delta tK)x\|^2 = (1+c)^2 + 2(1+c)\Delta t\,x^\top Kx +
    \Delta t^2|Kx|^2`, and :math:`(1+c)x^\top Kx \le (1+c)\hat\lambda` if
    :math:`1+c\ge0`, :math:`\le|1+c|\kappa` otherwise (the discrete, pathwise form of
    docs/theory/stability.md (c) used by the soundness tests).

    Parameters
    ----------
    c : Tensor
        The scalar noise increments (any shape).
    lam_hat : float
        :math:`\hat\lambda`.
    kappa : float
        :math:`\kappa \ge \|K\|_2`.
    dt : float
        Step size.

    Returns
    -------
    Tensor
        Shaped like ``c``.
    """
    one = 1.0 + c
    cross = torch.where(one >= 0, one * lam_hat, one.abs() * kappa)
    return 0.5 * torch.log((one * one + 2.0 * dt * cross + (dt * kappa) ** 2).clamp_min(1e-300))


def em_scalar_pathwise_rate(lam_hat: float, kappa: float, s: float, dt: float) -> float:
    r"""Almost-sure limit of the pathwise bound: :math:`\frac1{\Delta t}\mathbb E` of
    :func:`scalar_pathwise_log_bound` at :math:`c = s\sqrt{\Delta t}\xi`, by quadrature.

    It bounds the top exponent of the Euler-Maruyama difference chain with scalar
    noise :math:`s = \epsilon\sigma_2` and tends to :math:`\hat\lambda - s^2/2` as
    :math:`\Delta t \to 0` (docs/theory/stability.md (c)).

    Parameters
    ----------
    lam_hat : float
        :math:`\hat\lambda`.
    kappa : float
        :math:`\kappa \ge \|K\|_2`.
    s : float
        Scalar noise level :math:`\epsilon\sigma_2`.
    dt : float
        Step size.

    Returns
    -------
    float
    """
    r = s * math.sqrt(dt)
    if r == 0.0:
        zero = torch.zeros((), dtype=torch.float64)
        return scalar_pathwise_log_bound(zero, lam_hat, kappa, dt).item() / dt

    def f(x):
        return scalar_pathwise_log_bound(
            torch.tensor(r * x, dtype=torch.float64), lam_hat, kappa, dt
        ).item()

    return normal_expectation(f, -1.0 / r) / dt


_LORENZ = (10.0, 28.0, 8.0 / 3.0)


def _lorenz_f(x: torch.Tensor) -> torch.Tensor:
    s, r, b = _LORENZ
    X, Y, Z = x.unbind(-1)
    return torch.stack([s * (Y - X), X * (r - Z) - Y, X * Y - b * Z], dim=-1)


def _lorenz_df(x: torch.Tensor) -> torch.Tensor:
    s, r, b = _LORENZ
    X, Y, Z = x.unbind(-1)
    one = torch.ones_like(X)
    zero = torch.zeros_like(X)
    rows = [
        torch.stack([-s * one, s * one, zero], -1),
        torch.stack([r - Z, -one, -X], -1),
        torch.stack([Y, X, -b * one], -1),
    ]
    return torch.stack(rows, dim=-2)


def lorenz_rk4(h: float):
    """``(step, jacobian)`` of one RK4 step of Lorenz-63 (10, 28, 8/3), batched (B, 3).

    The Jacobian is the chain rule through the four stages, written by hand.

    Parameters
    ----------
    h : float
        Step size.

    Returns
    -------
    step : callable
        ``step(x, i=0)`` for ``x`` of shape (B, 3).
    jacobian : callable
        ``jacobian(x, i=0)`` of shape (B, 3, 3).
    """

    def step(x: torch.Tensor, i: int = 0) -> torch.Tensor:
        k1 = _lorenz_f(x)
        k2 = _lorenz_f(x + 0.5 * h * k1)
        k3 = _lorenz_f(x + 0.5 * h * k2)
        k4 = _lorenz_f(x + h * k3)
        return x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)

    def jacobian(x: torch.Tensor, i: int = 0) -> torch.Tensor:
        eye = torch.eye(3, dtype=x.dtype, device=x.device)
        k1 = _lorenz_f(x)
        x2 = x + 0.5 * h * k1
        k2 = _lorenz_f(x2)
        x3 = x + 0.5 * h * k2
        k3 = _lorenz_f(x3)
        x4 = x + h * k3
        d1 = _lorenz_df(x)
        d2 = _lorenz_df(x2) @ (eye + 0.5 * h * d1)
        d3 = _lorenz_df(x3) @ (eye + 0.5 * h * d2)
        d4 = _lorenz_df(x4) @ (eye + h * d3)
        return eye + (h / 6.0) * (d1 + 2 * d2 + 2 * d3 + d4)

    return step, jacobian
