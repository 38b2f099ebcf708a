"""The paper's claims and the evidence for them: their text, the data it is computed
from, and the rules that turn stored zoo analyses into evidence lines, verdicts, tables.

:data:`CLAIMS` holds each claim's title, statement, theory reference and the direction
the paper's abstract states (:class:`Claim`; the report's sections, in order);
:data:`Records` is the stored analyses of one task, the input of every rule here and of
the zoo figures (:mod:`nrnn_theory.experiments.zoo_plots`).

Every verdict here is computed by a stated rule from the stored numbers
(:mod:`nrnn_theory.experiments.verdicts`); nothing is written by hand. The comparisons
pair each noisy RNN with its *matched* noise-free twin (:data:`TWIN`: the same
architecture with the same learned per-unit step, trained with the same seed on the
same data), which isolates the effect the paper attributes to noise injection at equal
parametrization. The effect of the learned step itself (learned-step twin vs the
fixed-step Lipschitz RNN, both without noise) is a separate, uncounted context line
(:data:`FIXED_TWIN`); runs without the matched twin fall back to the fixed-step one.
Each line states the direction the paper's abstract claims (docs/theory/index.md) beside the
measured paired difference, its interval and effect size; the paper's own table values
are not known here and are never quoted (docs/theory/experiments.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from nrnn_theory.experiments._helpers import fmt
from nrnn_theory.experiments.report import Evidence, Table
from nrnn_theory.experiments.store import stored_float
from nrnn_theory.experiments.verdicts import Comparison, compare_directional, compare_noninferior
from nrnn_theory.experiments.zoo import MODEL_LABELS


__all__ = [
    "ACCURACY_MARGIN",
    "CLAIMS",
    "Claim",
    "FIXED_TWIN",
    "GAP_RTOL",
    "NEAR_CHANCE",
    "NOISY",
    "Records",
    "TWIN",
    "comparison_evidence",
    "fgsm_score",
    "paired_values",
    "regularizer_gap_evidence",
    "robust_score",
    "scale_warnings",
    "step_effect_evidence",
    "twin_of",
    "zoo_evidence",
    "zoo_table",
]


class Claim(NamedTuple):
    """A claim of the paper: its report title, statement, theory pages, and the
    direction of the effect the paper's abstract states (qualitative only: the paper's
    numbers are not known here and are never quoted)."""

    title: str
    statement: str
    theory: str
    direction: str


#: The claims of the paper (docs/theory/index.md) in report order.
CLAIMS: dict[str, Claim] = {
    "C1": Claim(
        "noisy RNNs are discretized SDEs",
        "RNNs trained with noise injected into their hidden states are discretizations "
        "of SDEs driven by the input data.",
        "docs/theory/model.md, conventions.md, regularizer.md",
        "RNNs with noise injected into their hidden states are discretizations of SDEs "
        "driven by the input data: the discrete model tends to its SDE as Δt → 0",
    ),
    "C2": Claim(
        "small noise acts as an explicit regularizer",
        "For small noise, noise injection is approximately an explicit regularizer "
        "ε²/2 (Q + R), and training with noise lowers it.",
        "docs/theory/regularizer.md",
        "in the small-noise regime noise injection is approximately an explicit "
        "regularizer: the noisy-minus-clean loss matches ε²/2 (Q + R)",
    ),
    "C3a": Claim(
        "noise promotes flatter minima",
        "The implicit regularization promotes flatter minima of the loss.",
        "docs/theory/flatness.md",
        "noise-trained models have flatter minima: smaller Hessian trace than their "
        "noise-free twin",
    ),
    "C3b": Claim(
        "noise biases training towards more stable dynamics",
        "The implicit regularization biases training towards more stable dynamics.",
        "docs/theory/regularizer.md, stability.md",
        "noise biases training towards more stable dynamics: a lower top Lyapunov "
        "exponent λ₁ than the noise-free twin",
    ),
    "C3c": Claim(
        "noise favours larger classification margins",
        "In classification, the implicit regularization favours larger margins.",
        "docs/theory/margins.md",
        "noise-trained classifiers have larger classification margins than their noise-free twin",
    ),
    "C4": Claim(
        "global stability conditions and stochastic stabilization",
        "Sufficient conditions for global stability hold; multiplicative noise can make "
        "unstable dynamics stable.",
        "docs/theory/stability.md",
        "sufficient conditions certify global stability, and noise injection can "
        "stabilize (stochastic stabilization): an unstable model has a negative top "
        "exponent under enough multiplicative noise",
    ),
    "C5": Claim(
        "robustness at comparable clean accuracy",
        "Noisy RNNs are more robust to input perturbations at inference, at comparable "
        "clean accuracy.",
        "docs/theory/experiments.md",
        "noise-trained RNNs are more robust to various input perturbations than their "
        "noise-free twin, at comparable clean accuracy",
    ),
}

#: The stored analyses of one task: ``{model: [(data, arrays), ...]}``, one pair per
#: seed (:func:`nrnn_theory.experiments.pipeline.load_zoo_records`).
Records = Mapping[str, Sequence[tuple[dict[str, Any], dict[str, np.ndarray]]]]

#: The noisy models compared with their noise-free twin.
NOISY: tuple[str, ...] = ("nrnn_small", "nrnn_high")
#: The matched twin: same architecture and learned step as the noisy models, no noise.
TWIN = "nrnn_step"
#: The fixed-step noise-free model: the control of the learned step's effect.
FIXED_TWIN = "lipschitz"
#: A model is "near chance" when its mean clean accuracy is within this (absolute) of
#: 1 / classes: the claims about a trained model cannot be tested on it.
NEAR_CHANCE = 0.10
#: The l_inf FGSM budget of the headline robustness line.
FGSM_EPS = "0.03"
#: Non-inferiority margin of clean accuracy (absolute): "comparable accuracy".
ACCURACY_MARGIN = 0.02
#: Relative tolerance of the small-noise prediction against Monte Carlo on trained
#: models, on top of 4 standard errors (the O(eps^4) remainder is not known exactly).
GAP_RTOL = 0.10


def robust_score(data: Mapping[str, Any]) -> float:
    """Mean accuracy over every strength of the perturbation sweeps."""
    rob = data.get("robustness") or {}
    vals = [stored_float(v) for v in rob.values()]
    return float(np.mean(vals)) if vals else math.nan


def fgsm_score(data: Mapping[str, Any]) -> float:
    """Accuracy under FGSM (l_inf) at ε = 0.03 (``nan`` if not measured)."""
    acc = (data.get("robust_accuracy") or {}).get("fgsm_linf") or {}
    return stored_float(acc.get(FGSM_EPS, math.nan))


def twin_of(records: Records) -> str | None:
    """The noise-free twin the noisy models are compared with: :data:`TWIN` when the
    run trained it, else :data:`FIXED_TWIN` (older runs), else ``None``."""
    for name in (TWIN, FIXED_TWIN):
        if name in records:
            return name
    return None


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


def comparison_evidence(
    label: str, c: Comparison | None, *, n_missing: str = "", counts: bool = True
) -> Evidence:
    """An evidence line from a paired comparison (``None``: no paired seeds);
    ``counts=False`` for a context line that does not enter the claim's verdict."""
    if c is None:
        return Evidence(
            label, "no paired seeds" + n_missing, "n/a", "n/a", "inconclusive", "", counts
        )
    return Evidence(
        label,
        f"{fmt(c.mean_a)} vs {fmt(c.mean_b)} (Δ = {fmt(c.diff)}, n = {c.n})",
        f"[{fmt(c.ci_low)}, {fmt(c.ci_high)}]",
        f"Glass's Δ = {fmt(c.effect_size, 2)}",
        c.verdict,
        c.rule,
        counts,
    )


