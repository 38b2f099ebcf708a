r"""Statistical rules that turn measured results into a verdict on a claim.

A verdict is one of ``"supported"``, ``"not supported"`` and ``"inconclusive"``, always
computed from numbers and a stated rule, never written by hand.

Comparisons over seeds are *paired*: model ``a`` and baseline ``b`` trained with the
same seed give a difference :math:`d_i = a_i - b_i`. With :math:`n` seeds the
two-sided :math:`1-\alpha` Student-t interval is

.. math:: \bar d \pm t_{1-\alpha/2,\,n-1}\, s_d / \sqrt n .

* **directional** claims ("noise makes X larger"): supported if the interval lies
  strictly on the claimed side of 0; not supported if it lies strictly on the other
  side; inconclusive otherwise, and always with fewer than 2 seeds.
* **non-inferiority** claims ("comparable clean accuracy"): supported if the lower end
  of the interval for :math:`a - b` is above :math:`-\delta`; not supported if its upper
  end is below :math:`-\delta`; inconclusive otherwise.

The effect size reported is the mean difference divided by the standard deviation of
the baseline's values across seeds (Glass's :math:`\Delta`), ``nan`` when undefined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from nrnn_theory._record import Result


__all__ = ["Comparison", "Verdict", "compare_directional", "compare_noninferior", "mean_ci"]

Verdict = Literal["supported", "not supported", "inconclusive"]


@dataclass(frozen=True)
class Comparison(Result):
    """A paired comparison over seeds and its verdict.

    Attributes
    ----------
    n : int
        Number of paired seeds.
    mean_a, mean_b : float
        Means over seeds of the model and the baseline.
    diff, ci_low, ci_high : float
        Mean paired difference ``a - b`` and its confidence interval.
    effect_size : float
        Glass's Delta (module docstring).
    verdict : str
    rule : str
        The rule applied, in words.
    """

    n: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    effect_size: float
    verdict: Verdict
    rule: str


def mean_ci(values: Sequence[float], *, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval; ``(mean, nan, nan)`` for fewer than 2 values.

    Parameters
    ----------
    values : sequence of float
        One value per seed.
    level : float
        Confidence level of the interval (default 0.95).

    Returns
    -------
    mean, low, high : float

    Examples
    --------
    >>> m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    >>> m, round(lo, 3), round(hi, 3)
    (2.0, -0.484, 4.484)
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"values: expected a non-empty 1-D sequence, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("values: expected finite numbers, got NaN or inf")
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return m, m - float(half), m + float(half)


def _paired(a: Sequence[float], b: Sequence[float], level: float):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"a, b: expected two 1-D sequences of equal length (paired by seed), got "
            f"shapes {a.shape} and {b.shape}"
        )
    diff, lo, hi = mean_ci(a - b, level=level)
    sd_b = float(b.std(ddof=1)) if b.size > 1 else math.nan
    effect = diff / sd_b if sd_b and math.isfinite(sd_b) and sd_b > 0 else math.nan
    return a, b, diff, lo, hi, effect


def compare_directional(
    a: Sequence[float],
    b: Sequence[float],
    *,
    direction: Literal["greater", "less"],
    level: float = 0.95,
) -> Comparison:
    """Verdict on "``a`` is greater (or less) than ``b``" from paired seeds.

    Parameters
    ----------
    a, b : sequence of float
        Paired values, one per seed.
    direction : {"greater", "less"}
        The claimed direction of ``a`` relative to ``b``.
    level : float
        Confidence level of the interval on the paired difference (default 0.95).

    Returns
    -------
    Comparison

    Examples
    --------
    >>> compare_directional([0.9, 0.92, 0.91], [0.8, 0.83, 0.8], direction="greater").verdict
    'supported'
    >>> compare_directional([0.9], [0.8], direction="greater").verdict
    'inconclusive'
    """
    if direction not in ("greater", "less"):
        raise ValueError(f"direction: expected 'greater' or 'less', got {direction!r}")
    a, b, diff, lo, hi, effect = _paired(a, b, level)
    # Orient the interval so that "supported" always means "entirely above 0".
    lo_o, hi_o = (lo, hi) if direction == "greater" else (-hi, -lo)
    if a.size < 2:
        verdict: Verdict = "inconclusive"
    elif lo_o > 0:
        verdict = "supported"
    elif hi_o < 0:
        verdict = "not supported"
    else:
        verdict = "inconclusive"
    word = "above" if direction == "greater" else "below"
    rule = (
        f"paired over {a.size} seeds; supported if the {level:.0%} t-interval of the "
        f"difference lies {word} 0, not supported if it lies on the other side"
    )
    return Comparison(a.size, float(a.mean()), float(b.mean()), diff, lo, hi, effect, verdict, rule)


def compare_noninferior(
    a: Sequence[float], b: Sequence[float], *, margin: float, level: float = 0.95
) -> Comparison:
    """Verdict on "``a`` is not worse than ``b`` by more than ``margin``" (paired seeds).

    Parameters
    ----------
    a, b : sequence of float
        Paired values, one per seed (higher is better).
    margin : float
        The largest shortfall of ``a`` below ``b`` still counted as "not worse", >= 0.
    level : float
        Confidence level of the interval on the paired difference (default 0.95).

    Returns
    -------
    Comparison

    Examples
    --------
    >>> compare_noninferior([0.90, 0.91, 0.90], [0.90, 0.90, 0.91], margin=0.03).verdict
    'supported'
    """
    if not margin > 0:
        raise ValueError(f"margin: expected a number > 0, got {margin}")
    a, b, diff, lo, hi, effect = _paired(a, b, level)
    if a.size < 2:
        verdict: Verdict = "inconclusive"
    elif lo > -margin:
        verdict = "supported"
    elif hi < -margin:
        verdict = "not supported"
    else:
        verdict = "inconclusive"
    rule = (
        f"paired over {a.size} seeds; supported if the lower end of the {level:.0%} "
        f"t-interval of the difference is above -{margin:g}, not supported if its upper "
        f"end is below -{margin:g}"
    )
    return Comparison(a.size, float(a.mean()), float(b.mean()), diff, lo, hi, effect, verdict, rule)
