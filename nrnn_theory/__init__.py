"""nrnn_theory: the theory of noisy recurrent neural networks, computable.

A noisy RNN (NRNN) is an Euler-Maruyama discretization of the SDE
``dh = f(h, x) dt + eps * sigma(h) dB`` driven by its input (Lim, Erichson,
Hodgkinson, Mahoney, *Noisy Recurrent Neural Networks*, NeurIPS 2021). The
mathematics implemented here is specified, with its derivations and oracles, in the
project's THEORY.md.

API index
---------
Records
    NRNNParams, NoiseSpec
Dynamics (THEORY.md §2-3)
    drift, diffusion, noise_matrix, noise_covariance, step, step_moments,
    state_jacobian, input_jacobian, rollout, sample_noise, noise_dim, readout, logits
Conventions (THEORY.md §3)
    paper_code_to_sde, sde_to_paper_code
Margins (THEORY.md §8)
    score_margin, input_output_jacobian, jacobian_gram, jacobian_spectral_norm,
    certified_margin, local_margin_estimate, margin_growth, margin_summary,
    format_margin_summary
Attacks and empirical margins (THEORY.md §8, §11)
    fgsm, pgd, deepfool, minimal_perturbation, perturbation_norm
Robustness (THEORY.md §11, claim C5)
    white_noise, multiplicative_noise, salt_and_pepper, perturb, accuracy,
    robustness_sweep, comparison_table, format_comparison_table
    (the four-panel figure: ``nrnn_theory.experiments.zoo_plots.plot_robustness``;
    ``nrnn_theory.plot_robustness`` is a deprecated alias of it)
Regularizer (THEORY.md §5-6)
    explicit_regularizer, regularizer_penalty, estimate_noise_gap,
    continuous_regularizer, regularizer_convergence
Flatness (THEORY.md §7)
    hvp, hessian, hessian_trace, estimate_hessian_trace, hessian_eigenvalues,
    estimate_spectral_density, hidden_state_hessian, params_to_vector, vector_to_params
Objectives (losses as pure functions of named tensors, for the flatness estimators)
    nrnn_loss, module_loss
Lyapunov spectra (THEORY.md §9)
    lyapunov_spectrum, lyapunov_spectrum_map, kaplan_yorke_dimension, state_jacobian_norms
Stability certificates (THEORY.md §9)
    check_stability, one_sided_constant, step_norm_bound, minimal_stabilizing_noise,
    stability_report, format_stability_report, check_step
Results (each defined beside the function returning it; all in :mod:`nrnn_theory.results`)
    ConventionMapping, JacobianNorm, MarginCertificate, LocalMarginEstimate,
    EmpiricalMargin, MarginSummary, RobustnessCurve, RobustnessSweep, ComparisonTable,
    ExplicitRegularizer, NoiseGapEstimate, ContinuousRegularizer, RegularizerConvergence,
    TraceEstimate, HessianTrace, HessianEigenvalues, SpectralDensity, HiddenStateHessian,
    LyapunovSpectrum, StateJacobianNorms, Certificate, StabilizingNoise, StabilityReport,
    StepCheck


The training layer (models, data, ``fit``, checkpoints) is the subpackage
:mod:`nrnn_theory.train`; the core never imports it.
"""

