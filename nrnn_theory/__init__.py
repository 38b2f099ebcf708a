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
    robustness_sweep, comparison_table, format_comparison_table, plot_robustness
Regularizer (THEORY.md §5-6)
    explicit_regularizer, regularizer_penalty, estimate_noise_gap,
    continuous_regularizer, regularizer_convergence
Flatness (THEORY.md §7)
    hvp, hessian, hessian_trace, estimate_hessian_trace, hessian_eigenvalues,
    estimate_spectral_density, hidden_state_hessian, nrnn_loss, module_loss,
    params_to_vector, vector_to_params
Lyapunov spectra (THEORY.md §9)
    lyapunov_spectrum, lyapunov_spectrum_map, kaplan_yorke_dimension, state_jacobian_norms
Stability certificates (THEORY.md §9)
    check_stability, one_sided_constant, step_norm_bound, minimal_stabilizing_noise,
    stability_report, format_stability_report
Reachable sets and slope sectors (THEORY.md §9)
    reachable_set, reachable_sector, global_sector, sector_from_preactivation_boxes,
    tanh_slope_range, ReachableSet, SlopeSector
LMI certificates in the best quadratic metric (THEORY.md §9)
    check_stability_lmi, finite_horizon_certificate, minimal_stabilizing_noise_lmi,
    quadratic_condition, solve_lmi, verify_lmi, QuadraticCondition, LMISolution,
    LMIVerification
Results
    ConventionMapping, FitHistory, JacobianNorm, MarginCertificate, LocalMarginEstimate,
    EmpiricalMargin, MarginSummary, RobustnessCurve, RobustnessSweep, ComparisonTable,
    ExplicitRegularizer, NoiseGapEstimate, ContinuousRegularizer, RegularizerConvergence,
    TraceEstimate, HessianTrace, HessianEigenvalues, SpectralDensity, HiddenStateHessian,
    LyapunovSpectrum, StateJacobianNorms, Certificate, StabilizingNoise, StabilityReport


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
    module_loss,
    nrnn_loss,
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
from nrnn_theory.reachability import (
    ReachableSet,
    SlopeSector,
    global_sector,
    reachable_sector,
    reachable_set,
    sector_from_preactivation_boxes,
    tanh_slope_range,
)
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
    FitHistory,
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
    TraceEstimate,
)
from nrnn_theory.robustness import (
    accuracy,
    comparison_table,
    format_comparison_table,
    multiplicative_noise,
    perturb,
    plot_robustness,
    robustness_sweep,
    salt_and_pepper,
    white_noise,
)
from nrnn_theory.sdp_certificates import (
    LMISolution,
    LMIVerification,
    QuadraticCondition,
    check_stability_lmi,
    finite_horizon_certificate,
    minimal_stabilizing_noise_lmi,
    quadratic_condition,
    solve_lmi,
    verify_lmi,
)
from nrnn_theory.stability import (
    check_stability,
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
    "FitHistory",
    "HessianEigenvalues",
    "HessianTrace",
    "HiddenStateHessian",
    "JacobianNorm",
    "LMISolution",
    "LMIVerification",
    "LocalMarginEstimate",
    "LyapunovSpectrum",
    "MarginCertificate",
    "MarginSummary",
    "NRNNParams",
    "NoiseGapEstimate",
    "NoiseSpec",
    "NonFiniteStateError",
    "QuadraticCondition",
    "ReachableSet",
    "RegularizerConvergence",
    "RobustnessCurve",
    "RobustnessSweep",
    "SlopeSector",
    "SpectralDensity",
    "StabilityReport",
    "StabilizingNoise",
    "StateJacobianNorms",
    "TraceEstimate",
    "__version__",
    "accuracy",
    "certified_margin",
    "check_stability",
    "check_stability_lmi",
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
    "finite_horizon_certificate",
    "format_comparison_table",
    "format_margin_summary",
    "format_stability_report",
    "global_sector",
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
    "minimal_stabilizing_noise_lmi",
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
    "plot_robustness",
    "quadratic_condition",
    "reachable_sector",
    "reachable_set",
    "readout",
    "regularizer_convergence",
    "regularizer_penalty",
    "robustness_sweep",
    "rollout",
    "salt_and_pepper",
    "sample_noise",
    "score_margin",
    "sde_to_paper_code",
    "sector_from_preactivation_boxes",
    "solve_lmi",
    "stability_report",
    "state_jacobian",
    "state_jacobian_norms",
    "step",
    "step_moments",
    "step_norm_bound",
    "tanh_slope_range",
    "vector_to_params",
    "verify_lmi",
    "white_noise",
]
