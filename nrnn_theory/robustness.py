r"""Input perturbations at inference and accuracy-versus-strength sweeps (claim C5).

docs/theory/experiments.md names the four inference-time perturbations of this line of work;
their exact definitions in the paper are unknown, so the package defines them
(:math:`n \sim \mathcal N(0, I)` independently per input value):

(a) ``"white_noise"``: :math:`x + \sigma n`;
(b) ``"multiplicative_noise"``: :math:`x\odot(1 + \sigma n)`;
(c) ``"salt_and_pepper"``: each value is set, with probability :math:`\alpha`, to the
    data minimum or maximum (each with probability :math:`\alpha/2`);
(d) adversarial: ``"fgsm_linf"``, ``"fgsm_l2"``, ``"pgd_linf"``, ``"pgd_l2"``
    (:mod:`nrnn_theory.attacks`) with budget :math:`\epsilon`, norms over all T*D
    values of a sequence.

**Clipping.** Salt-and-pepper values lie in the data range by construction.
Adversarial inputs are clipped to the data range by default (``clip_attacks``):
an attack is a search over valid inputs. White and multiplicative noise are *not*
clipped by default (``clip_noise``), as their definitions above are stated; both
choices are recorded in the result. The data range is ``(xs.min(), xs.max())`` of
the test set unless ``data_range`` is given.

**Default grids** (:data:`DEFAULT_GRIDS`, overridable per call): white and
multiplicative noise :math:`\sigma \in \{0.1, 0.2, 0.3\}` and salt-and-pepper
:math:`\alpha \in \{0.03, 0.05, 0.1\}`, the grids recalled for MNIST scaled to
[0, 1] in the Lipschitz-RNN line of work (docs/theory/experiments.md, [recalled]); they assume
inputs of unit range. The adversarial grids are this package's choice (the paper's
budgets are unknown): :math:`\epsilon \in \{0.01, 0.02, 0.05\}` for
:math:`\ell_\infty` and :math:`\{0.1, 0.3, 1.0\}` for :math:`\ell_2`.

**Randomness.** Each noise draw perturbs the whole test set once and reuses the
same standard draws for every strength of the grid (common random numbers), so a
curve is a smooth function of the strength and differences between strengths are
not blurred by independent noise; salt-and-pepper masks are nested in
:math:`\alpha`. Everything comes from the keyword-only ``generator``.

**Confidence intervals** (:data:`CI_METHODS`), per point, at level ``confidence``:

* ``"wilson"`` (default): Wilson score interval of the accuracy over the N test
  examples, with the accuracy averaged over the draws. Averaging over draws can
  only lower the per-example variance below :math:`p(1-p)`, so the interval is
  conservative for the expected accuracy over examples and noise.
* ``"t_examples"``: Student-t interval over the N per-example accuracies (each
  averaged over the draws); accounts for both sources of variation, but collapses
  when every example is always right or always wrong.
* ``"t_draws"``: Student-t interval over the R draw accuracies; only the noise's
  variation, the test set held fixed (needs ``n_draws >= 2``).

Attack curves are deterministic up to the PGD random starts and use one run with
the Wilson interval.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from nrnn_theory import _vocabulary
from nrnn_theory._contract import (
    check_choice,
    check_nonnegative,
    check_positive_int,
    check_real,
    check_tensor,
)
from nrnn_theory._model import as_model, check_inputs, evaluate, input_gradient
from nrnn_theory._record import Result
from nrnn_theory._types import NRNNParams
from nrnn_theory.attacks import ATTACK_LOSSES, run_pgd, unit_direction
from nrnn_theory.losses import check_labels


__all__ = [
    "CI_METHODS",
    "DEFAULT_GRIDS",
    "DEFAULT_PERTURBATIONS",
    "PERTURBATIONS",
    "ComparisonTable",
    "RobustnessCurve",
    "RobustnessSweep",
    "accuracy",
    "comparison_table",
    "format_comparison_table",
    "multiplicative_noise",
    "perturb",
    "robustness_sweep",
    "salt_and_pepper",
    "white_noise",
]


# ---------------------------------------------------------------------- records
@dataclass(frozen=True)
class RobustnessCurve(Result):
    r"""Accuracy against the strength of one input perturbation.

    Attributes
    ----------
    perturbation : str
        Registry name (:data:`nrnn_theory.robustness.PERTURBATIONS`).
    kind : str
        ``"noise"`` (random, drawn ``n_draws`` times) or ``"attack"``.
    strengths : Tensor, shape (S,), float64
    accuracy : Tensor, shape (S,), float64
        Accuracy averaged over the draws.
    ci_low, ci_high : Tensor, shape (S,), float64
        Confidence interval of each point (method in the sweep record).
    draws : Tensor, shape (R, S), float64
        Accuracy of each draw.
    clipped : bool
        Whether perturbed inputs were clipped to the data range.
    ci_method : str
        How ``ci_low``/``ci_high`` were computed
        (:data:`nrnn_theory.robustness.CI_METHODS`).
    """

    perturbation: str
    kind: str
    strengths: Tensor
    accuracy: Tensor
    ci_low: Tensor
    ci_high: Tensor
    draws: Tensor
    clipped: bool
    ci_method: str


@dataclass(frozen=True)
class RobustnessSweep(Result):
    r"""Accuracy-versus-strength curves of one model under several perturbations.

    Attributes
    ----------
    name : str
        Model name used in tables and figures.
    n_examples : int
    clean_accuracy : float
    clean_ci : tuple of float
    curves : tuple of RobustnessCurve
    n_draws : int
        Random draws per noise strength (attacks: one run, random starts seeded).
    confidence : float
    ci_method : str
    data_range : tuple of float
        ``(low, high)``: salt-and-pepper values and the clipping box.
    clip_noise, clip_attacks : bool
    attack : dict
        Attack settings (steps, loss, step-size rule, random start).
    seed : int or None
        ``initial_seed()`` of the generator passed, for the record.
    """

    name: str
    n_examples: int
    clean_accuracy: float
    clean_ci: tuple[float, float]
    curves: tuple[RobustnessCurve, ...]
    n_draws: int
    confidence: float
    ci_method: str
    data_range: tuple[float, float]
    clip_noise: bool
    clip_attacks: bool
    attack: dict[str, object]
    seed: int | None

    def curve(self, perturbation: str) -> RobustnessCurve:
        """The curve of one perturbation, by registry name.

        Parameters
        ----------
        perturbation : str
            A key of :data:`~nrnn_theory.robustness.PERTURBATIONS` that the sweep ran.

        Returns
        -------
        RobustnessCurve
        """
        for c in self.curves:
            if c.perturbation == perturbation:
                return c
        have = ", ".join(repr(c.perturbation) for c in self.curves)
        raise KeyError(f"perturbation: expected one of {have}, got {perturbation!r}")


@dataclass(frozen=True)
class ComparisonTable(Result):
    r"""Accuracy of several models under each perturbation and strength.

    Attributes
    ----------
    models : tuple of str
        Row labels.
    columns : tuple of (str, float)
        ``(perturbation, strength)``; the first is ``("clean", 0.0)``.
    accuracy, ci_low, ci_high : Tensor, shape (M, K), float64
        ``nan`` where a model was not evaluated on a column.
    confidence : float
    ci_method : str
    """

    models: tuple[str, ...]
    columns: tuple[tuple[str, float], ...]
    accuracy: Tensor
    ci_low: Tensor
    ci_high: Tensor
    confidence: float
    ci_method: str

    def to_pandas(self):
        """The table as a ``pandas.DataFrame`` in long form (needs pandas).

        Returns
        -------
        pandas.DataFrame
            One row per model and column: ``model``, ``perturbation``, ``strength``,
            ``accuracy``, ``ci_low``, ``ci_high``.
        """
        from nrnn_theory._record import require_pandas

        pd = require_pandas()
        rows = [
            {
                "model": model,
                "perturbation": name,
                "strength": strength,
                "accuracy": float(self.accuracy[i, j]),
                "ci_low": float(self.ci_low[i, j]),
                "ci_high": float(self.ci_high[i, j]),
            }
            for i, model in enumerate(self.models)
            for j, (name, strength) in enumerate(self.columns)
        ]
        return pd.DataFrame(rows)


# ----------------------------------------------------------------------- perturbations
def _check_strength(name: str, value: object, upper: float | None = None) -> float:
    v = check_nonnegative(name, value)
    if upper is not None and v > upper:
        raise ValueError(f"{name}: expected a number in [0, {upper:g}], got {v}")
    return v


def _check_range(low: object, high: object, name: str = "data_range") -> tuple[float, float]:
    lo, hi = check_real("low", low), check_real("high", high)
    if not lo < hi:
        raise ValueError(f"{name}: expected low < high, got ({lo}, {hi})")
    return lo, hi


def _apply_white(xs: Tensor, n: Tensor, sigma: float) -> Tensor:
    return xs + sigma * n


def _apply_mult(xs: Tensor, n: Tensor, sigma: float) -> Tensor:
    return xs * (1.0 + sigma * n)


def _apply_sp(xs: Tensor, u: Tensor, alpha: float, lo: float, hi: float) -> Tensor:
    # One uniform per value: u < alpha/2 -> low ("pepper"), alpha/2 <= u < alpha -> high.
    # Tensors, not Python floats: torch.where would build the fill in the default dtype.
    fill = torch.where(u < 0.5 * alpha, xs.new_tensor(lo), xs.new_tensor(hi))
    return torch.where(u < alpha, fill, xs)


def _gaussian_perturbation(apply, xs, sigma, bounds, generator) -> Tensor:
    """``apply(xs, n, sigma)`` with standard normal ``n`` of the inputs' shape, clipped to
    ``bounds`` if given (the checked body of the two white-noise families)."""
    xs = check_tensor("xs", xs)
    sigma = _check_strength("sigma", sigma)
    n = torch.randn(xs.shape, dtype=xs.dtype, device=xs.device, generator=generator)
    out = apply(xs, n, sigma)
    return out if bounds is None else out.clamp(*_check_range(*bounds, name="bounds"))


def white_noise(
    xs: Tensor,
    sigma: float,
    *,
    bounds: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Additive white noise :math:`x + \sigma n`, :math:`n\sim\mathcal N(0, I)` per value.

    Parameters
    ----------
    xs : Tensor, shape (B, T, D)
    sigma : float
        Standard deviation, >= 0; 0 returns ``xs`` unchanged.
    bounds : (float, float), optional
        Clip the result to this box (default: no clipping).
    generator : torch.Generator, optional

    Returns
    -------
    Tensor, shape (B, T, D)

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> white_noise(torch.zeros(1, 3, 1), 0.1, generator=g).squeeze().tolist()
    [0.154..., -0.029..., -0.217...]
    """
    return _gaussian_perturbation(_apply_white, xs, sigma, bounds, generator)


