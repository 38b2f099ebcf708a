"""Tests of nrnn_theory.dynamics: Jacobians, conventions, determinism, orders, torchsde.

Oracles: torch.func.jacrev (Jacobians), closed-form geometric Brownian motion
(strong and weak orders), exact one-step moments (docs/theory/oracles.md V3), torchsde's
Euler scheme on the same Brownian increments, a plain per-step loop (rollout).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nrnn_theory import (
    NoiseSpec,
    NRNNParams,
    diffusion,
    drift,
    input_jacobian,
    logits,
    noise_covariance,
    noise_dim,
    noise_matrix,
    readout,
    rollout,
    sample_noise,
    state_jacobian,
    step,
    step_moments,
)
from nrnn_theory._step import SQRT12

from _problems import gbm_exact, random_params
from _strategies import model_and_inputs, noise_specs
from _tolerances import STATISTICAL_SIGMAS, tol


def _draw_eta(noise, B, H, g, dtype=torch.float64):
    return sample_noise(noise, B, 1, H, dtype=dtype, generator=g)[:, 0]


# ------------------------------------------------------------------------- Jacobians
@given(model_and_inputs(), noise_specs(), st.booleans())
def test_state_and_input_jacobians_match_jacrev(model, noise, with_eta):
    params, xs, g = model
    B, _, _ = xs.shape
    H = params.hidden_size
    h = torch.randn(B, H, generator=g, dtype=xs.dtype)
    x = xs[:, 0]
    eta = _draw_eta(noise, B, H, g) if with_eta else None
    if eta is None:
        # eta = None is the reference chain eta = 0 (no randomness in the step).
        eta_step = torch.zeros(B, noise_dim(noise, H), dtype=xs.dtype)
    else:
        eta_step = eta

    def f_h(hh):
        return step(params, hh, x, noise=noise, eta=eta_step)

    def f_x(xx):
        return step(params, h, xx, noise=noise, eta=eta_step)

    dense_h = torch.func.jacrev(f_h)(h)  # (B, H, B, H)
    dense_x = torch.func.jacrev(f_x)(x)  # (B, H, B, D)
    idx = torch.arange(B)
    J = state_jacobian(params, h, x, noise=noise, eta=eta)
    Jx = input_jacobian(params, h, x, noise=noise, eta=eta)
    torch.testing.assert_close(J, dense_h[idx, :, idx, :], **tol("elementwise"))
    torch.testing.assert_close(Jx, dense_x[idx, :, idx, :], **tol("elementwise"))


@given(model_and_inputs())
def test_clean_jacobian_closed_form(model):
    params, xs, g = model
    B = xs.shape[0]
    h = torch.randn(B, params.hidden_size, generator=g, dtype=xs.dtype)
    x = xs[:, 0]
    z = h @ params.W.T + x @ params.U.T + params.b
    K = params.alpha * params.A + (1 - torch.tanh(z) ** 2).unsqueeze(-1) * params.W
    expected = torch.eye(params.hidden_size) + params.drift_step.unsqueeze(-1) * K
    torch.testing.assert_close(state_jacobian(params, h, x), expected, **tol("elementwise"))
    torch.testing.assert_close(
        drift(params, h, x), h @ (params.alpha * params.A).T + torch.tanh(z), **tol("elementwise")
    )


# ------------------------------------------------------------ unified step structure
@given(model_and_inputs(), noise_specs())
def test_step_is_mean_plus_noise_matrix_times_eta(model, noise):
    """step(h, eta) = mean step + G(h, x) eta, exactly (unified form).

    Theory: docs/theory/regularizer.md.
    """
    params, xs, g = model
    B = xs.shape[0]
    H = params.hidden_size
    h = torch.randn(B, H, generator=g, dtype=xs.dtype)
    x = xs[:, 0]
    eta = _draw_eta(noise, B, H, g)
    mean, cov = step_moments(params, h, x, noise)
    G = noise_matrix(params, h, x, noise)
    torch.testing.assert_close(
        step(params, h, x, noise=noise, eta=eta),
        mean + (G @ eta.unsqueeze(-1)).squeeze(-1),
        **tol("reduction"),
    )
    torch.testing.assert_close(cov, G @ G.mT, **tol("elementwise"))


def test_diffusion_closed_forms(generator):
    params = random_params(3, 2, 2, generator=generator)
    h = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    diag = diffusion(params, h, NoiseSpec(epsilon=0.3, sigma1=0.5, sigma2=2.0))
    torch.testing.assert_close(diag, torch.diag_embed(0.5 + 2.0 * h), **tol("elementwise"))
    scal = diffusion(params, h, NoiseSpec(sigma1=0.5, sigma2=2.0, structure="scalar"))
    assert scal.shape == (4, 3, 4)
    torch.testing.assert_close(scal[:, :, :3], 0.5 * torch.eye(3).expand(4, 3, 3).double())
    torch.testing.assert_close(scal[:, :, 3], 2.0 * h)
    # The step's G is eps * sqrt(dt) * sigma(h) for the sde convention.
    noise = NoiseSpec(epsilon=0.3, sigma1=0.5, sigma2=2.0, structure="scalar")
    G = noise_matrix(params, h, torch.zeros(4, 2, dtype=torch.float64), noise)
    torch.testing.assert_close(G, 0.3 * math.sqrt(params.dt) * scal, **tol("elementwise"))


# --------------------------------------------------------------- paper_code step (V3)
def test_paper_code_step_matches_description(generator):
    """h + d*m*f + a*zeta, m = 1 - mu + mu*u, u ~ U(0,1), no sqrt(dt).

    Theory: docs/theory/conventions.md.
    """
    H, B = 3, 200_000
    params = random_params(H, 2, 2, generator=generator, dt=0.01, per_unit_step=True)
    h = torch.randn(1, H, generator=generator, dtype=torch.float64).expand(B, H)
    x = torch.randn(1, 2, generator=generator, dtype=torch.float64).expand(B, 2)
    df = params.step * drift(params, h[:1], x[:1])[0]  # d * f, (H,)

    # Multiplicative factor alone (a = 0): m in [1 - mu, 1], mean 1 - mu/2, var mu^2/12.
    mu = 0.3
    h1 = step(params, h, x, noise=NoiseSpec.paper_code(add=0.0, mult=mu), generator=generator)
    m = (h1 - h) / df
    assert float(m.min()) >= 1 - mu - 1e-12 and float(m.max()) <= 1 + 1e-12
    se_mean = math.sqrt(mu**2 / 12 / B)
    assert abs(float(m.mean()) - (1 - mu / 2)) < STATISTICAL_SIGMAS * se_mean
    # Var of a sample variance of U(0,1)*mu: (mu^4/80 - mu^4/144) / B.
    se_var = math.sqrt((mu**4 / 80 - mu**4 / 144) / B)
    assert np.all(np.abs(m.var(dim=0).numpy() - mu**2 / 12) < STATISTICAL_SIGMAS * se_var)

    # Additive alone (mu = 0): increment - d*f ~ N(0, a^2 I), not scaled by sqrt(dt).
    a = 0.05
    h2 = step(params, h, x, noise=NoiseSpec.paper_code(add=a, mult=0.0), generator=generator)
    z = (h2 - h - df) / a
    assert np.all(np.abs(z.mean(dim=0).numpy()) < STATISTICAL_SIGMAS / math.sqrt(B))
    assert np.all(np.abs(z.var(dim=0).numpy() - 1) < STATISTICAL_SIGMAS * math.sqrt(2 / B))

    # Noise off (inference): the step is exactly h + d*f.
    torch.testing.assert_close(step(params, h[:1], x[:1]), h[:1] + df, **tol("elementwise"))


def test_paper_code_moments_monte_carlo(generator):
    """Sample mean and covariance of one noisy step agree with step_moments (V3)."""
    H, B = 3, 100_000
    params = random_params(H, 2, 2, generator=generator, dt=0.1, per_unit_step=True)
    noise = NoiseSpec.paper_code(add=0.05, mult=0.4)
    h = torch.randn(1, H, generator=generator, dtype=torch.float64)
    x = torch.randn(1, 2, generator=generator, dtype=torch.float64)
    mean, cov = step_moments(params, h, x, noise)
    samples = step(params, h.expand(B, H), x.expand(B, 2), noise=noise, generator=generator)
    se = (cov.diagonal(dim1=-2, dim2=-1)[0] / B).sqrt()
    assert torch.all((samples.mean(0) - mean[0]).abs() < STATISTICAL_SIGMAS * se)
    emp = torch.cov(samples.T)
    # Standard error of a sample covariance entry: sqrt((C_ii C_jj + C_ij^2) / B) (Gaussian
    # approximation; the uniform part has lighter tails, so this is conservative).
    c = cov[0]
    se_cov = ((c.diagonal().outer(c.diagonal()) + c**2) / B).sqrt()
    assert torch.all((emp - c).abs() < STATISTICAL_SIGMAS * se_cov + 1e-12)


def test_paper_code_moments_closed_form(generator):
    params = random_params(4, 2, 2, generator=generator, dt=0.05, per_unit_step=True)
    a, mu = 0.03, 0.2
    noise = NoiseSpec.paper_code(add=a, mult=mu)
    h = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    x = torch.randn(5, 2, generator=generator, dtype=torch.float64)
    df = params.step * drift(params, h, x)
    mean, cov = step_moments(params, h, x, noise)
    torch.testing.assert_close(mean, h + (1 - mu / 2) * df, **tol("elementwise"))
    expected = a**2 * torch.eye(4, dtype=torch.float64) + mu**2 / 12 * torch.diag_embed(df**2)
    torch.testing.assert_close(cov, expected, **tol("elementwise"))
    torch.testing.assert_close(noise_covariance(params, h, x, noise), expected)


def test_paper_code_eta_encodes_uniform_factor(generator):
    """The standardized multiplicative draw sqrt(12)(u - 1/2) lies in [-sqrt 3, sqrt 3]."""
    eta = sample_noise(NoiseSpec.paper_code(0.1, 0.1), 1000, 3, 4, generator=generator)
    mult = eta[..., 4:]
    assert float(mult.abs().max()) <= SQRT12 / 2
    assert abs(float(mult.mean())) < STATISTICAL_SIGMAS / math.sqrt(mult.numel())


# ------------------------------------------------------- determinism and noise paths
@given(model_and_inputs(max_steps=20), noise_specs())
def test_sampled_rollout_replays_from_sample_noise(model, noise):
    params, xs, g = model
    B, T, _ = xs.shape
    state = g.get_state()
    sampled = rollout(params, xs, noise=noise, generator=g, return_states=True)
    g.set_state(state)
    eta = sample_noise(noise, B, T, params.hidden_size, dtype=xs.dtype, generator=g)
    replayed = rollout(params, xs, noise=noise, eta=eta, return_states=True)
    assert torch.equal(sampled, replayed)


def test_same_seed_gives_bitwise_identical_rollouts(generator):
    params = random_params(5, 2, 3, generator=generator)
    xs = torch.randn(4, 200, 2, generator=generator, dtype=torch.float64)
    for noise in [
        NoiseSpec(epsilon=0.5, sigma1=1.0, sigma2=0.3),
        NoiseSpec(epsilon=0.5, sigma1=1.0, sigma2=0.3, structure="scalar"),
        NoiseSpec.paper_code(add=0.05, mult=0.02),
    ]:
        r1 = rollout(params, xs, noise=noise, generator=torch.Generator().manual_seed(7))
        r2 = rollout(params, xs, noise=noise, generator=torch.Generator().manual_seed(7))
        r3 = rollout(params, xs, noise=noise, generator=torch.Generator().manual_seed(8))
        assert torch.equal(r1, r2)
        assert not torch.equal(r1, r3)


@given(model_and_inputs(max_steps=10), noise_specs())
def test_zero_noise_is_the_noise_free_rollout(model, noise):
    params, xs, g = model
    clean = rollout(params, xs)
    assert torch.equal(rollout(params, xs, noise=noise.scaled(0.0), generator=g), clean)
    assert torch.equal(logits(params, xs, noise=noise.scaled(0.0)), readout(params, clean))


def test_rollout_matches_a_plain_step_loop_across_chunks(generator):
    """T = 300 crosses the internal 128-step chunks; compare with step() applied T times."""
    params = random_params(4, 3, 2, generator=generator, per_unit_step=True)
    xs = torch.randn(3, 300, 3, generator=generator, dtype=torch.float64)
    noise = NoiseSpec.paper_code(add=0.05, mult=0.1)
    eta = sample_noise(noise, 3, 300, 4, dtype=torch.float64, generator=generator)
    h0 = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    states = rollout(params, xs, noise=noise, eta=eta, h0=h0, return_states=True)
    h = h0
    for t in range(300):
        h = step(params, h, xs[:, t], noise=noise, eta=eta[:, t])
        torch.testing.assert_close(states[:, t], h, **tol("reduction"))
    assert torch.equal(states[:, -1], rollout(params, xs, noise=noise, eta=eta, h0=h0))


def test_antithetic_partner_and_reference_chain(generator):
    params = random_params(3, 1, 2, generator=generator)
    xs = torch.randn(2, 30, 1, generator=generator, dtype=torch.float64)
    noise = NoiseSpec(epsilon=0.2, sigma1=1.0)
    eta = sample_noise(noise, 2, 30, 3, dtype=torch.float64, generator=generator)
    plus = rollout(params, xs, noise=noise, eta=eta)
    minus = rollout(params, xs, noise=noise, eta=-eta)
    flipped = rollout(params, xs, noise=noise.scaled(-0.2 * -1), eta=-eta)
    assert torch.equal(minus, flipped)
    assert not torch.allclose(plus, minus)
    # eta = 0 is the reference chain; for sde it is the clean rollout.
    torch.testing.assert_close(
        rollout(params, xs, noise=noise, eta=torch.zeros_like(eta)), rollout(params, xs)
    )


def test_paper_code_reference_chain_uses_mean_step(generator):
    params = random_params(3, 1, 2, generator=generator, per_unit_step=True)
    xs = torch.randn(2, 20, 1, generator=generator, dtype=torch.float64)
    noise = NoiseSpec.paper_code(add=0.1, mult=0.3)
    ref = rollout(params, xs, noise=noise, eta=torch.zeros(2, 20, 6, dtype=torch.float64))
    expected = rollout(params.replace(step=(1 - 0.15) * params.step), xs)
    torch.testing.assert_close(ref, expected, **tol("elementwise"))


def test_dtype_follows_inputs(generator):
    params = random_params(3, 2, 2, generator=generator, dtype=torch.float32)
    xs = torch.randn(2, 5, 2, generator=generator)
    noise = NoiseSpec(sigma1=0.1, structure="scalar")
    assert rollout(params, xs, noise=noise, generator=generator).dtype == torch.float32
    assert logits(params, xs).dtype == torch.float32
    assert sample_noise(noise, 2, 5, 3, generator=generator).dtype == torch.float32


def test_rollout_is_differentiable(generator):
    params = random_params(3, 2, 2, generator=generator)
    noise = NoiseSpec(epsilon=0.3, sigma1=0.5, sigma2=0.5)
    eta = sample_noise(noise, 2, 6, 3, dtype=torch.float64, generator=generator)
    xs = torch.randn(2, 6, 2, generator=generator, dtype=torch.float64)

    def f(A, W, U, x):
        p = params.replace(A=A, W=W, U=U)
        return logits(p, x, noise=noise, eta=eta)

    inputs = tuple(t.clone().requires_grad_() for t in (params.A, params.W, params.U, xs))
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


# ---------------------------------------------------- Euler-Maruyama orders on GBM
def _gbm_params(lam: float, dt: float) -> NRNNParams:
    """H = 1 NRNN whose drift is lam * h: W = U = b = 0 so tanh(...) = 0."""
    z = torch.zeros(1, 1, dtype=torch.float64)
    return NRNNParams(
        A=torch.full((1, 1), lam, dtype=torch.float64),
        W=z,
        U=z,
        b=torch.zeros(1, dtype=torch.float64),
        V=torch.ones(1, 1, dtype=torch.float64),
        c=torch.zeros(1, dtype=torch.float64),
        dt=dt,
    )


def _gbm_errors(n_paths: int, levels: list[int], lam: float, sigma: float, generator):
    """Strong and weak errors of Euler-Maruyama at dt = 2^-level on shared Brownian paths."""
    finest = max(levels)
    n_fine = 2**finest
    dW = torch.randn(n_paths, n_fine, generator=generator, dtype=torch.float64) * 2 ** (-finest / 2)
    exact = gbm_exact(1.0, lam, sigma, 1.0, dW.sum(1))
    strong, weak = [], []
    for level in levels:
        dt = 2.0**-level
        inc = dW.reshape(n_paths, 2**level, -1).sum(-1)  # coarse Brownian increments
        eta = (inc / math.sqrt(dt)).unsqueeze(-1)
        xs = torch.zeros(n_paths, 2**level, 1, dtype=torch.float64)
        h0 = torch.ones(n_paths, 1, dtype=torch.float64)
        xT = rollout(_gbm_params(lam, dt), xs, noise=NoiseSpec(sigma2=sigma), eta=eta, h0=h0)
        xT = xT[:, 0]
        strong.append(float((xT - exact).abs().mean()))
        weak.append(float((xT - exact).mean()))  # E X^EM - E X on shared paths
    return np.array(strong), np.array(weak)


def test_euler_maruyama_strong_and_weak_orders_on_gbm(generator):
    levels = [3, 4, 5, 6, 7]
    log_dt = -np.array(levels) * np.log(2)
    # Strong order 1/2 for multiplicative noise: the leading error is the Milstein term
    # sigma^2 X (dB^2 - dt)/2 of size O(dt^(1/2)); with sigma = 1 it dominates the O(dt)
    # drift error already at dt = 1/8 (fitted slopes 0.48-0.52 over seeds). The band
    # +-0.15 leaves room for that pre-asymptotic curvature and the Monte Carlo error.
    strong, _ = _gbm_errors(20_000, levels, 1.0, 1.0, generator)
    strong_slope = np.polyfit(log_dt, np.log(strong), 1)[0]
    assert 0.35 <= strong_slope <= 0.65, strong_slope
    # Weak order 1: E X^EM = (1 + lam dt)^M exactly, so the weak error is
    # (1 + lam dt)^(1/dt) - e^lam ~ -(lam^2/2) e^lam dt. Estimated on paths shared with
    # the exact solution (a control variate); sigma = 0.5 keeps its Monte Carlo error
    # below 10% of the weak error at the finest level. Band +-0.2 (fits gave 0.95-0.97).
    lam = 1.0
    _, weak = _gbm_errors(20_000, levels, lam, 0.5, generator)
    weak_slope = np.polyfit(log_dt, np.log(np.abs(weak)), 1)[0]
    assert 0.8 <= weak_slope <= 1.2, weak_slope
    closed = np.array([(1 + lam * 2.0**-lv) ** (2**lv) - math.exp(lam) for lv in levels])
    np.testing.assert_allclose(weak, closed, rtol=0.15)  # Monte Carlo error, see above


# -------------------------------------------------------------------- torchsde oracle
@pytest.mark.parametrize("structure", ["diagonal", "scalar"])
def test_rollout_matches_torchsde_euler(structure, generator):
    import torchsde  # in the test extra: a missing install is a failure, not a skip

    # dt a power of two: torchsde accumulates t += dt, exact only for dyadic steps; an
    # inexact t makes it query the Brownian interval at slightly shifted times.
    H, D, B, T, dt = 3, 2, 4, 25, 2.0**-4
    params = random_params(H, D, 2, generator=generator, dt=dt)
    noise = NoiseSpec(epsilon=0.7, sigma1=0.4, sigma2=0.9, structure=structure)
    xs = torch.randn(B, T, D, generator=generator, dtype=torch.float64)
    r = noise_dim(noise, H)
    bm = torchsde.BrownianInterval(
        t0=0.0, t1=T * dt, size=(B, r), dtype=torch.float64, dt=dt, entropy=1234
    )
    ts = torch.linspace(0.0, T * dt, T + 1, dtype=torch.float64)
    increments = torch.stack([bm(float(ts[k]), float(ts[k + 1])) for k in range(T)], dim=1)
    eta = increments / math.sqrt(dt)

    class SDE(torch.nn.Module):
        noise_type = "diagonal" if structure == "diagonal" else "general"
        sde_type = "ito"

        def f(self, t, y):
            k = min(int(round(float(t) / dt)), T - 1)
            return drift(params, y, xs[:, k])

        def g(self, t, y):
            return noise.epsilon * (
                diffusion(params, y, noise).diagonal(dim1=-2, dim2=-1)
                if structure == "diagonal"
                else diffusion(params, y, noise)
            )

    h0 = torch.zeros(B, H, dtype=torch.float64)
    ys = torchsde.sdeint(SDE(), h0, ts, bm=bm, method="euler", dt=dt)  # (T+1, B, H)
    ours = rollout(params, xs, noise=noise, eta=eta, return_states=True)
    torch.testing.assert_close(ours, ys[1:].transpose(0, 1), **tol("reduction"))


# -------------------------------------------------------------------------- validation
def _base(generator):
    return random_params(3, 2, 2, generator=generator)


@pytest.mark.parametrize(
    ("change", "name"),
    [
        (lambda p: {"A": torch.zeros(3, 2, dtype=torch.float64)}, "A"),
        (lambda p: {"W": torch.zeros(2, 2, dtype=torch.float64)}, "W"),
        (lambda p: {"U": torch.zeros(2, 2, dtype=torch.float64)}, "U"),
        (lambda p: {"b": torch.zeros(4, dtype=torch.float64)}, "b"),
        (lambda p: {"V": torch.zeros(2, 4, dtype=torch.float64)}, "V"),
        (lambda p: {"c": torch.zeros(3, dtype=torch.float64)}, "c"),
        (lambda p: {"step": torch.zeros(2, dtype=torch.float64)}, "step"),
        (lambda p: {"W": p.W.float()}, "W"),
        (lambda p: {"A": p.A.clone().fill_(float("nan"))}, "A"),
        (lambda p: {"U": p.U.clone().fill_(float("inf"))}, "U"),
        (lambda p: {"dt": 0.0}, "dt"),
        (lambda p: {"dt": -0.1}, "dt"),
        (lambda p: {"dt": float("nan")}, "dt"),
        (lambda p: {"A": [[1.0]]}, "A"),
        (lambda p: {"A": torch.zeros(3, 3, dtype=torch.int64)}, "A"),
    ],
)
def test_params_validation_names_the_field(change, name, generator):
    p = _base(generator)
    with pytest.raises((ValueError, TypeError), match=rf"^{name}: expected"):
        p.replace(**change(p))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"epsilon": -1.0}, "epsilon"),
        ({"sigma1": -0.1}, "sigma1"),
        ({"sigma2": float("nan")}, "sigma2"),
        ({"structure": "full"}, "structure"),
        ({"convention": "ito"}, "convention"),
        ({"convention": "paper_code", "structure": "scalar"}, "structure"),
        ({"convention": "paper_code", "sigma2": 1.5}, "sigma2"),
    ],
)
def test_noise_validation_names_the_field(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=rf"^{name}: expected"):
        NoiseSpec(**kwargs)


def test_rollout_validation_messages(generator):
    p = _base(generator)
    xs = torch.randn(2, 5, 2, dtype=torch.float64)
    noise = NoiseSpec(sigma1=1.0)
    with pytest.raises(ValueError, match=r"^xs: expected shape \(\?, \?, 2\).*got \(2, 5, 3\)"):
        rollout(p, torch.randn(2, 5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^xs: expected shape"):
        rollout(p, torch.randn(5, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"^xs: expected dtype torch.float64"):
        rollout(p, xs.float())
    with pytest.raises(ValueError, match=r"^xs: expected finite values, got 1 non-finite"):
        bad = xs.clone()
        bad[0, 1, 0] = float("nan")
        rollout(p, bad)
    with pytest.raises(ValueError, match=r"^xs: expected at least one time step"):
        rollout(p, xs[:, :0])
    with pytest.raises(ValueError, match=r"^h0: expected shape \(2, 3\)"):
        rollout(p, xs, h0=torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^eta: expected shape \(2, 5, 3\)"):
        rollout(p, xs, noise=noise, eta=torch.zeros(2, 5, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^eta: noise draws were given but noise is None"):
        rollout(p, xs, eta=torch.zeros(2, 5, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"^noise: expected NoiseSpec"):
        rollout(p, xs, noise={"sigma1": 1.0})
    with pytest.raises(TypeError, match=r"^params: expected NRNNParams"):
        rollout({"A": p.A}, xs)
    with pytest.raises(ValueError, match=r"^x: expected shape \(2, 2\)"):
        step(p, torch.zeros(2, 3, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^noise: expected a NoiseSpec with convention 'sde'"):
        diffusion(p, torch.zeros(1, 3, dtype=torch.float64), NoiseSpec.paper_code(0.1, 0.1))
    with pytest.raises(ValueError, match=r"^batch_size: expected an integer >= 1"):
        sample_noise(noise, 0, 5, 3)


def test_overflow_names_the_step(generator):
    z = torch.zeros(3, 3, dtype=torch.float64)
    p = _base(generator).replace(A=10.0 * torch.eye(3, dtype=torch.float64), W=z, b=z[0], dt=1.0)
    xs = torch.zeros(2, 400, 2, dtype=torch.float64)
    h0 = torch.ones(2, 3, dtype=torch.float64)
    # h_k = 11^k exactly; 296 ln 11 = 709.777 < ln(max float64) = 709.783 < 297 ln 11, so
    # h_297 is the first infinite state, produced by the update of 0-based step 296.
    with pytest.raises(FloatingPointError, match=r"non-finite .* at step 296 of 400 .* in 2 of 2"):
        rollout(p, xs, h0=h0)
    # The same holds for a noisy rollout whose noise was drawn internally.
    with pytest.raises(FloatingPointError, match=r"at step 29[0-9] of 400"):
        rollout(p, xs, h0=h0, noise=NoiseSpec(sigma1=0.1), generator=generator)
    out = rollout(p, xs, h0=h0, allow_nonfinite=True)
    assert not torch.isfinite(out).all()
