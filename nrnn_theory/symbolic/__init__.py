"""Symbolic (sympy) derivations of the formulas the numeric modules compute.

Each ``*_expr`` builder derives an expression; the codegen gateway
(:func:`to_numpy_fn`, :func:`to_torch_fn`) turns it into a callable that tests
compare with the hand-written torch kernels (docs/contributing.md, *Symbolic to
numeric*).

===============  ==============================================  =================================
docs/theory      symbolic                                        numeric
===============  ==============================================  =================================
model: drift     ``dynamics.drift_expr``, ``clean_chain_expr``   ``drift``, ``rollout``
reg.: scalar     ``regularizer.scalar_linear_regularizer_expr``  ``continuous_regularizer``
reg.: expansion  ``regularizer.expansion_expr``                  ``explicit_regularizer`` (V2)
reg.: Q, R       ``regularizer.regularizer_formula_expr``        ``explicit_regularizer``
reg.: NRNN, CE   ``regularizer.nrnn_regularizer_expr``           ``explicit_regularizer``
margins: growth  ``margins.margin_growth_expr``                  ``margins.margin_growth``
margins: bound   ``margins.margin_bound_expr``                   ``certified_margin`` (lipschitz)
stability (b)    ``stability.difference_generator_expr``         (enters the three bounds below)
stability (c)    ``stability.almost_sure_bound_expr``            ``check_stability`` (scalar)
stability (d)    ``stability.almost_sure_bound_expr``            ``check_stability`` (diagonal)
stability (e)    ``stability.mean_square_rate_expr``             ``check_stability`` (mean square)
oracles: V4      ``stability.gbm_exponent_expr``                 ``lyapunov_spectrum``, H = 1
oracles: V4      ``lyapunov.em_gbm_exponent_series_expr``        ``lyapunov_spectrum`` (frozen)
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
