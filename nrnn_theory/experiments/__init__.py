"""The experiment layer behind ``nrnn reproduce``: results store, verdict rules.

It sits above both the analysis core and :mod:`nrnn_theory.train` (like the CLI), so
that the reproduction runs from an installed wheel; ``analysis/`` and ``figures/``
scripts are thin wrappers around it.
"""

from nrnn_theory.experiments.store import Entry, ResultStore, atomic_write_bytes, git_revision
from nrnn_theory.experiments.studies import PRESETS, STUDIES, Study
from nrnn_theory.experiments.verdicts import (
    Comparison,
    compare_directional,
    compare_noninferior,
    mean_ci,
)


__all__ = [
    "Comparison",
    "Entry",
    "PRESETS",
    "ResultStore",
    "STUDIES",
    "Study",
    "atomic_write_bytes",
    "compare_directional",
    "compare_noninferior",
    "git_revision",
    "mean_ci",
]
