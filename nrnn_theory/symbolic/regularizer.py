r"""Symbolic derivation of the small-noise regularizer (docs/theory/regularizer.md).

Derives, rather than types in, the expansion

.. math:: \mathbb E\,\ell(h_M) = \ell(\bar h_M) + \epsilon\,c_1 + \epsilon^2 c_2
          + \epsilon^3 c_3 + O(\epsilon^4)

of the discrete chain :math:`h_{k+1} = h_k + s\odot f(h_k, x_k) + \epsilon\,G(h_k, x_k)
\eta_k` for small concrete sizes, and checks it against docs/theory/regularizer.md:
:math:`c_1 = c_3 = 0` and :math:`c_2 = \tfrac12(\hat Q + \hat R)`.

How the derivation works
------------------------
The drift, the noise matrix and the loss are *generic*: at each clean state
:math:`\bar h_k` they are represented by independent symbols for their value and
partial derivatives (their Taylor coefficients; e.g. ``f_1,12^(0)`` is
:math:`\partial^2 f_1/\partial h_1\partial h_2` at :math:`\bar h_0`). The perturbation
:math:`\delta_k = h_k - \bar h_k` is propagated through the recursion as a truncated
power series in :math:`\epsilon` with exact polynomial arithmetic (sympy's sparse
polynomial rings), the loss is Taylor-expanded at :math:`\bar h_M`, and each
coefficient is averaged over the draws with moments computed by ``sympy.stats``
(standard normal; for ``"paper_code"`` also the centred uniform :math:`u - \tfrac12`,
:math:`u\sim\mathcal U(0,1)`). Nothing of the documented result is used on this side; the
formula side (:func:`regularizer_formula_expr`) runs the recursions of docs/theory/regularizer.md
:math:`\hat\Sigma_{k+1} = \tilde J_k\hat\Sigma_k\tilde J_k^\top + C_k`,
:math:`m_{k+1} = \tilde J_km_k + \tfrac12s\odot(\mathrm{tr}\,\nabla^2f_i\,\hat\Sigma_k)_i`.

Noise models
------------
``"generic"``
    :math:`G` a generic :math:`H\times H` matrix function, Gaussian draws.
``"diagonal"``, ``"scalar"``
    The ``"sde"`` structures: :math:`G\eta = \sqrt{\Delta t}(\sigma_1 + \sigma_2 h)\odot\xi`
    or :math:`\sqrt{\Delta t}(\sigma_1\xi + \sigma_2 h\,\beta)`, Gaussian draws.
``"paper_code"``
    The authors' step :math:`h + d\odot m\odot f(h) + a\zeta` with
    :math:`m = 1 - \mu + \mu u`, :math:`u\sim\mathcal U(0,1)`, written around its mean
    step :math:`s = (1-\mu/2)d` as :math:`h + s\odot f + \epsilon[a\zeta + \mu\,d\odot
    (u - \tfrac12)\odot f(h)]` (:math:`\epsilon = 1` is the code's chain).

Also: the concrete NRNN regularizer as a sympy expression (:func:`nrnn_regularizer_expr`)
for comparison with :func:`nrnn_theory.explicit_regularizer`, the continuous-time
limit of the scalar linear SDE in closed form (:func:`scalar_linear_regularizer_expr`,
docs/theory/regularizer.md), and :func:`derivation_text` / ``python -m
nrnn_theory.symbolic.regularizer`` to print a derivation.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import sympy as sp
from sympy.polys.domains import QQ
from sympy.polys.rings import ring

from nrnn_theory._contract import check_choice, check_positive_int
from nrnn_theory.symbolic import _symbols
from nrnn_theory.symbolic._codegen import to_numpy_fn
from nrnn_theory.symbolic.dynamics import (
    NRNNSymbols,
    clean_chain_expr,
    cross_entropy_expr,
    drift_expr,
)


__all__ = [
    "NOISE_MODELS",
    "ChainSymbols",
    "Expansion",
    "ScalarLinearRegularizer",
    "derivation_text",
    "expansion_expr",
    "main",
    "nrnn_regularizer_expr",
    "nrnn_regularizer_fn",
    "regularizer_formula_expr",
    "scalar_linear_regularizer_expr",
]

NoiseModel = Literal["generic", "diagonal", "scalar", "paper_code"]
NOISE_MODELS: tuple[str, ...] = ("generic", "diagonal", "scalar", "paper_code")

#: Largest sizes accepted (the number of terms grows quickly with H, M and the order).
_MAX_H, _MAX_M, _MAX_ORDER = 3, 4, 4


# ------------------------------------------------------------------------------ symbols
def _idx(js: Sequence[int]) -> str:
    return "".join(str(j + 1) for j in js)


def _multisets(H: int, p: int):
    return itertools.combinations_with_replacement(range(H), p)


@dataclass(frozen=True)
class ChainSymbols:
    r"""Symbols of the generic chain of a derivation.

    Attributes
    ----------
    H, M, order, r : int
        Hidden size, steps, expansion order, noise dimension.
    noise : str
        The noise model (module docstring).
    s : tuple of sympy.Expr
        Step vector :math:`s` (symbols ``s_i``; :math:`(1-\mu/2)d_i` for ``"paper_code"``).
    f : dict
        ``(k, i, js) -> Symbol``: :math:`\partial^{|js|}f_i/\partial h_{js}` at
        :math:`\bar h_k` (``js`` sorted; ``js = ()`` is the value, ``"paper_code"`` only).
    G : dict
        ``(k, i, a, js) -> Symbol``: derivatives of :math:`G_{ia}` (``"generic"`` only).
    hbar : dict
        ``(k, i) -> Symbol``: clean states (``"diagonal"``, ``"scalar"``).
    loss : dict
        ``js -> Symbol``: derivatives of :math:`\ell` at :math:`\bar h_M`.
    eta : dict
        ``(k, a) -> Symbol``: the draws of step ``k``.
    dist : dict
        ``Symbol -> "normal" | "uniform"`` (uniform: :math:`u - \tfrac12`).
    d : tuple of sympy.Symbol
        Per-unit step :math:`d` (``"paper_code"``).
    """

    H: int
    M: int
    order: int
    r: int
    noise: str
    s: tuple
    f: dict
    G: dict
    hbar: dict
    loss: dict
    eta: dict
    dist: dict
    d: tuple

    @classmethod
    def create(cls, H: int, M: int, order: int, noise: str) -> ChainSymbols:
        r = H + 1 if noise == "scalar" else (2 * H if noise == "paper_code" else H)
        f, G, hbar, eta, dist = {}, {}, {}, {}, {}
        first = 0 if noise == "paper_code" else 1
        for k in range(M):
            for i in range(H):
                for p in range(first, order + 1):
                    for js in _multisets(H, p):
                        name = f"f_{i + 1}" + (f",{_idx(js)}" if js else "") + f"^({k})"
                        f[k, i, js] = sp.Symbol(name, real=True)
                if noise == "generic":
                    for a in range(r):
                        for p in range(order):
                            for js in _multisets(H, p):
                                name = f"G_{i + 1}{a + 1}" + (f",{_idx(js)}" if js else "")
                                G[k, i, a, js] = sp.Symbol(f"{name}^({k})", real=True)
                if noise in ("diagonal", "scalar"):
                    hbar[k, i] = sp.Symbol(f"hbar_{i + 1}^({k})", real=True)
            for a in range(r):
                if noise == "paper_code":
                    label = f"zeta_{a + 1}" if a < H else f"u_{a - H + 1}"
                elif noise == "scalar" and a == H:
                    label = "beta"
                else:
                    label = f"eta_{a + 1}"
                eta[k, a] = sp.Symbol(f"{label}^({k})", real=True)
                dist[eta[k, a]] = "uniform" if noise == "paper_code" and a >= H else "normal"
        loss = {
            js: sp.Symbol(f"l_{_idx(js)}", real=True)
            for p in range(1, order + 1)
            for js in _multisets(H, p)
        }
        d = tuple(sp.Symbol(f"d_{i + 1}", positive=True) for i in range(H))
        if noise == "paper_code":
            s = tuple((1 - _symbols.mu / 2) * di for di in d)
        else:
            s = tuple(sp.Symbol(f"s_{i + 1}", positive=True) for i in range(H))
        return cls(H, M, order, r, noise, s, f, G, hbar, loss, eta, dist, d)

    def jacobian(self, k: int) -> sp.Matrix:
        r""":math:`\partial_hf(\bar h_k)` as an (H, H) matrix of symbols.

        Parameters
        ----------
        k : int
            The step, ``0 <= k < M``.

        Returns
        -------
        sympy.Matrix, shape (H, H)
        """
        return sp.Matrix(self.H, self.H, lambda i, j: self.f[k, i, (j,)])

    def drift_hessian(self, k: int, i: int) -> sp.Matrix:
        r""":math:`\nabla^2f_i(\bar h_k)` (symmetric (H, H) matrix of symbols).

        Parameters
        ----------
        k : int
            The step, ``0 <= k < M``.
        i : int
            The drift component, ``0 <= i < H``.

        Returns
        -------
        sympy.Matrix, shape (H, H)
        """
        return sp.Matrix(self.H, self.H, lambda j, m: self.f[k, i, tuple(sorted((j, m)))])

    def noise_covariance(self, k: int) -> sp.Matrix:
        r"""The documented :math:`C_k = G_kG_k^\top` for the noise model, at :math:`\bar h_k`.

        Parameters
        ----------
        k : int
            The step, ``0 <= k < M``.

        Returns
        -------
        sympy.Matrix, shape (H, H)
        """
        H = self.H
        if self.noise == "generic":
            Gk = sp.Matrix(H, self.r, lambda i, a: self.G[k, i, a, ()])
            return Gk * Gk.T
        if self.noise == "paper_code":
            a, mu = _symbols.a, _symbols.mu
            return a**2 * sp.eye(H) + mu**2 / 12 * sp.diag(
                *[(self.d[i] * self.f[k, i, ()]) ** 2 for i in range(H)]
            )
        s1, s2, dt = _symbols.sigma1, _symbols.sigma2, _symbols.dt
        hb = sp.Matrix(H, 1, lambda i, _: self.hbar[k, i])
        if self.noise == "diagonal":
            return dt * sp.diag(*[(s1 + s2 * hb[i]) ** 2 for i in range(H)])
        return dt * (s1**2 * sp.eye(H) + s2**2 * hb * hb.T)


# ---------------------------------------------------------------- the derivation engine
@lru_cache(maxsize=32)
def _moment(dist: str, n: int) -> sp.Rational:
    """E[X^n] by sympy.stats for X ~ N(0, 1) or X ~ U(-1/2, 1/2)."""
    from sympy.stats import E, Normal, Uniform

    X = Normal("X", 0, 1) if dist == "normal" else Uniform("X", -sp.S.Half, sp.S.Half)
    return sp.nsimplify(sp.simplify(E(X**n)))


def _derive(cs: ChainSymbols) -> tuple[sp.Expr, ...]:
    r"""E[coefficient of :math:`\epsilon^n`] of :math:`\ell(h_M) - \ell(\bar h_M)`, n = 0..order."""
    H, N = cs.H, cs.order
    rdt = sp.Symbol("sqrt_dt", positive=True)  # a ring generator standing for sqrt(dt)
    gens = {rdt, _symbols.sigma1, _symbols.sigma2, _symbols.a, _symbols.mu, *cs.d}
    for group in (cs.f, cs.G, cs.hbar, cs.loss, cs.eta):
        gens.update(group.values())
    gens.update(x for x in cs.s if isinstance(x, sp.Symbol))
    gens = sorted(gens, key=sp.default_sort_key)
    R, *ring_gens = ring(gens, QQ)
    g = dict(zip(gens, ring_gens, strict=True))
    s = [g[x] if isinstance(x, sp.Symbol) else R.from_expr(sp.expand(x)) for x in cs.s]

    def zero():
        return [R.zero] * (N + 1)

    def mul(x, y):
        out = zero()
        for i, xi in enumerate(x):
            if xi:
                for j in range(N + 1 - i):
                    if y[j]:
                        out[i + j] += xi * y[j]
        return out

    def add(x, y):
        return [a + b for a, b in zip(x, y, strict=True)]

    def scale(c, x):
        return [c * a for a in x]

    def powers(delta, pmax):
        pw = {(): [R.one] + [R.zero] * N}
        for p in range(1, pmax + 1):
            for js in _multisets(H, p):
                pw[js] = mul(pw[js[:-1]], delta[js[-1]])
        return pw

    def taylor(jet, pw, pmin, pmax):
        out = zero()
        for p in range(max(pmin, 0), pmax + 1):
            for js in _multisets(H, p):
                w = math.prod(math.factorial(js.count(j)) for j in set(js))
                out = add(out, scale(g[jet(js)] * QQ(1, w), pw[js]))
        return out

    delta = [zero() for _ in range(H)]
    for k in range(cs.M):
        pw = powers(delta, N)
        new = []
        for i in range(H):
            df = taylor(lambda js, k=k, i=i: cs.f[k, i, js], pw, 1, N)
            noise = zero()
            if cs.noise == "generic":
                for a in range(cs.r):
                    Gs = taylor(lambda js, k=k, i=i, a=a: cs.G[k, i, a, js], pw, 0, N - 1)
                    noise = add(noise, scale(g[cs.eta[k, a]], Gs))
            elif cs.noise == "paper_code":
                fval = add(df, [g[cs.f[k, i, ()]]] + [R.zero] * N)
                mult = scale(g[_symbols.mu] * g[cs.d[i]] * g[cs.eta[k, H + i]], fval)
                noise = add(mult, [g[_symbols.a] * g[cs.eta[k, i]]] + [R.zero] * N)
            else:
                s1, s2 = g[_symbols.sigma1], g[_symbols.sigma2]
                level = add(scale(s2, delta[i]), [s1 + s2 * g[cs.hbar[k, i]]] + [R.zero] * N)
                if cs.noise == "diagonal":
                    noise = scale(g[rdt] * g[cs.eta[k, i]], level)
                else:
                    mult = add(level, [-s1] + [R.zero] * N)  # sigma2 (hbar + delta)
                    noise = add(
                        scale(g[rdt] * g[cs.eta[k, H]], mult),
                        [g[rdt] * s1 * g[cs.eta[k, i]]] + [R.zero] * N,
                    )
            noise = [R.zero, *noise[:-1]]  # times epsilon
            new.append(add(add(delta[i], scale(s[i], df)), noise))
        delta = new
    L = taylor(lambda js: cs.loss[js], powers(delta, N), 1, N)

    eta_pos = {gens.index(e): cs.dist[e] for e in cs.eta.values()}
    coefficients = []
    for poly in L:
        total = R.zero
        for monom, coeff in poly.terms():
            m = sp.Integer(1)
            for pos, dist in eta_pos.items():
                if monom[pos]:
                    m *= _moment(dist, monom[pos])
            if m == 0:
                continue
            rest = list(monom)
            for pos in eta_pos:
                rest[pos] = 0
            total += R({tuple(rest): coeff * QQ(m.p, m.q)})
        coefficients.append(total.as_expr().xreplace({rdt: sp.sqrt(_symbols.dt)}))
    return tuple(coefficients)


def _check_sizes(H: int, M: int, order: int, noise: str) -> None:
    check_positive_int("H", H)
    check_positive_int("M", M)
    check_positive_int("order", order, minimum=2)
    check_choice("noise", noise, NOISE_MODELS)
    if H > _MAX_H or M > _MAX_M or order > _MAX_ORDER:
        raise ValueError(
            f"H, M, order: expected at most ({_MAX_H}, {_MAX_M}, {_MAX_ORDER}) (the symbolic "
            f"expansion grows combinatorially), got ({H}, {M}, {order})"
        )


# ---------------------------------------------------------------------- public builders
def regularizer_formula_expr(cs: ChainSymbols) -> tuple[sp.Expr, sp.Expr]:
    r"""docs/theory/regularizer.md's :math:`(\hat Q, \hat R)` from its recursions, in the chain's
    symbols.

    .. math:: \hat\Sigma_{k+1} = \tilde J_k\hat\Sigma_k\tilde J_k^\top + C_k,\quad
              m_{k+1} = \tilde J_km_k + \tfrac12 s\odot\big(\mathrm{tr}(\nabla^2f_i\,
              \hat\Sigma_k)\big)_i,\quad \hat R = \mathrm{tr}(H_\ell\hat\Sigma_M),\quad
              \hat Q = 2g^\top m_M,

    with :math:`\tilde J_k = I + \mathrm{diag}(s)\,\partial_hf(\bar h_k)`. For the NRNN
    drift :math:`\nabla^2f_i = \tanh''(z_i)w_iw_i^\top`, which gives the documented
    :math:`\hat v_k`.

    Parameters
    ----------
    cs : ChainSymbols
        The symbols of a chain (its Jacobians, drift Hessians, noise covariances and loss
        derivatives), e.g. ``expansion_expr(...).symbols``.

    Returns
    -------
    Q_hat, R_hat : sympy.Expr

    Examples
    --------
    >>> cs = ChainSymbols.create(H=1, M=1, order=2, noise="generic")
    >>> regularizer_formula_expr(cs)
    (0, G_11^(0)**2*l_11)
    """
    H = cs.H
    Sdiag = sp.diag(*cs.s)
    Sigma = sp.zeros(H, H)
    m = sp.zeros(H, 1)
    for k in range(cs.M):
        Jt = sp.eye(H) + Sdiag * cs.jacobian(k)
        curv = sp.Matrix([(cs.drift_hessian(k, i) * Sigma).trace() for i in range(H)])
        m = Jt * m + sp.Rational(1, 2) * Sdiag * curv
        Sigma = Jt * Sigma * Jt.T + cs.noise_covariance(k)
    g = sp.Matrix(H, 1, lambda i, _: cs.loss[(i,)])
    Hl = sp.Matrix(H, H, lambda i, j: cs.loss[tuple(sorted((i, j)))])
    Q = sp.expand(2 * (g.T * m)[0])
    R = sp.expand((Hl * Sigma).trace())
    return Q, R


@dataclass(frozen=True)
class Expansion:
    r"""A derived small-noise expansion and the documented formula in the same symbols.

    Attributes
    ----------
    symbols : ChainSymbols
    coefficients : tuple of sympy.Expr
        :math:`\mathbb E[c_n]` for :math:`n = 0, \dots, \text{order}`, where
        :math:`\ell(h_M) - \ell(\bar h_M) = \sum_n\epsilon^nc_n`.
    Q, R : sympy.Expr
        docs/theory/regularizer.md's :math:`\hat Q, \hat R` (:func:`regularizer_formula_expr`).
    """

    symbols: ChainSymbols
    coefficients: tuple
    Q: sp.Expr
    R: sp.Expr

    @property
    def derived(self) -> sp.Expr:
        r"""The derived regularizer :math:`2\,\mathbb E[c_2]` (equals :math:`\hat Q + \hat R`)."""
        return 2 * self.coefficients[2]

    def difference(self) -> sp.Expr:
        r"""Simplified :math:`\mathbb E[c_2] - \tfrac12(\hat Q + \hat R)`.

        It is 0 if the documented formula holds.
        """
        return sp.simplify(sp.expand(self.coefficients[2] - (self.Q + self.R) / 2))

    def odd_coefficients(self) -> tuple:
        r"""The derived :math:`\mathbb E[c_1], \mathbb E[c_3], \dots` (all 0 by symmetry)."""
        return tuple(self.coefficients[n] for n in range(1, len(self.coefficients), 2))

    def verify(self) -> bool:
        """True when the formula matches and every odd coefficient vanishes."""
        return self.difference() == 0 and all(c == 0 for c in self.odd_coefficients())


def expansion_expr(H: int, M: int, *, noise: NoiseModel = "generic", order: int = 3) -> Expansion:
    r"""Derive :math:`\mathbb E\,\ell(h_M)` to order :math:`\epsilon^{\rm order}` (see module doc).

    Parameters
    ----------
    H, M : int
        Hidden size (<= 3) and number of steps (<= 4).
    noise : {"generic", "diagonal", "scalar", "paper_code"}
        The noise model.
    order : int
        Highest power of :math:`\epsilon` (2 to 4); 3 shows that the cubic term vanishes.

    Returns
    -------
    Expansion

    Examples
    --------
    >>> e = expansion_expr(1, 1, order=3)
    >>> e.coefficients[1], e.coefficients[3]
    (0, 0)
    >>> e.coefficients[2]
    G_11^(0)**2*l_11/2
    >>> e.difference()
    0
    """
    _check_sizes(H, M, order, noise)
    cs = ChainSymbols.create(H, M, order, noise)
    Q, R = regularizer_formula_expr(cs)
    return Expansion(cs, _derive(cs), Q, R)


# --------------------------------------------------------------------- concrete NRNN
def _concrete_jets(cs: ChainSymbols, sym: NRNNSymbols, hs: list[sp.Matrix]) -> dict:
    """Substitution of the generic jets by the NRNN's drift, states and loss derivatives."""
    H = cs.H
    y = sp.Matrix(H, 1, lambda i, _: sp.Dummy(f"y{i}", real=True))
    sub = {}
    for k, x in enumerate(sym.xs):
        f = drift_expr(sym, y, x)
        point = dict(zip(y, hs[k], strict=True))
        for (kk, i, js), symbol in cs.f.items():
            if kk == k:
                expr = f[i]
                for j in js:
                    expr = sp.diff(expr, y[j])
                sub[symbol] = expr.xreplace(point)
        for i in range(H):
            if (k, i) in cs.hbar:
                sub[cs.hbar[k, i]] = hs[k][i]
    ell = cross_entropy_expr(sym, y)
    point = dict(zip(y, hs[-1], strict=True))
    for js, symbol in cs.loss.items():
        expr = ell
        for j in js:
            expr = sp.diff(expr, y[j])
        sub[symbol] = expr.xreplace(point)
    for si, di in zip(cs.s, sym.d, strict=True):
        if isinstance(si, sp.Symbol):
            sub[si] = di
    return sub


