"""Margins (docs/theory/margins.md, oracles.md V9): Jacobians, norms, certified and local margins.

Oracles: autograd (``torch.func.jacrev``) for the analytic Jacobian and Gram matrix,
dense SVD for the power iteration, a closed-form exact margin for a one-step NRNN
(tanh of a projection: ``s_y - s_j`` is monotone in ``u . x``), the exact vertex
maximum for rho (docs/theory/stability.md: the norm is convex in D, so its supremum over the
box [0, 1]^H is attained at a vertex), and attack distances for soundness.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nrnn_theory import NRNNParams, logits, state_jacobian, step_norm_bound
from nrnn_theory.attacks import deepfool
from nrnn_theory.margins import (
    certified_margin,
    format_margin_summary,
    input_output_jacobian,
    jacobian_gram,
    jacobian_spectral_norm,
    local_margin_estimate,
    margin_growth,
    margin_summary,
    score_margin,
)
from nrnn_theory.results import MarginCertificate

from _problems import linear_rnn_classifier, one_step_margin, random_params
from _strategies import model_and_inputs, seeds
from _tolerances import tol


def _jacrev(params: NRNNParams, xs: torch.Tensor) -> torch.Tensor:
    """Dense (B, C, T*D) Jacobian by reverse-mode autograd, one example at a time."""

    def single(x):
        return logits(params, x.unsqueeze(0)).squeeze(0)

    J = torch.func.vmap(torch.func.jacrev(single))(xs)
    return J.reshape(xs.shape[0], params.num_classes, -1)


# ------------------------------------------------------------------------- score margin
def test_score_margin_hand_values():
    s = torch.tensor([[2.0, 0.5, 1.0], [0.0, 3.0, 1.0], [1.0, 1.0, 0.0]])
    torch.testing.assert_close(score_margin(s), torch.tensor([1.0, 2.0, 0.0]))
    torch.testing.assert_close(
        score_margin(s, torch.tensor([2, 2, 2])), torch.tensor([-1.0, -2.0, -1.0])
    )


@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        (torch.zeros(3), None, "scores: expected logits of shape"),
        (torch.zeros(3, 1), None, "C >= 2"),
        (torch.zeros(2, 3), torch.tensor([0, 3]), r"labels: expected class indices in \[0, 3\)"),
        (torch.zeros(2, 3), torch.tensor([0]), r"labels: expected shape \(2,\)"),
    ],
)
def test_score_margin_bad_input(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        score_margin(scores, labels)


# -------------------------------------------------------------------- Jacobian and Gram
@settings(max_examples=25, deadline=None)
@given(model_and_inputs(max_steps=6))
def test_jacobian_and_gram_match_autograd(case):
    params, xs, _ = case
    J_ref = _jacrev(params, xs)
    torch.testing.assert_close(input_output_jacobian(params, xs), J_ref, **tol("reduction"))
    torch.testing.assert_close(jacobian_gram(params, xs), J_ref @ J_ref.mT, **tol("reduction"))


def test_jacobian_with_initial_state(generator):
    params = random_params(4, 2, 3, generator=generator)
    xs = torch.randn(3, 5, 2, generator=generator, dtype=torch.float64)
    h0 = torch.randn(3, 4, generator=generator, dtype=torch.float64)

    def single(x, h):
        return logits(params, x.unsqueeze(0), h0=h.unsqueeze(0)).squeeze(0)

    J_ref = torch.func.vmap(torch.func.jacrev(single))(xs, h0).reshape(3, 3, -1)
    torch.testing.assert_close(input_output_jacobian(params, xs, h0=h0), J_ref, **tol("reduction"))


def test_jacobian_follows_dtype(generator):
    params = random_params(3, 1, 2, generator=generator, dtype=torch.float32)
    xs = torch.randn(2, 4, 1, generator=generator)
    assert input_output_jacobian(params, xs).dtype == torch.float32
    assert jacobian_spectral_norm(params, xs, generator=generator).norm.dtype == torch.float32


# ------------------------------------------------------------------------ spectral norm
@settings(max_examples=25, deadline=None)
@given(model_and_inputs(max_steps=6), seeds)
def test_power_iteration_matches_dense_svd(case, seed):
    params, xs, _ = case
    sv = torch.linalg.matrix_norm(_jacrev(params, xs), ord=2)
    g = torch.Generator().manual_seed(seed)
    # Power iteration converges like (s2/s1)^(2k) and its Rayleigh quotient lies in
    # [s2^2, s1^2], so the error is below min(gap, geometric term): rtol 1e-13 and
    # 2000 iterations leave < 1e-6 relative on these models.
    for model in (params, lambda x: logits(params, x)):
        r = jacobian_spectral_norm(model, xs, rtol=1e-13, max_iter=2000, generator=g)
        torch.testing.assert_close(r.norm, sv, rtol=1e-6, atol=1e-12)
        assert bool((r.norm <= sv * (1 + 1e-10) + 1e-14).all())  # approached from below
    exact = jacobian_spectral_norm(params, xs, method="gram")
    torch.testing.assert_close(exact.norm, sv, **tol("eig"))


def test_power_iteration_reports_convergence_and_is_reproducible(generator):
    params = random_params(5, 2, 4, generator=generator)
    xs = torch.randn(6, 8, 2, generator=generator, dtype=torch.float64)
    seed = int(torch.randint(0, 2**31, (1,), generator=generator))
    a = jacobian_spectral_norm(params, xs, generator=torch.Generator().manual_seed(seed))
    b = jacobian_spectral_norm(params, xs, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(a.norm, b.norm) and a.n_iter == b.n_iter
    assert bool(a.converged.all()) and a.n_iter < 100
    short = jacobian_spectral_norm(params, xs, max_iter=1, generator=generator)
    assert short.n_iter == 1
    # The residual bounds the distance from the Rayleigh quotient to an eigenvalue.
    lam = torch.linalg.eigvalsh(jacobian_gram(params, xs))
    dist = (lam - a.norm.unsqueeze(1) ** 2).abs().min(dim=1).values
    assert bool((dist <= a.residual + 1e-12).all())


def test_spectral_norm_bad_input(generator):
    params = random_params(3, 2, 2, generator=generator)
    xs = torch.randn(2, 4, 2, generator=generator, dtype=torch.float64)
    with pytest.raises(ValueError, match="method: 'gram' needs NRNNParams"):
        jacobian_spectral_norm(lambda x: logits(params, x), xs, method="gram")
    with pytest.raises(ValueError, match="method: expected one of"):
        jacobian_spectral_norm(params, xs, method="svd")
    with pytest.raises(ValueError, match=r"xs: expected shape \(\?, \?, 2\)"):
        jacobian_spectral_norm(params, torch.randn(2, 4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="xs: expected at least one example"):
        jacobian_spectral_norm(params, torch.zeros(0, 4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="max_iter: expected an integer >= 1"):
        jacobian_spectral_norm(params, xs, max_iter=0)


# -------------------------------------------------------------------- certified margin
def _vertex_max(params: NRNNParams) -> float:
    """max over D in {0, 1}^H of ||I + diag(s)(alpha A + D W)||_2 (exact sup, H <= 8)."""
    p = params.to(torch.float64)
    H = p.hidden_size
    s = p.drift_step
    best = 0.0
    for bits in itertools.product((0.0, 1.0), repeat=H):
        D = torch.tensor(bits, dtype=torch.float64)
        M = torch.eye(H, dtype=torch.float64) + s.unsqueeze(1) * (p.alpha * p.A + D[:, None] * p.W)
        best = max(best, float(torch.linalg.matrix_norm(M, ord=2)))
    return best


@settings(max_examples=40, deadline=None)
@given(model_and_inputs(max_hidden=5, max_steps=4), st.sampled_from([1.0, 4.0]))
def test_rho_bounds_every_step_jacobian(case, scale):
    params, xs, g = case
    cert = certified_margin(params, xs)
    rho, terms = cert.rho, cert.rho_terms
    assert rho == step_norm_bound(params, one_sided="auto")  # the stability module's rho
    assert rho >= _vertex_max(params) * (1 - 1e-12)
    # never looser than the closed-form midpoint bound the margins used before
    midpoint = certified_margin(params, xs, one_sided="midpoint")
    assert midpoint.rho == step_norm_bound(params, one_sided="midpoint")
    assert rho <= midpoint.rho and bool((cert.radius >= midpoint.radius).all())
    forms = (
        min(terms["rho_norm"], terms["rho_one_sided"]) + terms["step_half_range"] * terms["kappa"]
    )
    assert rho == pytest.approx(min(forms, terms.get("rho_vertex", math.inf)))
    # At random states and inputs, including saturated ones (large scale).
    for x in (scale * xs).unbind(1):
        h = scale * torch.randn(xs.shape[0], params.hidden_size, generator=g, dtype=xs.dtype)
        J = state_jacobian(params, h, x)
        assert float(torch.linalg.matrix_norm(J, ord=2).max()) <= rho * (1 + 1e-12)


def test_margin_growth_closed_form():
    for rho in (0.3, 0.999999, 1.0, 1.000001, 1.7):
        for M in (1, 2, 7, 50):
            direct = math.sqrt(sum(rho ** (2 * i) for i in range(M)))
            assert margin_growth(rho, M) == pytest.approx(direct, rel=1e-10)
    assert margin_growth(10.0, 10_000) == math.inf
    with pytest.raises(ValueError, match="rho: expected a number >= 0"):
        margin_growth(-1.0, 3)
    with pytest.raises(ValueError, match="n_steps: expected an integer >= 1"):
        margin_growth(0.5, 0)


@settings(max_examples=40, deadline=None)
@given(seeds, st.integers(1, 4), st.integers(2, 5), st.booleans())
def test_certified_below_exact_one_step_margin(seed, D, C, per_unit):
    """One step, one unit, W = 0: s = V * s1 * tanh(u . x + b) + c, margin in closed form."""
    g = torch.Generator().manual_seed(seed)
    params = random_params(1, D, C, generator=g, per_unit_step=per_unit)
    params = params.replace(W=torch.zeros(1, 1, dtype=torch.float64))
    xs = 0.5 * torch.randn(6, 1, D, generator=g, dtype=torch.float64)
    exact = one_step_margin(params, xs)
    cert = certified_margin(params, xs)
    assert bool((cert.radius <= exact * (1 + 1e-12)).all())
    # Targeted DeepFool is Newton's method along u towards each boundary, and the
    # final bisection lands on it: the exact margin to about 2^-40 relative.
    found = deepfool(params, xs, refine_steps=40, targeted=True)
    finite = torch.isfinite(exact)
    torch.testing.assert_close(found.distance[finite], exact[finite], rtol=1e-6, atol=1e-9)
    assert bool(torch.isinf(found.distance[~finite]).all())
    # Any attack's distance is an upper bound on the exact margin.
    assert bool((deepfool(params, xs).distance >= exact * (1 - 1e-9)).all())


def test_certified_margin_is_tight_for_small_margins():
    """Where tanh is nearly linear over the whole path to the boundary, cert -> exact."""
    params = NRNNParams(
        A=-torch.eye(1, dtype=torch.float64),
        W=torch.zeros(1, 1, dtype=torch.float64),
        U=torch.tensor([[1.0, 2.0]], dtype=torch.float64),
        b=torch.zeros(1, dtype=torch.float64),
        V=torch.tensor([[1.0], [-1.0]], dtype=torch.float64),
        c=torch.zeros(2, dtype=torch.float64),
        dt=0.1,
    )
    xs = torch.tensor([[[1e-3, 0.0]], [[0.0, -2e-3]]], dtype=torch.float64)
    exact = one_step_margin(params, xs)
    cert = certified_margin(params, xs).radius
    assert bool((cert <= exact).all()) and bool((cert >= 0.999 * exact).all())


@settings(max_examples=30, deadline=None)
@given(model_and_inputs(max_hidden=5, max_steps=5), st.sampled_from([0.5, 3.0]))
def test_lipschitz_constants_bound_pair_gradients_everywhere(case, scale):
    """L_j >= ||grad (s_y - s_j)|| at x and at far-away, saturating inputs (soundness)."""
    params, xs, g = case
    cert = certified_margin(params, xs)
    y = cert.labels
    for x in (xs, scale * torch.randn(xs.shape, generator=g, dtype=xs.dtype)):
        G = jacobian_gram(params, x)
        d = torch.diagonal(G, dim1=1, dim2=2)
        pair = d.gather(1, y[:, None]) - 2 * G[torch.arange(len(y)), y] + d
        L = cert.lipschitz
        ok = torch.where(torch.isinf(L), True, pair.clamp_min(0).sqrt() <= L * (1 + 1e-10))
        assert bool(ok.all())


@settings(max_examples=30, deadline=None)
@given(model_and_inputs(max_hidden=5, max_steps=5))
def test_certified_never_exceeds_attack_distance(case):
    params, xs, _ = case
    cert = certified_margin(params, xs)
    emp = deepfool(params, xs)
    assert bool((cert.radius <= emp.distance).all())
    assert bool((emp.distance[emp.success] > 0).all())


def test_certificate_record(generator):
    params = random_params(4, 2, 3, generator=generator, dtype=torch.float32)
    xs = torch.randn(5, 6, 2, generator=generator)
    cert = certified_margin(params, xs)
    assert isinstance(cert, MarginCertificate) and cert.certified
    assert cert.radius.dtype == torch.float64 and cert.dtype == "float64"
    assert cert.n_steps == 6 and cert.growth == pytest.approx(margin_growth(cert.rho, 6))
    assert cert.step_max == pytest.approx(params.dt)
    torch.testing.assert_close(
        cert.score_margin, score_margin(logits(params.to(torch.float64), xs.double()))
    )
    assert bool(torch.isinf(cert.lipschitz.gather(1, cert.labels[:, None])).all())
    d = cert.to_dict()
    assert d["certified"] is True and len(d["radius"]) == 5
    # Certifying a label that is not the prediction gives radius 0.
    wrong = (cert.labels + 1) % 3
    assert bool((certified_margin(params, xs, wrong).radius == 0).all())


def test_certified_margin_bad_input(generator):
    params = random_params(3, 2, 2, generator=generator)
    with pytest.raises(TypeError, match="params: expected NRNNParams"):
        certified_margin(lambda x: x, torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"xs: expected shape \(\?, \?, 2\)"):
        certified_margin(params, torch.zeros(1, 2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="xs: expected at least one example"):
        certified_margin(params, torch.zeros(0, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"labels: expected shape \(1,\)"):
        certified_margin(params, torch.zeros(1, 2, 2, dtype=torch.float64), torch.tensor([0, 1]))


# ---------------------------------------------------------------------- local estimate
def test_local_estimate_equals_exact_margin_of_linear_model(generator):
    """V9: for a linear RNN, min_j (s_y - s_j)/||(e_y - e_j)^T J|| is the exact margin."""
    model, J = linear_rnn_classifier(4, 3, 5, T=7, generator=generator)
    xs = torch.randn(8, 7, 3, generator=generator, dtype=torch.float64)
    s = model(xs)
    y = s.argmax(1)
    w = J[y].unsqueeze(1) - J.unsqueeze(0)  # (B, C, T*D): gradients of s_y - s_j
    gap = s.gather(1, y[:, None]) - s
    exact = torch.where(gap > 0, gap / w.norm(dim=2), math.inf).min(dim=1).values
    est = local_margin_estimate(model, xs)
    torch.testing.assert_close(est.estimate, exact, **tol("reduction"))
    assert est.certified is False


@settings(max_examples=20, deadline=None)
@given(model_and_inputs(max_steps=6))
def test_local_estimate_nrnn_path_matches_generic_path(case):
    params, xs, _ = case
    a = local_margin_estimate(params, xs)
    b = local_margin_estimate(lambda x: logits(params, x), xs)
    torch.testing.assert_close(a.estimate, b.estimate, **tol("reduction"))
    torch.testing.assert_close(a.pair_gradient_norm, b.pair_gradient_norm, **tol("reduction"))
    labels = (a.labels + 1) % params.num_classes
    assert bool((local_margin_estimate(params, xs, labels).estimate < 0).all())


# ----------------------------------------------------------------------------- summary
def test_margin_summary_counts():
    cert = torch.tensor([0.5, 1.0, 0.0, 0.3, 0.2], dtype=torch.float64)
    emp = torch.tensor([0.8, 3.0, 0.2, math.inf, 0.1], dtype=torch.float64)
    s = margin_summary(cert, emp)
    assert s.n_examples == 5 and s.n_unbroken == 1 and s.n_zero_certified == 1
    assert s.n_violations == 1  # 0.2 > 0.1: an unsound certificate is reported
    assert s.fraction_tight == pytest.approx(2 / 5)  # 0.8 <= 1.0 and 0.1 <= 0.4
    assert s.empirical_quantiles["n"] == 4 and s.empirical_quantiles["max"] == 3.0
    assert s.ratio_quantiles["min"] == pytest.approx(0.5)
    text = format_margin_summary(s)
    assert "certified > empirical on 1" in text and "40.0%" in text
    assert margin_summary(cert, emp, tight_factor=4).fraction_tight == pytest.approx(3 / 5)


def test_margin_summary_bad_input():
    with pytest.raises(ValueError, match=r"empirical: expected shape \(2,\)"):
        margin_summary(torch.ones(2), torch.ones(3))
    with pytest.raises(ValueError, match="non-negative radii"):
        margin_summary(torch.tensor([-1.0]), torch.ones(1))
    with pytest.raises(ValueError, match="at least one example"):
        margin_summary(torch.ones(0), torch.ones(0))
    with pytest.raises(ValueError, match="tight_factor: expected a number > 0"):
        margin_summary(torch.ones(1), torch.ones(1), tight_factor=0)


# ---------------------------------------------------------------------------- symbolic
def test_symbolic_bound_matches_numeric(generator):
    import numpy as np

    from nrnn_theory.symbolic import margin_bound_expr, margin_growth_expr, to_numpy_fn
    from nrnn_theory.symbolic._symbols import n_steps, rho

    growth = to_numpy_fn(margin_growth_expr(), [rho, n_steps])
    for r in (0.0, 0.4, 1.0, 1.3):
        for M in (1, 5, 30):
            # numpy's select evaluates both Piecewise branches; the unused one divides
            # by zero at rho = 1.
            with np.errstate(divide="ignore", invalid="ignore"):
                value = growth(np.float64(r), np.float64(M))
            np.testing.assert_allclose(value, margin_growth(r, M), rtol=1e-10, atol=1e-12)
    params = random_params(4, 2, 3, generator=generator, per_unit_step=True)
    xs = torch.randn(5, 6, 2, generator=generator, dtype=torch.float64)
    cert = certified_margin(params, xs)
    expr, args = margin_bound_expr()
    L = to_numpy_fn(expr, args)
    pair = (params.V[cert.labels].unsqueeze(1) - params.V.unsqueeze(0)).norm(dim=2)
    ref = L(pair.numpy(), cert.step_max, cert.U_norm, cert.rho, cert.n_steps)
    finite = torch.isfinite(cert.lipschitz)
    np.testing.assert_allclose(cert.lipschitz[finite].numpy(), ref[finite.numpy()], rtol=1e-10)


@pytest.mark.slow
def test_long_sequence_norm_paths_agree(generator):
    """T = 784 (pixel MNIST): analytic power iteration, autograd power iteration and the
    exact Gram agree, and the certificate stays below DeepFool's distance."""
    params = random_params(32, 1, 10, generator=generator, scale=0.5, dt=0.03)
    xs = torch.rand(3, 784, 1, generator=generator, dtype=torch.float64)
    exact = jacobian_spectral_norm(params, xs, method="gram").norm
    for model in (params, lambda x: logits(params, x)):
        r = jacobian_spectral_norm(model, xs, rtol=1e-12, max_iter=500, generator=generator)
        torch.testing.assert_close(r.norm, exact, rtol=1e-6, atol=0.0)
    cert = certified_margin(params, xs)
    assert bool((cert.radius <= deepfool(params, xs).distance).all())
