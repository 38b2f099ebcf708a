"""Perturbations, accuracy-versus-strength sweeps, tables and figures (claim C5).

Theory: docs/theory/experiments.md.

Oracles: the stated moments and densities of each perturbation (within 4 standard
errors), and exact accuracies of a linear classifier ``s_0 = w . x``, ``s_1 = 0``:
under white noise an example stays correct with probability
``Phi(|w.x| / (sigma ||w||))``, under multiplicative noise
``Phi(|w.x| / (sigma ||w * x||))``, under salt and pepper by enumerating the 3^(T*D)
outcomes, and under an attack of budget eps iff its exact margin exceeds eps.
Intervals against scipy.
"""

from __future__ import annotations

import itertools
import math
import os

import pytest
import torch

from nrnn_theory import logits
from nrnn_theory.experiments.zoo_plots import plot_robustness
from nrnn_theory.results import ComparisonTable, RobustnessSweep
from nrnn_theory.robustness import (
    DEFAULT_GRIDS,
    DEFAULT_PERTURBATIONS,
    PERTURBATIONS,
    _t_interval,
    _wilson,
    accuracy,
    comparison_table,
    format_comparison_table,
    multiplicative_noise,
    perturb,
    robustness_sweep,
    salt_and_pepper,
    white_noise,
)

from _problems import random_params
from _tolerances import STATISTICAL_SIGMAS


def _normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(z / math.sqrt(2)))


def _linear_problem(generator, N: int = 300, T: int = 4):
    """A linear binary classifier and test data it classifies perfectly."""
    w = torch.randn(T, generator=generator, dtype=torch.float64)

    def model(x: torch.Tensor) -> torch.Tensor:
        s0 = x.flatten(1) @ w
        return torch.stack([s0, torch.zeros_like(s0)], dim=1)

    xs = 0.5 + 0.2 * torch.randn(N, T, 1, generator=generator, dtype=torch.float64)
    ys = (xs.flatten(1) @ w < 0).long()
    return model, w, xs, ys


# ----------------------------------------------------------------------- perturbations
def test_white_noise_statistics(generator):
    xs = torch.rand(100, 50, 2, generator=generator, dtype=torch.float64)
    sigma = 0.3
    d = (white_noise(xs, sigma, generator=generator) - xs).flatten()
    n = d.numel()
    assert abs(float(d.mean())) <= STATISTICAL_SIGMAS * sigma / math.sqrt(n)
    se_var = sigma**2 * math.sqrt(2 / (n - 1))  # sample variance of a normal
    assert abs(float(d.var()) - sigma**2) <= STATISTICAL_SIGMAS * se_var


def test_multiplicative_noise_statistics(generator):
    xs = 0.5 + torch.rand(100, 50, 2, generator=generator, dtype=torch.float64)
    sigma = 0.2
    r = ((multiplicative_noise(xs, sigma, generator=generator) - xs) / xs).flatten()
    n = r.numel()
    assert abs(float(r.mean())) <= STATISTICAL_SIGMAS * sigma / math.sqrt(n)
    assert abs(float(r.var()) - sigma**2) <= STATISTICAL_SIGMAS * sigma**2 * math.sqrt(2 / (n - 1))
    zeros = torch.zeros(3, 4, 1, dtype=torch.float64)
    assert torch.equal(multiplicative_noise(zeros, 0.5, generator=generator), zeros)


@pytest.mark.parametrize("alpha", [0.05, 0.3, 1.0])
def test_salt_and_pepper_density(generator, alpha):
    xs = 0.2 + 0.6 * torch.rand(100, 50, 2, generator=generator, dtype=torch.float64)
    out = salt_and_pepper(xs, alpha, low=0.0, high=1.0, generator=generator)
    changed = out != xs
    n = xs.numel()
    frac = float(changed.double().mean())
    assert abs(frac - alpha) <= STATISTICAL_SIGMAS * math.sqrt(alpha * (1 - alpha) / n) + 1e-12
    k = int(changed.sum())
    high = float((out[changed] == 1.0).double().mean())
    assert abs(high - 0.5) <= STATISTICAL_SIGMAS * math.sqrt(0.25 / k)
    assert bool(((out[changed] == 0.0) | (out[changed] == 1.0)).all())
    assert torch.equal(out[~changed], xs[~changed])
    # Defaults: the data's own minimum and maximum.
    d = salt_and_pepper(xs, 1.0, generator=generator)
    assert set(d.unique().tolist()) <= {float(xs.min()), float(xs.max())}


