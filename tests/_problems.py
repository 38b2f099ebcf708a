"""Thin re-export: the oracle problems live in :mod:`nrnn_theory.testing.problems`."""

from nrnn_theory.testing.problems import *  # noqa: F403
from nrnn_theory.testing.problems import __all__  # noqa: F401
