"""Issue 19: every reported standard error and interval against an independent value.

A mutation check found four error bars nobody checked (the Monte Carlo gap's SE x3,
the Hutchinson/SLQ SE x3, the ``t_examples`` interval from the wrong samples, the
certified margin with ||U||_F for ||U||_2). Oracles here:

* closed forms: for Rademacher probes z, Var(z^T M z) = 2 sum_{i != j} M_ij^2, which
  gives the exact standard error of Hutchinson's trace and of SLQ's moments
  (per probe, the q-th moment is z^T H^q z / n);
* coverage over repeated seeded runs: the spread of the estimate across independent
  runs against the reported standard error (Monte Carlo gap, Lyapunov exponents);
* the Student-t interval recomputed with scipy from per-example accuracies known by
  construction;
* a model whose global Lipschitz constant is attained (one step, full-rank U).

Ratios are checked within 4 standard deviations of their own sampling error.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

import nrnn_theory as nt

from _problems import random_params


def _closed_form_se(M: torch.Tensor, n_probes: int) -> float:
    off = M - torch.diag(torch.diagonal(M))
    return math.sqrt(2.0 * float((off**2).sum()) / n_probes)


def _random_spd(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, n, generator=g, dtype=torch.float64)
    return X @ X.T / n + torch.eye(n, dtype=torch.float64)


def test_hutchinson_stderr_matches_the_closed_form():
    Hm = _random_spd(12, 0)

    def loss(p):
        return 0.5 * p["w"] @ Hm @ p["w"]

    params = {"w": torch.zeros(12, dtype=torch.float64)}
    P, R = 40, 40
    reported = []
    means = []
    for r in range(R):
        est = nt.estimate_hessian_trace(
            loss, params, n_probes=P, batch_size=P, generator=torch.Generator().manual_seed(r)
        )
        reported.append(est.stderr)
        means.append(est.mean)
    exact = _closed_form_se(Hm, P)
    # the mean of R sample SEs: relative sampling error ~ kurtosis-dependent, < 0.05 here
    ratio = sum(reported) / R / exact
    assert 0.85 < ratio < 1.1, (ratio, exact)
    # and the spread of the trace estimates agrees with the closed form too
    spread = torch.tensor(means).std(correction=1).item()
    assert 0.6 < spread / exact < 1.45, (spread, exact)  # 4 SD of a 40-sample std
    assert abs(sum(means) / R - float(torch.trace(Hm))) < 4 * exact / math.sqrt(R)


def test_slq_moment_stderrs_match_the_closed_form():
    n = 10
    Hm = _random_spd(n, 1)

    def loss(p):
        return 0.5 * p["w"] @ Hm @ p["w"]

    params = {"w": torch.zeros(n, dtype=torch.float64)}
    P, R = 30, 30
    se = torch.zeros(3, dtype=torch.float64)
    for r in range(R):
        d = nt.estimate_spectral_density(
            loss, params, n_probes=P, n_steps=n, max_moment=2,
            generator=torch.Generator().manual_seed(100 + r),
        )  # fmt: skip
        se += d.moment_stderrs / R
    for q in (1, 2):
        exact = _closed_form_se(torch.linalg.matrix_power(Hm, q), P) / n
        assert 0.8 < float(se[q]) / exact < 1.15, (q, float(se[q]), exact)
    assert float(se[0]) < 1e-12  # the zeroth moment is 1 for every probe


def test_noise_gap_stderr_covers_the_spread_of_independent_runs():
    g = torch.Generator().manual_seed(3)
    p = random_params(4, 1, 3, generator=g, scale=2.0)
    xs = torch.randn(6, 5, 1, generator=g, dtype=torch.float64)
    ys = torch.tensor([0, 1, 2, 0, 1, 2])
    noise = nt.NoiseSpec(epsilon=0.3, sigma1=1.0, sigma2=0.5)
    R = 60
    means, ses, plain, plain_ses = [], [], [], []
    for r in range(R):
        est = nt.estimate_noise_gap(
            p, xs, ys, noise, n_pairs=16, generator=torch.Generator().manual_seed(1000 + r)
        )
        means.append(est.mean)
        ses.append(est.mean_stderr)
        plain.append(est.plain_mean)
        plain_ses.append(est.plain_mean_stderr)
    bound = 4 / math.sqrt(2 * (R - 1))  # 4 SD of the relative error of a sample std
    for values, reported in ((means, ses), (plain, plain_ses)):
        spread = torch.tensor(values).std(correction=1).item()
        ratio = spread / (sum(reported) / R)
        assert 1 - bound < ratio < 1 + bound, (ratio, spread)


def test_lyapunov_stderr_covers_the_spread_of_independent_batches():
    """Finite-time exponents are heavy-tailed (kurtosis ~ 20 here), so the mean of
    small-sample standard errors is biased low; the root mean square of the reported
    SEs is not (E s^2 = sigma^2 for any distribution) and is compared with the spread."""
    g = torch.Generator().manual_seed(4)
    p = random_params(4, 1, 2, generator=g, scale=1.0, dt=0.2)
    R, B = 40, 6
    means, ses = [], []
    for _ in range(R):
        xs = torch.randn(B, 100, 1, generator=g, dtype=torch.float64)
        spec = nt.lyapunov_spectrum(p, xs, k=2, transient=10, generator=g)
        means.append(spec.exponents.clone())
        ses.append(spec.stderr.clone())
    spread = torch.stack(means).std(dim=0, correction=1)
    ratio = spread / torch.stack(ses).square().mean(dim=0).sqrt()
    # a mean of 6 such values has excess kurtosis ~ 3: the relative SD of a 40-sample
    # std is then ~ 0.15, and [0.6, 1.6] is about 4 SD (a x3 error is far outside)
    assert bool(((ratio > 0.6) & (ratio < 1.6)).all()), ratio


def test_t_examples_interval_is_the_student_t_interval_of_per_example_accuracies():
    """Inputs at +-10 and a sign classifier: noise of strength <= 0.1 never flips a
    prediction, so the per-example accuracies are the clean correctness (7 of 10)."""
    N = 10
    xs = torch.full((N, 3, 1), 10.0, dtype=torch.float64)
    xs[::2] = -10.0
    truth = (xs[:, 0, 0] > 0).long()
    labels = truth.clone()
    labels[:3] = 1 - labels[:3]  # three wrong labels

    def model(x):
        s = x.sum(dim=(1, 2))
        return torch.stack([-s, s], dim=1)

    sweep = nt.robustness_sweep(
        model, xs, labels, perturbations=("white_noise",), grids={"white_noise": (0.05, 0.1)},
        n_draws=4, ci="t_examples", generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    per_example = torch.tensor([0.0] * 3 + [1.0] * 7, dtype=torch.float64)
    mean = float(per_example.mean())
    se = float(per_example.std(correction=1)) / math.sqrt(N)
    lo, hi = stats.t.interval(0.95, df=N - 1, loc=mean, scale=se)
    curve = sweep.curves[0]
    assert torch.allclose(curve.accuracy, torch.full((2,), 0.7, dtype=torch.float64))
    torch.testing.assert_close(curve.ci_low, torch.full((2,), lo, dtype=torch.float64))
    torch.testing.assert_close(curve.ci_high, torch.full((2,), min(hi, 1.0), dtype=torch.float64))


@pytest.mark.parametrize("dt", [0.5, 1.0])
def test_certified_margin_lipschitz_constant_is_exact_for_a_full_rank_u(dt):
    """One step from h0 = 0: s_y - s_j = dt (V_y - V_j) tanh(U x + b). With V_y - V_j
    along U's top left singular vector the global Lipschitz constant is dt ||U||_2,
    attained where U x + b = 0; ||U||_F would overstate it."""
    H = 2
    U = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # ||U||_2 = 3 < ||U||_F
    p = nt.NRNNParams(
        A=torch.zeros(H, H, dtype=torch.float64), W=torch.zeros(H, H, dtype=torch.float64),
        U=U, b=torch.tensor([0.3, -0.2], dtype=torch.float64),
        V=torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64),
        c=torch.zeros(2, dtype=torch.float64), dt=dt,
    )  # fmt: skip
    xs = torch.tensor([[[0.5, 0.1]]], dtype=torch.float64)  # (B, T, D) = (1, 1, 2)
    cert = nt.certified_margin(p, xs, torch.tensor([0]))
    # the exact constant: the gradient's norm at x* = -U^{-1} b, by autograd
    x_star = (-torch.linalg.solve(U, p.b)).reshape(1, 1, 2).requires_grad_(True)
    s = nt.logits(p, x_star)
    (grad,) = torch.autograd.grad(s[0, 0] - s[0, 1], x_star)
    exact = float(grad.norm())
    assert exact == pytest.approx(3 * dt, rel=1e-12)
    assert float(cert.lipschitz[0, 1]) == pytest.approx(exact, rel=1e-9)
    assert float(cert.radius[0]) == pytest.approx(float(cert.score_margin[0]) / exact, rel=1e-9)
