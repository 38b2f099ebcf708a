r"""Property-based verification of derivations: strategies, oracles and assertions.

In the spirit of ``hypothesis.extra.numpy`` and ``xarray.testing``: what the package's
own tests use to check every formula against an independent oracle, for a researcher
checking a derivation of their own (a new regularizer variant, a new certificate)
against the same references. See the tutorial "Verify a derivation property-based".

API index
---------
Tolerances (:mod:`~nrnn_theory.testing.tolerances`)
    TOLERANCES, STATISTICAL_SIGMAS, tol
Assertions (:mod:`~nrnn_theory.testing.assertions`)
    assert_within_stderr, assert_convergence_order, assert_agree_at_random_points,
    assert_gap_matches_regularizer
Problems with known answers (:mod:`~nrnn_theory.testing.problems`)
    random_params, stability_family_params, STABILITY_FAMILIES, linear_params,
    linear_rnn_classifier, one_step_margin, gbm_exact, em_gbm_exponent,
    em_linear_scalar_exponent, em_scalar_pathwise_rate, scalar_pathwise_log_bound,
    normal_expectation, random_symmetric, quadratic_problem, lorenz_rk4
Hypothesis strategies (:mod:`~nrnn_theory.testing.strategies`; needs hypothesis)
    nrnn_params, noise_specs, input_sequences, model_and_inputs, seeds

The strategies are loaded on first access (PEP 562), so that the oracles and assertions
work without hypothesis installed; ``pip install 'nrnn_theory[testing]'`` adds it.

Examples
--------
>>> import torch
>>> from nrnn_theory import check_stability, one_sided_constant
>>> from nrnn_theory.testing import stability_family_params, tol
>>> g = torch.Generator().manual_seed(1)
>>> p, lam = stability_family_params("stable", 5, 2, 3, generator=g)
>>> abs(one_sided_constant(p, "standard") - lam) < tol("eig")["rtol"] * (1 + abs(lam))
True
>>> check_stability(p, condition="contraction", one_sided="standard").holds
True
"""

from __future__ import annotations

from nrnn_theory.testing.assertions import (
    assert_agree_at_random_points,
    assert_convergence_order,
    assert_gap_matches_regularizer,
    assert_within_stderr,
)
from nrnn_theory.testing.problems import (
    STABILITY_FAMILIES,
    em_gbm_exponent,
    em_linear_scalar_exponent,
    em_scalar_pathwise_rate,
    gbm_exact,
    linear_params,
    linear_rnn_classifier,
    lorenz_rk4,
    normal_expectation,
    one_step_margin,
    quadratic_problem,
    random_params,
    random_symmetric,
    scalar_pathwise_log_bound,
    stability_family_params,
)
from nrnn_theory.testing.tolerances import STATISTICAL_SIGMAS, TOLERANCES, tol


_STRATEGIES = ("input_sequences", "model_and_inputs", "noise_specs", "nrnn_params", "seeds")

__all__ = [
    "STABILITY_FAMILIES",
    "STATISTICAL_SIGMAS",
    "TOLERANCES",
    "assert_agree_at_random_points",
    "assert_convergence_order",
    "assert_gap_matches_regularizer",
    "assert_within_stderr",
    "em_gbm_exponent",
    "em_linear_scalar_exponent",
    "em_scalar_pathwise_rate",
    "gbm_exact",
    "input_sequences",
    "linear_params",
    "linear_rnn_classifier",
    "lorenz_rk4",
    "model_and_inputs",
    "noise_specs",
    "normal_expectation",
    "nrnn_params",
    "one_step_margin",
    "quadratic_problem",
    "random_params",
    "random_symmetric",
    "scalar_pathwise_log_bound",
    "seeds",
    "stability_family_params",
    "tol",
]


def __getattr__(name: str) -> object:
    if name in _STRATEGIES:
        from nrnn_theory.testing import strategies

        return getattr(strategies, name)
    raise AttributeError(f"module 'nrnn_theory.testing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
