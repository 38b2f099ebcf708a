r"""Every theory quantity of one trained model of the zoo, as stored numbers.

:func:`analyse_member` computes, on a fixed subset of the test split:

* clean test accuracy (whole test split);
* the exact small-noise regularizer Q-hat, R-hat at the reference noise
  (docs/theory/regularizer.md) and an antithetic Monte Carlo check of the gap it predicts;
* the Hessian trace (Hutchinson) and top eigenvalue of the clean test loss with
  respect to all parameters (docs/theory/flatness.md);
* the Lyapunov spectrum (top ``k``) of the input-driven dynamics, clean and along a
  frozen path of the reference noise (docs/theory/stability.md);
* the stability certificates of docs/theory/stability.md, clean and with the reference noise;
* certified and empirical input margins (docs/theory/margins.md), and the certified
  :math:`\ell_\infty` robustness radius by bound propagation (CROWN,
  :func:`nrnn_theory.certified_radius`) on ``preset.n_certified`` examples;
* the robustness sweeps of docs/theory/experiments.md (:data:`PERTURBATIONS`: white, multiplicative
  and salt-and-pepper noise, FGSM and PGD at :math:`\ell_\infty` budgets
  :data:`ATTACK_EPS`), with the accuracy at every strength;
* the sign of the Euler step (:func:`nrnn_theory.check_step`): a learned step with
  entries :math:`\le 0` is flagged.

Quantities that exist only for the NRNN family (regularizer, exponents, certificates,
certified margins) are ``None`` for the other models, never invented.

The regularizer and flatness analyses of one model, :func:`analyse_regularizer` and
:func:`analyse_flatness`, are also what ``nrnn analyse`` computes on a checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nrnn_theory._record import Result
from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory.experiments.zoo import Preset, reference_noise
from nrnn_theory.flatness import HessianEigenvalues, TraceEstimate
from nrnn_theory.regularizer import ExplicitRegularizer, NoiseGapEstimate


__all__ = [
    "ATTACK_EPS",
    "PERTURBATIONS",
    "FlatnessAnalysis",
    "RegularizerAnalysis",
    "analyse_flatness",
    "analyse_member",
    "analyse_regularizer",
    "evaluation_subset",
]


@dataclass(frozen=True)
class RegularizerAnalysis(Result):
    """The explicit regularizer of one model at one noise (:func:`analyse_regularizer`).

    Attributes
    ----------
    noise : NoiseSpec
    result : ExplicitRegularizer
        Exact, per example, with the per-step contributions (``method="adjoint"``).
    monte_carlo : NoiseGapEstimate or None
        The antithetic Monte Carlo check of the predicted gap, if asked for.
    """

    noise: NoiseSpec
    result: ExplicitRegularizer
    monte_carlo: NoiseGapEstimate | None


def analyse_regularizer(
    params: NRNNParams,
    xs: torch.Tensor,
    labels: torch.Tensor,
    noise: NoiseSpec,
    *,
    mc_pairs: int = 0,
    generator: torch.Generator | None = None,
) -> RegularizerAnalysis:
    """The exact small-noise regularizer Q-hat, R-hat of a model (docs/theory/regularizer.md)
    with its per-step contributions and, with ``mc_pairs``, the Monte Carlo noisy-minus-clean
    gap it predicts (``mc_pairs`` antithetic pairs per example, drawn from ``generator``)."""
    from nrnn_theory.regularizer import estimate_noise_gap, explicit_regularizer

    reg = explicit_regularizer(params, xs, labels, noise, method="adjoint")  # + per-step R
    mc = None
    if mc_pairs:
        mc = estimate_noise_gap(params, xs, labels, noise, n_pairs=mc_pairs, generator=generator)
    return RegularizerAnalysis(noise=noise, result=reg, monte_carlo=mc)


@dataclass(frozen=True)
class FlatnessAnalysis(Result):
    """Hessian flatness of a model's clean loss (:func:`analyse_flatness`).

    Attributes
    ----------
    loss_value : float
        The mean cross-entropy at the trained parameters.
    parameters : dict of str to int
        Entries of each parameter tensor.
    n_params : int
    trace : TraceEstimate
        Hutchinson estimate of the Hessian trace (per parameter tensor too, if asked).
    eigenvalues : HessianEigenvalues
        The top ``k`` eigenvalues, with residuals.
    """

    loss_value: float
    parameters: dict[str, int]
    n_params: int
    trace: TraceEstimate
    eigenvalues: HessianEigenvalues


def analyse_flatness(
    model: torch.nn.Module,
    xs: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_probes: int,
    k: int = 1,
    per_parameter: bool = False,
    generator: torch.Generator | None = None,
    eigen_generator: torch.Generator | None = None,
) -> FlatnessAnalysis:
    """The Hessian of a model's mean cross-entropy on ``(xs, labels)`` with respect to all
    its parameters (docs/theory/flatness.md), in the model's current mode and dtype: its Hutchinson
    trace with ``n_probes`` probes from ``generator`` (per parameter tensor too when
    ``per_parameter``) and its top ``k`` eigenvalues by Lanczos from ``eigen_generator``
    (default: ``generator``, continuing its stream)."""
    from nrnn_theory.flatness import estimate_hessian_trace, hessian_eigenvalues, module_loss

    loss_fn, theta = module_loss(model, xs, labels)
    with torch.no_grad():
        loss = float(loss_fn(theta))
    blocks = {name: (name,) for name in theta} if per_parameter else None
    trace = estimate_hessian_trace(
        loss_fn, theta, n_probes=n_probes, blocks=blocks, generator=generator
    )
    eigen = generator if eigen_generator is None else eigen_generator
    eig = hessian_eigenvalues(loss_fn, theta, k=k, generator=eigen)
    return FlatnessAnalysis(
        loss_value=loss,
        parameters={name: int(t.numel()) for name, t in theta.items()},
        n_params=int(trace.n_params),
        trace=trace,
        eigenvalues=eig,
    )


#: The perturbations of every zoo model's robustness analysis (docs/theory/experiments.md).
PERTURBATIONS: tuple[str, ...] = (
    "white_noise",
    "multiplicative_noise",
    "salt_and_pepper",
    "fgsm_linf",
    "pgd_linf",
)
#: The l_inf attack budgets of the zoo (inputs in [0, 1]).
ATTACK_EPS: tuple[float, ...] = (0.01, 0.03, 0.05)


def evaluation_subset(data, n: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test examples after a seeded shuffle (the same for every model
    of a seed, so paired comparisons see the same examples)."""
    xs, ys = data.inputs("test"), data.labels("test")
    perm = torch.randperm(len(ys), generator=torch.Generator().manual_seed(10_000 + seed))
    idx = perm[: min(n, len(ys))]
    return xs[idx], ys[idx]