@lru_cache(maxsize=16)
def nrnn_regularizer_expr(
    H: int,
    M: int,
    *,
    C: int = 2,
    D: int = 1,
    convention: str = "sde",
    structure: str = "diagonal",
) -> tuple[sp.Expr, NRNNSymbols]:
    r"""Derived :math:`\hat Q + \hat R` of a concrete NRNN with cross-entropy, as an expression.

    The generic second-order expansion (:func:`expansion_expr`, order 2) with its
    symbols replaced by the NRNN drift :math:`\alpha Ah + \tanh(Wh + Ux_k + b)`, its
    derivatives (by ``sympy.diff``) at the clean states, and the derivatives of
    :math:`\ell = \mathrm{CE}(Vh + c, y)` at :math:`\bar h_M`. The ``"sde"`` noise is
    per unit :math:`\epsilon`; ``"paper_code"`` uses ``a``, ``mu`` and the reference
    step :math:`(1-\mu/2)d`.

    Parameters
    ----------
    H, M : int
        Hidden size and number of steps (small: the expression grows quickly).
    C, D : int
        Number of classes (default 2) and input size (default 1).
    convention : {"sde", "paper_code"}
        The discretization convention.
    structure : {"diagonal", "scalar"}
        The ``"sde"`` noise structure (``"paper_code"`` requires ``"diagonal"``).

    Returns
    -------
    expr : sympy.Expr
    symbols : NRNNSymbols
        Its arguments; :meth:`NRNNSymbols.values` maps a model to them.
    """
    check_choice("convention", convention, ("sde", "paper_code"))
    check_choice("structure", structure, ("diagonal", "scalar"))
    if convention == "paper_code" and structure != "diagonal":
        raise ValueError("structure: expected 'diagonal' for convention 'paper_code'")
    noise = "paper_code" if convention == "paper_code" else structure
    e = expansion_expr(H, M, noise=noise, order=2)
    sym = NRNNSymbols.create(H, D, C, M)
    step = (1 - sym.mu / 2) * sym.d if convention == "paper_code" else sym.d
    hs = clean_chain_expr(sym, step)
    return e.derived.xreplace(_concrete_jets(e.symbols, sym, hs)), sym