def multiplicative_noise(
    xs: Tensor,
    sigma: float,
    *,
    bounds: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Multiplicative white noise :math:`x\odot(1 + \sigma n)`, :math:`n\sim\mathcal N(0, I)`.

    Zero inputs stay zero; the perturbation's standard deviation is
    :math:`\sigma|x|` per value.

    Parameters
    ----------
    xs : Tensor, shape (B, T, D)
    sigma : float
        Relative standard deviation, >= 0; 0 returns ``xs`` unchanged.
    bounds : (float, float), optional
        Clip the result to this box (default: no clipping).
    generator : torch.Generator, optional

    Returns
    -------
    Tensor, shape (B, T, D)

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> multiplicative_noise(torch.ones(1, 2, 1), 0.0, generator=g).squeeze().tolist()
    [1.0, 1.0]
    """
    return _gaussian_perturbation(_apply_mult, xs, sigma, bounds, generator)


def salt_and_pepper(
    xs: Tensor,
    alpha: float,
    *,
    low: float | None = None,
    high: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Salt-and-pepper noise of density :math:`\alpha`.

    Each input value independently becomes ``low`` with probability
    :math:`\alpha/2`, ``high`` with probability :math:`\alpha/2`, and is kept
    otherwise.

    Parameters
    ----------
    xs : Tensor, shape (B, T, D)
    alpha : float
        Density in [0, 1].
    low, high : float, optional
        The data minimum and maximum (default ``xs.min()``, ``xs.max()``).
    generator : torch.Generator, optional

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> salt_and_pepper(torch.full((1, 6, 1), 0.5), 1.0, low=0.0, high=1.0,
    ...                 generator=g).squeeze().tolist()
    [0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    """
    xs = check_tensor("xs", xs)
    alpha = _check_strength("alpha", alpha, upper=1.0)
    if xs.numel() == 0 and (low is None or high is None):
        return xs.clone()  # nothing to corrupt (and no data range to take it from)
    lo = float(xs.min()) if low is None else low
    hi = float(xs.max()) if high is None else high
    if not (low is None and high is None and lo == hi):  # constant data: salt = pepper
        lo, hi = _check_range(lo, hi)
    u = torch.rand(xs.shape, dtype=xs.dtype, device=xs.device, generator=generator)
    return _apply_sp(xs, u, alpha, lo, hi)


@dataclass(frozen=True)
class Perturbation:
    """A registered perturbation: how to draw it, apply it and label it."""

    name: str
    kind: str  # "noise" or "attack"
    symbol: str  # strength symbol in labels
    label: str  # long label (figure panels)
    short: str  # table header
    panel: int  # 0-3: (a)-(d)
    upper: float | None = None  # largest allowed strength
    norm: str | None = None  # attacks
    iterative: bool = False  # attacks: PGD rather than FGSM


#: Registered perturbations by name (docs/theory/experiments.md, package definitions).
PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation("white_noise", "noise", "sigma", "white noise", "white", 0),
        Perturbation("multiplicative_noise", "noise", "sigma", "multiplicative noise", "mult", 1),
        Perturbation("salt_and_pepper", "noise", "alpha", "salt and pepper", "s&p", 2, upper=1.0),
        Perturbation("fgsm_linf", "attack", "eps", "FGSM (linf)", "fgsm-linf", 3, norm="linf"),
        Perturbation("fgsm_l2", "attack", "eps", "FGM (l2)", "fgsm-l2", 3, norm="l2"),
        Perturbation(
            "pgd_linf", "attack", "eps", "PGD (linf)", "pgd-linf", 3, norm="linf", iterative=True
        ),
        Perturbation("pgd_l2", "attack", "eps", "PGD (l2)", "pgd-l2", 3, norm="l2", iterative=True),
    )
}

