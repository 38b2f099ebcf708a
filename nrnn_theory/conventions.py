r"""Mapping between the two discretization conventions (docs/theory/conventions.md, "Mapping").

The ``"paper_code"`` step :math:`h + d\odot m\odot f + a\zeta` and the Euler-Maruyama
step :math:`h + \Delta t f + \epsilon\sqrt{\Delta t}\sigma\xi` agree in law on their
additive parts when :math:`a = \epsilon\sigma_1\sqrt{\Delta t}`. The multiplicative
factor :math:`m = 1-\mu+\mu u` has no :math:`\sigma_2` counterpart: its fluctuation
is proportional to :math:`f`, not to :math:`h`. Its main effect is a mean step
shortened by :math:`1-\mu/2`; to leading order in :math:`\Delta t` it rescales the
Lyapunov exponents and cannot change their sign.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nrnn_theory._contract import check_positive
from nrnn_theory._record import Result
from nrnn_theory._types import NoiseSpec


__all__ = [
    "ConventionMapping",
    "paper_code_to_sde",
    "sde_to_paper_code",
]


# ---------------------------------------------------------------------- records
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

    source: NoiseSpec
    target: NoiseSpec
    dt: float
    drift_scale: float
    drift_variance: float
    exact: bool
    note: str


def _check_spec(noise: object, convention: str) -> NoiseSpec:
    if not isinstance(noise, NoiseSpec):
        raise TypeError(f"noise: expected NoiseSpec, got {type(noise).__name__}")
    if noise.convention != convention:
        raise ValueError(f"noise: expected convention {convention!r}, got {noise.convention!r}")
    return noise


def paper_code_to_sde(noise: NoiseSpec, dt: float) -> ConventionMapping:
    r"""Moment-matched ``"sde"`` counterpart of a ``"paper_code"`` noise.

    .. math:: \epsilon\sigma_1 = a/\sqrt{\Delta t},\qquad
              \text{mean step } (1-\mu/2)\,d,\qquad
              \text{extra covariance } \tfrac{\mu^2}{12}\mathrm{diag}(d\odot f)^2.

    Parameters
    ----------
    noise : NoiseSpec
        A ``"paper_code"`` spec (``a = noise.additive``, ``mu = noise.multiplicative``).
    dt : float
        The time step :math:`\Delta t` (the initial per-unit step of the authors' code).

    Returns
    -------
    ConventionMapping
        ``target`` is an ``"sde"`` spec with ``epsilon = 1``, ``sigma1 = a/sqrt(dt)``
        and ``sigma2 = 0``; ``exact`` says whether it matches in law.

    Examples
    --------
    >>> m = paper_code_to_sde(NoiseSpec.paper_code(add=0.02, mult=0.02), dt=0.01)
    >>> round(m.target.sigma1, 12), m.drift_scale, m.exact
    (0.2, 0.99, False)
    """
    noise = _check_spec(noise, "paper_code")
    dt = check_positive("dt", dt)
    mu = noise.multiplicative
    target = NoiseSpec(epsilon=1.0, sigma1=noise.additive / math.sqrt(dt), convention="sde")
    note = (
        "additive part exact in law"
        if mu == 0
        else "additive part exact in law; the multiplicative factor is matched only in "
        "its first two moments (mean step scaled by 1 - mu/2, extra covariance "
        "mu^2/12 diag(d*f)^2 per step) and has no sigma2 counterpart"
    )
    return ConventionMapping(
        source=noise,
        target=target,
        dt=dt,
        drift_scale=1.0 - 0.5 * mu,
        drift_variance=mu * mu / 12.0,
        exact=mu == 0,
        note=note,
    )


def sde_to_paper_code(noise: NoiseSpec, dt: float) -> ConventionMapping:
    r"""The ``"paper_code"`` noise equal in law to an additive ``"sde"`` noise.

    .. math:: a = \epsilon\sigma_1\sqrt{\Delta t},\qquad \mu = 0

    Parameters
    ----------
    noise : NoiseSpec
        An additive ``"sde"`` noise (``sigma2 = 0``).
    dt : float
        The time step :math:`\Delta t > 0` of the chain.

    Returns
    -------
    ConventionMapping
        ``target`` is the ``"paper_code"`` noise; ``exact`` is ``True``.

    Raises
    ------
    ValueError
        If ``noise`` has a multiplicative part: no ``"paper_code"`` noise
        reproduces :math:`\sigma_2\,\mathrm{diag}(h)\,dB` (docs/theory/conventions.md).

    Examples
    --------
    >>> m = sde_to_paper_code(NoiseSpec(epsilon=0.5, sigma1=1.0), dt=0.01)
    >>> round(m.target.additive, 12), m.exact
    (0.05, True)
    """
    noise = _check_spec(noise, "sde")
    dt = check_positive("dt", dt)
    if noise.multiplicative != 0:
        raise ValueError(
            "noise: expected no multiplicative part (epsilon * sigma2 == 0), got "
            f"{noise.multiplicative}; the paper_code multiplicative factor scales the drift, "
            "not the state, so no paper_code noise reproduces sigma2 (docs/theory/conventions.md)"
        )
    target = NoiseSpec.paper_code(add=noise.additive * math.sqrt(dt), mult=0.0)
    return ConventionMapping(
        source=noise,
        target=target,
        dt=dt,
        drift_scale=1.0,
        drift_variance=0.0,
        exact=True,
        note="additive noise: exact in law",
    )