@lru_cache(maxsize=16)
def _staged(H: int, M: int, C: int, D: int, convention: str, structure: str):
    """Lambdified pieces of the derived NRNN regularizer (see nrnn_regularizer_fn)."""
    noise = "paper_code" if convention == "paper_code" else structure
    e = expansion_expr(H, M, noise=noise, order=2)
    cs = e.symbols
    sym = NRNNSymbols.create(H, D, C, M)
    args = sym.args()
    y = tuple(sp.Symbol(f"y_{i + 1}", real=True) for i in range(H))
    yv = sp.Matrix(y)
    step = (1 - sym.mu / 2) * sym.d if convention == "paper_code" else sym.d
    steps, jets = [], []
    for k, x in enumerate(sym.xs):
        f = drift_expr(sym, yv, x)
        nxt = yv + step.multiply_elementwise(f)
        steps.append([to_numpy_fn(nxt[i], (*args, *y)) for i in range(H)])
        for (kk, i, js), symbol in cs.f.items():
            if kk == k:
                expr = f[i]
                for j in js:
                    expr = sp.diff(expr, y[j])
                jets.append((symbol, k, to_numpy_fn(expr, (*args, *y))))
    ell = cross_entropy_expr(sym, yv)
    for js, symbol in cs.loss.items():
        expr = ell
        for j in js:
            expr = sp.diff(expr, y[j])
        jets.append((symbol, M, to_numpy_fn(expr, (*args, *y))))
    hbar = [(cs.hbar[k, i], k, i) for (k, i) in cs.hbar]
    sub = {si: di for si, di in zip(cs.s, sym.d, strict=True) if isinstance(si, sp.Symbol)}
    derived = e.derived.xreplace(sub)
    poly_args = (*args, *(j[0] for j in jets), *(h[0] for h in hbar))
    return sym, steps, jets, hbar, to_numpy_fn(derived, poly_args)


