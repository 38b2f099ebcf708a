"""The experiment layer behind ``nrnn reproduce``: the model zoo, per-model analyses,
theory-only studies, results store, verdict rules, figures and the report.

It sits above both the analysis core and :mod:`nrnn_theory.train` (like the CLI), so
that the reproduction runs from an installed wheel; ``analysis/`` and ``figures/``
scripts are thin wrappers around it.

Entry points
    reproduce (the whole pipeline), PRESETS and ZOO (what it trains), STUDIES (the
    theory-only studies, sized by STUDY_PRESETS), ResultStore (what it stores),
    compare_directional / compare_noninferior / mean_ci (how verdicts are computed).
"""

from nrnn_theory.experiments.pipeline import CLAIMS, ReproductionResult, reproduce
from nrnn_theory.experiments.store import (
    Entry,
    ResultStore,
    atomic_write_bytes,
    git_revision,
    stored_float,
)
from nrnn_theory.experiments.studies import PRESETS as STUDY_PRESETS
from nrnn_theory.experiments.studies import STUDIES, Study
from nrnn_theory.experiments.verdicts import (
    Comparison,
    compare_directional,
    compare_noninferior,
    mean_ci,
)
from nrnn_theory.experiments.zoo import PRESETS, ZOO, Preset, ZooMember


__all__ = [
    "CLAIMS",
    "Comparison",
    "Entry",
    "PRESETS",
    "Preset",
    "ReproductionResult",
    "ResultStore",
    "STUDIES",
    "STUDY_PRESETS",
    "Study",
    "ZOO",
    "ZooMember",
    "atomic_write_bytes",
    "compare_directional",
    "compare_noninferior",
    "git_revision",
    "mean_ci",
    "reproduce",
    "stored_float",
]