def _directional(records, a, b, key, direction, label, *, counts: bool = True) -> Evidence:
    xa, xb = paired_values(records, a, b, key)
    c = compare_directional(xa, xb, direction=direction) if xa else None
    return comparison_evidence(label, c, counts=counts)


def step_effect_evidence(records: Records, task: str) -> dict[str, list[Evidence]]:
    """The learned step's own effect, without noise: :data:`TWIN` (learned step) vs
    :data:`FIXED_TWIN` (fixed step), paired over seeds, as context lines (``counts=False``)
    of C3c (margins) and C5 (accuracy, robustness). Empty when either model is missing."""
    out: dict[str, list[Evidence]] = {"C3c": [], "C5": []}
    if TWIN not in records or FIXED_TWIN not in records:
        return out
    tag = f"[{task}] step effect, no noise: learned vs fixed step"
    for claim, key, word in (
        ("C5", "test_accuracy", "clean accuracy"),
        ("C5", fgsm_score, f"FGSM ε = {FGSM_EPS} accuracy"),
        ("C5", robust_score, "robust accuracy (mean over the sweeps)"),
        ("C3c", "empirical_margin_median", "median ℓ₂ margin"),
    ):
        out[claim].append(
            _directional(
                records, TWIN, FIXED_TWIN, key, "greater", f"{tag}: {word} higher", counts=False
            )
        )
    return out


