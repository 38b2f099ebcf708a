"""Draw the model-zoo figures (flatness, Lyapunov spectra, margins, robustness curves,
correlations) from the results ``analysis/zoo.py`` (or ``nrnn reproduce``) stored.

Reads ``<out>/results`` and ``<out>/config.json``; writes PDF and PNG files to
``<out>/figures``. Computes nothing.

    python figures/fig_zoo.py --out reproduction
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from nrnn_theory.experiments.pipeline import draw_zoo_figures, stored_preset
from nrnn_theory.experiments.store import ResultStore


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reproduction", help="folder of a reproduction")
    args = parser.parse_args(argv)
    out = Path(args.out)
    names = draw_zoo_figures(ResultStore(out / "results"), stored_preset(out), out / "figures")
    print(f"{len(names)} figures -> {out / 'figures'}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