#: Default strength grids (module docstring: the noise grids are [recalled] for MNIST
#: in [0, 1], docs/theory/experiments.md; the attack budgets are this package's choice).
DEFAULT_GRIDS: dict[str, tuple[float, ...]] = dict(_vocabulary.DEFAULT_GRIDS)

#: The four families of docs/theory/experiments.md, one attack for (d).
DEFAULT_PERTURBATIONS: tuple[str, ...] = (
    "white_noise",
    "multiplicative_noise",
    "salt_and_pepper",
    "pgd_linf",
)


def _draw(name: str, xs: Tensor, generator) -> Tensor:
    if name == "salt_and_pepper":
        return torch.rand(xs.shape, dtype=xs.dtype, device=xs.device, generator=generator)
    return torch.randn(xs.shape, dtype=xs.dtype, device=xs.device, generator=generator)


def _apply(name: str, xs: Tensor, draw: Tensor, strength: float, lo: float, hi: float) -> Tensor:
    if name == "white_noise":
        return _apply_white(xs, draw, strength)
    if name == "multiplicative_noise":
        return _apply_mult(xs, draw, strength)
    return _apply_sp(xs, draw, strength, lo, hi)


def perturb(
    name: str,
    xs: Tensor,
    strength: float,
    *,
    model: NRNNParams | Callable[[Tensor], Tensor] | None = None,
    labels: Tensor | None = None,
    data_range: tuple[float, float] | None = None,
    clip: bool | None = None,
    attack_steps: int = 20,
    attack_loss: Literal["ce", "margin"] = "ce",
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Apply one registered perturbation at one strength.

    Parameters
    ----------
    name : str
        A key of :data:`PERTURBATIONS`.
    xs : Tensor, shape (B, T, D)
    strength : float
        :math:`\sigma`, :math:`\alpha` (at most 1) or :math:`\epsilon`; >= 0.
    model, labels
        Needed by the attacks only (``labels`` default to the predictions).
    data_range : (float, float), optional
        Data minimum and maximum (default ``xs.min(), xs.max()``).
    clip : bool, optional
        Clip to ``data_range``; default True for attacks, False for noise.
    attack_steps, attack_loss
        PGD steps and the loss followed by FGSM/PGD (``"ce"`` or ``"margin"``).
    generator : torch.Generator, optional

    Returns
    -------
    Tensor, shape (B, T, D)

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> perturb("multiplicative_noise", torch.ones(1, 2, 1), 0.5, generator=g).shape
    torch.Size([1, 2, 1])
    """
    check_choice("name", name, tuple(PERTURBATIONS))
    spec = PERTURBATIONS[name]
    xs = check_tensor("xs", xs)
    strength = _check_strength(f"strength ({spec.symbol})", strength, spec.upper)
    needs_range = (
        name == "salt_and_pepper" or bool(clip) or (spec.kind == "attack" and clip is None)
    )
    lo, hi = _resolve_range(xs, data_range, required=needs_range)
    if spec.kind == "noise":
        out = _apply(name, xs, _draw(name, xs, generator), strength, lo, hi)
        return out.clamp(lo, hi) if clip else out
    if model is None:
        raise ValueError(f"model: the attack {name!r} needs a model, got None")
    fn = as_model(model)
    xs = check_inputs(model, xs).detach()
    scores = evaluate(fn, xs)
    y = scores.argmax(1) if labels is None else check_labels(labels, *scores.shape, xs.device)
    bounds = (lo, hi) if (clip is None or clip) else None
    return _attack(fn, xs, y, spec, strength, bounds, attack_steps, attack_loss, generator)


def _attack(fn, xs, y, spec, eps, bounds, steps, loss, generator) -> Tensor:
    e = torch.full((xs.shape[0], 1, 1), eps, dtype=xs.dtype, device=xs.device)
    lossf = ATTACK_LOSSES[loss]
    if spec.iterative:
        adv, _, _ = run_pgd(
            fn, xs, y, e, spec.norm, steps, (2.5 / steps) * e, lossf, True, bounds, generator
        )
        return adv
    _, g = input_gradient(fn, xs, lambda s: lossf(s, y))
    out = xs + e * unit_direction(g, spec.norm)
    return out if bounds is None else out.clamp(*bounds)


def _resolve_range(xs: Tensor, data_range, required: bool = True) -> tuple[float, float]:
    """The data range; a degenerate inferred range is an error only when ``required``."""
    if data_range is None:
        lo, hi = float(xs.min()), float(xs.max())
        return _check_range(lo, hi) if required else (lo, hi)
    if not isinstance(data_range, tuple | list) or len(data_range) != 2:
        raise TypeError(f"data_range: expected None or a pair (low, high), got {data_range!r}")
    return _check_range(*data_range)


# --------------------------------------------------------------------- intervals
def _z(confidence: float) -> float:
    return statistics.NormalDist().inv_cdf(0.5 * (1.0 + confidence))


def _wilson(p: Tensor, n: int, confidence: float) -> tuple[Tensor, Tensor]:
    z = _z(confidence)
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * torch.sqrt((p * (1 - p) / n + z * z / (4 * n * n)).clamp_min(0.0))
    return (centre - half).clamp(0.0, 1.0), (centre + half).clamp(0.0, 1.0)


def _t_interval(samples: Tensor, confidence: float) -> tuple[Tensor, Tensor]:
    """Student-t interval of the mean over the last dimension."""
    from scipy import stats

    m = samples.shape[-1]
    mean = samples.mean(dim=-1)
    se = samples.std(dim=-1, correction=1) / math.sqrt(m)
    q = float(stats.t.ppf(0.5 * (1.0 + confidence), df=m - 1))
    return (mean - q * se).clamp(0.0, 1.0), (mean + q * se).clamp(0.0, 1.0)


def _ci_wilson(draws, per_example, confidence):
    return _wilson(per_example.mean(dim=-1), per_example.shape[-1], confidence)


def _ci_t_examples(draws, per_example, confidence):
    return _t_interval(per_example, confidence)


def _ci_t_draws(draws, per_example, confidence):
    return _t_interval(draws.mT, confidence)


#: Confidence-interval methods (module docstring). Each maps the draw accuracies
#: (R, S), the per-example accuracies averaged over draws (S, N) and the level to
#: ``(low, high)`` of shape (S,).
CI_METHODS: dict[str, Callable[[Tensor, Tensor, float], tuple[Tensor, Tensor]]] = {
    "wilson": _ci_wilson,
    "t_examples": _ci_t_examples,
    "t_draws": _ci_t_draws,
}


# ---------------------------------------------------------------------------- sweeps
def accuracy(
    model: NRNNParams | Callable[[Tensor], Tensor],
    xs: Tensor,
    labels: Tensor,
    *,
    batch_size: int | None = 1000,
) -> float:
    """Fraction of ``xs`` (B, T, D) that ``model`` classifies as ``labels`` (B,).

    Parameters
    ----------
    model : NRNNParams or callable
        Parameters (their clean logits are used) or any callable ``xs -> logits (B, C)``.
    xs : Tensor, shape (B, T, D)
    labels : Tensor, shape (B,)
        Class indices.
    batch_size : int or None
        Evaluate in batches of this size (default 1000) to bound memory; ``None``: all at
        once.

    Returns
    -------
    float
        In [0, 1].

    Examples
    --------
    >>> model = lambda x: torch.cat([x.sum((1, 2))[:, None], torch.zeros(len(x), 1)], 1)
    >>> accuracy(model, torch.tensor([[[1.0]], [[-1.0]]]), torch.tensor([0, 0]))
    0.5
    """
    fn = as_model(model)
    xs = check_inputs(model, xs)
    if batch_size is not None:
        check_positive_int("batch_size", batch_size)
    scores = evaluate(fn, xs, batch_size=batch_size)
    y = check_labels(labels, *scores.shape, scores.device)
    return float((scores.argmax(dim=1) == y).double().mean())


def _check_grid(name: str, grid: object) -> tuple[float, ...]:
    spec = PERTURBATIONS[name]
    if isinstance(grid, Tensor):
        grid = grid.tolist()
    if isinstance(grid, int | float) or not isinstance(grid, Sequence) or len(grid) == 0:
        raise ValueError(
            f"grids[{name!r}]: expected a non-empty sequence of strengths, got {grid!r}"
        )
    return tuple(_check_strength(f"grids[{name!r}] ({spec.symbol})", v, spec.upper) for v in grid)


def robustness_sweep(
    model: NRNNParams | Callable[[Tensor], Tensor],
    xs: Tensor,
    labels: Tensor,
    *,
    perturbations: Sequence[str] = DEFAULT_PERTURBATIONS,
    grids: Mapping[str, Sequence[float]] | None = None,
    n_draws: int = 5,
    confidence: float = 0.95,
    ci: Literal["wilson", "t_examples", "t_draws"] = "wilson",
    data_range: tuple[float, float] | None = None,
    clip_noise: bool = False,
    clip_attacks: bool = True,
    attack_steps: int = 20,
    attack_loss: Literal["ce", "margin"] = "ce",
    batch_size: int = 500,
    name: str = "model",
    generator: torch.Generator | None = None,
) -> RobustnessSweep:
    r"""Accuracy under each perturbation over a grid of strengths, with intervals.

    For each perturbation and strength, the test accuracy of ``model`` on the
    perturbed inputs, averaged over ``n_draws`` random draws (noise) or from one
    run (attacks), with a confidence interval per point (module docstring).

    Parameters
    ----------
    model : NRNNParams or callable
        ``model(xs) -> logits (B, C)``, eval mode.
    xs : Tensor, shape (N, T, D)
        Test inputs (N >= 1).
    labels : Tensor, shape (N,)
        True classes.
    perturbations : sequence of str
        Keys of :data:`PERTURBATIONS`; default the four families
        :data:`DEFAULT_PERTURBATIONS`.
    grids : mapping, optional
        Strengths per perturbation, overriding :data:`DEFAULT_GRIDS`. Strengths
        must be >= 0 (salt-and-pepper densities at most 1).
    n_draws : int
        Random draws per noise strength.
    confidence : float
        Level of the intervals, in (0, 1).
    ci : {"wilson", "t_examples", "t_draws"}
        Interval for the noise curves (:data:`CI_METHODS`); attack curves and the
        clean accuracy always use ``"wilson"``.
    data_range : (float, float), optional
        Data minimum and maximum: the salt-and-pepper values and the clipping box.
        Default: the test set's ``(min, max)``.
    clip_noise, clip_attacks : bool
        Clip noisy (default no) and adversarial (default yes) inputs to
        ``data_range``.
    attack_steps : int
        PGD steps (step size ``2.5 eps / steps``, random start).
    attack_loss : {"ce", "margin"}
        Loss followed by FGSM and PGD.
    batch_size : int
        Examples per model call.
    name : str
        Model name for tables and figures.
    generator : torch.Generator, optional
        All randomness (noise draws, PGD starts); ``None`` means fresh randomness.
        Results are reproducible for the same generator state and ``batch_size``.

    Returns
    -------
    RobustnessSweep

    References
    ----------
    .. [1] docs/theory/experiments.md (perturbations (a)-(d), recalled grids);
       docs/theory/index.md claim C5.

    Examples
    --------
    >>> model = lambda x: torch.cat([x.sum((1, 2))[:, None], torch.zeros(len(x), 1)], 1)
    >>> xs = torch.rand(20, 3, 1, generator=torch.Generator().manual_seed(0)) - 0.3
    >>> ys = (xs.sum((1, 2)) < 0).long()
    >>> g = torch.Generator().manual_seed(0)
    >>> sweep = robustness_sweep(model, xs, ys, perturbations=["white_noise"], n_draws=2,
    ...                          generator=g)
    >>> sweep.clean_accuracy, sweep.curve("white_noise").strengths.tolist()
    (1.0, [0.1, 0.2, 0.3])
    """
    fn = as_model(model)
    xs = check_inputs(model, xs).detach()
    perturbations = tuple(perturbations)
    if not perturbations:
        raise ValueError("perturbations: expected at least one name, got an empty sequence")
    for p in perturbations:
        check_choice("perturbations", p, tuple(PERTURBATIONS))
    grids = dict(grids or {})
    for key in grids:
        if key not in perturbations:
            raise ValueError(
                f"grids: got a grid for {key!r}, which is not among the perturbations "
                f"{perturbations}"
            )
    resolved = {p: _check_grid(p, grids.get(p, DEFAULT_GRIDS[p])) for p in perturbations}
    n_draws = check_positive_int("n_draws", n_draws)
    confidence = check_real("confidence", confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a level in (0, 1), got {confidence}")
    check_choice("ci", ci, tuple(CI_METHODS))
    if ci == "t_draws" and n_draws < 2:
        raise ValueError(f"ci: 't_draws' needs n_draws >= 2, got n_draws = {n_draws}")
    check_choice("attack_loss", attack_loss, tuple(ATTACK_LOSSES))
    attack_steps = check_positive_int("attack_steps", attack_steps)
    batch_size = check_positive_int("batch_size", batch_size)
    needs_range = (
        "salt_and_pepper" in perturbations
        or clip_noise
        or (clip_attacks and any(PERTURBATIONS[p].kind == "attack" for p in perturbations))
    )
    lo, hi = _resolve_range(xs, data_range, required=needs_range)
    N = xs.shape[0]

    scores = evaluate(fn, xs, batch_size=batch_size)
    y = check_labels(labels, N, scores.shape[1], scores.device)
    clean = (scores.argmax(dim=1) == y).double()
    clean_acc = float(clean.mean())
    c_lo, c_hi = _wilson(clean.mean().reshape(1), N, confidence)

    def correct_on(x: Tensor) -> Tensor:
        return (evaluate(fn, x, batch_size=batch_size).argmax(dim=1) == y).double()

    curves = []
    for pname in perturbations:
        spec = PERTURBATIONS[pname]
        grid = resolved[pname]
        S = len(grid)
        if spec.kind == "noise":
            R = n_draws
            correct = torch.empty(R, S, N, dtype=torch.float64, device=xs.device)
            for r in range(R):
                draw = _draw(pname, xs, generator)
                for i, strength in enumerate(grid):
                    x_p = _apply(pname, xs, draw, strength, lo, hi)
                    if clip_noise:
                        x_p = x_p.clamp(lo, hi)
                    correct[r, i] = correct_on(x_p)
            method = ci
        else:
            R = 1
            correct = torch.empty(1, S, N, dtype=torch.float64, device=xs.device)
            bounds = (lo, hi) if clip_attacks else None
            for i, eps in enumerate(grid):
                parts = []
                for xb, yb in zip(xs.split(batch_size), y.split(batch_size), strict=True):
                    adv = _attack(
                        fn, xb, yb, spec, eps, bounds, attack_steps, attack_loss, generator
                    )
                    parts.append(adv)
                correct[0, i] = correct_on(torch.cat(parts))
            method = "wilson"
        if pname == "salt_and_pepper":
            clipped = True  # its values are the data minimum and maximum
        else:
            clipped = clip_noise if spec.kind == "noise" else clip_attacks
        draws = correct.mean(dim=2)  # (R, S)
        per_example = correct.mean(dim=0)  # (S, N)
        ci_lo, ci_hi = CI_METHODS[method](draws, per_example, confidence)
        curves.append(
            RobustnessCurve(
                perturbation=pname,
                kind=spec.kind,
                strengths=torch.tensor(grid, dtype=torch.float64),
                accuracy=draws.mean(dim=0).cpu(),
                ci_low=ci_lo.cpu(),
                ci_high=ci_hi.cpu(),
                draws=draws.cpu(),
                clipped=clipped,
                ci_method=method,
            )
        )
    return RobustnessSweep(
        name=str(name),
        n_examples=N,
        clean_accuracy=clean_acc,
        clean_ci=(float(c_lo[0]), float(c_hi[0])),
        curves=tuple(curves),
        n_draws=n_draws,
        confidence=confidence,
        ci_method=ci,
        data_range=(lo, hi),
        clip_noise=bool(clip_noise),
        clip_attacks=bool(clip_attacks),
        attack={
            "steps": attack_steps,
            "loss": attack_loss,
            "step_size": "2.5 * eps / steps",
            "random_start": True,
        },
        seed=None if generator is None else int(generator.initial_seed()),
    )


# -------------------------------------------------------------------- comparison table
def _check_sweep(s: object, key: object) -> RobustnessSweep:
    if not isinstance(s, RobustnessSweep):
        raise TypeError(f"sweeps[{key!r}]: expected RobustnessSweep, got {type(s).__name__}")
    return s


def _as_sweeps(sweeps) -> list[RobustnessSweep]:
    if isinstance(sweeps, RobustnessSweep):
        out = [sweeps]
    elif isinstance(sweeps, Mapping):
        out = []
        for key, s in sweeps.items():
            s = _check_sweep(s, key)
            out.append(s if s.name == str(key) else dataclasses.replace(s, name=str(key)))
    elif isinstance(sweeps, Sequence) and not isinstance(sweeps, str):
        out = [_check_sweep(s, i) for i, s in enumerate(sweeps)]
    else:
        raise TypeError(
            "sweeps: expected a RobustnessSweep, a sequence of them or a mapping name -> "
            f"sweep, got {type(sweeps).__name__}"
        )
    if not out:
        raise ValueError("sweeps: expected at least one RobustnessSweep, got none")
    return out


def comparison_table(
    sweeps: RobustnessSweep | Sequence[RobustnessSweep] | Mapping[str, RobustnessSweep],
) -> ComparisonTable:
    """Rows: models; columns: clean, then perturbation x strength; cells: accuracy and CI.

    Parameters
    ----------
    sweeps : RobustnessSweep, sequence or mapping name -> sweep
        A mapping renames the rows. Sweeps may cover different perturbations or
        strengths; missing cells are ``nan``. All must use the same ``confidence``.

    Returns
    -------
    ComparisonTable
        Columns ordered as :data:`PERTURBATIONS`, strengths ascending.

    Examples
    --------
    >>> model = lambda x: torch.cat([x.sum((1, 2))[:, None], torch.zeros(len(x), 1)], 1)
    >>> xs = torch.rand(10, 3, 1, generator=torch.Generator().manual_seed(0))
    >>> ys = torch.zeros(10, dtype=torch.long)
    >>> s = robustness_sweep(model, xs, ys, perturbations=["salt_and_pepper"], n_draws=1,
    ...                      generator=torch.Generator().manual_seed(0))
    >>> comparison_table({"net": s}).columns[:2]
    (('clean', 0.0), ('salt_and_pepper', 0.03))
    """
    sweeps = _as_sweeps(sweeps)
    levels = {s.confidence for s in sweeps}
    if len(levels) > 1:
        raise ValueError(f"sweeps: expected one confidence level, got {sorted(levels)}")
    order = {name: i for i, name in enumerate(PERTURBATIONS)}
    keys = sorted(
        {(c.perturbation, float(v)) for s in sweeps for c in s.curves for v in c.strengths},
        key=lambda k: (order[k[0]], k[1]),
    )
    columns = (("clean", 0.0), *keys)
    M, K = len(sweeps), len(columns)
    acc = torch.full((M, K), math.nan, dtype=torch.float64)
    lo = acc.clone()
    hi = acc.clone()
    index = {k: j for j, k in enumerate(columns)}
    for i, s in enumerate(sweeps):
        acc[i, 0] = s.clean_accuracy
        lo[i, 0], hi[i, 0] = s.clean_ci
        for c in s.curves:
            for t, v in enumerate(c.strengths.tolist()):
                j = index[(c.perturbation, float(v))]
                acc[i, j], lo[i, j], hi[i, j] = c.accuracy[t], c.ci_low[t], c.ci_high[t]
    methods = sorted({s.ci_method for s in sweeps})
    return ComparisonTable(
        models=tuple(s.name for s in sweeps),
        columns=columns,
        accuracy=acc,
        ci_low=lo,
        ci_high=hi,
        confidence=levels.pop(),
        ci_method="/".join(methods),
    )


TableStyle = Literal["text", "markdown"]
_STYLES: tuple[str, ...] = ("text", "markdown")


def _header(col: tuple[str, float]) -> str:
    name, v = col
    if name == "clean":
        return "clean"
    return f"{PERTURBATIONS[name].short} {v:g}"


def format_comparison_table(
    table: ComparisonTable, *, style: TableStyle = "text", digits: int = 1
) -> str:
    r"""Render a :class:`ComparisonTable`: cells ``accuracy ± half-width`` in percent.

    The half-width is the larger side of the (possibly asymmetric) interval, so
    ``a ± w`` always contains it; the exact bounds are in the table record.

    Parameters
    ----------
    table : ComparisonTable
    style : {"text", "markdown"}
    digits : int
        Decimals of the percentages.

    Examples
    --------
    >>> t = ComparisonTable(models=("net",), columns=(("clean", 0.0),),
    ...     accuracy=torch.tensor([[0.9]]), ci_low=torch.tensor([[0.85]]),
    ...     ci_high=torch.tensor([[0.93]]), confidence=0.95, ci_method="wilson")
    >>> print(format_comparison_table(t, style="markdown"))
    | model | clean |
    |---|---|
    | net | 90.0 ± 5.0 |
    <BLANKLINE>
    cells: accuracy (%) ± the larger side of the 95% wilson interval
    """
    if not isinstance(table, ComparisonTable):
        raise TypeError(f"table: expected ComparisonTable, got {type(table).__name__}")
    check_choice("style", style, _STYLES)
    check_positive_int("digits", digits, minimum=0)
    heads = ["model"] + [_header(c) for c in table.columns]
    rows = []
    for i, m in enumerate(table.models):
        cells = [m]
        for j in range(len(table.columns)):
            a = float(table.accuracy[i, j])
            if math.isnan(a):
                cells.append("-")
                continue
            w = max(a - float(table.ci_low[i, j]), float(table.ci_high[i, j]) - a)
            cells.append(f"{100 * a:.{digits}f} ± {100 * w:.{digits}f}")
        rows.append(cells)
    note = (
        f"cells: accuracy (%) ± the larger side of the {100 * table.confidence:g}% "
        f"{table.ci_method} interval"
    )
    if style == "markdown":
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + "\n\n" + note
    widths = [max(len(r[k]) for r in [heads, *rows]) for k in range(len(heads))]
    fmt = "  ".join(f"{{:<{w}}}" if k == 0 else f"{{:>{w}}}" for k, w in enumerate(widths))
    lines = [fmt.format(*heads), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(lines) + "\n" + note


def __getattr__(name: str):
    # Deprecated alias: the figure is presentation, drawn by the experiment layer
    # (nrnn_theory.experiments.zoo_plots.plot_robustness). Resolved on first use only,
    # so importing the core never imports the presentation layer.
    if name == "plot_robustness":
        import importlib
        import warnings

        warnings.warn(
            "nrnn_theory.robustness.plot_robustness is deprecated; use "
            "nrnn_theory.experiments.zoo_plots.plot_robustness",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module("nrnn_theory.experiments.zoo_plots").plot_robustness
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