def nrnn_regularizer_fn(
    H: int,
    M: int,
    *,
    C: int = 2,
    D: int = 1,
    convention: str = "sde",
    structure: str = "diagonal",
):
    r"""Numpy evaluation of the derived NRNN regularizer (:func:`nrnn_regularizer_expr`).

    Instead of lambdifying the one nested expression (whose common-subexpression
    elimination takes minutes at H = 2, M = 3), the same derivation is evaluated in
    stages, each a lambdified sympy expression: the clean step :math:`\bar h_{k+1} =
    \bar h_k + s\odot f(\bar h_k, x_k)`, the drift and loss derivatives (``sympy.diff``)
    at the clean states, and the derived :math:`2\,\mathbb E[c_2]` as a polynomial in them.

    Parameters
    ----------
    H, M : int
        Hidden size and number of steps (small: the expression grows quickly).
    C, D : int
        Number of classes (default 2) and input size (default 1).
    convention : {"sde", "paper_code"}
        The discretization convention.
    structure : {"diagonal", "scalar"}
        The ``"sde"`` noise structure (``"paper_code"`` requires ``"diagonal"``).

    Returns
    -------
    fn : callable
        ``fn(*values) -> ndarray`` with ``values = symbols.values(params, xs, labels,
        noise, h0)``.
    symbols : NRNNSymbols

    Examples
    --------
    >>> import torch
    >>> from nrnn_theory import NRNNParams, NoiseSpec
    >>> fn, sym = nrnn_regularizer_fn(1, 1)
    >>> p = NRNNParams(A=-torch.eye(1), W=torch.eye(1), U=torch.ones(1, 1), b=torch.zeros(1),
    ...                V=torch.tensor([[1.0], [-1.0]]), c=torch.zeros(2), dt=0.1)
    >>> vals = sym.values(p, torch.ones(1, 1, 1), torch.tensor([0]), NoiseSpec(sigma1=1.0))
    >>> fn(*vals).round(6).tolist()
    [0.099422]
    """
    check_choice("convention", convention, ("sde", "paper_code"))
    check_choice("structure", structure, ("diagonal", "scalar"))
    if convention == "paper_code" and structure != "diagonal":
        raise ValueError("structure: expected 'diagonal' for convention 'paper_code'")
    sym, steps, jets, hbar, poly = _staged(H, M, C, D, convention, structure)
    args = sym.args()
    h0_pos = [args.index(s) for s in sym.h0]

    def fn(*values):
        states = [[values[p] for p in h0_pos]]
        for k in range(M):
            states.append([step(*values, *states[k]) for step in steps[k]])
        jet_values = [fj(*values, *states[k]) for _, k, fj in jets]
        hbar_values = [states[k][i] for _, k, i in hbar]
        return poly(*values, *jet_values, *hbar_values)

    return fn, sym


