r"""Theory-only study ``"continuum"`` (claim C1, docs/theory/conventions.md, regularizer.md,
oracles.md V4).

Discrete to continuous as :math:`\Delta t\to0` at fixed horizon:
:math:`(\hat Q, \hat R)\to(Q, R)` at order 1, and the Euler-Maruyama exponent of
scalar geometric Brownian motion converging to :math:`\lambda - \sigma^2/2` (its exact
value at each :math:`\Delta t` from :func:`nrnn_theory._oracles.em_gbm_exponent`).
Registered in :data:`nrnn_theory.experiments.studies.STUDIES`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from nrnn_theory._oracles import em_gbm_exponent
from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory.experiments import _study_common as common
from nrnn_theory.experiments._helpers import fmt, progress_bar
from nrnn_theory.experiments.report import Evidence
from nrnn_theory.lyapunov import lyapunov_spectrum
from nrnn_theory.regularizer import regularizer_convergence


__all__ = [
    "GBM",
    "ORDER_BAND",
    "ORDER_DRIFT",
    "em_gbm_exponent",
    "evidence_continuum",
    "run_continuum",
]

_CONT_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "H": 3, "D": 2, "C": 3, "M": 5, "B": 2, "refinements": (1, 2, 4, 8),
        "gbm_dts": (0.1, 0.05), "gbm_paths": 64, "gbm_horizon": 20.0,
    },
    "quick": {
        "H": 4, "D": 2, "C": 3, "M": 10, "B": 4, "refinements": (1, 2, 4, 8, 16, 32, 64),
        "gbm_dts": (0.1, 0.05, 0.025, 0.0125), "gbm_paths": 1000, "gbm_horizon": 100.0,
    },
    "standard": {
        "H": 8, "D": 3, "C": 4, "M": 20, "B": 8, "refinements": (1, 2, 4, 8, 16, 32, 64, 128),
        "gbm_dts": (0.1, 0.05, 0.025, 0.0125, 0.00625), "gbm_paths": 4000,
        "gbm_horizon": 200.0,
    },
    "full": {
        "H": 16, "D": 4, "C": 10, "M": 40, "B": 16,
        "refinements": (1, 2, 4, 8, 16, 32, 64, 128, 256),
        "gbm_dts": (0.1, 0.05, 0.025, 0.0125, 0.00625, 0.003125), "gbm_paths": 8000,
        "gbm_horizon": 200.0,
    },
}  # fmt: skip
_CONT_DT = 0.2
_CONT_NOISE = NoiseSpec(epsilon=1.0, sigma1=1.0, sigma2=0.7, structure="diagonal")
#: Scalar geometric Brownian motion dx = lam x dt + sigma x dB of docs/theory/oracles.md V4.
GBM = (1.0, 1.0)


def _gbm_params(lam: float, dt: float, device) -> NRNNParams:
    z = torch.zeros(1, 1, dtype=torch.float64)
    return NRNNParams(
        A=torch.full((1, 1), lam, dtype=torch.float64),
        W=z,
        U=z,
        b=torch.zeros(1, dtype=torch.float64),
        V=torch.ones(1, 1, dtype=torch.float64),
        c=torch.zeros(1, dtype=torch.float64),
        dt=dt,
    ).to(device=device)


def _gbm_exponent(lam: float, sigma: float, dt: float, horizon: float, paths: int, seed: int):
    """Measured frozen-noise exponent of scalar GBM under Euler-Maruyama (mean, SE)."""
    p = _gbm_params(lam, dt, torch.device("cpu"))
    n = int(round(horizon / dt))
    xs = torch.zeros(paths, n, 1, dtype=torch.float64)
    noise = NoiseSpec(epsilon=1.0, sigma2=sigma, structure="scalar")
    gen = torch.Generator().manual_seed(seed)
    h0 = torch.ones(paths, 1, dtype=torch.float64)
    spec = lyapunov_spectrum(p, xs, noise=noise, k=1, transient=0, h0=h0, generator=gen)
    return float(spec.exponents[0]), float(spec.stderr[0])


def _line_fit(d: np.ndarray, y: np.ndarray, se: np.ndarray) -> dict[str, float]:
    """:func:`common.weighted_slope` in dt; with two levels, the line through both points with
    its standard errors propagated exactly."""
    fit = common.weighted_slope(d, y, se)
    if d.size == 2:
        d0, d1 = d
        w0, w1 = d1 / (d1 - d0), -d0 / (d1 - d0)
        fit["intercept_se"] = float(math.hypot(w0 * se[0], w1 * se[1]))
        fit["slope_se"] = float(math.hypot(se[0], se[1]) / abs(d1 - d0))
    return fit


def _local_orders(dts: np.ndarray, err: np.ndarray) -> np.ndarray:
    return np.diff(np.log(err)) / np.diff(np.log(dts))


@common.single_threaded_run
def run_continuum(
    preset: str = "quick", *, seed: int = 0, progress: bool = False
) -> tuple[dict, dict[str, np.ndarray]]:
    r"""Discrete to continuous as :math:`\Delta t\to0` at fixed horizon.

    Theory: docs/theory/conventions.md, docs/theory/regularizer.md.

    1. :func:`~nrnn_theory.regularizer_convergence` on a random NRNN (coarse
       :math:`\Delta t = 0.2`, V1's diagonal noise): :math:`\max_b|\hat Q + \hat R - Q -
       R|` per refinement, its fitted order overall and on the three finest levels,
       and the local orders between successive levels (theory: 1).
    2. Scalar GBM :math:`dx = \lambda x\,dt + \sigma x\,dB` with
       :math:`(\lambda, \sigma) =` :data:`GBM`: the measured frozen-noise exponent of
       the Euler-Maruyama chain (:func:`~nrnn_theory.lyapunov_spectrum`, scalar
       noise) per :math:`\Delta t`, the exact chain exponent by quadrature
       (:func:`em_gbm_exponent`), and a weighted linear fit in :math:`\Delta t` whose
       intercept estimates the continuous exponent :math:`\lambda - \sigma^2/2`.
    """
    cfg = dict(_CONT_PRESETS[common.check_preset(preset)])
    dev = common.study_device(preset)
    g = torch.Generator().manual_seed(seed)
    p = common.random_nrnn(cfg["H"], cfg["D"], cfg["C"], dt=_CONT_DT, generator=g, device=dev)
    xs = torch.randn(cfg["B"], cfg["M"], cfg["D"], generator=g, dtype=torch.float64).to(dev)
    labels = torch.randint(0, cfg["C"], (cfg["B"],), generator=g).to(dev)
    steps = ["regularizer"] + [f"gbm dt={d}" for d in cfg["gbm_dts"]]
    bar = progress_bar(range(len(steps)), total=len(steps), desc="continuum", progress=progress)
    it = iter(bar)
    next(it, None)
    conv = regularizer_convergence(
        p, xs, labels, _CONT_NOISE, refinements=tuple(cfg["refinements"])
    )
    dts = conv.dts.cpu().numpy().astype(float)
    err = conv.error.cpu().numpy().astype(float)
    local = _local_orders(dts, err)
    fine = np.polyfit(np.log(dts[-3:]), np.log(err[-3:]), 1)[0]
    total_c = (conv.Q + conv.R).cpu().numpy()
    lam, sig = GBM
    gdts = np.asarray(cfg["gbm_dts"], dtype=float)
    gm, gse, gex = np.zeros(gdts.size), np.zeros(gdts.size), np.zeros(gdts.size)
    for i, d in enumerate(gdts):
        next(it, None)
        gm[i], gse[i] = _gbm_exponent(
            lam, sig, float(d), cfg["gbm_horizon"], cfg["gbm_paths"], seed + 1 + i
        )
        gex[i] = em_gbm_exponent(lam, sig, float(d))
    for _ in it:
        pass
    fit = _line_fit(gdts, gm, gse)
    # the same extrapolation applied to the exact chain exponents: its miss is the
    # O(dt^2) remainder of a straight line, a predicted (not measured) bias
    bias = _line_fit(gdts, gex, gse)["intercept"] - (lam - 0.5 * sig**2)
    arrays = {
        "dts": dts,
        "error": err,
        "Q_hat": conv.Q_hat.cpu().numpy(),
        "R_hat": conv.R_hat.cpu().numpy(),
        "Q": conv.Q.cpu().numpy(),
        "R": conv.R.cpu().numpy(),
        "gbm_dts": gdts,
        "gbm_measured": gm,
        "gbm_stderr": gse,
        "gbm_exact": gex,
    }
    data = {
        "config": cfg | {"dt": _CONT_DT, "noise": _CONT_NOISE.to_dict(), "seed": seed},
        "regularizer": {
            "order": float(conv.order),
            "order_fine": float(fine),
            "local_orders": local.tolist(),
            "theory_order": 1.0,
            "continuous_total_mean": float(total_c.mean()),
            "finest_error": float(err[-1]),
        },
        "gbm": {
            "lam": lam,
            "sigma": sig,
            "continuous": lam - 0.5 * sig**2,
            "first_order_coefficient": -0.5 * lam**2 + lam * sig**2 - 0.75 * sig**4,
            "fit": fit,
            "extrapolation_bias": float(bias),
        },
    }
    return data, arrays


#: Band around the theoretical order 1 (the "order" band of docs/contributing.md,
#: *Tests and tolerances*).
ORDER_BAND = 0.2
#: Largest change between successive local orders for the asymptotic regime.
ORDER_DRIFT = 0.1


def evidence_continuum(entry) -> list[Evidence]:
    r"""Report lines for claim C1 from a stored ``theory/continuum`` entry.

    (a) :math:`(\hat Q,\hat R)\to(Q,R)` at order 1 (docs/theory/regularizer.md: Euler's local error
    is :math:`O(\Delta t^2)` per step over :math:`T/\Delta t` steps). The error is
    :math:`C\Delta t(1 + O(\Delta t))`, so the local log-log slope tends to 1 with a
    drift between levels of the size of the remaining :math:`O(\Delta t)` correction:
    the fit on the three finest levels must lie within 1 +- ``ORDER_BAND`` once the
    last drift is below ``ORDER_DRIFT`` (else inconclusive: not yet asymptotic).
    (b) The GBM exponent extrapolated to :math:`\Delta t = 0` (weighted linear fit)
    equals :math:`\lambda - \sigma^2/2` within 3 SE of the intercept plus the
    extrapolation's own bias (the same fit applied to the exact chain exponents,
    which are known by quadrature: the straight line misses their
    :math:`O(\Delta t^2)` curvature); inconclusive if
    3 SE exceeds the discretization effect at the coarsest :math:`\Delta t` (the data
    would not tell the discrete exponent from the continuous one).
    """
    reg = entry.data["regularizer"]
    local = [float(x) for x in reg["local_orders"]]
    drift = abs(local[-1] - local[-2]) if len(local) >= 2 else math.inf
    order = float(reg["order_fine"])
    lines = [
        Evidence(
            label="discrete regularizer (Q̂, R̂) → continuous (Q, R) as Δt → 0",
            measured=f"order {fmt(order)} (finest 3 levels); {fmt(reg['order'])} overall",
            interval=f"{fmt(1 - ORDER_BAND)} to {fmt(1 + ORDER_BAND)} (band around theory 1)",
            effect=(
                f"finest error {reg['finest_error']:.2g}; last local orders "
                + ", ".join(f"{x:.3f}" for x in local[-3:])
            ),
            verdict=common.rule_verdict(abs(order - 1.0) <= ORDER_BAND, drift < ORDER_DRIFT),
            rule=(
                f"supported if the order on the three finest levels is within 1 ± "
                f"{ORDER_BAND} (docs/theory/regularizer.md: first order) once successive "
                f"local orders differ by < {ORDER_DRIFT}; not supported if outside; "
                "inconclusive while the local orders still drift"
            ),
        )
    ]
    gbm = entry.data["gbm"]
    fit = common.stored_floats(gbm["fit"])
    a_, se = fit["intercept"], fit["intercept_se"]
    cont = float(gbm["continuous"])
    coarse_effect = abs(entry.arrays["gbm_exact"][0] - cont)
    bias = abs(float(gbm.get("extrapolation_bias", 0.0)))
    resolved = math.isfinite(se) and 3.0 * se <= coarse_effect
    ok = abs(a_ - cont) <= 3.0 * se + bias if math.isfinite(se) else False
    lines.append(
        Evidence(
            label=(
                f"Euler-Maruyama GBM exponent → λ - σ²/2 = {fmt(cont)} "
                f"(λ, σ = {gbm['lam']:g}, {gbm['sigma']:g})"
            ),
            measured=f"extrapolated to Δt = 0: {fmt(a_)} ± {fmt(se, 2)}",
            interval=f"{fmt(a_ - 1.96 * se)} to {fmt(a_ + 1.96 * se)}",
            effect=f"slope in Δt {fit['slope']:.3g} (V4 first-order term "
            f"{gbm['first_order_coefficient']:.3g})",
            verdict=common.rule_verdict(ok, resolved),
            rule=(
                "weighted linear fit of the measured exponent in Δt: supported if the "
                "intercept is within 3 SE + the fit's predicted bias (the same fit applied "
                "to the exact chain exponents) of λ - σ²/2, not supported if not; "
                "inconclusive if 3 SE exceeds the discretization effect at the coarsest Δt"
            ),
        )
    )
    return lines
