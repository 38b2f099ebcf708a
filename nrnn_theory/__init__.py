"""nrnn_theory: the theory of noisy recurrent neural networks, computable.

A noisy RNN (NRNN) is an Euler-Maruyama discretization of the SDE
``dh = f(h, x) dt + eps * sigma(h) dB`` driven by its input (Lim, Erichson,
Hodgkinson, Mahoney, *Noisy Recurrent Neural Networks*, NeurIPS 2021). The
mathematics implemented here is specified, with its derivations and oracles, in the
project's theory pages (``docs/theory/``, built into the documentation site).

API index
---------
Records
    NRNNParams, NoiseSpec
Dynamics (docs/theory/model.md, conventions.md)
    drift, diffusion, noise_matrix, noise_covariance, step, step_moments,
    state_jacobian, input_jacobian, rollout, sample_noise, noise_dim, readout, logits
Conventions (docs/theory/conventions.md)
    paper_code_to_sde, sde_to_paper_code
Margins (docs/theory/margins.md)
    score_margin, input_output_jacobian, jacobian_gram, jacobian_spectral_norm,
    certified_margin, local_margin_estimate, margin_growth, margin_summary,
    format_margin_summary
Certified radii by bound propagation (docs/theory/margins.md; nrnn_theory.verification)
    logit_difference_bounds, certified_radius, LogitBounds, CertifiedRadius
Attacks and empirical margins (docs/theory/margins.md, experiments.md)
    fgsm, pgd, deepfool, minimal_perturbation, perturbation_norm
Robustness (docs/theory/experiments.md, claim C5)
    white_noise, multiplicative_noise, salt_and_pepper, perturb, accuracy,
    robustness_sweep, comparison_table, format_comparison_table
    (the four-panel figure: ``nrnn_theory.experiments.zoo_plots.plot_robustness``;
    ``nrnn_theory.plot_robustness`` is a deprecated alias of it)
Regularizer (docs/theory/regularizer.md)
    explicit_regularizer, regularizer_penalty, estimate_noise_gap,
    continuous_regularizer, regularizer_convergence
Flatness (docs/theory/flatness.md)
    hvp, hessian, hessian_trace, estimate_hessian_trace, hessian_eigenvalues,
    estimate_spectral_density, hidden_state_hessian, params_to_vector, vector_to_params
Objectives (losses as pure functions of named tensors, for the flatness estimators)
    nrnn_loss, module_loss
Lyapunov spectra (docs/theory/stability.md)
    lyapunov_spectrum, lyapunov_spectrum_map, kaplan_yorke_dimension, state_jacobian_norms
Stability certificates (docs/theory/stability.md)
    check_stability, one_sided_constant, step_norm_bound, minimal_stabilizing_noise,
    stability_report, format_stability_report, check_step
Reachable sets and slope sectors (docs/theory/stability.md; nrnn_theory.reachability)
    reachable_set, reachable_sector, global_sector, sector_from_preactivation_boxes,
    tanh_slope_range, ReachableSet, SlopeSector
LMI certificates in the best metric (docs/theory/stability.md; nrnn_theory.sdp_certificates)
    check_stability_lmi, finite_horizon_certificate, minimal_stabilizing_noise_lmi,
    quadratic_condition, solve_lmi, verify_lmi, QuadraticCondition, LMISolution,
    LMIVerification
Results (each defined beside the function returning it; all in :mod:`nrnn_theory.results`)
    ConventionMapping, JacobianNorm, MarginCertificate, LocalMarginEstimate,
    EmpiricalMargin, MarginSummary, RobustnessCurve, RobustnessSweep, ComparisonTable,
    ExplicitRegularizer, NoiseGapEstimate, ContinuousRegularizer, RegularizerConvergence,
    TraceEstimate, HessianTrace, HessianEigenvalues, SpectralDensity, HiddenStateHessian,
    LyapunovSpectrum, StateJacobianNorms, Certificate, StabilizingNoise, StabilityReport,
    StepCheck


The training layer (models, data, ``fit``, checkpoints, your own data and model
files, the per-model analyses of ``nrnn analyse`` and ``nrnn certify``) is the
subpackage :mod:`nrnn_theory.train`; the core never imports it. Strategies, oracles
and assertions for verifying a derivation property-based are in
:mod:`nrnn_theory.testing`.

Names are loaded lazily (PEP 562): ``import nrnn_theory`` imports neither torch nor
any submodule, and the first access to a name imports the module that defines it
(``_EXPORTS`` below is the one table of re-exports), so that ``nrnn --version`` and
``nrnn --help`` start without torch.
"""

from __future__ import annotations

import importlib
import importlib.util

from nrnn_theory._version import __version__ as __version__


