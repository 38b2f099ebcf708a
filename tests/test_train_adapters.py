"""params_from_module, the torch.nn.RNN adapter and the authors' state dicts (issues 4, 16)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nrnn_theory import NoiseSpec, NRNNParams, readout, rollout
from nrnn_theory.train import (
    AntisymmetricRNN,
    CoRNN,
    GRUClassifier,
    LipschitzRNN,
    LSTMClassifier,
    NoisyRNN,
    import_authors_state_dict,
    noise_from_module,
    params_from_module,
    params_from_torch_rnn,
)

from _strategies import noise_specs, seeds
from _tolerances import tol


pytestmark = pytest.mark.usefixtures("single_thread")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@settings(max_examples=30, deadline=None)  # first calls pay one-off torch warm-up
@given(
    seed=seeds,
    kind=st.sampled_from(["nrnn", "lipschitz", "antisymmetric"]),
    learn_step=st.booleans(),
    noise=noise_specs(max_level=0.5),
)
def test_params_reproduce_the_model_forward(seed, kind, learn_step, noise):
    g = _gen(seed)
    kw = dict(generator=g, dtype=torch.float64, learn_step=learn_step, init_std=3.0)
    if kind == "nrnn":
        model = NoisyRNN(2, 5, 3, dt=0.1, noise=noise, **kw)
    elif kind == "lipschitz":
        model = LipschitzRNN(2, 5, 3, dt=0.1, **kw)
    else:
        model = AntisymmetricRNN(2, 5, 3, dt=0.1, noise=noise, **kw)
    if learn_step:
        with torch.no_grad():
            model.step.mul_(torch.rand(5, generator=g, dtype=torch.float64) + 0.5)
    xs = torch.randn(4, 9, 2, generator=g, dtype=torch.float64)
    p = params_from_module(model)
    assert not p.A.requires_grad and (p.step is not None) == learn_step
    with torch.no_grad():
        out = model.eval()(xs)
    torch.testing.assert_close(out, readout(p, rollout(p, xs)), **tol("elementwise"))
    # the training-mode forward is the noisy rollout of the same params
    train_noise = noise_from_module(model)
    if train_noise is not None:
        with torch.no_grad():
            noisy = model.train()(xs, generator=_gen(1))
        expected = readout(p, rollout(p, xs, noise=train_noise, generator=_gen(1)))
        torch.testing.assert_close(noisy, expected, **tol("elementwise"))


def test_params_dtype_cast_and_untouched_model(generator):
    model = NoisyRNN(1, 4, 2, noise=None, generator=generator)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    p = params_from_module(model, dtype=torch.float64)
    assert p.dtype == torch.float64 and model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_params_keep_the_graph_when_asked(float64, generator):
    """detach=False: gradients flow to M_A, M_W, U, b, V, c and equal those of the forward."""
    model = NoisyRNN(2, 4, 3, noise=None, generator=generator, dtype=torch.float64)
    xs = torch.randn(3, 5, 2, generator=generator, dtype=torch.float64)
    p = params_from_module(model, detach=False)
    assert p.A.requires_grad and p.W.requires_grad and p.V.requires_grad
    names = [n for n, _ in model.named_parameters()]
    via_params = torch.autograd.grad(
        readout(p, rollout(p, xs)).square().sum(), list(model.parameters())
    )
    via_model = torch.autograd.grad(model.eval()(xs).square().sum(), list(model.parameters()))
    for name, a, b in zip(names, via_params, via_model, strict=True):
        assert float(a.abs().sum()) > 0, name
        torch.testing.assert_close(a, b, **tol("elementwise"))
    with pytest.raises(TypeError, match="detach: expected a bool"):
        params_from_module(model, detach="no")


@pytest.mark.parametrize("cls", [CoRNN, LSTMClassifier, GRUClassifier])
def test_params_refuse_other_dynamics(cls, generator):
    with pytest.raises(TypeError, match="NRNN family"):
        params_from_module(cls(1, 4, 2, generator=generator))
    with pytest.raises(TypeError, match="NRNN family"):
        noise_from_module(cls(1, 4, 2, generator=generator))


# ----------------------------------- the authors' layout (docs/theory/conventions.md)
def _authors_state_dict(H, D, C, g, dtype=torch.float64):
    """A state dict in the authors' layout: free B, C; Linear E (input) and D (readout)."""
    return {
        "B": torch.randn(H, H, generator=g, dtype=dtype) * 0.5,
        "C": torch.randn(H, H, generator=g, dtype=dtype) * 0.5,
        "E.weight": torch.randn(H, D, generator=g, dtype=dtype),
        "E.bias": torch.randn(H, generator=g, dtype=dtype),
        "D.weight": torch.randn(C, H, generator=g, dtype=dtype),
        "D.bias": torch.randn(C, generator=g, dtype=dtype),
        "d": 0.1 * (0.5 + torch.rand(H, generator=g, dtype=dtype)),
    }