# ------------------------------------ continuous time (docs/theory/regularizer.md)
@dataclass(frozen=True)
class ScalarLinearRegularizer:
    r"""Closed forms for :math:`dh = \lambda h\,dt + \epsilon(\sigma_1 + \sigma_2h)\,dB`.

    Attributes
    ----------
    sigma_discrete : sympy.Expr
        :math:`\hat\Sigma_M` of the Euler-Maruyama chain (symbolic sum over k).
    sigma_limit : sympy.Expr
        :math:`\lim_{\Delta t\to0}\hat\Sigma_{T/\Delta t}`.
    sigma_ode : sympy.Expr
        :math:`\Sigma_T` solving :math:`\dot\Sigma = 2\lambda\Sigma + (\sigma_1 + \sigma_2
        \bar h_t)^2`, :math:`\Sigma_0 = 0` (``dsolve``).
    first_order : sympy.Expr
        Coefficient :math:`c_1` in :math:`\hat\Sigma = \Sigma_T + c_1\Delta t + O(\Delta t^2)`.
    R, Q : sympy.Expr
        :math:`R = \ell''(\bar h_T)\Sigma_T` and :math:`Q = 0` (linear drift).
    hbar_T : sympy.Expr
        :math:`\bar h_T = h_0e^{\lambda T}`.
    """

    sigma_discrete: sp.Expr
    sigma_limit: sp.Expr
    sigma_ode: sp.Expr
    first_order: sp.Expr
    R: sp.Expr
    Q: sp.Expr
    hbar_T: sp.Expr


