"""Tests of the records (NRNNParams, NoiseSpec) and the convention mapping.

Theory: docs/theory/model.md, docs/theory/conventions.md.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nrnn_theory import (
    NoiseSpec,
    NRNNParams,
    paper_code_to_sde,
    sde_to_paper_code,
    step_moments,
)
from nrnn_theory._linalg import lipschitz_matrix, qr_positive, skew, sym

from _problems import random_params
from _strategies import seeds
from _tolerances import tol


@given(seeds, st.floats(0.0, 1.0), st.floats(0.0, 2.0))
def test_lipschitz_parametrization_closed_form(seed, beta, gamma):
    """A = (1-b)(M+M^T) + b(M-M^T) - g I: its symmetric part is 2(1-b) sym M - g I and
    its skew part 2 b skew M (docs/theory/model.md)."""
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(5, 5, generator=g, dtype=torch.float64)
    A = lipschitz_matrix(M, beta, gamma)
    eye = torch.eye(5, dtype=torch.float64)
    torch.testing.assert_close(sym(A), 2 * (1 - beta) * sym(M) - gamma * eye, **tol("elementwise"))
    torch.testing.assert_close(skew(A), 2 * beta * skew(M), **tol("elementwise"))


def test_from_lipschitz_builds_both_matrices_and_is_differentiable(generator):
    M_A = torch.randn(4, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    M_W = torch.randn(4, 4, generator=generator, dtype=torch.float64)
    z = torch.zeros(4, dtype=torch.float64)
    p = NRNNParams.from_lipschitz(
        M_A,
        M_W,
        torch.ones(4, 2, dtype=torch.float64),
        z,
        torch.ones(3, 4, dtype=torch.float64),
        torch.zeros(3, dtype=torch.float64),
        beta=1.0,
        gamma_A=0.5,
        gamma_W=0.25,
        dt=0.1,
        alpha=0.0,
    )
    # beta = 1: skew-symmetric minus gamma I (the antisymmetric-RNN W of
    # docs/theory/experiments.md).
    torch.testing.assert_close(p.W + p.W.T, -0.5 * torch.eye(4, dtype=torch.float64))
    torch.testing.assert_close(p.A + p.A.T, -1.0 * torch.eye(4, dtype=torch.float64))
    p.A.sum().backward()
    assert M_A.grad is not None
    with pytest.raises(ValueError, match=r"^beta: expected a number in \[0, 1\]"):
        NRNNParams.from_lipschitz(
            M_A, M_W, p.U, z, p.V, p.c, beta=1.5, gamma_A=0, gamma_W=0, dt=0.1
        )


def test_params_conversion_and_sizes(generator):
    p = random_params(3, 2, 4, generator=generator, per_unit_step=True)
    q = p.to(torch.float32)
    assert q.A.dtype == q.step.dtype == torch.float32 and q.dt == p.dt
    assert (p.hidden_size, p.input_size, p.num_classes) == (3, 2, 4)
    torch.testing.assert_close(p.drift_step, p.step)
    assert torch.equal(
        random_params(3, 2, 4, generator=generator).drift_step,
        torch.full((3,), 0.1, dtype=torch.float64),
    )
    assert p.detach().A.requires_grad is False


def test_qr_positive(generator):
    M = torch.randn(6, 5, 3, generator=generator, dtype=torch.float64)
    Q, R = qr_positive(M)
    torch.testing.assert_close(Q @ R, M, **tol("linear_solve"))
    assert torch.all(torch.diagonal(R, dim1=-2, dim2=-1) >= 0)
    torch.testing.assert_close(
        Q.mT @ Q, torch.eye(3, dtype=torch.float64).expand(6, 3, 3), **tol("linear_solve")
    )


# ---------------------------------------------------------------- convention mapping
@given(st.floats(1e-4, 0.5), st.floats(0.0, 0.2), st.floats(0.0, 0.9), seeds)
def test_mapping_matches_one_step_moments(dt, a, mu, seed):
    """Additive parts agree exactly in covariance; the paper_code mean step is the sde
    one times 1 - mu/2 and its extra covariance is mu^2/12 diag(d f)^2
    (docs/theory/conventions.md)."""
    g = torch.Generator().manual_seed(seed)
    params = random_params(3, 2, 2, generator=g, dt=dt)
    h = torch.randn(4, 3, generator=g, dtype=torch.float64)
    x = torch.randn(4, 2, generator=g, dtype=torch.float64)
    code = NoiseSpec.paper_code(add=a, mult=mu)
    mapping = paper_code_to_sde(code, dt)
    mean_c, cov_c = step_moments(params, h, x, code)
    mean_s, cov_s = step_moments(params, h, x, mapping.target)
    torch.testing.assert_close(mean_c - h, mapping.drift_scale * (mean_s - h), **tol("elementwise"))
    df = mean_s - h  # dt * f
    extra = mapping.drift_variance * torch.diag_embed(df**2)
    torch.testing.assert_close(cov_c, cov_s + extra, **tol("elementwise"))
    assert mapping.exact == (mu == 0)


def test_mapping_known_values_and_round_trip():
    # docs/theory/conventions.md: dt = 0.01, a = 0.02 -> eps sigma1 = 0.2; a = 0.05 -> 0.5.
    assert math.isclose(
        paper_code_to_sde(NoiseSpec.paper_code(0.02, 0.02), 0.01).target.additive, 0.2
    )
    assert math.isclose(
        paper_code_to_sde(NoiseSpec.paper_code(0.05, 0.02), 0.01).target.additive, 0.5
    )
    sde = NoiseSpec(epsilon=0.5, sigma1=0.8)
    back = paper_code_to_sde(sde_to_paper_code(sde, 0.03).target, 0.03).target
    assert math.isclose(back.additive, sde.additive)
    with pytest.raises(ValueError, match=r"^noise: expected no multiplicative part"):
        sde_to_paper_code(NoiseSpec(sigma2=0.1), 0.01)
    with pytest.raises(ValueError, match=r"^noise: expected convention 'paper_code'"):
        paper_code_to_sde(sde, 0.01)
    with pytest.raises(ValueError, match=r"^dt: expected a number > 0"):
        paper_code_to_sde(NoiseSpec.paper_code(0.1, 0.0), 0.0)
    d = paper_code_to_sde(NoiseSpec.paper_code(0.02, 0.02), 0.01).to_dict()
    assert d["target"]["convention"] == "sde" and d["drift_scale"] == 0.99


def test_noise_spec_round_trips_through_json(generator):
    import json

    for noise in (
        NoiseSpec(),
        NoiseSpec(epsilon=0.3, sigma1=1.0, sigma2=0.5, structure="scalar"),
        NoiseSpec.paper_code(add=0.05, mult=0.02),
    ):
        assert NoiseSpec.from_dict(json.loads(json.dumps(noise.to_dict()))) == noise
    assert NoiseSpec.from_dict(None) is None
    # Dictionaries written before serialization was versioned have no schema key.
    assert NoiseSpec.from_dict({"sigma1": 1.0}) == NoiseSpec(sigma1=1.0)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"sigma3": 1.0}, "unknown key.*sigma3"),
        ({"schema": "NoiseSpec/99"}, "schema"),
        ({"sigma1": -1.0}, "sigma1"),
        ([1, 2], "mapping"),
    ],
)
def test_noise_spec_from_dict_names_the_problem(data, match):
    with pytest.raises((TypeError, ValueError), match=match):
        NoiseSpec.from_dict(data)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_params_round_trip_bitwise_through_json(dtype, generator):
    import json

    H, D, C = 3, 2, 4
    p = NRNNParams(
        A=torch.randn(H, H, generator=generator).to(dtype),
        W=torch.randn(H, H, generator=generator).to(dtype),
        U=torch.randn(H, D, generator=generator).to(dtype),
        b=torch.randn(H, generator=generator).to(dtype),
        V=torch.randn(C, H, generator=generator).to(dtype),
        c=torch.randn(C, generator=generator).to(dtype),
        dt=0.07,
        step=torch.rand(H, generator=generator).to(dtype),
        alpha=0.5,
    )
    q = NRNNParams.from_dict(json.loads(json.dumps(p.to_dict())))
    for name in ("A", "W", "U", "b", "V", "c", "step"):
        assert torch.equal(getattr(q, name), getattr(p, name)), name
    assert (q.dt, q.alpha, q.dtype) == (p.dt, p.alpha, p.dtype)


def test_params_from_dict_names_the_problem():
    p = NRNNParams(
        A=-torch.eye(2),
        W=torch.zeros(2, 2),
        U=torch.ones(2, 1),
        b=torch.zeros(2),
        V=torch.ones(3, 2),
        c=torch.zeros(3),
        dt=0.1,
    )
    d = p.to_dict()
    with pytest.raises(ValueError, match="missing key.*'W'"):
        NRNNParams.from_dict({k: v for k, v in d.items() if k != "W"})
    with pytest.raises(ValueError, match="dtype"):
        NRNNParams.from_dict({**d, "dtype": "int8"})
    with pytest.raises(ValueError, match="U: expected shape"):
        NRNNParams.from_dict({**d, "U": [[1.0], [1.0], [1.0]]})
    with pytest.raises(ValueError, match="b: expected a nested list"):
        NRNNParams.from_dict({**d, "b": ["x", 1.0]})
