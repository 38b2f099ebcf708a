"""Symbolic (sympy) derivations of the formulas the numeric modules compute.

Each ``*_expr`` builder derives an expression; the codegen gateway
(:func:`to_numpy_fn`, :func:`to_torch_fn`) turns it into a callable that tests
compare with the hand-written torch kernels (CONVENTIONS.md §4).

================  ==================  ====================
THEORY.md         symbolic            numeric
================  ==================  ====================
§8                margin_growth_expr  margins.margin_growth
§8, §9(f)         margin_bound_expr   margins.certified_margin (``lipschitz``)
================  ==================  ====================
"""

from nrnn_theory.symbolic._codegen import TORCH_ALLOWED, to_numpy_fn, to_torch_fn
from nrnn_theory.symbolic.margins import margin_bound_expr, margin_growth_expr


__all__ = [
    "TORCH_ALLOWED",
    "margin_bound_expr",
    "margin_growth_expr",
    "to_numpy_fn",
    "to_torch_fn",
]
