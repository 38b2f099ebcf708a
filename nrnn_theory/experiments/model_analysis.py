"""Every theory quantity of one trained model of the zoo, as stored numbers.

:func:`analyse_member` computes, on a fixed subset of the test split:

* clean test accuracy (whole test split);
* the exact small-noise regularizer Q-hat, R-hat at the reference noise
  (THEORY.md §6) and an antithetic Monte Carlo check of the gap it predicts;
* the Hessian trace (Hutchinson) and top eigenvalue of the clean test loss with
  respect to all parameters (THEORY.md §7);
* the Lyapunov spectrum (top ``k``) of the input-driven dynamics, clean and along a
  frozen path of the reference noise (THEORY.md §9);
* the stability certificates of THEORY.md §9, clean and with the reference noise;
* certified and empirical input margins (THEORY.md §8);
* the four robustness sweeps of THEORY.md §11.

Quantities that exist only for the NRNN family (regularizer, exponents, certificates,
certified margins) are ``None`` for the other models, never invented.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from nrnn_theory.experiments.zoo import Preset, reference_noise


__all__ = ["analyse_member", "evaluation_subset"]


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
    from nrnn_theory.flatness import estimate_hessian_trace, hessian_eigenvalues, module_loss
    from nrnn_theory.lyapunov import lyapunov_spectrum
    from nrnn_theory.margins import certified_margin
    from nrnn_theory.regularizer import estimate_noise_gap, explicit_regularizer
    from nrnn_theory.robustness import robustness_sweep
    from nrnn_theory.stability import check_stability
    from nrnn_theory.train import evaluate, params_from_module

    model = model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    xs, ys = evaluation_subset(data, preset.n_eval, seed=seed)
    xs, ys = xs.to(device), ys.to(device)
    out: dict[str, Any] = {"seed": seed, "n_eval": len(ys)}
    arrays: dict[str, np.ndarray] = {}

    test = evaluate(model, data, "test")
    out["test_accuracy"] = float(test["accuracy"])
    out["test_loss"] = float(test["loss"])

    # ---------------------------------------------------------------- flatness (§7)
    loss_fn, theta = module_loss(model, xs, ys)
    trace = estimate_hessian_trace(loss_fn, theta, n_probes=preset.n_probes, generator=gen)
    top = hessian_eigenvalues(loss_fn, theta, k=1, generator=gen)
    out["hessian_trace"] = float(trace.mean)
    out["hessian_trace_stderr"] = float(trace.stderr)
    out["hessian_top_eigenvalue"] = float(top.eigenvalues[0])
    out["n_params"] = int(trace.n_params)

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
        n_draws=preset.robust_draws,
        data_range=data.value_range,
        generator=gen,
        name="model",
    )
    out["robustness"] = {}
    for curve in sweep.curves:
        key = curve.perturbation
        arrays[f"robust_{key}_strengths"] = np.asarray(curve.strengths, dtype=float)
        arrays[f"robust_{key}_accuracy"] = np.asarray(curve.accuracy, dtype=float)
        arrays[f"robust_{key}_ci_low"] = np.asarray(curve.ci_low, dtype=float)
        arrays[f"robust_{key}_ci_high"] = np.asarray(curve.ci_high, dtype=float)
        out["robustness"][key] = float(np.mean(np.asarray(curve.accuracy, dtype=float)))
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
        ):
            out[key] = None
        return out, arrays

    noise = reference_noise()
    x64 = xs.to(torch.float64)
    reg = explicit_regularizer(params, x64, ys, noise, method="adjoint")  # + per-step R
    out["Q"] = float(reg.Q.mean())
    out["R"] = float(reg.R.mean())
    out["regularizer"] = float(reg.total.mean())
    out["regularizer_gap"] = float(reg.noise_gap.mean())  # eps^2/2 (Q + R)
    # paper_code: the mean of the noisy step differs from the clean one, so the
    # predicted train-minus-inference gap is mean_shift + eps^2/2 (Q + R).
    out["predicted_gap"] = float(reg.predicted_gap.mean())
    arrays["regularizer_per_example"] = reg.total.cpu().numpy()
    arrays["regularizer_per_step_R"] = reg.per_step_R.mean(0).cpu().numpy()
    mc = estimate_noise_gap(params, x64, ys, noise, n_pairs=preset.mc_pairs, generator=gen)
    out["mc_gap"] = float(mc.mean)
    out["mc_gap_stderr"] = float(mc.mean_stderr)

    xl = x64[: preset.lyap_trajectories]
    k = min(preset.lyap_k, params.hidden_size)
    clean = lyapunov_spectrum(params, xl, k=k, transient=0)
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
    for tag, spec in (("clean", None), ("noisy", noise)):
        c = check_stability(params, spec)
        out[f"certificate_{tag}"] = {
            "holds": bool(c.holds),
            "bound": float(c.bound),
            "condition": str(c.condition),
        }
    return out, arrays
