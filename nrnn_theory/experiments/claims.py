"""The paper's claims and the evidence for them: their text, the data it is computed
from, and the rules that turn stored zoo analyses into evidence lines, verdicts, tables.

:data:`CLAIMS` holds each claim's title, statement and theory reference (the report's
sections, in order); :data:`Records` is the stored analyses of one task, the input of
every rule here and of the zoo figures (:mod:`nrnn_theory.experiments.zoo_plots`).

Every verdict here is computed by a stated rule from the stored numbers
(:mod:`nrnn_theory.experiments.verdicts`); nothing is written by hand. The comparisons
pair each noisy RNN with its noise-free twin (the Lipschitz RNN of the same
architecture, trained with the same seed on the same data), which isolates the effect
the paper attributes to noise injection.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nrnn_theory.experiments._helpers import fmt
from nrnn_theory.experiments.report import Evidence, Table
from nrnn_theory.experiments.store import stored_float
from nrnn_theory.experiments.verdicts import Comparison, compare_directional, compare_noninferior
from nrnn_theory.experiments.zoo import MODEL_LABELS


__all__ = [
    "ACCURACY_MARGIN",
    "CLAIMS",
    "GAP_RTOL",
    "NOISY",
    "Records",
    "TWIN",
    "comparison_evidence",
    "paired_values",
    "regularizer_gap_evidence",
    "robust_score",
    "zoo_evidence",
    "zoo_table",
]

#: The claims of the paper (THEORY.md §1) in report order: key -> (title, statement,
#: theory reference).
CLAIMS: dict[str, tuple[str, str, str]] = {
    "C1": (
        "noisy RNNs are discretized SDEs",
        "RNNs trained with noise injected into their hidden states are discretizations "
        "of SDEs driven by the input data.",
        "THEORY.md §2-3, §5",
    ),
    "C2": (
        "small noise acts as an explicit regularizer",
        "For small noise, noise injection is approximately an explicit regularizer "
        "eps^2/2 (Q + R), and training with noise lowers it.",
        "THEORY.md §4-6",
    ),
    "C3a": (
        "noise promotes flatter minima",
        "The implicit regularization promotes flatter minima of the loss.",
        "THEORY.md §7",
    ),
    "C3b": (
        "noise biases training towards more stable dynamics",
        "The implicit regularization biases training towards more stable dynamics.",
        "THEORY.md §6, §9",
    ),
    "C3c": (
        "noise favours larger classification margins",
        "In classification, the implicit regularization favours larger margins.",
        "THEORY.md §8",
    ),
    "C4": (
        "global stability conditions and stochastic stabilization",
        "Sufficient conditions for global stability hold; multiplicative noise can make "
        "unstable dynamics stable.",
        "THEORY.md §9",
    ),
    "C5": (
        "robustness at comparable clean accuracy",
        "Noisy RNNs are more robust to input perturbations at inference, at comparable "
        "clean accuracy.",
        "THEORY.md §11",
    ),
}

#: The stored analyses of one task: ``{model: [(data, arrays), ...]}``, one pair per
#: seed (:func:`nrnn_theory.experiments.pipeline.load_zoo_records`).
Records = Mapping[str, Sequence[tuple[dict[str, Any], dict[str, np.ndarray]]]]

#: The noisy models compared with their noise-free twin.
NOISY: tuple[str, ...] = ("nrnn_small", "nrnn_high")
TWIN = "lipschitz"
#: Non-inferiority margin of clean accuracy (absolute): "comparable accuracy".
ACCURACY_MARGIN = 0.02
#: Relative tolerance of the small-noise prediction against Monte Carlo on trained
#: models, on top of 4 standard errors (the O(eps^4) remainder is not known exactly).
GAP_RTOL = 0.10


def robust_score(data: Mapping[str, Any]) -> float:
    """Mean accuracy over every strength of the four perturbation sweeps."""
    rob = data.get("robustness") or {}
    vals = [stored_float(v) for v in rob.values()]
    return float(np.mean(vals)) if vals else math.nan


def paired_values(records: Records, a: str, b: str, key) -> tuple[list[float], list[float]]:
    """Values of ``key`` (a data key or a callable of the data) for models ``a`` and
    ``b``, paired by seed; seeds where either is missing or non-finite are dropped."""
    get = key if callable(key) else (lambda d: stored_float(d.get(key)))

    def by_seed(model):
        return {d["seed"]: get(d) for d, _ in records.get(model, ())}

    va, vb = by_seed(a), by_seed(b)
    xa, xb = [], []
    for seed in sorted(set(va) & set(vb)):
        x, y = stored_float(va[seed]), stored_float(vb[seed])
        if math.isfinite(x) and math.isfinite(y):
            xa.append(float(x))
            xb.append(float(y))
    return xa, xb


def comparison_evidence(label: str, c: Comparison | None, *, n_missing: str = "") -> Evidence:
    """An evidence line from a paired comparison (``None``: no paired seeds)."""
    if c is None:
        return Evidence(label, "no paired seeds" + n_missing, "n/a", "n/a", "inconclusive", "")
    return Evidence(
        label,
        f"{fmt(c.mean_a)} vs {fmt(c.mean_b)} (diff {fmt(c.diff)}, n = {c.n})",
        f"[{fmt(c.ci_low)}, {fmt(c.ci_high)}]",
        f"Glass's Delta {fmt(c.effect_size, 2)}",
        c.verdict,
        c.rule,
    )


def _directional(records, a, b, key, direction, label) -> Evidence:
    xa, xb = paired_values(records, a, b, key)
    c = compare_directional(xa, xb, direction=direction) if xa else None
    return comparison_evidence(label, c)


def regularizer_gap_evidence(records: Records) -> Evidence:
    """Does the second-order prediction (mean shift + eps^2/2 (Q + R), THEORY.md §6)
    match the Monte Carlo noisy-minus-clean loss of every trained NRNN-family model at
    the reference noise?"""
    rel, ok, n = [], [], 0
    for recs in records.values():
        for d, _ in recs:
            pred, mc, se = (
                stored_float(d.get(k)) for k in ("predicted_gap", "mc_gap", "mc_gap_stderr")
            )
            if not (math.isfinite(pred) and math.isfinite(mc) and math.isfinite(se)):
                continue
            n += 1
            err = abs(mc - pred)
            rel.append(err / abs(pred) if pred else math.inf)
            ok.append(err <= 4 * se + GAP_RTOL * abs(pred))
    rule = (
        f"supported if on every trained NRNN-family model |MC - prediction| <= 4 SE + "
        f"{GAP_RTOL:.0%} of the prediction; not supported if on none; else inconclusive"
    )
    if not n:
        return Evidence(
            "predicted gap vs Monte Carlo on trained models",
            "no models",
            "n/a",
            "n/a",
            "inconclusive",
            rule,
        )
    verdict = "supported" if all(ok) else ("not supported" if not any(ok) else "inconclusive")
    return Evidence(
        "predicted gap (mean shift + eps^2/2 (Q+R)) vs Monte Carlo, trained models",
        f"{sum(ok)}/{n} models agree; median relative error {fmt(float(np.median(rel)), 2)}",
        f"max relative error {fmt(float(np.max(rel)), 2)}",
        "n/a",
        verdict,
        rule,
    )


def zoo_evidence(records: Records, task: str) -> dict[str, list[Evidence]]:
    """Evidence lines of one task, keyed by claim: ``"C2"`` (regularizer), ``"C3a"``
    (flatness), ``"C3b"`` (stable dynamics), ``"C3c"`` (margins), ``"C5"`` (accuracy and
    robustness)."""
    out: dict[str, list[Evidence]] = {k: [] for k in ("C2", "C3a", "C3b", "C3c", "C5")}
    if TWIN not in records:
        return out
    out["C2"].append(regularizer_gap_evidence(records))
    if "explicit_reg" in records:
        out["C2"].append(
            _directional(
                records,
                "explicit_reg",
                TWIN,
                "regularizer",
                "less",
                f"[{task}] explicit-regularizer training lowers Q + R vs no noise",
            )
        )
    for noisy in NOISY:
        if noisy not in records:
            continue
        tag = f"[{task}] {MODEL_LABELS.get(noisy, noisy)} vs {MODEL_LABELS[TWIN]}"
        out["C2"].append(
            _directional(records, noisy, TWIN, "regularizer", "less", f"{tag}: Q + R lower")
        )
        out["C3a"].append(
            _directional(
                records, noisy, TWIN, "hessian_trace", "less", f"{tag}: Hessian trace lower"
            )
        )
        out["C3a"].append(
            _directional(
                records,
                noisy,
                TWIN,
                "hessian_top_eigenvalue",
                "less",
                f"{tag}: top Hessian eigenvalue lower",
            )
        )
        out["C3b"].append(
            _directional(
                records, noisy, TWIN, "lyapunov_top", "less", f"{tag}: top Lyapunov exponent lower"
            )
        )
        out["C3c"].append(
            _directional(
                records,
                noisy,
                TWIN,
                "empirical_margin_median",
                "greater",
                f"{tag}: median empirical margin larger",
            )
        )
        xa, xb = paired_values(records, noisy, TWIN, "test_accuracy")
        c = compare_noninferior(xa, xb, margin=ACCURACY_MARGIN) if xa else None
        out["C5"].append(comparison_evidence(f"{tag}: clean accuracy not worse", c))
        out["C5"].append(
            _directional(
                records,
                noisy,
                TWIN,
                robust_score,
                "greater",
                f"{tag}: robust accuracy (mean over the 4 sweeps) higher",
            )
        )
    return out


def _mean_pm(values: Sequence[float]) -> str:
    v = np.asarray([stored_float(x) for x in values], dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return "n/a"
    if v.size == 1:
        return fmt(float(v[0]))
    return f"{fmt(float(v.mean()))} ± {fmt(float(v.std(ddof=1)), 2)}"


def zoo_table(records: Records, task: str) -> Table:
    """One row per model: mean ± standard deviation over seeds of every quantity."""
    columns = (
        "model",
        "seeds",
        "test accuracy",
        "Q + R",
        "Hessian trace",
        "lambda_1 clean",
        "lambda_1 noisy",
        "median margin",
        "robust accuracy",
        "certified stable (clean / noisy)",
    )
    rows = []
    for name, recs in records.items():
        data = [d for d, _ in recs]

        def col(key: str, data=data) -> str:
            return _mean_pm([d.get(key) for d in data])

        certs = []
        for tag in ("clean", "noisy"):
            cs = [d.get(f"certificate_{tag}") for d in data]
            cs = [c for c in cs if c]
            certs.append(f"{sum(c['holds'] for c in cs)}/{len(cs)}" if cs else "n/a")
        rows.append(
            (
                MODEL_LABELS.get(name, name),
                str(len(data)),
                col("test_accuracy"),
                col("regularizer"),
                col("hessian_trace"),
                col("lyapunov_top"),
                col("lyapunov_top_noisy"),
                col("empirical_margin_median"),
                _mean_pm([robust_score(d) for d in data]),
                " / ".join(certs),
            )
        )
    note = (
        "Mean ± standard deviation over seeds. Q + R, lambda_1 (per unit time, finite-time "
        "exponent over the sequence) and certificates exist only for the NRNN family "
        "(n/a otherwise). The regularizer and the noisy exponent use the small reference "
        "noise (paper_code, a = mu = 0.02) for every model. Margins: median over correctly "
        "classified examples of the smallest l2 perturbation an attack finds."
    )
    return Table(f"Zoo summary: {task}", columns, tuple(rows), note)
