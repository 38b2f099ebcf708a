r"""Assertions that compare a computation with an independent oracle.

Each raises ``AssertionError`` with a message that names what was compared, the values
and the allowed difference, so that a failing property test explains itself:

* :func:`assert_within_stderr`: a Monte Carlo estimate against the exact value, within
  :data:`~nrnn_theory.testing.STATISTICAL_SIGMAS` of its own standard error;
* :func:`assert_convergence_order`: errors at decreasing step sizes against a
  predicted order (the slope of a least-squares fit of :math:`\log e` on
  :math:`\log h`);
* :func:`assert_agree_at_random_points`: two implementations of one formula (e.g. a
  lambdified sympy expression and a torch kernel) at random points, within a tolerance
  kind of :func:`~nrnn_theory.testing.tol`;
* :func:`assert_gap_matches_regularizer`: the explicit regularizer of docs/theory/regularizer.md
  against the antithetic Monte Carlo noisy-minus-clean loss gap.

Examples
--------
>>> assert_within_stderr(1.02, 0.01, 1.0)
>>> round(assert_convergence_order([0.1, 0.05, 0.025], [1e-2, 2.5e-3, 6.25e-4], order=2), 6)
2.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from nrnn_theory.testing.tolerances import STATISTICAL_SIGMAS, tol


__all__ = [
    "assert_agree_at_random_points",
    "assert_convergence_order",
    "assert_gap_matches_regularizer",
    "assert_within_stderr",
]


def _as_array(value: object) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().to(torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)


def assert_within_stderr(
    estimate: float | torch.Tensor | np.ndarray,
    stderr: float | torch.Tensor | np.ndarray,
    exact: float | torch.Tensor | np.ndarray,
    *,
    sigmas: float = STATISTICAL_SIGMAS,
    slack: float = 0.0,
    what: str = "estimate",
) -> None:
    r"""Assert :math:`|\text{estimate} - \text{exact}| \le \text{sigmas}\cdot\text{stderr}
    + \text{slack}`, elementwise.

    Parameters
    ----------
    estimate : float or array_like
        The Monte Carlo estimate(s).
    stderr : float or array_like
        Their standard error(s) (broadcast against ``estimate``), finite and >= 0.
    exact : float or array_like
        The exact value(s).
    sigmas : float
        Allowed standard errors (default :data:`STATISTICAL_SIGMAS`, 4: a false alarm
        about once in 16,000 independent checks).
    slack : float
        A deterministic allowance added to the bound (e.g. a known bias of order
        :math:`\Delta t`), with its reason in the caller.
    what : str
        Name of the quantity, for the message.

    Raises
    ------
    AssertionError
        If an entry lies outside the band, or a standard error is negative or not finite.
    """
    est, se, ex = (_as_array(v) for v in (estimate, stderr, exact))
    if not (np.isfinite(se).all() and (se >= 0).all()):
        raise AssertionError(f"{what}: standard error must be finite and >= 0, got {se}")
    diff = np.abs(est - ex)
    bound = sigmas * se + slack
    bad = ~(diff <= bound)
    if bad.any():
        i = np.unravel_index(int(np.argmax(bad)), bad.shape) if bad.ndim else ()
        z = float(diff[i] / se.item(0)) if se.size == 1 and se.item(0) > 0 else float("nan")
        raise AssertionError(
            f"{what}: {float(np.broadcast_to(est, bad.shape)[i]):.6g} differs from the expected "
            f"{float(np.broadcast_to(ex, bad.shape)[i]):.6g} by {float(diff[i]):.3g}, more "
            f"than {sigmas:g} standard errors ({float(np.broadcast_to(bound, bad.shape)[i]):.3g}"
            f"{'' if math.isnan(z) else f'; {z:.1f} SE'}) at {int(bad.sum())} of "
            f"{bad.size} entries"
        )


def assert_convergence_order(
    steps: Sequence[float] | np.ndarray,
    errors: Sequence[float] | np.ndarray,
    order: float,
    *,
    tolerance: float = 0.25,
    what: str = "error",
) -> float:
    r"""Assert that ``errors`` decay like ``steps**order``: the fitted slope of
    :math:`\log|e|` on :math:`\log h` lies within ``tolerance`` of ``order``.

    Parameters
    ----------
    steps : sequence of float
        Step sizes :math:`h > 0` (at least 2, distinct).
    errors : sequence of float
        The errors at those steps (nonzero; their absolute values are used).
    order : float
        The predicted order.
    tolerance : float
        Allowed difference between the fitted slope and ``order``.
    what : str
        Name of the error, for the message.

    Returns
    -------
    float
        The fitted slope.

    Raises
    ------
    AssertionError
        If the slope is off by more than ``tolerance``, or an error is zero or not
        finite (no order can be fitted).
    """
    h, e = _as_array(steps).ravel(), np.abs(_as_array(errors).ravel())
    if h.shape != e.shape or h.size < 2 or len(set(h.tolist())) < 2 or (h <= 0).any():
        raise ValueError(
            f"steps, errors: expected at least 2 distinct steps > 0 and one error each, got "
            f"{h.size} steps and {e.size} errors"
        )
    if not (np.isfinite(e).all() and (e > 0).all()):
        raise AssertionError(f"{what}: expected finite nonzero errors to fit an order, got {e}")
    slope = float(np.polyfit(np.log(h), np.log(e), 1)[0])
    if abs(slope - order) > tolerance:
        raise AssertionError(
            f"{what}: fitted order {slope:.3f}, expected {order:g} ± {tolerance:g} (steps "
            f"{h.tolist()}, errors {[float(f'{v:.3g}') for v in e]})"
        )
    return slope


def assert_agree_at_random_points(
    first: Callable[..., object],
    second: Callable[..., object],
    sample: Callable[[torch.Generator], tuple],
    *,
    n_points: int = 10,
    seed: int = 0,
    kind: str = "symbolic_vs_numeric",
    dtype: torch.dtype = torch.float64,
    what: str = "the two implementations",
) -> None:
    """Assert that two implementations of one formula agree at random points.

    At each point, ``args = sample(generator)`` and ``first(*args)`` is compared with
    ``second(*args)`` within :func:`~nrnn_theory.testing.tol` ``(kind, dtype)``.

    Parameters
    ----------
    first, second : callable
        The two implementations (e.g. a lambdified sympy expression and a torch
        function); each returns a number, array or tensor of the same shape.
    sample : callable
        ``sample(generator) -> tuple`` of arguments, drawing from the generator.
    n_points : int
        Number of random points.
    seed : int
        Seed of the generator passed to ``sample``.
    kind : str
        Tolerance kind of :data:`~nrnn_theory.testing.TOLERANCES`.
    dtype : torch.dtype
        The dtype whose tolerance applies.
    what : str
        Name of the comparison, for the message.

    Raises
    ------
    AssertionError
        At the first point where they differ, with the point's index and arguments.
    """
    bounds = tol(kind, dtype)
    g = torch.Generator().manual_seed(seed)
    for i in range(n_points):
        args = sample(g)
        a, b = _as_array(first(*args)), _as_array(second(*args))
        try:
            np.testing.assert_allclose(a, b, **bounds)
        except AssertionError as exc:
            raise AssertionError(
                f"{what} differ at random point {i} (seed {seed}, tolerance {kind}): {exc}"
            ) from None


def assert_gap_matches_regularizer(
    params,
    xs: torch.Tensor,
    labels: torch.Tensor,
    noise,
    *,
    n_pairs: int = 200,
    generator: torch.Generator,
    predict: Callable[..., torch.Tensor] | None = None,
    slack: float | None = None,
) -> None:
    r"""Assert that the explicit regularizer (or your variant) predicts the measured
    noisy-minus-clean gap.

    The oracle is antithetic Monte Carlo (:func:`~nrnn_theory.estimate_noise_gap`): the
    batch-mean measured gap must lie within :data:`STATISTICAL_SIGMAS` standard errors
    of the prediction :math:`\tfrac{\varepsilon^2}{2}(\hat Q + \hat R)`
    (docs/theory/regularizer.md), plus the dropped :math:`O(\varepsilon^4)` terms. Antithetic pairs
    cancel the odd orders, so the standard error shrinks like :math:`\varepsilon^4` too and those
    terms stay visible at every level; by default they are bounded by
    :math:`2|r(2\varepsilon)|/16`, with :math:`r` the measured residual at twice the
    noise scale (one more estimate). A formula wrong at order :math:`\varepsilon^2`
    (a dropped or mis-scaled term) fails.

    ``predict`` replaces the package's prediction by a formula of your own: a variant
    of the regularizer is checked against the same Monte Carlo oracle (the
    higher-order allowance is still measured with the package's prediction, as the
    size of the terms both drop).

    Parameters
    ----------
    params : NRNNParams
        The model.
    xs : Tensor, shape (B, T, D)
        Inputs.
    labels : Tensor, shape (B,)
        Integer labels.
    noise : NoiseSpec
        The noise (small: the expansion is asymptotic in its level).
    n_pairs : int
        Antithetic pairs per example.
    generator : torch.Generator
        Source of the noise paths.
    predict : callable, optional
        ``predict(params, xs, labels, noise) -> Tensor (B,)``: the predicted gap per
        example (default: ``predicted`` of :func:`~nrnn_theory.estimate_noise_gap`,
        i.e. :math:`\tfrac{\varepsilon^2}{2}(\hat Q + \hat R)` plus the
        ``paper_code`` mean shift).
    slack : float, optional
        A deterministic allowance for the higher-order terms instead of the default
        estimate (``0``: none).

    Raises
    ------
    AssertionError
        If the measured gap lies outside the band.
    """
    from nrnn_theory.regularizer import estimate_noise_gap

    est = estimate_noise_gap(params, xs, labels, noise, n_pairs=n_pairs, generator=generator)
    if slack is None:
        big = noise.scaled(2.0 * noise.epsilon)
        ref = estimate_noise_gap(params, xs, labels, big, n_pairs=n_pairs, generator=generator)
        slack = 2.0 * (abs(ref.mean - ref.predicted_mean) + STATISTICAL_SIGMAS * ref.mean_stderr)
        slack /= 16.0
    predicted = est.predicted_mean
    what = "the explicit regularizer"
    if predict is not None:
        predicted = float(torch.as_tensor(predict(params, xs, labels, noise)).mean())
        what = getattr(predict, "__name__", "the predicted gap")
    assert_within_stderr(
        est.mean,
        est.mean_stderr,
        predicted,
        slack=slack,
        what=f"measured noisy-minus-clean gap vs {what}",
    )
