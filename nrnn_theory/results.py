"""Frozen result records returned by the analysis functions.

Each carries what is needed to trust it (standard errors, sample counts, the
convention and assumptions used) and converts to plain JSON-ready data with
:meth:`Result.to_dict`. Tensors are converted to nested lists of floats.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


__all__ = [
    "Certificate",
    "ConventionMapping",
    "JacobianNorms",
    "LyapunovSpectrum",
    "Result",
    "StabilityReport",
    "StabilizingNoise",
    "to_jsonable",
]


def to_jsonable(value: Any) -> Any:
    """Convert tensors, arrays, dataclasses and containers to JSON-ready Python data.

    Non-finite floats become the strings ``"nan"``, ``"inf"`` and ``"-inf"`` so
    the output is strict JSON.

    Examples
    --------
    >>> to_jsonable({"a": torch.tensor([1.0, float("inf")]), "b": (1, 2)})
    {'a': [1.0, 'inf'], 'b': [1, 2]}
    """
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class Result:
    """Base class of result records: frozen, with a JSON-ready :meth:`to_dict`."""

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready Python data (see :func:`to_jsonable`)."""
        return to_jsonable(self)


@dataclass(frozen=True)
class ConventionMapping(Result):
    r"""How a ``"paper_code"`` noise corresponds to an Euler-Maruyama (``"sde"``) one.

    Attributes
    ----------
    source, target : NoiseSpec
        The ``"paper_code"`` spec and the ``"sde"`` spec matching its additive part
        exactly in law (:math:`\epsilon\sigma_1 = a/\sqrt{\Delta t}`).
    dt : float
        Time step used by the mapping.
    drift_scale : float
        :math:`1 - \mu/2`: the mean of the multiplicative factor. The noisy
        ``"paper_code"`` chain moves with mean step :math:`(1-\mu/2)\,d`.
    drift_variance : float
        :math:`\mu^2/12`: the variance of the multiplicative factor; one step's
        covariance gains :math:`\tfrac{\mu^2}{12}\mathrm{diag}(d\odot f)^2`, i.e.
        :math:`\tfrac{\mu^2\Delta t}{12}\mathrm{diag}(f)^2` per unit time.
    exact : bool
        True when :math:`\mu = 0`: the two conventions then agree in law.
    note : str
        What is not reproduced, in words.
    """

    source: Any
    target: Any
    dt: float
    drift_scale: float
    drift_variance: float
    exact: bool
    note: str


@dataclass(frozen=True)
class LyapunovSpectrum(Result):
    r"""Lyapunov exponents estimated by the Benettin/QR method (THEORY.md §9).

    Attributes
    ----------
    exponents : Tensor, shape (k,)
        Mean over trajectories, natural log, per unit time (per step divided by
        ``dt``), sorted in descending order.
    exponents_per_step : Tensor, shape (k,)
        The same per step (``exponents * dt``); the natural unit when a per-unit
        step makes "time" ambiguous.
    stderr : Tensor, shape (k,)
        Standard error of ``exponents`` across trajectories (sample standard
        deviation over ``sqrt(B)``); NaN for a single trajectory.
    per_trajectory : Tensor, shape (B, k)
        Finite-time exponents of each trajectory (per unit time), columns in the
        order of ``exponents``.
    n_steps : int
        Steps accumulated after the transient.
    transient : int
        Steps discarded before accumulating.
    dt : float
        Time step used to convert per step to per unit time.
    reortho_every : int
        Steps between re-orthonormalizations.
    convention : str
        ``"clean"``, ``"sde"`` or ``"paper_code"`` for an NRNN; ``"map"`` for
        :func:`~nrnn_theory.lyapunov_spectrum_map`.
    noise : NoiseSpec or None
        Noise whose frozen path the tangent dynamics followed.
    history : Tensor, shape (B, n_records, k), or None
        Finite-time exponents (per unit time) after each re-orthonormalization
        past the transient, if requested.
    history_steps : Tensor, shape (n_records,), or None
        Steps since the transient at each record of ``history``.
    """

    exponents: Any
    exponents_per_step: Any
    stderr: Any
    per_trajectory: Any
    n_steps: int
    transient: int
    dt: float
    reortho_every: int
    convention: str
    noise: Any = None
    history: Any = None
    history_steps: Any = None

    @property
    def k(self) -> int:
        """Number of exponents."""
        return int(self.exponents.shape[0])

    @property
    def top(self) -> float:
        """The largest exponent (per unit time) as a float."""
        return float(self.exponents[0])