def test_strength_zero_is_the_identity(generator):
    xs = torch.rand(4, 6, 2, generator=generator, dtype=torch.float64)
    params = random_params(3, 2, 3, generator=generator)
    assert torch.equal(white_noise(xs, 0.0, generator=generator), xs)
    assert torch.equal(multiplicative_noise(xs, 0.0, generator=generator), xs)
    assert torch.equal(salt_and_pepper(xs, 0.0, generator=generator), xs)
    for name in PERTURBATIONS:
        out = perturb(name, xs, 0.0, model=params, generator=generator)
        assert torch.equal(out, xs), name


def test_clipping(generator):
    xs = torch.rand(20, 10, 1, generator=generator, dtype=torch.float64)
    clipped = perturb("white_noise", xs, 1.0, clip=True, generator=generator)
    assert float(clipped.min()) >= float(xs.min()) and float(clipped.max()) <= float(xs.max())
    free = perturb("white_noise", xs, 1.0, generator=generator)
    assert float(free.min()) < float(xs.min())  # not clipped by default
    out = white_noise(xs, 1.0, bounds=(0.0, 1.0), generator=generator)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


# -------------------------------------------------------------------------------- sweeps
def test_sweep_matches_exact_noise_accuracy(generator):
    model, w, xs, ys = _linear_problem(generator)
    R = 20
    sweep = robustness_sweep(
        model,
        xs,
        ys,
        perturbations=["white_noise", "multiplicative_noise", "salt_and_pepper"],
        n_draws=R,
        data_range=(0.0, 1.0),
        generator=generator,
    )
    assert sweep.clean_accuracy == 1.0
    s = xs.flatten(1) @ w
    N = xs.shape[0]
    for curve in sweep.curves:
        for sigma, acc in zip(curve.strengths.tolist(), curve.accuracy.tolist(), strict=True):
            if curve.perturbation == "white_noise":
                p = _normal_cdf(s.abs() / (sigma * w.norm()))
            elif curve.perturbation == "multiplicative_noise":
                p = _normal_cdf(s.abs() / (sigma * (w * xs.flatten(1)).norm(dim=1)))
            else:  # exact: enumerate keep / low / high for each of the T values
                p = torch.zeros(N, dtype=torch.float64)
                for pattern in itertools.product(range(3), repeat=w.numel()):
                    prob = math.prod((1 - sigma, sigma / 2, sigma / 2)[k] for k in pattern)
                    vals = torch.stack(
                        [
                            (xs[:, i, 0], torch.zeros(N), torch.ones(N))[k]
                            for i, k in enumerate(pattern)
                        ],
                        dim=1,
                    ).double()
                    p += prob * ((vals @ w > 0) == (s > 0)).double()
            se = math.sqrt(float((p * (1 - p)).sum()) / (N * N * R))
            assert abs(acc - float(p.mean())) <= STATISTICAL_SIGMAS * se + 1e-12


