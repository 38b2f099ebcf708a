"""The one table of numerical tolerances (docs/contributing.md, *Tests and tolerances*).

Use ``tol(kind, dtype)`` and pass the result to ``torch.testing.assert_close`` or
``numpy.testing.assert_allclose``. Every override in a test carries a one-line reason.
"""

from __future__ import annotations

import torch


__all__ = ["STATISTICAL_SIGMAS", "TOLERANCES", "tol"]

#: (rtol, atol) per kind and dtype.
TOLERANCES: dict[str, dict[torch.dtype, tuple[float, float]]] = {
    # One arithmetic path compared with another of the same length.
    "elementwise": {torch.float64: (1e-12, 1e-12), torch.float32: (1e-5, 1e-6)},
    # Rollouts, sums over time or batch: error grows with the number of terms.
    "reduction": {torch.float64: (1e-9, 1e-10), torch.float32: (1e-4, 1e-5)},
    # Eigen-decompositions and linear solves: conditioning enters.
    "eig": {torch.float64: (1e-8, 1e-10), torch.float32: (1e-3, 1e-4)},
    "linear_solve": {torch.float64: (1e-8, 1e-10), torch.float32: (1e-3, 1e-4)},
    # Autograd against central differences with h ~ 1e-6: truncation O(h^2),
    # cancellation O(eps/h) ~ 1e-10.
    "autograd_vs_fd": {torch.float64: (1e-5, 1e-7)},
    # A lambdified sympy expression against the hand-written torch kernel.
    "symbolic_vs_numeric": {torch.float64: (1e-10, 1e-12), torch.float32: (1e-5, 1e-6)},
}

#: Monte Carlo results must lie within this many of their own standard errors.
STATISTICAL_SIGMAS = 4.0


def tol(kind: str, dtype: torch.dtype = torch.float64) -> dict[str, float]:
    """``dict(rtol=..., atol=...)`` for a tolerance kind and dtype.

    Parameters
    ----------
    kind : str
        A key of :data:`TOLERANCES`.
    dtype : torch.dtype
        float64 or float32.

    Returns
    -------
    dict of str to float
        ``rtol`` and ``atol``.
    """
    try:
        rtol, atol = TOLERANCES[kind][dtype]
    except KeyError as exc:
        raise KeyError(f"no tolerance for kind={kind!r}, dtype={dtype}") from exc
    return {"rtol": rtol, "atol": atol}
