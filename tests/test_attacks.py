"""Attacks and empirical margins (docs/theory/margins.md, oracles.md V9).

Oracles: the closed-form l2 and l_inf margins of an affine model (a linear RNN with
a linear readout, written in tests/_problems.py because the package's drift always
has tanh), and foolbox 3 (a test-only dependency) for FGSM/FGM and DeepFool.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings

from nrnn_theory import logits
from nrnn_theory.attacks import (
    deepfool,
    fgsm,
    minimal_perturbation,
    perturbation_norm,
    pgd,
)

from _problems import linear_rnn_classifier, random_params
from _strategies import model_and_inputs
from _tolerances import tol


with warnings.catch_warnings():
    # foolbox 3.3.4 imports gaussian_filter from the deprecated scipy.ndimage.filters.
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*scipy\.ndimage")
    import foolbox


def _linear_case(generator, *, C: int, B: int = 12, T: int = 6, D: int = 2):
    """An affine classifier and its exact l2 and l_inf margins (closed form)."""
    model, J = linear_rnn_classifier(3, D, C, T=T, generator=generator)
    xs = torch.randn(B, T, D, generator=generator, dtype=torch.float64)
    s = model(xs)
    y = s.argmax(1)
    w = J[y].unsqueeze(1) - J.unsqueeze(0)  # (B, C, T*D): gradients of s_y - s_j
    gap = s.gather(1, y[:, None]) - s
    l2 = torch.where(gap > 0, gap / w.norm(dim=2), math.inf).min(dim=1).values
    linf = torch.where(gap > 0, gap / w.abs().sum(dim=2), math.inf).min(dim=1).values
    return model, xs, y, {"l2": l2, "linf": linf}


class _Net(torch.nn.Module):
    """A small nn.Module classifier of sequences with trainable parameters."""

    def __init__(self, T: int, D: int, C: int, generator: torch.Generator) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(T * D, 16, dtype=torch.float64)
        self.out = torch.nn.Linear(16, C, dtype=torch.float64)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x.flatten(1))))


# ------------------------------------------------------------------- linear-model margins
@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("C", [2, 4])
def test_deepfool_finds_exact_margin_of_linear_model(generator, norm, C):
    model, xs, y, exact = _linear_case(generator, C=C)
    r = deepfool(model, xs, norm=norm)
    assert bool(r.success.all()) and torch.equal(r.labels, y)
    # One linearized step is exact for an affine model; the final bisection along
    # it (20 halvings of the 2% overshoot) leaves < 1e-7 relative.
    torch.testing.assert_close(r.distance, exact[norm], rtol=1e-6, atol=0.0)
    torch.testing.assert_close(perturbation_norm(r.perturbed - xs, norm), r.distance)
    assert bool((model(r.perturbed).argmax(1) != y).all())


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_minimal_perturbation_on_linear_model(generator, norm):
    model, xs, _, exact = _linear_case(generator, C=3)
    both = minimal_perturbation(model, xs, norm=norm, generator=generator)
    torch.testing.assert_close(both.distance, exact[norm], rtol=1e-6, atol=0.0)
    # PGD bisection alone: never below the exact margin (it returns verified points),
    # and within the bisection's resolution above it for a binary affine model, where
    # PGD at radius r reaches the boundary whenever r exceeds the margin.
    model2, xs2, _, exact2 = _linear_case(generator, C=2)
    alone = minimal_perturbation(model2, xs2, norm=norm, method="pgd", generator=generator)
    assert bool((alone.distance >= exact2[norm] * (1 - 1e-9)).all())
    torch.testing.assert_close(alone.distance, exact2[norm], rtol=2e-3, atol=0.0)
    assert bool((alone.lower <= alone.distance).all())


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_pgd_search_with_only_misclassified_references(generator, norm):
    """PGD search where no example has a known finite radius yet (the others are
    misclassified, radius 0): the doubling starts from the data scale, not from the
    median of an empty set (a NaN radius once reached the model as NaN inputs)."""
    model, xs, y, exact = _linear_case(generator, C=2)
    labels = y.clone()
    labels[1:] = 1 - y[1:]  # only the first example is classified correctly
    r = minimal_perturbation(model, xs, labels, norm=norm, method="pgd", generator=generator)
    assert bool(torch.isfinite(r.distance[0])) and bool(r.success[0])
    assert float(r.distance[0]) >= float(exact[norm][0]) * (1 - 1e-9)
    assert bool((r.distance[1:] == 0).all())


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_fixed_budget_attacks_on_binary_linear_model(generator, norm):
    """FGSM and PGD succeed below the exact margin and (necessarily) fail above it."""
    model, xs, y, exact = _linear_case(generator, C=2, B=40)
    m = exact[norm]
    for eps in torch.quantile(m, torch.tensor([0.25, 0.5, 0.75], dtype=m.dtype)).tolist():
        for adv in (
            fgsm(model, xs, y, eps=eps, norm=norm),
            pgd(model, xs, y, eps=eps, norm=norm, generator=generator),
        ):
            fooled = model(adv).argmax(1) != y
            assert bool(fooled[m < 0.95 * eps].all())
            assert not bool(fooled[m > eps * (1 + 1e-9)].any())


# ----------------------------------------------------------------------------- foolbox
def _foolbox_model(fn, bounds):
    class Wrapped(torch.nn.Module):
        def forward(self, x):
            return fn(x)

    return foolbox.PyTorchModel(Wrapped().eval(), bounds=bounds)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_matches_foolbox(generator, norm):
    params = random_params(5, 2, 4, generator=generator)
    xs = torch.rand(10, 7, 2, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 4, (10,), generator=generator)
    fn = lambda x: logits(params, x)  # noqa: E731
    attack = (
        foolbox.attacks.LinfFastGradientAttack(random_start=False)
        if norm == "linf"
        else foolbox.attacks.L2FastGradientAttack(random_start=False)
    )
    eps = 0.05 if norm == "linf" else 0.3
    _, ref, _ = attack(_foolbox_model(fn, (0.0, 1.0)), xs, y, epsilons=eps)
    ours = fgsm(params, xs, y, eps=eps, norm=norm, bounds=(0.0, 1.0))
    torch.testing.assert_close(ours, ref, **tol("elementwise"))


@settings(max_examples=15, deadline=None)
@given(model_and_inputs(max_hidden=5, max_steps=5))
def test_deepfool_not_worse_than_foolbox(case):
    """Same iteration as foolbox's L2DeepFool; ours then bisects back to the boundary.

    Both run in the same box: foolbox projects every iterate onto its model's bounds.
    (Issue 19: with ours unbounded, random seeds found an ill-conditioned model whose
    boundary lies only in the saturated regime; the linearized step there is huge,
    foolbox's box stopped it at 1.1e6 and ours, unbounded, at 3.9e13. In the same box
    ours found 1.2e4.)
    """
    params, xs, _ = case
    fn = lambda x: logits(params, x)  # noqa: E731
    y = fn(xs).argmax(1)
    box = (-1e6, 1e6)
    attack = foolbox.attacks.L2DeepFoolAttack(steps=50, candidates=None, overshoot=0.02)
    _, ref, ok = attack(_foolbox_model(fn, box), xs, y, epsilons=None)
    ref_d = torch.where(ok, (ref - xs).flatten(1).norm(dim=1), math.inf)
    ours = deepfool(params, xs, bounds=box)
    # foolbox adds 1e-4 to every linearized gap, so it lands slightly further out.
    assert bool((ours.distance <= ref_d * (1 + 1e-6) + 1e-3).all())


# --------------------------------------------------------------------------- properties
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_pgd_respects_ball_and_bounds(generator, norm):
    params = random_params(4, 1, 3, generator=generator)
    xs = torch.rand(8, 10, 1, generator=generator, dtype=torch.float64)
    eps = torch.rand(8, generator=generator, dtype=torch.float64)
    adv = pgd(params, xs, eps=eps, norm=norm, bounds=(0.0, 1.0), generator=generator)
    assert bool((perturbation_norm(adv - xs, norm) <= eps * (1 + 1e-12)).all())
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    # Strength 0 leaves the input unchanged.
    for out in (
        pgd(params, xs, eps=0.0, norm=norm, generator=generator),
        fgsm(params, xs, eps=0.0, norm=norm),
    ):
        assert torch.equal(out, xs)


def test_attacks_are_reproducible_with_a_seed(generator):
    params = random_params(4, 2, 3, generator=generator)
    xs = torch.randn(6, 5, 2, generator=generator, dtype=torch.float64)
    runs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(7)
        runs.append(
            (
                pgd(params, xs, eps=0.3, norm="l2", generator=g),
                minimal_perturbation(params, xs, method="pgd", bisection_steps=3, generator=g),
            )
        )
    assert torch.equal(runs[0][0], runs[1][0])
    assert torch.equal(runs[0][1].distance, runs[1][1].distance)


def test_attacks_never_touch_parameter_grads(generator):
    net = _Net(5, 2, 3, generator)
    xs = torch.randn(4, 5, 2, generator=generator, dtype=torch.float64)
    fgsm(net, xs, eps=0.1)
    pgd(net, xs, eps=0.1, steps=3, generator=generator)
    r = minimal_perturbation(net, xs, bisection_steps=2, generator=generator)
    assert all(p.grad is None for p in net.parameters())
    assert bool(r.success.all())
    assert bool((net(r.perturbed).argmax(1) != r.labels).all())


def test_misclassified_examples_have_distance_zero(generator):
    params = random_params(4, 2, 3, generator=generator)
    xs = torch.randn(5, 4, 2, generator=generator, dtype=torch.float64)
    wrong = (logits(params, xs).argmax(1) + 1) % 3
    for r in (deepfool(params, xs, wrong), minimal_perturbation(params, xs, wrong)):
        assert bool((r.distance == 0).all()) and torch.equal(r.perturbed, xs)


def test_perturbation_norm():
    d = torch.tensor([[[3.0, 0.0], [0.0, -4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    torch.testing.assert_close(perturbation_norm(d, "l2"), torch.tensor([5.0, 0.0]))
    torch.testing.assert_close(perturbation_norm(d, "linf"), torch.tensor([4.0, 0.0]))


# ---------------------------------------------------------------------------- bad input
def test_attacks_bad_input(generator):
    params = random_params(3, 2, 2, generator=generator)
    xs = torch.randn(2, 4, 2, generator=generator, dtype=torch.float64)
    with pytest.raises(ValueError, match="eps: expected a number >= 0"):
        fgsm(params, xs, eps=-0.1)
    with pytest.raises(ValueError, match=r"eps: expected a number or a tensor of shape \(2,\)"):
        pgd(params, xs, eps=torch.ones(3))
    with pytest.raises(ValueError, match="eps: expected finite radii >= 0"):
        pgd(params, xs, eps=torch.tensor([0.1, -0.1], dtype=torch.float64))
    with pytest.raises(ValueError, match="norm: expected one of 'l2', 'linf'"):
        deepfool(params, xs, norm="l1")
    with pytest.raises(ValueError, match="loss: expected one of"):
        pgd(params, xs, eps=0.1, loss="hinge")
    with pytest.raises(ValueError, match="bounds: expected low < high"):
        fgsm(params, xs, eps=0.1, bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="xs: expected at least one example"):
        deepfool(params, xs[:0])
    with pytest.raises(
        ValueError, match=r"xs: expected shape \(\?, \?, 2\) \(B, T, D\) to match U"
    ):
        minimal_perturbation(params, torch.zeros(2, 4, 3, dtype=torch.float64))
    net = _Net(4, 2, 3, generator)
    with pytest.raises(ValueError, match="xs: the model could not be evaluated on inputs"):
        deepfool(net, torch.zeros(2, 4, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="model: expected NRNNParams or a callable"):
        fgsm("model", xs, eps=0.1)
    with pytest.raises(ValueError, match="method: expected one of"):
        minimal_perturbation(params, xs, method="cw")
