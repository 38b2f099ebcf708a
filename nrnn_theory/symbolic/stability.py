r"""Symbolic derivations of the stability bounds of docs/theory/stability.md.

The numeric counterparts are in :mod:`nrnn_theory.stability`.

* :func:`ito_generator_expr`: the Itô generator
  :math:`\mathcal LV = V_x^\top F + \tfrac12\mathrm{tr}(G^\top V_{xx}G)`.
* :func:`difference_generator_expr`: :math:`\mathcal L|\Delta|^2` for the difference of
  two trajectories sharing the noise path, with scalar or diagonal multiplicative
  noise: :math:`2\Delta^\top F + \epsilon^2\sigma_2^2|\Delta|^2`.
* :func:`mao_constants_expr` and :func:`almost_sure_bound_expr`: the constants
  :math:`c_2, c_3` of Mao's theorem (docs/theory/stability.md (b)) and the resulting almost-sure
  exponent bounds :math:`\hat\lambda - \tfrac12\epsilon^2\sigma_2^2` (scalar) and
  :math:`\hat\lambda + \epsilon^2\sigma_2^2(\tfrac12 - \tfrac1{d_h})` (diagonal).
* :func:`mean_square_rate_expr`: the rate :math:`\hat\lambda + \tfrac12\epsilon^2\sigma_2^2`
  of :math:`(\mathbb E|\Delta|^2)^{1/2}` (docs/theory/stability.md (e)).
* :func:`gbm_exponent_expr`: the exponent :math:`\lambda - \sigma^2/2` of scalar
  geometric Brownian motion, by Itô's formula on :math:`\log|x|` (docs/theory/oracles.md V4).

The one step not done by sympy in general dimension is the power-mean inequality
:math:`\sum_i\Delta_i^4 \ge |\Delta|^4/d_h` behind the diagonal bound; it is checked
as an exact sum-of-squares identity for the dimension at hand
(:func:`power_mean_identity_expr`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import sympy as sp

from nrnn_theory.symbolic._symbols import epsilon, lam, sigma, sigma2


__all__ = [
    "almost_sure_bound_expr",
    "difference_generator_expr",
    "gbm_exponent_expr",
    "ito_generator_expr",
    "lam_hat",
    "mao_constants_expr",
    "mao_exponent_expr",
    "mean_square_rate_expr",
    "power_mean_identity_expr",
]

#: The one-sided constant :math:`\hat\lambda` (any real number).
lam_hat = sp.Symbol("lambda_hat", real=True)


def ito_generator_expr(V: sp.Expr, x: list[sp.Symbol], F: sp.Matrix, G: sp.Matrix) -> sp.Expr:
    r"""Itô generator of a function V of an Itô process.

    .. math:: \mathcal LV = \nabla V^\top F + \tfrac12\mathrm{tr}(G^\top\nabla^2V\,G)

    Parameters
    ----------
    V : sympy expression in ``x``
    x : list of Symbol, length n
    F : Matrix, shape (n, 1)
        Drift.
    G : Matrix, shape (n, r)
        Diffusion (``r`` independent Brownian motions).

    Examples
    --------
    >>> x = sp.Symbol("x", positive=True)
    >>> ito_generator_expr(sp.log(x), [x], sp.Matrix([lam * x]), sp.Matrix([[sigma * x]]))
    lambda - sigma**2/2
    """
    grad = sp.Matrix([sp.diff(V, xi) for xi in x])
    hess = sp.hessian(V, x)
    return sp.simplify((grad.T * F)[0, 0] + sp.Rational(1, 2) * (G.T * hess * G).trace())


def _difference_system(structure: str, n: int):
    delta = sp.symbols(f"Delta_1:{n + 1}", real=True)
    F = sp.Matrix(sp.symbols(f"F_1:{n + 1}", real=True))
    s = epsilon * sigma2
    d = sp.Matrix(delta)
    G = s * d if structure == "scalar" else s * sp.diag(*delta)
    V = sum(di**2 for di in delta)
    return delta, F, G, V


def difference_generator_expr(structure: Literal["scalar", "diagonal"], n: int) -> sp.Expr:
    r""":math:`\mathcal L|\Delta|^2` for :math:`d\Delta = F\,dt + G\,dB` in dimension ``n``.

    ``"scalar"``: :math:`G = \epsilon\sigma_2\Delta` (one shared Brownian motion);
    ``"diagonal"``: :math:`G = \epsilon\sigma_2\mathrm{diag}(\Delta)`. ``F`` stands for
    :math:`f(h, x) - f(h', x)` (symbols ``F_i``). Additive noise cancels in
    :math:`\Delta` and does not appear.

    Parameters
    ----------
    structure : {"scalar", "diagonal"}
        How the multiplicative noise enters (one shared Brownian motion, or one per unit).
    n : int
        The dimension :math:`d_h` of :math:`\Delta`.

    Returns
    -------
    sympy.Expr

    Examples
    --------
    >>> difference_generator_expr("scalar", 2)
    2*Delta_1*F_1 + 2*Delta_2*F_2 + epsilon**2*sigma_2**2*(Delta_1**2 + Delta_2**2)
    """
    delta, F, G, V = _difference_system(structure, n)
    LV = ito_generator_expr(V, list(delta), F, G)
    return sp.expand(LV).collect(epsilon**2 * sigma2**2)


def power_mean_identity_expr(n: int) -> sp.Expr:
    r""":math:`n\sum_i\Delta_i^4 - (\sum_i\Delta_i^2)^2 - \sum_{i<j}(\Delta_i^2-\Delta_j^2)^2`.

    Identically zero, which proves :math:`\sum_i\Delta_i^4 \ge |\Delta|^4/n` (the step
    behind the diagonal bound) for this ``n``.

    Parameters
    ----------
    n : int
        The dimension.

    Returns
    -------
    sympy.Expr
        Zero after expansion.

    Examples
    --------
    >>> power_mean_identity_expr(4)
    0
    """
    delta = sp.symbols(f"Delta_1:{n + 1}", real=True)
    lhs = n * sum(d**4 for d in delta) - sum(d**2 for d in delta) ** 2
    sos = sum((delta[i] ** 2 - delta[j] ** 2) ** 2 for i in range(n) for j in range(i + 1, n))
    return sp.expand(lhs - sos)


@lru_cache(maxsize=32)
def mao_constants_expr(structure: Literal["scalar", "diagonal"], n: int) -> tuple[sp.Expr, sp.Expr]:
    r"""Mao's constants :math:`(c_2, c_3)` for :math:`V = |\Delta|^2` (docs/theory/stability.md
    (b)).

    :math:`c_2` bounds :math:`\mathcal LV/V` after the one-sided bound
    :math:`\Delta^\top F \le \hat\lambda|\Delta|^2`; :math:`c_3` bounds
    :math:`|V_x G|^2/V^2` from below (exactly for ``"scalar"``; through the
    power-mean inequality for ``"diagonal"``).

    Parameters
    ----------
    structure : {"scalar", "diagonal"}
        How the multiplicative noise enters (one shared Brownian motion, or one per unit).
    n : int
        The dimension :math:`d_h` of :math:`\Delta`.

    Returns
    -------
    c2, c3 : sympy.Expr

    Examples
    --------
    >>> mao_constants_expr("diagonal", 3)
    (epsilon**2*sigma_2**2 + 2*lambda_hat, 4*epsilon**2*sigma_2**2/3)
    """
    delta, F, G, V = _difference_system(structure, n)
    LV = sp.expand(ito_generator_expr(V, list(delta), F, G))
    drift_part = sp.expand(sum(2 * d * f for d, f in zip(delta, F, strict=True)))
    if sp.expand(LV - LV.subs({f: 0 for f in F}) - drift_part) != 0:
        raise AssertionError("the generator is not 2 Delta.F + (noise part)")  # pragma: no cover
    c2 = sp.simplify((2 * lam_hat * V + LV.subs({f: 0 for f in F})) / V)
    Vx = sp.Matrix([[sp.diff(V, d) for d in delta]])
    vg2 = sp.expand(sum(e**2 for e in Vx * G))  # |V_x G|^2
    if structure == "scalar":
        c3 = sp.simplify(vg2 / V**2)
    else:
        quartic = sum(d**4 for d in delta)
        # vg2 = 4 s^2 sum Delta^4 exactly, and sum Delta^4 >= V^2 / n.
        coeff = sp.simplify(vg2 / quartic)
        if power_mean_identity_expr(n) != 0:  # pragma: no cover - an identity
            raise AssertionError("power-mean identity failed")
        c3 = sp.simplify(coeff / n)
    return c2, c3


def mao_exponent_expr(c2: sp.Expr, c3: sp.Expr, p: int = 2) -> sp.Expr:
    r"""Mao's almost-sure bound :math:`-(c_3 - 2c_2)/(2p)` (docs/theory/stability.md (b)).

    Parameters
    ----------
    c2, c3 : sympy.Expr
        Mao's constants, e.g. from :func:`mao_constants_expr`.
    p : int
        The power in :math:`c_1|x|^p \le V` (default 2, for :math:`V = |\Delta|^2`).

    Returns
    -------
    sympy.Expr
    """
    return sp.simplify(-(c3 - 2 * c2) / (2 * p))


def almost_sure_bound_expr(structure: Literal["scalar", "diagonal"], n: int) -> sp.Expr:
    r"""Almost-sure exponent bound for multiplicative noise, derived.

    Theory: docs/theory/stability.md (c)-(d).

    Parameters
    ----------
    structure : {"scalar", "diagonal"}
        How the multiplicative noise enters (one shared Brownian motion, or one per unit).
    n : int
        The dimension :math:`d_h` of :math:`\Delta`.

    Returns
    -------
    sympy.Expr
        In the symbols ``lambda_hat``, ``epsilon``, ``sigma_2``.

    Examples
    --------
    >>> almost_sure_bound_expr("scalar", 2)
    -epsilon**2*sigma_2**2/2 + lambda_hat
    >>> almost_sure_bound_expr("diagonal", 3)
    epsilon**2*sigma_2**2/6 + lambda_hat
    """
    c2, c3 = mao_constants_expr(structure, n)
    return sp.expand(mao_exponent_expr(c2, c3, p=2))


def mean_square_rate_expr(structure: Literal["scalar", "diagonal"] = "scalar", n: int = 2):
    r"""Rate of :math:`(\mathbb E|\Delta|^2)^{1/2}`: :math:`c_2/2` (docs/theory/stability.md (e)).

    From :math:`\tfrac{d}{dt}\mathbb E|\Delta|^2 = \mathbb E\mathcal LV \le
    c_2\mathbb E|\Delta|^2`; the same for both structures.

    Parameters
    ----------
    structure : {"scalar", "diagonal"}
        How the multiplicative noise enters (one shared Brownian motion, or one per unit).
    n : int
        The dimension :math:`d_h` of :math:`\Delta`.

    Returns
    -------
    sympy.Expr

    Examples
    --------
    >>> mean_square_rate_expr()
    epsilon**2*sigma_2**2/2 + lambda_hat
    """
    c2, _ = mao_constants_expr(structure, n)
    return sp.expand(c2 / 2)


def gbm_exponent_expr() -> sp.Expr:
    r"""Exponent of :math:`dx = \lambda x\,dt + \sigma x\,dB`: :math:`\lambda - \sigma^2/2`.

    Itô's formula on :math:`\log x` (:math:`x > 0`) gives
    :math:`d\log x = (\lambda - \sigma^2/2)\,dt + \sigma\,dB`, and
    :math:`B_t/t \to 0` almost surely (docs/theory/oracles.md V4).

    Examples
    --------
    >>> gbm_exponent_expr()
    lambda - sigma**2/2
    """
    x = sp.Symbol("x", positive=True)
    return ito_generator_expr(sp.log(x), [x], sp.Matrix([lam * x]), sp.Matrix([[sigma * x]]))
