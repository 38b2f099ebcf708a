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
Flatness (THEORY.md §7)
    hvp, hessian, hessian_trace, estimate_hessian_trace, hessian_eigenvalues,
    estimate_spectral_density, hidden_state_hessian, nrnn_loss, module_loss,
    params_to_vector, vector_to_params
Results
    ConventionMapping, TraceEstimate, HessianTrace, HessianEigenvalues,
    SpectralDensity, HiddenStateHessian
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
from nrnn_theory.results import (
    ConventionMapping,
    HessianEigenvalues,
    HessianTrace,
    HiddenStateHessian,
    SpectralDensity,
    TraceEstimate,
)


__all__ = [
    "ConventionMapping",
    "HessianEigenvalues",
    "HessianTrace",
    "HiddenStateHessian",
    "NRNNParams",
    "NoiseSpec",
    "NonFiniteStateError",
    "SpectralDensity",
    "TraceEstimate",
    "__version__",
    "diffusion",
    "drift",
    "estimate_hessian_trace",
    "estimate_spectral_density",
    "hessian",
    "hessian_eigenvalues",
    "hessian_trace",
    "hidden_state_hessian",
    "hvp",
    "input_jacobian",
    "logits",
    "module_loss",
    "noise_covariance",
    "noise_dim",
    "noise_matrix",
    "nrnn_loss",
    "paper_code_to_sde",
    "params_to_vector",
    "readout",
    "rollout",
    "sample_noise",
    "sde_to_paper_code",
    "state_jacobian",
    "step",
    "step_moments",
    "vector_to_params",
]