@lru_cache(maxsize=1)
def scalar_linear_regularizer_expr() -> ScalarLinearRegularizer:
    r"""Continuous-time limit of :math:`\hat R` for the scalar linear SDE, in closed form.

    The discrete :math:`\hat\Sigma_M = \sum_{k<M}(1+\lambda\Delta t)^{2(M-1-k)}\Delta t\,
    (\sigma_1 + \sigma_2\bar h_k)^2` (docs/theory/regularizer.md recursion,
    :math:`\bar h_k = h_0(1+\lambda\Delta t)^k`) is summed by ``sympy.summation``, its
    limit at :math:`M = T/\Delta t` taken by ``sympy.limit`` and compared with the moment
    ODE of docs/theory/regularizer.md solved by ``sympy.dsolve``:

    .. math:: \Sigma_T = \sigma_1^2\frac{e^{2\lambda T}-1}{2\lambda}
              + 2\sigma_1\sigma_2h_0\frac{e^{2\lambda T}-e^{\lambda T}}{\lambda}
              + \sigma_2^2h_0^2\,T e^{2\lambda T}.

    Takes a few seconds (cached).
    """
    lam = sp.Symbol("lambda", real=True, nonzero=True)
    dt, T = _symbols.dt, sp.Symbol("T", positive=True)
    s1, s2 = _symbols.sigma1, _symbols.sigma2
    h0 = sp.Symbol("h_0", real=True)
    M = sp.Symbol("M", integer=True, positive=True)
    k = sp.Symbol("k", integer=True, nonnegative=True)
    q = 1 + lam * dt
    term = q ** (2 * (M - 1 - k)) * dt * (s1 + s2 * h0 * q**k) ** 2
    total = sp.summation(sp.expand(term), (k, 0, M - 1))
    # sympy splits off (1 + lam dt)^2 = 1, impossible for 0 < dt < 2/|lam|: keep the rest.
    total = total.replace(lambda e: isinstance(e, sp.Piecewise), lambda e: e.args[-1][0])
    at_T = total.subs(M, T / dt)
    limit = sp.simplify(sp.limit(at_T, dt, 0, "+"))
    first = sp.simplify(sp.series(at_T, dt, 0, 2).removeO().coeff(dt, 1))
    t = sp.Symbol("t", positive=True)
    Sig = sp.Function("Sigma")
    ode = sp.Eq(Sig(t).diff(t), 2 * lam * Sig(t) + (s1 + s2 * h0 * sp.exp(lam * t)) ** 2)
    sol = sp.simplify(sp.dsolve(ode, Sig(t), ics={Sig(0): 0}).rhs.subs(t, T))
    hT = h0 * sp.exp(lam * T)
    hv = sp.Symbol("h", real=True)
    ell = sp.Function("ell")
    curvature = sp.diff(ell(hv), hv, 2).subs(hv, hT)
    return ScalarLinearRegularizer(
        sigma_discrete=sp.simplify(total),
        sigma_limit=limit,
        sigma_ode=sol,
        first_order=first,
        R=curvature * limit,
        Q=sp.Integer(0),
        hbar_T=hT,
    )


