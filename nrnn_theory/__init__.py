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
Regularizer (THEORY.md §5-6)
    explicit_regularizer, regularizer_penalty, estimate_noise_gap,
    continuous_regularizer, regularizer_convergence
Results
    ConventionMapping, ExplicitRegularizer, NoiseGapEstimate, ContinuousRegularizer,
    RegularizerConvergence
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
from nrnn_theory.regularizer import (
    continuous_regularizer,
    estimate_noise_gap,
    explicit_regularizer,
    regularizer_convergence,
    regularizer_penalty,
)
from nrnn_theory.results import (
    ContinuousRegularizer,
    ConventionMapping,
    ExplicitRegularizer,
    NoiseGapEstimate,
    RegularizerConvergence,
)


__all__ = [
    "ContinuousRegularizer",
    "ConventionMapping",
    "ExplicitRegularizer",
    "NoiseGapEstimate",
    "RegularizerConvergence",
    "NRNNParams",
    "NoiseSpec",
    "NonFiniteStateError",
    "__version__",
    "continuous_regularizer",
    "diffusion",
    "drift",
    "estimate_noise_gap",
    "explicit_regularizer",
    "input_jacobian",
    "logits",
    "noise_covariance",
    "noise_dim",
    "noise_matrix",
    "paper_code_to_sde",
    "readout",
    "regularizer_convergence",
    "regularizer_penalty",
    "rollout",
    "sample_noise",
    "sde_to_paper_code",
    "state_jacobian",
    "step",
    "step_moments",
]
