"""Canonical sympy symbols with assumptions (docs/contributing.md, *Symbolic to numeric*).

Noise levels, steps and rates that are positive by definition are declared so,
which lets ``simplify`` take square roots and absolute values correctly.
"""

from __future__ import annotations

import sympy as sp


__all__ = [
    "a",
    "beta",
    "dt",
    "epsilon",
    "gamma",
    "lam",
    "mu",
    "n_steps",
    "rho",
    "sigma",
    "sigma1",
    "sigma2",
    "t",
]

dt = sp.Symbol("Delta_t", positive=True)
t = sp.Symbol("t", positive=True)
epsilon = sp.Symbol("epsilon", positive=True)
sigma = sp.Symbol("sigma", positive=True)
sigma1 = sp.Symbol("sigma_1", positive=True)
sigma2 = sp.Symbol("sigma_2", positive=True)
gamma = sp.Symbol("gamma", positive=True)
beta = sp.Symbol("beta", nonnegative=True)
mu = sp.Symbol("mu", nonnegative=True)
a = sp.Symbol("a", nonnegative=True)
lam = sp.Symbol("lambda", real=True)
rho = sp.Symbol(
    "rho", nonnegative=True
)  # bound on the step-map norm (docs/theory/stability.md (f))
n_steps = sp.Symbol("M", integer=True, positive=True)  # sequence length