from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory._version import __version__
from nrnn_theory.attacks import deepfool, fgsm, minimal_perturbation, perturbation_norm, pgd
from nrnn_theory.conventions import paper_code_to_sde, sde_to_paper_code
from nrnn_theory.dynamics import (
    NonFiniteStateError,
    diffusion,
    drift,
    input_jacobian,
    logits,
    noise_covariance,
    noise_dim,
    noise_matrix,
    readout,
    rollout,
    sample_noise,
    state_jacobian,
    step,
    step_moments,
)
from nrnn_theory.flatness import (
    estimate_hessian_trace,
    estimate_spectral_density,
    hessian,
    hessian_eigenvalues,
    hessian_trace,
    hidden_state_hessian,
    hvp,
    params_to_vector,
    vector_to_params,
)
from nrnn_theory.lyapunov import (
    kaplan_yorke_dimension,
    lyapunov_spectrum,
    lyapunov_spectrum_map,
    state_jacobian_norms,
)
from nrnn_theory.margins import (
    certified_margin,
    format_margin_summary,
    input_output_jacobian,
    jacobian_gram,
    jacobian_spectral_norm,
    local_margin_estimate,
    margin_growth,
    margin_summary,
    score_margin,
)
from nrnn_theory.objectives import module_loss, nrnn_loss
from nrnn_theory.regularizer import (
    continuous_regularizer,
    estimate_noise_gap,
    explicit_regularizer,
    regularizer_convergence,
    regularizer_penalty,
)
from nrnn_theory.results import (
    Certificate,
    ComparisonTable,
    ContinuousRegularizer,
    ConventionMapping,
    EmpiricalMargin,
    ExplicitRegularizer,
    HessianEigenvalues,
    HessianTrace,
    HiddenStateHessian,
    JacobianNorm,
    LocalMarginEstimate,
    LyapunovSpectrum,
    MarginCertificate,
    MarginSummary,
    NoiseGapEstimate,
    RegularizerConvergence,
    RobustnessCurve,
    RobustnessSweep,
    SpectralDensity,
    StabilityReport,
    StabilizingNoise,
    StateJacobianNorms,
    StepCheck,
    TraceEstimate,
)
from nrnn_theory.robustness import (
    accuracy,
    comparison_table,
    format_comparison_table,
    multiplicative_noise,
    perturb,
    robustness_sweep,
    salt_and_pepper,
    white_noise,
)
from nrnn_theory.stability import (
    check_stability,
    check_step,
    format_stability_report,
    minimal_stabilizing_noise,
    one_sided_constant,
    stability_report,
    step_norm_bound,
)


__all__ = [
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
    "NRNNParams",
    "NoiseGapEstimate",
    "NoiseSpec",
    "NonFiniteStateError",
    "RegularizerConvergence",
    "RobustnessCurve",
    "RobustnessSweep",
    "SpectralDensity",
    "StabilityReport",
    "StabilizingNoise",
    "StateJacobianNorms",
    "StepCheck",
    "TraceEstimate",
    "__version__",
    "accuracy",
    "certified_margin",
    "check_stability",
    "check_step",
    "comparison_table",
    "continuous_regularizer",
    "deepfool",
    "diffusion",
    "drift",
    "estimate_hessian_trace",
    "estimate_noise_gap",
    "estimate_spectral_density",
    "explicit_regularizer",
    "fgsm",
    "format_comparison_table",
    "format_margin_summary",
    "format_stability_report",
    "hessian",
    "hessian_eigenvalues",
    "hessian_trace",
    "hidden_state_hessian",
    "hvp",
    "input_jacobian",
    "input_output_jacobian",
    "jacobian_gram",
    "jacobian_spectral_norm",
    "kaplan_yorke_dimension",
    "local_margin_estimate",
    "logits",
    "lyapunov_spectrum",
    "lyapunov_spectrum_map",
    "margin_growth",
    "margin_summary",
    "minimal_perturbation",
    "minimal_stabilizing_noise",
    "module_loss",
    "multiplicative_noise",
    "noise_covariance",
    "noise_dim",
    "noise_matrix",
    "nrnn_loss",
    "one_sided_constant",
    "paper_code_to_sde",
    "params_to_vector",
    "perturb",
    "perturbation_norm",
    "pgd",
    "readout",
    "regularizer_convergence",
    "regularizer_penalty",
    "robustness_sweep",
    "rollout",
    "salt_and_pepper",
    "sample_noise",
    "score_margin",
    "sde_to_paper_code",
    "stability_report",
    "state_jacobian",
    "state_jacobian_norms",
    "step",
    "step_moments",
    "step_norm_bound",
    "vector_to_params",
    "white_noise",
]


def __getattr__(name: str):
    # Deprecated alias (see nrnn_theory.robustness.__getattr__): the robustness figure is
    # presentation, drawn by nrnn_theory.experiments.zoo_plots.plot_robustness.
    if name == "plot_robustness":
        from nrnn_theory import robustness

        return robustness.__getattr__(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
