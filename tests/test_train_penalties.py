"""The explicit regularizer as a training penalty (issue 6, deliverable 2; issue 4 fit).

Oracles: ``torch.func.grad`` of the functional exact penalty and central differences
(exact estimator); for the pathwise estimator, exact enumeration of every probe sign
pattern on tiny models (its mean equals the exact noise gap, and the mean of its
gradients the exact gradient) and Monte Carlo within 4 standard errors on a larger one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch

from nrnn_theory import NoiseSpec, NRNNParams, explicit_regularizer, noise_dim
from nrnn_theory._pathwise import draw_probes, pathwise_noise_gap
from nrnn_theory.train import (
    CheckpointError,
    LipschitzRNN,
    LSTMClassifier,
    NoisyRNN,
    explicit_regularizer_penalty,
    fit,
    latest_checkpoint,
    load_checkpoint,
    load_task,
    params_from_module,
    penalty_from_config,
)

from _tolerances import STATISTICAL_SIGMAS, tol


pytestmark = pytest.mark.usefixtures("single_thread")

NOISES = {
    "sde-diagonal": NoiseSpec(epsilon=0.3, sigma1=0.5, sigma2=0.4),
    "sde-scalar": NoiseSpec(epsilon=0.3, sigma1=0.5, sigma2=0.4, structure="scalar"),
    "paper_code": NoiseSpec.paper_code(add=0.1, mult=0.2),
}


@pytest.fixture(scope="module")
def tiny():
    """A 200-example slice of digits (T = 64, D = 1, 10 classes)."""
    d = load_task("digits", seed=0)
    return dataclasses.replace(
        d,
        train_x=d.train_x[:200],
        train_y=d.train_y[:200],
        val_x=d.val_x[:50],
        val_y=d.val_y[:50],
        test_x=d.test_x[:50],
        test_y=d.test_y[:50],
        spec={},
    )


def _model(seed=0, **kw):
    kw.setdefault("noise", None)
    return NoisyRNN(1, 6, 10, generator=torch.Generator().manual_seed(seed), **kw)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------ derivatives
@pytest.mark.parametrize("name", list(NOISES))
@pytest.mark.parametrize("learn_step", [False, True])
def test_gradient_equals_func_grad_through_the_parametrization(name, learn_step, generator):
    """autograd of the penalty on the module == torch.func.grad of the functional form."""
    noise = NOISES[name]
    model = NoisyRNN(
        2, 4, 3, noise=None, learn_step=learn_step, init_std=2.0, generator=generator
    ).double()
    if learn_step:
        with torch.no_grad():
            model.step.mul_(0.5 + torch.rand(4, generator=generator, dtype=torch.float64))
    xs = torch.randn(5, 7, 2, generator=generator, dtype=torch.float64)
    ys = torch.randint(0, 3, (5,), generator=generator)
    weight = 2.5
    pen = explicit_regularizer_penalty(noise, weight=weight, estimator="exact")
    names = [n for n, _ in model.named_parameters()]
    got = torch.autograd.grad(pen(model, xs, ys), list(model.parameters()))

    def functional(tensors):
        p = NRNNParams.from_lipschitz(
            tensors["M_A"],
            tensors["M_W"],
            tensors["U"],
            tensors["b"],
            tensors["V"],
            tensors["c"],
            beta=model.beta,
            gamma_A=model.gamma_A,
            gamma_W=model.gamma_W,
            dt=model.dt,
            alpha=model.alpha,
            step=tensors.get("step"),
        )
        return weight * explicit_regularizer(p, xs, ys, noise).noise_gap.mean()

    leaves = {n: p.detach() for n, p in model.named_parameters()}
    expected = torch.func.grad(functional)(leaves)
    for n, g in zip(names, got, strict=True):
        assert float(g.abs().sum()) > 0, n
        torch.testing.assert_close(g, expected[n], **tol("reduction"))


def test_gradient_matches_central_differences(generator):
    """An oracle independent of autograd: the directional derivative by central FD."""
    noise = NOISES["sde-diagonal"]
    model = _model(init_std=2.0).double()
    xs = torch.rand(4, 6, 1, generator=generator, dtype=torch.float64)
    ys = torch.randint(0, 10, (4,), generator=generator)
    pen = explicit_regularizer_penalty(noise, weight=1.0, estimator="exact")
    grads = torch.autograd.grad(pen(model, xs, ys), list(model.parameters()))
    dirs = [torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in grads]
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, dirs, strict=True))
    h = 1e-6
    values = []
    for sign in (1.0, -1.0):
        shifted = _model(init_std=2.0).double()
        with torch.no_grad():
            for p, q, d in zip(shifted.parameters(), model.parameters(), dirs, strict=True):
                p.copy_(q + sign * h * d)
            values.append(float(pen(shifted, xs, ys)))
    fd = (values[0] - values[1]) / (2 * h)
    torch.testing.assert_close(torch.tensor(analytic), torch.tensor(fd), **tol("autograd_vs_fd"))


def test_max_examples_uses_the_first_rows_and_the_model_is_untouched(generator):
    model = _model()
    xs = torch.rand(6, 5, 1, generator=generator)
    ys = torch.randint(0, 10, (6,), generator=generator)
    before = _weights(model)
    noise = NOISES["paper_code"]
    for est in ("exact", "pathwise"):

        def pen(model, xs, ys, est=est, **kw):
            g = torch.Generator().manual_seed(5)  # the same probes for both calls
            return explicit_regularizer_penalty(noise, weight=3.0, estimator=est, **kw)(
                model, xs, ys, generator=g
            )

        assert torch.equal(pen(model, xs, ys, max_examples=2), pen(model, xs[:2], ys[:2]))
        assert torch.equal(pen(model, xs, ys, max_examples=100), pen(model, xs, ys))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert model.training  # mode untouched


# ----------------------------------------------------------------------------- in fit
def test_fit_with_the_penalty_logs_it_and_moves_differently(tiny):
    noise = NOISES["paper_code"]
    kw = dict(epochs=1, batch_size=200, lr=1e-2, device="cpu", quiet=True)  # one step
    plain, zero, reg = _model(), _model(), _model()
    start = _model()
    h_plain = fit(plain, tiny, **kw)
    h_zero = fit(zero, tiny, penalty=explicit_regularizer_penalty(noise, weight=0.0), **kw)
    pen = explicit_regularizer_penalty(noise, weight=50.0, estimator="exact")
    h_reg = fit(reg, tiny, penalty=pen, **kw)
    # lambda = 0 is plain training, bit for bit; its logged penalty is 0
    assert all(torch.equal(v, _weights(plain)[k]) for k, v in _weights(zero).items())
    assert "train_penalty" not in h_plain.records[0] and h_zero.records[0]["train_penalty"] == 0
    # lambda > 0 moves the parameters differently
    assert any(not torch.equal(v, _weights(plain)[k]) for k, v in _weights(reg).items())
    # the logged penalty is the penalty of the (single) batch at the initial weights:
    # with the whole training set in one batch it does not depend on the shuffle
    expected = float(pen(start, tiny.train_x, tiny.train_y).detach())
    rec = h_reg.records[0]
    torch.testing.assert_close(
        torch.tensor(rec["train_penalty"]),
        torch.tensor(expected),
        **tol("reduction", torch.float32),
    )
    # train_loss stays the clean cross-entropy alone (same initial model, same batch)
    assert rec["train_loss"] == pytest.approx(h_plain.records[0]["train_loss"], rel=1e-6)


def test_one_small_step_with_a_large_lambda_decreases_the_regularizer(tiny):
    noise = NOISES["sde-diagonal"]
    model = _model(init_std=2.0)
    x, y = tiny.train_x, tiny.train_y

    def regularizer(m):
        p = params_from_module(m, dtype=torch.float64)
        return float(explicit_regularizer(p, x.double(), y, noise).noise_gap.mean())

    before = regularizer(model)
    pen = explicit_regularizer_penalty(noise, weight=1e3, estimator="exact")
    fit(model, tiny, epochs=1, batch_size=200, lr=1e-3, optimizer="sgd", device="cpu",
        quiet=True, penalty=pen)  # fmt: skip
    after = regularizer(model)
    assert before > 0 and after < before


def test_fit_refuses_noisy_or_foreign_models_before_training(tiny, tmp_path):
    pen = explicit_regularizer_penalty(NOISES["paper_code"], weight=1.0)
    noisy = _model(noise=NoiseSpec.paper_code(add=0.02))
    lstm = LSTMClassifier(1, 4, 10, generator=torch.Generator().manual_seed(0))
    for model, exc, pattern in (
        (noisy, ValueError, "replaces noise injection"),
        (lstm, TypeError, "NRNN family"),
    ):
        before = _weights(model)
        with pytest.raises(exc, match=pattern):
            fit(model, tiny, epochs=1, device="cpu", quiet=True, penalty=pen, out_dir=tmp_path)
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not any(tmp_path.iterdir())


def test_checkpoint_records_the_penalty_and_resume_checks_it(tiny, tmp_path):
    pen = explicit_regularizer_penalty(NOISES["sde-scalar"], weight=0.5, max_examples=8)
    kw = dict(batch_size=100, lr=1e-2, device="cpu", quiet=True, out_dir=tmp_path / "run")
    model = LipschitzRNN(1, 6, 10, generator=torch.Generator().manual_seed(0))
    fit(model, tiny, epochs=1, penalty=pen, **kw)
    ck = load_checkpoint(tmp_path / "run")
    assert ck.fit["penalty"] == pen.config()
    assert penalty_from_config(ck.fit["penalty"]) == pen
    assert ck.explicit_regularizer == pen and ck.noise is None
    assert ck.config.get("noise") is None and ck.model.noise is None
    other = dataclasses.replace(pen, weight=1.0)
    with pytest.raises(CheckpointError, match="penalty"):
        fit(ck.model.train(), tiny, epochs=2, penalty=other, resume=True, **kw)
    _old_noise_layout(latest_checkpoint(tmp_path / "run"))
    assert load_checkpoint(tmp_path / "run").explicit_regularizer == pen
    hist = fit(ck.model.train(), tiny, epochs=2, penalty=pen, resume=True, **kw)
    assert hist.epochs == 2 and all("train_penalty" in r for r in hist.records)


# ------------------------------------------------------------------ pathwise estimator
def _tiny_params(H, D, C, generator, learn_step):
    def r(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=generator, dtype=torch.float64)

    step = 0.1 + 0.3 * torch.rand(H, generator=generator, dtype=torch.float64)
    return NRNNParams.from_lipschitz(
        r(H, H, scale=0.8), r(H, H, scale=0.8), r(H, D), r(H), r(C, H), r(C),
        beta=0.75, gamma_A=0.01, gamma_W=0.01, dt=0.2, step=step if learn_step else None,
    )  # fmt: skip


def _all_signs(n_steps, r, batch):
    """Every sign pattern of (n_steps, r) as probes (M, 2**(M r), B, r), B copies."""
    import itertools

    rows = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=n_steps * r)))
    probes = rows.to(torch.float64).reshape(-1, n_steps, r).transpose(0, 1)
    return probes.unsqueeze(2).expand(-1, -1, batch, -1)


@pytest.mark.parametrize(
    ("name", "H", "M"), [("paper_code", 2, 2), ("sde-diagonal", 2, 3), ("sde-scalar", 2, 2)]
)
def test_pathwise_mean_over_all_probes_is_the_exact_gap_and_gradient(name, H, M, generator):
    """Exact enumeration of the Rademacher sample space: value and gradient."""
    noise = NOISES[name] if name != "paper_code" else NoiseSpec.paper_code(add=0.3, mult=0.5)
    params = _tiny_params(H, 1, 3, generator, learn_step=noise.convention == "paper_code")
    xs = torch.randn(2, M, 1, generator=generator, dtype=torch.float64)
    ys = torch.tensor([0, 2])
    probes = _all_signs(M, noise_dim(noise, H), 2)
    names = ["A", "W", "U", "b", "V", "c"] + (["step"] if params.step is not None else [])
    leaves = {n: getattr(params, n).detach().clone().requires_grad_() for n in names}
    p = params.replace(**leaves)
    est = pathwise_noise_gap(p, xs, ys, noise, probes)  # mean over every pattern
    exact = explicit_regularizer(p, xs, ys, noise).noise_gap
    torch.testing.assert_close(est, exact, **tol("reduction"))
    g_est = torch.autograd.grad(est.sum(), list(leaves.values()))
    g_exact = torch.autograd.grad(exact.sum(), list(leaves.values()))
    for n, a, b in zip(names, g_est, g_exact, strict=True):
        torch.testing.assert_close(a, b, **tol("reduction"), msg=n)


@pytest.mark.parametrize("name", list(NOISES))
def test_pathwise_monte_carlo_within_four_standard_errors(name, generator):
    noise = NOISES[name]
    params = _tiny_params(6, 2, 4, generator, learn_step=noise.convention == "paper_code")
    xs = torch.randn(3, 10, 2, generator=generator, dtype=torch.float64)
    ys = torch.tensor([0, 3, 1])
    exact = explicit_regularizer(params, xs, ys, noise).noise_gap
    n = 4000
    probes = draw_probes(noise, 6, 10, n, 3, dtype=torch.float64, device="cpu", generator=generator)
    # one estimate per probe: the probe axis has length 1 in each call
    samples = torch.stack(
        [pathwise_noise_gap(params, xs, ys, noise, pr) for pr in probes.split(1, dim=1)]
    )
    mean, se = samples.mean(0), samples.std(0) / n**0.5
    assert bool(((mean - exact).abs() <= STATISTICAL_SIGMAS * se).all()), (mean, exact, se)
    assert bool((se > 0).all())


def test_pathwise_penalty_is_the_estimator_on_the_generators_probes(generator):
    model = _model(init_std=2.0).double()
    xs = torch.rand(5, 7, 1, generator=generator, dtype=torch.float64)
    ys = torch.randint(0, 10, (5,), generator=generator)
    noise = NOISES["paper_code"]
    pen = explicit_regularizer_penalty(noise, weight=2.0, max_examples=4, probes=3)
    assert pen.uses_generator and not dataclasses.replace(pen, estimator="exact").uses_generator
    got = pen(model, xs, ys, generator=torch.Generator().manual_seed(11))
    probes = draw_probes(
        noise, 6, 7, 3, 4, dtype=torch.float64, device="cpu",
        generator=torch.Generator().manual_seed(11),
    )  # fmt: skip
    p = params_from_module(model, detach=False)
    expected = 2.0 * pathwise_noise_gap(p, xs[:4], ys[:4], noise, probes).mean()
    assert torch.equal(got, expected)
    grads = torch.autograd.grad(got, list(model.parameters()))
    assert all(bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0 for g in grads)


def test_fit_with_the_pathwise_penalty_resumes_bitwise(tiny, tmp_path):
    """The probes come from fit's noise generator, saved in the checkpoint."""
    pen = explicit_regularizer_penalty(NOISES["paper_code"], weight=1.0, max_examples=8)
    # an explicit schedule: the default one follows `epochs` (a 1-epoch run keeps its own)
    kw = dict(batch_size=100, lr=1e-2, lr_schedule=[1], device="cpu", quiet=True)
    straight = _model()
    fit(straight, tiny, epochs=2, penalty=pen, **kw)
    first = _model()
    fit(first, tiny, epochs=1, penalty=pen, out_dir=tmp_path / "run", **kw)
    ck = load_checkpoint(tmp_path / "run")
    assert ck.explicit_regularizer == pen
    resumed = ck.model.train()
    fit(resumed, tiny, epochs=2, penalty=pen, resume=True, out_dir=tmp_path / "run", **kw)
    assert all(torch.equal(v, _weights(straight)[k]) for k, v in _weights(resumed).items())


