"""Tests of nrnn_theory.regularizer: docs/theory/regularizer.md and oracles.md V1-V3.

Oracles: dense autograd Hessians and Jacobians of ``rollout`` with respect to the
injected noise (noise-space identity), the naive product-of-Jacobians formula,
closed forms (scalar linear SDE), scipy ``solve_ivp``, Monte Carlo within 4 standard
errors, fitted convergence orders and central differences.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from nrnn_theory import NoiseSpec, NRNNParams, noise_dim, rollout
from nrnn_theory._step import StepKernel
from nrnn_theory.regularizer import (
    _pathwise,
    _reference_pass,
    continuous_regularizer,
    estimate_noise_gap,
    explicit_regularizer,
    regularizer_convergence,
    regularizer_penalty,
)

from _problems import random_params
from _strategies import model_and_inputs, noise_specs
from _tolerances import STATISTICAL_SIGMAS, tol


NOISES = {
    "sde-diagonal": NoiseSpec(epsilon=0.3, sigma1=1.0, sigma2=0.7),
    "sde-scalar": NoiseSpec(epsilon=0.3, sigma1=1.0, sigma2=0.7, structure="scalar"),
    "paper_code": NoiseSpec.paper_code(add=0.2, mult=0.3),
}


def _hessian(fn):
    """Reverse-over-reverse Hessian (forward-mode AD warns on first use in torch 2.13)."""
    return torch.func.jacrev(torch.func.jacrev(fn))


def _problem(generator, H=3, D=2, C=4, B=3, M=6, **kw):
    params = random_params(H, D, C, generator=generator, **kw)
    xs = torch.randn(B, M, D, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, C, (B,), generator=generator)
    return params, xs, labels


def _noise_space_hessian(params, xs, labels, noise):
    """Dense Hessian of the loss w.r.t. the standardized noise path at 0, per example.

    Returns the trace (B,) and the per-step block traces (B, M), both divided by
    epsilon^2 (rollout's noise matrix contains epsilon).
    """
    B, M, _ = xs.shape
    r = noise_dim(noise, params.hidden_size)
    traces, blocks = [], []
    for b in range(B):

        def G(u, b=b):
            h = rollout(params, xs[b : b + 1], noise=noise, eta=u.reshape(1, M, r))
            return F.cross_entropy(h @ params.V.mT + params.c, labels[b : b + 1])

        Hu = _hessian(G)(torch.zeros(M * r, dtype=xs.dtype))
        diag = torch.diagonal(Hu).reshape(M, r).sum(1)
        traces.append(diag.sum())
        blocks.append(diag)
    eps2 = noise.epsilon**2
    return torch.stack(traces) / eps2, torch.stack(blocks) / eps2


# ----------------------------------------------------------------- V2: exact identities
@pytest.mark.parametrize("name", list(NOISES))
@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("per_unit_step", [False, True])
def test_noise_space_identity(name, alpha, per_unit_step, generator):
    """Q-hat + R-hat = tr Hessian_u G(0) (docs/theory/regularizer.md), also per step (adjoint)."""
    params, xs, labels = _problem(generator, alpha=alpha, per_unit_step=per_unit_step)
    noise = NOISES[name]
    trace, blocks = _noise_space_hessian(params, xs, labels, noise)
    fwd = explicit_regularizer(params, xs, labels, noise)
    adj = explicit_regularizer(params, xs, labels, noise, method="adjoint")
    torch.testing.assert_close(fwd.total, trace, **tol("reduction"))
    torch.testing.assert_close(adj.total, trace, **tol("reduction"))
    torch.testing.assert_close(adj.per_step_Q + adj.per_step_R, blocks, **tol("reduction"))


@pytest.mark.parametrize("name", list(NOISES))
def test_covariance_and_mean_correction_match_autograd(name, generator):
    r"""Sigma-hat_M = J_u J_u^T and m_M = 1/2 sum_i d^2 h_M / du_i^2 (per unit epsilon)."""
    params, xs, labels = _problem(generator, B=2, M=5)
    noise = NOISES[name]
    res = explicit_regularizer(params, xs, labels, noise)
    B, M, _ = xs.shape
    r = noise_dim(noise, params.hidden_size)
    eps2 = noise.epsilon**2
    for b in range(B):

        def hM(u, b=b):
            return rollout(params, xs[b : b + 1], noise=noise, eta=u.reshape(1, M, r))[0]

        u0 = torch.zeros(M * r, dtype=xs.dtype)
        Ju = torch.func.jacrev(hM)(u0)
        Hu = _hessian(hM)(u0)
        torch.testing.assert_close(res.covariance[b], Ju @ Ju.mT / eps2, **tol("reduction"))
        m = 0.5 * torch.diagonal(Hu, dim1=-2, dim2=-1).sum(-1) / eps2
        torch.testing.assert_close(res.mean_correction[b], m, **tol("reduction"))
    assert torch.linalg.eigvalsh(res.covariance).min() >= -1e-12


@settings(max_examples=30)
@given(model=model_and_inputs(max_hidden=5, max_steps=7), noise=noise_specs())
def test_forward_adjoint_naive_agree(model, noise):
    params, xs, g = model
    labels = torch.randint(0, params.num_classes, (xs.shape[0],), generator=g)
    fwd = explicit_regularizer(params, xs, labels, noise)
    adj = explicit_regularizer(params, xs, labels, noise, method="adjoint")
    nai = explicit_regularizer(params, xs, labels, noise, method="naive")
    for res in (adj, nai):
        torch.testing.assert_close(res.Q, fwd.Q, **tol("reduction"))
        torch.testing.assert_close(res.R, fwd.R, **tol("reduction"))
    torch.testing.assert_close(adj.per_step_R, nai.per_step_R, **tol("reduction"))
    torch.testing.assert_close(adj.per_step_Q, nai.per_step_Q, **tol("reduction"))
    # Sigma-hat is PSD and H_l is PSD, so R-hat >= 0 for cross-entropy.
    assert torch.linalg.eigvalsh(fwd.covariance).min() >= -1e-10 * (1 + fwd.covariance.abs().max())
    assert bool((fwd.R >= -1e-12).all())
    assert bool((adj.per_step_R >= -1e-12).all())


@settings(max_examples=25)
@given(
    model=model_and_inputs(max_hidden=4, max_steps=6),
    s1=st.floats(0.0, 2.0),
    s2=st.floats(0.0, 2.0),
    scale=st.floats(0.1, 3.0),
    eps=st.floats(0.01, 1.0),
    structure=st.sampled_from(["diagonal", "scalar"]),
)
def test_quadratic_in_noise_levels_and_eps_squared(model, s1, s2, scale, eps, structure):
    """Q-hat, R-hat are quadratic forms in (sigma1, sigma2), free of eps; gap ∝ eps^2."""
    params, xs, g = model
    labels = torch.randint(0, params.num_classes, (xs.shape[0],), generator=g)
    base = NoiseSpec(epsilon=1.0, sigma1=s1, sigma2=s2, structure=structure)
    r1 = explicit_regularizer(params, xs, labels, base)
    r2 = explicit_regularizer(
        params,
        xs,
        labels,
        NoiseSpec(epsilon=eps, sigma1=scale * s1, sigma2=scale * s2, structure=structure),
    )
    torch.testing.assert_close(r2.Q, scale**2 * r1.Q, **tol("reduction"))
    torch.testing.assert_close(r2.R, scale**2 * r1.R, **tol("reduction"))
    torch.testing.assert_close(r2.noise_gap, 0.5 * eps**2 * r2.total, **tol("elementwise"))
    assert bool((r2.mean_shift == 0).all())


@pytest.mark.parametrize("convention", ["sde", "paper_code"])
def test_zero_noise_levels_give_zero(convention, generator):
    params, xs, labels = _problem(generator)
    noise = NoiseSpec(epsilon=1.0, convention=convention)
    res = explicit_regularizer(params, xs, labels, noise, method="adjoint")
    for t in (res.Q, res.R, res.noise_gap, res.mean_shift, res.per_step_Q, res.per_step_R):
        assert bool((t == 0).all())
    est = estimate_noise_gap(params, xs, labels, noise, n_pairs=2, generator=generator)
    assert bool((est.gap == 0).all()) and bool((est.stderr == 0).all())


def test_paper_code_additive_gap_proportional_to_a_squared(generator):
    params, xs, labels = _problem(generator, per_unit_step=True)
    r1 = explicit_regularizer(params, xs, labels, NoiseSpec.paper_code(add=0.1))
    r2 = explicit_regularizer(params, xs, labels, NoiseSpec.paper_code(add=0.3))
    torch.testing.assert_close(r2.noise_gap, 9.0 * r1.noise_gap, **tol("reduction"))
    assert bool((r1.mean_shift == 0).all())


def test_paper_code_mean_shift_from_two_clean_runs(generator):
    """mean_shift = l(reference chain, step (1 - mu/2) d) - l(inference chain, step d)."""
    params, xs, labels = _problem(generator, per_unit_step=True)
    noise = NoiseSpec.paper_code(add=0.05, mult=0.2)
    res = explicit_regularizer(params, xs, labels, noise)
    eta0 = torch.zeros(*xs.shape[:2], noise_dim(noise, params.hidden_size), dtype=xs.dtype)
    ref = F.cross_entropy(
        rollout(params, xs, noise=noise, eta=eta0) @ params.V.mT + params.c,
        labels,
        reduction="none",
    )
    clean = F.cross_entropy(rollout(params, xs) @ params.V.mT + params.c, labels, reduction="none")
    torch.testing.assert_close(res.reference_loss, ref, **tol("elementwise"))
    torch.testing.assert_close(res.clean_loss, clean, **tol("elementwise"))
    torch.testing.assert_close(res.mean_shift, ref - clean, **tol("elementwise"))
    torch.testing.assert_close(
        res.predicted_gap, res.mean_shift + 0.5 * res.total, **tol("elementwise")
    )
    assert bool((res.mean_shift != 0).all())


def test_callable_loss_matches_closed_form_cross_entropy(generator):
    params, xs, labels = _problem(generator)
    noise = NOISES["sde-diagonal"]
    named = explicit_regularizer(params, xs, labels, noise)

    def ce(logits, y):
        return F.cross_entropy(logits, y, reduction="none")

    wrapped = explicit_regularizer(params, xs, labels, noise, loss=ce)
    torch.testing.assert_close(wrapped.Q, named.Q, **tol("reduction"))
    torch.testing.assert_close(wrapped.R, named.R, **tol("reduction"))
    assert wrapped.loss == "ce"


def test_callable_squared_loss_noise_space_identity(generator):
    """A regression loss on the readout: Q + R against the dense noise-space Hessian."""
    params, xs, _ = _problem(generator, C=2)
    targets = torch.randn(xs.shape[0], 2, generator=generator, dtype=torch.float64)
    noise = NOISES["sde-scalar"]

    def sq(logits, y):
        return 0.5 * ((logits - y) ** 2).sum(-1)

    res = explicit_regularizer(params, xs, targets, noise, loss=sq, method="adjoint")
    B, M, _ = xs.shape
    r = noise_dim(noise, params.hidden_size)
    for b in range(B):

        def G(u, b=b):
            h = rollout(params, xs[b : b + 1], noise=noise, eta=u.reshape(1, M, r))
            return sq(h @ params.V.mT + params.c, targets[b : b + 1])[0]

        Hu = _hessian(G)(torch.zeros(M * r, dtype=xs.dtype))
        torch.testing.assert_close(
            res.total[b], torch.trace(Hu) / noise.epsilon**2, **tol("reduction")
        )


def test_float32_follows_inputs(generator):
    params, xs, labels = _problem(generator)
    p32 = params.to(torch.float32)
    res = explicit_regularizer(p32, xs.float(), labels, NOISES["sde-diagonal"])
    ref = explicit_regularizer(params, xs, labels, NOISES["sde-diagonal"])
    assert res.Q.dtype == torch.float32 and res.covariance.dtype == torch.float32
    torch.testing.assert_close(res.total, ref.total.float(), **tol("reduction", torch.float32))


def test_result_to_dict_is_json(generator):
    params, xs, labels = _problem(generator)
    res = explicit_regularizer(params, xs, labels, NOISES["paper_code"], method="adjoint")
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["convention"] == "paper_code" and len(d["per_step_R"][0]) == xs.shape[1]
    assert d["total_mean"] == pytest.approx(float(res.total.mean()))


# --------------------------------------------------------------------- derivatives
@pytest.mark.parametrize("name", list(NOISES))
@pytest.mark.parametrize("method", ["forward", "adjoint"])
def test_parameter_gradient_matches_central_differences(name, method, generator):
    params, xs, labels = _problem(generator, per_unit_step=True)
    noise = NOISES[name]
    keys = ["A", "W", "U", "b", "V", "c", "step"]
    theta = {k: getattr(params, k) for k in keys}

    def objective(t):
        res = explicit_regularizer(params.replace(**t), xs, labels, noise, method=method)
        return res.predicted_gap.mean() + res.R.sum()

    grad = torch.func.grad(objective)(theta)
    direction = {
        k: torch.randn(v.shape, generator=generator, dtype=v.dtype) for k, v in theta.items()
    }
    h = 1e-6
    plus = objective({k: v + h * direction[k] for k, v in theta.items()})
    minus = objective({k: v - h * direction[k] for k, v in theta.items()})
    fd = (plus - minus) / (2 * h)
    analytic = sum((grad[k] * direction[k]).sum() for k in keys)
    torch.testing.assert_close(analytic, fd, **tol("autograd_vs_fd"))


def test_penalty_is_weighted_mean_predicted_gap_and_differentiable(generator):
    params, xs, labels = _problem(generator)
    noise = NOISES["paper_code"]
    res = explicit_regularizer(params, xs, labels, noise)
    pen = regularizer_penalty(params, xs, labels, noise, weight=3.0)
    torch.testing.assert_close(pen, 3.0 * res.predicted_gap.mean(), **tol("elementwise"))
    grads = torch.func.grad(lambda W: regularizer_penalty(params.replace(W=W), xs, labels, noise))(
        params.W
    )
    assert grads.shape == params.W.shape and bool(torch.isfinite(grads).all())


# --------------------------------------------------------------- pathwise expansion
@pytest.mark.parametrize("name", list(NOISES))
def test_pathwise_h1_h2_are_the_expansion_of_rollout(name, generator):
    r"""h^(1) = d/dt h_M(t eta), h^(2) = 1/2 d^2/dt^2 h_M(t eta) at t = 0 (autograd oracle)."""
    params, xs, _ = _problem(generator, B=2, M=5)
    noise = NOISES[name]
    kernel = StepKernel(params, noise)
    h0 = xs.new_zeros(xs.shape[0], params.hidden_size)
    _, hs, acts, fs = _reference_pass(kernel, xs, h0)
    r = noise_dim(noise, params.hidden_size)
    eta = torch.randn(3 * xs.shape[0], xs.shape[1], r, generator=generator, dtype=xs.dtype)
    h1, h2 = _pathwise(kernel, params, hs, acts, fs, eta, 3)
    xs_rep = xs.repeat(3, 1, 1)

    def path(t):
        return rollout(params, xs_rep, noise=noise, eta=t * eta)

    t0 = torch.zeros((), dtype=xs.dtype)
    d1 = torch.func.jacrev(path)(t0)
    d2 = torch.func.jacrev(torch.func.jacrev(path))(t0)
    B, H = xs.shape[0], params.hidden_size
    torch.testing.assert_close(h1, d1.reshape(3, B, H), **tol("reduction"))
    torch.testing.assert_close(h2, 0.5 * d2.reshape(3, B, H), **tol("reduction"))


# ------------------------------------------------------------- V1, V3: Monte Carlo
def _v1_model(seed: int):
    g = torch.Generator().manual_seed(seed)
    params = random_params(3, 2, 4, generator=g, dt=0.1)
    xs = torch.randn(2, 20, 2, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (2,), generator=g)
    return params, xs, labels


def test_v1_monte_carlo_reproduces_the_expansion():
    r"""docs/theory/oracles.md V1 on a seeded model: d_h = 3, M = 20, dt = 0.1, diagonal (1, 0.7).

    * plain antithetic gap within 4 SE + c eps^4 of eps^2/2 (Q + R), with c measured
      at eps = 0.4 (outside the table) from the control-variate residual, times 2;
    * gap / (eps^2/2) -> Q + R (error shrinking with eps, < 0.5% at eps = 0.05);
    * control-variate residual: fitted log-log slope in [3.7, 4.3] (the remainder is
      O(eps^4) with an O(eps^6) correction; docs/theory/oracles.md reports 4.05).
    """
    params, xs, labels = _v1_model(11)
    base = NoiseSpec(epsilon=1.0, sigma1=1.0, sigma2=0.7)
    exact = explicit_regularizer(params, xs, labels, base)
    total = exact.total
    eps_list = [0.4, 0.2, 0.1, 0.05]
    est = {
        e: estimate_noise_gap(
            params,
            xs,
            labels,
            base.scaled(e),
            n_pairs=10_000,
            generator=torch.Generator().manual_seed(2024),
        )
        for e in eps_list
    }
    c = 2.0 * est[0.4].residual.abs() / 0.4**4
    ratio_err = []
    for e in eps_list[1:]:
        r = est[e]
        torch.testing.assert_close(r.predicted, 0.5 * e**2 * total, **tol("elementwise"))
        bound = STATISTICAL_SIGMAS * r.plain_stderr + c * e**4
        assert bool(((r.plain_gap - r.predicted).abs() <= bound).all())
        assert bool(((r.gap - r.predicted).abs() <= STATISTICAL_SIGMAS * r.stderr + c * e**4).all())
        ratio_err.append(((r.gap / (0.5 * e**2) - total) / total).abs())
        # the control variate reduces the variance a lot at small noise
        assert bool((r.stderr < 0.2 * r.plain_stderr).all())
    ratio_err = torch.stack(ratio_err)
    assert bool((ratio_err[1:] < ratio_err[:-1]).all())
    assert bool((ratio_err[-1] < 5e-3).all())
    res = torch.stack([est[e].residual for e in eps_list])  # (4, B)
    se = torch.stack([est[e].stderr for e in eps_list])
    assert bool((res.abs() > STATISTICAL_SIGMAS * se).all())  # resolved at every eps
    assert bool(((res > 0).all(0) | (res < 0).all(0)).all())  # one sign per example
    x = np.log(np.array(eps_list))
    for b in range(xs.shape[0]):
        slope = np.polyfit(x, np.log(res[:, b].abs().numpy()), 1)[0]
        assert 3.7 <= slope <= 4.3, slope


def test_v3_paper_code_expansion_holds():
    """For "paper_code": train-minus-inference gap = mean shift + (Q + R)/2.

    Theory: docs/theory/regularizer.md.

    Levels (a, mu) = (s, 1.5 s); the residual of the control-variate estimate has a
    fitted slope in [3.7, 4.3] in s (O((a + mu)^4)); the plain estimate agrees within
    4 SE + c s^4 with c from the largest level.
    """
    params, xs, labels = _v1_model(12)
    levels = [0.025, 0.0125, 0.00625]
    est = {
        s: estimate_noise_gap(
            params,
            xs,
            labels,
            NoiseSpec.paper_code(add=s, mult=1.5 * s),
            n_pairs=10_000,
            generator=torch.Generator().manual_seed(7),
        )
        for s in levels
    }
    c = 2.0 * est[levels[0]].residual.abs() / levels[0] ** 4
    for s in levels[1:]:
        r = est[s]
        bound = STATISTICAL_SIGMAS * r.plain_stderr + c * s**4
        assert bool(((r.plain_gap - r.predicted).abs() <= bound).all())
    res = torch.stack([est[s].residual for s in levels])
    se = torch.stack([est[s].stderr for s in levels])
    assert bool((res.abs() > STATISTICAL_SIGMAS * se).all())
    x = np.log(np.array(levels))
    for b in range(xs.shape[0]):
        slope = np.polyfit(x, np.log(res[:, b].abs().numpy()), 1)[0]
        assert 3.7 <= slope <= 4.3, slope


@pytest.mark.parametrize("name", ["sde-scalar", "paper_code"])
def test_monte_carlo_within_four_standard_errors(name, generator):
    params, xs, labels = _problem(generator, B=3, M=8)
    noise = (
        NOISES[name].scaled(NOISES[name].epsilon * 0.2)
        if name != "paper_code"
        else (NoiseSpec.paper_code(add=0.02, mult=0.05))
    )
    est = estimate_noise_gap(params, xs, labels, noise, n_pairs=4000, generator=generator)
    plain = estimate_noise_gap(
        params, xs, labels, noise, n_pairs=4000, generator=generator, control_variate=False
    )
    # Within 4 SE plus a remainder bound far below the effect (checked: the residual
    # here is < 2% of the prediction).
    slack = 0.05 * est.predicted.abs()
    assert bool(((plain.gap - est.predicted).abs() <= 4 * plain.stderr + slack).all())
    assert plain.gap.equal(plain.plain_gap) and not plain.control_variate
    assert abs(est.mean - est.predicted_mean) <= 4 * est.mean_stderr + float(slack.mean())
    assert est.mean_stderr <= est.plain_mean_stderr


# ------------------------------------- docs/theory/regularizer.md: continuous time
def test_continuous_rk4_matches_solve_ivp(generator):
    params, xs, labels = _problem(generator, M=5)
    noise = NoiseSpec(epsilon=0.5, sigma1=1.0, sigma2=0.6, structure="scalar")
    rk = continuous_regularizer(params, xs, labels, noise, n_substeps=8)
    ivp = continuous_regularizer(params, xs, labels, noise, solver="solve_ivp")
    # RK4 error ~ (dt/8)^4 * |derivatives| ~ 1e-8 relative here; DOP853 at rtol 1e-11.
    torch.testing.assert_close(rk.Q, ivp.Q, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(rk.R, ivp.R, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(rk.noise_gap, 0.125 * rk.total, **tol("elementwise"))


@pytest.mark.parametrize("sigma2", [0.0, 0.4])
def test_continuous_scalar_linear_closed_form(sigma2):
    r"""dh = lam h dt + (s1 + s2 h) dB with loss curvature: R = l''(h_T) Sigma_T, Q = 0.

    Sigma_T = s1^2 (e^{2 lam T} - 1)/(2 lam) + 2 s1 s2 h0 (e^{2 lam T} - e^{lam T})/lam
    + s2^2 h0^2 T e^{2 lam T}  (integrating the moment ODE by hand).
    """
    lam, s1, h0v, T, M = -0.7, 0.8, 0.5, 1.2, 6
    dt = T / M
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
    xs = torch.zeros(1, M, 1, dtype=t64)
    h0 = torch.full((1, 1), h0v, dtype=t64)
    labels = torch.tensor([0])
    noise = NoiseSpec(epsilon=1.0, sigma1=s1, sigma2=sigma2)
    res = continuous_regularizer(params, xs, labels, noise, h0=h0, solver="solve_ivp")
    e1, e2 = math.exp(lam * T), math.exp(2 * lam * T)
    Sigma = (
        s1**2 * (e2 - 1) / (2 * lam)
        + 2 * s1 * sigma2 * h0v * (e2 - e1) / lam
        + sigma2**2 * h0v**2 * T * e2
    )
    hT = h0v * e1
    p = torch.softmax(torch.tensor([hT, -hT], dtype=t64), 0)
    curv = 4 * p[0] * p[1]  # V^T Pi_p V for V = (1, -1)^T
    torch.testing.assert_close(res.R, (curv * Sigma).reshape(1), rtol=1e-9, atol=1e-12)
    assert abs(float(res.Q)) < 1e-12


def test_discrete_converges_to_continuous_at_first_order(generator):
    r"""(Q-hat, R-hat) -> (Q, R) as dt -> 0 at fixed T (docs/theory/regularizer.md, V2).

    Euler for the clean chain and the discrete covariance recursion are first-order
    accurate, so the error is c1 dt + O(dt^2); over dt = 0.1 / (1..32) the fitted slope
    lies within [0.85, 1.15] (the O(dt^2) term bends only the coarsest levels).
    """
    params, xs, labels = _problem(generator, M=6, B=2)
    noise = NoiseSpec(epsilon=1.0, sigma1=1.0, sigma2=0.5)
    conv = regularizer_convergence(params, xs, labels, noise, refinements=(1, 2, 4, 8, 16, 32))
    assert 0.85 <= conv.order <= 1.15, conv.order
    assert bool((conv.error[1:] < conv.error[:-1]).all())
    assert conv.Q_hat.shape == (6, 2) and conv.dts.shape == (6,)


# ------------------------------------------------------------------------ bad input
def test_bad_inputs_raise_clear_errors(generator):
    params, xs, labels = _problem(generator)
    noise = NOISES["sde-diagonal"]
    with pytest.raises(TypeError, match="params: expected NRNNParams"):
        explicit_regularizer({"A": params.A}, xs, labels, noise)
    with pytest.raises(ValueError, match="noise: expected a NoiseSpec"):
        explicit_regularizer(params, xs, labels, None)
    with pytest.raises(ValueError, match=r"labels: expected shape \(3,\)"):
        explicit_regularizer(params, xs, labels[:2], noise)
    with pytest.raises(TypeError, match="labels: expected an integer tensor"):
        explicit_regularizer(params, xs, labels.double(), noise)
    with pytest.raises(ValueError, match=r"labels: expected class indices in \[0, 4\)"):
        explicit_regularizer(params, xs, labels + 10, noise)
    with pytest.raises(ValueError, match="loss: expected one of 'cross_entropy'"):
        explicit_regularizer(params, xs, labels, noise, loss="hinge")
    with pytest.raises(TypeError, match="loss: expected one of"):
        explicit_regularizer(params, xs, labels, noise, loss=3)
    with pytest.raises(ValueError, match="method: expected one of"):
        explicit_regularizer(params, xs, labels, noise, method="magic")
    bad_xs = xs.clone()
    bad_xs[0, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="xs: expected finite values"):
        explicit_regularizer(params, bad_xs, labels, noise)
    with pytest.raises(ValueError, match=r"xs: expected shape \(\?, \?, 2\)"):
        explicit_regularizer(params, xs[..., :1], labels, noise)
    with pytest.raises(ValueError, match="W: expected finite values"):
        params.replace(W=params.W * float("nan"))
    with pytest.raises(ValueError, match=r"h0: expected shape \(3, 3\)"):
        explicit_regularizer(params, xs, labels, noise, h0=torch.zeros(2, 3, dtype=xs.dtype))

    def batch_mean_loss(logits, y):
        return F.cross_entropy(logits, y)  # reduction="mean": a scalar, not per example

    with pytest.raises(ValueError, match=r"loss: expected the callable to return per-example"):
        explicit_regularizer(params, xs, labels, noise, loss=batch_mean_loss)
    with pytest.raises(ValueError, match="n_pairs: expected an integer >= 2"):
        estimate_noise_gap(params, xs, labels, noise, n_pairs=1, generator=generator)
    with pytest.raises(TypeError, match="n_pairs: expected an integer"):
        estimate_noise_gap(params, xs, labels, noise, n_pairs=10.0, generator=generator)
    with pytest.raises(ValueError, match="noise: expected convention 'sde'"):
        continuous_regularizer(params, xs, labels, NOISES["paper_code"])
    stepped = params.replace(step=torch.full((3,), 0.1, dtype=xs.dtype))
    with pytest.raises(ValueError, match="params.step: expected None"):
        continuous_regularizer(stepped, xs, labels, noise)
    with pytest.raises(ValueError, match="solver: expected one of"):
        continuous_regularizer(params, xs, labels, noise, solver="euler")
    with pytest.raises(ValueError, match="refinements: expected at least two"):
        regularizer_convergence(params, xs, labels, noise, refinements=(1,))


def test_overflow_raises_non_finite(generator):
    from nrnn_theory import NonFiniteStateError

    params, xs, labels = _problem(generator, M=40)
    big = params.replace(A=1e4 * torch.eye(3, dtype=xs.dtype), dt=1.0)
    with pytest.raises(NonFiniteStateError, match="explicit_regularizer: the result is not finite"):
        explicit_regularizer(big, xs, labels, NOISES["sde-diagonal"])
    res = explicit_regularizer(big, xs, labels, NOISES["sde-diagonal"], allow_nonfinite=True)
    assert not bool(torch.isfinite(res.R).all())