def scale_warnings(records: Records, task: str, training: Mapping[str, Any] | None = None):
    """Why this run's scale cannot test the claims on ``task`` (empty: no reason found).

    A core model (the noisy ones and their twin) is *near chance* when its mean clean
    test accuracy is within :data:`NEAR_CHANCE` of 1 / classes, and *still improving*
    when on more than half of its seeds the last epoch has the strictly highest
    validation accuracy of its run (training had not converged).

    Parameters
    ----------
    records : Records
        The stored analyses of one task (each with ``test_accuracy`` and
        ``num_classes``).
    task : str
    training : mapping, optional
        ``{model: [train record, ...]}``: each a :class:`~nrnn_theory.train.FitHistory`
        as a dict (``records`` per epoch with ``val_accuracy``).

    Returns
    -------
    list of str
    """
    twin = twin_of(records)
    core = [m for m in (*NOISY, twin) if m is not None and m in records]
    out = []
    near, improving = [], []
    for m in core:
        accs = [stored_float(d.get("test_accuracy")) for d, _ in records[m]]
        classes = [d.get("num_classes") for d, _ in records[m] if d.get("num_classes")]
        accs = [a for a in accs if math.isfinite(a)]
        if accs and classes:
            chance = 1.0 / float(classes[0])
            if float(np.mean(accs)) <= chance + NEAR_CHANCE:
                near.append(f"{MODEL_LABELS.get(m, m)} {fmt(float(np.mean(accs)))}")
        runs = (training or {}).get(m) or []
        flags = [_still_improving(r) for r in runs]
        if flags and sum(flags) > len(flags) / 2:
            improving.append(f"{MODEL_LABELS.get(m, m)} ({sum(flags)}/{len(flags)} seeds)")
    if near:
        out.append(
            f"[{task}] models near chance (clean accuracy within {NEAR_CHANCE:g} of "
            f"1/classes): {', '.join(near)}. Their margins, flatness and robustness say "
            "nothing about what noise does to a trained model."
        )
    if improving:
        out.append(
            f"[{task}] still improving at the last epoch (validation accuracy highest at "
            f"the final epoch): {', '.join(improving)}. Train longer (a larger preset) "
            "before reading the verdicts as the paper's claims."
        )
    return out


def _still_improving(history: Mapping[str, Any]) -> bool:
    vals = [r.get("val_accuracy") for r in history.get("records") or ()]
    vals = [float(v) for v in vals if v is not None]
    return len(vals) >= 2 and vals[-1] > max(vals[:-1])


