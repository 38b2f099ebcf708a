"""Models of the training layer against hand-written references (issue 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nrnn_theory import NoiseSpec, NRNNParams, readout, rollout, sample_noise
from nrnn_theory._linalg import lipschitz_matrix
from nrnn_theory.train import (
    MODELS,
    AntisymmetricRNN,
    CoRNN,
    GRUClassifier,
    LipschitzRNN,
    LSTMClassifier,
    NoisyRNN,
    build_model,
    model_config,
)

from _strategies import noise_specs, seeds
from _tolerances import tol


pytestmark = pytest.mark.usefixtures("single_thread")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------- NoisyRNN family
def _reference_nrnn(model: NoisyRNN, xs: torch.Tensor) -> torch.Tensor:
    """Clean forward pass written out from the theory (column convention).

    Theory: docs/theory/model.md, docs/theory/conventions.md.
    """
    H = model.hidden_size
    eye = torch.eye(H, dtype=xs.dtype)
    M_A = model.M_A if model.M_A is not None else torch.zeros(H, H, dtype=xs.dtype)
    b_, g_A, g_W = model.beta, model.gamma_A, model.gamma_W
    A = (1 - b_) * (M_A + M_A.T) + b_ * (M_A - M_A.T) - g_A * eye
    W = (1 - b_) * (model.M_W + model.M_W.T) + b_ * (model.M_W - model.M_W.T) - g_W * eye
    s = model.step if model.step is not None else torch.full((H,), model.dt, dtype=xs.dtype)
    h = torch.zeros(xs.shape[0], H, dtype=xs.dtype)
    for t in range(xs.shape[1]):
        z = h @ W.T + xs[:, t] @ model.U.T + model.b
        h = h + s * (model.alpha * h @ A.T + torch.tanh(z))
    return h @ model.V.T + model.c


@settings(max_examples=20, deadline=None)  # first calls pay one-off torch warm-up
@given(
    seed=seeds,
    alpha=st.sampled_from([0.0, 1.0, 0.5]),
    learn_step=st.booleans(),
    beta=st.floats(0.0, 1.0),
)
def test_noisy_rnn_clean_forward_matches_written_out_recursion(seed, alpha, learn_step, beta):
    g = _gen(seed)
    model = NoisyRNN(
        2,
        5,
        3,
        dt=0.2,
        beta=beta,
        gamma_A=0.1,
        gamma_W=0.05,
        alpha=alpha,
        noise=NoiseSpec.paper_code(add=0.1, mult=0.2),
        learn_step=learn_step,
        init_std=2.0,
        generator=g,
        dtype=torch.float64,
    )
    if learn_step:
        with torch.no_grad():
            model.step.mul_(torch.rand(5, generator=g, dtype=torch.float64) + 0.5)
    xs = torch.randn(3, 7, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        out = model.eval()(xs)
        ref = _reference_nrnn(model, xs)
    torch.testing.assert_close(out, ref, **tol("reduction"))
    assert (model.M_A is None) == (alpha == 0.0)


def test_noise_only_in_train_mode_and_override(generator):
    noise = NoiseSpec(epsilon=0.5, sigma1=1.0, sigma2=0.5)
    model = NoisyRNN(1, 6, 3, noise=noise, generator=generator, dtype=torch.float64)
    xs = torch.rand(4, 9, 1, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        clean = model.eval()(xs)
        assert torch.equal(model(xs, noise=None), clean)
        p = model.nrnn_params()
        # train mode: the training noise, drawn from the generator exactly as rollout draws it
        g1, g2 = _gen(7), _gen(7)
        noisy = model.train()(xs, generator=g1)
        expected = readout(p, rollout(p, xs, noise=noise, generator=g2))
        assert torch.equal(noisy, expected)
        assert not torch.allclose(noisy, clean)
        # train mode with noise=None is clean; eval mode with a noise override is noisy
        assert torch.equal(model(xs, noise=None), clean)
        other = NoiseSpec(sigma1=0.3, structure="scalar")
        eta = sample_noise(other, 4, 9, 6, dtype=torch.float64, generator=_gen(3))
        forced = model.eval()(xs, noise=other, eta=eta)
        assert torch.equal(forced, readout(p, rollout(p, xs, noise=other, eta=eta)))
    with pytest.raises(TypeError, match="noise"):
        model(xs, noise="sde")


def test_lipschitz_and_antisymmetric_structure(generator):
    lip = LipschitzRNN(1, 4, 2, dt=0.03, generator=generator)
    assert lip.noise is None and "noise" not in model_config(lip)
    with pytest.raises(TypeError, match="noise"):
        LipschitzRNN(1, 4, 2, noise=NoiseSpec(sigma1=1.0))
    anti = AntisymmetricRNN(1, 6, 2, dt=0.01, gamma=0.3, generator=generator, dtype=torch.float64)
    p = anti.nrnn_params()
    assert p.alpha == 0.0 and anti.M_A is None
    # W = M - M^T - gamma I (Chang et al.): skew part plus -gamma on the diagonal
    torch.testing.assert_close(p.W, anti.M_W - anti.M_W.T - 0.3 * torch.eye(6, dtype=torch.float64))
    assert {n for n, _ in anti.named_parameters()} == {"M_W", "U", "b", "V", "c"}


def test_initialisation_follows_the_generator_and_scales():
    a = NoisyRNN(3, 50, 4, noise=None, init_std=0.5, generator=_gen(1), dtype=torch.float64)
    b = NoisyRNN(3, 50, 4, noise=None, init_std=0.5, generator=_gen(1), dtype=torch.float64)
    c = NoisyRNN(3, 50, 4, noise=None, init_std=0.5, generator=_gen(2), dtype=torch.float64)
    for (n, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(p, q), n
        assert not torch.equal(p, r), n
    # M entries ~ N(0, (init_std/H)^2): sample std within 5% (2500 entries, se ~1.4%)
    assert abs(float(a.M_W.detach().std()) / (0.5 / 50) - 1) < 0.05
    assert float(a.U.detach().abs().max()) <= 1 / math.sqrt(3)
    assert float(a.V.detach().abs().max()) <= 1 / math.sqrt(50)
    # float32 models hold the float64 draws rounded
    f32 = NoisyRNN(3, 50, 4, noise=None, init_std=0.5, generator=_gen(1))
    assert torch.equal(f32.M_W, a.M_W.float())


def test_gradients_reach_every_parameter(generator):
    model = NoisyRNN(
        2,
        5,
        3,
        noise=NoiseSpec.paper_code(add=0.05, mult=0.1),
        learn_step=True,
        generator=generator,
    )
    xs = torch.rand(4, 6, 2, generator=generator)
    loss = model(xs, generator=generator).square().sum()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert all(bool(torch.isfinite(gr).all()) and float(gr.abs().sum()) > 0 for gr in grads)


def test_nrnn_params_is_a_differentiable_view(float64, generator):
    model = NoisyRNN(1, 3, 2, noise=None, generator=generator, dtype=torch.float64)
    p = model.nrnn_params()
    assert isinstance(p, NRNNParams) and p.A.requires_grad
    torch.testing.assert_close(p.A, lipschitz_matrix(model.M_A, 0.75, 0.001))


# --------------------------------------------------------------------------- baselines
def _reference_cornn(model: CoRNN, xs: np.ndarray) -> np.ndarray:
    U, Wy, Wz, b, V, c = (
        t.detach().double().numpy()
        for t in (model.U, model.W_y, model.W_z, model.b, model.V, model.c)
    )
    dt, gam, eps = model.dt, model.gamma, model.epsilon
    out = []
    for x in xs:
        y = np.zeros(model.hidden_size)
        z = np.zeros(model.hidden_size)
        for xt in x:
            act = np.tanh(Wy @ y + Wz @ z + U @ xt + b)
            if model.scheme == "imex":  # z_new = z + dt(act - gam y - eps z_new)
                z = (z + dt * (act - gam * y)) / (1 + dt * eps)
            else:
                z = z + dt * (act - gam * y - eps * z)
            y = y + dt * z
        out.append(V @ y + c)
    return np.array(out)


@pytest.mark.parametrize("scheme", ["imex", "explicit"])
def test_cornn_matches_written_out_recursion(scheme, generator):
    model = CoRNN(
        3,
        7,
        4,
        dt=0.3,
        gamma=1.5,
        epsilon=2.0,
        scheme=scheme,
        generator=generator,
        dtype=torch.float64,
    )
    xs = torch.randn(5, 11, 3, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        out = model(xs).numpy()
    np.testing.assert_allclose(out, _reference_cornn(model, xs.numpy()), **tol("reduction"))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _reference_gated(model, xs: np.ndarray) -> np.ndarray:
    """Hand-written LSTM (gates i, f, g, o) / GRU (gates r, z, n), one layer."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    Wi, Wh = sd["rnn.weight_ih_l0"], sd["rnn.weight_hh_l0"]
    bi, bh = sd["rnn.bias_ih_l0"], sd["rnn.bias_hh_l0"]
    H = model.hidden_size
    out = []
    for x in xs:
        h = np.zeros(H)
        cell = np.zeros(H)
        for xt in x:
            gi, gh = Wi @ xt + bi, Wh @ h + bh
            if isinstance(model, LSTMClassifier):
                g = gi + gh
                i, f, gg, o = (
                    _sigmoid(g[:H]),
                    _sigmoid(g[H : 2 * H]),
                    np.tanh(g[2 * H : 3 * H]),
                    _sigmoid(g[3 * H :]),
                )
                cell = f * cell + i * gg
                h = o * np.tanh(cell)
            else:
                r = _sigmoid(gi[:H] + gh[:H])
                z = _sigmoid(gi[H : 2 * H] + gh[H : 2 * H])
                n = np.tanh(gi[2 * H :] + r * gh[2 * H :])
                h = (1 - z) * n + z * h
        out.append(sd["readout.weight"] @ h + sd["readout.bias"])
    return np.array(out)


