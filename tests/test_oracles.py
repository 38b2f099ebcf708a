"""The quadrature oracles of nrnn_theory._oracles against Monte Carlo.

Theory: docs/theory/oracles.md V4.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from nrnn_theory._oracles import em_gbm_exponent, normal_expectation

from _tolerances import STATISTICAL_SIGMAS


@pytest.mark.parametrize(
    ("lam", "sigma", "dt"), [(1.0, 2.0, 0.1), (0.5, 1.0, 0.05), (-0.3, 0.7, 0.2)]
)
def test_em_gbm_exponent_matches_monte_carlo(lam, sigma, dt):
    """E log|1 + lam dt + sigma sqrt(dt) xi| / dt by quadrature against the plain Monte
    Carlo mean of 2e6 normal draws, within 4 standard errors (log|.| has a finite
    variance, so the standard error is valid)."""
    xi = np.random.default_rng(17).standard_normal(2_000_000)
    samples = np.log(np.abs(1.0 + lam * dt + sigma * math.sqrt(dt) * xi)) / dt
    se = samples.std(ddof=1) / math.sqrt(samples.size)
    assert abs(em_gbm_exponent(lam, sigma, dt) - samples.mean()) <= STATISTICAL_SIGMAS * se


def test_em_gbm_exponent_degenerate_and_far_singularity():
    # sigma = 0: the deterministic chain x_{k+1} = (1 + lam dt) x_k
    assert em_gbm_exponent(0.5, 0.0, 0.1) == pytest.approx(math.log(1.05) / 0.1, rel=1e-12)
    # sigma ~ 1e-300: the singularity sits ~1e300 standard deviations out; the split
    # quadrature would overflow the density there, the guard integrates over [-30, 30]
    assert em_gbm_exponent(0.5, 1e-300, 0.1) == pytest.approx(math.log(1.05) / 0.1, rel=1e-12)
    # the continuum limit lam - sigma^2/2 is approached as dt -> 0 (first order in dt)
    errs = [abs(em_gbm_exponent(1.0, 1.0, dt) - 0.5) for dt in (0.02, 0.01)]
    assert errs[1] < 0.6 * errs[0]


def test_normal_expectation_moments():
    """E xi^2 = 1, E |xi| = sqrt(2/pi), E log|xi| = -(gamma + log 2)/2 (split at 0)."""
    assert normal_expectation(lambda x: x * x) == pytest.approx(1.0, rel=1e-10)
    assert normal_expectation(abs, 0.0) == pytest.approx(math.sqrt(2 / math.pi), rel=1e-10)
    expected = -(np.euler_gamma + math.log(2.0)) / 2
    assert normal_expectation(lambda x: np.log(np.abs(x)), 0.0) == pytest.approx(expected, rel=1e-8)
