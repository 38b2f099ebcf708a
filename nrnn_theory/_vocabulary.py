"""The package's names and default grids, importable without torch.

Package-internal: the command line builds its parsers (and so answers ``--help``) from
these tuples without importing torch, scipy or matplotlib. Each is the one definition
the numeric modules use (:mod:`nrnn_theory._types`, :mod:`nrnn_theory.robustness`), or,
where the numeric module keys functions by the names (:data:`ONE_SIDED_METHODS`, the
presets of :mod:`nrnn_theory.experiments.zoo`), checked equal to it by the tests
(``tests/test_startup.py``).
"""

from __future__ import annotations


__all__ = [
    "CONVENTIONS",
    "DEFAULT_GRIDS",
    "NOISE_STRUCTURES",
    "ONE_SIDED_METHODS",
    "PERTURBATION_NAMES",
    "PRESET_NAMES",
]

#: Discretizations of the noise (docs/theory/conventions.md).
CONVENTIONS: tuple[str, ...] = ("sde", "paper_code")

#: Structures of the ``"sde"`` noise: one Brownian motion per unit, or one shared for
#: the multiplicative part.
NOISE_STRUCTURES: tuple[str, ...] = ("diagonal", "scalar")

#: Methods of :func:`nrnn_theory.stability.one_sided_constant` (``"auto"`` first).
ONE_SIDED_METHODS: tuple[str, ...] = ("auto", "standard", "midpoint", "relaxation", "exact")

#: Perturbations of :mod:`nrnn_theory.robustness`, in the order of its figures.
PERTURBATION_NAMES: tuple[str, ...] = (
    "white_noise",
    "multiplicative_noise",
    "salt_and_pepper",
    "fgsm_linf",
    "fgsm_l2",
    "pgd_linf",
    "pgd_l2",
)

#: Default strength grid of each perturbation (sigma, alpha or eps).
DEFAULT_GRIDS: dict[str, tuple[float, ...]] = {
    "white_noise": (0.1, 0.2, 0.3),
    "multiplicative_noise": (0.1, 0.2, 0.3),
    "salt_and_pepper": (0.03, 0.05, 0.1),
    "fgsm_linf": (0.01, 0.02, 0.05),
    "fgsm_l2": (0.1, 0.3, 1.0),
    "pgd_linf": (0.01, 0.02, 0.05),
    "pgd_l2": (0.1, 0.3, 1.0),
}

#: Run sizes of ``nrnn reproduce`` (:data:`nrnn_theory.experiments.zoo.PRESETS`).
PRESET_NAMES: tuple[str, ...] = ("smoke", "quick", "standard", "full")