def _authors_forward(sd, x, *, eps, beta, gamma_A, gamma_W, alpha, solver, a=0.0, mu=0.0, g=None):
    """The authors' forward written from docs/theory/conventions.md: row vectors, h @ A.

    A = beta (B - B^T) + (1 - beta)(B + B^T) - gamma_A I (W likewise from C);
    base: h + eps f; noisy: h + d * m * f + a * zeta with, per step, zeta ~ N(0, I)
    drawn first and then m = mu * u + (1 - mu), u ~ U(0, 1).
    """
    H = sd["B"].shape[0]
    eye = torch.eye(H, dtype=x.dtype)
    B, Cm = sd["B"], sd["C"]
    A = beta * (B - B.T) + (1 - beta) * (B + B.T) - gamma_A * eye
    W = beta * (Cm - Cm.T) + (1 - beta) * (Cm + Cm.T) - gamma_W * eye
    h = torch.zeros(x.shape[0], H, dtype=x.dtype)
    for t in range(x.shape[1]):
        z = x[:, t] @ sd["E.weight"].T + sd["E.bias"]
        f = alpha * (h @ A) + torch.tanh(h @ W + z)
        if solver == "base":
            h = h + eps * f
            continue
        add, mult = 0.0, 1.0
        if g is not None:
            add = a * torch.randn(h.shape, generator=g, dtype=x.dtype)
            mult = mu * torch.rand(h.shape, generator=g, dtype=x.dtype) + (1 - mu)
        h = h + sd["d"] * mult * f + add
    return h @ sd["D.weight"].T + sd["D.bias"]


HYPER = dict(eps=0.1, beta=0.8, gamma_A=0.01, gamma_W=0.02, alpha=1.0)


@pytest.mark.parametrize("solver", ["base", "noisy"])
@pytest.mark.parametrize("alpha", [1.0, 0.0])
def test_import_reproduces_the_authors_forward(solver, alpha, generator):
    H, D, C = 6, 3, 4
    sd = _authors_state_dict(H, D, C, generator)
    x = torch.randn(5, 12, D, generator=generator, dtype=torch.float64)
    hyper = {**HYPER, "alpha": alpha}
    noise_kw = {"add_noise": 0.05, "mult_noise": 0.2} if solver == "noisy" else {}
    model = import_authors_state_dict(sd, solver=solver, **hyper, **noise_kw)
    assert not model.training and model.learn_step == (solver == "noisy")
    with torch.no_grad():
        ours = model(x)
    theirs = _authors_forward(sd, x, solver=solver, **hyper)
    torch.testing.assert_close(ours, theirs, **tol("reduction"))
    p = params_from_module(model)
    torch.testing.assert_close(readout(p, rollout(p, x)), theirs, **tol("reduction"))
    if solver == "noisy":
        # training mode: the same draws in the same order give the same noisy forward
        with torch.no_grad():
            ours = model.train()(x, generator=_gen(11))
        theirs = _authors_forward(sd, x, solver=solver, a=0.05, mu=0.2, g=_gen(11), **hyper)
        torch.testing.assert_close(ours, theirs, **tol("reduction"))
        assert noise_from_module(model) == NoiseSpec.paper_code(add=0.05, mult=0.2)