# -------------------------------------------------------------------------- printing
def derivation_text(
    H: int = 1,
    M: int = 2,
    *,
    noise: NoiseModel = "generic",
    order: int = 3,
    continuous: bool = True,
) -> str:
    r"""A printable account of a derivation: coefficients, formula, check, continuous limit.

    Parameters
    ----------
    H, M : int
        Hidden size and number of steps, as in :func:`expansion_expr`.
    noise : {"generic", "diagonal", "scalar", "paper_code"}
        The noise model.
    order : int
        Highest power of :math:`\epsilon` shown (default 3, which shows that the cubic
        term vanishes).
    continuous : bool
        Also show the continuous-time limit of the formula.

    Returns
    -------
    str

    Examples
    --------
    >>> print(derivation_text(1, 1, continuous=False))  # doctest: +ELLIPSIS
    Small-noise expansion of E l(h_M) - l(hbar_M): H = 1, M = 1, noise = generic
    ...
    eps^2 : G_11^(0)**2*l_11/2
    ...
    """
    e = expansion_expr(H, M, noise=noise, order=order)
    loss_symbols = list(e.symbols.loss.values())

    def show(expr: sp.Expr) -> str:  # grouped by the loss derivatives, for reading
        return sp.sstr(sp.collect(sp.expand(expr), loss_symbols))

    lines = [
        f"Small-noise expansion of E l(h_M) - l(hbar_M): H = {H}, M = {M}, noise = {noise}",
        "(derived by sympy: Taylor series of the recursion in eps, Gaussian"
        + (" and uniform" if noise == "paper_code" else "")
        + " expectations)",
    ]
    for n in range(1, order + 1):
        lines.append(f"eps^{n} : {show(e.coefficients[n])}")
    lines += [
        "docs/theory/regularizer.md recursions:",
        f"  Q-hat = {show(e.Q)}",
        f"  R-hat = {show(e.R)}",
        f"simplify(E[eps^2 coefficient] - (Q-hat + R-hat)/2) = {e.difference()}",
        "odd orders vanish: " + str(all(c == 0 for c in e.odd_coefficients())),
    ]
    if continuous:
        lin = scalar_linear_regularizer_expr()
        lines += [
            "Continuous-time limit, dh = lambda h dt + eps (sigma_1 + sigma_2 h) dB "
            "(docs/theory/regularizer.md):",
            f"  Sigma_T = lim_(dt->0) Sigma-hat_(T/dt) = {sp.sstr(lin.sigma_limit)}",
            "  moment ODE solution agrees: "
            + str(sp.simplify(lin.sigma_limit - lin.sigma_ode) == 0),
            f"  first-order error in dt: {sp.sstr(lin.first_order)}",
            f"  R = {sp.sstr(lin.R)},  Q = 0",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nrnn_theory.symbolic.regularizer``: print a derivation.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``); ``--help`` lists them.

    Returns
    -------
    int
        The exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m nrnn_theory.symbolic.regularizer",
        description="Print the symbolic small-noise expansion (docs/theory/regularizer.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--hidden", type=int, default=1, help="hidden size H (<= 3)")
    parser.add_argument("--steps", type=int, default=2, help="number of steps M (<= 4)")
    parser.add_argument("--noise", choices=NOISE_MODELS, default="generic", help="noise model")
    parser.add_argument("--order", type=int, default=3, help="highest power of eps (2-4)")
    parser.add_argument(
        "--no-continuous", action="store_true", help="skip the continuous-time closed form"
    )
    args = parser.parse_args(argv)
    text = derivation_text(
        args.hidden,
        args.steps,
        noise=args.noise,
        order=args.order,
        continuous=not args.no_continuous,
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