def test_sweep_attack_accuracy_is_the_fraction_beyond_the_margin(generator):
    model, w, xs, ys = _linear_problem(generator)
    s = (xs.flatten(1) @ w).abs()
    margins = {"l2": s / w.norm(), "linf": s / w.abs().sum()}
    grids = {
        "fgsm_l2": (0.05, 0.1, 0.2),
        "pgd_l2": (0.05, 0.1, 0.2),
        "fgsm_linf": (0.02, 0.05, 0.1),
        "pgd_linf": (0.02, 0.05, 0.1),
    }
    sweep = robustness_sweep(
        model,
        xs,
        ys,
        perturbations=list(grids),
        grids=grids,
        clip_attacks=False,
        generator=generator,
    )
    for curve in sweep.curves:
        m = margins[PERTURBATIONS[curve.perturbation].norm]
        for eps, acc in zip(curve.strengths.tolist(), curve.accuracy.tolist(), strict=True):
            beyond = float((m > eps).double().mean())
            if curve.perturbation.startswith("fgsm"):
                # One signed / normalized gradient step is optimal for a binary linear model.
                assert acc == pytest.approx(beyond, abs=1e-12)
            else:
                # No attack beats the margin; PGD reaches within 10% of it here.
                assert beyond <= acc <= float((m > 0.9 * eps).double().mean())
        assert curve.clipped is False and curve.ci_method == "wilson"
        assert curve.draws.shape == (1, 3)


def test_sweep_record_and_defaults(generator):
    params = random_params(4, 1, 3, generator=generator)
    xs = torch.rand(30, 8, 1, generator=generator, dtype=torch.float64)
    ys = logits(params, xs).argmax(1)
    sweep = robustness_sweep(params, xs, ys, n_draws=3, attack_steps=3, generator=generator)
    assert isinstance(sweep, RobustnessSweep) and sweep.clean_accuracy == 1.0
    assert tuple(c.perturbation for c in sweep.curves) == DEFAULT_PERTURBATIONS
    for c in sweep.curves:
        assert c.strengths.tolist() == list(DEFAULT_GRIDS[c.perturbation])
        assert bool((c.ci_low <= c.accuracy).all()) and bool((c.accuracy <= c.ci_high).all())
    assert sweep.curve("white_noise").draws.shape == (3, 3)
    assert sweep.curve("white_noise").clipped is False
    assert sweep.curve("salt_and_pepper").clipped is True
    assert sweep.curve("pgd_linf").clipped is True and sweep.curve("pgd_linf").kind == "attack"
    assert sweep.data_range == (float(xs.min()), float(xs.max()))
    assert sweep.seed == generator.initial_seed()
    with pytest.raises(KeyError, match="perturbation: expected one of"):
        sweep.curve("fgsm_l2")
    assert sweep.to_dict()["curves"][0]["perturbation"] == "white_noise"


def test_sweeps_are_reproducible_with_a_seed(generator):
    model, _, xs, ys = _linear_problem(generator, N=60)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        perts = ["white_noise", "salt_and_pepper", "pgd_l2"]
        return robustness_sweep(
            model, xs, ys, perturbations=perts, n_draws=2, attack_steps=2, generator=g
        ).to_dict()

    assert run(5) == run(5)
    a, b = run(5), run(6)
    assert a["curves"][0]["draws"] != b["curves"][0]["draws"]


@pytest.mark.parametrize("ci", ["wilson", "t_examples", "t_draws"])
def test_sweep_interval_methods(generator, ci):
    model, _, xs, ys = _linear_problem(generator, N=100)
    sweep = robustness_sweep(
        model, xs, ys, perturbations=["white_noise"], n_draws=4, ci=ci, generator=generator
    )
    c = sweep.curve("white_noise")
    assert c.ci_method == ci and sweep.ci_method == ci
    per_draw = c.draws  # (R, S)
    if ci == "t_draws":
        lo, hi = _t_interval(per_draw.mT, 0.95)
        torch.testing.assert_close(c.ci_low, lo)
        torch.testing.assert_close(c.ci_high, hi)


def test_interval_formulas_match_scipy():
    from scipy import stats

    for k, n in [(0, 10), (3, 10), (50, 100), (99, 100), (100, 100)]:
        ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.9, method="wilson")
        lo, hi = _wilson(torch.tensor([k / n], dtype=torch.float64), n, 0.9)
        assert float(lo[0]) == pytest.approx(ref.low, abs=1e-12)
        assert float(hi[0]) == pytest.approx(ref.high, abs=1e-12)
    x = torch.tensor([[0.6, 0.7, 0.65, 0.8]], dtype=torch.float64)
    ref = stats.t.interval(0.95, 3, loc=float(x.mean()), scale=float(x.std() / 2))
    lo, hi = _t_interval(x, 0.95)
    assert (float(lo[0]), float(hi[0])) == pytest.approx(ref, abs=1e-12)


