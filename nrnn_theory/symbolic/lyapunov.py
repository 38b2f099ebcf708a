r"""Symbolic small-step expansion of Euler-Maruyama Lyapunov exponents (docs/theory/oracles.md
V4-V5).

The Euler-Maruyama chain of scalar geometric Brownian motion,
:math:`x_{k+1} = (1 + \lambda\Delta t + \sigma\sqrt{\Delta t}\,\xi_k)x_k`, has the exact
exponent :math:`\frac1{\Delta t}\mathbb E\log|1 + \lambda\Delta t + \sigma\sqrt{\Delta t}\xi|`.
:func:`em_gbm_exponent_series_expr` expands it in powers of :math:`\Delta t` by
expanding :math:`\log(1 + u)` and taking Gaussian moments
:math:`\mathbb E\xi^{2m} = (2m-1)!!`. The numeric counterpart is the measured
frozen-noise exponent of :func:`~nrnn_theory.lyapunov_spectrum` (and, in the tests,
1-D quadrature).

The expansion is asymptotic, not convergent (the logarithm has an integrable
singularity where :math:`1 + u = 0`, at a distance :math:`\sim1/(\sigma\sqrt{\Delta t})`
standard deviations), which is why the tests compare it only as :math:`\Delta t\to0`.
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

from nrnn_theory.symbolic._symbols import dt, lam, sigma


__all__ = ["em_gbm_exponent_series_expr"]


@lru_cache(maxsize=8)
def em_gbm_exponent_series_expr(order: int = 1) -> sp.Expr:
    r"""Expansion of the Euler-Maruyama GBM exponent to :math:`O(\Delta t^{\rm order})`.

    .. math:: \lambda_{\rm EM} = \lambda - \frac{\sigma^2}2
              + \Delta t\Big(-\frac{\lambda^2}2 + \lambda\sigma^2 - \frac34\sigma^4\Big)
              + O(\Delta t^2)

    Parameters
    ----------
    order : int
        Highest power of :math:`\Delta t` kept (``0`` gives :math:`\lambda-\sigma^2/2`).

    Examples
    --------
    >>> em_gbm_exponent_series_expr(1)
    -Delta_t*lambda**2/2 + Delta_t*lambda*sigma**2 - 3*Delta_t*sigma**4/4 + lambda - sigma**2/2
    """
    if not isinstance(order, int) or order < 0:
        raise ValueError(f"order: expected an integer >= 0, got {order!r}")
    xi = sp.Symbol("xi", real=True)
    r = sp.Symbol("r", positive=True)  # r = sqrt(dt)
    u = lam * r**2 + sigma * r * xi
    n_terms = 2 * (order + 1) + 1  # u^m = O(r^m); keep r^(2 order + 2) after / dt
    log_series = sum((-1) ** (m + 1) * u**m / m for m in range(1, n_terms + 1))
    poly = sp.Poly(sp.expand(log_series), xi)
    mean = 0
    for (power,), coeff in poly.terms():
        if power % 2 == 0:
            mean += coeff * sp.factorial2(power - 1)
    mean = sp.expand(mean / r**2)
    truncated = sum(mean.coeff(r, 2 * j) * r ** (2 * j) for j in range(order + 1))
    return sp.expand(truncated.subs(r, sp.sqrt(dt)))
