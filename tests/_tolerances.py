"""Thin re-export: the tolerances live in :mod:`nrnn_theory.testing.tolerances`."""

from nrnn_theory.testing.tolerances import STATISTICAL_SIGMAS, TOLERANCES, tol


__all__ = ["STATISTICAL_SIGMAS", "TOLERANCES", "tol"]
