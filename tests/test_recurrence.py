"""The fused rollout loop and its hand-written backward (nrnn_theory._recurrence, issue 18).

Oracles: the plain loop of ``StepKernel.advance`` calls recorded by autograd
(``step_loop``; bitwise for states and noise streams, to a stated tolerance for
gradients), ``torch.autograd.gradcheck``/``gradgradcheck`` in float64 (central
differences), and ``torch.func.grad``.
"""

from __future__ import annotations

import pytest
import torch

from nrnn_theory import NoiseSpec, NRNNParams, readout, rollout, sample_noise
from nrnn_theory._recurrence import CHUNK, step_loop
from nrnn_theory._step import StepKernel

from _tolerances import tol


NOISES = {
    "clean": None,
    "sde-diagonal": NoiseSpec(epsilon=0.5, sigma1=1.0, sigma2=0.3),
    "sde-diagonal-mult-only": NoiseSpec(epsilon=0.5, sigma2=0.3),
    "sde-diagonal-add-only": NoiseSpec(epsilon=0.5, sigma1=1.0),
    "sde-scalar": NoiseSpec(epsilon=0.5, sigma1=1.0, sigma2=0.3, structure="scalar"),
    "paper_code": NoiseSpec.paper_code(add=0.05, mult=0.1),
    "paper_code-mult-only": NoiseSpec.paper_code(add=0.0, mult=0.1),
}


def _params(H, D, C, generator, *, dtype=torch.float64, alpha=1.0, learn_step=False):
    def r(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=generator, dtype=dtype)

    step = 0.05 + 0.15 * torch.rand(H, generator=generator, dtype=dtype)
    return NRNNParams.from_lipschitz(
        r(H, H, scale=0.3), r(H, H, scale=0.3), r(H, D), r(H), r(C, H), r(C),
        beta=0.75, gamma_A=0.01, gamma_W=0.01, dt=0.1, alpha=alpha,
        step=step if learn_step else None,
    )  # fmt: skip


def _leaves(params, names=("A", "W", "U", "b", "step")):
    names = [n for n in names if getattr(params, n) is not None]
    return {n: getattr(params, n).detach().clone().requires_grad_() for n in names}


