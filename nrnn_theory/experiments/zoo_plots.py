"""Figures of the model zoo: flatness, Lyapunov spectra, margins, robustness, correlations.

The robustness figure is drawn by one function, :func:`plot_robustness`, for both
``nrnn robustness --plot`` (from :class:`~nrnn_theory.robustness.RobustnessSweep`
records) and the reproduction report (:func:`plot_robustness_curves`, from stored
analyses).

Every function takes the analyses of one task as ``{model: [(data, arrays), ...]}``
(one pair per seed, as stored by the pipeline), draws one figure in the shared style
and writes ``<stem>.pdf`` and ``<stem>.png``; it returns the two paths.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator, NullFormatter
from scipy import stats

from nrnn_theory.experiments.claims import Records, robust_score
from nrnn_theory.experiments.store import stored_float
from nrnn_theory.experiments.style import (
    model_color,
    new_figure,
    save_figure,
    styled,
)
from nrnn_theory.experiments.zoo import MODEL_LABELS, ZOO


__all__ = [
    "plot_correlations",
    "plot_flatness",
    "plot_lyapunov",
    "plot_margins",
    "plot_robustness",
    "plot_robustness_curves",
    "robust_score",
]


def _figure_legend(fig, axes) -> None:
    """One legend for all panels, outside them on the right (no data hidden)."""
    seen: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside right center")


def _label(name: str) -> str:
    return MODEL_LABELS.get(name, name)


def _values(records: Records, model: str, key: str) -> np.ndarray:
    return np.asarray([stored_float(d.get(key)) for d, _ in records.get(model, ())], dtype=float)


def _training_noise(name: str) -> float:
    """Additive training-noise level ``a`` of a zoo member (0 without noise)."""
    noise = ZOO[name].noise if name in ZOO else None
    return 0.0 if noise is None else float(noise.additive)


@styled
def plot_flatness(records: Records, stem: str | Path, *, task: str = "") -> tuple[Path, Path]:
    """Hessian trace and top eigenvalue against the training-noise level ``a``.

    The noise-free twin sits at ``a = 0``; the explicit-regularizer model is drawn at
    the level whose regularizer it was trained with, as an open marker.
    """
    fig, axes = new_figure(1, 2, width=3.3)
    panels = (("hessian_trace", "Hessian trace"), ("hessian_top_eigenvalue", "top eigenvalue"))
    twin = "nrnn_step" if "nrnn_step" in records else "lipschitz"  # the matched twin
    family = (twin, "nrnn_small", "nrnn_high")
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        xs, means = [], []
        for name in family:
            vals = _values(records, name, key)
            if not vals.size:
                continue
            a = _training_noise(name)
            ax.scatter(
                np.full(vals.size, a),
                vals,
                color=model_color(name),
                s=14,
                alpha=0.7,
                label=_label(name),
            )
            xs.append(a)
            means.append(np.nanmean(vals))
        if len(xs) > 1:
            ax.plot(xs, means, color="#444444", lw=1, zorder=0, label="mean over seeds")
        vals = _values(records, "explicit_reg", key)
        if vals.size:
            ax.scatter(
                np.full(vals.size, _training_noise("nrnn_small")),
                vals,
                s=34,
                facecolors="none",
                edgecolors=model_color("explicit_reg"),
                label=_label("explicit_reg") + " (at its noise level)",
            )
        ax.set_xlabel("training noise a (paper_code)")
        ax.set_title(title)
    _figure_legend(fig, axes)
    fig.suptitle(f"Flatness of the clean test loss ({task})" if task else "Flatness")
    return save_figure(fig, stem)


@styled
def plot_lyapunov(records: Records, stem: str | Path, *, task: str = "") -> tuple[Path, Path]:
    """Top Lyapunov exponents of each NRNN-family model, clean and along a frozen path of
    the reference noise (mean over seeds, with the per-seed spread)."""
    fig, axes = new_figure(1, 2, width=3.3, sharey=True)
    for ax, key, title in (
        (axes[0, 0], "lyapunov_clean", "clean dynamics"),
        (axes[0, 1], "lyapunov_noisy", "frozen reference noise"),
    ):
        for name, recs in records.items():
            spectra = [a[key] for _, a in recs if key in a]
            if not spectra:
                continue
            s = np.stack(spectra)
            idx = np.arange(1, s.shape[1] + 1)
            ax.plot(idx, s.mean(0), marker="o", color=model_color(name), label=_label(name))
            if s.shape[0] > 1:
                ax.fill_between(idx, s.min(0), s.max(0), color=model_color(name), alpha=0.15)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xlabel("exponent index i")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
    axes[0, 0].set_ylabel("λᵢ (per unit time)")
    _figure_legend(fig, axes)
    fig.suptitle(f"Lyapunov spectra of the input-driven dynamics ({task})")
    return save_figure(fig, stem)


@styled
def plot_margins(records: Records, stem: str | Path, *, task: str = "") -> tuple[Path, Path]:
    """Distribution (empirical CDF) of the smallest l2 perturbation that flips each
    correctly classified example, pooled over seeds, per model."""
    fig, axes = new_figure(1, 1, width=4.4, height=3.0)
    ax = axes[0, 0]
    drawn = 0
    for name, recs in records.items():
        d = np.concatenate([a["empirical_margin"] for _, a in recs if "empirical_margin" in a])
        d = np.sort(d[np.isfinite(d) & (d > 0)])
        if not d.size:
            continue
        drawn += 1
        ax.step(
            d,
            np.arange(1, d.size + 1) / d.size,
            where="post",
            color=model_color(name),
            label=f"{_label(name)} (median {np.median(d):.3g})",
        )
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("ℓ₂ distance to the decision boundary (attack)")
    ax.set_ylabel("fraction of examples")
    if drawn:
        ax.legend(loc="best")
    else:  # e.g. models barely trained: said on the figure, not an empty legend
        ax.text(
            0.5,
            0.5,
            "no correctly classified example\nwith a finite margin",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_title(f"Empirical input margins ({task})")
    return save_figure(fig, stem)


#: Panel titles and strength axes of the four perturbation families (docs/theory/experiments.md),
#: indexed by :attr:`nrnn_theory.robustness.Perturbation.panel`.
_PANELS = ("(a) white noise", "(b) multiplicative noise", "(c) salt and pepper", "(d) adversarial")
_PANEL_X = ("σ", "σ", "α", "ε (in each attack's norm)")
_LINESTYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class _Curve:
    """One line of the robustness figure: a model under one perturbation.

    ``strengths`` starts at 0 (the clean accuracy); ``low``/``high`` is the band, or
    ``None`` when no interval is known.
    """

    model: str
    perturbation: str
    strengths: np.ndarray
    accuracy: np.ndarray
    low: np.ndarray | None
    high: np.ndarray | None


def _figure_paths(path: str | os.PathLike) -> Path:
    """The stem of ``out.png``, ``out.pdf`` or ``out`` (both files are written)."""
    p = Path(path)
    if p.suffix.lower() in (".png", ".pdf"):
        stem = p.with_suffix("")
    elif p.suffix == "":
        stem = p
    else:
        raise ValueError(f"path: expected a .png or .pdf name (both are written), got {str(p)!r}")
    if not stem.parent.exists():
        raise FileNotFoundError(f"path: the folder {str(stem.parent)!r} does not exist")
    return stem


def _combine(model: str, perturbation: str, parts) -> _Curve:
    """Several runs (seeds) of one model as one line: mean accuracy, band from the lowest
    to the highest interval bound (the interval itself for a single run)."""
    x = parts[0][0]
    acc = np.mean([a for _, a, _, _ in parts], axis=0)
    bands = [(lo, hi) for _, _, lo, hi in parts if lo is not None]
    low = np.min([lo for lo, _ in bands], axis=0) if bands else None
    high = np.max([hi for _, hi in bands], axis=0) if bands else None
    return _Curve(model, perturbation, x, acc, low, high)


@styled
def _draw_robustness(
    curves: Sequence[_Curve], stem: Path, *, title: str, dpi=None, chance: float | None = None
):
    """The robustness figure: the one function that draws it, in the shared style. With
    ``chance`` (1 / classes) each panel has a dashed chance line and the accuracy axis
    starts just below it."""
    from nrnn_theory.robustness import PERTURBATIONS

    fig, axes = new_figure(1, 4, width=2.5, height=2.5, sharey=True)
    models = list(dict.fromkeys(c.model for c in curves))
    colours = {m: model_color(m) if m in ZOO else f"C{i % 10}" for i, m in enumerate(models)}
    attacks = [n for n, q in PERTURBATIONS.items() if q.kind == "attack"]
    used = [False] * 4
    for c in curves:
        spec = PERTURBATIONS[c.perturbation]
        ax = axes[0, spec.panel]
        used[spec.panel] = True
        attack = spec.kind == "attack"
        style = _LINESTYLES[attacks.index(c.perturbation) % 4] if attack else "-"
        label = f"{_label(c.model)}, {spec.label}" if attack else _label(c.model)
        ax.plot(c.strengths, c.accuracy, style, marker="o", color=colours[c.model], label=label)
        if c.low is not None:
            ax.fill_between(c.strengths, c.low, c.high, color=colours[c.model], alpha=0.15, lw=0)
    for k, ax in enumerate(axes[0]):
        ax.set_title(_PANELS[k])
        ax.set_xlabel(_PANEL_X[k])
        if not used[k]:
            ax.text(0.5, 0.5, "not evaluated", ha="center", va="center", transform=ax.transAxes)
    axes[0, 0].set_ylabel("accuracy")
    if chance is not None:
        for ax in axes[0]:
            ax.axhline(chance, color="#777777", lw=0.8, ls=(0, (4, 3)), zorder=0)
        axes[0, 0].text(  # at the left of panel (a), where the curves start at clean accuracy
            0.02,
            chance,
            "chance",
            transform=axes[0, 0].get_yaxis_transform(),
            ha="left",
            va="bottom",
            fontsize="small",
            color="#555555",
        )
        axes[0, 0].set_ylim(max(0.0, chance - 0.05), 1.02)
    else:
        axes[0, 0].set_ylim(-0.02, 1.02)
    _figure_legend(fig, axes)
    fig.suptitle(title)
    return save_figure(fig, stem, dpi=dpi)


def _sweep_groups(sweeps) -> dict[str, list]:
    from nrnn_theory.robustness import RobustnessSweep

    def check(s, key):
        if not isinstance(s, RobustnessSweep):
            raise TypeError(f"sweeps[{key!r}]: expected RobustnessSweep, got {type(s).__name__}")
        return s

    groups: dict[str, list] = {}
    if isinstance(sweeps, RobustnessSweep):
        groups[sweeps.name] = [sweeps]
    elif isinstance(sweeps, Mapping):
        for key, value in sweeps.items():
            runs = value if isinstance(value, Sequence) else [value]
            groups[str(key)] = [check(s, key) for s in runs]
    else:
        for i, s in enumerate(sweeps):
            groups.setdefault(check(s, i).name, []).append(s)
    if not groups or not all(groups.values()):
        raise ValueError("sweeps: expected at least one RobustnessSweep, got none")
    return groups


def plot_robustness(
    sweeps,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    dpi: int = 150,
) -> tuple[Path, Path]:
    """Write the four-panel accuracy-versus-strength figure as PDF and PNG.

    The robustness figure of the package (docs/theory/experiments.md), drawn in one
    style for ``nrnn robustness --plot`` and for the reproduction report
    (:func:`plot_robustness_curves`). Panels:
    (a) white noise, (b) multiplicative noise, (c) salt and pepper, (d) adversarial
    (every attack present, one line style each). One colour per model; each curve
    starts at the clean accuracy (strength 0) and carries its confidence band. Several
    sweeps of one model (e.g. seeds) are averaged, with the band from the lowest to the
    highest of their interval bounds. A family no sweep evaluated is left as an empty
    panel that says so.

    Parameters
    ----------
    sweeps : RobustnessSweep, sequence of them, or mapping name -> sweep(s)
        A mapping names the models (a value may be a sequence of sweeps of that
        model); otherwise each sweep's ``name`` does.
    path : str or path
        ``out.png``, ``out.pdf`` or ``out``: both ``out.pdf`` and ``out.png`` are
        written, rendered first and then renamed into place, so an error leaves no
        half-written or clobbered file.
    title : str, optional
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    (Path, Path)
        The PDF and PNG paths.
    """
    from nrnn_theory._contract import check_positive_int

    groups = _sweep_groups(sweeps)
    stem = _figure_paths(path)
    dpi = check_positive_int("dpi", dpi)
    curves = []
    for name, runs in groups.items():
        per: dict[str, list] = {}
        for s in runs:
            for c in s.curves:
                per.setdefault(c.perturbation, []).append(
                    (
                        np.array([0.0, *c.strengths.tolist()]),
                        np.array([s.clean_accuracy, *c.accuracy.tolist()]),
                        np.array([s.clean_ci[0], *c.ci_low.tolist()]),
                        np.array([s.clean_ci[1], *c.ci_high.tolist()]),
                    )
                )
        curves += [_combine(name, pert, parts) for pert, parts in per.items()]
    conf = next(iter(groups.values()))[0].confidence
    default = f"Accuracy under input perturbations (bands: {100 * conf:g}% intervals)"
    return _draw_robustness(curves, stem, title=title or default, dpi=dpi)


def plot_robustness_curves(
    records: Records, stem: str | Path, *, task: str = ""
) -> tuple[Path, Path]:
    """The robustness figure (:func:`plot_robustness`) of the stored zoo analyses of one
    task: mean over seeds, band from the lowest to the highest per-seed interval bound
    (analyses stored without intervals draw the mean only)."""
    from nrnn_theory.robustness import PERTURBATIONS

    curves = []
    for name, recs in records.items():
        per: dict[str, list] = {}
        for d, a in recs:
            clean = stored_float(d["robust_clean_accuracy"])
            clean_ci = d.get("robust_clean_ci")
            for pert in PERTURBATIONS:
                key = f"robust_{pert}"
                if f"{key}_accuracy" not in a:
                    continue
                band = None, None
                if clean_ci is not None and f"{key}_ci_low" in a:
                    lo, hi = (stored_float(v) for v in clean_ci)
                    band = [lo, *a[f"{key}_ci_low"]], [hi, *a[f"{key}_ci_high"]]
                per.setdefault(pert, []).append(
                    (
                        np.array([0.0, *a[f"{key}_strengths"]]),
                        np.array([clean, *a[f"{key}_accuracy"]]),
                        None if band[0] is None else np.asarray(band[0]),
                        None if band[1] is None else np.asarray(band[1]),
                    )
                )
        curves += [_combine(name, pert, parts) for pert, parts in per.items()]
    Path(stem).parent.mkdir(parents=True, exist_ok=True)
    title = f"Robustness to input perturbations at inference ({task})"
    classes = [d.get("num_classes") for recs in records.values() for d, _ in recs]
    classes = [int(c) for c in classes if c]
    chance = 1.0 / classes[0] if classes else None
    return _draw_robustness(curves, Path(stem), title=title, chance=chance)


@styled
def plot_correlations(records: Records, stem: str | Path, *, task: str = "") -> tuple[Path, Path]:
    """Robust accuracy (mean over the four sweeps) against the regularizer, the Hessian
    trace, the top Lyapunov exponent and the median empirical margin, one point per
    (model, seed); Spearman's rank correlation in each title."""
    panels = (
        ("regularizer", "regularizer Q + R (reference noise)"),
        ("hessian_trace", "Hessian trace"),
        ("lyapunov_top", "top Lyapunov exponent"),
        ("empirical_margin_median", "median empirical ℓ₂ margin"),
    )
    fig, axes = new_figure(1, 4, width=2.5, height=2.5, sharey=True)
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        xs, ys = [], []
        for name, recs in records.items():
            x = _values(records, name, key)
            y = np.asarray([robust_score(d) for d, _ in recs], dtype=float)
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.any():
                ax.scatter(x[ok], y[ok], color=model_color(name), s=16, label=_label(name))
                xs.append(x[ok])
                ys.append(y[ok])
        if xs and np.concatenate(xs).size >= 3:
            rho = stats.spearmanr(np.concatenate(xs), np.concatenate(ys)).statistic
            ax.set_title(f"{title}\nSpearman ρ = {rho:.2f}", fontsize=8)
        else:
            ax.set_title(f"{title}\n(too few points)", fontsize=8)
    axes[0, 0].set_ylabel("robust accuracy (mean over sweeps)")
    _figure_legend(fig, axes)
    fig.suptitle(f"What predicts robustness across the zoo ({task})")
    return save_figure(fig, stem)
