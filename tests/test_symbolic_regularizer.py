"""Symbolic derivation of the regularizer (docs/theory/regularizer.md, oracles.md V2).

Oracles: exact sympy equality between the derived expansion and the formula of
docs/theory/regularizer.md recursions; the lambdified derived NRNN regularizer against the torch
``explicit_regularizer`` at random points; closed forms of the scalar linear SDE
against the numeric discrete and continuous regularizers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nrnn_theory import NoiseSpec, NRNNParams
from nrnn_theory.regularizer import continuous_regularizer, explicit_regularizer
from nrnn_theory.symbolic import _symbols, to_numpy_fn
from nrnn_theory.symbolic.dynamics import NRNNSymbols, drift_expr
from nrnn_theory.symbolic.regularizer import (
    NOISE_MODELS,
    ChainSymbols,
    derivation_text,
    expansion_expr,
    main,
    nrnn_regularizer_expr,
    nrnn_regularizer_fn,
    regularizer_formula_expr,
    scalar_linear_regularizer_expr,
)

from _problems import random_params
from _tolerances import tol


SMALL = [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]


@pytest.mark.parametrize("noise", NOISE_MODELS)
@pytest.mark.parametrize(("H", "M"), SMALL)
def test_derived_expansion_equals_theory_formula(noise, H, M):
    """E[eps^2 coefficient] = (Q-hat + R-hat)/2 exactly; eps^1 and eps^3 terms vanish."""
    e = expansion_expr(H, M, noise=noise, order=3)
    assert sp.simplify(e.coefficients[2] - (e.Q + e.R) / 2) == 0
    assert e.coefficients[1] == 0 and e.coefficients[3] == 0
    assert e.coefficients[2] != 0
    assert e.verify()


@pytest.mark.slow
@pytest.mark.parametrize("noise", NOISE_MODELS)
def test_derived_expansion_equals_theory_formula_h2_m3(noise):
    e = expansion_expr(2, 3, noise=noise, order=3)
    assert e.verify()


def test_fourth_order_differs_between_gaussian_and_uniform_draws():
    """The expansion is not trivially even: the eps^4 term exists and sees E eta^4."""
    gen = expansion_expr(1, 1, noise="generic", order=4)
    assert gen.coefficients[4] != 0
    # generic, one step: E l(hbar + eps G eta) has eps^4 term l_1111 G^4 E[eta^4]/24.
    G = gen.symbols.G[0, 0, 0, ()]
    l4 = gen.symbols.loss[(0, 0, 0, 0)]
    assert sp.expand(gen.coefficients[4] - l4 * G**4 * 3 / 24) == 0
    # paper_code, one step: delta = eps (a zeta + mu d f v), v = u - 1/2 with E v^2 = 1/12,
    # E v^4 = 1/80 (a Gaussian of that variance would give 3/144).
    pc = expansion_expr(1, 1, noise="paper_code", order=4)
    cs = pc.symbols
    a, mu, d, f = _symbols.a, _symbols.mu, cs.d[0], cs.f[0, 0, ()]
    b = mu * d * f
    moment4 = 3 * a**4 + 6 * a**2 * b**2 / 12 + b**4 / 80
    assert sp.expand(pc.coefficients[4] - cs.loss[(0, 0, 0, 0)] * moment4 / 24) == 0


def test_formula_for_one_generic_step_by_hand():
    """One step: E l(hbar + eps G eta) = l + eps^2/2 l_11 G^2: R-hat = G^2 l_11, Q-hat = 0."""
    cs = ChainSymbols.create(H=1, M=1, order=2, noise="generic")
    Q, R = regularizer_formula_expr(cs)
    G, l11 = cs.G[0, 0, 0, ()], cs.loss[(0, 0)]
    assert Q == 0 and sp.expand(R - G**2 * l11) == 0


def test_nrnn_drift_hessian_is_theory_form():
    r"""Nabla^2 f_l = tanh''(z_l) w_l w_l^T with tanh'' = -2 tanh (1 - tanh^2)
    (docs/theory/model.md)."""
    sym = NRNNSymbols.create(H=2, D=1, C=2, M=1)
    h = sym.h0
    f = drift_expr(sym, h, sym.xs[0])
    z = sym.W * h + sym.U * sym.xs[0] + sym.b
    for i in range(2):
        t = sp.tanh(z[i])
        for j in range(2):
            for m in range(2):
                d2 = sp.diff(f[i], h[j], h[m])
                theory = -2 * t * (1 - t**2) * sym.W[i, j] * sym.W[i, m]
                assert sp.simplify(d2 - theory) == 0


# ---------------------------------------------- lambdified symbolic == torch numeric
CONCRETE = [
    ("sde", "diagonal", 2, 2),
    ("sde", "scalar", 2, 2),
    ("paper_code", "diagonal", 2, 2),
    ("sde", "diagonal", 1, 3),
]


def _random_case(seed, H, M, C, convention, structure, levels):
    g = torch.Generator().manual_seed(seed)
    alpha = float(seed % 2)
    params = random_params(
        H,
        1,
        C,
        generator=g,
        per_unit_step=bool(seed % 3),
        alpha=alpha,
        dt=0.1 + 0.4 * (seed % 5) / 4,
    )
    B = 3
    xs = torch.randn(B, M, 1, generator=g, dtype=torch.float64)
    h0 = torch.randn(B, H, generator=g, dtype=torch.float64)
    labels = torch.randint(0, C, (B,), generator=g)
    s1, s2 = levels
    if convention == "paper_code":
        noise = NoiseSpec.paper_code(add=s1, mult=min(s2, 1.0))
    else:
        noise = NoiseSpec(epsilon=0.7, sigma1=s1, sigma2=s2, structure=structure)
    return params, xs, h0, labels, noise


@pytest.mark.parametrize(("convention", "structure", "H", "M"), CONCRETE)
@settings(max_examples=15)
@given(
    seed=st.integers(0, 2**31 - 1),
    levels=st.tuples(st.floats(0.0, 2.0), st.floats(0.0, 2.0)),
)
def test_lambdified_symbolic_equals_numeric(convention, structure, H, M, seed, levels):
    fn, sym = nrnn_regularizer_fn(H, M, C=3, convention=convention, structure=structure)
    params, xs, h0, labels, noise = _random_case(seed, H, M, 3, convention, structure, levels)
    symbolic = fn(*sym.values(params, xs, labels, noise, h0))
    numeric = explicit_regularizer(params, xs, labels, noise, h0=h0).total
    np.testing.assert_allclose(symbolic, numeric.numpy(), **tol("symbolic_vs_numeric"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("convention", "structure"),
    [("sde", "diagonal"), ("sde", "scalar"), ("paper_code", "diagonal")],
)
def test_lambdified_symbolic_equals_numeric_h2_m3(convention, structure):
    fn, sym = nrnn_regularizer_fn(2, 3, C=3, convention=convention, structure=structure)
    for seed in range(5):
        params, xs, h0, labels, noise = _random_case(
            seed, 2, 3, 3, convention, structure, (0.8, 0.6)
        )
        symbolic = fn(*sym.values(params, xs, labels, noise, h0))
        numeric = explicit_regularizer(params, xs, labels, noise, h0=h0).total
        np.testing.assert_allclose(symbolic, numeric.numpy(), **tol("symbolic_vs_numeric"))


@pytest.mark.parametrize("convention", ["sde", "paper_code"])
def test_single_expression_equals_staged_evaluation(convention):
    """nrnn_regularizer_expr (one nested expression) lambdified = the staged evaluation."""
    expr, sym = nrnn_regularizer_expr(1, 2, C=3, convention=convention)
    fn, sym2 = nrnn_regularizer_fn(1, 2, C=3, convention=convention)
    assert sym.args() == sym2.args()
    params, xs, h0, labels, noise = _random_case(3, 1, 2, 3, convention, "diagonal", (0.5, 0.4))
    values = sym.values(params, xs, labels, noise, h0)
    np.testing.assert_allclose(
        to_numpy_fn(expr, sym.args())(*values), fn(*values), **tol("symbolic_vs_numeric")
    )


# ------------------------------- docs/theory/regularizer.md: scalar linear closed form
def _linear_model(lam, dt, M):
    t64 = torch.float64
    params = NRNNParams(
        A=torch.tensor([[lam]], dtype=t64),
        W=torch.zeros(1, 1, dtype=t64),
        U=torch.zeros(1, 1, dtype=t64),
        b=torch.zeros(1, dtype=t64),
        V=torch.tensor([[1.0], [-1.0]], dtype=t64),
        c=torch.zeros(2, dtype=t64),
        dt=dt,
    )
    return params, torch.zeros(1, M, 1, dtype=t64)


def test_scalar_linear_limit_matches_moment_ode_and_recursion():
    lin = scalar_linear_regularizer_expr()
    assert sp.simplify(lin.sigma_limit - lin.sigma_ode) == 0
    # the closed-form discrete sum equals the recursion of docs/theory/regularizer.md at M = 3
    cs = ChainSymbols.create(H=1, M=3, order=2, noise="diagonal")
    lam = next(s for s in lin.sigma_discrete.free_symbols if s.name == "lambda")
    h0 = next(s for s in lin.sigma_discrete.free_symbols if s.name == "h_0")
    dt = _symbols.dt
    q = 1 + lam * dt
    sub = {cs.s[0]: dt, cs.loss[(0,)]: 0, cs.loss[(0, 0)]: 1}
    for k in range(3):
        sub[cs.f[k, 0, (0,)]] = lam
        sub[cs.f[k, 0, (0, 0)]] = 0
        sub[cs.hbar[k, 0]] = h0 * q**k
    Q, R = regularizer_formula_expr(cs)
    M = next(s for s in lin.sigma_discrete.free_symbols if s.name == "M")
    assert sp.simplify(R.xreplace(sub) - lin.sigma_discrete.subs(M, 3)) == 0
    assert Q.xreplace(sub) == 0


def test_scalar_linear_closed_forms_match_numeric_regularizers():
    """Discrete sum and continuous limit (lambdified) against the torch functions; the
    symbolic first-order coefficient predicts the discrete error (ratio -> 1)."""
    lin = scalar_linear_regularizer_expr()
    names = {s.name: s for s in lin.sigma_limit.free_symbols | lin.sigma_discrete.free_symbols}
    lam_v, s1, s2, h0v, T = -0.6, 0.9, 0.5, 0.7, 1.5
    values = {"lambda": lam_v, "sigma_1": s1, "sigma_2": s2, "h_0": h0v, "T": T}
    args = [names[k] for k in values]
    limit = float(to_numpy_fn(lin.sigma_limit, args)(*values.values()))
    first = float(to_numpy_fn(lin.first_order, args)(*values.values()))
    disc = to_numpy_fn(lin.sigma_discrete, [*args, names["M"], names["Delta_t"]])
    hT = h0v * math.exp(lam_v * T)
    p = 1 / (1 + math.exp(-2 * hT))
    curv = 4 * p * (1 - p)  # l'' for V = (1, -1)^T, label 0
    noise = NoiseSpec(epsilon=1.0, sigma1=s1, sigma2=s2)
    h0 = torch.full((1, 1), h0v, dtype=torch.float64)
    labels = torch.tensor([0])
    for M in (10, 40, 160):
        dt = T / M
        params, xs = _linear_model(lam_v, dt, M)
        res = explicit_regularizer(params, xs, labels, noise, h0=h0)
        hM = h0v * (1 + lam_v * dt) ** M
        pM = 1 / (1 + math.exp(-2 * hM))
        sigma_M = float(disc(*values.values(), M, dt))
        np.testing.assert_allclose(res.R.item(), 4 * pM * (1 - pM) * sigma_M, rtol=1e-10)
        assert abs(res.Q.item()) < 1e-14
        # the error of Sigma-hat is first order with the derived coefficient
        ratio = (sigma_M - limit) / (first * dt)
        assert abs(ratio - 1) < 3 * dt  # next term is O(dt^2)
    params, xs = _linear_model(lam_v, T / 10, 10)
    cont = continuous_regularizer(params, xs, labels, noise, h0=h0, solver="solve_ivp")
    np.testing.assert_allclose(cont.R.item(), curv * limit, rtol=1e-9)


# -------------------------------------------------------------- printing and errors
def test_derivation_text_and_main(capsys):
    text = derivation_text(1, 2, noise="scalar", continuous=False)
    assert "eps^1 : 0" in text and "eps^3 : 0" in text
    assert "(Q-hat + R-hat)/2) = 0" in text and "odd orders vanish: True" in text
    assert main(["--hidden", "1", "--steps", "1", "--noise", "paper_code"]) == 0
    out = capsys.readouterr().out
    assert "uniform" in out and "moment ODE solution agrees: True" in out


def test_bad_sizes_and_options():
    with pytest.raises(ValueError, match=r"H, M, order: expected at most"):
        expansion_expr(4, 1)
    with pytest.raises(ValueError, match="noise: expected one of"):
        expansion_expr(1, 1, noise="pink")
    with pytest.raises(ValueError, match="order: expected an integer >= 2"):
        expansion_expr(1, 1, order=1)
    with pytest.raises(ValueError, match="structure: expected 'diagonal'"):
        nrnn_regularizer_fn(1, 1, convention="paper_code", structure="scalar")
    sym = NRNNSymbols.create(H=2, D=1, C=2, M=2)
    params = random_params(3, 1, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="params/xs: expected H=2"):
        sym.values(
            params,
            torch.zeros(1, 2, 1, dtype=torch.float64),
            torch.tensor([0]),
            NoiseSpec(sigma1=1.0),
        )
