"""Theory-only study ``regularizer_law``: run it and save ``theory/regularizer_law`` in
a results store.

Usage: ``python analysis/theory_regularizer_law.py [--preset quick|standard|full] [--smoke]
[--seed N] [--out DIR]``. The computation lives in
:mod:`nrnn_theory.experiments.study_regularizer_law`.
"""

from __future__ import annotations

import sys

from nrnn_theory.experiments.studies import analysis_main


def main(argv: list[str] | None = None) -> int:
    return analysis_main("regularizer_law", argv)


if __name__ == "__main__":
    sys.exit(main())
