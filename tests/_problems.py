"""Closed-form problems used as oracles (CONVENTIONS.md §7, THEORY.md §10)."""

from __future__ import annotations

import math

import numpy as np
import torch

from nrnn_theory import NRNNParams


__all__ = [
    "em_gbm_exponent",
    "gbm_exact",
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
