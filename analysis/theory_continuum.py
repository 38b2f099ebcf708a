"""Theory-only study ``continuum``: run it and save ``theory/continuum`` in a results store.

Usage: ``python analysis/theory_continuum.py [--preset quick|standard|full] [--smoke]
[--seed N] [--out DIR]``. The computation lives in
:mod:`nrnn_theory.experiments.study_continuum`.
"""

from __future__ import annotations

import sys

from nrnn_theory.experiments.studies import analysis_main


def main(argv: list[str] | None = None) -> int:
    return analysis_main("continuum", argv)


if __name__ == "__main__":
    sys.exit(main())