def test_import_strips_data_parallel_prefix_and_keeps_dtype(generator):
    sd = _authors_state_dict(4, 1, 2, generator, dtype=torch.float32)
    model = import_authors_state_dict(
        {f"module.{k}": v for k, v in sd.items()}, solver="noisy", **HYPER
    )
    assert model.M_W.dtype == torch.float32 and model.noise is None
    torch.testing.assert_close(model.M_W.detach(), sd["C"].T)
    torch.testing.assert_close(model.M_A.detach(), sd["B"].T)


def test_import_errors(generator):
    sd = _authors_state_dict(4, 1, 2, generator)
    with pytest.raises(ValueError, match=r"missing \['d'\], unexpected \['extra'\]"):
        bad = {k: v for k, v in sd.items() if k != "d"}
        import_authors_state_dict({**bad, "extra": torch.zeros(1)}, solver="base", **HYPER)
    with pytest.raises(ValueError, match=r"state_dict\['C'\]: expected shape \(4, 4\)"):
        import_authors_state_dict({**sd, "C": torch.zeros(3, 3)}, solver="base", **HYPER)
    with pytest.raises(ValueError, match="ignores noise"):
        import_authors_state_dict(sd, solver="base", add_noise=0.02, **HYPER)
    with pytest.raises(ValueError, match="solver: expected one of"):
        import_authors_state_dict(sd, solver="rk4", **HYPER)
    with pytest.raises(ValueError, match="finite"):
        import_authors_state_dict({**sd, "B": sd["B"] * float("nan")}, solver="base", **HYPER)


# ------------------------------------------------- torch.nn.RNN as an NRNN (issue 16)
class _RNNClassifier(nn.Module):
    """The usual wrapper: an nn.RNN and a Linear readout on the last hidden state."""

    def __init__(self, rnn: nn.RNN, fc: nn.Linear) -> None:
        super().__init__()
        self.rnn, self.fc = rnn, fc

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(xs)
        last = out[:, -1] if self.rnn.batch_first else out[-1]
        return self.fc(last)


def _random_rnn(D, H, C, g, *, bias=True, fc_bias=True, batch_first=True, scale=1.0, **kw):
    """An nn.RNN + Linear in float64 with every weight drawn from ``g`` (no global RNG)."""
    rnn = nn.RNN(D, H, bias=bias, batch_first=batch_first, dtype=torch.float64, **kw)
    fc = nn.Linear(H, C, bias=fc_bias, dtype=torch.float64)
    with torch.no_grad():
        for p in [*rnn.parameters(), *fc.parameters()]:
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return rnn, fc


def _torch_logits(rnn, fc, xs_bt):
    """The module's logits for batch-first inputs, in the module's own layout."""
    with torch.no_grad():
        out, h_n = rnn(xs_bt if rnn.batch_first else xs_bt.transpose(0, 1))
    last = out[:, -1] if rnn.batch_first else out[-1]
    torch.testing.assert_close(last, h_n[0], rtol=0, atol=0)  # one layer: h_n is the last
    return fc(last)


