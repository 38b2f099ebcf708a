r"""Theory-only studies of the reproduction: the registry and the script entries.

Three studies, each in its own module (``study_regularizer_law``,
``study_stabilization``, ``study_continuum``, with their shared helpers in
``_study_common``) and registered here as a :class:`Study` in :data:`STUDIES` with a
``run`` (computation, returning a JSON-able ``data`` dict and a dict of numpy
``arrays``), a ``plot`` (in :mod:`nrnn_theory.experiments.study_plots`) and an
``evidence`` rule set that turns a stored entry into report lines with computed
verdicts:

* ``"regularizer_law"`` (claim C2, docs/theory/regularizer.md, oracles.md V1-V3): the antithetic
Monte
  Carlo noise gap against the exact prediction
  :math:`\tfrac{\epsilon^2}{2}(\hat Q + \hat R)` across a geometric grid of
  :math:`\epsilon`, in both conventions; the order of the relative error (theory: 2,
  because the remainder is :math:`O(\epsilon^4)`) and where the expansion breaks.
* ``"stabilization"`` (claim C4, docs/theory/stability.md): models with :math:`\hat\lambda > 0`
  (unstable without noise) under scalar multiplicative noise :math:`\sigma`; the
  certified almost-sure bound :math:`\hat\lambda - \sigma^2/2`, the minimal
  stabilizing noise and the measured frozen-noise top Lyapunov exponent.
* ``"continuum"`` (claim C1, docs/theory/conventions.md, regularizer.md, oracles.md V4):
  discrete to continuous as :math:`\Delta t\to0` at fixed horizon:
  :math:`(\hat Q, \hat R)\to(Q, R)` at order 1, and the Euler-Maruyama exponent of
  scalar geometric Brownian motion converging to :math:`\lambda - \sigma^2/2`.

Every computation is seeded (``seed``) and sized by a preset (:data:`PRESETS`):
``"smoke"`` is seconds, ``"quick"`` about a minute for all three on 2 CPU cores,
``"standard"`` a few minutes, ``"full"`` is meant for a GPU machine (it runs on CUDA
when available).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nrnn_theory.experiments._study_common import PRESETS, weighted_slope
from nrnn_theory.experiments.report import Evidence
from nrnn_theory.experiments.study_continuum import (
    em_gbm_exponent,
    evidence_continuum,
    run_continuum,
)
from nrnn_theory.experiments.study_regularizer_law import (
    evidence_regularizer_law,
    run_regularizer_law,
)
from nrnn_theory.experiments.study_stabilization import evidence_stabilization, run_stabilization


__all__ = [
    "PRESETS",
    "STUDIES",
    "Study",
    "analysis_main",
    "em_gbm_exponent",
    "evidence_continuum",
    "evidence_regularizer_law",
    "evidence_stabilization",
    "figure_main",
    "run_continuum",
    "run_regularizer_law",
    "run_stabilization",
    "weighted_slope",
]


# ============================================================================ registry
@dataclass(frozen=True)
class Study:
    """A theory-only study: how to run it, plot it and turn it into report lines.

    ``run(preset, *, seed, progress) -> (data, arrays)``; ``plot(entry, figure_dir)
    -> [pdf, png]`` (file stem ``figure_dir / f"theory_{name}"``); ``evidence(entry)
    -> [Evidence, ...]``, where ``entry`` is ``ResultStore.load(f"theory/{name}")``.

    Attributes
    ----------
    name : str
        The study's key in :data:`STUDIES`.
    claim : str
        The claim it bears on.
    title : str
        A one-line title for the report.
    run, plot, evidence : callable
        As above.
    """

    name: str
    claim: str
    title: str
    run: Callable[..., tuple[dict, dict[str, np.ndarray]]]
    plot: Callable[..., list[Path]]
    evidence: Callable[..., list[Evidence]]


def _plot(name: str) -> Callable[..., list[Path]]:
    def plot(entry, figure_dir) -> list[Path]:
        from nrnn_theory.experiments import study_plots

        return study_plots.PLOTS[name](entry, figure_dir)

    plot.__name__ = f"plot_{name}"
    return plot


STUDIES: dict[str, Study] = {
    "regularizer_law": Study(
        "regularizer_law",
        "C2",
        "Noise injection vs its explicit regularizer across ε",
        run_regularizer_law,
        _plot("regularizer_law"),
        evidence_regularizer_law,
    ),
    "stabilization": Study(
        "stabilization",
        "C4",
        "Stochastic stabilization: certified vs measured stability",
        run_stabilization,
        _plot("stabilization"),
        evidence_stabilization,
    ),
    "continuum": Study(
        "continuum",
        "C1",
        "Discrete NRNN to SDE as Δt → 0",
        run_continuum,
        _plot("continuum"),
        evidence_continuum,
    ),
}


# ======================================================================= script entries
def _parser(description: str):
    import argparse

    return argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )


def analysis_main(name: str, argv: list[str] | None = None) -> int:
    """Body of ``analysis/theory_<name>.py``: run a study and save it in a results store.

    Options: ``--preset`` (default ``quick``), ``--smoke`` (= ``--preset smoke``),
    ``--seed``, ``--out`` (output folder of a reproduction, default ``reproduction``;
    the entry goes to its result store ``OUT/results``), ``--progress``. Prints a
    one-line summary (the verdicts of the study's evidence).
    """
    from nrnn_theory.experiments.store import ResultStore

    study = STUDIES[name]
    parser = _parser(f"Theory-only study {name!r} (claim {study.claim}): {study.title}.")
    parser.add_argument("--preset", choices=PRESETS, default="quick", help="problem sizes")
    parser.add_argument("--smoke", action="store_true", help="same as --preset smoke")
    parser.add_argument("--seed", type=int, default=0, help="seed of models and noise")
    parser.add_argument(
        "--out", default="reproduction", help="output folder (results in OUT/results)"
    )
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    args = parser.parse_args(argv)
    preset = "smoke" if args.smoke else args.preset
    data, arrays = study.run(preset, seed=args.seed, progress=args.progress)
    store = ResultStore(Path(args.out) / "results")
    store.save(f"theory/{name}", data, arrays=arrays, config={"preset": preset, "seed": args.seed})
    verdicts = [e.verdict for e in study.evidence(store.load(f"theory/{name}"))]
    print(f"theory/{name} ({study.claim}, preset {preset}): " + "; ".join(verdicts))
    return 0


def figure_main(name: str, argv: list[str] | None = None) -> int:
    """Body of ``figures/fig_<name>.py``: plot a stored study into ``OUT/figures``.

    Options: ``--out`` (output folder of a reproduction, default ``reproduction``).
    The figure is a function of the stored entry only, so it has no size option.
    """
    from nrnn_theory.experiments.store import ResultStore

    study = STUDIES[name]
    parser = _parser(f"Figure of the theory-only study {name!r} (claim {study.claim}).")
    parser.add_argument(
        "--out", default="reproduction", help="output folder (results in OUT/results)"
    )
    args = parser.parse_args(argv)
    entry = ResultStore(Path(args.out) / "results").load(f"theory/{name}")
    paths = study.plot(entry, Path(args.out) / "figures")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