@pytest.mark.parametrize("cls", [LSTMClassifier, GRUClassifier])
def test_gated_baselines_match_hand_written_cells(cls, generator):
    model = cls(2, 5, 3, generator=generator, dtype=torch.float64)
    xs = torch.randn(4, 8, 2, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        out = model(xs).numpy()
    np.testing.assert_allclose(out, _reference_gated(model, xs.numpy()), **tol("reduction"))
    # initialisation comes from the generator only
    again = cls(2, 5, 3, generator=_gen(5), dtype=torch.float64)
    twin = cls(2, 5, 3, generator=_gen(5), dtype=torch.float64)
    assert all(
        torch.equal(p, q) for p, q in zip(again.parameters(), twin.parameters(), strict=True)
    )


@pytest.mark.parametrize("name", list(MODELS))
def test_bad_inputs_give_named_errors(name, generator):
    model = build_model(
        {"model": name, "input_size": 3, "hidden_size": 4, "num_classes": 2}, generator=generator
    )
    with pytest.raises(ValueError, match=r"xs: expected shape \(\?, \?, 3\)"):
        model(torch.zeros(2, 5, 4))
    with pytest.raises(TypeError, match="xs: expected dtype torch.float32"):
        model(torch.zeros(2, 5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="T >= 1"):
        model(torch.zeros(2, 0, 3))
    assert model(torch.zeros(2, 5, 3)).shape == (2, 2)


# ----------------------------------------------------------------------------- configs
@settings(max_examples=25, deadline=None)  # first calls pay one-off torch warm-up
@given(
    name=st.sampled_from(list(MODELS)),
    noise=noise_specs(max_level=0.5),
    seed=seeds,
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_build_model_inverts_model_config(name, noise, seed, dtype):
    config = {"model": name, "input_size": 2, "hidden_size": 3, "num_classes": 4, "dtype": dtype}
    if name in ("nrnn", "antisymmetric"):
        config["noise"] = noise
    model = build_model(config, generator=_gen(seed))
    cfg = model_config(model)
    import json

    assert json.loads(json.dumps(cfg)) == cfg  # JSON-able
    twin = build_model(cfg, generator=_gen(seed))
    assert type(twin) is type(model) and model_config(twin) == cfg
    for (n, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q), n
    if name in ("nrnn", "antisymmetric"):
        assert twin.noise == noise


def test_build_model_errors():
    with pytest.raises(ValueError, match="config\\['model'\\]: expected one of"):
        build_model({"model": "transformer", "input_size": 1, "hidden_size": 2, "num_classes": 2})
    with pytest.raises(ValueError, match="missing 'hidden_size'"):
        build_model({"model": "nrnn", "input_size": 1, "num_classes": 2})
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['gamma'\]"):
        build_model(
            {"model": "nrnn", "input_size": 1, "hidden_size": 2, "num_classes": 2, "gamma": 0.1}
        )
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['noise'\]"):
        build_model(
            {
                "model": "lipschitz",
                "input_size": 1,
                "hidden_size": 2,
                "num_classes": 2,
                "noise": None,
            }
        )
    with pytest.raises(ValueError, match="noise: unknown key"):
        build_model(
            {
                "model": "nrnn",
                "input_size": 1,
                "hidden_size": 2,
                "num_classes": 2,
                "noise": {"sigma": 1.0},
            }
        )
    with pytest.raises(ValueError, match="beta: expected a number in \\[0, 1\\]"):
        NoisyRNN(1, 2, 2, beta=1.5, noise=None)
    with pytest.raises(ValueError, match="num_classes: expected an integer >= 2"):
        NoisyRNN(1, 2, 1, noise=None)
    with pytest.raises(TypeError, match="model: expected one of"):
        model_config(torch.nn.Linear(2, 2))


def test_the_core_never_imports_the_training_layer():
    import subprocess
    import sys

    code = (
        "import sys, nrnn_theory, nrnn_theory.dynamics, nrnn_theory.results, nrnn_theory.cli; "
        "nrnn_theory.cli.build_parser(); "
        "print(sorted(m for m in sys.modules if m.startswith('nrnn_theory.train')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
