"""nrnn_theory.testing: strategies with known answers, assertions that can fail, and the
import boundary (hypothesis only with the strategies)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings

from nrnn_theory import NoiseSpec, check_stability, explicit_regularizer, one_sided_constant
from nrnn_theory import testing as nt
from nrnn_theory.testing import strategies


def _sym_max(M: torch.Tensor) -> float:
    return float(torch.linalg.eigvalsh(0.5 * (M + M.T)).max())


@settings(max_examples=30, deadline=None)
@given(strategies.nrnn_params())
def test_stability_families_have_the_constant_they_claim(case):
    params, lam = case
    # Oracle: the standard constant from its definition, dense float64 eigenvalues.
    p = params.to(dtype=torch.float64)
    direct = _sym_max(p.alpha * p.A) + float(torch.linalg.matrix_norm(p.W, ord=2))
    assert direct == pytest.approx(lam, rel=1e-9, abs=1e-12)
    assert one_sided_constant(p, "standard") == pytest.approx(lam, rel=1e-9, abs=1e-12)
    assert one_sided_constant(p, "exact") <= lam + 1e-9  # the vertex max is never larger
    gamma = abs(_sym_max(p.A))
    if lam < -0.15 * gamma:  # stable family
        assert check_stability(p, condition="contraction", one_sided="standard").holds
    if _sym_max(p.A) > 0:  # unstable: the linear part alone expands
        assert not check_stability(p, condition="contraction", one_sided="exact").holds


@pytest.mark.parametrize("family", nt.STABILITY_FAMILIES)
def test_each_family_lies_in_its_band(family):
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        p, lam = nt.stability_family_params(family, 4, 2, 3, generator=g)
        gamma = abs(_sym_max(p.A))
        band = {
            "stable": (-gamma, -0.2 * gamma),
            "near_critical": (-0.05 * gamma, 0.05 * gamma),
            "unstable": (gamma, 2 * gamma),
        }[family]
        assert band[0] - 1e-12 <= lam <= band[1] + 1e-12, (family, seed, lam, gamma)
    with pytest.raises(ValueError, match="family: expected one of"):
        nt.stability_family_params("chaotic", 2, 1, 2, generator=g)


@settings(max_examples=20, deadline=None)
@given(strategies.noise_specs(), strategies.input_sequences(3))
def test_noise_and_input_strategies(noise, xs):
    assert isinstance(noise, NoiseSpec) and noise.convention in ("sde", "paper_code")
    assert xs.ndim == 3 and xs.shape[2] == 3 and xs.dtype == torch.float64


def test_assert_within_stderr_passes_and_fails():
    nt.assert_within_stderr(1.03, 0.01, 1.0)
    nt.assert_within_stderr(torch.tensor([1.0, 2.0]), 0.1, np.array([1.1, 2.2]), slack=0.0)
    with pytest.raises(AssertionError, match=r"more than 4 standard errors"):
        nt.assert_within_stderr(1.05, 0.01, 1.0, what="x")
    with pytest.raises(AssertionError, match="standard error must be finite"):
        nt.assert_within_stderr(1.0, math.nan, 1.0)


def test_assert_convergence_order_passes_and_fails():
    h = np.array([0.1, 0.05, 0.025, 0.0125])
    assert nt.assert_convergence_order(h, 3 * h**1.5, 1.5) == pytest.approx(1.5)
    with pytest.raises(AssertionError, match="fitted order 1.000, expected 2"):
        nt.assert_convergence_order(h, h, 2.0)
    with pytest.raises(AssertionError, match="finite nonzero errors"):
        nt.assert_convergence_order(h, [1.0, 0.0, 1.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="at least 2 distinct steps"):
        nt.assert_convergence_order([0.1], [1.0], 1.0)


def test_assert_agree_at_random_points_catches_a_wrong_formula():
    def sample(g):
        return (torch.randn(5, generator=g, dtype=torch.float64),)

    nt.assert_agree_at_random_points(lambda x: torch.tanh(x), lambda x: np.tanh(x.numpy()), sample)
    with pytest.raises(AssertionError, match="differ at random point 0"):
        nt.assert_agree_at_random_points(
            lambda x: torch.tanh(x), lambda x: x - x**3 / 3, sample, what="tanh vs its series"
        )


def test_gap_assertion_accepts_the_regularizer_and_rejects_a_wrong_variant():
    g = torch.Generator().manual_seed(4)
    params = nt.random_params(3, 2, 3, generator=g, dt=0.2)
    xs = torch.randn(6, 5, 2, generator=g, dtype=torch.float64)
    ys = torch.randint(0, 3, (6,), generator=g)
    noise = NoiseSpec(epsilon=0.01, sigma1=1.0, sigma2=0.5)  # O(eps^4) far below the SE
    nt.assert_gap_matches_regularizer(
        params, xs, ys, noise, n_pairs=200, generator=torch.Generator().manual_seed(0)
    )

    # A variant equal to the package's formula passes; one that drops R-hat fails.
    def right(p, x, y, n):
        return 0.5 * n.epsilon**2 * explicit_regularizer(p, x, y, n).total

    def q_only(p, x, y, n):
        return 0.5 * n.epsilon**2 * explicit_regularizer(p, x, y, n).Q

    for variant, ok in ((right, True), (q_only, False)):
        gen = torch.Generator().manual_seed(0)
        if ok:
            nt.assert_gap_matches_regularizer(
                params, xs, ys, noise, n_pairs=200, generator=gen, predict=variant
            )
        else:
            with pytest.raises(AssertionError, match="gap vs q_only"):
                nt.assert_gap_matches_regularizer(
                    params, xs, ys, noise, n_pairs=200, generator=gen, predict=variant
                )


def _imported(code: str) -> bool:
    probe = f"{code}\nimport sys\nprint('hypothesis' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return out.strip().splitlines()[-1] == "True"


def test_hypothesis_is_imported_only_with_the_strategies():
    assert not _imported("import nrnn_theory; nrnn_theory.NoiseSpec")
    assert not _imported("import nrnn_theory.testing as t; t.tol('eig'); t.random_params")
    assert _imported("from nrnn_theory.testing import seeds")
