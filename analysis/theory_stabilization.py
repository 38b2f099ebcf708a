"""Theory-only study ``stabilization``: run it and save ``theory/stabilization`` in a results store.

Usage: ``python analysis/theory_stabilization.py [--preset quick|standard|full] [--smoke]
[--seed N] [--out DIR]``. The computation lives in
:mod:`nrnn_theory.experiments.study_stabilization`.
"""

from __future__ import annotations

import sys

from nrnn_theory.experiments.studies import analysis_main


def main(argv: list[str] | None = None) -> int:
    return analysis_main("stabilization", argv)


if __name__ == "__main__":
    sys.exit(main())
