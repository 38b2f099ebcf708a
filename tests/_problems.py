"""Closed-form problems used as oracles (CONVENTIONS.md §7, THEORY.md §10)."""

from __future__ import annotations

import math

import numpy as np
import torch

from nrnn_theory import NRNNParams

# The exact Euler-Maruyama GBM exponent (THEORY.md §10 V4) lives in the package, which
# uses it in the continuum study; test_studies.py checks it against Monte Carlo.
from nrnn_theory._oracles import em_gbm_exponent, normal_expectation


__all__ = [
    "em_gbm_exponent",
    "em_linear_scalar_exponent",
    "em_scalar_pathwise_rate",
    "gbm_exact",
    "linear_params",
    "linear_rnn_classifier",
    "lorenz_rk4",
    "one_step_margin",
    "quadratic_problem",
    "random_params",
    "random_symmetric",
    "scalar_pathwise_log_bound",
]


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
    """A random NRNN with O(1) weights scaled by ``scale / sqrt(H)``."""

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


def gbm_exact(x0: float, lam: float, sigma: float, t: float, brownian: torch.Tensor):
    r"""Exact geometric Brownian motion :math:`x_0\exp((\lambda-\sigma^2/2)t+\sigma B_t)`."""
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
    """
    if eigenvalues is None:
        eigenvalues = torch.randn(n, generator=generator, dtype=dtype)
    Q, R = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=dtype))
    Q = Q * torch.sign(torch.diagonal(R))
    M = Q @ torch.diag(eigenvalues.to(dtype)) @ Q.T
    return 0.5 * (M + M.T)


def quadratic_problem(Hmat: torch.Tensor, *, generator: torch.Generator):
    r"""The quadratic loss :math:`\tfrac12\theta^\top H\theta + b^\top\theta` of THEORY.md §10 V8.

    The parameter vector is split into two named blocks (``"x"`` of shape (n1,) and
    ``"y"`` of shape (n - n1,) reshaped to a column) so that layout and block code paths
    are exercised. Returns ``(loss_fn, params, H)``; the Hessian is exactly ``H`` in the
    flat layout ``[x, y]``.
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
    """An NRNN whose drift is exactly linear, ``f(h) = A h`` (W = 0, U = 0, b = 0)."""
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
    :math:`\mu` of :math:`A` (THEORY.md §10 V5): :math:`\mathbb E\log|1 + \Delta t\mu +
    \sigma\sqrt{\Delta t}\xi|/\Delta t`, by quadrature (split at the real root if any).
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
    THEORY.md §9(c) used by the soundness tests).
    """
    one = 1.0 + c
    cross = torch.where(one >= 0, one * lam_hat, one.abs() * kappa)
    return 0.5 * torch.log((one * one + 2.0 * dt * cross + (dt * kappa) ** 2).clamp_min(1e-300))


def em_scalar_pathwise_rate(lam_hat: float, kappa: float, s: float, dt: float) -> float:
    r"""Almost-sure limit of the pathwise bound: :math:`\frac1{\Delta t}\mathbb E` of
    :func:`scalar_pathwise_log_bound` at :math:`c = s\sqrt{\Delta t}\xi`, by quadrature.

    It bounds the top exponent of the Euler-Maruyama difference chain with scalar
    noise :math:`s = \epsilon\sigma_2` and tends to :math:`\hat\lambda - s^2/2` as
    :math:`\Delta t \to 0` (THEORY.md §9(c)).
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
