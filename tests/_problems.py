"""Closed-form problems used as oracles (CONVENTIONS.md §7, THEORY.md §10)."""

from __future__ import annotations

import math

import numpy as np
import torch

from nrnn_theory import NRNNParams


__all__ = [
    "em_gbm_exponent",
    "gbm_exact",
    "linear_rnn_classifier",
    "one_step_margin",
    "quadratic_problem",
    "random_params",
    "random_symmetric",
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


def em_gbm_exponent(lam: float, sigma: float, dt: float) -> float:
    r"""Exact Lyapunov exponent of the Euler-Maruyama GBM chain (THEORY.md §10 V4).

    :math:`\frac1{\Delta t}\mathbb E\log|1+\lambda\Delta t+\sigma\sqrt{\Delta t}\xi|`,
    by Gauss-Hermite-free adaptive quadrature split at the integrable log singularity.
    """
    from scipy import integrate, stats

    a = 1.0 + lam * dt
    s = sigma * math.sqrt(dt)
    root = -a / s

    def integrand(x):
        return np.log(np.abs(a + s * x)) * stats.norm.pdf(x)

    left, _ = integrate.quad(integrand, -np.inf, root, limit=200)
    right, _ = integrate.quad(integrand, root, np.inf, limit=200)
    return (left + right) / dt


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
