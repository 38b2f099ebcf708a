"""Tests of nrnn_theory.lyapunov against closed forms, autodiff and quadrature.

Theory: docs/theory/stability.md, docs/theory/oracles.md.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nrnn_theory import (
    NoiseSpec,
    NonFiniteStateError,
    kaplan_yorke_dimension,
    lyapunov_spectrum,
    lyapunov_spectrum_map,
    rollout,
    sample_noise,
    state_jacobian,
    state_jacobian_norms,
)
from nrnn_theory import step as nrnn_step
from nrnn_theory._linalg import (
    benettin_condition_target,
    cholesky_qr2,
    cholesky_qr_max_condition,
    qr_positive,
)

from _problems import (
    em_gbm_exponent,
    em_linear_scalar_exponent,
    linear_params,
    lorenz_rk4,
    random_params,
)
from _strategies import model_and_inputs, noise_specs, seeds
from _tolerances import STATISTICAL_SIGMAS, tol


F64 = torch.float64


def _real_spectrum_matrix(mus, generator):
    """A = P diag(mu) P^-1 with a well-conditioned random P (real, distinct eigenvalues)."""
    n = len(mus)
    P = torch.eye(n, dtype=F64) + 0.3 * torch.randn(n, n, generator=generator, dtype=F64)
    return P @ torch.diag(torch.tensor(mus, dtype=F64)) @ torch.linalg.inv(P)


def _zeros(B, T, D=1):
    return torch.zeros(B, T, D, dtype=F64)


# ----------------------------------------------------------------------- V5: linear maps
@pytest.mark.parametrize("qr", ["householder", "cholesky"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_linear_map_exponents_are_log_eigenvalue_moduli(generator, k, qr):
    # docs/theory/oracles.md V5: exponents of I + dt A are log|eig(I + dt A)| / dt, for every k,
    # with either QR (and the default adaptive schedule).
    dt = 0.1
    A = _real_spectrum_matrix([1.0, -0.5, -2.0, -3.5, -5.0], generator)
    p = linear_params(A, dt=dt)
    spec = lyapunov_spectrum(p, _zeros(2, 400), k=k, transient=200, qr=qr, generator=generator)
    eig = torch.linalg.eigvals(torch.eye(5, dtype=F64) + dt * A).abs().log() / dt
    expected = torch.sort(eig, descending=True).values[:k]
    # Exponent gaps >= 1.4 per unit time: after the transient (20 time units) the frame
    # is aligned with the Schur vectors to exp(-28) ~ 1e-12, so the oracle holds to
    # eigenvalue precision.
    torch.testing.assert_close(spec.exponents, expected, **tol("eig"))
    torch.testing.assert_close(spec.exponents_per_step, expected * dt, **tol("eig"))
    assert spec.n_steps == 200 and spec.transient == 200 and spec.k == k


def test_linear_map_generic_entry_and_orthogonal_invariance(generator):
    # The same spectrum through lyapunov_spectrum_map, and after an orthogonal change
    # of basis O M O^T (exponents are basis-independent).
    dt = 0.1
    M = torch.eye(4, dtype=F64) + dt * _real_spectrum_matrix([0.8, -0.8, -2.4, -4.0], generator)
    rot = torch.linalg.qr(torch.randn(4, 4, generator=generator, dtype=F64))[0]
    results = []
    for mat in (M, rot @ M @ rot.mT):

        def step(x, i, mat=mat):
            return x @ mat.mT

        def jac(x, i, mat=mat):
            return mat.expand(x.shape[0], 4, 4)

        results.append(
            lyapunov_spectrum_map(
                step,
                jac,
                torch.randn(3, 4, generator=generator, dtype=F64),
                3000,
                dt=dt,
                transient=500,
                generator=generator,
            )
        )
    expected = torch.sort(torch.linalg.eigvals(M).abs().log() / dt, descending=True).values
    torch.testing.assert_close(results[0].exponents, expected, **tol("eig"))
    torch.testing.assert_close(results[1].exponents, results[0].exponents, **tol("eig"))
    assert results[0].convention == "map"


def test_complex_pair_sums_to_twice_the_log_modulus(generator):
    # For a complex pair each finite-time exponent oscillates at O(1/n), but their
    # sum is log|det| of the invariant plane: exact up to the aligned transient.
    dt = 0.1
    R = torch.tensor([[0.5, -2.0], [2.0, 0.5]], dtype=F64)  # eigenvalues 0.5 +- 2i
    A = torch.block_diag(R, torch.tensor([[-1.0]], dtype=F64))
    P = torch.eye(3, dtype=F64) + 0.2 * torch.randn(3, 3, generator=generator, dtype=F64)
    A = P @ A @ torch.linalg.inv(P)
    spec = lyapunov_spectrum(
        linear_params(A, dt=dt), _zeros(2, 4000), transient=400, generator=generator
    )
    pair = 2 * math.log(abs(complex(1 + 0.5 * dt, 2.0 * dt))) / dt
    torch.testing.assert_close(
        spec.exponents[:2].sum(), torch.tensor(pair, dtype=F64), **tol("eig")
    )
    torch.testing.assert_close(
        spec.exponents[2], torch.tensor(math.log(1 - dt) / dt, dtype=F64), **tol("eig")
    )
    # Each member of the pair is within O(1/(n dt)) of the modulus.
    assert (spec.exponents[:2] - pair / 2).abs().max() < 5.0 / (spec.n_steps * dt)


# ----------------------------------------------------------------------- V4: scalar GBM
def _gbm_spectrum(lam, sigma, dt, B, T, generator, structure="scalar", qr="auto"):
    p = linear_params(torch.tensor([[lam]], dtype=F64), dt=dt)
    noise = NoiseSpec(sigma2=sigma, structure=structure)
    return lyapunov_spectrum(
        p,
        _zeros(B, T),
        noise=noise,
        transient=0,
        qr=qr,
        h0=torch.ones(B, 1, dtype=F64),
        generator=generator,
    )


@pytest.mark.parametrize("structure", ["scalar", "diagonal"])
def test_gbm_frozen_noise_exponent_matches_exact_euler_maruyama_value(generator, structure):
    # docs/theory/oracles.md V4 at finite dt: the exact EM exponent by quadrature (-1.1380 at
    # (1, 2, 0.1)); at H = 1 both structures are the same chain.
    lam, sigma, dt = 1.0, 2.0, 0.1
    spec = _gbm_spectrum(lam, sigma, dt, 200, 500, generator, structure)
    # A 1 x 1 "QR" is the absolute value: CholeskyQR2 gives the same run to rounding.
    chol = _gbm_spectrum(lam, sigma, dt, 200, 500, generator.manual_seed(7), structure, "cholesky")
    spec_again = _gbm_spectrum(lam, sigma, dt, 200, 500, generator.manual_seed(7), structure)
    torch.testing.assert_close(chol.per_trajectory, spec_again.per_trajectory, **tol("reduction"))
    exact = em_gbm_exponent(lam, sigma, dt)
    assert abs(exact - (-1.1380)) < 5e-4
    assert abs(spec.top - exact) <= STATISTICAL_SIGMAS * float(spec.stderr[0])
    # The continuous exponent lam - sigma^2/2 = -1 is resolved as different at dt = 0.1.
    assert abs(spec.top - (lam - sigma**2 / 2)) > 2 * float(spec.stderr[0])


def test_gbm_frozen_noise_exponent_tends_to_ito_value_as_dt_shrinks(generator):
    # As dt -> 0 the EM exponent is lam - sigma^2/2 + dt(-lam^2/2 + lam sigma^2
    # - 3 sigma^4/4) + O(dt^2): compare within 4 standard errors plus that remainder
    # (the O(dt^2) term, of the size of the dt term squared, is allowed for in full).
    lam, sigma, dt = 1.0, 1.0, 0.02
    spec = _gbm_spectrum(lam, sigma, dt, 400, 1000, generator)
    first = dt * (-(lam**2) / 2 + lam * sigma**2 - 0.75 * sigma**4)
    remainder = abs(first) + first**2 / dt
    ito = lam - sigma**2 / 2
    assert abs(spec.top - ito) <= STATISTICAL_SIGMAS * float(spec.stderr[0]) + remainder
    assert abs(spec.top - em_gbm_exponent(lam, sigma, dt)) <= STATISTICAL_SIGMAS * float(
        spec.stderr[0]
    )


def test_gbm_through_generic_map_with_autodiff_jacobian(generator):
    # The generic entry on a random map (a frozen noise path indexed by the step),
    # with the Jacobian left to forward-mode autodiff.
    lam, sigma, dt, B, T = 0.5, 1.5, 0.05, 64, 600
    xi = torch.randn(B, T, generator=generator, dtype=F64)

    def step(x, i):
        return x * (1 + lam * dt + sigma * math.sqrt(dt) * xi[:, i : i + 1])

    spec = lyapunov_spectrum_map(
        step, None, torch.ones(B, 1, dtype=F64), T, dt=dt, generator=generator
    )
    exact = em_gbm_exponent(lam, sigma, dt)
    assert abs(spec.top - exact) <= STATISTICAL_SIGMAS * float(spec.stderr[0])


def test_linear_scalar_noise_exponents_match_v5_quadrature(generator):
    # docs/theory/oracles.md V5: with scalar noise the exponents of I + dt A + s sqrt(dt) xi I
    # are E log|1 + dt mu_i + s sqrt(dt) xi| / dt. All exponents share one noise term,
    # so the differences are tight and the levels are within the statistical band.
    dt, s = 0.05, 1.0
    A = _real_spectrum_matrix([0.6, -0.4, -1.5], generator)
    spec = lyapunov_spectrum(
        linear_params(A, dt=dt),
        _zeros(64, 800),
        noise=NoiseSpec(sigma2=s, structure="scalar"),
        transient=100,
        generator=generator,
    )
    mus = torch.linalg.eigvals(A)
    expected = sorted((em_linear_scalar_exponent(complex(m), s, dt) for m in mus), reverse=True)
    for got, err, want in zip(spec.exponents.tolist(), spec.stderr.tolist(), expected, strict=True):
        assert abs(got - want) <= STATISTICAL_SIGMAS * err
    gaps = (spec.per_trajectory[:, :1] - spec.per_trajectory[:, 1:]).mean(0)
    want_gaps = torch.tensor([expected[0] - e for e in expected[1:]], dtype=F64)
    # The common noise cancels in differences up to O(dt) (V5): a much tighter band.
    assert (gaps - want_gaps).abs().max() < 0.05


# ----------------------------------------------------------------------- V6: Lorenz-63
def test_lorenz_rk4_jacobian_helper_matches_autodiff(generator):
    step, jac = lorenz_rk4(0.01)
    x = torch.randn(4, 3, generator=generator, dtype=F64) * 5
    auto = torch.func.vmap(torch.func.jacrev(lambda y: step(y.unsqueeze(0)).squeeze(0)))(x)
    torch.testing.assert_close(jac(x), auto, **tol("elementwise"))


@pytest.mark.parametrize("qr", ["householder", "cholesky"])
def test_lorenz_sum_of_exponents_is_mean_log_det_short_run(generator, qr):
    # Sum of all exponents = time average of log|det J| exactly (docs/theory/stability.md); for
    # RK4 the determinant is exp(trace * h) up to O(h^5): the trace is -(10 + 1 + 8/3).
    h = 0.01
    step, jac = lorenz_rk4(h)
    x0 = torch.tensor([[1.0, 1.0, 20.0]], dtype=F64)
    spec = lyapunov_spectrum_map(
        step, jac, x0, 2000, dt=h, transient=200, qr=qr, generator=generator
    )
    assert spec.n_reortho < 2000 // 4  # the adaptive schedule lengthened the blocks
    x = x0
    logdet = []
    for i in range(2000):
        if i >= 200:
            logdet.append(torch.linalg.slogdet(jac(x))[1])
        x = step(x)
    mean_logdet = torch.stack(logdet).mean() / h
    torch.testing.assert_close(spec.exponents.sum(), mean_logdet, **tol("reduction"))
    assert abs(float(mean_logdet) + (10 + 1 + 8 / 3)) < 1e-3


@pytest.mark.slow
def test_lorenz_spectrum_within_bands(generator):
    # docs/theory/oracles.md V6: RK4 with h = 0.01, transient 100 time units, 8 trajectories x
    # 1250 time units = 10^4 time units averaged. Bands 0.03, 0.01, 0.05.
    h = 0.01
    step, jac = lorenz_rk4(h)
    x0 = torch.tensor([1.0, 1.0, 20.0], dtype=F64) + torch.randn(
        8, 3, generator=generator, dtype=F64
    )
    spec = lyapunov_spectrum_map(
        step, jac, x0, 10_000 + 125_000, dt=h, transient=10_000, generator=generator
    )
    l1, l2, l3 = spec.exponents.tolist()
    assert abs(l1 - 0.906) < 0.03
    assert abs(l2) < 0.01
    assert abs(l3 + 14.57) < 0.05
    assert abs(sum(spec.exponents.tolist()) + 13.667) < 2e-3
    assert abs(kaplan_yorke_dimension(spec) - 2.062) < 0.01


# ----------------------------------------------------------------------- properties
def _states_and_etas(params, xs, noise, eta):
    """h_0 .. h_{T-1} of the noisy rollout sharing eta (h_0 = 0)."""
    states = rollout(params, xs, noise=noise, eta=eta, return_states=True)
    h0 = torch.zeros_like(states[:, 0])
    return torch.cat([h0.unsqueeze(1), states[:, :-1]], dim=1)


@settings(max_examples=30)
@given(
    model_and_inputs(max_hidden=5, max_steps=10),
    noise_specs(),
    st.sampled_from([1, 2, 3, "auto"]),
    st.sampled_from(["householder", "cholesky"]),
    seeds,
)
def test_exponent_sum_equals_mean_log_abs_det(model, noise, every, qr, seed):
    # docs/theory/stability.md: for the full spectrum sum_i lambda_i = mean_k log|det J_k| / dt,
    # exactly (the QR of a product telescopes), for every noise, reortho_every and QR.
    params, xs, g = model
    B, T, _ = xs.shape
    H = params.hidden_size
    eta = sample_noise(noise, B, T, H, dtype=F64, generator=g)
    transient = seed % T
    spec = lyapunov_spectrum(
        params,
        xs,
        noise=noise,
        eta=eta,
        transient=transient,
        reortho_every=every,
        qr=qr,
        generator=torch.Generator().manual_seed(seed),
    )
    hs = _states_and_etas(params, xs, noise, eta)
    logdets = torch.stack(
        [
            torch.linalg.slogdet(
                state_jacobian(params, hs[:, t], xs[:, t], noise=noise, eta=eta[:, t])
            )[1]
            for t in range(transient, T)
        ],
        dim=1,
    )  # (B, n)
    expected = logdets.mean(dim=1) / params.dt  # per trajectory
    torch.testing.assert_close(spec.per_trajectory.sum(dim=1), expected, **tol("reduction"))


@settings(max_examples=25)
@given(model_and_inputs(max_hidden=4, max_steps=8), noise_specs(), seeds)
def test_analytic_tangent_matches_autodiff_of_the_step(model, noise, seed):
    # The analytic frozen-noise tangent map (multiplicative term; d * m_k for
    # paper_code) against forward-mode autodiff of dynamics.step along the same path.
    params, xs, g = model
    B, T, _ = xs.shape
    H = params.hidden_size
    eta = sample_noise(noise, B, T, H, dtype=F64, generator=g)
    spec = lyapunov_spectrum(
        params, xs, noise=noise, eta=eta, transient=0, generator=torch.Generator().manual_seed(seed)
    )

    def step(h, i):
        return nrnn_step(params, h, xs[:, i], noise=noise, eta=eta[:, i])

    ref = lyapunov_spectrum_map(
        step,
        None,
        torch.zeros(B, H, dtype=F64),
        T,
        dt=params.dt,
        generator=torch.Generator().manual_seed(seed),
    )
    torch.testing.assert_close(spec.per_trajectory, ref.per_trajectory, **tol("reduction"))


@pytest.mark.parametrize("every", [2, 5])
def test_reortho_every_changes_only_rounding(generator, every):
    # The R factor of a product is the product of the per-step R factors, so the
    # exponents do not depend on reortho_every in exact arithmetic.
    params = random_params(6, 2, 3, generator=generator, scale=1.5)
    xs = torch.randn(4, 60, 2, generator=generator, dtype=F64)
    noise = NoiseSpec(sigma1=0.3, sigma2=0.4, structure="scalar")
    eta = sample_noise(noise, 4, 60, 6, dtype=F64, generator=generator)
    ref = lyapunov_spectrum(
        params, xs, noise=noise, eta=eta, transient=10, generator=torch.Generator().manual_seed(1)
    )
    got = lyapunov_spectrum(
        params,
        xs,
        noise=noise,
        eta=eta,
        transient=10,
        reortho_every=every,
        generator=torch.Generator().manual_seed(1),
    )
    torch.testing.assert_close(got.exponents, ref.exponents, **tol("reduction"))


def test_generator_draws_frame_then_noise_like_rollout(generator):
    # Documented order: the initial frame (B, H, k), then the noise per step exactly
    # as rollout draws it; so eta = sample_noise after the frame reproduces the run.
    params = random_params(3, 2, 2, generator=generator)
    xs = torch.randn(2, 20, 2, generator=generator, dtype=F64)
    noise = NoiseSpec(sigma1=0.5, sigma2=0.5)
    a = lyapunov_spectrum(params, xs, noise=noise, k=2, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    torch.randn(2, 3, 2, generator=g, dtype=F64)  # the frame is drawn in float64
    eta = sample_noise(noise, 2, 20, 3, dtype=F64, generator=g)
    b = lyapunov_spectrum(
        params, xs, noise=noise, eta=eta, k=2, generator=torch.Generator().manual_seed(7)
    )
    assert torch.equal(a.per_trajectory, b.per_trajectory)


def test_history_ends_at_the_reported_exponents(generator):
    params = random_params(4, 1, 2, generator=generator)
    xs = torch.randn(3, 50, 1, generator=generator, dtype=F64)
    spec = lyapunov_spectrum(
        params, xs, k=2, transient=5, reortho_every=3, return_history=True, generator=generator
    )
    assert spec.history.shape == (3, len(spec.history_steps), 2)
    assert int(spec.history_steps[-1]) == spec.n_steps == 45
    assert spec.history_steps.tolist() == [3 * j for j in range(1, 15)] + [45]
    torch.testing.assert_close(spec.history[:, -1], spec.per_trajectory, **tol("elementwise"))
    assert torch.all(spec.exponents[:-1] >= spec.exponents[1:])


def test_dtype_follows_inputs_and_stderr(generator):
    params = random_params(3, 1, 2, generator=generator, dtype=torch.float32)
    xs = torch.randn(5, 30, 1, generator=generator)
    spec = lyapunov_spectrum(params, xs, generator=generator)
    assert spec.exponents.dtype == torch.float32
    torch.testing.assert_close(spec.stderr, spec.per_trajectory.std(0) / math.sqrt(5))
    one = lyapunov_spectrum(params, xs[:1], generator=generator)
    assert torch.isnan(one.stderr).all()
    d = spec.to_dict()
    assert d["convention"] == "clean" and len(d["exponents"]) == 3


# ----------------------------------------------------------------------- Jacobian norms
@pytest.mark.parametrize("norm", ["spectral", "frobenius"])
@pytest.mark.parametrize("with_noise", [False, True])
def test_state_jacobian_norms_match_autograd_of_rollout(generator, norm, with_noise):
    # Oracle: jacrev of the rollout from step k w.r.t. h_k, along the same noise path.
    params = random_params(3, 2, 2, generator=generator, scale=1.5)
    B, T = 2, 6
    xs = torch.randn(B, T, 2, generator=generator, dtype=F64)
    noise = NoiseSpec(sigma1=0.2, sigma2=0.5) if with_noise else None
    eta = sample_noise(noise, B, T, 3, dtype=F64, generator=generator) if with_noise else None
    res = state_jacobian_norms(params, xs, noise=noise, eta=eta, norm=norm)
    hs = _states_and_etas(params, xs, noise, eta)
    ord_ = 2 if norm == "spectral" else "fro"
    for k in range(T):

        def tail(hk, k=k):
            e = None if eta is None else eta[:, k:]
            return rollout(params, xs[:, k:], noise=noise, h0=hk, eta=e)

        full = torch.func.jacrev(tail)(hs[:, k])  # (B, H, B, H)
        blocks = torch.stack([full[b, :, b, :] for b in range(B)])
        torch.testing.assert_close(
            res.norms[:, k], torch.linalg.matrix_norm(blocks, ord=ord_), **tol("reduction")
        )
    assert torch.all(res.norms[:, T] == 1.0)


def test_state_jacobian_norms_closed_form_and_no_overflow():
    # f = -h: each step multiplies by (1 - dt); the log-norms stay exact far beyond
    # float32 range (100 steps of 0.1 -> 1e-46) because they are accumulated in logs.
    p = linear_params(-torch.eye(2), dt=0.9)
    res = state_jacobian_norms(p, torch.zeros(1, 100, 1))
    expected = torch.arange(100, -1, -1, dtype=torch.float32) * math.log(0.1)
    torch.testing.assert_close(res.log_norms[0], expected, rtol=1e-5, atol=1e-4)


# ----------------------------------------------------------------------- Kaplan-Yorke
def test_kaplan_yorke_dimension_closed_forms():
    assert kaplan_yorke_dimension([-0.1, -1.0]) == 0.0
    assert kaplan_yorke_dimension([1.0, 0.5]) == 2.0
    assert kaplan_yorke_dimension(torch.tensor([-2.0, 1.0])) == pytest.approx(1.5)
    assert kaplan_yorke_dimension([0.5, -1.0, -3.0]) == pytest.approx(1.5)
    assert kaplan_yorke_dimension([1.0, 0.0, -2.0, -4.0]) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="exponents"):
        kaplan_yorke_dimension([])
    with pytest.raises(ValueError, match="exponents"):
        kaplan_yorke_dimension([float("nan"), 1.0])


# ----------------------------------------------------------------------- bad input
def test_bad_input_errors(generator):
    params = random_params(3, 2, 2, generator=generator)
    xs = torch.randn(2, 10, 2, generator=generator, dtype=F64)
    with pytest.raises(ValueError, match=r"k: expected an integer <= 3"):
        lyapunov_spectrum(params, xs, k=4)
    with pytest.raises(ValueError, match="k: expected an integer >= 1"):
        lyapunov_spectrum(params, xs, k=0)
    with pytest.raises(ValueError, match=r"transient: expected fewer steps than .* 10"):
        lyapunov_spectrum(params, xs, transient=10)
    with pytest.raises(ValueError, match="transient: expected an integer >= 0"):
        lyapunov_spectrum(params, xs, transient=-1)
    with pytest.raises(ValueError, match="reortho_every"):
        lyapunov_spectrum(params, xs, reortho_every=0)
    with pytest.raises(ValueError, match="reortho_every: expected a positive integer or 'auto'"):
        lyapunov_spectrum(params, xs, reortho_every="sometimes")
    with pytest.raises(ValueError, match="qr: expected one of 'auto', 'householder', 'cholesky'"):
        lyapunov_spectrum(params, xs, qr="lu")
    with pytest.raises(ValueError, match=r"xs: expected shape \(\?, \?, 2\)"):
        lyapunov_spectrum(params, torch.zeros(2, 10, 5, dtype=F64))
    with pytest.raises(ValueError, match="eta: noise draws were given but noise is None"):
        lyapunov_spectrum(params, xs, eta=torch.zeros(2, 10, 3, dtype=F64))
    with pytest.raises(ValueError, match="eta: expected shape"):
        lyapunov_spectrum(
            params,
            xs,
            noise=NoiseSpec(sigma1=1.0, structure="scalar"),
            eta=torch.zeros(2, 10, 3, dtype=F64),
        )
    with pytest.raises(ValueError, match="h0"):
        lyapunov_spectrum(params, xs, h0=torch.zeros(3, 3, dtype=F64))
    with pytest.raises(ValueError, match="A: expected a square matrix"):
        params.replace(A=torch.zeros(3, 2, dtype=F64))
    with pytest.raises(ValueError, match=r"W: expected shape \(3, 3\)"):
        params.replace(W=torch.zeros(2, 2, dtype=F64))
    with pytest.raises(ValueError, match="sigma2: expected a number >= 0"):
        NoiseSpec(sigma2=-0.1)
    with pytest.raises(ValueError, match="norm"):
        state_jacobian_norms(params, xs, norm="nuclear")


def test_bad_input_generic_map():
    def step(x, i):
        return x

    def jac(x, i):
        return torch.eye(2, dtype=F64).expand(x.shape[0], 2, 2)

    x0 = torch.ones(1, 2, dtype=F64)
    with pytest.raises(ValueError, match="k: expected an integer <= 2"):
        lyapunov_spectrum_map(step, jac, x0, 10, k=3)
    with pytest.raises(ValueError, match="transient: expected fewer steps"):
        lyapunov_spectrum_map(step, jac, x0, 10, transient=10)
    with pytest.raises(ValueError, match="x0: expected shape"):
        lyapunov_spectrum_map(step, jac, torch.ones(1, 1, 2, dtype=F64), 10)
    with pytest.raises(ValueError, match=r"jacobian: expected a result of shape \(1, 2, 2\)"):
        lyapunov_spectrum_map(step, lambda x, i: torch.eye(3, dtype=F64), x0, 10)
    with pytest.raises(ValueError, match=r"step: expected a result of shape \(1, 2\)"):
        lyapunov_spectrum_map(lambda x, i: x[:, :1], jac, x0, 10)
    with pytest.raises(TypeError, match="step: expected a callable"):
        lyapunov_spectrum_map(None, jac, x0, 10)
    with pytest.raises(ValueError, match="dt: expected a number > 0"):
        lyapunov_spectrum_map(step, jac, x0, 10, dt=0.0)
    with pytest.raises(ValueError, match="qr: expected one of"):
        lyapunov_spectrum_map(step, jac, x0, 10, qr="gram-schmidt")
    with pytest.raises(ValueError, match="reortho_every: expected a positive integer or 'auto'"):
        lyapunov_spectrum_map(step, jac, x0, 10, reortho_every="1")


def test_overflow_raises(generator):
    p = linear_params(torch.full((1, 1), 50.0), dt=1.0)
    with pytest.raises(NonFiniteStateError, match="non-finite"):
        lyapunov_spectrum(p, torch.zeros(1, 400, 1), h0=torch.ones(1, 1), generator=generator)


# ----------------------------------------------------------------------- CholeskyQR2
def _conditioned(B, n, k, cond, dtype, generator):
    """B matrices (n, k) with singular values log-spaced from 1 to 1 / cond."""
    U = torch.linalg.qr(torch.randn(B, n, k, generator=generator, dtype=F64))[0]
    V = torch.linalg.qr(torch.randn(B, k, k, generator=generator, dtype=F64))[0]
    s = torch.logspace(0, -math.log10(cond), k, dtype=F64)
    return (U * s.unsqueeze(-2) @ V.mT).to(dtype)


@pytest.mark.parametrize(
    ("dtype", "cond"), [(F64, 1.0), (F64, 1e4), (torch.float32, 1.0), (torch.float32, 30.0)]
)
@pytest.mark.parametrize(("n", "k"), [(7, 7), (12, 5), (40, 1)])
def test_cholesky_qr2_matches_householder(generator, dtype, cond, n, k):
    # Oracle: LAPACK's Householder QR with the sign fixed (unique for full column rank).
    # Both are backward stable, so Q and log diag R agree to O(eps * cond): the "eig"
    # tolerance covers cond = 1e4 in float64 and cond = 30 in float32.
    Y = _conditioned(3, n, k, cond, dtype, generator)
    Q, log_r = cholesky_qr2(Y)
    Q_ref, R_ref = qr_positive(Y)
    torch.testing.assert_close(Q, Q_ref, **tol("eig", dtype))
    torch.testing.assert_close(
        log_r, torch.log(torch.diagonal(R_ref, dim1=-2, dim2=-1)), **tol("eig", dtype)
    )
    # The second pass restores orthogonality to rounding, whatever the conditioning.
    eye = torch.eye(k, dtype=dtype).expand(3, k, k)
    torch.testing.assert_close(Q.mT @ Q, eye, rtol=0, atol=50 * torch.finfo(dtype).eps)


def test_cholesky_qr2_refuses_what_it_cannot_factor_accurately(generator):
    # Above 0.1 / sqrt(eps) (estimated from the first pass's loss of orthogonality,
    # ~ eps kappa^2) the Gram matrix has lost too many digits: None tells the caller to
    # use Householder. So do a rank deficiency, a non-finite entry, and any single bad
    # matrix in a batch.
    assert cholesky_qr_max_condition(F64) == pytest.approx(0.1 / math.sqrt(2.0**-52))
    assert cholesky_qr_max_condition(torch.float32) == pytest.approx(0.1 / math.sqrt(2.0**-23))
    good = _conditioned(2, 8, 8, 10.0, F64, generator)
    assert cholesky_qr2(good) is not None
    for cond, dtype in [(1e8, F64), (3e3, torch.float32)]:
        assert cholesky_qr2(_conditioned(2, 8, 8, cond, dtype, generator)) is None
    # eps * 1e4^2 ~ 1e-8 of lost orthogonality against eps * 100^2 ~ 2e-12 allowed.
    assert cholesky_qr2(_conditioned(2, 8, 8, 1e4, F64, generator)) is not None
    assert cholesky_qr2(_conditioned(2, 8, 8, 1e4, F64, generator), max_condition=100) is None
    deficient = good.clone()
    deficient[1, :, 3] = deficient[1, :, 2]
    assert cholesky_qr2(deficient) is None
    nan = good.clone()
    nan[0, 0, 0] = float("nan")
    assert cholesky_qr2(nan) is None


@pytest.mark.parametrize("every", [1, 4, "auto"])
def test_cholesky_path_matches_householder_path(generator, every):
    # The same Benettin run with either factorization: equal up to rounding (each QR
    # is backward stable; float64, blocks well inside CholeskyQR2's range).
    params = random_params(10, 2, 3, generator=generator, scale=1.5)
    xs = torch.randn(3, 120, 2, generator=generator, dtype=F64)
    noise = NoiseSpec(sigma1=0.3, sigma2=0.4, structure="diagonal")
    eta = sample_noise(noise, 3, 120, 10, dtype=F64, generator=generator)
    runs = {
        qr: lyapunov_spectrum(
            params,
            xs,
            noise=noise,
            eta=eta,
            reortho_every=every,
            qr=qr,
            generator=torch.Generator().manual_seed(3),
        )
        for qr in ("householder", "cholesky")
    }
    ho, ch = runs["householder"], runs["cholesky"]
    torch.testing.assert_close(ch.per_trajectory, ho.per_trajectory, **tol("reduction"))
    assert (ch.qr, ho.qr) == ("cholesky", "householder")
    assert ch.n_fallback == 0 and ch.n_reortho == ho.n_reortho
    assert ch.reortho_every == every


@pytest.mark.parametrize("c", [0.0, 1.0])
def test_cholesky_falls_back_to_householder_when_ill_conditioned(generator, c):
    # Blocks of 25 maps with stretches 1.5, 1 and 0.5 per step: condition ~ 3^25 ~ 8e11,
    # beyond CholeskyQR2's range in float64 (6.7e6). For a normal map (c = 0) the aligned
    # frame's image has orthogonal columns of graded norms, which CholeskyQR2 handles
    # (it is invariant to column scaling): only the first block, from the random frame,
    # falls back. For a non-normal map (c = 1) the columns are nearly parallel and every
    # QR falls back, so the run is bitwise the Householder run.
    M = torch.tensor([[1.5, c, 0.0], [0.0, 1.0, c], [0.0, 0.0, 0.5]], dtype=F64)
    rot = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=F64))[0]
    M = rot @ M @ rot.mT

    def step(x, i):
        return x @ M.mT

    def jac(x, i):
        return M.expand(x.shape[0], 3, 3)

    runs = {
        qr: lyapunov_spectrum_map(
            step,
            jac,
            torch.ones(2, 3, dtype=F64),
            600,
            transient=100,
            reortho_every=25,
            qr=qr,
            generator=torch.Generator().manual_seed(5),
        )
        for qr in ("householder", "cholesky")
    }
    chol = runs["cholesky"]
    assert chol.n_reortho == 24
    if c:
        assert chol.n_fallback == 24
        assert torch.equal(chol.per_trajectory, runs["householder"].per_trajectory)
    else:
        assert chol.n_fallback <= 1
        torch.testing.assert_close(
            chol.per_trajectory, runs["householder"].per_trajectory, **tol("eig")
        )
    # Householder itself loses about eps * 8e11 ~ 1e-4 of the smallest stretch per QR
    # (c = 1): 20 QRs over 500 steps leave the exponents within 1e-5 of the moduli.
    expected = torch.log(torch.tensor([1.5, 1.0, 0.5], dtype=F64))
    torch.testing.assert_close(chol.exponents, expected, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------- adaptive schedule
@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("noise", [None, NoiseSpec(sigma1=0.2, sigma2=0.5, structure="scalar")])
def test_auto_schedule_matches_every_step(generator, dtype, noise):
    # The R factor of a product is the product of the per-step R factors, so "auto"
    # differs from reortho_every=1 only by rounding: per QR about eps * kappa with
    # kappa <= eps^(-1/4), i.e. eps^(3/4) per block. Over this run (~30 blocks, 40
    # time units) that is < 1e-11 per unit time in float64 and < 5e-5 in float32.
    H, B, T = 12, 4, 400
    params = random_params(H, 2, 3, generator=generator, scale=2.0, dtype=dtype)
    xs = torch.randn(B, T, 2, generator=generator, dtype=dtype)
    eta = None if noise is None else sample_noise(noise, B, T, H, dtype=dtype, generator=generator)
    runs = {
        every: lyapunov_spectrum(
            params,
            xs,
            noise=noise,
            eta=eta,
            reortho_every=every,
            qr="householder",
            generator=torch.Generator().manual_seed(2),
        )
        for every in (1, "auto")
    }
    atol = 1e-11 if dtype == F64 else 5e-5
    torch.testing.assert_close(
        runs["auto"].per_trajectory, runs[1].per_trajectory, rtol=0, atol=atol
    )
    assert runs[1].n_reortho == T
    assert runs["auto"].n_reortho < T // 4  # the schedule did lengthen the blocks


def test_auto_schedule_block_lengths_follow_the_spread(generator):
    # Stretches 1.1 and 0.5 per step (linear map I + dt A, dt = 0.1, eigenvalues 1 and
    # -5): the aligned frame's condition grows by 2.2 per step, so blocks settle at
    # floor(log(8192) / log 2.2) = 11 steps in float64, after at most doubling from 1.
    dt = 0.1
    p = linear_params(_real_spectrum_matrix([1.0, -5.0], generator), dt=dt)
    ramp = lyapunov_spectrum(p, _zeros(2, 300), transient=0, return_history=True)
    steps = [0, *ramp.history_steps.tolist()]
    blocks = [b - a for a, b in zip(steps[:-1], steps[1:], strict=True)]
    limit = math.floor(math.log(benettin_condition_target(F64)) / math.log(2.2))
    assert limit == 11
    assert blocks[0] == 1
    assert all(b <= 2 * a for a, b in zip(blocks[:-1], blocks[1:], strict=True))
    assert max(blocks) == limit and blocks[-2] == limit  # the last block ends the run
    assert ramp.reortho_every == "auto" and ramp.n_reortho == len(blocks)
    back = type(ramp).from_dict(ramp.to_dict())
    assert back.reortho_every == "auto" and back.n_reortho == ramp.n_reortho
    assert back.qr == ramp.qr == "householder" and back.n_fallback == 0
    # After a transient of 20 time units the exponents are the log-moduli (V5).
    spec = lyapunov_spectrum(p, _zeros(2, 600), transient=200, generator=generator)
    expected = torch.log(torch.tensor([1.1, 0.5], dtype=F64)) / dt
    torch.testing.assert_close(spec.exponents, expected, **tol("eig"))


def test_auto_schedule_keeps_the_product_in_range():
    # One exponent log(1e4) per step: no spread, so only the range bound limits the
    # blocks (a quarter of float32's exponent range: 22 / 9.2 -> 2 steps). A fixed
    # block of 16 steps overflows float32 (1e64) and returns an infinite exponent.
    J = 1e4 * torch.eye(1)

    def step(x, i):
        return x

    def jac(x, i):
        return J.expand(x.shape[0], 1, 1)

    x0 = torch.ones(1, 1)
    spec = lyapunov_spectrum_map(step, jac, x0, 200, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        spec.exponents, torch.tensor([math.log(1e4)]), **tol("eig", torch.float32)
    )
    fixed = lyapunov_spectrum_map(
        step, jac, x0, 200, reortho_every=16, generator=torch.Generator().manual_seed(0)
    )
    assert torch.isinf(fixed.exponents).all()


# ----------------------------------------------------------------------- tangent products
@pytest.mark.parametrize("k", [1, 3, 12])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize(
    "noise",
    [
        None,
        NoiseSpec(sigma1=0.3, sigma2=0.6, structure="diagonal"),
        NoiseSpec(sigma1=0.3, sigma2=0.6, structure="scalar"),
        NoiseSpec.paper_code(add=0.1, mult=0.4),
    ],
    ids=["clean", "diagonal", "scalar", "paper_code"],
)
def test_tangent_product_matches_the_explicit_jacobian(generator, k, alpha, noise):
    # lyapunov_spectrum applies the tangent map without forming it when k <= H/4 or
    # alpha = 0 (products with the shared weights), and builds it in one fused pass
    # otherwise. Oracle: the generic entry with dynamics.state_jacobian, the explicit
    # (B, H, H) Jacobian multiplied by the frame; same frame, same QRs.
    H, B, T = 12, 3, 25
    params = random_params(H, 2, 3, generator=generator, scale=1.5, alpha=alpha, per_unit_step=True)
    xs = torch.randn(B, T, 2, generator=generator, dtype=F64)
    eta = None if noise is None else sample_noise(noise, B, T, H, dtype=F64, generator=generator)

    def step(h, i):
        return nrnn_step(params, h, xs[:, i], noise=noise, eta=None if eta is None else eta[:, i])

    def jac(h, i):
        e = None if eta is None else eta[:, i]
        return state_jacobian(params, h, xs[:, i], noise=noise, eta=e)

    common = {"k": k, "transient": 0, "reortho_every": 1, "qr": "householder"}
    got = lyapunov_spectrum(
        params, xs, noise=noise, eta=eta, generator=torch.Generator().manual_seed(4), **common
    )
    ref = lyapunov_spectrum_map(
        step,
        jac,
        torch.zeros(B, H, dtype=F64),
        T,
        dt=params.dt,
        generator=torch.Generator().manual_seed(4),
        **common,
    )
    torch.testing.assert_close(got.per_trajectory, ref.per_trajectory, **tol("reduction"))
