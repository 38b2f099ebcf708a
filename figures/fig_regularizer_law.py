"""Figure of the theory-only study ``regularizer_law``: reads ``DIR/theory/regularizer_law``, writes
``DIR/figures/theory_regularizer_law.{pdf,png}``.

Usage: ``python figures/fig_regularizer_law.py [--out DIR]``. The plotting lives in
:mod:`nrnn_theory.experiments.study_plots`.
"""

from __future__ import annotations

import sys

from nrnn_theory.experiments.studies import figure_main


def main(argv: list[str] | None = None) -> int:
    return figure_main("regularizer_law", argv)


if __name__ == "__main__":
    sys.exit(main())