@settings(max_examples=40, deadline=None)  # first calls pay one-off torch warm-up
@given(
    seed=seeds,
    D=st.integers(1, 4),
    H=st.integers(1, 7),
    C=st.integers(1, 4),
    B=st.integers(1, 3),
    T=st.integers(1, 12),
    bias=st.booleans(),
    fc_bias=st.booleans(),
    batch_first=st.booleans(),
    scale=st.sampled_from([0.3, 1.0, 2.0]),
    wrapped=st.booleans(),
)
def test_torch_rnn_params_reproduce_the_module(
    seed, D, H, C, B, T, bias, fc_bias, batch_first, scale, wrapped
):
    """Oracle: torch's own nn.RNN forward (its C++ kernel), on random modules."""
    g = _gen(seed)
    rnn, fc = _random_rnn(D, H, C, g, bias=bias, fc_bias=fc_bias, batch_first=batch_first,
                          scale=scale)  # fmt: skip
    xs = torch.randn(B, T, D, generator=g, dtype=torch.float64)
    p = params_from_module(_RNNClassifier(rnn, fc)) if wrapped else params_from_torch_rnn(rnn, fc)
    assert (p.dt, p.alpha, p.step) == (1.0, 1.0, None)
    torch.testing.assert_close(p.A, -torch.eye(H, dtype=torch.float64), rtol=0, atol=0)
    assert not any(t.requires_grad for t in (p.W, p.U, p.b, p.V, p.c))
    # "reduction": the NRNN step computes h + (-h + tanh z), equal to tanh z up to
    # rounding, and the rounding propagates through up to T steps.
    torch.testing.assert_close(readout(p, rollout(p, xs)), _torch_logits(rnn, fc, xs),
                               **tol("reduction"))  # fmt: skip


def test_torch_rnn_params_follow_dtype_and_keep_the_graph_when_asked(generator):
    rnn, fc = _random_rnn(3, 4, 2, generator)
    rnn, fc = rnn.float(), fc.float()
    p = params_from_torch_rnn(rnn, fc, dtype=torch.float64)
    assert p.dtype == torch.float64 and not p.W.requires_grad
    # detached copies: changing the module afterwards leaves the record alone
    before = p.W.clone()
    with torch.no_grad():
        rnn.weight_hh_l0.add_(1.0)
    assert torch.equal(p.W, before)
    # detach=False: gradients through the record equal the module's gradients
    xs = torch.randn(2, 5, 3, generator=generator)
    q = params_from_torch_rnn(rnn, fc, detach=False)
    params = [*rnn.parameters(), *fc.parameters()]
    via_params = torch.autograd.grad(readout(q, rollout(q, xs)).square().sum(), params)
    out, _ = rnn(xs)  # batch_first=True
    via_module = torch.autograd.grad(fc(out[:, -1]).square().sum(), params)
    for a, b in zip(via_params, via_module, strict=True):
        # float32: "reduction" tolerance of the float32 column (rounding over 5 steps)
        torch.testing.assert_close(a, b, **tol("reduction", torch.float32))


def test_torch_rnn_dropout_is_ignored_by_one_layer_modules(generator):
    """torch applies RNN dropout between layers only: a one-layer module maps exactly."""
    with pytest.warns(UserWarning, match="dropout"):
        rnn, fc = _random_rnn(2, 5, 3, generator, dropout=0.5)
    xs = torch.randn(3, 6, 2, generator=generator, dtype=torch.float64)
    p = params_from_torch_rnn(rnn.train(), fc)
    torch.testing.assert_close(readout(p, rollout(p, xs)), _torch_logits(rnn, fc, xs),
                               **tol("reduction"))  # fmt: skip
    assert noise_from_module(_RNNClassifier(rnn, fc)) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nonlinearity": "relu"}, r"nonlinearity='relu'"),
        ({"num_layers": 2}, r"num_layers=2"),
        ({"bidirectional": True}, r"bidirectional=True"),
        (
            {"nonlinearity": "relu", "num_layers": 3, "bidirectional": True},
            r"nonlinearity='relu'.*; num_layers=3.*; bidirectional=True",
        ),
    ],
)
def test_torch_rnn_outside_the_family_is_refused_by_name(kwargs, message, generator):
    rnn, fc = _random_rnn(2, 4, 3, generator, **kwargs)
    refused = r"this torch.nn.RNN is not an NRNN; unsupported: " + message
    with pytest.raises(ValueError, match="rnn: " + refused):
        params_from_torch_rnn(rnn, fc)
    with pytest.raises(ValueError, match="model: " + refused):
        params_from_module(_RNNClassifier(rnn, fc))
    with pytest.raises(ValueError, match="model: " + refused):
        noise_from_module(_RNNClassifier(rnn, fc))


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_gated_torch_cells_are_refused(cls):
    cell, fc = cls(2, 4), nn.Linear(4, 3)
    with pytest.raises(TypeError, match="gated cells"):
        params_from_torch_rnn(cell, fc)
    with pytest.raises(TypeError, match="NRNN family"):
        params_from_module(_RNNClassifier(cell, fc))  # an LSTM wrapper is no NRNN


