"""Shared helpers of the theory-only studies (public within the package).

Presets (:data:`PRESETS`), the device a preset runs on, one intra-op thread on CPU
for the duration of a study, random test models, a weighted least-squares line with
standard errors, and the rule that turns a test into a verdict.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from nrnn_theory._types import NRNNParams
from nrnn_theory.experiments.verdicts import Verdict


__all__ = [
    "PRESETS",
    "check_preset",
    "random_nrnn",
    "rule_verdict",
    "single_threaded_run",
    "stored_floats",
    "study_device",
    "threads_for",
    "weighted_slope",
]

#: Sizes of every study: seconds, about a minute (2 CPU cores), minutes, GPU.
PRESETS = ("smoke", "quick", "standard", "full")


def single_threaded_run(run: Callable[..., Any]) -> Callable[..., Any]:
    """Run a study under :func:`threads_for` its preset's device."""

    @functools.wraps(run)
    def wrapper(preset: str = "quick", *, seed: int = 0, progress: bool = False):
        with threads_for(study_device(check_preset(preset))):
            return run(preset, seed=seed, progress=progress)

    return wrapper


def check_preset(preset: str) -> str:
    """``preset`` if it is one of :data:`PRESETS`, else a ``ValueError`` naming it."""
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {PRESETS}, got {preset!r}")
    return preset


def study_device(preset: str) -> torch.device:
    """Where a study of ``preset`` runs: CUDA for ``"full"`` when available, else CPU."""
    if preset == "full" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@contextmanager
def threads_for(device: torch.device) -> Iterator[None]:
    """One intra-op thread on CPU for the duration (restored after).

    The studies run long Python loops over tiny batched matrices (H <= 12), where
    OpenMP synchronisation costs more than it saves: on the 2-core build machine one
    thread was 2-3x faster than two (and much faster when the cores are shared).
    """
    if device.type != "cpu":
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def random_nrnn(
    H: int, D: int, C: int, *, dt: float, generator: torch.Generator, device
) -> NRNNParams:
    """A random NRNN with O(1) weights scaled by ``1/sqrt(H)`` (float64)."""

    def r(*shape, s=1.0):
        return s * torch.randn(*shape, generator=generator, dtype=torch.float64)

    k = 1.0 / math.sqrt(H)
    p = NRNNParams(
        A=r(H, H, s=k),
        W=r(H, H, s=k),
        U=r(H, D),
        b=r(H, s=0.1),
        V=r(C, H, s=k),
        c=r(C, s=0.1),
        dt=dt,
    )
    return p.to(device=device)


def weighted_slope(x, y, sy) -> dict[str, float]:
    r"""Weighted least-squares line :math:`y = a + bx` with known standard errors ``sy``.

    The slope's standard error is the weighted-regression one, inflated by
    :math:`\sqrt{\max(1, \chi^2/\nu)}` when the points scatter more than their errors
    allow (curvature, or underestimated errors). With fewer than 3 points the standard
    errors are ``nan``.

    Returns
    -------
    dict
        ``slope``, ``slope_se``, ``intercept``, ``intercept_se``, ``chi2_dof``, ``n``.

    Examples
    --------
    >>> f = weighted_slope([0.0, 1.0, 2.0], [1.0, 3.0, 5.0], [0.1, 0.1, 0.1])
    >>> round(f["slope"], 6), round(f["intercept"], 6)
    (2.0, 1.0)
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    sy = np.asarray(sy, dtype=float)
    n = int(x.size)
    out = {"slope": math.nan, "slope_se": math.nan, "intercept": math.nan}
    out |= {"intercept_se": math.nan, "chi2_dof": math.nan, "n": n}
    if n < 2:
        return out
    w = 1.0 / np.maximum(sy, 1e-300) ** 2
    X = np.stack([np.ones_like(x), x], axis=1)
    F = X.T @ (w[:, None] * X)
    cov = np.linalg.inv(F)
    a, b = cov @ (X.T @ (w * y))
    out["slope"], out["intercept"] = float(b), float(a)
    if n >= 3:
        chi2 = float(np.sum(w * (y - a - b * x) ** 2)) / (n - 2)
        inflate = max(1.0, chi2)
        out["slope_se"] = float(math.sqrt(cov[1, 1] * inflate))
        out["intercept_se"] = float(math.sqrt(cov[0, 0] * inflate))
        out["chi2_dof"] = chi2
    return out


def rule_verdict(ok: bool, resolved: bool) -> Verdict:
    """``"inconclusive"`` unless the data resolve the test, else whether it passed."""
    if not resolved:
        return "inconclusive"
    return "supported" if ok else "not supported"


def stored_floats(d: dict) -> dict[str, float]:
    """Numbers of a stored dict as floats (the store writes nan/inf as strings)."""
    return {k: float(v) for k, v in d.items()}