#: module -> the public names it defines, re-exported here (loaded on first access).
_EXPORTS: dict[str, tuple[str, ...]] = {
    "nrnn_theory._types": (
        "NoiseSpec",
        "NRNNParams",
    ),
    "nrnn_theory.attacks": (
        "deepfool",
        "fgsm",
        "minimal_perturbation",
        "perturbation_norm",
        "pgd",
    ),
    "nrnn_theory.conventions": (
        "paper_code_to_sde",
        "sde_to_paper_code",
    ),
    "nrnn_theory.dynamics": (
        "NonFiniteStateError",
        "diffusion",
        "drift",
        "input_jacobian",
        "logits",
        "noise_covariance",
        "noise_dim",
        "noise_matrix",
        "readout",
        "rollout",
        "sample_noise",
        "state_jacobian",
        "step",
        "step_moments",
    ),
    "nrnn_theory.flatness": (
        "estimate_hessian_trace",
        "estimate_spectral_density",
        "hessian",
        "hessian_eigenvalues",
        "hessian_trace",
        "hidden_state_hessian",
        "hvp",
        "params_to_vector",
        "vector_to_params",
    ),
    "nrnn_theory.lyapunov": (
        "kaplan_yorke_dimension",
        "lyapunov_spectrum",
        "lyapunov_spectrum_map",
        "state_jacobian_norms",
    ),
    "nrnn_theory.margins": (
        "certified_margin",
        "format_margin_summary",
        "input_output_jacobian",
        "jacobian_gram",
        "jacobian_spectral_norm",
        "local_margin_estimate",
        "margin_growth",
        "margin_summary",
        "score_margin",
    ),
    "nrnn_theory.objectives": (
        "module_loss",
        "nrnn_loss",
    ),
    "nrnn_theory.reachability": (
        "ReachableSet",
        "SlopeSector",
        "global_sector",
        "reachable_sector",
        "reachable_set",
        "sector_from_preactivation_boxes",
        "tanh_slope_range",
    ),
    "nrnn_theory.regularizer": (
        "continuous_regularizer",
        "estimate_noise_gap",
        "explicit_regularizer",
        "regularizer_convergence",
        "regularizer_penalty",
    ),
    "nrnn_theory.results": (
        "Certificate",
        "ComparisonTable",
        "ContinuousRegularizer",
        "ConventionMapping",
        "EmpiricalMargin",
        "ExplicitRegularizer",
        "HessianEigenvalues",
        "HessianTrace",
        "HiddenStateHessian",
        "JacobianNorm",
        "LocalMarginEstimate",
        "LyapunovSpectrum",
        "MarginCertificate",
        "MarginSummary",
        "NoiseGapEstimate",
        "RegularizerConvergence",
        "RobustnessCurve",
        "RobustnessSweep",
        "SpectralDensity",
        "StabilityReport",
        "StabilizingNoise",
        "StateJacobianNorms",
        "StepCheck",
        "TraceEstimate",
    ),
    "nrnn_theory.robustness": (
        "accuracy",
        "comparison_table",
        "format_comparison_table",
        "multiplicative_noise",
        "perturb",
        "robustness_sweep",
        "salt_and_pepper",
        "white_noise",
    ),
    "nrnn_theory.sdp_certificates": (
        "LMISolution",
        "LMIVerification",
        "QuadraticCondition",
        "check_stability_lmi",
        "finite_horizon_certificate",
        "minimal_stabilizing_noise_lmi",
        "quadratic_condition",
        "solve_lmi",
        "verify_lmi",
    ),
    "nrnn_theory.stability": (
        "check_stability",
        "check_step",
        "format_stability_report",
        "minimal_stabilizing_noise",
        "one_sided_constant",
        "stability_report",
        "step_norm_bound",
    ),
    "nrnn_theory.verification": (
        "CertifiedRadius",
        "LogitBounds",
        "certified_radius",
        "logit_difference_bounds",
    ),
}

#: Deprecated aliases: name -> the module whose own ``__getattr__`` resolves it (with its
#: DeprecationWarning, on every access). Not in ``__all__``.
_DEPRECATED: dict[str, str] = {
    # The robustness figure is presentation, drawn by
    # nrnn_theory.experiments.zoo_plots.plot_robustness.
    "plot_robustness": "nrnn_theory.robustness",
}

#: public name -> the module defining it.
_ORIGIN: dict[str, str] = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(["__version__", *_ORIGIN])


def __getattr__(name: str):
    """Import a re-exported name (or a public submodule) on first access (PEP 562)."""
    module = _ORIGIN.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later accesses bypass __getattr__
        return value
    if name in _DEPRECATED:
        return getattr(importlib.import_module(_DEPRECATED[name]), name)
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
