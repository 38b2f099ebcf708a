"""Figure of the theory-only study ``stabilization``: reads ``DIR/theory/stabilization``, writes
``DIR/figures/theory_stabilization.{pdf,png}``.

Usage: ``python figures/fig_stabilization.py [--out DIR]``. The plotting lives in
:mod:`nrnn_theory.experiments.study_plots`.
"""

from __future__ import annotations

import sys

from nrnn_theory.experiments.studies import figure_main


def main(argv: list[str] | None = None) -> int:
    return figure_main("stabilization", argv)


if __name__ == "__main__":
    sys.exit(main())
