"""Figures of the theory-only studies (:mod:`nrnn_theory.experiments.studies`).

Each function reads a stored entry (``entry.data``, ``entry.arrays``) and writes
``figure_dir / f"theory_{name}"`` as PDF and PNG in the shared style; nothing is
recomputed here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.colors import TwoSlopeNorm

from nrnn_theory.experiments.style import RC, new_figure, save_figure


__all__ = ["PLOTS", "plot_continuum", "plot_regularizer_law", "plot_stabilization"]

#: Colours of the two noise conventions and of the theory lines.
_CONV_COLORS = {"sde": "#8c1a10", "paper_code": "#e08214"}
_CONV_LABELS = {"sde": "SDE (EM)", "paper_code": "paper code"}
_THEORY = "#2166ac"
_MEASURED = "#8c1a10"


def _stem(figure_dir: str | os.PathLike, name: str) -> Path:
    figure_dir = Path(figure_dir)
    figure_dir.mkdir(parents=True, exist_ok=True)
    return figure_dir / f"theory_{name}"


def _draw_regularizer_law(entry, figure_dir: str | os.PathLike) -> list[Path]:
    """Left: measured and predicted gap against eps (log-log). Right: relative error
    against eps with its fitted eps^2 law and the break threshold."""
    a, d = entry.arrays, entry.data
    eps = a["eps"]
    fig, axes = new_figure(1, 2, width=3.5, height=2.8)
    ax0, ax1 = axes[0]
    for conv in d["conventions"]:
        col, lab = _CONV_COLORS.get(conv, "#555555"), _CONV_LABELS.get(conv, conv)
        ax0.plot(eps, a[f"{conv}/predicted"], "-", color=col, lw=1.0, label=f"{lab}: theory")
        ax0.errorbar(
            eps,
            a[f"{conv}/measured"],
            yerr=2 * a[f"{conv}/stderr"],
            fmt="o",
            ms=3.5,
            mfc="none",
            color=col,
            label=f"{lab}: Monte Carlo ± 2 SE",
        )
        rel, se = np.abs(a[f"{conv}/rel_error"]), a[f"{conv}/rel_error_se"]
        fit = {k: float(v) for k, v in d[conv]["fit"].items()}
        slope = f": slope {fit['slope']:.2f} $\\pm$ {fit['slope_se']:.2f}"
        ok = rel > 0
        ax1.errorbar(
            eps[ok], rel[ok], yerr=np.minimum(2 * se[ok], 0.999 * rel[ok]), fmt="o", ms=3.5,
            mfc="none", color=col,
            label=lab + (slope if math.isfinite(fit["slope_se"]) else ""),
        )  # fmt: skip
        fin = a[f"{conv}/in_fit"].astype(bool)
        ax1.plot(eps[fin], rel[fin], "o", ms=3.5, color=col)
        if math.isfinite(fit["slope"]):
            xs = np.geomspace(eps.min(), eps.max(), 50)
            ax1.plot(xs, np.exp(fit["intercept"]) * xs ** fit["slope"], "--", color=col, lw=0.9)
    thr = float(d["break_threshold"])
    ax1.axhline(thr, color="0.4", lw=0.8, ls=":")
    ax1.text(eps.min(), thr * 1.2, f"{thr:.0%}: expansion breaks", fontsize=7, color="0.3")
    for ax in (ax0, ax1):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"noise level $\epsilon$")
    ax0.set_ylabel(r"$\mathbb{E}\,\ell_{\rm noisy} - \ell_{\rm clean}$")
    ax0.set_title(r"loss gap: MC vs $\frac{\epsilon^2}{2}(\hat Q+\hat R)$")
    ax1.set_ylabel("|relative error| of the prediction")
    ax1.set_title(r"remainder $O(\epsilon^4)$: relative error $\propto\epsilon^2$")
    ax0.legend(loc="upper left")
    ax1.legend(loc="lower right", title="filled: fitted points, dashed: fit", title_fontsize=7)
    return list(save_figure(fig, _stem(figure_dir, "regularizer_law")))


def _edges(v: np.ndarray) -> np.ndarray:
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])


def _draw_stabilization(entry, figure_dir: str | os.PathLike) -> list[Path]:
    """Left: phase diagram (measured top exponent over sigma and lambda_hat, certified
    boundary sqrt(2 lambda_hat), measured zero crossings). Right: exponent against
    sigma for three models with the certified bounds."""
    a = entry.arrays
    sigma, lam, mean = a["sigma"], a["lambda_hat"], a["measured"]
    order = np.argsort(lam)
    fig, axes = new_figure(1, 2, width=3.6, height=2.9)
    ax0, ax1 = axes[0]
    lo, hi = float(np.nanmin(mean)), float(np.nanmax(mean))
    norm = TwoSlopeNorm(vcenter=0.0, vmin=min(lo, -1e-3), vmax=max(hi, 1e-3))
    mesh = ax0.pcolormesh(
        _edges(sigma), _edges(lam[order]), mean[order], cmap="RdBu_r", norm=norm, shading="flat"
    )
    cb = fig.colorbar(mesh, ax=ax0, shrink=0.9)
    cb.set_label("measured top exponent")
    ls = np.linspace(0, max(float(lam.max()) * 1.05, 1e-3), 100)
    ax0.plot(
        np.sqrt(2 * ls),
        ls,
        "-",
        color="k",
        lw=1.4,
        label=r"certified: $\sigma=\sqrt{2\hat\lambda}$",
    )
    cross = a["crossing"]
    ok = np.isfinite(cross)
    ax0.plot(cross[ok], lam[ok], "o", mfc="white", mec="k", ms=4.5, label="measured zero crossing")
    ax0.set_xlim(_edges(sigma)[0], _edges(sigma)[-1])
    ax0.set_ylim(_edges(lam[order])[0], _edges(lam[order])[-1])
    ax0.set_xlabel(r"scalar multiplicative noise $\sigma = \epsilon\sigma_2$")
    ax0.set_ylabel(r"one-sided constant $\hat\lambda$")
    ax0.set_title("stabilization phase diagram (red: unstable)")
    ax0.legend(loc="lower right", framealpha=0.85)
    ax0.grid(False)
    picks = sorted({int(order[0]), int(order[len(order) // 2]), int(order[-1])})
    shades = ["#f4a582", "#d6604d", "#8c1a10"][-len(picks) :]
    for i, col in zip(picks, shades, strict=True):
        ax1.errorbar(
            sigma, mean[i], yerr=2 * a["stderr"][i], fmt="o-", ms=3, lw=1.0, color=col,
            label=rf"measured ± 2 SE, $\hat\lambda$={lam[i]:.2f}",
        )  # fmt: skip
        ax1.plot(sigma, a["bound"][i], "--", color=col, lw=1.0)
    ax1.plot([], [], "--", color="0.3", lw=1.0, label=r"certified $\hat\lambda-\sigma^2/2$")
    ax1.axhline(0.0, color="0.3", lw=0.8)
    ax1.set_xlabel(r"$\sigma$")
    ax1.set_ylabel("top Lyapunov exponent")
    ax1.set_title("measured exponent vs certified bound")
    ax1.legend(loc="lower left")
    return list(save_figure(fig, _stem(figure_dir, "stabilization")))


def _draw_continuum(entry, figure_dir: str | os.PathLike) -> list[Path]:
    """Left: regularizer error against dt with a first-order reference. Right: GBM
    exponent against dt (measured, exact chain, linear extrapolation, continuous)."""
    a, d = entry.arrays, entry.data
    fig, axes = new_figure(1, 2, width=3.4, height=2.7)
    ax0, ax1 = axes[0]
    dts, err = a["dts"], a["error"]
    ax0.loglog(dts, err, "o-", color=_MEASURED, label=r"$\max_b|\hat Q+\hat R-(Q+R)|$")
    ax0.loglog(dts, err[-1] * dts / dts[-1], "--", color=_THEORY, lw=1.0, label=r"order 1")
    order = float(d["regularizer"]["order_fine"])
    ax0.set_xlabel(r"$\Delta t$ (horizon fixed)")
    ax0.set_ylabel("error of the discrete regularizer")
    ax0.set_title(f"regularizer: fitted order {order:.2f} (theory 1)")
    ax0.legend(loc="upper left")
    g = d["gbm"]
    gd, gm, gse, gex = a["gbm_dts"], a["gbm_measured"], a["gbm_stderr"], a["gbm_exact"]
    cont = float(g["continuous"])
    fit = {k: float(v) for k, v in g["fit"].items()}
    xs = np.linspace(0.0, gd.max() * 1.05, 50)
    ax1.errorbar(
        gd, gm, yerr=2 * gse, fmt="o", color=_MEASURED, ms=3.5, label="measured (QR) ± 2 SE"
    )
    ax1.plot(gd, gex, "s", mfc="none", color="k", ms=5, label="exact chain (quadrature)")
    if math.isfinite(fit["slope"]):
        ax1.plot(xs, fit["intercept"] + fit["slope"] * xs, ":", color=_MEASURED, lw=1.0,
                 label="linear extrapolation")  # fmt: skip
    ax1.axhline(cont, color=_THEORY, lw=1.0, ls="--", label=r"SDE: $\lambda-\sigma^2/2$")
    ax1.set_xlim(left=0.0)
    ax1.set_xlabel(r"$\Delta t$")
    ax1.set_ylabel("top Lyapunov exponent")
    ax1.set_title(rf"GBM $\lambda$={float(g['lam']):g}, $\sigma$={float(g['sigma']):g}")
    ax1.legend(loc="lower left")
    return list(save_figure(fig, _stem(figure_dir, "continuum")))


def _styled(draw: Callable[..., list[Path]]) -> Callable[..., list[Path]]:
    """Run ``draw`` under the shared style, so legends and labels created after
    :func:`new_figure` follow it too."""

    def plot(entry, figure_dir: str | os.PathLike) -> list[Path]:
        with mpl.rc_context(RC):
            return draw(entry, figure_dir)

    plot.__doc__ = draw.__doc__
    return plot


plot_regularizer_law = _styled(_draw_regularizer_law)
plot_stabilization = _styled(_draw_stabilization)
plot_continuum = _styled(_draw_continuum)

#: Plot function of each study.
PLOTS: dict[str, Callable[..., list[Path]]] = {
    "regularizer_law": plot_regularizer_law,
    "stabilization": plot_stabilization,
    "continuum": plot_continuum,
}