def test_accuracy(generator):
    model, _, xs, ys = _linear_problem(generator, N=50)
    assert accuracy(model, xs, ys) == 1.0
    assert accuracy(model, xs, 1 - ys, batch_size=7) == 0.0


# --------------------------------------------------------------------- table and figure
def _two_sweeps(generator):
    model, _, xs, ys = _linear_problem(generator, N=60)
    a = robustness_sweep(
        model, xs, ys, perturbations=["white_noise", "fgsm_linf"], n_draws=2, generator=generator
    )
    b = robustness_sweep(
        model,
        xs,
        ys,
        perturbations=["salt_and_pepper"],
        grids={"salt_and_pepper": [0.5, 0.1]},
        n_draws=2,
        name="other",
        generator=generator,
    )
    return a, b


def test_comparison_table(generator):
    a, b = _two_sweeps(generator)
    table = comparison_table({"noisy": a, "plain": b})
    assert isinstance(table, ComparisonTable) and table.models == ("noisy", "plain")
    assert table.columns == (
        ("clean", 0.0),
        ("white_noise", 0.1),
        ("white_noise", 0.2),
        ("white_noise", 0.3),
        ("salt_and_pepper", 0.1),
        ("salt_and_pepper", 0.5),
        ("fgsm_linf", 0.01),
        ("fgsm_linf", 0.02),
        ("fgsm_linf", 0.05),
    )
    assert table.accuracy.shape == (2, 9)
    assert bool(torch.isnan(table.accuracy[0, 4:6]).all())
    assert bool(torch.isnan(table.accuracy[1, 1:4]).all())
    assert float(table.accuracy[1, 5]) == pytest.approx(float(b.curves[0].accuracy[0]))
    text = format_comparison_table(table)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["model", "clean", "white"] and "s&p 0.5" in lines[0]
    assert lines[2].startswith("noisy") and " - " in lines[2]
    assert "95% wilson interval" in lines[-1]
    md = format_comparison_table(table, style="markdown")
    assert md.splitlines()[1] == "|" + "---|" * 10
    assert comparison_table([a, b]).models == (a.name, "other")
    import dataclasses

    with pytest.raises(ValueError, match="one confidence level"):
        comparison_table([a, dataclasses.replace(b, confidence=0.9)])
    with pytest.raises(TypeError, match="expected RobustnessSweep"):
        comparison_table([a, "b"])
    with pytest.raises(ValueError, match="at least one RobustnessSweep"):
        comparison_table([])


def test_plot_robustness_writes_pdf_and_png(generator, tmp_path):
    a, b = _two_sweeps(generator)
    pdf, png = plot_robustness({"noisy": a, "plain": b}, tmp_path / "fig.png")
    assert (pdf, png) == (tmp_path / "fig.pdf", tmp_path / "fig.png")
    assert pdf.read_bytes()[:4] == b"%PDF"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["fig.pdf", "fig.png"]  # no temporary files
    assert plot_robustness(a, tmp_path / "other")[1].exists()
    with pytest.raises(ValueError, match="path: expected a .png or .pdf name"):
        plot_robustness(a, tmp_path / "fig.svg")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_robustness(a, tmp_path / "missing" / "fig.png")
    # several sweeps of one model (seeds) in one line; a mapping may name them
    assert plot_robustness({"seeds": [a, a]}, tmp_path / "seeds")[0].exists()
    with pytest.raises(TypeError, match=r"sweeps\['x'\]: expected RobustnessSweep"):
        plot_robustness({"x": [a, "b"]}, tmp_path / "bad")
    with pytest.raises(ValueError, match="at least one RobustnessSweep"):
        plot_robustness([], tmp_path / "none")


