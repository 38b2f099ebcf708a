r"""Exact reference values computed by quadrature: the oracles shared by the package and its tests.

The names are public within the package (see :mod:`nrnn_theory._contract` for the
convention). :func:`em_gbm_exponent` is the exact Lyapunov exponent of the
Euler-Maruyama chain of scalar geometric Brownian motion (docs/theory/oracles.md V4), the closed
form the continuum study (:mod:`nrnn_theory.experiments.study_continuum`) and the
Lyapunov and stability tests check measured exponents against.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


__all__ = ["em_gbm_exponent", "normal_expectation"]

#: Standard deviations beyond which a singularity is treated as absent (its far side
#: carries Gaussian mass below 1e-196).
CUT = 30.0


def normal_expectation(f: Callable[[float], float], root: float | None = None) -> float:
    r""":math:`\mathbb E f(\xi)` for :math:`\xi\sim\mathcal N(0, 1)` by adaptive quadrature.

    ``f`` may have an integrable singularity at ``root`` (e.g. :math:`\log|a + s\xi|`);
    the integral is then split there. A root beyond ``CUT`` (30) standard deviations is
    ignored and the integral taken over ``[-CUT, CUT]`` instead: the split would
    overflow the density for a root near :math:`\pm 10^{300}` (``s`` tiny).

    Parameters
    ----------
    f : callable
        ``f(x) -> float`` (vectorised over numpy arrays or not).
    root : float, optional
        Where ``f`` has an integrable singularity (default: none).

    Returns
    -------
    float

    Examples
    --------
    >>> round(normal_expectation(lambda x: x * x), 10)
    1.0
    """
    from scipy import integrate, stats

    def integrand(x):
        return f(x) * stats.norm.pdf(x)

    if root is None:
        return integrate.quad(integrand, -math.inf, math.inf, limit=200)[0]
    if abs(root) > CUT:
        return integrate.quad(integrand, -CUT, CUT, limit=200)[0]
    left, _ = integrate.quad(integrand, -math.inf, root, limit=200)
    right, _ = integrate.quad(integrand, root, math.inf, limit=200)
    return left + right


def em_gbm_exponent(lam: float, sigma: float, dt: float) -> float:
    r"""Exact exponent of the Euler-Maruyama chain of scalar GBM (docs/theory/oracles.md V4).

    .. math:: \lambda_{\rm EM} = \frac1{\Delta t}\,\mathbb E\log|1 + \lambda\Delta t +
              \sigma\sqrt{\Delta t}\,\xi|,\qquad \xi\sim\mathcal N(0, 1),

    by :func:`normal_expectation`, split at the integrable log singularity
    :math:`\xi = -(1 + \lambda\Delta t)/(\sigma\sqrt{\Delta t})`; for
    :math:`\sigma = 0` it is :math:`\log|1 + \lambda\Delta t|/\Delta t`. As
    :math:`\Delta t\to 0` it tends to :math:`\lambda - \sigma^2/2`.

    Parameters
    ----------
    lam : float
        Drift rate :math:`\lambda`.
    sigma : float
        Noise level :math:`\sigma \ge 0`.
    dt : float
        Step size :math:`\Delta t > 0`.

    Returns
    -------
    float

    Examples
    --------
    >>> round(em_gbm_exponent(1.0, 2.0, 0.1), 4)
    -1.138
    """
    a = 1.0 + lam * dt
    s = sigma * math.sqrt(dt)
    if s == 0:
        return math.log(abs(a)) / dt
    return normal_expectation(lambda x: np.log(np.abs(a + s * x)), -a / s) / dt