def regularizer_gap_evidence(records: Records) -> Evidence:
    """Does the second-order prediction (mean shift + eps^2/2 (Q + R), docs/theory/regularizer.md)
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
        f"supported if on every trained NRNN-family model |MC - prediction| ≤ 4 SE + "
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
        "predicted gap (mean shift + ε²/2 (Q + R)) vs Monte Carlo, trained models",
        f"{sum(ok)}/{n} models agree; median relative error {fmt(float(np.median(rel)), 2)}",
        f"max relative error {fmt(float(np.max(rel)), 2)}",
        "n/a",
        verdict,
        rule,
    )


def zoo_evidence(records: Records, task: str) -> dict[str, list[Evidence]]:
    """Evidence lines of one task, keyed by claim: ``"C2"`` (regularizer), ``"C3a"``
    (flatness), ``"C3b"`` (stable dynamics), ``"C3c"`` (margins, certified radius),
    ``"C5"`` (accuracy and robustness). Each noisy model is paired with its matched twin
    (:func:`twin_of`); the learned step's effect is added as context lines
    (:func:`step_effect_evidence`)."""
    out: dict[str, list[Evidence]] = {k: [] for k in ("C2", "C3a", "C3b", "C3c", "C5")}
    twin = twin_of(records)
    if twin is None:
        return out
    out["C2"].append(regularizer_gap_evidence(records))
    if "explicit_reg" in records and FIXED_TWIN in records:
        out["C2"].append(
            _directional(
                records,
                "explicit_reg",
                FIXED_TWIN,
                "regularizer",
                "less",
                f"[{task}] explicit-regularizer training lowers Q + R vs no noise (fixed step)",
            )
        )
    for noisy in NOISY:
        if noisy not in records:
            continue
        tag = f"[{task}] {MODEL_LABELS.get(noisy, noisy)} vs {MODEL_LABELS.get(twin, twin)}"

        def line(key, direction, what, *, noisy=noisy, tag=tag):
            return _directional(records, noisy, twin, key, direction, f"{tag}: {what}")

        out["C2"].append(line("regularizer", "less", "Q + R lower"))
        out["C3a"].append(line("hessian_trace", "less", "Hessian trace lower"))
        out["C3a"].append(line("hessian_top_eigenvalue", "less", "top Hessian eigenvalue lower"))
        out["C3b"].append(line("lyapunov_top", "less", "top Lyapunov exponent λ₁ lower"))
        out["C3c"].append(line("empirical_margin_median", "greater", "median ℓ₂ margin larger"))
        if any(d.get("certified_radius_median") is not None for d, _ in records[noisy]):
            out["C3c"].append(
                line(
                    "certified_radius_median",
                    "greater",
                    "median CROWN certified ℓ∞ radius larger",
                )
            )
        # the headline first (the report's "Measured:" quotes a claim's first line)
        out["C5"].append(line(fgsm_score, "greater", f"accuracy under FGSM ε = {FGSM_EPS} higher"))
        xa, xb = paired_values(records, noisy, twin, "test_accuracy")
        c = compare_noninferior(xa, xb, margin=ACCURACY_MARGIN) if xa else None
        out["C5"].append(comparison_evidence(f"{tag}: clean accuracy not worse", c))
        out["C5"].append(
            line(robust_score, "greater", "robust accuracy (mean over the sweeps) higher")
        )
    for claim, lines in step_effect_evidence(records, task).items():
        out[claim] += lines
    return out


def _step_flags(data: Sequence[Mapping[str, Any]]) -> str:
    """Seeds whose learned step has entries <= 0, of those with a learned step."""
    checks = [d.get("step_check") for d in data]
    learned = [c for c in checks if c and c.get("learned")]
    if not learned:
        return "n/a"
    return f"{sum(bool(c.get('flagged')) for c in learned)}/{len(learned)}"


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
        "λ₁ clean",
        "λ₁ noisy",
        "median margin",
        "robust accuracy",
        "certified stable (clean / noisy)",
        "learned step ≤ 0",
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
                _step_flags(data),
            )
        )
    note = (
        "Mean ± standard deviation over seeds. Q + R, λ₁ (per unit time, finite-time "
        "exponent over the sequence) and certificates exist only for the NRNN family "
        "(n/a otherwise). The regularizer and the noisy exponent use the small reference "
        "noise (paper_code, a = μ = 0.02) for every model. Margins: median over correctly "
        "classified examples of the smallest ℓ₂ perturbation an attack finds. Learned "
        "step ≤ 0: seeds whose learned per-unit step has entries ≤ 0 at the selected "
        "epoch (the map steps against its drift there; docs/theory/conventions.md)."
    )
    return Table(f"Zoo summary: {task}", columns, tuple(rows), note, columns[1:])
