r"""Theory-only study ``"stabilization"`` (claim C4, docs/theory/stability.md).

Models with :math:`\hat\lambda > 0` (unstable without noise) under scalar
multiplicative noise :math:`\sigma`: the certified almost-sure bound
:math:`\hat\lambda - \sigma^2/2`, the minimal stabilizing noise and the measured
frozen-noise top Lyapunov exponent. Registered in
:data:`nrnn_theory.experiments.studies.STUDIES`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory.experiments import _study_common as common
from nrnn_theory.experiments._helpers import fmt, progress_bar
from nrnn_theory.experiments.report import Evidence
from nrnn_theory.lyapunov import lyapunov_spectrum
from nrnn_theory.stability import check_stability, minimal_stabilizing_noise, one_sided_constant


__all__ = ["evidence_stabilization", "run_stabilization"]

_STAB_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"H": 3, "n_models": 2, "n_sigma": 4, "T": 600, "B": 8, "c_max": 1.2},
    "quick": {"H": 6, "n_models": 6, "n_sigma": 11, "T": 4000, "B": 32, "c_max": 1.8},
    "standard": {"H": 8, "n_models": 8, "n_sigma": 21, "T": 10000, "B": 64, "c_max": 1.8},
    "full": {"H": 12, "n_models": 9, "n_sigma": 26, "T": 10000, "B": 64, "c_max": 1.8},
}
#: Small enough that sigma^2 dt <= 0.125 on the grid (the Euler-Maruyama chain stays
#: close to the SDE the certificate is about; docs/theory/oracles.md V4).
_STAB_DT = 0.02
_STAB_SIGMA_MAX = 2.5
_STAB_D = 2
_STAB_C_MIN = 0.2
_STAB_W = 0.1


def _unstable_model(H: int, c: float, *, generator: torch.Generator, device) -> NRNNParams:
    r"""An NRNN unstable without noise: :math:`\lambda_{\max}(\mathrm{sym}A) = c > 0`.

    ``A = Q diag(c, c - u_2, ..., c - u_H) Q^T + S/2`` with Haar-like ``Q``,
    :math:`u_i\sim\mathcal U(0, 1/2)` and a random skew part ``S`` of norm O(1); a
    small :math:`W` (entries :math:`0.1/\sqrt H`).
    """

    def r(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    Q, _ = torch.linalg.qr(r(H, H))
    ev = c - 0.5 * torch.rand(H, generator=generator, dtype=torch.float64)
    ev[0] = c
    S = r(H, H) / math.sqrt(H)
    A = Q @ torch.diag(ev) @ Q.T + 0.25 * (S - S.T)
    p = NRNNParams(
        A=A,
        W=_STAB_W * r(H, H) / math.sqrt(H),
        U=r(H, _STAB_D),
        b=0.1 * r(H),
        V=torch.ones(2, H, dtype=torch.float64),
        c=torch.zeros(2, dtype=torch.float64),
        dt=_STAB_DT,
    )
    return p.to(device=device)


def _scalar_noise(sigma: float) -> NoiseSpec | None:
    return NoiseSpec(epsilon=1.0, sigma2=sigma, structure="scalar") if sigma > 0 else None


def _measure_top_exponents(
    p: NRNNParams, xs: torch.Tensor, sigmas: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    r"""Frozen-noise top exponent for every scalar noise level, in one batched call.

    The ``"sde"``/``"scalar"`` step is :math:`h + \Delta t f + \sqrt{\Delta t}\,\sigma_2
    h\,\beta_k` with standardized draws :math:`\eta = (\xi, \beta)` entering linearly
    (docs/theory/regularizer.md), so the chain at level :math:`\sigma` is the chain at
    :math:`\sigma_2 = 1` driven by :math:`\beta` scaled by :math:`\sigma`. Each level
    gets the same ``B`` input sequences and the same standard draws (common random
    numbers); the additive part is off. Returns the mean over the ``B`` paths and its
    standard error, per level.
    """
    B, T, _ = xs.shape
    H = p.hidden_size
    n = len(sigmas)
    gen = torch.Generator(device=xs.device).manual_seed(seed)
    beta = torch.randn(B, T, generator=gen, dtype=xs.dtype, device=xs.device)
    eta = xs.new_zeros(n, B, T, H + 1)
    scale = torch.as_tensor(np.asarray(sigmas, dtype=float), dtype=xs.dtype, device=xs.device)
    eta[..., H] = scale[:, None, None] * beta
    noise = NoiseSpec(epsilon=1.0, sigma2=1.0, structure="scalar")
    spec = lyapunov_spectrum(
        p,
        xs.repeat(n, 1, 1),
        noise=noise,
        k=1,
        eta=eta.reshape(n * B, T, H + 1),
        generator=gen,
    )
    per = spec.per_trajectory[:, 0].reshape(n, B).to(torch.float64).cpu().numpy()
    return per.mean(axis=1), per.std(axis=1, ddof=1) / math.sqrt(B)


def _certified_bound(p: NRNNParams, sigma: float) -> tuple[float, bool]:
    noise = _scalar_noise(sigma)
    cond = "almost_sure_scalar" if noise is not None else "contraction"
    cert = check_stability(p, noise, condition=cond)
    return float(cert.bound), bool(cert.holds)


def _zero_crossing(sigma: np.ndarray, mean: np.ndarray) -> float:
    """First sigma where the measured exponent goes from >= 0 to < 0, interpolated
    linearly in sigma^2 (the exponent of a linear system is affine in sigma^2)."""
    if not mean[0] >= 0:
        return math.nan
    below = np.nonzero(mean < 0)[0]
    if below.size == 0:
        return math.nan
    i = int(below[0])
    s0, s1 = sigma[i - 1] ** 2, sigma[i] ** 2
    t = mean[i - 1] / (mean[i - 1] - mean[i])
    return float(math.sqrt(s0 + t * (s1 - s0)))


@common.single_threaded_run
def run_stabilization(
    preset: str = "quick", *, seed: int = 0, progress: bool = False
) -> tuple[dict, dict[str, np.ndarray]]:
    r"""Stochastic stabilization phase diagram (docs/theory/stability.md (c), oracles.md V7).

    ``n_models`` random NRNNs with :math:`\lambda_{\max}(\mathrm{sym}A) = c` on a grid of
    :math:`c\in[0.2, c_{\max}]` and a small :math:`W` (so :math:`\hat\lambda > 0`:
    unstable without noise), driven by random inputs, ``"sde"`` convention with
    :math:`\Delta t = 0.02`, under scalar multiplicative noise
    :math:`\sigma = \epsilon\sigma_2` on a grid from 0 to 2.5. For each (model,
    :math:`\sigma`): the certified almost-sure bound :math:`\hat\lambda - \sigma^2/2`
    (:func:`~nrnn_theory.check_stability`, ``"almost_sure_scalar"``; ``"contraction"``
    at :math:`\sigma = 0`) and the measured top exponent along ``B`` frozen noise paths
    of ``T`` steps (:func:`~nrnn_theory.lyapunov_spectrum`, ``k=1``) with its standard
    error across paths. Per model: :math:`\hat\lambda` (exact vertex method), the
    certified minimal noise :math:`\sqrt{2\hat\lambda}`
    (:func:`~nrnn_theory.minimal_stabilizing_noise`), and the measured zero crossing
    (interpolated in :math:`\sigma^2`).

    The soundness slack (see :func:`evidence_stabilization`) is stored per model:
    :math:`\Delta t\,\kappa^2/2` with :math:`\kappa = \|A\|_2 + \|W\|_2`, the excess of
    the discrete map's one-sided rate over the continuous one (docs/theory/stability.md (f):
    :math:`\log\rho/\Delta t \le \hat\lambda + \Delta t\kappa^2/2`).
    """
    cfg = dict(_STAB_PRESETS[common.check_preset(preset)])
    dev = common.study_device(preset)
    g = torch.Generator().manual_seed(seed)
    cs = np.linspace(_STAB_C_MIN, cfg["c_max"], cfg["n_models"])
    sigma = np.linspace(0.0, _STAB_SIGMA_MAX, cfg["n_sigma"])
    models = [_unstable_model(cfg["H"], float(c), generator=g, device=dev) for c in cs]
    xs = torch.randn(cfg["B"], cfg["T"], _STAB_D, generator=g, dtype=torch.float64).to(dev)
    nm, ns = len(models), sigma.size
    mean, se = np.zeros((nm, ns)), np.zeros((nm, ns))
    bound, holds = np.zeros((nm, ns)), np.zeros((nm, ns), dtype=bool)
    for i in progress_bar(range(nm), total=nm, desc="stabilization", progress=progress):
        mean[i], se[i] = _measure_top_exponents(models[i], xs, sigma, seed + 1)
        for j in range(ns):
            bound[i, j], holds[i, j] = _certified_bound(models[i], float(sigma[j]))
    lam = np.array([one_sided_constant(p) for p in models])
    level = np.array([minimal_stabilizing_noise(p).level for p in models])
    kappa = np.array(
        [
            float(torch.linalg.matrix_norm(p.A.double(), 2) + torch.linalg.matrix_norm(p.W, 2))
            for p in models
        ]
    )
    slack_dt = _STAB_DT * kappa**2 / 2
    crossing = np.array([_zero_crossing(sigma, mean[i]) for i in range(nm)])
    arrays = {
        "sigma": sigma,
        "c": cs,
        "lambda_hat": lam,
        "min_noise": level,
        "measured": mean,
        "stderr": se,
        "bound": bound,
        "holds": holds,
        "crossing": crossing,
        "slack_dt": slack_dt,
    }
    data = {
        "config": cfg | {"dt": _STAB_DT, "D": _STAB_D, "W_scale": _STAB_W, "seed": seed},
        "n_models": nm,
        "lambda_hat": lam.tolist(),
        "min_noise": level.tolist(),
        "crossing": [None if not math.isfinite(x) else x for x in crossing],
        "horizon": cfg["T"] * _STAB_DT,
    }
    return data, arrays


def evidence_stabilization(entry) -> list[Evidence]:
    r"""Report lines for claim C4 from a stored ``theory/stabilization`` entry.

    (a) **Soundness**: wherever the certificate holds, measured
    :math:`\le` bound + 3 SE + :math:`\Delta t\kappa^2/2`. The finite-time exponent of
    one path exceeds the a.s. rate by :math:`\sigma\beta_T/T` at most (Itô's formula
    for :math:`\log|\Delta|`), whose mean over ``B`` independent paths has standard
    deviation :math:`\sigma/\sqrt{BT}`, covered by 3 SE across paths; the second term
    is the discrete map's O(dt) excess (docs/theory/stability.md (f)).
    (b) **Stochastic stabilization**: some model is clearly unstable at
    :math:`\sigma = 0` (mean - 3 SE > 0) and clearly stable (mean + 3 SE < 0) at a
    certified :math:`\sigma`.
    (c) **Measured crossing vs certified minimal noise**: the certificate is
    sufficient, so at the first certified grid level the measured exponent must not
    be clearly positive (mean - 3 SE - slack > 0 would contradict it); the ratio
    crossing / certified level is reported.
    """
    a = entry.arrays
    sigma, mean, se = a["sigma"], a["measured"], a["stderr"]
    bound, holds, slack_dt = a["bound"], a["holds"].astype(bool), a["slack_dt"]
    allowed = bound + 3.0 * se + slack_dt[:, None]
    excess = np.where(holds, mean - allowed, -np.inf)
    n_cert = int(holds.sum())
    worst = float(excess.max()) if n_cert else math.nan
    i_w, j_w = np.unravel_index(int(np.argmax(excess)), excess.shape)
    lines = [
        Evidence(
            label="soundness: measured top exponent ≤ certified a.s. bound where it holds",
            measured=(
                f"{n_cert - int((excess > 0).sum())}/{n_cert} certified points within; "
                f"tightest: measured {fmt(mean[i_w, j_w])} vs bound {fmt(bound[i_w, j_w])}"
                if n_cert
                else "no certified point"
            ),
            interval=(
                f"± {fmt(1.96 * se[i_w, j_w], 2)} (1.96 SE) at σ = {fmt(sigma[j_w])}"
                if n_cert
                else "n/a"
            ),
            effect=f"largest measured - (bound + slack) = {fmt(worst)}",
            verdict=common.rule_verdict(n_cert > 0 and worst <= 0, n_cert > 0),
            rule=(
                "supported if at every (model, σ) where the certificate holds the "
                "measured exponent ≤ bound + 3 SE + Δt κ²/2 (finite-time and O(Δt) "
                "slack, docs/theory/stability.md (c), (f)); not supported if any exceeds it"
            ),
        )
    ]
    unstable0 = mean[:, 0] - 3.0 * se[:, 0] > 0
    stable_cert = holds & (mean + 3.0 * se < 0)
    stabilized = unstable0 & stable_cert.any(axis=1)
    never = unstable0 & holds.any(axis=1) & ~(mean + 3.0 * se < 0).any(axis=1)
    if stabilized.any():
        i = int(np.nonzero(stabilized)[0][-1])
        j = int(np.nonzero(stable_cert[i])[0][0])
        measured = (
            f"λ̂ = {fmt(a['lambda_hat'][i])}: {fmt(mean[i, 0])} at σ = 0 → "
            f"{fmt(mean[i, j])} at σ = {fmt(sigma[j])}"
        )
        interval = f"± {fmt(1.96 * se[i, j], 2)} (1.96 SE)"
    else:
        measured, interval = "no model clearly stabilized on the grid", "n/a"
    lines.append(
        Evidence(
            label="stochastic stabilization: unstable at σ = 0, stable under certified noise",
            measured=measured,
            interval=interval,
            effect=f"{int(stabilized.sum())}/{int(unstable0.sum())} unstable models stabilized",
            verdict="supported"
            if stabilized.any()
            else ("not supported" if never.any() else "inconclusive"),
            rule=(
                "supported if a model with measured exponent - 3 SE > 0 at σ = 0 has "
                "exponent + 3 SE < 0 at a σ where the certificate holds; not supported "
                "if such an unstable model is never clearly stable on a certified grid; "
                "inconclusive otherwise"
            ),
        )
    )
    level = a["min_noise"]
    crossing = a["crossing"]
    ratios, contradicted, checked = [], False, 0
    for i in range(mean.shape[0]):
        cert_j = np.nonzero(holds[i])[0]
        if not (unstable0[i] and cert_j.size):
            continue
        checked += 1
        j = int(cert_j[0])
        if mean[i, j] - 3.0 * se[i, j] - slack_dt[i] > 0:
            contradicted = True
        if math.isfinite(crossing[i]) and level[i] > 0:
            ratios.append(float(crossing[i] / level[i]))
    r = np.asarray(ratios)
    lines.append(
        Evidence(
            label="measured zero crossing vs certified minimal noise √(2 λ̂)",
            measured=(
                f"ratio crossing/certified: median {fmt(float(np.median(r)))} ({r.size} models)"
                if r.size
                else "no crossing on the grid"
            ),
            interval=f"{fmt(float(r.min()))} to {fmt(float(r.max()))} (range)" if r.size else "n/a",
            effect=(
                "certificate "
                + ("conservative by " + f"{1 - np.median(r):.0%}" if r.size else "untested")
            ),
            verdict=common.rule_verdict(not contradicted, checked > 0),
            rule=(
                "the certificate is sufficient: supported if, for every model unstable at "
                "σ = 0, the measured exponent at the first certified grid σ is not "
                "clearly positive (mean - 3 SE - Δt κ²/2 ≤ 0); not supported "
                "otherwise; inconclusive if no unstable model reaches a certified σ"
            ),
        )
    )
    return lines
