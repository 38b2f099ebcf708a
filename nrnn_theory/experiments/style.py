"""One plotting style for every figure of the reproduction, and atomic PDF + PNG output.

Figures are built on :class:`matplotlib.figure.Figure` directly (never ``pyplot``), so
no global backend or state is touched and scripts run headless.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import matplotlib as mpl
from matplotlib.figure import Figure

from nrnn_theory._io import atomic_write_many
from nrnn_theory.experiments.zoo import MODEL_LABELS


__all__ = [
    "MODEL_COLORS",
    "MODEL_LABELS",
    "RC",
    "model_color",
    "new_figure",
    "save_figure",
    "styled",
]
P = ParamSpec("P")
R = TypeVar("R")

RC: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "lines.linewidth": 1.4,
    "lines.markersize": 4,
    "savefig.bbox": "tight",
    "savefig.dpi": 150,
    "pdf.fonttype": 42,
}

#: Colour of each model: the noisy family in reds, its noise-free twin in blue.
MODEL_COLORS: dict[str, str] = {
    "nrnn_small": "#d6604d",
    "nrnn_high": "#8c1a10",
    "nrnn_step": "#4393c3",
    "lipschitz": "#2166ac",
    "explicit_reg": "#e08214",
    "antisymmetric": "#4d9221",
    "cornn": "#762a83",
    "lstm": "#5e5e5e",
    "gru": "#35978f",
}


def model_color(name: str) -> str:
    """Colour of a zoo model (grey for names outside the zoo)."""
    return MODEL_COLORS.get(name, "#999999")


@contextmanager
def _style() -> Iterator[None]:
    with mpl.rc_context(RC):
        yield


def styled(plot: Callable[P, R]) -> Callable[P, R]:
    """Decorator: run a plotting function inside the shared style.

    Text sizes and other properties are fixed when an artist is created, so the whole
    function (not only the figure creation) must run in the style's ``rc_context``.
    """

    @functools.wraps(plot)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _style():
            return plot(*args, **kwargs)

    return wrapper


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = 3.4, height: float = 2.6, **kw):
    """A styled figure and its axes (``squeeze=False``: axes is always 2-D).

    ``width`` and ``height`` are per panel, in inches.
    """
    with _style():
        fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def save_figure(
    fig: Figure, stem: str | os.PathLike, *, dpi: float | None = None
) -> tuple[Path, Path]:
    """Write ``stem.pdf`` and ``stem.png`` and return their paths. The figure is left usable.

    Both files are rendered in memory first and then written together
    (:func:`nrnn_theory._io.atomic_write_many`): an error leaves the previous files (if
    any) as they were. ``dpi`` is the PNG resolution (default the style's).
    """
    stem = Path(stem)
    files = {}
    with _style():
        for ext in ("pdf", "png"):
            buf = io.BytesIO()
            metadata = {"CreationDate": None} if ext == "pdf" else {}
            fig.savefig(buf, format=ext, metadata=metadata, **({"dpi": dpi} if dpi else {}))
            files[stem.with_suffix(f".{ext}")] = buf.getvalue()
    pdf, png = atomic_write_many(files)
    return pdf, png
