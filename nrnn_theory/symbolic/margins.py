r"""Symbolic form of the certified margin bound (docs/theory/margins.md, stability.md (f)).

The sound global Lipschitz constant of a score gap :math:`s_y - s_j` of the clean
NRNN over a sequence of :math:`M` steps,

.. math:: L_j = a_j\,d\,u\,\Big(\sum_{k<M}\rho^{2(M-1-k)}\Big)^{1/2},

with :math:`a_j = \|(e_y - e_j)^\top V\|_2`, :math:`d = \max_i|s_i|` the largest
drift step, :math:`u = \|U\|_2` and :math:`\rho` the step-norm bound. The sum is
done by sympy (a ``Piecewise``: :math:`M` at :math:`\rho = 1`), which the numeric
:func:`nrnn_theory.margins.margin_growth` evaluates with ``expm1``.
"""

from __future__ import annotations

import sympy as sp

from nrnn_theory.symbolic._symbols import n_steps, rho


__all__ = ["margin_growth_expr", "margin_bound_expr"]


def margin_growth_expr() -> sp.Expr:
    r""":math:`(\sum_{i=0}^{M-1}\rho^{2i})^{1/2}` in closed form, in ``rho`` and ``n_steps``.

    Examples
    --------
    >>> margin_growth_expr().subs({rho: 1, n_steps: 4})
    2
    """
    i = sp.Symbol("i", integer=True, nonnegative=True)
    return sp.sqrt(sp.summation(rho ** (2 * i), (i, 0, n_steps - 1)))


def margin_bound_expr() -> tuple[sp.Expr, tuple[sp.Symbol, ...]]:
    r""":math:`L_j = a\,d\,u\,G(\rho, M)` and its arguments ``(a, d, u, rho, n_steps)``.

    Examples
    --------
    >>> L, args = margin_bound_expr()
    >>> [str(a) for a in args]
    ['a', 'd', 'u', 'rho', 'M']
    """
    a = sp.Symbol("a", nonnegative=True)
    d = sp.Symbol("d", nonnegative=True)
    u = sp.Symbol("u", nonnegative=True)
    return a * d * u * margin_growth_expr(), (a, d, u, rho, n_steps)