@dataclass(frozen=True)
class JacobianNorms(Result):
    r"""Norms of the state-transition Jacobians :math:`\partial h_T/\partial h_k`.

    Attributes
    ----------
    norms : Tensor, shape (B, T + 1)
        :math:`\|\partial h_T/\partial h_k\|` for :math:`k = 0, \dots, T`
        (``norms[:, T] == 1``). May overflow to ``inf`` in low precision when the
        dynamics explode; ``log_norms`` does not.
    log_norms : Tensor, shape (B, T + 1)
        Natural logarithms of ``norms``, accumulated without overflow.
    norm : str
        ``"spectral"`` or ``"frobenius"``.
    noise : NoiseSpec or None
        Noise of the frozen path along which the Jacobians were evaluated.
    """

    norms: Any
    log_norms: Any
    norm: str
    noise: Any = None


@dataclass(frozen=True)
class Certificate(Result):
    r"""A stability certificate (THEORY.md §9), computed in float64.

    Attributes
    ----------
    holds : bool
        True when the certified exponent bound is negative (for ``"discrete"``:
        when :math:`\rho < 1`).
    bound : float
        Certified upper bound on the top Lyapunov exponent of the difference of two
        trajectories sharing input and noise path, per unit time (for
        ``"mean_square"``: on the growth rate of
        :math:`(\mathbb E|\Delta|^2)^{1/2}`). Negative means exponentially stable.
    condition : str
        Key of the condition used (:data:`nrnn_theory.stability.CONDITIONS`).
    description : str
        The condition in words with its THEORY.md reference.
    one_sided : str
        Method used for the one-sided constant :math:`\hat\lambda`.
    quantities : dict of str to float
        Every number entering the bound.
    assumptions : tuple of str
        The assumptions under which the bound holds, in words.
    noise : NoiseSpec or None
        The noise the certificate is about.
    convention : str
        ``"clean"``, ``"sde"`` or ``"paper_code"``.
    dtype : str
        Precision of the computation (always ``"float64"``).
    """

    holds: bool
    bound: float
    condition: str
    description: str
    one_sided: str
    quantities: dict
    assumptions: tuple
    noise: Any = None
    convention: str = "clean"
    dtype: str = "float64"


@dataclass(frozen=True)
class StabilizingNoise(Result):
    r"""Smallest multiplicative noise level certified to reach a target rate (THEORY.md §9).

    Attributes
    ----------
    exists : bool
        Whether some finite level certifies ``target_rate``.
    level : float
        The infimum :math:`\epsilon\sigma_2` of certifying levels (any larger
        level certifies a rate below ``target_rate``; ``0`` when no noise is needed);
        ``inf`` when none exists.
    structure : str
        ``"scalar"`` or ``"diagonal"`` multiplicative noise (``"sde"`` convention).
    target_rate : float
        The exponent to certify (``0`` for plain almost-sure stability).
    lambda_hat : float
        The one-sided constant used.
    one_sided : str
        Its method.
    hidden_size : int
        :math:`d_h`, which enters the diagonal bound.
    reason : str
        Why, in words.
    """

    exists: bool
    level: float
    structure: str
    target_rate: float
    lambda_hat: float
    one_sided: str
    hidden_size: int
    reason: str


@dataclass(frozen=True)
class StabilityReport(Result):
    r"""Certificates next to measured exponents, as printed by ``nrnn certify``.

    Attributes
    ----------
    one_sided : dict of str to float
        :math:`\hat\lambda` by each method computed (THEORY.md §9).
    certificates : tuple of Certificate
        One per applicable condition and noise.
    spectra : tuple of LyapunovSpectrum
        Measured exponents without noise (first) and along a frozen path of each
        noise.
    minimal_noise : tuple of StabilizingNoise
        Smallest certifying ``scalar`` and ``diagonal`` levels.
    hidden_size : int
    dt : float
    """

    one_sided: dict
    certificates: tuple
    spectra: tuple
    minimal_noise: tuple
    hidden_size: int
    dt: float