def _median_positive(t: torch.Tensor | np.ndarray) -> float:
    """Median over the finite, positive entries: a margin of 0 marks an example the
    model already misclassifies, so the median is over correctly classified ones."""
    a = np.asarray(t, dtype=float)
    a = a[np.isfinite(a) & (a > 0)]
    return float(np.median(a)) if a.size else math.nan


def analyse_member(model: torch.nn.Module, data, preset: Preset, *, seed: int):
    """Compute the analyses of one trained model.

    Parameters
    ----------
    model : nn.Module
        A trained zoo model (put in ``eval`` mode here; its parameters are not changed).
    data : TaskData
    preset : Preset
        Analysis sizes.
    seed : int
        Seed of every random choice (examples, probes, noise paths, attacks).

    Returns
    -------
    data : dict
        Scalars (JSON-able).
    arrays : dict of str to ndarray
        Per-example margins, spectra, robustness curves.
    """
    from nrnn_theory.attacks import minimal_perturbation
    from nrnn_theory.lyapunov import lyapunov_spectrum
    from nrnn_theory.margins import certified_margin
    from nrnn_theory.robustness import robustness_sweep
    from nrnn_theory.stability import check_stability, check_step
    from nrnn_theory.train import evaluate, params_from_module

    model = model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    xs, ys = evaluation_subset(data, preset.n_eval, seed=seed)
    xs, ys = xs.to(device), ys.to(device)
    out: dict[str, Any] = {"seed": seed, "n_eval": len(ys), "num_classes": int(data.num_classes)}
    arrays: dict[str, np.ndarray] = {}

    test = evaluate(model, data, "test")
    out["test_accuracy"] = float(test["accuracy"])
    out["test_loss"] = float(test["loss"])

    # ------------------------------------------- flatness (docs/theory/flatness.md)
    flat = analyse_flatness(model, xs, ys, n_probes=preset.n_probes, generator=gen)
    out["hessian_trace"] = float(flat.trace.mean)
    out["hessian_trace_stderr"] = float(flat.trace.stderr)
    out["hessian_top_eigenvalue"] = float(flat.eigenvalues.eigenvalues[0])
    out["n_params"] = flat.n_params

    # ------------------------------------------------------- margins, robustness
    xm, ym = xs[: preset.n_margin], ys[: preset.n_margin]
    empirical = minimal_perturbation(
        model, xm, ym, norm="l2", bounds=data.value_range, generator=gen
    )
    arrays["empirical_margin"] = empirical.distance.detach().cpu().numpy()
    out["empirical_margin_median"] = _median_positive(arrays["empirical_margin"])
    sweep = robustness_sweep(
        model,
        xs,
        ys,
        perturbations=PERTURBATIONS,
        grids={"fgsm_linf": ATTACK_EPS, "pgd_linf": ATTACK_EPS},
        n_draws=preset.robust_draws,
        data_range=data.value_range,
        generator=gen,
        name="model",
    )
    out["robustness"] = {}
    out["robust_accuracy"] = {}  # perturbation -> {strength: accuracy}
    for curve in sweep.curves:
        key = curve.perturbation
        arrays[f"robust_{key}_strengths"] = np.asarray(curve.strengths, dtype=float)
        arrays[f"robust_{key}_accuracy"] = np.asarray(curve.accuracy, dtype=float)
        arrays[f"robust_{key}_ci_low"] = np.asarray(curve.ci_low, dtype=float)
        arrays[f"robust_{key}_ci_high"] = np.asarray(curve.ci_high, dtype=float)
        out["robustness"][key] = float(np.mean(np.asarray(curve.accuracy, dtype=float)))
        out["robust_accuracy"][key] = {
            f"{s:g}": float(a) for s, a in zip(curve.strengths, curve.accuracy, strict=True)
        }
    out["robust_clean_accuracy"] = float(sweep.clean_accuracy)
    out["robust_clean_ci"] = [float(v) for v in sweep.clean_ci]

    # ------------------------------------------------------- NRNN family only
    try:
        params = params_from_module(model, dtype=torch.float64)
    except TypeError:
        params = None
    out["nrnn_family"] = params is not None
    if params is None:
        for key in (
            "Q",
            "R",
            "regularizer",
            "mc_gap",
            "mc_gap_stderr",
            "predicted_gap",
            "regularizer_gap",
            "lyapunov_top",
            "lyapunov_top_stderr",
            "lyapunov_top_noisy",
            "lyapunov_top_noisy_stderr",
            "certified_margin_median",
            "certificate_clean",
            "certificate_noisy",
            "certified_radius_median",
            "step_check",
        ):
            out[key] = None
        return out, arrays
    out["step_check"] = check_step(params).to_dict()

    noise = reference_noise()
    x64 = xs.to(torch.float64)
    analysis = analyse_regularizer(params, x64, ys, noise, mc_pairs=preset.mc_pairs, generator=gen)
    reg, mc = analysis.result, analysis.monte_carlo
    out["Q"] = float(reg.Q.mean())
    out["R"] = float(reg.R.mean())
    out["regularizer"] = float(reg.total.mean())
    out["regularizer_gap"] = float(reg.noise_gap.mean())  # eps^2/2 (Q + R)
    # paper_code: the mean of the noisy step differs from the clean one, so the
    # predicted train-minus-inference gap is mean_shift + eps^2/2 (Q + R).
    out["predicted_gap"] = float(reg.predicted_gap.mean())
    arrays["regularizer_per_example"] = reg.total.cpu().numpy()
    arrays["regularizer_per_step_R"] = reg.per_step_R.mean(0).cpu().numpy()
    out["mc_gap"] = None if mc is None else float(mc.mean)
    out["mc_gap_stderr"] = None if mc is None else float(mc.mean_stderr)

    xl = x64[: preset.lyap_trajectories]
    k = min(preset.lyap_k, params.hidden_size)
    clean = lyapunov_spectrum(params, xl, k=k, transient=0, generator=gen)  # seeded frame
    noisy = lyapunov_spectrum(params, xl, k=k, transient=0, noise=noise, generator=gen)
    arrays["lyapunov_clean"] = clean.exponents.cpu().numpy()
    arrays["lyapunov_noisy"] = noisy.exponents.cpu().numpy()
    out["lyapunov_top"] = float(clean.exponents[0])
    out["lyapunov_top_stderr"] = float(clean.stderr[0])
    out["lyapunov_top_noisy"] = float(noisy.exponents[0])
    out["lyapunov_top_noisy_stderr"] = float(noisy.stderr[0])

    cert = certified_margin(params, x64[: preset.n_margin], ym)
    arrays["certified_margin"] = cert.radius.cpu().numpy()
    out["certified_margin_median"] = _median_positive(arrays["certified_margin"])
    out["certified_radius_median"] = None
    if preset.n_certified:
        from nrnn_theory.verification import certified_radius

        n = min(preset.n_certified, len(ys))
        crown = certified_radius(
            params,
            x64[:n],
            ys[:n],
            norm="linf",
            method="crown",
            data_range=data.value_range,
            generator=gen,
        )
        lo, hi = data.value_range
        # "whole_range" (inf): the ball covers the data box, whose l_inf radius is hi - lo
        arrays["certified_radius"] = np.minimum(crown.radius.cpu().numpy(), hi - lo)
        # median over all n examples, a misclassified one counting as radius 0: the
        # paired comparison then sees the same examples for both models
        out["certified_radius_median"] = float(np.median(arrays["certified_radius"]))
        out["certified_radius_n"] = n
    for tag, spec in (("clean", None), ("noisy", noise)):
        c = check_stability(params, spec)
        out[f"certificate_{tag}"] = {
            "holds": bool(c.holds),
            "bound": float(c.bound),
            "condition": str(c.condition),
        }
    return out, arrays
