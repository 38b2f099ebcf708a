"""Symbolic stability derivations against the numeric certificates.

Theory: docs/theory/stability.md, docs/theory/oracles.md V4.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nrnn_theory import NoiseSpec, check_stability
from nrnn_theory.symbolic import to_numpy_fn, to_torch_fn
from nrnn_theory.symbolic._symbols import dt, epsilon, lam, sigma, sigma2
from nrnn_theory.symbolic.lyapunov import em_gbm_exponent_series_expr
from nrnn_theory.symbolic.stability import (
    almost_sure_bound_expr,
    difference_generator_expr,
    gbm_exponent_expr,
    ito_generator_expr,
    lam_hat,
    mao_constants_expr,
    mean_square_rate_expr,
    power_mean_identity_expr,
)

from _problems import em_gbm_exponent, random_params
from _strategies import seeds
from _tolerances import tol


@pytest.mark.parametrize("structure", ["scalar", "diagonal"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_difference_generator_is_two_delta_f_plus_noise(structure, n):
    # L|Delta|^2 = 2 Delta.F + eps^2 sigma2^2 |Delta|^2 for both structures (exact).
    LV = difference_generator_expr(structure, n)
    delta = sp.symbols(f"Delta_1:{n + 1}", real=True)
    F = sp.symbols(f"F_1:{n + 1}", real=True)
    expected = sum(2 * d * f for d, f in zip(delta, F, strict=True)) + (
        epsilon * sigma2
    ) ** 2 * sum(d**2 for d in delta)
    assert sp.expand(LV - expected) == 0


def test_ito_generator_of_a_quadratic_against_hand_computation():
    # One-dimensional check of the generator itself: L x^2 = 2 x F + G^2.
    x, F, G = sp.symbols("x F G", real=True)
    assert sp.expand(ito_generator_expr(x**2, [x], sp.Matrix([F]), sp.Matrix([[G]]))) == sp.expand(
        2 * x * F + G**2
    )


@pytest.mark.parametrize("n", [2, 3, 5])
def test_power_mean_identity(n):
    assert power_mean_identity_expr(n) == 0


def test_mao_constants_and_bounds_closed_forms():
    s2 = (epsilon * sigma2) ** 2
    assert mao_constants_expr("scalar", 3) == (sp.expand(2 * lam_hat + s2), sp.expand(4 * s2))
    c2, c3 = mao_constants_expr("diagonal", 4)
    assert sp.simplify(c3 - s2) == 0  # 4 s^2 / n at n = 4
    assert sp.simplify(almost_sure_bound_expr("scalar", 3) - (lam_hat - s2 / 2)) == 0
    for n in (1, 2, 3, 6):
        bound = almost_sure_bound_expr("diagonal", n)
        assert sp.simplify(bound - (lam_hat + s2 * (sp.Rational(1, 2) - sp.Rational(1, n)))) == 0
    assert sp.simplify(mean_square_rate_expr("diagonal", 3) - (lam_hat + s2 / 2)) == 0


@settings(max_examples=20)
@given(st.integers(1, 5), seeds, st.floats(0.0, 3.0), st.floats(0.1, 2.0))
def test_symbolic_bounds_equal_numeric_certificates(H, seed, s2_level, eps):
    # The lambdified derived bounds, evaluated at the certificate's own lambda_hat,
    # equal the numeric certificates (scalar, diagonal, mean square).
    g = torch.Generator().manual_seed(seed)
    p = random_params(H, 2, 2, generator=g, scale=2.0)
    args = [lam_hat, epsilon, sigma2]
    for structure, cond in (("scalar", "almost_sure_scalar"), ("diagonal", "almost_sure_diagonal")):
        noise = NoiseSpec(epsilon=eps, sigma2=s2_level, structure=structure)
        cert = check_stability(p, noise, condition=cond)
        fn = to_numpy_fn(almost_sure_bound_expr(structure, H), args)
        value = float(fn(cert.quantities["lambda_hat"], eps, s2_level))
        np.testing.assert_allclose(value, cert.bound, **tol("symbolic_vs_numeric"))
        ms = check_stability(p, noise, condition="mean_square")
        fn_ms = to_numpy_fn(mean_square_rate_expr(structure, H), args)
        np.testing.assert_allclose(
            float(fn_ms(ms.quantities["lambda_hat"], eps, s2_level)),
            ms.bound,
            **tol("symbolic_vs_numeric"),
        )


def test_gbm_exponent_by_ito_formula_and_torch_gateway():
    expr = gbm_exponent_expr()
    assert sp.simplify(expr - (lam - sigma**2 / 2)) == 0
    f = to_torch_fn(expr, [lam, sigma])
    s = torch.tensor([0.5, 2.0], dtype=torch.float64, requires_grad=True)
    out = f(torch.tensor([1.0, 1.0], dtype=torch.float64), s)
    torch.testing.assert_close(out.detach(), torch.tensor([0.875, -1.0], dtype=torch.float64))
    (grad,) = torch.autograd.grad(out.sum(), s)
    torch.testing.assert_close(grad, -s.detach())


def test_em_expansion_matches_theory_and_quadrature():
    # docs/theory/oracles.md V4: lambda - sigma^2/2 + dt(-lambda^2/2 + lambda sigma^2 - 3
    # sigma^4/4).
    first = em_gbm_exponent_series_expr(1)
    expected = (
        lam - sigma**2 / 2 + dt * (-(lam**2) / 2 + lam * sigma**2 - sp.Rational(3, 4) * sigma**4)
    )
    assert sp.expand(first - expected) == 0
    assert sp.expand(em_gbm_exponent_series_expr(0) - gbm_exponent_expr()) == 0
    fn = to_numpy_fn(first, [lam, sigma, dt])
    assert float(fn(1.0, 2.0, 0.1)) == pytest.approx(-1.85, abs=1e-12)
    # Against exact quadrature: the residual of the first-order expansion is O(dt^2),
    # so halving dt divides it by about 4 (fitted slope in [1.7, 2.3]).
    residuals = [
        abs(em_gbm_exponent(0.8, 0.9, h) - float(fn(0.8, 0.9, h))) for h in (0.02, 0.01, 0.005)
    ]
    slope = math.log(residuals[0] / residuals[2]) / math.log(4.0)
    assert 1.7 <= slope <= 2.3
    second = em_gbm_exponent_series_expr(2)
    fn2 = to_numpy_fn(second, [lam, sigma, dt])
    assert abs(em_gbm_exponent(0.8, 0.9, 0.01) - float(fn2(0.8, 0.9, 0.01))) < residuals[1] / 10
    with pytest.raises(ValueError, match="order"):
        em_gbm_exponent_series_expr(-1)
