"""Issue 19: no function returns NaN or a silently wrong number where it can detect the
problem: it raises, naming the argument or the step.

Oracles: the exact Gram-matrix norm in float64 (``method="gram"``) for the power
iteration at huge scales, a model whose readout overflows by construction, and direct
NaN arguments.
"""

from __future__ import annotations

import math

import pytest
import torch

from nrnn_theory import NoiseSpec, NRNNParams, jacobian_spectral_norm, score_margin
from nrnn_theory.dynamics import NonFiniteStateError, rollout
from nrnn_theory.margins import input_output_jacobian, local_margin_estimate, margin_growth
from nrnn_theory.regularizer import regularizer_penalty

from _problems import random_params


def _scaled(scale: float, dtype: torch.dtype, *, seed: int = 0) -> tuple[NRNNParams, torch.Tensor]:
    """A small model whose readout V is multiplied by ``scale`` (so ||J|| ~ scale)."""
    g = torch.Generator().manual_seed(seed)
    p = random_params(4, 1, 3, generator=g, dtype=torch.float64)
    p = NRNNParams(
        A=p.A, W=p.W, U=p.U, b=p.b, V=p.V * scale, c=p.c, dt=p.dt
    )  # float64 first: V * scale may be finite in float64 only
    xs = torch.randn(2, 5, 1, generator=g, dtype=torch.float64)
    return p.to(dtype), xs.to(dtype)


@pytest.mark.parametrize(
    "scale, dtype",
    [(1e10, torch.float32), (1e18, torch.float32), (1e80, torch.float64), (1e150, torch.float64)],
)
def test_power_iteration_finds_huge_norms(scale, dtype):
    """float32 ||J|| ~ 6.5e10 used to give 0.0 with converged=True (the squared norm of
    the iterate overflowed): the norm is now found wherever it is representable."""
    p, xs = _scaled(scale, dtype)
    exact = jacobian_spectral_norm(p.to(torch.float64), xs.double(), method="gram").norm
    got = jacobian_spectral_norm(p, xs, generator=torch.Generator().manual_seed(1))
    assert bool(got.converged.all())
    rel = (got.norm.double() - exact).abs() / exact
    assert float(rel.max()) < 1e-3, (got.norm, exact)  # float32 rounding, rtol 1e-6 stop


def test_power_iteration_raises_naming_the_step_when_the_norm_overflows():
    """||J|| ~ 1e40 is beyond float32 (zero inputs keep tanh unsaturated)."""
    p, _ = _scaled(1e30, torch.float64)
    p32 = NRNNParams(
        A=p.A.float(), W=p.W.float(), U=p.U.float() * 1e12, b=p.b.float(),
        V=p.V.float(), c=p.c.float(), dt=p.dt,
    )  # fmt: skip
    xs = torch.zeros(2, 5, 1)
    with pytest.raises(NonFiniteStateError, match=r"step 1\b.*overflows torch.float32"):
        jacobian_spectral_norm(p32, xs, generator=torch.Generator().manual_seed(0))


def test_gram_method_raises_instead_of_a_linalg_error():
    p, xs = _scaled(1e22, torch.float32)  # ||J||^2 ~ 1e42 > float32's 3.4e38
    with pytest.raises(NonFiniteStateError, match="J J\\^T is not finite"):
        jacobian_spectral_norm(p, xs, method="gram")


def _overflowing() -> tuple[NRNNParams, torch.Tensor]:
    """An unstable linear part: h grows like (1 + dt*50)^k and overflows float32."""
    g = torch.Generator().manual_seed(0)
    p = random_params(3, 1, 2, generator=g, dtype=torch.float32)
    p = NRNNParams(A=50 * torch.eye(3), W=p.W, U=p.U, b=p.b, V=p.V, c=p.c, dt=1.0)
    return p, torch.ones(2, 60, 1)


def test_overflowing_model_raises_like_rollout():
    p, xs = _overflowing()
    with pytest.raises(NonFiniteStateError, match="step"):
        rollout(p, xs)
    for call in (
        lambda: input_output_jacobian(p, xs),
        lambda: local_margin_estimate(p, xs),
        lambda: jacobian_spectral_norm(p, xs, generator=torch.Generator().manual_seed(0)),
    ):
        with pytest.raises(NonFiniteStateError, match=r"non-finite .* at step \d+ of 60"):
            call()


def test_local_margin_estimate_of_a_callable_with_nan_scores_raises():
    def model(x):
        return torch.full((x.shape[0], 3), float("nan"), dtype=x.dtype)

    with pytest.raises(NonFiniteStateError, match="scores are not finite"):
        local_margin_estimate(model, torch.zeros(2, 4, 1))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_score_margin_refuses_non_finite_scores(bad):
    scores = torch.tensor([[1.0, 0.0], [bad, 2.0]])
    with pytest.raises(ValueError, match="scores: expected finite values"):
        score_margin(scores)


@pytest.mark.parametrize("weight", [float("nan"), float("inf")])
def test_regularizer_penalty_refuses_a_non_finite_weight(weight):
    g = torch.Generator().manual_seed(0)
    p = random_params(2, 1, 2, generator=g)
    xs, ys = torch.ones(3, 4, 1, dtype=torch.float64), torch.tensor([0, 1, 0])
    with pytest.raises(ValueError, match="weight: expected a finite number"):
        regularizer_penalty(p, xs, ys, NoiseSpec(epsilon=0.1, sigma1=1.0), weight=weight)


def test_margin_growth_refuses_nan_and_keeps_inf():
    with pytest.raises(ValueError, match="rho: expected a number >= 0"):
        margin_growth(float("nan"), 3)
    with pytest.raises(TypeError, match="rho: expected a real number"):
        margin_growth("1", 3)
    assert margin_growth(math.inf, 3) == math.inf  # certifies radius 0, as documented
