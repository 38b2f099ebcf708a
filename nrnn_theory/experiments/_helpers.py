"""Small helpers shared by the modules of the experiment layer (public within the package).

:func:`fmt` prints a stored number (``n/a`` when missing or not finite) and
:func:`progress_bar` wraps an iterable in a tqdm bar on stderr when asked to.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable


__all__ = ["fmt", "progress_bar"]


def fmt(x: float | None, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits, or ``"n/a"`` if missing or not finite.

    Examples
    --------
    >>> fmt(3.14159), fmt(float("nan")), fmt(None), fmt(0.5, 1)
    ('3.14', 'n/a', 'n/a', '0.5')
    """
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.{digits}g}"


def progress_bar(iterable: Iterable, *, total: int, desc: str, progress: bool) -> Iterable:
    """``iterable`` itself, or wrapped in a tqdm progress bar on stderr if ``progress``."""
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False)
