"""Thin re-export: the strategies live in :mod:`nrnn_theory.testing.strategies`."""

from nrnn_theory.testing.strategies import *  # noqa: F403
from nrnn_theory.testing.strategies import __all__  # noqa: F401
