"""Symbolic (sympy) derivations of the formulas the numeric modules compute.

Each ``*_expr`` builder derives an expression; the codegen gateway
(:func:`to_numpy_fn`, :func:`to_torch_fn`) turns it into a callable that tests
compare with the hand-written torch kernels (CONVENTIONS.md §4).

===============  ==============================================  =================================
THEORY.md        symbolic                                        numeric
===============  ==============================================  =================================
§2 drift, chain  ``dynamics.drift_expr``, ``clean_chain_expr``   ``drift``, ``rollout``
§5 scalar lin.   ``regularizer.scalar_linear_regularizer_expr``  ``continuous_regularizer``
§6 expansion     ``regularizer.expansion_expr``                  ``explicit_regularizer`` (V2)
§6 Q-hat, R-hat  ``regularizer.regularizer_formula_expr``        ``explicit_regularizer``
§6 NRNN, CE      ``regularizer.nrnn_regularizer_expr``           ``explicit_regularizer``
§8               ``margins.margin_growth_expr``                  ``margins.margin_growth``
§8, §9(f)        ``margins.margin_bound_expr``                   ``certified_margin`` (lipschitz)
§9(b)            ``stability.difference_generator_expr``         (enters the three bounds below)
§9(c)            ``stability.almost_sure_bound_expr``            ``check_stability`` (scalar)
§9(d)            ``stability.almost_sure_bound_expr``            ``check_stability`` (diagonal)
§9(e)            ``stability.mean_square_rate_expr``             ``check_stability`` (mean square)
§10 V4           ``stability.gbm_exponent_expr``                 ``lyapunov_spectrum``, H = 1
§10 V4           ``lyapunov.em_gbm_exponent_series_expr``        ``lyapunov_spectrum`` (frozen)
===============  ==============================================  =================================
"""

from nrnn_theory.symbolic._codegen import TORCH_ALLOWED, to_numpy_fn, to_torch_fn
from nrnn_theory.symbolic.margins import margin_bound_expr, margin_growth_expr
from nrnn_theory.symbolic.regularizer import (
    expansion_expr,
    nrnn_regularizer_expr,
    regularizer_formula_expr,
    scalar_linear_regularizer_expr,
)


__all__ = [
    "TORCH_ALLOWED",
    "expansion_expr",
    "margin_bound_expr",
    "margin_growth_expr",
    "nrnn_regularizer_expr",
    "regularizer_formula_expr",
    "scalar_linear_regularizer_expr",
    "to_numpy_fn",
    "to_torch_fn",
]