def test_the_core_plot_robustness_is_a_deprecated_alias_of_the_one_figure():
    import nrnn_theory
    from nrnn_theory import robustness

    for module in (nrnn_theory, robustness):
        with pytest.warns(DeprecationWarning, match="experiments.zoo_plots.plot_robustness"):
            assert module.plot_robustness is plot_robustness
        assert "plot_robustness" not in module.__all__
        with pytest.raises(AttributeError):
            module.no_such_name  # noqa: B018


def test_plot_failure_leaves_no_files(generator, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    a, _ = _two_sweeps(generator)
    (tmp_path / "fig.png").write_bytes(b"old")
    real = Figure.savefig

    def failing(self, fname, *args, format=None, **kwargs):
        if format == "png":
            raise RuntimeError("disk full")
        return real(self, fname, *args, format=format, **kwargs)

    monkeypatch.setattr(Figure, "savefig", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_robustness(a, tmp_path / "fig.png")
    assert sorted(os.listdir(tmp_path)) == ["fig.png"]  # old file kept, nothing else
    assert (tmp_path / "fig.png").read_bytes() == b"old"


# ---------------------------------------------------------------------------- bad input
def test_bad_input(generator):
    params = random_params(3, 2, 3, generator=generator)
    xs = torch.rand(10, 4, 2, generator=generator, dtype=torch.float64)
    ys = torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match="sigma: expected a number >= 0"):
        white_noise(xs, -0.1)
    with pytest.raises(ValueError, match="sigma: expected a number >= 0"):
        multiplicative_noise(xs, -1.0)
    with pytest.raises(ValueError, match=r"alpha: expected a number in \[0, 1\]"):
        salt_and_pepper(xs, 1.5)
    with pytest.raises(ValueError, match=r"grids\['white_noise'\] \(sigma\): expected a number"):
        robustness_sweep(params, xs, ys, grids={"white_noise": [0.1, -0.2]})
    with pytest.raises(
        ValueError, match=r"grids\['salt_and_pepper'\] \(alpha\): expected .* \[0, 1\]"
    ):
        robustness_sweep(params, xs, ys, grids={"salt_and_pepper": [0.5, 1.2]})
    with pytest.raises(ValueError, match="expected a non-empty sequence"):
        robustness_sweep(params, xs, ys, grids={"white_noise": []})
    with pytest.raises(ValueError, match="xs: expected at least one example"):
        robustness_sweep(params, xs[:0], ys[:0])
    with pytest.raises(
        ValueError, match=r"xs: expected shape \(\?, \?, 2\) \(B, T, D\) to match U"
    ):
        robustness_sweep(params, torch.rand(10, 4, 5, dtype=torch.float64), ys)

    def other_task(x):  # a model for another task's input size
        return torch.nn.functional.linear(x.flatten(1), torch.ones(3, 20, dtype=x.dtype))

    with pytest.raises(ValueError, match=r"the model could not be evaluated on inputs of shape"):
        robustness_sweep(other_task, xs, ys)
    with pytest.raises(ValueError, match=r"labels: expected shape \(10,\)"):
        robustness_sweep(params, xs, ys[:5])
    with pytest.raises(ValueError, match="perturbations: expected one of"):
        robustness_sweep(params, xs, ys, perturbations=["rotation"])
    with pytest.raises(ValueError, match="grids: got a grid for 'pgd_l2'"):
        robustness_sweep(params, xs, ys, perturbations=["white_noise"], grids={"pgd_l2": [1]})
    with pytest.raises(ValueError, match="'t_draws' needs n_draws >= 2"):
        robustness_sweep(params, xs, ys, n_draws=1, ci="t_draws")
    with pytest.raises(ValueError, match=r"confidence: expected a level in \(0, 1\)"):
        robustness_sweep(params, xs, ys, confidence=1.0)
    with pytest.raises(ValueError, match="data_range: expected low < high"):
        robustness_sweep(params, torch.ones(10, 4, 2, dtype=torch.float64), ys)
    with pytest.raises(ValueError, match="model: the attack 'pgd_l2' needs a model"):
        perturb("pgd_l2", xs, 0.1)
    with pytest.raises(TypeError, match="model: expected NRNNParams or a callable"):
        robustness_sweep(3, xs, ys)