def test_torch_rnn_adapter_argument_errors(generator):
    rnn, fc = _random_rnn(2, 4, 3, generator)
    with pytest.raises(ValueError, match=r"readout: expected in_features=4 .* got 5"):
        params_from_torch_rnn(rnn, nn.Linear(5, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="readout: expected a torch.nn.Linear, got Sequential"):
        params_from_torch_rnn(rnn, nn.Sequential(fc))
    with pytest.raises(TypeError, match=r"readout: expected dtype torch.float64 .*float32"):
        params_from_torch_rnn(rnn, nn.Linear(4, 3))
    with pytest.raises(TypeError, match="rnn: expected a torch.nn.RNN, got Linear"):
        params_from_torch_rnn(fc, fc)
    with pytest.raises(TypeError, match="detach: expected a bool"):
        params_from_torch_rnn(rnn, fc, detach=1)
    with pytest.raises(TypeError, match="has no readout"):
        params_from_module(rnn)
    # a wrapper with more parametrized parts than (rnn, linear) is not guessed at
    extra = _RNNClassifier(rnn, fc)
    extra.embed = nn.Linear(2, 2, dtype=torch.float64)
    with pytest.raises(TypeError, match="NRNN family"):
        params_from_module(extra)


class _OwnNRNN(nn.Module):
    """A user's own model of the NRNN family, exposing the nrnn_params() protocol."""

    def __init__(self, g: torch.Generator, noise=None) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(3, 3, generator=g, dtype=torch.float64))
        self.U = nn.Parameter(torch.randn(3, 1, generator=g, dtype=torch.float64))
        self.V = nn.Parameter(torch.randn(2, 3, generator=g, dtype=torch.float64))
        self.noise = noise

    def nrnn_params(self) -> NRNNParams:
        zeros = torch.zeros(3, dtype=torch.float64)
        A = -0.5 * torch.eye(3, dtype=torch.float64)
        return NRNNParams(A=A, W=self.W, U=self.U, b=zeros, V=self.V, c=zeros[:2], dt=0.2)

    def forward(self, xs):
        h = torch.zeros(xs.shape[0], 3, dtype=xs.dtype)
        for x in xs.unbind(1):
            h = h + 0.2 * (-0.5 * h + torch.tanh(h @ self.W.T + x @ self.U.T))
        return h @ self.V.T


def test_modules_exposing_nrnn_params_are_honoured(generator):
    model = _OwnNRNN(generator, noise=NoiseSpec(epsilon=0.1, sigma1=1.0))
    p = params_from_module(model)
    assert not p.W.requires_grad and params_from_module(model, detach=False).W.requires_grad
    assert params_from_module(model, dtype=torch.float32).dtype == torch.float32
    xs = torch.randn(4, 6, 1, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        expected = model(xs)
    torch.testing.assert_close(readout(p, rollout(p, xs)), expected, **tol("reduction"))
    assert noise_from_module(model) == NoiseSpec(epsilon=0.1, sigma1=1.0)
    model.noise = "loud"
    with pytest.raises(TypeError, match="noise to be a NoiseSpec or None, got str"):
        noise_from_module(model)
    model.nrnn_params = lambda: {"A": None}
    with pytest.raises(TypeError, match=r"nrnn_params\(\) to return NRNNParams, got dict"):
        params_from_module(model)
