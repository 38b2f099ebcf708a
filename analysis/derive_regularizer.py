"""Derive the small-noise regularizer symbolically and print it (docs/theory/regularizer.md).

Expands E loss(h_M) of the discrete NRNN to second order in the noise level with
sympy, takes the Gaussian expectations, checks the result against the Q-hat + R-hat
formula of docs/theory/regularizer.md and prints the derived expressions. Options are those of
``python -m nrnn_theory.symbolic.regularizer`` (``--hidden``, ``--steps``, ``--noise``,
``--order``), plus ``--smoke`` (the smallest case, H = 1, M = 1) and ``--seed``
(accepted for uniformity: the derivation is exact and uses no randomness).

    python analysis/derive_regularizer.py --hidden 2 --steps 2 --noise diagonal
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from nrnn_theory.symbolic import regularizer


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--smoke" in argv:
        argv.remove("--smoke")
        argv += ["--hidden", "1", "--steps", "1", "--no-continuous"]
    if "--seed" in argv:
        i = argv.index("--seed")
        del argv[i : i + 2]
    return regularizer.main(argv)


if __name__ == "__main__":
    sys.exit(main())