def test_legacy_penalty_records_rebuild_the_exact_estimator():
    legacy = {"name": "explicit_regularizer", "weight": 0.5, "max_examples": 4}
    legacy["noise"] = explicit_regularizer_penalty(NOISES["paper_code"], weight=1.0).config()[
        "noise"
    ]
    pen = penalty_from_config(legacy)
    assert pen.estimator == "exact" and pen.weight == 0.5 and pen.max_examples == 4


def _old_noise_layout(path):
    """Rewrite a checkpoint's penalty record as earlier versions wrote it: the noise's
    five fields without a schema key (digest recomputed, as that writer did)."""
    meta = json.loads((path / "checkpoint.json").read_text())
    noise = meta["fit"]["penalty"]["noise"]
    assert noise.pop("schema") == "NoiseSpec/1"
    meta.pop("digest")
    canon = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    meta["digest"] = hashlib.sha256(canon).hexdigest()
    (path / "checkpoint.json").write_text(json.dumps(meta))


def test_penalty_from_config_reads_the_old_noise_layout():
    pen = explicit_regularizer_penalty(NOISES["paper_code"], weight=1.0, max_examples=4)
    old = {**pen.config(), "noise": dataclasses.asdict(NOISES["paper_code"])}
    assert "schema" not in old["noise"] and penalty_from_config(old) == pen


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        (dict(noise=NOISES["paper_code"], weight=-1.0), ValueError, "weight: expected a finite"),
        (dict(noise=NOISES["paper_code"], weight=float("nan")), ValueError, "weight"),
        (dict(noise=NOISES["paper_code"], weight=True), TypeError, "weight"),
        (dict(noise=NOISES["paper_code"], weight="1"), TypeError, "weight"),
        (dict(noise=NoiseSpec(), weight=1.0), ValueError, "noise: expected a noise that"),
        (dict(noise={"sigma1": 1.0}, weight=1.0), TypeError, "noise: expected a NoiseSpec"),
        (dict(noise=NOISES["sde-diagonal"], weight=1.0, max_examples=0), ValueError, "max_ex"),
        (dict(noise=NOISES["sde-diagonal"], weight=1.0, estimator="mc"), ValueError, "estim"),
        (dict(noise=NOISES["sde-diagonal"], weight=1.0, probes=0), ValueError, "probes"),
    ],
)
def test_bad_arguments_are_named(kwargs, exc, pattern):
    noise = kwargs.pop("noise")
    with pytest.raises(exc, match=pattern):
        explicit_regularizer_penalty(noise, **kwargs)


def test_penalty_from_config_rejects_foreign_records():
    good = explicit_regularizer_penalty(NOISES["paper_code"], weight=1.0).config()
    with pytest.raises(ValueError, match="only the explicit regularizer"):
        penalty_from_config("my_penalty")
    with pytest.raises(ValueError, match="expected the fields"):
        penalty_from_config({**good, "extra": 1})
    with pytest.raises(ValueError, match="weight"):
        penalty_from_config({**good, "weight": -2.0})
