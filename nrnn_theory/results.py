"""Every result record of the package, re-exported beside the :class:`Result` base.

Each record is a frozen dataclass with typed fields, defined beside the function that
returns it (scipy.stats' ``_result_classes`` style): e.g.
:class:`~nrnn_theory.lyapunov.LyapunovSpectrum` in :mod:`nrnn_theory.lyapunov`. This
module gathers them, with the base class :class:`Result` and the serialization
(:meth:`Result.to_dict`, :meth:`Result.from_dict`, :func:`to_jsonable`) of
``nrnn_theory._record``. Each carries what is needed to trust it (standard errors,
sample counts, the convention and assumptions used).

The training record :class:`~nrnn_theory.train.FitHistory` lives in
:mod:`nrnn_theory.train` (the core never imports the training layer).
"""

from nrnn_theory._record import Result, to_jsonable
from nrnn_theory.attacks import EmpiricalMargin
from nrnn_theory.conventions import ConventionMapping
from nrnn_theory.flatness import (
    HessianEigenvalues,
    HessianTrace,
    HiddenStateHessian,
    SpectralDensity,
    TraceEstimate,
)
from nrnn_theory.lyapunov import LyapunovSpectrum, StateJacobianNorms
from nrnn_theory.margins import JacobianNorm, LocalMarginEstimate, MarginCertificate, MarginSummary
from nrnn_theory.reachability import ReachableSet, SlopeSector
from nrnn_theory.regularizer import (
    ContinuousRegularizer,
    ExplicitRegularizer,
    NoiseGapEstimate,
    RegularizerConvergence,
)
from nrnn_theory.robustness import ComparisonTable, RobustnessCurve, RobustnessSweep
from nrnn_theory.sdp_certificates import LMISolution, LMIVerification, QuadraticCondition
from nrnn_theory.stability import Certificate, StabilityReport, StabilizingNoise, StepCheck


__all__ = [
    "Certificate",
    "ComparisonTable",
    "ContinuousRegularizer",
    "ConventionMapping",
    "EmpiricalMargin",
    "ExplicitRegularizer",
    "HessianEigenvalues",
    "HessianTrace",
    "HiddenStateHessian",
    "JacobianNorm",
    "LMISolution",
    "LMIVerification",
    "LocalMarginEstimate",
    "LyapunovSpectrum",
    "MarginCertificate",
    "MarginSummary",
    "NoiseGapEstimate",
    "QuadraticCondition",
    "ReachableSet",
    "RegularizerConvergence",
    "Result",
    "RobustnessCurve",
    "RobustnessSweep",
    "SlopeSector",
    "SpectralDensity",
    "StabilityReport",
    "StabilizingNoise",
    "StateJacobianNorms",
    "StepCheck",
    "TraceEstimate",
    "to_jsonable",
]
