"""Symbolic (sympy) derivations of the formulas the numeric modules compute.

Each ``*_expr`` builder derives an expression; the codegen gateway
(:func:`to_numpy_fn`, :func:`to_torch_fn`) turns it into a callable that tests
compare with the hand-written torch kernels (CONVENTIONS.md §4).

=============  ======================================  ====================================
THEORY.md      symbolic                                numeric
=============  ======================================  ====================================
§9(b)          stability.difference_generator_expr     (enters the three bounds below)
§9(c)          stability.almost_sure_bound_expr        check_stability, almost_sure_scalar
§9(d)          stability.almost_sure_bound_expr        check_stability, almost_sure_diagonal
§9(e)          stability.mean_square_rate_expr         check_stability, mean_square
§10 V4         stability.gbm_exponent_expr             lyapunov_spectrum, H = 1, scalar
§10 V4         lyapunov.em_gbm_exponent_series_expr    lyapunov_spectrum, frozen noise path
=============  ======================================  ====================================
"""

from nrnn_theory.symbolic._codegen import TORCH_ALLOWED, to_numpy_fn, to_torch_fn


__all__ = ["TORCH_ALLOWED", "to_numpy_fn", "to_torch_fn"]