# ------------------------------------------------------------------ bitwise forward
@pytest.mark.parametrize("name", list(NOISES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("alpha", [1.0, 0.0])
def test_states_and_noise_stream_are_bitwise_those_of_the_step_loop(name, dtype, alpha, generator):
    """T = 300 crosses the projection chunks; grad and no-grad paths; both noise sources."""
    noise = NOISES[name]
    params = _params(5, 2, 3, generator, dtype=dtype, alpha=alpha, learn_step=True)
    xs = torch.randn(3, CHUNK * 2 + 44, 2, generator=generator, dtype=dtype)
    h0 = torch.randn(3, 5, generator=generator, dtype=dtype)
    kernel = StepKernel(params, noise)
    seed = int(torch.randint(0, 2**31, (1,), generator=generator))
    g_ref = torch.Generator().manual_seed(seed)
    ref_T, ref = step_loop(kernel, xs, h0, None, g_ref, True)
    for grad in (False, True):
        g = torch.Generator().manual_seed(seed)
        p = params.replace(**_leaves(params)) if grad else params
        states = rollout(p, xs, noise=noise, h0=h0, generator=g, return_states=True)
        assert torch.equal(states, ref)
        assert torch.equal(g.get_state(), g_ref.get_state())  # same number of draws
        h_T = rollout(p, xs, noise=noise, h0=h0, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(h_T, ref_T)
    if noise is not None:  # given draws: the same path as drawing them
        eta = sample_noise(noise, 3, xs.shape[1], 5, dtype=dtype, generator=g.manual_seed(seed))
        assert torch.equal(rollout(params, xs, noise=noise, h0=h0, eta=eta), ref_T)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_bits_give_torch_rand_bitwise(dtype):
    """The fused loop draws rand(B, H) as random_(0, 2**m) * 2**-m (m = 24 or 53)."""
    m = 24 if dtype == torch.float32 else 53
    a = torch.rand(64, 33, generator=torch.Generator().manual_seed(3), dtype=dtype)
    k = torch.empty(64, 33, dtype=dtype).random_(
        0, 2**m, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(a, k * 2.0**-m)


# ---------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", list(NOISES))
@pytest.mark.parametrize("alpha", [1.0, 0.0])
def test_gradients_match_autograd_through_the_step_loop(name, alpha, generator):
    """Every input (A, W, U, b, step, xs, h0), final state and all states as outputs."""
    noise = NOISES[name]
    params = _params(4, 2, 3, generator, alpha=alpha, learn_step=True)
    xs = torch.randn(3, 150, 2, generator=generator, dtype=torch.float64)
    h0 = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    seed = int(torch.randint(0, 2**31, (1,), generator=generator))
    weights = torch.randn(3, 150, 4, generator=generator, dtype=torch.float64)

    def loss(fused):
        leaves = _leaves(params)
        x, h = xs.clone().requires_grad_(), h0.clone().requires_grad_()
        p = params.replace(**leaves)
        g = torch.Generator().manual_seed(seed)
        if fused:
            states = rollout(p, x, noise=noise, h0=h, generator=g, return_states=True)
        else:
            states = step_loop(StepKernel(p, noise), x, h, None, g, True)[1]
        value = (weights * states).sum() + readout(p, states[:, -1]).logsumexp(-1).sum()
        inputs = [*leaves.values(), x, h]
        return torch.autograd.grad(value, inputs, allow_unused=True)

    for got, want in zip(loss(True), loss(False), strict=True):
        if want is None:  # A does not enter when alpha = 0
            assert got is None or float(got.abs().max()) == 0.0
            continue
        torch.testing.assert_close(got, want, **tol("reduction"))


@pytest.mark.parametrize("name", ["clean", "sde-diagonal", "sde-scalar", "paper_code"])
def test_gradcheck_and_gradgradcheck(name, generator):
    noise = NOISES[name]
    params = _params(3, 2, 2, generator, learn_step=True)
    xs = torch.randn(2, 5, 2, generator=generator, dtype=torch.float64)
    eta = None
    if noise is not None:
        eta = sample_noise(noise, 2, 5, 3, dtype=torch.float64, generator=generator)

    def f(A, W, U, b, step, x, h0):
        p = params.replace(A=A, W=W, U=U, b=b, step=step)
        return rollout(p, x, noise=noise, eta=eta, h0=h0, return_states=True)

    h0 = torch.randn(2, 3, generator=generator, dtype=torch.float64)
    inputs = tuple(
        t.detach().clone().requires_grad_()
        for t in (params.A, params.W, params.U, params.b, params.step, xs, h0)
    )
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


def test_second_backward_and_live_graphs_share_nothing(generator):
    """retain_graph recomputes into a new workspace; two live graphs stay independent."""
    params = _params(4, 1, 3, generator)
    noise = NOISES["paper_code"]
    xs = torch.randn(3, 40, 1, generator=generator, dtype=torch.float64)
    leaves = _leaves(params)
    p = params.replace(**leaves)

    def out(x, seed):
        return rollout(p, x, noise=noise, generator=torch.Generator().manual_seed(seed))

    first = out(xs, 1)
    kept = first.detach().clone()
    second = out(2 * xs, 2)  # taken while the first graph is alive
    assert torch.equal(first, kept)
    g1 = torch.autograd.grad(first.square().sum(), leaves["W"], retain_graph=True)[0]
    g1_again = torch.autograd.grad(first.square().sum(), leaves["W"])[0]
    assert torch.equal(g1, g1_again)
    g2 = torch.autograd.grad(second.square().sum(), leaves["W"])[0]
    fresh = _leaves(params)
    pf = params.replace(**fresh)
    ref = rollout(pf, 2 * xs, noise=noise, generator=torch.Generator().manual_seed(2))
    assert torch.equal(g2, torch.autograd.grad(ref.square().sum(), fresh["W"])[0])


def test_torch_func_grad_uses_the_plain_loop_and_agrees(generator):
    params = _params(4, 2, 3, generator, learn_step=True)
    xs = torch.randn(3, 20, 2, generator=generator, dtype=torch.float64)
    eta = sample_noise(NOISES["sde-diagonal"], 3, 20, 4, dtype=torch.float64, generator=generator)

    def value(W):
        h = rollout(params.replace(W=W), xs, noise=NOISES["sde-diagonal"], eta=eta)
        return h.square().sum()

    got = torch.func.grad(value)(params.W)
    W = params.W.clone().requires_grad_()
    want = torch.autograd.grad(value(W), W)[0]
    torch.testing.assert_close(got, want, **tol("reduction"))


def test_differentiating_the_draws_takes_the_plain_loop(generator):
    params = _params(3, 1, 2, generator)
    noise = NOISES["sde-scalar"]
    xs = torch.randn(2, 12, 1, generator=generator, dtype=torch.float64)
    eta = sample_noise(noise, 2, 12, 3, dtype=torch.float64, generator=generator)
    eta.requires_grad_()
    grad = torch.autograd.grad(rollout(params, xs, noise=noise, eta=eta).sum(), eta)[0]
    assert grad.shape == eta.shape and float(grad.abs().sum()) > 0
    assert torch.autograd.gradcheck(
        lambda e: rollout(params, xs[:, :4], noise=noise, eta=e),
        (eta[:, :4].detach().clone().requires_grad_(),),
    )
