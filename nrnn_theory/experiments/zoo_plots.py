"""Figures of the model zoo: flatness, Lyapunov spectra, margins, robustness, correlations.

Every function takes the analyses of one task as ``{model: [(data, arrays), ...]}``
(one pair per seed, as stored by the pipeline), draws one figure in the shared style
and writes ``<stem>.pdf`` and ``<stem>.png``; it returns the two paths.
"""

from __future__ import annotations

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
    "ROBUSTNESS_LABELS",
    "plot_correlations",
    "plot_flatness",
    "plot_lyapunov",
    "plot_margins",
    "plot_robustness_curves",
    "robust_score",
]

#: Panel titles of the four perturbations (THEORY.md §11 (a)-(d)).
ROBUSTNESS_LABELS: dict[str, str] = {
    "white_noise": "(a) white noise",
    "multiplicative_noise": "(b) multiplicative noise",
    "salt_and_pepper": "(c) salt and pepper",
    "pgd_linf": "(d) PGD attack",
}
_STRENGTH = {
    "white_noise": "sigma",
    "multiplicative_noise": "sigma",
    "salt_and_pepper": "alpha",
    "pgd_linf": "eps (linf)",
}


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
    family = ("lipschitz", "nrnn_small", "nrnn_high")
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
    axes[0, 0].set_ylabel("lambda_i (per unit time)")
    _figure_legend(fig, axes)
    fig.suptitle(f"Lyapunov spectra of the input-driven dynamics ({task})")
    return save_figure(fig, stem)


@styled
def plot_margins(records: Records, stem: str | Path, *, task: str = "") -> tuple[Path, Path]:
    """Distribution (empirical CDF) of the smallest l2 perturbation that flips each
    correctly classified example, pooled over seeds, per model."""
    fig, axes = new_figure(1, 1, width=4.4, height=3.0)
    ax = axes[0, 0]
    for name, recs in records.items():
        d = np.concatenate([a["empirical_margin"] for _, a in recs if "empirical_margin" in a])
        d = np.sort(d[np.isfinite(d) & (d > 0)])
        if not d.size:
            continue
        ax.step(
            d,
            np.arange(1, d.size + 1) / d.size,
            where="post",
            color=model_color(name),
            label=f"{_label(name)} (median {np.median(d):.3g})",
        )
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("l2 distance to the decision boundary (attack)")
    ax.set_ylabel("fraction of examples")
    ax.legend(loc="best")
    ax.set_title(f"Empirical input margins ({task})")
    return save_figure(fig, stem)


@styled
def plot_robustness_curves(
    records: Records, stem: str | Path, *, task: str = ""
) -> tuple[Path, Path]:
    """Accuracy against perturbation strength, one panel per perturbation of THEORY.md
    §11, mean over seeds (clean accuracy at strength 0)."""
    fig, axes = new_figure(1, 4, width=2.5, height=2.5, sharey=True)
    for ax, (pert, title) in zip(axes[0], ROBUSTNESS_LABELS.items(), strict=True):
        for name, recs in records.items():
            curves = [
                (a[f"robust_{pert}_strengths"], a[f"robust_{pert}_accuracy"], d)
                for d, a in recs
                if f"robust_{pert}_accuracy" in a
            ]
            if not curves:
                continue
            s = np.concatenate([[0.0], curves[0][0]])
            acc = np.stack(
                [
                    np.concatenate([[stored_float(d["robust_clean_accuracy"])], c])
                    for _, c, d in curves
                ]
            )
            ax.plot(s, acc.mean(0), marker="o", color=model_color(name), label=_label(name))
        ax.set_title(title)
        ax.set_xlabel(_STRENGTH[pert])
    axes[0, 0].set_ylabel("accuracy")
    _figure_legend(fig, axes)
    fig.suptitle(f"Robustness to input perturbations at inference ({task})")
    return save_figure(fig, stem)


@styled
def plot_correlations(records: Records, stem: str | Path, *, task: str = "") -> tuple[Path, Path]:
    """Robust accuracy (mean over the four sweeps) against the regularizer, the Hessian
    trace, the top Lyapunov exponent and the median empirical margin, one point per
    (model, seed); Spearman's rank correlation in each title."""
    panels = (
        ("regularizer", "regularizer Q + R (reference noise)"),
        ("hessian_trace", "Hessian trace"),
        ("lyapunov_top", "top Lyapunov exponent"),
        ("empirical_margin_median", "median empirical l2 margin"),
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
            ax.set_title(f"{title}\nSpearman rho = {rho:.2f}", fontsize=8)
        else:
            ax.set_title(f"{title}\n(too few points)", fontsize=8)
    axes[0, 0].set_ylabel("robust accuracy (mean over sweeps)")
    _figure_legend(fig, axes)
    fig.suptitle(f"What predicts robustness across the zoo ({task})")
    return save_figure(fig, stem)
