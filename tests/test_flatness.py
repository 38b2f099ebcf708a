"""Tests of nrnn_theory.flatness (docs/theory/flatness.md, oracles.md V8).

Oracles: quadratic losses with a known Hessian (tests/_problems.py), dense Hessians
from ``torch.autograd.functional.hessian`` (an autograd path independent of the
package's torch.func code), ``torch.linalg.eigvalsh``, central differences of
gradients, ``nrnn_theory.dynamics.logits`` for the loss builders, and curvlinops as
a test-only reference library.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd.functional import hessian as autograd_hessian

from nrnn_theory import (
    NoiseSpec,
    NRNNParams,
    estimate_hessian_trace,
    estimate_spectral_density,
    hessian,
    hessian_eigenvalues,
    hessian_trace,
    hidden_state_hessian,
    hvp,
    logits,
    module_loss,
    nrnn_loss,
    params_to_vector,
    rollout,
    sample_noise,
    state_jacobian,
    vector_to_params,
)
from nrnn_theory._krylov import lanczos_tridiagonal, ritz

from _problems import quadratic_problem, random_params, random_symmetric
from _strategies import model_and_inputs, noise_specs, seeds
from _tolerances import STATISTICAL_SIGMAS, tol


# ---------------------------------------------------------------------------- helpers
def small_nrnn(generator, *, H=3, D=2, C=3, B=5, T=4, per_unit_step=False):
    params = random_params(H, D, C, generator=generator, per_unit_step=per_unit_step)
    xs = torch.randn(B, T, D, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, C, (B,), generator=generator)
    return params, xs, labels


def dense_oracle(loss_fn, params):
    """Dense Hessian by torch.autograd.functional (reverse-over-reverse autograd)."""
    vec = params_to_vector(params)

    def flat_loss(v):
        return loss_fn(vector_to_params(v, params))

    return autograd_hessian(flat_loss, vec)


def rademacher(P, n, generator, dtype=torch.float64):
    # The draw convention documented by estimate_hessian_trace / estimate_spectral_density.
    return (2 * torch.randint(0, 2, (P, n), generator=generator) - 1).to(dtype)


class TinyNRNN(torch.nn.Module):
    """A minimal module whose forward is ``nrnn_theory.dynamics.logits``."""

    def __init__(self, params: NRNNParams):
        super().__init__()
        for k in ("A", "W", "U", "b", "V", "c"):
            setattr(self, k, torch.nn.Parameter(getattr(params, k).clone()))
        self.register_buffer("scale", torch.ones((), dtype=params.dtype))
        self.dt = params.dt

    def forward(self, xs, *, noise=None, eta=None, generator=None):
        p = NRNNParams(
            A=self.A, W=self.W, U=self.U, b=self.b, V=self.V * self.scale, c=self.c, dt=self.dt
        )
        return logits(p, xs, noise=noise, eta=eta, generator=generator)


def snapshot(module):
    return (
        {k: v.detach().clone() for k, v in module.state_dict().items()},
        {k: (p.requires_grad, p.grad) for k, p in module.named_parameters()},
        module.training,
    )


def assert_unchanged(module, snap):
    state, flags, training = snap
    now = module.state_dict()
    assert set(now) == set(state)
    for k, v in state.items():
        assert torch.equal(now[k], v), k
    for k, p in module.named_parameters():
        assert p.requires_grad == flags[k][0]
        assert p.grad is None
    assert module.training == training


# ---------------------------------------------------------------------------- layout
def test_layout_round_trip(generator):
    params = {
        "M": torch.randn(2, 3, generator=generator),
        "s": torch.randn((), generator=generator),
        "v": torch.randn(4, generator=generator),
    }
    vec = params_to_vector(params)
    assert vec.shape == (11,)
    back = vector_to_params(vec, params)
    assert list(back) == list(params)
    for k in params:
        assert torch.equal(back[k], params[k])


# ---------------------------------------------------------------------------- HVPs
@pytest.mark.parametrize("method", ["forward_over_reverse", "reverse_over_reverse"])
def test_hvp_quadratic_exact(method, generator, float64):
    Hm = random_symmetric(7, generator=generator)
    loss_fn, params, _ = quadratic_problem(Hm, generator=generator)
    V = torch.randn(3, 7, generator=generator)
    out = hvp(loss_fn, params, V, method=method)
    torch.testing.assert_close(out, V @ Hm, **tol("elementwise"))
    single = hvp(loss_fn, params, V[0], method=method)
    torch.testing.assert_close(single, Hm @ V[0], **tol("elementwise"))
    mapped = hvp(loss_fn, params, vector_to_params(V[1], params), method=method)
    torch.testing.assert_close(params_to_vector(mapped), Hm @ V[1], **tol("elementwise"))


def test_hvp_three_ways_and_dense_nrnn(generator):
    params, xs, labels = small_nrnn(generator, per_unit_step=True)
    loss_fn, theta = nrnn_loss(params, xs, labels)
    n = params_to_vector(theta).numel()
    v = torch.randn(n, generator=generator, dtype=torch.float64)
    fr = hvp(loss_fn, theta, v, method="forward_over_reverse")
    rr = hvp(loss_fn, theta, v, method="reverse_over_reverse")
    torch.testing.assert_close(fr, rr, **tol("reduction"))
    # Central differences of gradients (gradients by torch.func.grad), h ~ 1e-5.
    g = torch.func.grad(loss_fn)
    x0 = params_to_vector(theta)
    h = 1e-5

    def grad_at(x):
        return params_to_vector(g(vector_to_params(x, theta)))

    fd = (grad_at(x0 + h * v) - grad_at(x0 - h * v)) / (2 * h)
    torch.testing.assert_close(fr, fd, **tol("autograd_vs_fd"))
    dense = dense_oracle(loss_fn, theta)
    torch.testing.assert_close(fr, dense @ v, **tol("reduction"))
    torch.testing.assert_close(hessian(loss_fn, theta), dense, **tol("reduction"))


# ---------------------------------------------------------------------------- exact trace
@settings(max_examples=15)
@given(problem=model_and_inputs(max_hidden=3, max_input=2, max_steps=4), seed=seeds)
def test_exact_trace_matches_dense_oracle(problem, seed):
    params, xs, g = problem
    labels = torch.randint(0, params.num_classes, (xs.shape[0],), generator=g)
    loss_fn, theta = nrnn_loss(params, xs, labels)
    blocks = {"recurrent": ["A", "W"], "input": ["U", "b"], "readout": ["V", "c"]}
    r = hessian_trace(loss_fn, theta, blocks=blocks)
    dense = dense_oracle(loss_fn, theta)
    scale = float(dense.abs().sum()) + 1e-300
    assert abs(r.trace - float(torch.trace(dense))) <= 1e-9 * scale
    assert abs(r.trace - float(torch.linalg.eigvalsh(dense).sum())) <= 1e-9 * scale
    assert abs(sum(r.blocks.values()) - r.trace) <= 1e-12 * scale
    torch.testing.assert_close(r.diagonal, torch.diagonal(dense), rtol=1e-9, atol=1e-9 * scale)
    expected = set(blocks) | ({"step"} if params.step is not None else set())
    assert set(r.blocks) == expected
    assert r.n_hvps == r.n_params == dense.shape[0]


def test_block_traces_match_dense_blocks(generator):
    params, xs, labels = small_nrnn(generator)
    loss_fn, theta = nrnn_loss(params, xs, labels)
    dense = torch.diagonal(dense_oracle(loss_fn, theta))
    r = hessian_trace(loss_fn, theta)  # default: one block per parameter
    start = 0
    for k, t in theta.items():
        assert r.blocks[k] == pytest.approx(
            float(dense[start : start + t.numel()].sum()), abs=1e-10
        )
        start += t.numel()


# ---------------------------------------------------------------------------- Hutchinson
def test_hutchinson_quadratic_within_four_stderr(generator, float64):
    Hm = random_symmetric(12, generator=generator)
    loss_fn, params, _ = quadratic_problem(Hm, generator=generator)
    r = estimate_hessian_trace(
        loss_fn, params, n_probes=400, batch_size=100, blocks={"x": ["x"]}, generator=generator
    )
    assert r.n_probes == 400 and r.samples.shape == (400,)
    assert set(r.block_means) == {"x", "y"}  # "y" left out: its own block
    assert r.converged is None
    assert abs(r.mean - float(torch.trace(Hm))) <= STATISTICAL_SIGMAS * r.stderr
    # Block samples sum to the total sample by sample; block means to the mean.
    assert sum(r.block_means.values()) == pytest.approx(r.mean, rel=1e-12, abs=1e-12)
    # Per-block estimates are unbiased for the block traces.
    n1 = params["x"].numel()
    for name, exact in (("x", Hm.diagonal()[:n1].sum()), ("y", Hm.diagonal()[n1:].sum())):
        assert abs(r.block_means[name] - float(exact)) <= STATISTICAL_SIGMAS * r.block_stderrs[name]


def test_hutchinson_diagonal_is_exact_with_one_probe(generator, float64):
    Hm = torch.diag(torch.randn(9, generator=generator))
    loss_fn, params, _ = quadratic_problem(Hm, generator=generator)
    one = estimate_hessian_trace(loss_fn, params, n_probes=1, generator=generator)
    assert one.mean == pytest.approx(float(torch.trace(Hm)), rel=1e-12, abs=1e-12)
    assert math.isnan(one.stderr) and one.n_probes == 1
    several = estimate_hessian_trace(loss_fn, params, n_probes=5, generator=generator)
    assert several.stderr == pytest.approx(0.0, abs=1e-12)


def test_hutchinson_variance_formula(generator, float64):
    # Var(z^T H z) = 2 (||H||_F^2 - sum_i H_ii^2) for Rademacher z (docs/theory/flatness.md).
    Hm = random_symmetric(6, generator=generator)
    loss_fn, params, _ = quadratic_problem(Hm, generator=generator)
    r = estimate_hessian_trace(loss_fn, params, n_probes=4000, batch_size=1000, generator=generator)
    expected = 2 * (float((Hm**2).sum()) - float((Hm.diagonal() ** 2).sum()))
    x = r.samples
    N = x.numel()
    dev2 = (x - x.mean()) ** 2
    sample_var = float(dev2.sum()) / (N - 1)
    # Standard error of the sample variance from the fourth central moment.
    se_var = float(dev2.std()) / math.sqrt(N)
    assert abs(sample_var - expected) <= STATISTICAL_SIGMAS * se_var


def test_hutchinson_nrnn_within_four_stderr(generator):
    params, xs, labels = small_nrnn(generator)
    loss_fn, theta = nrnn_loss(params, xs, labels)
    exact = hessian_trace(loss_fn, theta).trace
    for method in ("reverse_over_reverse", "forward_over_reverse"):
        r = estimate_hessian_trace(
            loss_fn, theta, n_probes=200, batch_size=50, method=method, generator=generator
        )
        assert abs(r.mean - exact) <= STATISTICAL_SIGMAS * r.stderr


@settings(max_examples=25)
@given(
    problem=model_and_inputs(max_hidden=4, max_input=2, max_steps=5),
    noise=st.one_of(st.none(), noise_specs(max_level=0.5)),
    lipschitz=st.booleans(),
    subset=st.booleans(),
)
def test_quadratic_form_equals_hvp(problem, noise, lipschitz, subset):
    # The forward-mode second-order pass of nrnn_loss against v^T (H v) by autograd HVPs,
    # clean and along frozen noise paths of every convention and structure.
    params, xs, g = problem
    B, T, _ = xs.shape
    labels = torch.randint(0, params.num_classes, (B,), generator=g)
    eta = None
    if noise is not None:
        eta = sample_noise(noise, B, T, params.hidden_size, dtype=xs.dtype, generator=g)
    kw = dict(beta=0.7, gamma_A=0.1, gamma_W=0.05) if lipschitz else {}
    names = None
    if subset:
        names = ["M_W" if lipschitz else "W", "U", "V"]
        if params.step is not None:
            names.append("step")
    loss_fn, theta = nrnn_loss(params, xs, labels, noise=noise, eta=eta, names=names, **kw)
    n = params_to_vector(theta).numel()
    Z = torch.randn(3, n, generator=g, dtype=xs.dtype)
    dirs = {}
    start = 0
    for k, t in theta.items():
        dirs[k] = Z[:, start : start + t.numel()].reshape(3, *t.shape)
        start += t.numel()
    quad = loss_fn.quadratic_form(theta, dirs)
    expected = (Z * hvp(loss_fn, theta, Z, method="reverse_over_reverse")).sum(1)
    # Two float64 paths through a T-step recurrence: the "reduction" kind, with atol
    # scaled because v^T H v sums n^2 terms of either sign.
    scale = float((Z * Z).sum(1).max()) * (float(expected.abs().max()) / n + 1.0)
    torch.testing.assert_close(quad, expected, rtol=1e-9, atol=1e-10 * scale)


@pytest.mark.parametrize("with_step", [False, True])
@pytest.mark.parametrize("lipschitz", [False, True])
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
def test_quadratic_form_both_step_paths_equal_hvp(generator, noise, lipschitz, with_step):
    # The fused second-order pass folds a fixed step into the weights (clean, "sde", no
    # step direction) and multiplies by it afterwards otherwise (a paper_code draw, a
    # step direction); each path against v^T (H v) by double-backward autograd, at a size
    # where every block of the batched product is non-trivial.
    H, D, B, T = 8, 2, 6, 10
    params = random_params(H, D, 3, generator=generator, scale=1.5, per_unit_step=with_step)
    xs = torch.randn(B, T, D, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (B,), generator=generator)
    eta = (
        None if noise is None else sample_noise(noise, B, T, H, dtype=xs.dtype, generator=generator)
    )
    kw = dict(beta=0.7, gamma_A=0.1, gamma_W=0.05) if lipschitz else {}
    loss_fn, theta = nrnn_loss(params, xs, labels, noise=noise, eta=eta, **kw)
    assert ("step" in theta) == with_step
    n = params_to_vector(theta).numel()
    Z = torch.randn(3, n, generator=generator, dtype=xs.dtype)
    dirs, start = {}, 0
    for k, t in theta.items():
        dirs[k] = Z[:, start : start + t.numel()].reshape(3, *t.shape)
        start += t.numel()
    quad = loss_fn.quadratic_form(theta, dirs)
    expected = (Z * hvp(loss_fn, theta, Z, method="reverse_over_reverse")).sum(1)
    # As above: the "reduction" kind with atol scaled by |v|^2 (n^2 terms of either sign).
    scale = float((Z * Z).sum(1).max()) * (float(expected.abs().max()) / n + 1.0)
    torch.testing.assert_close(quad, expected, rtol=1e-9, atol=1e-10 * scale)


def test_trace_quadratic_form_path_matches_hvp_path(generator):
    params, xs, labels = small_nrnn(generator, per_unit_step=True)
    loss_fn, theta = nrnn_loss(params, xs, labels)
    runs = {
        m: estimate_hessian_trace(
            loss_fn,
            theta,
            n_probes=12,
            batch_size=5,
            method=m,
            generator=torch.Generator().manual_seed(7),
        )  # fmt: skip
        for m in ("auto", "quadratic_form", "reverse_over_reverse", "forward_over_reverse")
    }
    for m, r in runs.items():
        torch.testing.assert_close(
            r.samples, runs["reverse_over_reverse"].samples, **tol("reduction")
        )
        assert r.block_means == {}, m
    exact = hessian_trace(loss_fn, theta).trace
    r = estimate_hessian_trace(loss_fn, theta, n_probes=300, batch_size=100, generator=generator)
    assert abs(r.mean - exact) <= STATISTICAL_SIGMAS * r.stderr
    with pytest.raises(ValueError, match="blocks: per-block traces need Hessian-vector products"):
        estimate_hessian_trace(loss_fn, theta, method="quadratic_form", blocks={"a": ["A"]})
    with pytest.raises(ValueError, match="method: 'quadratic_form' needs loss_fn.quadratic_form"):
        estimate_hessian_trace(lambda p: loss_fn(p), theta, method="quadratic_form")


def test_hutchinson_same_probes_same_samples(float64):
    Hm = random_symmetric(8, generator=torch.Generator().manual_seed(3))
    loss_fn, params, _ = quadratic_problem(Hm, generator=torch.Generator().manual_seed(4))
    a = estimate_hessian_trace(
        loss_fn, params, n_probes=7, batch_size=3, generator=torch.Generator().manual_seed(5)
    )
    Z = rademacher(7, 8, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a.samples, ((Z @ Hm) * Z).sum(1), **tol("elementwise"))


def test_hutchinson_tolerance_stop(generator, float64):
    Hm = random_symmetric(10, generator=generator)
    loss_fn, params, _ = quadratic_problem(Hm, generator=generator)
    loose = estimate_hessian_trace(
        loss_fn, params, n_probes=1000, rtol=10.0, batch_size=10, generator=generator
    )
    assert loose.converged is True
    assert loose.n_probes == 10  # the first batch already meets the loose tolerance
    assert loose.stderr <= 10.0 * abs(loose.mean)
    tight = estimate_hessian_trace(
        loss_fn, params, n_probes=30, atol=1e-12, batch_size=10, generator=generator
    )
    assert tight.converged is False and tight.n_probes == 30


# ---------------------------------------------------------------------------- eigenvalues
@pytest.mark.parametrize("method", ["lanczos", "power"])
@pytest.mark.parametrize("which", ["largest", "smallest", "magnitude"])
def test_eigenvalues_quadratic_match_eigvalsh(method, which, generator, float64):
    n, k = 15, 3
    lam = torch.linspace(-4.0, 3.0, n) + 0.05 * torch.randn(n, generator=generator)
    Hm = random_symmetric(n, generator=generator, eigenvalues=lam)
    loss_fn, params, _ = quadratic_problem(Hm, generator=generator)
    r = hessian_eigenvalues(
        loss_fn, params, k=k, which=which, method=method, generator=generator,
        return_eigenvectors=True, max_iter=None if method == "lanczos" else 5000,
    )  # fmt: skip
    exact = torch.linalg.eigvalsh(Hm)
    want = {
        "largest": exact.flip(0)[:k],
        "smallest": exact[:k],
        "magnitude": exact[torch.argsort(exact.abs(), descending=True)][:k],
    }[which]
    assert r.converged
    rtol = tol("eig")["rtol"] if method == "lanczos" else 1e-6  # power: linear convergence
    torch.testing.assert_close(r.eigenvalues, want, rtol=rtol, atol=rtol)
    scale = float(exact.abs().max())
    assert bool((r.residuals <= math.sqrt(torch.finfo(torch.float64).eps) * scale * 10).all())
    # Residuals are true residuals of the returned vectors.
    Y = r.eigenvectors
    torch.testing.assert_close(
        torch.linalg.vector_norm(Y @ Hm - r.eigenvalues[:, None] * Y, dim=1),
        r.residuals,
        rtol=1e-6,
        atol=1e-12,
    )


def test_lanczos_repeated_eigenvalues(generator, float64):
    lam = torch.tensor([5.0, 5.0, 5.0, 2.0, 1.0, 0.5, -1.0, -1.0])
    Hm = random_symmetric(8, generator=generator, eigenvalues=lam)
    loss_fn, params, _ = quadratic_problem(Hm, generator=generator)
    r = hessian_eigenvalues(loss_fn, params, k=4, max_iter=8, generator=generator)
    torch.testing.assert_close(r.eigenvalues, torch.tensor([5.0, 5.0, 5.0, 2.0]), **tol("eig"))


def test_eigenvalues_small_nrnn_match_dense(generator):
    params, xs, labels = small_nrnn(generator)
    loss_fn, theta = nrnn_loss(params, xs, labels)
    exact = torch.linalg.eigvalsh(dense_oracle(loss_fn, theta))
    top = hessian_eigenvalues(loss_fn, theta, k=3, generator=generator)
    torch.testing.assert_close(top.eigenvalues, exact.flip(0)[:3], **tol("eig"))
    bottom = hessian_eigenvalues(loss_fn, theta, k=2, which="smallest", generator=generator)
    torch.testing.assert_close(bottom.eigenvalues, exact[:2], **tol("eig"))
    power = hessian_eigenvalues(
        loss_fn, theta, k=1, method="power", tol=1e-10, max_iter=20000, generator=generator
    )
    torch.testing.assert_close(power.eigenvalues, exact.flip(0)[:1], rtol=1e-7, atol=1e-9)
    assert top.n_hvps >= 3 and power.n_hvps > top.n_hvps


# ---------------------------------------------------------------------------- SLQ
def test_slq_quadrature_is_exact_per_probe(generator, float64):
    # For each probe v = z / sqrt(n): sum_j w_j theta_j^q = v^T H^q v for q <= 2m - 1.
    n, m = 20, 4
    Hm = random_symmetric(n, generator=generator)
    state = generator.get_state()
    loss_fn, params, _ = quadratic_problem(Hm, generator=generator)
    seed_gen = torch.Generator().manual_seed(11)
    d = estimate_spectral_density(
        loss_fn, params, n_probes=6, n_steps=m, max_moment=2 * m - 1, generator=seed_gen
    )
    Z = rademacher(6, n, torch.Generator().manual_seed(11)) / math.sqrt(n)
    for q in range(2 * m):
        Hq = torch.linalg.matrix_power(Hm, q)
        exact = ((Z @ Hq) * Z).sum(1)
        quad = (d.weights * d.nodes**q).sum(1)
        torch.testing.assert_close(quad, exact, rtol=1e-9, atol=1e-9 * float(Hq.abs().max()))
    torch.testing.assert_close(d.weights.sum(1), torch.ones(6), **tol("reduction"))
    del state


def test_slq_moments_statistical(generator, float64):
    n = 30
    Hm = random_symmetric(n, generator=generator)
    loss_fn, params, _ = quadratic_problem(Hm, generator=generator)
    d = estimate_spectral_density(
        loss_fn, params, n_probes=200, n_steps=5, max_moment=2, generator=generator
    )
    for q in range(3):
        truth = float(torch.trace(torch.linalg.matrix_power(Hm, q))) / n
        if q == 0:
            assert float(d.moments[0]) == pytest.approx(1.0, rel=1e-12)
            continue
        assert abs(float(d.moments[q]) - truth) <= STATISTICAL_SIGMAS * float(d.moment_stderrs[q])
    # The smoothed density integrates to 1 on its grid (trapezoid rule).
    assert float(torch.trapezoid(d.density, d.grid)) == pytest.approx(1.0, abs=1e-3)


def test_slq_full_steps_recover_spectrum(generator, float64):
    lam = torch.tensor([-2.0, -0.5, 0.25, 1.0, 3.0])
    Hm = random_symmetric(5, generator=generator, eigenvalues=lam)
    loss_fn, params, _ = quadratic_problem(Hm, generator=generator)
    d = estimate_spectral_density(loss_fn, params, n_probes=3, n_steps=50, generator=generator)
    assert d.n_steps == 5  # capped at n
    for row_nodes, row_w in zip(d.nodes, d.weights, strict=True):
        kept = row_nodes[row_w > 1e-12]
        torch.testing.assert_close(kept.sort().values, lam, **tol("eig"))


def test_lanczos_breakdown_gives_zero_weight(float64):
    # Diagonal H with a Rademacher start: the Krylov space has dimension 2 (two distinct
    # eigenvalues), so Lanczos breaks down and the trailing block must carry no weight.
    Hm = torch.diag(torch.tensor([1.0, 1.0, 1.0, 3.0, 3.0]))
    v0 = torch.tensor([[1.0, -1.0, 1.0, 1.0, -1.0]])
    alpha, beta = lanczos_tridiagonal(lambda V: V @ Hm, v0, 4)
    assert float(beta[0, 1:].abs().max()) == 0.0
    nodes, S = ritz(alpha, beta)
    w = S[0, 0] ** 2
    assert float(w.sum()) == pytest.approx(1.0)
    assert float((w * nodes[0]).sum()) == pytest.approx(9.0 / 5.0)


# ---------------------------------------------------------------------------- hidden state
def test_hidden_state_hessian_matches_autograd(generator):
    params, xs, labels = small_nrnn(generator)
    r = hidden_state_hessian(params, xs, labels)
    h = rollout(params, xs)
    torch.testing.assert_close(r.state, h, **tol("elementwise"))
    for i in range(xs.shape[0]):

        def ce(hi, i=i):
            return torch.nn.functional.cross_entropy(
                (hi @ params.V.T + params.c)[None], labels[i : i + 1]
            )

        torch.testing.assert_close(r.hessian[i], autograd_hessian(ce, h[i]), **tol("reduction"))
    torch.testing.assert_close(r.trace, torch.diagonal(r.hessian, dim1=1, dim2=2).sum(1))
    assert bool((r.eigenvalues >= -1e-12).all())
    # Rank at most C - 1: the smallest H - C + 1 eigenvalues vanish.
    H, C = params.hidden_size, params.num_classes
    assert float(r.eigenvalues[:, : H - C + 1].abs().max()) <= 1e-12


def test_hidden_state_hessian_frozen_noise(generator):
    params, xs, labels = small_nrnn(generator)
    noise = NoiseSpec(epsilon=0.3, sigma1=1.0, sigma2=0.5)
    B, T, _ = xs.shape
    eta = sample_noise(noise, B, T, params.hidden_size, dtype=torch.float64, generator=generator)
    r = hidden_state_hessian(params, xs, labels, noise=noise, eta=eta)
    torch.testing.assert_close(r.state, rollout(params, xs, noise=noise, eta=eta))
    with pytest.raises(ValueError, match="eta: expected a frozen noise path"):
        hidden_state_hessian(params, xs, labels, noise=noise)


# ---------------------------------------------------------------------------- builders
@pytest.mark.parametrize("per_unit_step", [False, True])
def test_nrnn_loss_matches_logits(per_unit_step, generator):
    params, xs, labels = small_nrnn(generator, per_unit_step=per_unit_step)
    loss_fn, theta = nrnn_loss(params, xs, labels)
    expected = torch.nn.functional.cross_entropy(logits(params, xs), labels)
    torch.testing.assert_close(loss_fn(theta), expected, **tol("elementwise"))
    assert ("step" in theta) == per_unit_step
    # Frozen noise path: the same eta on every call, equal to a rollout with that eta.
    noise = NoiseSpec.paper_code(add=0.05, mult=0.1)
    B, T, _ = xs.shape
    eta = sample_noise(noise, B, T, params.hidden_size, dtype=torch.float64, generator=generator)
    noisy_fn, _ = nrnn_loss(params, xs, labels, noise=noise, eta=eta)
    noisy = torch.nn.functional.cross_entropy(logits(params, xs, noise=noise, eta=eta), labels)
    torch.testing.assert_close(noisy_fn(theta), noisy, **tol("elementwise"))
    assert torch.equal(noisy_fn(theta), noisy_fn(theta))
    # A subset of variables; the rest is held fixed.
    sub_fn, sub = nrnn_loss(params, xs, labels, names=["V", "c"])
    assert list(sub) == ["V", "c"]
    torch.testing.assert_close(sub_fn(sub), expected, **tol("elementwise"))


def test_nrnn_loss_lipschitz_parametrization(generator):
    H, D, C = 3, 2, 3
    M_A = torch.randn(H, H, generator=generator, dtype=torch.float64)
    M_W = torch.randn(H, H, generator=generator, dtype=torch.float64)
    base = random_params(H, D, C, generator=generator)
    kw = dict(beta=0.75, gamma_A=0.1, gamma_W=0.2)
    params = NRNNParams.from_lipschitz(M_A, M_W, base.U, base.b, base.V, base.c, dt=0.1, **kw)
    xs = torch.randn(4, 5, D, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, C, (4,), generator=generator)
    loss_fn, theta = nrnn_loss(params, xs, labels, **kw)
    assert set(theta) == {"M_A", "M_W", "U", "b", "V", "c"}
    torch.testing.assert_close(theta["M_A"], M_A, **tol("elementwise"))
    torch.testing.assert_close(theta["M_W"], M_W, **tol("elementwise"))
    direct_fn, direct = nrnn_loss(params, xs, labels)
    torch.testing.assert_close(loss_fn(theta), direct_fn(direct), **tol("elementwise"))
    # Chain rule: the M_A-block Hessian is L^T H_A L for the linear map L: M_A -> A.
    Hm = hessian(loss_fn, {"M_A": theta["M_A"]}, method="forward_over_reverse")
    fixed_fn, _ = nrnn_loss(params, xs, labels, names=["A"])
    HA = hessian(fixed_fn, {"A": params.A})
    L = torch.func.jacrev(lambda M: (0.25 * (M + M.T) + 0.75 * (M - M.T)).reshape(-1))(
        theta["M_A"]
    ).reshape(H * H, H * H)
    torch.testing.assert_close(Hm, L.T @ HA @ L, **tol("reduction"))
    with pytest.raises(ValueError, match="beta: expected 0 < beta < 1"):
        nrnn_loss(params, xs, labels, beta=1.0)


def test_module_loss_matches_nrnn_loss_and_leaves_module_untouched(generator):
    params, xs, labels = small_nrnn(generator)
    module = TinyNRNN(params)
    snap = snapshot(module)
    loss_fn, theta = module_loss(module, xs, labels)
    assert_unchanged(module, snap)
    ref_fn, ref = nrnn_loss(params, xs, labels)
    torch.testing.assert_close(loss_fn(theta), ref_fn(ref), **tol("elementwise"))
    v = torch.randn(params_to_vector(theta).numel(), generator=generator, dtype=torch.float64)
    # Same names and order (A, W, U, b, V, c) in both mappings.
    assert list(theta) == list(ref)
    torch.testing.assert_close(hvp(loss_fn, theta, v), hvp(ref_fn, ref, v), **tol("reduction"))
    assert_unchanged(module, snap)
    tr = hessian_trace(loss_fn, theta)
    assert tr.trace == pytest.approx(hessian_trace(ref_fn, ref).trace, rel=1e-9)
    estimate_hessian_trace(loss_fn, theta, n_probes=4, generator=generator)
    hessian_eigenvalues(loss_fn, theta, k=2, generator=generator)
    estimate_spectral_density(loss_fn, theta, n_probes=2, n_steps=3, generator=generator)
    hessian(loss_fn, theta)
    assert_unchanged(module, snap)
    # A parameter mapping returned to the user is a copy: editing it leaves the module alone.
    theta["A"].add_(1.0)
    assert_unchanged(module, snap)


def test_module_loss_frozen_noise_and_randomness_check(generator):
    params, xs, labels = small_nrnn(generator)
    module = TinyNRNN(params).train()
    snap = snapshot(module)
    noise = NoiseSpec(epsilon=0.2, sigma1=1.0)
    B, T, _ = xs.shape
    eta = sample_noise(noise, B, T, params.hidden_size, dtype=torch.float64, generator=generator)
    loss_fn, theta = module_loss(module, xs, labels, forward_kwargs={"noise": noise, "eta": eta})
    ref_fn, ref = nrnn_loss(params, xs, labels, noise=noise, eta=eta)
    torch.testing.assert_close(loss_fn(theta), ref_fn(ref), **tol("elementwise"))
    r1 = hessian_trace(loss_fn, theta)
    r2 = hessian_trace(ref_fn, ref)
    assert r1.trace == pytest.approx(r2.trace, rel=1e-9)
    with pytest.raises(ValueError, match="forward is random"):
        module_loss(module, xs, labels, forward_kwargs={"noise": noise})
    assert_unchanged(module, snap)


def test_module_loss_subset_and_buffers(generator):
    params, xs, labels = small_nrnn(generator)
    module = TinyNRNN(params)
    with torch.no_grad():
        module.scale.fill_(2.0)
    loss_fn, theta = module_loss(module, xs, labels, names=["V"])
    assert list(theta) == ["V"]
    doubled = params.replace(V=2.0 * params.V)
    expected = torch.nn.functional.cross_entropy(logits(doubled, xs), labels)
    torch.testing.assert_close(loss_fn(theta), expected, **tol("elementwise"))


@pytest.mark.parametrize("learn_step", [False, True])
def test_module_loss_on_a_trained_noisy_rnn_eval_mode(learn_step, generator):
    """A train.NoisyRNN (with training noise) in eval mode: the loss is its clean
    cross-entropy, the parameters are its own (M_A, M_W, ...), and the exact trace and
    top eigenvalue equal those of the dense autograd Hessian."""
    from nrnn_theory.train import NoisyRNN

    model = NoisyRNN(
        2,
        3,
        3,
        noise=NoiseSpec.paper_code(add=0.05, mult=0.05),
        learn_step=learn_step,
        init_std=2.0,
        generator=generator,
        dtype=torch.float64,
    ).eval()
    xs = torch.randn(5, 4, 2, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (5,), generator=generator)
    snap = snapshot(model)
    loss_fn, theta = module_loss(model, xs, labels)
    expected_names = {"M_A", "M_W", "U", "b", "V", "c"} | ({"step"} if learn_step else set())
    assert set(theta) == expected_names
    with torch.no_grad():
        clean = torch.nn.functional.cross_entropy(model(xs), labels)
    torch.testing.assert_close(loss_fn(theta), clean, **tol("elementwise"))
    dense = dense_oracle(loss_fn, theta)
    assert dense.shape == (params_to_vector(theta).numel(),) * 2
    tr = hessian_trace(loss_fn, theta)
    assert tr.trace == pytest.approx(float(torch.trace(dense)), rel=1e-9)
    top = hessian_eigenvalues(loss_fn, theta, k=1, generator=generator)
    torch.testing.assert_close(
        top.eigenvalues, torch.linalg.eigvalsh(dense).flip(0)[:1], **tol("eig")
    )
    assert_unchanged(model, snap)


# ---------------------------------------------------------------------------- curvlinops
@pytest.mark.filterwarnings(
    # linear_operator (a curvlinops dependency) calls the deprecated torch.jit.script
    # at import time under torch 2.13.
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)
def test_agrees_with_curvlinops(generator):
    import curvlinops  # test-only oracle, installed by the Makefile set-up (no skip)

    params, xs, labels = small_nrnn(generator, H=3, B=6, T=5)
    module = TinyNRNN(params)
    snap = snapshot(module)
    op = curvlinops.HessianLinearOperator(
        module, torch.nn.CrossEntropyLoss(), list(module.parameters()), [(xs, labels)]
    )
    n = op.shape[0]
    reference = op @ torch.eye(n, dtype=torch.float64)
    loss_fn, theta = module_loss(module, xs, labels)
    ours = hessian(loss_fn, theta)
    torch.testing.assert_close(ours, reference, **tol("reduction"))
    tr = hessian_trace(loss_fn, theta)
    assert tr.trace == pytest.approx(float(torch.trace(reference)), rel=1e-9)
    top = hessian_eigenvalues(loss_fn, theta, k=2, generator=generator)
    torch.testing.assert_close(
        top.eigenvalues, torch.linalg.eigvalsh(reference).flip(0)[:2], **tol("eig")
    )
    assert_unchanged(module, snap)


# ------------------------------------------------------- docs/theory/flatness.md bound
@settings(max_examples=10)
@given(seed=seeds, sigma1=st.floats(min_value=0.1, max_value=2.0))
def test_gauss_newton_bound(seed, sigma1):
    # docs/theory/flatness.md: for additive "sde" noise, per example,
    # tr G_theta <= dt / sigma1^2 * R_hat * sum_k ||d_theta f(h_k, x_k)||_2^2,
    # with G_theta = (V dh_M/dtheta)^T Pi_p (V dh_M/dtheta), theta = (A, W, U, b), and
    # R_hat = dt sigma1^2 sum_k ||Pi^{1/2} V Phi_{M,k+1}||_F^2 (computed naively here).
    g = torch.Generator().manual_seed(seed)
    H, D, C, T = 3, 2, 3, 5
    params = random_params(H, D, C, generator=g)
    x = torch.randn(1, T, D, generator=g, dtype=torch.float64)
    dt = params.dt
    theta = {k: getattr(params, k) for k in ("A", "W", "U", "b")}

    def h_final(th):
        return rollout(params.replace(**th), x)[0]

    J = torch.func.jacrev(h_final)(theta)
    J = torch.cat([J[k].reshape(H, -1) for k in theta], dim=1)  # (H, n_theta)
    hM = h_final(theta)
    p = torch.softmax(params.V @ hM + params.c, dim=0)
    Pi = torch.diag(p) - torch.outer(p, p)
    trace_gn = float(torch.trace(J.T @ params.V.T @ Pi @ params.V @ J))
    states = torch.cat(
        [torch.zeros(1, 1, H, dtype=x.dtype), rollout(params, x, return_states=True)], 1
    )
    jac = [state_jacobian(params, states[:, k], x[:, k])[0] for k in range(T)]
    R_hat = 0.0
    sum_df = 0.0
    for k in range(T):
        Phi = torch.eye(H, dtype=x.dtype)
        for j in range(k + 1, T):
            Phi = jac[j] @ Phi
        R_hat += dt * sigma1**2 * float(torch.trace(Phi.T @ params.V.T @ Pi @ params.V @ Phi))

        def f(th, k=k):
            A, W, U, b = th["A"], th["W"], th["U"], th["b"]
            hk, xk = states[0, k], x[0, k]
            return A @ hk + torch.tanh(W @ hk + U @ xk + b)

        Jf = torch.func.jacrev(f)(theta)
        Jf = torch.cat([Jf[key].reshape(H, -1) for key in theta], dim=1)
        sum_df += float(torch.linalg.matrix_norm(Jf, ord=2)) ** 2
    bound = dt / sigma1**2 * R_hat * sum_df
    assert trace_gn <= bound * (1 + 1e-9) + 1e-15


# ---------------------------------------------------------------------------- bad input
def test_bad_input(generator, float64):
    Hm = random_symmetric(4, generator=generator)
    loss_fn, params, _ = quadratic_problem(Hm, generator=generator)
    with pytest.raises(ValueError, match=r"loss_fn: expected a scalar \(0-dim\) tensor"):
        hessian_trace(lambda p: p["x"] * 2.0, params)
    with pytest.raises(TypeError, match="loss_fn: expected it to return a scalar torch.Tensor"):
        hvp(lambda p: 1.0, params, torch.ones(4))
    with pytest.raises(TypeError, match="loss_fn: expected a callable"):
        estimate_hessian_trace(3, params)
    bad = {"x": params["x"].clone(), "y": params["y"].clone()}
    bad["x"][0] = float("nan")
    with pytest.raises(ValueError, match=r"params\['x'\]: expected finite values"):
        estimate_hessian_trace(loss_fn, bad)
    with pytest.raises(ValueError, match="loss_fn: expected a finite value"):
        hvp(lambda p: p["x"].sum() * float("inf"), params, torch.ones(4))
    with pytest.raises(ValueError, match=r"k: expected at most n = 4"):
        hessian_eigenvalues(loss_fn, params, k=5)
    with pytest.raises(ValueError, match="n_probes: expected an integer >= 1, got 0"):
        estimate_hessian_trace(loss_fn, params, n_probes=0)
    with pytest.raises(ValueError, match="n_probes: expected an integer >= 1, got -3"):
        estimate_spectral_density(loss_fn, params, n_probes=-3)
    with pytest.raises(ValueError, match=r"vector: expected shape \(4,\) or \(P, 4\)"):
        hvp(loss_fn, params, torch.ones(5))
    with pytest.raises(ValueError, match=r"vector\['y'\]: expected shape \(2, 1\)"):
        hvp(loss_fn, params, {"x": torch.ones(2), "y": torch.ones(2)})
    with pytest.raises(ValueError, match="vector: expected keys"):
        hvp(loss_fn, params, {"x": torch.ones(2)})
    with pytest.raises(TypeError, match="vector: expected dtype torch.float64"):
        hvp(loss_fn, params, torch.ones(4, dtype=torch.float32))
    with pytest.raises(ValueError, match="params: expected at least one parameter tensor"):
        hvp(loss_fn, {}, torch.ones(4))
    with pytest.raises(TypeError, match="params: expected a mapping"):
        hvp(loss_fn, [params["x"]], torch.ones(4))
    with pytest.raises(TypeError, match=r"params\['y'\]: expected dtype torch.float64"):
        hvp(loss_fn, {"x": params["x"], "y": params["y"].float()}, torch.ones(4))
    with pytest.raises(ValueError, match="method: expected one of"):
        hvp(loss_fn, params, torch.ones(4), method="double_backward")
    with pytest.raises(ValueError, match="which: expected one of"):
        hessian_eigenvalues(loss_fn, params, which="top")
    with pytest.raises(ValueError, match="blocks.*already in block"):
        hessian_trace(loss_fn, params, blocks={"a": ["x"], "b": ["x", "y"]})
    with pytest.raises(ValueError, match=r"blocks\['a'\]: expected names among"):
        hessian_trace(loss_fn, params, blocks={"a": ["z"]})
    with pytest.raises(ValueError, match="max_moment: expected at most 2 m - 1 = 3"):
        estimate_spectral_density(loss_fn, params, n_steps=2, max_moment=4)
    with pytest.raises(ValueError, match="rtol: expected a number >= 0"):
        estimate_hessian_trace(loss_fn, params, rtol=-1.0)
    with pytest.raises(ValueError, match="needs n = 4 Hessian-vector products"):
        hessian(loss_fn, params, max_params=3)


def test_bad_builder_input(generator):
    params, xs, labels = small_nrnn(generator)
    with pytest.raises(ValueError, match=r"labels: expected shape \(5,\)"):
        nrnn_loss(params, xs, labels[:3])
    with pytest.raises(ValueError, match=r"labels: expected shape \(5,\)"):
        module_loss(TinyNRNN(params), xs, labels[:3])
    with pytest.raises(ValueError, match="eta: expected a frozen noise path"):
        nrnn_loss(params, xs, labels, noise=NoiseSpec(sigma1=1.0))
    with pytest.raises(ValueError, match="names: expected names among"):
        nrnn_loss(params, xs, labels, names=["Q"])
    with pytest.raises(ValueError, match="names: expected names among"):
        module_loss(TinyNRNN(params), xs, labels, names=["Q"])
    with pytest.raises(ValueError, match=r"xs: expected shape \(\?, \?, 2\)"):
        nrnn_loss(params, xs[..., :1], labels)
    with pytest.raises(ValueError, match=r"module: expected forward\(xs\) to return logits"):
        module_loss(torch.nn.Linear(2, 3).double(), xs, labels)
    with pytest.raises(TypeError, match="module: expected a torch.nn.Module"):
        module_loss(lambda x: x, xs, labels)


# ---------------------------------------------------------------------------- records
def test_results_are_json_ready_and_follow_dtype(generator):
    import json

    params, xs, labels = small_nrnn(generator)
    params32, xs32 = params.to(torch.float32), xs.float()
    loss_fn, theta = nrnn_loss(params32, xs32, labels)
    est = estimate_hessian_trace(loss_fn, theta, n_probes=3, generator=generator)
    assert est.samples.dtype == torch.float32
    eig = hessian_eigenvalues(loss_fn, theta, k=2, return_eigenvectors=True, generator=generator)
    assert eig.eigenvalues.dtype == eig.eigenvectors.dtype == torch.float32
    dens = estimate_spectral_density(loss_fn, theta, n_probes=2, n_steps=4, generator=generator)
    hs = hidden_state_hessian(params32, xs32, labels)
    for r in (est, eig, dens, hs, hessian_trace(loss_fn, theta)):
        json.dumps(r.to_dict())
    # float32 agrees with float64 to float32 accuracy.
    top64 = hessian_eigenvalues(*nrnn_loss(params, xs, labels), k=2, generator=generator)
    torch.testing.assert_close(
        eig.eigenvalues.double(), top64.eigenvalues, **tol("eig", torch.float32)
    )
