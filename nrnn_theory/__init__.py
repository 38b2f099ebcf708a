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
Lyapunov spectra (THEORY.md §9)
    lyapunov_spectrum, lyapunov_spectrum_map, kaplan_yorke_dimension, state_jacobian_norms
Stability certificates (THEORY.md §9)
    check_stability, one_sided_constant, step_norm_bound, minimal_stabilizing_noise,
    stability_report, format_stability_report
Results
    ConventionMapping, LyapunovSpectrum, JacobianNorms, Certificate, StabilizingNoise,
    StabilityReport
"""

from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory._version import __version__
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
from nrnn_theory.lyapunov import (
    kaplan_yorke_dimension,
    lyapunov_spectrum,
    lyapunov_spectrum_map,
    state_jacobian_norms,
)
from nrnn_theory.results import (
    Certificate,
    ConventionMapping,
    JacobianNorms,
    LyapunovSpectrum,
    StabilityReport,
    StabilizingNoise,
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
    "ConventionMapping",
    "JacobianNorms",
    "LyapunovSpectrum",
    "NRNNParams",
    "NoiseSpec",
    "NonFiniteStateError",
    "StabilityReport",
    "StabilizingNoise",
    "__version__",
    "check_stability",
    "diffusion",
    "drift",
    "format_stability_report",
    "input_jacobian",
    "kaplan_yorke_dimension",
    "logits",
    "lyapunov_spectrum",
    "lyapunov_spectrum_map",
    "minimal_stabilizing_noise",
    "noise_covariance",
    "noise_dim",
    "noise_matrix",
    "one_sided_constant",
    "paper_code_to_sde",
    "readout",
    "rollout",
    "sample_noise",
    "sde_to_paper_code",
    "stability_report",
    "state_jacobian",
    "state_jacobian_norms",
    "step",
    "step_moments",
    "step_norm_bound",
]
