r"""Stability certificates by linear matrix inequalities: the best quadratic metric.

docs/theory/stability.md bounds the growth of the difference :math:`\Delta = h - h'` of two
trajectories sharing input and noise path in the Euclidean norm, with every tanh
slope anywhere in :math:`[0, 1]`. Here the norm is :math:`\|\Delta\|_P =
(\Delta^\top P\Delta)^{1/2}` for the best :math:`P \succ 0` (``"identity"``,
``"diagonal"`` or ``"full"``), and the slopes lie in a per-unit sector
:math:`[s_{lo}, s_{hi}]` (the global :math:`[0, 1]`, or the sector over a reachable set,
:mod:`nrnn_theory.reachability`).

**S-procedure.** Write :math:`f(h) - f(h') = \alpha A\Delta + v`, :math:`v = DW\Delta`,
:math:`D = \mathrm{diag}(\delta)`, :math:`\delta_i\in[s_{lo,i}, s_{hi,i}]`. Then with
:math:`y = W\Delta`, for every unit :math:`(v_i - s_{lo,i}y_i)(s_{hi,i}y_i - v_i) \ge 0`,
and for multipliers :math:`\lambda_i \ge 0`

.. math:: q_\Lambda(\Delta, v) = \sum_i \lambda_i(v_i - s_{lo,i}y_i)(s_{hi,i}y_i - v_i) \ge 0 .

A quadratic form :math:`\xi^\top T\xi` in :math:`\xi = (\Delta, v)` that bounds the
growth of :math:`V = \Delta^\top P\Delta` is then certified by one LMI
:math:`T(P, \Lambda) + Q_\Lambda \preceq r\,\mathrm{diag}(P, 0)`:

* ODE / SDE generator: :math:`\mathcal LV = 2\Delta^\top P(\alpha A\Delta + v)
  + s^2\Delta^\top N(P)\Delta`, rate :math:`c = r/2`;
* Euler map (in mean square with noise): :math:`\mathbb E V^+ = |J\Delta + Sv|_P^2
  + s^2\Delta t\,\Delta^\top N(P)\Delta`, rate :math:`\log r/(2\Delta t)`,

with :math:`J = I + S\alpha A`, :math:`S = \mathrm{diag}(\text{step})` (any sign),
:math:`s = \epsilon\sigma_2` and :math:`N(P) = P` (``scalar`` noise) or
:math:`\mathrm{Diag}(P)` (``diagonal``): additive noise cancels in :math:`\Delta`. A
random ``"paper_code"`` step :math:`t_i = d_im_i\in[t_{lo}, t_{hi}]` enters as a second
sector on :math:`w_i = t_iu_i`, :math:`u = \alpha A\Delta + v`, :math:`\Delta^+ = \Delta + w`.

The LMI is linear in :math:`(P, \Lambda)` for a fixed :math:`r`, and :math:`r` multiplies
:math:`P`: the optimal rate is a generalized eigenvalue problem, quasi-convex, solved
by bisection on the rate with cvxpy (Clarabel, SCS as fallback), or for large ``H`` by a
descent on the exact value (below). **Every reported rate is re-verified in float64
outside the solver** (:func:`verify_lmi`): :math:`P \succ 0`, multipliers
:math:`\ge 0`, and the largest eigenvalue of the LMI matrix at the reported rate,
congruence-scaled by powers of two, below a rounding allowance :math:`-\tau`
(:class:`LMIVerification`). If it fails the certificate does not hold. The matrix is
built in centred coordinates (``_lmi_matrix``: slope :math:`c\pm\rho`,
:math:`v = CW\Delta + w`), the same LMI after a change of variables, which stays
accurate in narrow sectors.

For given :math:`(P, \Lambda)` the exact best rate follows from a Schur complement on the
:math:`v` block :math:`T_{vv} \prec 0`:
:math:`r^\star = \lambda_{\max}\big(P^{-1/2}(T_{\Delta\Delta} - T_{\Delta v}T_{vv}^{-1}
T_{v\Delta})P^{-1/2}\big)`. Its sublevel sets are the LMI's feasible sets, so it is
quasi-convex in :math:`(P, \Lambda)` (convex in :math:`\Lambda` for a fixed :math:`P`).

**Large H.** An interior-point SDP has a dense Newton system of the size of the LMI's
:math:`n(n+1)/2` entries (:math:`n = 2H`), which makes Clarabel take minutes per solve at
:math:`H = 64`. The ``"descent"`` solver instead minimizes the smoothed value
:math:`\tau\log\sum_j e^{w_j/\tau}` of the generalized eigenvalues :math:`w_j` by
L-BFGS over :math:`P = LL^\top` (or :math:`\log` of a diagonal) and
:math:`\log\lambda`, with analytic gradients (envelope theorem, ``_Value``, about
one :math:`H\times H` eigendecomposition and a few products per evaluation), lowering
:math:`\tau` by 10 per stage until the bias :math:`\tau\log H` is a quarter of the
rate tolerance. It starts from the best of the identity metric, a Lyapunov metric of the
mid-sector linearization and (full metric) the diagonal descent's result. Its answer is
the smallest *exact* value met, re-verified in float64 like every other: a sound upper
bound of the SDP optimum, equal to it to the tolerance where both run (tested against
Clarabel). ``"auto"`` uses Clarabel up to ``H = 16`` (identity) or ``12`` (diagonal,
full) and polishes its bisection by the descent; the descent above.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from nrnn_theory._contract import (
    check_choice,
    check_noise,
    check_nonnegative,
    check_params,
    check_positive,
    check_real,
    check_tensor,
)
from nrnn_theory._record import Result
from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory.reachability import (
    ReachableSet,
    SlopeSector,
    global_sector,
    reachable_sector,
)
from nrnn_theory.stability import Certificate, StabilizingNoise


__all__ = [
    "LMI_CONDITIONS",
    "METRICS",
    "SOLVERS",
    "LMISolution",
    "LMIVerification",
    "QuadraticCondition",
    "check_stability_lmi",
    "finite_horizon_certificate",
    "minimal_stabilizing_noise_lmi",
    "quadratic_condition",
    "solve_lmi",
    "verify_lmi",
]

Metric = Literal["identity", "diagonal", "full"]
Solver = Literal["auto", "clarabel", "scs", "descent"]
#: Metrics :math:`P`: the identity (Euclidean, as docs/theory/stability.md), diagonal, or full
# (SDP).
METRICS: tuple[str, ...] = ("identity", "diagonal", "full")
#: Solvers: ``"auto"`` is Clarabel where the SDP is small enough (see ``_AUTO_SDP_MAX``),
#: else the descent on the exact value; ``"scs"`` is the first-order conic solver.
SOLVERS: tuple[str, ...] = ("auto", "clarabel", "scs", "descent")
#: Largest H for which ``solver="auto"`` uses an interior-point SDP, per metric (on a
#: loaded 2-core machine a full-P bisection took 64 s at H = 16, the descent 6-9 s with
#: the same rate to 1e-3; a diagonal bisection at H = 32 took 227 s, the descent 2.5 s).
_AUTO_SDP_MAX = {"identity": 16, "diagonal": 12, "full": 12}

F64 = torch.float64
_EPS = float(np.finfo(np.float64).eps)

LMI_CONDITIONS: dict[str, str] = {
    "lmi_contraction": "contraction of the ODE in the metric P (LMI, S-procedure)",
    "lmi_discrete": "contraction of the discrete map in the metric P (LMI, S-procedure)",
    "lmi_mean_square": "mean-square contraction of the SDE in the metric P (LMI)",
    "lmi_mean_square_discrete": (
        "mean-square contraction of the Euler-Maruyama chain in the metric P (LMI)"
    ),
    "lmi_almost_sure_scalar": (
        "almost-sure exponential stability, scalar multiplicative noise, Mao's theorem "
        "with V = Delta^T P Delta (LMI)"
    ),
    "lmi_almost_sure_diagonal": (
        "almost-sure exponential stability, diagonal multiplicative noise, Mao's theorem "
        "with V = Delta^T P Delta (LMI)"
    ),
    "lmi_finite_horizon": "finite-horizon bound on ||dh_T/dh_0||_2 over the input set (LMI)",
}

_S_PROCEDURE = "S-procedure, diagonal multipliers"


# ============================================================================ records
@dataclass(frozen=True)
class QuadraticCondition(Result):
    r"""The data of one LMI: growth form, slope sector, steps and noise (float64, CPU).

    Attributes
    ----------
    form : str
        ``"generator"`` (ODE / SDE: :math:`\mathcal L V \le rV`, rate :math:`r/2`) or
        ``"map"`` (:math:`\mathbb E V_{k+1} \le rV_k`, rate :math:`\log r/(2\Delta t)`).
    aA, W : Tensor, shape (H, H)
        :math:`\alpha A` and :math:`W`.
    slope_lo, slope_hi : Tensor, shape (H,)
        The sector of each unit.
    step : Tensor, shape (H,), or None
        Deterministic step of the map (``None`` for the generator or a random step).
    step_lo, step_hi : Tensor, shape (H,), or None
        Range of a random ``"paper_code"`` step :math:`d\odot m_k`.
    noise_structure : str
        ``"none"``, ``"scalar"`` or ``"diagonal"`` multiplicative noise.
    noise_coef : float
        :math:`s^2` (generator) or :math:`s^2\Delta t` (map), :math:`s = \epsilon\sigma_2`.
    dt : float
        Converts the map's per-step factor to a rate per unit time.
    """

    form: str
    aA: Tensor
    W: Tensor
    slope_lo: Tensor
    slope_hi: Tensor
    step: Tensor | None
    step_lo: Tensor | None
    step_hi: Tensor | None
    noise_structure: str
    noise_coef: float
    dt: float

    @property
    def hidden_size(self) -> int:
        """Number of hidden units H."""
        return int(self.aA.shape[0])

    @property
    def random_step(self) -> bool:
        """Whether the step is random (``step_lo``/``step_hi`` bound it), as in ``paper_code``."""
        return self.step_lo is not None

    @property
    def n_multipliers(self) -> int:
        """Number of diagonal S-procedure multipliers (H, or 2H with a random step)."""
        return 2 * self.hidden_size if self.random_step else self.hidden_size

    def rate_from_r(self, r: float) -> float:
        r"""The rate per unit time of the LMI parameter ``r``.

        Parameters
        ----------
        r : float
            LMI parameter: :math:`2c` for ``"generator"``, :math:`e^{2c\Delta t}` for a map.

        Returns
        -------
        float
            The rate :math:`c` (``-inf`` for a map with ``r <= 0``).
        """
        if self.form == "generator":
            return 0.5 * r
        return math.log(r) / (2.0 * self.dt) if r > 0 else -math.inf

    def r_from_rate(self, rate: float) -> float:
        r"""The LMI parameter ``r`` of a rate per unit time.

        Parameters
        ----------
        rate : float
            Rate :math:`c` per unit time.

        Returns
        -------
        float
            :math:`2c` for ``"generator"``, :math:`e^{2c\Delta t}` for a map.
        """
        if self.form == "generator":
            return 2.0 * rate
        return math.exp(2.0 * rate * self.dt)


@dataclass(frozen=True)
class LMIVerification(Result):
    r"""Float64 re-verification of an LMI at a given metric, multipliers and rate.

    Attributes
    ----------
    holds : bool
        :math:`\lambda_{\min}(P) > 64H\varepsilon_{64}\max(\|P\|_2, 1)`, multipliers
        :math:`\ge 0` and :math:`\lambda_{\max}(D(T - r\,\mathrm{diag}(P, 0))D) \le
        -\tau`, :math:`D` the diagonal of powers of two that brings the multiplier
        block's diagonal to about 1 (a congruence: the sign of the LMI is unchanged, and
        the scaling is exact in floating point).
    max_eigenvalue : float
        Largest eigenvalue of the scaled LMI matrix (must be :math:`\le -\tau`).
    min_eigenvalue_P : float
    tolerance : float
        :math:`\tau = 64\,n\,\varepsilon_{64}\max(\|D(T - rE)D\|_2, \|P\|_2, 1)`, a
        bound on the rounding error of the eigenvalues computed (backward-stable
        ``eigvalsh``).
    rate : float
        The rate checked (per unit time).
    """

    holds: bool
    max_eigenvalue: float
    min_eigenvalue_P: float
    tolerance: float
    rate: float


@dataclass(frozen=True)
class LMISolution(Result):
    r"""The best metric found for a :class:`QuadraticCondition`, re-verified in float64.

    Attributes
    ----------
    verified : bool
        Whether :func:`verify_lmi` accepted ``rate`` at ``P`` and the multipliers.
    rate : float
        The verified rate per unit time (``inf`` if nothing could be verified).
    P : Tensor, shape (H, H)
        The metric (normalized so that :math:`\lambda_{\min}(P) = 1`).
    multipliers : Tensor, shape (m,)
        :math:`\lambda` (H,) then, for a random step, the second sector's (H,).
    metric : str
    solver : str
        ``"clarabel"``, ``"scs"``, ``"descent"`` or ``"fixed"`` (P given).
    status : str
        Solver status of the accepted solve and the counts of solves.
    solver_rate : float
        The rate the solver claimed at the accepted point (the bisection midpoint).
    lower_bound : float
        Rate below which no quadratic metric can exist (largest spectral abscissa, or
        log spectral radius per unit time, over sampled slopes).
    verification : LMIVerification or None
    condition_number : float
        :math:`\lambda_{\max}(P)/\lambda_{\min}(P)`.
    n_solves : int
    tolerance : float
        Bisection tolerance on the rate.
    """

    verified: bool
    rate: float
    P: Tensor
    multipliers: Tensor
    metric: str
    solver: str
    status: str
    solver_rate: float
    lower_bound: float
    verification: LMIVerification | None
    condition_number: float
    n_solves: int
    tolerance: float


# ============================================================================ the LMI
class _TorchOps:
    """Matrix operations for the float64 evaluation of the LMI."""

    @staticmethod
    def diag(v):
        return torch.diag(v)

    @staticmethod
    def diag_part(P):
        return torch.diag(torch.diagonal(P))

    @staticmethod
    def mul(a, b):
        return a * b

    @staticmethod
    def bmat(rows):
        return torch.cat([torch.cat(list(r), dim=1) for r in rows], dim=0)

    @staticmethod
    def zeros(n, m):
        return torch.zeros(n, m, dtype=F64)


class _CvxOps:
    """The same operations on cvxpy expressions (constants as numpy arrays)."""

    def __init__(self, cp) -> None:
        self.cp = cp

    def diag(self, v):
        return self.cp.diag(v)

    def diag_part(self, P):
        if isinstance(P, np.ndarray):
            return np.diag(np.diag(P))
        return self.cp.diag(self.cp.diag(P))

    def mul(self, a, b):
        return self.cp.multiply(a, b)

    def bmat(self, rows):
        return self.cp.bmat([list(r) for r in rows])

    @staticmethod
    def zeros(n, m):
        return np.zeros((n, m))


def _constants(cond: QuadraticCondition, numpy: bool) -> dict:
    """Centred data: slope c +- rho, K_c = alpha A + C W, J_c = I + S K_c (step t_c)."""
    lo, hi = cond.slope_lo, cond.slope_hi
    c, rho = 0.5 * (lo + hi), 0.5 * (hi - lo)
    eye = torch.eye(cond.hidden_size, dtype=F64)
    Kc = cond.aA + c[:, None] * cond.W
    out = {"aA": cond.aA, "W": cond.W, "rho2": rho * rho, "Kc": Kc, "I": eye}
    out.update(step=cond.step, tc=None, tr2=None)
    if cond.step is not None:
        out["S"] = torch.diag(cond.step)
        out["Jc"] = eye + cond.step[:, None] * Kc
    elif cond.step_lo is not None:
        tc = 0.5 * (cond.step_lo + cond.step_hi)
        tr = 0.5 * (cond.step_hi - cond.step_lo)
        out.update(tc=tc, tr2=tr * tr, Tc=torch.diag(tc), Jc=eye + tc[:, None] * Kc)
    if numpy:
        out = {k: (None if v is None else v.numpy()) for k, v in out.items()}
    return out


def _lmi_matrix(cond: QuadraticCondition, P, lam, mu, ops, k: dict):
    r"""T(P, multipliers) in centred coordinates (see the module docstring).

    The slope :math:`\delta_i = c_i + \epsilon_i`, :math:`|\epsilon_i| \le \rho_i`, gives
    :math:`v = CW\Delta + w` with :math:`w_i^2 \le \rho_i^2y_i^2`; the S-procedure term
    :math:`\lambda_i(\rho_i^2y_i^2 - w_i^2)` equals :math:`\lambda_i(v_i - s_{lo,i}y_i)
    (s_{hi,i}y_i - v_i)`, so this is the LMI of the module docstring after the change of
    variables :math:`(\Delta, v) \to (\Delta, w)` (a congruence: same feasible set, same
    rate). Unlike the :math:`(\Delta, v)` form it has no cancellation of
    :math:`\lambda`-sized terms in the :math:`\Delta` block, so it stays accurate in
    narrow sectors, where the multipliers must be large. Coordinates :math:`(\Delta, w)`,
    or :math:`(\Delta, w_1, w_2)` for a random step :math:`t = t_c + e`,
    :math:`|e_i| \le t_{r,i}`, :math:`w_2 = e\odot u`, :math:`u = K_c\Delta + w_1`.
    """
    W, Kc, Jc = k["W"], k["Kc"], k.get("Jc")
    L = ops.diag(lam)
    Q11 = W.T @ ops.diag(ops.mul(lam, k["rho2"])) @ W
    noise = 0.0
    if cond.noise_structure == "scalar":
        noise = cond.noise_coef * P
    elif cond.noise_structure == "diagonal":
        noise = cond.noise_coef * ops.diag_part(P)
    if cond.form == "generator":
        PK = P @ Kc
        return ops.bmat([[PK + PK.T + Q11 + noise, P], [P, -L]])
    if not cond.random_step:
        S = k["S"]
        JP = Jc.T @ P
        T11 = JP @ Jc + Q11 + noise
        T12 = JP @ S
        T22 = S @ P @ S - L
        return ops.bmat([[T11, T12], [T12.T, T22]])
    Tc = k["Tc"]
    Mr = ops.diag(ops.mul(mu, k["tr2"]))
    JP = Jc.T @ P
    a11 = JP @ Jc + Q11 + noise + Kc.T @ Mr @ Kc
    a12 = JP @ Tc + Kc.T @ Mr
    a13 = JP
    a22 = Tc @ P @ Tc + Mr - L
    a23 = Tc @ P
    a33 = P - ops.diag(mu)
    return ops.bmat([[a11, a12, a13], [a12.T, a22, a23], [a13.T, a23.T, a33]])


def _rhs(cond: QuadraticCondition, P, ops, n: int):
    """diag(P, 0): the weight of r in the LMI T <= r diag(P, 0)."""
    H = cond.hidden_size
    Z1 = ops.zeros(H, n - H)
    Z2 = ops.zeros(n - H, n - H)
    return ops.bmat([[P, Z1], [Z1.T, Z2]])


def _split(cond: QuadraticCondition, mult: Tensor) -> tuple[Tensor, Tensor | None]:
    H = cond.hidden_size
    return mult[:H], (mult[H:] if cond.random_step else None)


def _exact_r(cond: QuadraticCondition, P: Tensor, mult: Tensor) -> float:
    """Smallest r with T(P, mult) <= r diag(P, 0), by the Schur complement; inf if none."""
    H = cond.hidden_size
    lam, mu = _split(cond, mult)
    T = _lmi_matrix(cond, P, lam, mu, _TorchOps, _constants(cond, False))
    T = 0.5 * (T + T.mT)
    Trr = T[H:, H:]
    L_r, info = torch.linalg.cholesky_ex(-Trr)
    if int(info) != 0:
        return math.inf
    X = torch.cholesky_solve(T[H:, :H], L_r)  # (-Trr)^{-1} T_rD
    S = T[:H, :H] + T[:H, H:] @ X
    L_p, info = torch.linalg.cholesky_ex(0.5 * (P + P.mT))
    if int(info) != 0:
        return math.inf
    Y = torch.linalg.solve_triangular(L_p, S, upper=False)
    Z = torch.linalg.solve_triangular(L_p, Y.mT, upper=False)
    return float(torch.linalg.eigvalsh(0.5 * (Z + Z.mT))[-1])


def verify_lmi(
    condition: QuadraticCondition, P: Tensor, multipliers: Tensor, rate: float
) -> LMIVerification:
    r"""Re-verify an LMI certificate in float64, independently of any solver.

    Checks :math:`P \succ 0`, multipliers :math:`\ge 0`, and that
    :math:`T(P, \Lambda) - r\,\mathrm{diag}(P, 0)` has all eigenvalues
    :math:`\le -\tau` (``numpy.linalg.eigvalsh``), where :math:`r` is the LMI parameter
    of ``rate`` and :math:`\tau` the rounding allowance of :class:`LMIVerification`.
    Then :math:`\xi^\top(T - rE)\xi < 0` for every :math:`\xi \ne 0`: the quadratic
    growth bound holds at ``rate`` for every slope in the sector.

    Parameters
    ----------
    condition : QuadraticCondition
    P : Tensor, shape (H, H)
    multipliers : Tensor, shape (m,)
    rate : float
        Per unit time.

    Returns
    -------
    LMIVerification
    """
    if not isinstance(condition, QuadraticCondition):
        raise TypeError(f"condition: expected QuadraticCondition, got {type(condition).__name__}")
    H = condition.hidden_size
    P = check_tensor("P", P).detach().to("cpu", F64)
    if P.shape != (H, H):
        raise ValueError(f"P: expected shape ({H}, {H}), got {tuple(P.shape)}")
    mult = check_tensor("multipliers", multipliers).detach().to("cpu", F64)
    if mult.shape != (condition.n_multipliers,):
        raise ValueError(
            f"multipliers: expected shape ({condition.n_multipliers},), got {tuple(mult.shape)}"
        )
    rate = check_real("rate", rate) if math.isfinite(float(rate)) else float(rate)
    P = 0.5 * (P + P.mT)
    lam, mu = _split(condition, mult)
    k = _constants(condition, True)
    Pn = P.numpy()
    T = _lmi_matrix(condition, Pn, lam.numpy(), None if mu is None else mu.numpy(), _NumpyOps, k)
    T = 0.5 * (T + T.T)
    n = T.shape[0]
    eig_P = np.linalg.eigvalsh(Pn)
    if not math.isfinite(rate):
        return LMIVerification(False, math.inf, float(eig_P[0]), math.inf, rate)
    r = condition.r_from_rate(rate)
    E = np.zeros_like(T)
    E[:H, :H] = Pn
    M = T - r * E
    # Congruence by a diagonal of powers of two (exact in floating point; M < 0 iff
    # D M D < 0): the multiplier block is scaled to O(1), so large multipliers do not
    # inflate the rounding allowance.
    d = np.ones(n)
    diag = np.abs(np.diagonal(M)[H:])
    d[H:] = np.exp2(-np.round(0.5 * np.log2(np.maximum(diag, 1e-300))))
    M = (d[:, None] * M) * d[None, :]
    scale = max(np.linalg.norm(M, 2), np.linalg.norm(Pn, 2), 1.0)
    tol = 64.0 * n * _EPS * scale
    top = float(np.linalg.eigvalsh(0.5 * (M + M.T))[-1])
    tol_P = 64.0 * H * _EPS * max(np.linalg.norm(Pn, 2), 1.0)
    holds = bool(eig_P[0] > tol_P and bool((mult >= 0).all()) and top <= -tol)
    return LMIVerification(holds, top, float(eig_P[0]), tol, rate)


class _NumpyOps:
    """numpy operations for the verification (independent of torch's linear algebra)."""

    @staticmethod
    def diag(v):
        return np.diag(v)

    @staticmethod
    def diag_part(P):
        return np.diag(np.diag(P))

    @staticmethod
    def mul(a, b):
        return a * b

    @staticmethod
    def bmat(rows):
        return np.block([list(r) for r in rows])

    @staticmethod
    def zeros(n, m):
        return np.zeros((n, m))


def _finalize(cond: QuadraticCondition, P: Tensor, mult: Tensor):
    """The smallest verified rate at (P, mult): exact value plus a growing margin."""
    P = 0.5 * (P + P.mT)
    w = torch.linalg.eigvalsh(P)
    if not bool(w[0] > 0) or not bool(torch.isfinite(mult).all()):
        return None, P, mult
    P = P / w[0]  # lambda_min(P) = 1 (the LMI is homogeneous in (P, multipliers))
    mult = (mult / w[0]).clamp_min(0.0)
    r = _exact_r(cond, P, mult)
    if not math.isfinite(r):
        return None, P, mult
    base = cond.rate_from_r(r) if (cond.form == "generator" or r > 0) else -math.inf
    if base == -math.inf:
        base = cond.rate_from_r(1e-300)
    for margin in (1e-12, 1e-10, 1e-8, 1e-6, 1e-4):
        rate = base + margin * (1.0 + abs(base))
        ver = verify_lmi(cond, P, mult, rate)
        if ver.holds:
            return ver, P, mult
    return ver, P, mult


# ============================================================================ building
def _sector_for(sector: SlopeSector | ReachableSet | None, H: int, dynamics: str) -> SlopeSector:
    if sector is None:
        return global_sector(H)
    if isinstance(sector, ReachableSet):
        return reachable_sector(sector, dynamics="ode" if dynamics == "ode" else "map")
    if not isinstance(sector, SlopeSector):
        raise TypeError(
            f"sector: expected SlopeSector, ReachableSet or None, got {type(sector).__name__}"
        )
    if sector.lo.shape[-1] != H:
        raise ValueError(
            f"sector: expected {H} units to match the model, got {sector.lo.shape[-1]}"
        )
    return sector


def quadratic_condition(
    params: NRNNParams,
    *,
    dynamics: Literal["ode", "map"],
    sector: SlopeSector | None = None,
    noise: NoiseSpec | None = None,
) -> QuadraticCondition:
    r"""The LMI data of a model: ODE/SDE generator or Euler map, sector and noise.

    Parameters
    ----------
    params : NRNNParams
    dynamics : {"ode", "map"}
        ``"ode"``: the generator of :math:`dh = f\,dt + \epsilon\sigma_2(\cdot)dB`
        (``"sde"`` multiplicative noise enters as :math:`s^2N(P)`). ``"map"``: the
        model's own step :math:`h + s\odot f` (``params.drift_step``, any sign),
        with ``"sde"`` noise in mean square (:math:`s^2\Delta t\,N(P)`) and a
        ``"paper_code"`` random step :math:`d\odot m`, :math:`m\in[1-\mu, 1]`.
    sector : SlopeSector, optional
        Default: the global sector. A per-step sector is refused (use
        :func:`finite_horizon_certificate`).
    noise : NoiseSpec, optional
        Additive parts cancel in differences and are ignored.

    Returns
    -------
    QuadraticCondition
    """
    params = check_params(params)
    noise = check_noise(noise)
    dynamics = check_choice("dynamics", dynamics, ("ode", "map"))
    H = params.hidden_size
    sec = _sector_for(sector, H, dynamics)
    if sec.per_step:
        raise ValueError(
            "sector: expected one sector per unit (H,), got a per-step sector; use "
            "finite_horizon_certificate for per-step sectors"
        )
    structure, coef = "none", 0.0
    step = step_lo = step_hi = None
    d = params.drift_step.detach().to("cpu", F64)
    if noise is not None and not noise.is_zero:
        if noise.convention == "sde" and noise.multiplicative > 0:
            structure = noise.structure
            coef = noise.multiplicative**2 * (params.dt if dynamics == "map" else 1.0)
        if noise.convention == "paper_code" and dynamics == "ode":
            raise ValueError(
                "noise: 'paper_code' noise is a random step of the discrete model "
                "(docs/theory/conventions.md); use dynamics 'map', got dynamics 'ode'"
            )
        if noise.convention == "paper_code" and noise.multiplicative > 0:
            a = d * (1.0 - noise.multiplicative)
            step_lo, step_hi = torch.minimum(a, d), torch.maximum(a, d)
    if dynamics == "map" and step_lo is None:
        step = d
    return QuadraticCondition(
        form="generator" if dynamics == "ode" else "map",
        aA=float(params.alpha) * params.A.detach().to("cpu", F64),
        W=params.W.detach().to("cpu", F64),
        slope_lo=sec.lo.to(F64),
        slope_hi=sec.hi.to(F64),
        step=step,
        step_lo=step_lo,
        step_hi=step_hi,
        noise_structure=structure,
        noise_coef=coef,
        dt=float(params.dt),
    )


def _lower_bound(cond: QuadraticCondition) -> float:
    """Largest per-slope rate over slopes lo, hi, mid (and a few random ones)."""
    lo, hi = cond.slope_lo, cond.slope_hi
    g = torch.Generator().manual_seed(0)
    Ds = [lo, hi, 0.5 * (lo + hi)]
    Ds += [lo + (hi - lo) * torch.rand(lo.shape, generator=g, dtype=F64) for _ in range(4)]
    best = -math.inf
    for D in Ds:
        K = cond.aA + D[:, None] * cond.W
        if cond.form == "generator":
            best = max(best, float(torch.linalg.eigvals(K).real.max()))
        else:
            s = cond.step if cond.step is not None else 0.5 * (cond.step_lo + cond.step_hi)
            J = torch.eye(cond.hidden_size, dtype=F64) + s[:, None] * K
            rad = float(torch.linalg.eigvals(J).abs().max())
            best = max(best, math.log(rad) / cond.dt if rad > 0 else -math.inf)
    return best


# ============================================================================ solvers
def _solve_fixed_cvx(cond: QuadraticCondition, P: np.ndarray, solver: str):
    """Minimize r over the multipliers for a fixed P (one SDP, linear in r)."""
    import cvxpy as cp

    H = cond.hidden_size
    ops = _CvxOps(cp)
    k = _constants(cond, True)
    lam = cp.Variable(H)
    mu = cp.Variable(H) if cond.random_step else None
    r = cp.Variable()
    T = _lmi_matrix(cond, P, lam, mu, ops, k)
    n = T.shape[0]
    M = T - r * _rhs(cond, P, ops, n)
    cons = [0.5 * (M + M.T) << -1e-9 * np.eye(n), lam >= 0]
    if mu is not None:
        cons.append(mu >= 0)
    prob = cp.Problem(cp.Minimize(r), cons)
    status = _run(prob, solver)
    if lam.value is None:
        return None, status
    mult = np.concatenate([lam.value, mu.value]) if mu is not None else lam.value
    return (torch.as_tensor(P, dtype=F64), torch.as_tensor(mult, dtype=F64)), status


def _run(prob, solver: str) -> str:
    """Solve with the named solver (Clarabel falls back to SCS); return the status."""
    import warnings

    import cvxpy as cp

    order = ["CLARABEL", "SCS"] if solver == "clarabel" else ["SCS"]
    last = "not solved"
    for name in order:
        try:
            kwargs = {"eps": 1e-7, "max_iters": 20000} if name == "SCS" else {}
            with warnings.catch_warnings():
                # "Solution may be inaccurate": the status says so, and every point
                # is re-verified in float64 anyway.
                warnings.simplefilter("ignore", UserWarning)
                prob.solve(solver=name, **kwargs)
        except (cp.error.SolverError, ArithmeticError, ValueError) as err:
            last = f"{name.lower()} error: {err}"
            continue
        last = f"{name.lower()}: {prob.status}"
        if prob.status in ("optimal", "optimal_inaccurate", "infeasible", "infeasible_inaccurate"):
            return last
    return last


class _BisectionSDP:
    """The feasibility SDP at a rate parameter, built once (cvxpy re-solves with a new r)."""

    def __init__(self, cond: QuadraticCondition, metric: str) -> None:
        import cvxpy as cp

        H = cond.hidden_size
        ops = _CvxOps(cp)
        k = _constants(cond, True)
        self.cond = cond
        self.r = cp.Parameter()
        self.t = cp.Variable()
        if metric == "diagonal":
            self.p = cp.Variable(H)
            P = cp.diag(self.p)
            cons = [self.p >= 1.0, self.p <= self.t]
        else:
            self.p = cp.Variable((H, H), symmetric=True)
            P = self.p
            cons = [P >> np.eye(H), P << self.t * np.eye(H)]
        self.P = P
        self.lam = cp.Variable(H)
        self.mu = cp.Variable(H) if cond.random_step else None
        T = _lmi_matrix(cond, P, self.lam, self.mu, ops, k)
        n = T.shape[0]
        M = T - self.r * _rhs(cond, P, ops, n)
        cons += [0.5 * (M + M.T) << -1e-8 * np.eye(n), self.lam >= 0]
        if self.mu is not None:
            cons.append(self.mu >= 0)
        self.prob = cp.Problem(cp.Minimize(self.t), cons)
        self.metric = metric

    def solve(self, r: float, solver: str):
        self.r.value = r
        status = _run(self.prob, solver)
        if self.lam.value is None or self.prob.status not in ("optimal", "optimal_inaccurate"):
            return None, status
        P = self.p.value
        P = np.diag(P) if self.metric == "diagonal" else P
        lam = self.lam.value
        mult = np.concatenate([lam, self.mu.value]) if self.mu is not None else lam
        return (torch.as_tensor(P, dtype=F64), torch.as_tensor(mult, dtype=F64)), status


def _lbfgs(
    fg: Callable, x: np.ndarray, max_iter: int, memory: int = 10, ftol: float = 0.0
) -> np.ndarray:
    """Minimize by L-BFGS with Armijo backtracking; inf values make the step shrink.

    Stops after ``max_iter`` iterations, on a failed line search, or when the value
    dropped by at most ``ftol`` over the last 5 iterations.
    """
    f, g = fg(x)
    if not math.isfinite(f):
        return x
    S: list[np.ndarray] = []
    Y: list[np.ndarray] = []
    history = [f]
    for _ in range(max_iter):
        q = g.copy()
        coeffs = []
        for s, y in zip(reversed(S), reversed(Y), strict=True):
            rho = 1.0 / float(y @ s)
            c = rho * float(s @ q)
            q = q - c * y
            coeffs.append((rho, c, s, y))
        if S:
            q = q * (float(S[-1] @ Y[-1]) / float(Y[-1] @ Y[-1]))
        else:
            q = q * (0.1 / max(float(np.linalg.norm(g)), 1e-300))
        for rho, c, s, y in reversed(coeffs):
            q = q + (c - rho * float(y @ q)) * s
        d = -q
        slope = float(g @ d)
        if slope >= 0:
            S.clear()
            Y.clear()
            d = -g * (0.1 / max(float(np.linalg.norm(g)), 1e-300))
            slope = float(g @ d)
        if slope == 0.0:
            break
        step = 1.0
        while True:
            x_new = x + step * d
            f_new, g_new = fg(x_new)
            if math.isfinite(f_new) and f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
            if step < 1e-12:
                break
        if step < 1e-12:
            break
        s, y = x_new - x, g_new - g
        if float(s @ y) > 1e-12 * float(y @ y):
            S.append(s)
            Y.append(y)
            del S[:-memory], Y[:-memory]
        done = f - f_new <= 1e-10 * max(1.0, abs(f))
        x, f, g = x_new, f_new, g_new
        history.append(f)
        if done or (len(history) > 5 and history[-6] - f <= ftol):
            break
    return x


class _Value:
    r"""The exact LMI value and its smoothed form with analytic gradients (numpy, float64).

    For :math:`(P, m)` with :math:`T_{rr} \prec 0` (``r`` the rest of :math:`\xi`
    after :math:`\Delta`), :math:`r^\star = \lambda_{\max}(S, P)`, the largest
    generalized eigenvalue of the Schur complement
    :math:`S = T_{\Delta\Delta} - T_{\Delta r}T_{rr}^{-1}T_{r\Delta}` against :math:`P`.
    Smoothed: :math:`f_\tau = \tau\log\sum_j e^{w_j/\tau} \in [r^\star, r^\star +
    \tau\log H]`. With :math:`P`-normalized eigenvectors :math:`\Delta_j`,
    :math:`\xi_j = (\Delta_j, -T_{rr}^{-1}T_{r\Delta}\Delta_j)` and
    :math:`p = \mathrm{softmax}(w/\tau)`, the envelope theorem gives

    .. math:: df_\tau = \sum_j p_j\big(\xi_j^\top dT\,\xi_j - w_j\,\Delta_j^\top
              dP\,\Delta_j\big),

    and :math:`T` is linear in :math:`(P, \lambda, \mu)` (centred coordinates of
    :func:`_lmi_matrix`): :math:`\xi^\top T\xi = a^\top Pa + c\,N(P)[\Delta] +
    \sum_i\lambda_i(\rho_i^2y_i^2 - w_i^2) + \sum_i\mu_i(t_{r,i}^2u_i^2 - w_{2,i}^2)`,
    with :math:`a = J_c\Delta + Sw` (map), :math:`J_c\Delta + T_cw_1 + w_2` (random
    step), and :math:`2\Delta^\top P(K_c\Delta + w)` for the generator.
    """

    def __init__(self, cond: QuadraticCondition) -> None:
        self.cond = cond
        self.k = _constants(cond, True)
        self.H = cond.hidden_size

    def __call__(self, P: np.ndarray, mult: np.ndarray, temp: float | None, grad: bool = True):
        """``(f_smooth, r_exact, grad_P, grad_mult)``, or ``None`` where undefined."""
        import scipy.linalg as sl

        cond, k, H = self.cond, self.k, self.H
        lam = mult[:H]
        mu = mult[H:] if cond.random_step else None
        T = _lmi_matrix(cond, P, lam, mu, _NumpyOps, k)
        T = 0.5 * (T + T.T)
        try:
            c_r = sl.cho_factor(-T[H:, H:], lower=True, check_finite=False)
            Lp = np.linalg.cholesky(0.5 * (P + P.T))
        except (np.linalg.LinAlgError, sl.LinAlgError):
            return None
        X = sl.cho_solve(c_r, T[H:, :H], check_finite=False)  # (-T_rr)^{-1} T_rD
        S = T[:H, :H] + T[:H, H:] @ X
        Y = sl.solve_triangular(Lp, S, lower=True, check_finite=False)
        Z = sl.solve_triangular(Lp, Y.T, lower=True, check_finite=False)
        w, U = np.linalg.eigh(0.5 * (Z + Z.T))
        if not np.all(np.isfinite(w)):
            return None
        r = float(w[-1])
        if temp is None:
            return r, r, None, None
        e = np.exp((w - r) / temp)
        f = r + temp * math.log(float(e.sum()))
        if not grad:
            return f, r, None, None
        p = e / e.sum()
        sel = p > 1e-14 * p.max()
        D = sl.solve_triangular(Lp.T, U[:, sel], lower=False, check_finite=False)
        R = X @ D  # the rest of xi: v (and w for a random step)
        sq = np.sqrt(p[sel])
        D, R, ws = D * sq, R * sq, w[sel]
        V = R[:H]
        if cond.form == "generator":
            a = k["Kc"] @ D + V
            G = D @ a.T
            G = G + G.T
        elif not cond.random_step:
            a = k["Jc"] @ D + k["step"][:, None] * V
            G = a @ a.T
        else:
            a = k["Jc"] @ D + k["tc"][:, None] * V + R[H:]
            G = a @ a.T
        if cond.noise_structure == "scalar":
            G = G + cond.noise_coef * (D @ D.T)
        elif cond.noise_structure == "diagonal":
            G = G + cond.noise_coef * np.diag((D * D).sum(1))
        G = G - (D * ws) @ D.T
        y = k["W"] @ D
        g_lam = (k["rho2"][:, None] * y * y - V * V).sum(1)
        if cond.random_step:
            u = k["Kc"] @ D + V
            W2 = R[H:]
            g_mu = (k["tr2"][:, None] * u * u - W2 * W2).sum(1)
            g_mult = np.concatenate([g_lam, g_mu])
        else:
            g_mult = g_lam
        return f, r, 0.5 * (G + G.T), g_mult


def _rate_scale(cond: QuadraticCondition, r: float) -> float:
    """d(rate)/dr at r: converts a rate tolerance into one on the LMI parameter."""
    if cond.form == "generator":
        return 0.5
    return 1.0 / (2.0 * cond.dt * max(r, 1e-300))


def _initial_multipliers(cond: QuadraticCondition, P: np.ndarray) -> np.ndarray:
    """Multipliers making T_rr negative definite with a margin, for a start."""
    m = cond.n_multipliers
    if cond.form == "generator":
        norm_W = float(np.linalg.norm(cond.W.numpy(), 2)) + 1e-3
        return np.full(m, 2.0 / norm_W)
    norm_P = float(np.linalg.norm(P, 2))
    if cond.random_step:
        # w block P - mu <= -norm_P; v block -(a mu + lambda) with a = t_lo t_hi beats
        # the coupling b mu, b = (t_lo + t_hi) / 2, by the Schur complement.
        tlo, thi = cond.step_lo.numpy(), cond.step_hi.numpy()
        mu = np.full(cond.hidden_size, 2.0 * norm_P + 1e-3)
        lam = 4.0 * mu * (0.25 * (tlo + thi) ** 2 + np.abs(tlo * thi)) + 1e-3
        return np.concatenate([lam, mu])
    smax = float(cond.step.abs().max())
    return np.full(m, 4.0 * norm_P * smax * smax + 1e-3)


def _descent(
    cond: QuadraticCondition,
    metric: str,
    P0: Tensor | None,
    mult0: Tensor | None,
    max_iter: int,
    fixed_P: Tensor | None = None,
    tol: float = 1e-3,
    warm: bool = False,
):
    r"""Minimize the smoothed exact value over (P, log multipliers) by L-BFGS.

    Analytic gradients (:class:`_Value`); the temperature decreases by 10 per stage
    from a tenth of the spread of the eigenvalues at the start down to the one whose
    smoothing bias :math:`\tau\log H` is a quarter of ``tol`` on the rate. Returns the
    point of smallest *exact* value met (re-verified by the caller).
    """
    H = cond.hidden_size
    value = _Value(cond)
    tri = np.tril_indices(H)
    if fixed_P is not None:
        metric = "fixed"
        P_init = fixed_P.numpy()
    else:
        P_init = np.eye(H) if P0 is None else P0.numpy()
    if metric == "full":
        xP = np.linalg.cholesky(0.5 * (P_init + P_init.T))[tri]
    elif metric == "diagonal":
        xP = np.log(np.diagonal(P_init).copy())
    else:
        xP = np.zeros(0)
    m0 = _initial_multipliers(cond, P_init) if mult0 is None else mult0.numpy()
    x = np.concatenate([xP, np.log(np.clip(m0, 1e-300, None))])
    nP = xP.size

    def unpack(z: np.ndarray):
        if metric == "full":
            L = np.zeros((H, H))
            L[tri] = z[:nP]
            P = L @ L.T
        elif metric == "diagonal":
            L = None
            P = np.diag(np.exp(z[:nP]))
        else:
            L = None
            P = P_init
        return P, np.exp(z[nP:]), L

    best = [math.inf, x]

    def fg(z: np.ndarray, temp: float):
        P, mult, L = unpack(z)
        out = value(P, mult, temp)
        if out is None:
            return math.inf, np.zeros_like(z)
        f, r, G, g_mult = out
        if r < best[0]:
            best[0], best[1] = r, z.copy()
        if metric == "full":
            gP = (2.0 * G @ L)[tri]
        elif metric == "diagonal":
            gP = np.diagonal(G) * np.exp(z[:nP])
        else:
            gP = np.zeros(0)
        return f, np.concatenate([gP, g_mult * mult])

    P, mult, _ = unpack(x)
    start = value(P, mult, None)
    if start is None:
        # T_rr not negative definite at the start: grow the multipliers until it is.
        for _ in range(60):
            x[nP:] += math.log(4.0)
            P, mult, _ = unpack(x)
            start = value(P, mult, None)
            if start is not None:
                break
        else:
            return torch.as_tensor(P), torch.as_tensor(mult)
    r0 = start[1]
    # Final temperature: bias tau log H below a quarter of tol (1 + |rate|) on the rate.
    rate0 = cond.rate_from_r(r0) if (cond.form == "generator" or r0 > 0) else 0.0
    scale = _rate_scale(cond, max(r0, 1e-3))
    tau_end = 0.25 * tol * (1.0 + abs(rate0)) / (scale * math.log(H + 1))
    # A warm start (multipliers of a neighbouring problem) skips the coarse stages.
    temp = 10.0 * tau_end if warm else max(0.1 * max(abs(r0), 1e-2), tau_end)
    while True:
        # The smoothing bias at this stage is up to temp log H: no need to go further.
        x = _lbfgs(lambda z, t=temp: fg(z, t), x, max_iter, ftol=1e-3 * temp)
        if temp <= tau_end:
            break
        temp = max(temp / 10.0, tau_end)
    P, mult, _ = unpack(best[1])
    return torch.as_tensor(P, dtype=F64), torch.as_tensor(mult, dtype=F64)


def _resolve_solver(solver: str, metric: str, H: int) -> str:
    solver = check_choice("solver", solver, SOLVERS)
    if solver == "auto":
        return "clarabel" if H <= _AUTO_SDP_MAX[metric] else "descent"
    return solver


def solve_lmi(
    condition: QuadraticCondition,
    *,
    metric: Metric = "full",
    solver: Solver = "auto",
    tol: float = 1e-3,
    max_iter: int = 150,
    P: Tensor | None = None,
) -> LMISolution:
    r"""The smallest rate certified by the LMI of ``condition`` in a class of metrics.

    ``"identity"`` (or a given ``P``): one SDP, linear in the rate parameter.
    ``"diagonal"`` / ``"full"``: bisection on the rate between a lower bound (largest
    spectral abscissa, or log spectral radius per unit time, over sampled slopes of
    the sector: no quadratic metric can do better) and the verified identity-metric
    rate, each step a feasibility SDP minimizing the condition number of :math:`P`;
    every feasible point is re-verified (:func:`verify_lmi`) and lowers the upper end
    to its *verified* rate. With ``solver="descent"`` the smoothed exact value is
    minimized by L-BFGS with analytic gradients instead (module docstring).

    Parameters
    ----------
    condition : QuadraticCondition
    metric : {"identity", "diagonal", "full"}
    solver : {"auto", "clarabel", "scs", "descent"}
        ``"auto"``: Clarabel up to ``H = 16`` (identity) or ``12`` (diagonal, full),
        its bisection polished by the descent; the descent above (module docstring).
        Clarabel falls back to SCS on a solver error.
    tol : float
        Bisection stops when the bracket is below ``tol * (1 + |rate|)`` (per unit time).
    max_iter : int
        L-BFGS iterations per smoothing level (descent).
    P : Tensor, shape (H, H), optional
        A fixed metric: only the multipliers are optimized.

    Returns
    -------
    LMISolution
        ``verified`` False (and ``rate`` inf) when no solution passed verification.
    """
    if not isinstance(condition, QuadraticCondition):
        raise TypeError(f"condition: expected QuadraticCondition, got {type(condition).__name__}")
    metric = check_choice("metric", metric, METRICS)
    tol = check_positive("tol", tol)
    H = condition.hidden_size
    polish = solver == "auto"
    solver = _resolve_solver(solver, metric, H)
    lower = _lower_bound(condition)
    if P is not None:
        P = check_tensor("P", P).detach().to("cpu", F64)
        if P.shape != (H, H):
            raise ValueError(f"P: expected shape ({H}, {H}), got {tuple(P.shape)}")
        return _fixed(condition, P, "fixed", solver, lower, tol, max_iter)
    ident = _fixed(condition, torch.eye(H, dtype=F64), "identity", solver, lower, tol, max_iter)
    if metric == "identity":
        return ident
    if solver == "descent":
        return _descent_solution(condition, metric, ident, lower, tol, max_iter)
    sdp = _BisectionSDP(condition, metric)
    best = ident
    lo, hi = lower, ident.rate
    if not math.isfinite(lo):
        lo = hi - 10.0 * (1.0 + abs(hi))
    n = 0
    status = "no feasible bisection step"
    while math.isfinite(hi) and hi - lo > tol * (1.0 + abs(hi)) and n < 40:
        mid = 0.5 * (lo + hi)
        sol, st = sdp.solve(condition.r_from_rate(mid), solver)
        n += 1
        ver = None
        if sol is not None:
            ver, Pm, mm = _finalize(condition, *sol)
        if ver is None or not ver.holds:
            lo = mid  # infeasible, or the solver's point failed verification
            continue
        status = st
        if ver.rate < best.rate:
            best = _solution(condition, ver, Pm, mm, metric, solver, st, mid)
        hi = min(mid, ver.rate)
    if polish:
        # A solver failure near the boundary counts as infeasible above, which can stop
        # the bisection early: descend from its best point (never worse, re-verified).
        P1, m1 = _descent(condition, metric, best.P, best.multipliers, max_iter, tol=tol)
        ver, P1, m1 = _finalize(condition, P1, m1)
        if ver is not None and ver.holds and ver.rate < best.rate:
            how = f"{best.status}; descent polish"
            best = _solution(condition, ver, P1, m1, metric, f"{solver}+descent", how, ver.rate)
    if best is ident:
        return _replace(
            ident,
            metric=metric,
            status=f"identity kept ({status})",
            n_solves=n + ident.n_solves,
        )
    return _replace(best, lower_bound=lower, n_solves=n + ident.n_solves, tolerance=tol)


def _lyapunov_metric(cond: QuadraticCondition, diagonal: bool) -> Tensor | None:
    r"""P from a Lyapunov equation of the mid-sector linearization (a start for descent).

    Generator: :math:`K^\top P + PK = -I` for :math:`K = \alpha A + D_{mid}W - (a +
    \delta)I` (:math:`a` its spectral abscissa); map: :math:`J^\top PJ - P = -I` for
    :math:`J = J_{mid}/(\rho(J_{mid})(1 + \delta))`. Normalized to
    :math:`\lambda_{\min}(P) = 1`; its diagonal for the diagonal metric.
    """
    import scipy.linalg as sl

    H = cond.hidden_size
    mid = 0.5 * (cond.slope_lo + cond.slope_hi)
    K = (cond.aA + mid[:, None] * cond.W).numpy()
    try:
        if cond.form == "generator":
            a = float(np.linalg.eigvals(K).real.max())
            Kn = K - (a + 0.1 * (1.0 + abs(a))) * np.eye(H)
            P = sl.solve_continuous_lyapunov(Kn.T, -np.eye(H))
        else:
            s = cond.step if cond.step is not None else 0.5 * (cond.step_lo + cond.step_hi)
            J = np.eye(H) + s.numpy()[:, None] * K
            rho = float(np.abs(np.linalg.eigvals(J)).max())
            J = J / (max(rho, 1e-12) * 1.05)
            P = sl.solve_discrete_lyapunov(J.T, np.eye(H))
    except (np.linalg.LinAlgError, ValueError):
        return None
    P = 0.5 * (P + P.T)
    if diagonal:
        P = np.diag(np.diagonal(P))
    w = np.linalg.eigvalsh(P)
    if not (np.all(np.isfinite(w)) and w[0] > 0):
        return None
    return torch.as_tensor(P / w[0], dtype=F64)


def _descent_solution(cond, metric, ident: LMISolution, lower, tol, max_iter) -> LMISolution:
    """Best metric by descent from several starts; every candidate re-verified.

    Starts (the multipliers first optimized for the fixed start metric): the identity
    (with its solved multipliers), the Lyapunov metric of the mid-sector linearization
    (:func:`_lyapunov_metric`) and, for the full metric, the diagonal descent's result.
    The descent runs from the start of smallest exact value; the smallest verified rate
    of all candidates is returned (never worse than the identity metric).
    """
    value = _Value(cond)
    starts: list[tuple[str, Tensor, Tensor]] = [("identity", ident.P, ident.multipliers)]
    lyap = _lyapunov_metric(cond, diagonal=metric == "diagonal")
    if lyap is not None:
        m = _descent(cond, "identity", None, None, max_iter, fixed_P=lyap, tol=tol)[1]
        starts.append(("lyapunov", lyap, m))
    if metric == "full":
        diag = _descent_solution(cond, "diagonal", ident, lower, tol, max_iter)
        if diag.verified:
            starts.append(("diagonal", diag.P, diag.multipliers))

    def exact(P, m):
        out = value(P.numpy(), m.numpy(), None)
        return math.inf if out is None else out[1]  # scale-invariant in (P, m)

    name, P0, m0 = min(starts, key=lambda c: exact(c[1], c[2]))
    P1, m1 = _descent(cond, metric, P0, m0, max_iter, tol=tol)
    best = ident
    candidates = [(P1, m1, f"descent from the {name} start")]
    candidates += [(P, m, f"{n} start") for n, P, m in starts[1:]]
    for P, m, how in candidates:
        ver, Pn, mn = _finalize(cond, P, m)
        if ver is not None and ver.holds and ver.rate < best.rate:
            best = _solution(cond, ver, Pn, mn, metric, "descent", how, ver.rate)
    return _replace(best, metric=metric, lower_bound=lower, n_solves=len(starts) + 1, tolerance=tol)


def _replace(sol: LMISolution, **changes) -> LMISolution:
    import dataclasses

    return dataclasses.replace(sol, **changes)


def _solution(cond, ver, P, mult, metric, solver, status, solver_rate) -> LMISolution:
    w = torch.linalg.eigvalsh(0.5 * (P + P.mT))
    return LMISolution(
        verified=bool(ver is not None and ver.holds),
        rate=ver.rate if (ver is not None and ver.holds) else math.inf,
        P=P,
        multipliers=mult,
        metric=metric,
        solver=solver,
        status=status,
        solver_rate=solver_rate,
        lower_bound=-math.inf,
        verification=ver,
        condition_number=float(w[-1] / w[0]),
        n_solves=1,
        tolerance=0.0,
    )


def _fixed(cond, P, metric, solver, lower, tol, max_iter) -> LMISolution:
    """Best multipliers for a fixed P: one SDP, or descent over the multipliers."""
    status = "descent"
    sol = None
    if solver != "descent":
        sol, status = _solve_fixed_cvx(cond, P.numpy(), solver)
    if sol is None:
        Pd, md = _descent(cond, "identity", None, None, max_iter, fixed_P=P, tol=tol)
        sol = (Pd, md)
        status = status + "; descent" if solver != "descent" else "descent"
    ver, Pn, mult = _finalize(cond, *sol)
    if ver is None:
        ver = LMIVerification(False, math.inf, float("nan"), math.inf, math.inf)
    out = _solution(cond, ver, Pn, mult, metric, solver, status, math.nan)
    return _replace(out, lower_bound=lower, tolerance=tol)


# ============================================================================ certificates
_DIFF = (
    "bounds ||h_t - h'_t||_P for two trajectories driven by the same input and the same "
    "noise path; additive noise cancels in the difference"
)


def _sector_words(sec: SlopeSector) -> list[str]:
    words = [
        f"tanh slopes between the two trajectories lie in the sector [s_lo, s_hi] per unit "
        f"({sec.source}; min s_lo = {float(sec.lo.min()):.4g}, max s_hi = "
        f"{float(sec.hi.max()):.4g}), handled by the S-procedure with diagonal multipliers"
    ]
    if not sec.is_global:
        words.append(
            f"the sector holds for trajectories with {sec.input_set} (valid for "
            f"{sec.valid_for}); both trajectories must start in that initial set"
        )
    if sec.horizon is not None:
        words.append(f"the sector, hence the bound, covers the first {sec.horizon} steps only")
    return words


def _auto(noise: NoiseSpec | None) -> str:
    if noise is None or noise.is_zero:
        return "lmi_contraction"
    if noise.convention == "paper_code":
        return "lmi_discrete"
    if noise.multiplicative == 0:
        return "lmi_contraction"
    return f"lmi_almost_sure_{noise.structure}"


def check_stability_lmi(
    params: NRNNParams,
    noise: NoiseSpec | None = None,
    *,
    condition: str = "auto",
    metric: Metric = "full",
    sector: SlopeSector | ReachableSet | None = None,
    solver: Solver = "auto",
    tol: float = 1e-3,
) -> Certificate:
    r"""Certify exponential stability in the best quadratic metric (LMI, docs/theory/stability.md).

    Conditions (all bounds per unit time; :math:`s = \epsilon\sigma_2`):

    * ``"lmi_contraction"``: the ODE, :math:`\|\Delta_t\|_P \le e^{ct}\|\Delta_0\|_P`.
    * ``"lmi_discrete"``: the model's map (per-unit step of any sign; a
      ``"paper_code"`` random step), :math:`\|\Delta_{k+1}\|_P \le \rho\|\Delta_k\|_P`,
      bound :math:`\log\rho/\Delta t`.
    * ``"lmi_mean_square"``: the SDE, rate of :math:`(\mathbb E\|\Delta\|_P^2)^{1/2}`;
      noise only hurts (:math:`N(P) \succeq 0`).
    * ``"lmi_mean_square_discrete"``: the Euler-Maruyama chain, same in mean square.
    * ``"lmi_almost_sure_scalar"`` / ``"_diagonal"``: Mao's theorem (docs/theory/stability.md (b))
      with :math:`V = \Delta^\top P\Delta`, :math:`p = 2`, :math:`c_1 = \lambda_{\min}(P)`:
      :math:`\mathcal LV \le c_2V` with :math:`c_2 = 2c_{ms}`, the mean-square LMI rate
      in the same :math:`P`, and :math:`|V_xG|^2 \ge c_3V^2` with
      :math:`c_3 = 4s^2` (scalar: :math:`V_xG = 2s\,\Delta^\top P\Delta`) or
      :math:`4s^2/d_h` (diagonal: :math:`|V_xG|^2 = 4s^2\sum_i((P\Delta)_i\Delta_i)^2
      \ge 4s^2V^2/d_h` by Cauchy-Schwarz), so
      :math:`\limsup\frac1t\log|\Delta_t| \le -(c_3 - 2c_2)/4 = c_{ms} - s^2` (scalar,
      :math:`= c - s^2/2` since :math:`c_{ms} = c + s^2/2`) or :math:`c_{ms} - s^2/d_h`.

    Parameters
    ----------
    params : NRNNParams
    noise : NoiseSpec, optional
    condition : str
        One of :data:`LMI_CONDITIONS` (not the finite-horizon one) or ``"auto"``
        (contraction without multiplicative noise, the almost-sure condition of the
        structure with ``"sde"`` multiplicative noise, ``"lmi_discrete"`` for
        ``"paper_code"`` noise).
    metric : {"identity", "diagonal", "full"}
    sector : SlopeSector or ReachableSet, optional
        Default: the global sector [0, 1]. A reachable sector only for the clean
        dynamics (any noise widens the reachable set to everything); for the ODE it
        must come from an ODE-invariant box.
    solver : {"auto", "clarabel", "scs", "descent"}
    tol : float
        Bisection tolerance (:func:`solve_lmi`).

    Returns
    -------
    Certificate
        With ``metric``, ``metric_matrix`` :math:`P`, ``metric_condition_number``,
        ``solver_status`` and ``input_set``. ``holds`` needs the float64
        re-verification to pass and the bound to be negative.

    Examples
    --------
    >>> import torch
    >>> from nrnn_theory import NRNNParams
    >>> A = torch.tensor([[-1.0, 4.0], [0.0, -2.0]], dtype=torch.float64)
    >>> p = NRNNParams(A=A, W=torch.zeros(2, 2, dtype=torch.float64),
    ...     U=torch.zeros(2, 1, dtype=torch.float64), b=torch.zeros(2, dtype=torch.float64),
    ...     V=torch.eye(2, dtype=torch.float64), c=torch.zeros(2, dtype=torch.float64), dt=0.1)
    >>> euclid = check_stability_lmi(p, metric="identity")  # lambda_max(sym A) = 0.56
    >>> best = check_stability_lmi(p, metric="diagonal")  # spectral abscissa -1
    >>> euclid.holds, best.holds, round(euclid.bound, 2), round(best.bound, 1)
    (False, True, 0.56, -1.0)
    """
    params = check_params(params)
    noise = check_noise(noise)
    metric = check_choice("metric", metric, METRICS)
    names = tuple(c for c in LMI_CONDITIONS if c != "lmi_finite_horizon")
    condition = check_choice("condition", condition, ("auto", *names))
    if condition == "auto":
        condition = _auto(noise)
    H = params.hidden_size
    mult = 0.0 if noise is None else noise.multiplicative
    sde_mult = noise is not None and noise.convention == "sde" and mult > 0
    if condition in ("lmi_contraction", "lmi_discrete") and sde_mult:
        raise ValueError(
            f"condition: {condition!r} has no deterministic bound under multiplicative 'sde' "
            "noise; use 'lmi_mean_square', 'lmi_mean_square_discrete' or "
            f"'lmi_almost_sure_{noise.structure}', got multiplicative level {mult}"
        )
    if condition not in ("lmi_contraction", "lmi_discrete") and not sde_mult:
        raise ValueError(
            f"condition: {condition!r} needs multiplicative 'sde' noise, got {noise!r}; use "
            "'lmi_contraction' or 'lmi_discrete'"
        )
    if condition.startswith("lmi_almost_sure_") and H > 1:
        want = condition.removeprefix("lmi_almost_sure_")
        if noise.structure != want:
            raise ValueError(
                f"condition: {condition!r} needs {want} noise, got structure "
                f"{noise.structure!r}; use 'lmi_almost_sure_{noise.structure}'"
            )
    dynamics = "map" if condition in ("lmi_discrete", "lmi_mean_square_discrete") else "ode"
    sec = _sector_for(sector, H, dynamics)
    if not sec.is_global and noise is not None and not noise.is_zero:
        raise ValueError(
            "sector: a reachable-set sector holds for the clean dynamics only (noise has "
            f"unbounded support); pass sector=None with noise, got noise {noise!r}"
        )
    if dynamics == "ode" and sec.valid_for == "map":
        raise ValueError(
            "sector: this sector was computed for the discrete map; the ODE needs one from "
            "an ODE-invariant box (reachable_sector(..., dynamics='ode'))"
        )
    if condition == "lmi_almost_sure_scalar":
        # Deterministic rate c in the best metric, then c - s^2/2 (c_ms = c + s^2/2).
        cond = quadratic_condition(params, dynamics="ode", sector=sec, noise=None)
    else:
        cond = quadratic_condition(params, dynamics=dynamics, sector=sec, noise=noise)
    sol = solve_lmi(cond, metric=metric, solver=solver, tol=tol)
    return _certificate(params, noise, condition, sol, sec)


def _certificate(params, noise, condition, sol: LMISolution, sec: SlopeSector) -> Certificate:
    H = params.hidden_size
    s2 = 0.0 if noise is None or noise.convention != "sde" else noise.multiplicative**2
    q: dict[str, float] = {
        "lmi_rate": sol.rate,
        "lower_bound_any_metric": sol.lower_bound,
        "condition_number_P": sol.condition_number,
        "n_solves": float(sol.n_solves),
        "bisection_tolerance": sol.tolerance,
        "sector_lo_min": float(sec.lo.min()),
        "sector_hi_max": float(sec.hi.max()),
        "sector_mean_width": float((sec.hi - sec.lo).mean()),
        "hidden_size": float(H),
        "dt": float(params.dt),
        "alpha": float(params.alpha),
    }
    if sol.verification is not None:
        q["lmi_max_eigenvalue"] = sol.verification.max_eigenvalue
        q["verification_tolerance"] = sol.verification.tolerance
    assumptions = [_DIFF, *_sector_words(sec)]
    bound = sol.rate
    if condition == "lmi_contraction":
        assumptions.append("||Delta_t||_P <= exp(bound t) ||Delta_0||_P for the ODE dh = f dt")
        if params.step is not None:
            assumptions.append(
                "the per-unit step d of the model is not part of the ODE; 'lmi_discrete' "
                "covers the model with its step"
            )
    elif condition == "lmi_discrete":
        q["rho"] = math.exp(bound * params.dt) if math.isfinite(bound) else math.inf
        assumptions.append(
            "||Delta_{k+1}||_P <= rho ||Delta_k||_P at every step (per-unit step of any "
            "sign); bound = log(rho) / dt per unit time"
        )
        if noise is not None and noise.convention == "paper_code" and noise.multiplicative > 0:
            q["mult_noise_mu"] = noise.multiplicative
            assumptions.append(
                "'paper_code' multiplicative noise is a random step d*m, m in [1 - mu, 1] per "
                "unit, handled as a second sector with its own multipliers"
            )
    elif condition in ("lmi_mean_square", "lmi_mean_square_discrete"):
        q["multiplicative_level"] = math.sqrt(s2)
        assumptions.append(
            "bound is the growth rate of (E ||Delta||_P^2)^(1/2): E V_{k+1} <= rho^2 E V_k "
            "(chain) or d/dt E V <= 2 bound E V (SDE); multiplicative noise only adds "
            "s^2 N(P) >= 0"
        )
        if condition == "lmi_mean_square":
            assumptions.append(
                "a statement about the SDE; 'lmi_mean_square_discrete' is the Euler-Maruyama chain"
            )
    else:
        q["multiplicative_level"] = math.sqrt(s2)
        if condition == "lmi_almost_sure_scalar":
            c_det = sol.rate
            c2 = 2.0 * c_det + s2
            c3 = 4.0 * s2
            q["deterministic_rate"] = c_det
        else:
            c2 = 2.0 * sol.rate
            c3 = 4.0 * s2 / H
            q["mean_square_rate"] = sol.rate
        bound = -(c3 - 2.0 * c2) / 4.0 if math.isfinite(c2) else math.inf
        q.update({"mao_c1": 1.0, "mao_c2": c2, "mao_c3": c3, "mao_p": 2.0})
        assumptions += [
            "Mao's theorem with V = Delta^T P Delta >= lambda_min(P) |Delta|^2 (c1 = 1 after "
            "normalizing lambda_min(P) = 1, p = 2): LV <= c2 V and |V_x G|^2 >= c3 V^2 give "
            "limsup (1/t) log|Delta_t| <= -(c3 - 2 c2)/4 almost surely",
            "a statement about the SDE dh = f dt + eps sigma(h) dB; the Euler-Maruyama model "
            "agrees up to O(dt)",
        ]
    ver = sol.verification
    verified = sol.verified
    status = (
        f"{sol.solver} ({sol.status}); {sol.n_solves} solve(s), bisection tol "
        f"{sol.tolerance:g}; float64 re-verification "
        + (
            f"passed (max eigenvalue {ver.max_eigenvalue:.3g} <= -{ver.tolerance:.2g})"
            if verified
            else "FAILED: the certificate does not hold"
        )
    )
    return Certificate(
        holds=bool(verified and bound < 0.0),
        bound=bound if verified else math.inf,
        condition=condition,
        description=LMI_CONDITIONS[condition],
        one_sided=_S_PROCEDURE,
        quantities=q,
        assumptions=tuple(assumptions),
        noise=noise,
        convention=("clean" if noise is None or noise.is_zero else noise.convention),
        metric=sol.metric,
        metric_matrix=sol.P,
        metric_condition_number=sol.condition_number,
        solver_status=status,
        input_set=sec.input_set,
    )


# ============================================================================ minimal noise
def minimal_stabilizing_noise_lmi(
    params: NRNNParams,
    *,
    structure: Literal["scalar", "diagonal"] = "scalar",
    target_rate: float = 0.0,
    mode: Literal["almost_sure", "mean_square"] = "almost_sure",
    metric: Metric = "full",
    solver: Solver = "auto",
    max_level: float = 10.0,
    n_grid: int = 12,
) -> StabilizingNoise:
    r"""Smallest multiplicative ``"sde"`` noise certified to reach a rate, best metric.

    * ``"almost_sure"``, ``"scalar"``: :math:`c - s^2/2 \le \kappa` at
      :math:`s = \sqrt{2\max(c - \kappa, 0)}`, :math:`c` the deterministic LMI rate.
    * ``"almost_sure"``, ``"diagonal"``: :math:`c_{ms}(s) - s^2/d_h \le \kappa` with
      the mean-square LMI rate :math:`c_{ms}(s)`, searched on a grid of ``n_grid``
      levels up to ``max_level`` and refined by bisection; the level returned is
      itself certified, levels in between are not claimed.
    * ``"mean_square"``: noise never helps (docs/theory/stability.md (e)): for every :math:`P`,
      :math:`s^2N(P) \succeq 0`, so :math:`c_{ms}(s) \ge c_{ms}(0)`; the level is 0 if
      the noise-free rate is already below :math:`\kappa`, else none exists.

    Parameters
    ----------
    params : NRNNParams
    structure : {"scalar", "diagonal"}
        Structure of the multiplicative ``"sde"`` noise of level :math:`s =
        \epsilon\sigma_2`: one Brownian motion for all units, or one per unit.
    target_rate : float
        The exponent :math:`\kappa` to certify (0: plain stability).
    mode : {"almost_sure", "mean_square"}
        Almost-sure (metric Mao bound) or mean-square stability.
    metric : {"identity", "diagonal", "full"}
        Quadratic metric of the LMIs.
    solver : {"auto", "clarabel", "scs", "descent"}
        As in :func:`solve_lmi`.
    max_level : float
        Largest level searched (``"diagonal"`` only).
    n_grid : int
        Levels of the grid search (``"diagonal"`` only).

    Returns
    -------
    StabilizingNoise
        ``lambda_hat`` holds the deterministic LMI rate, ``one_sided`` the metric.
    """
    params = check_params(params)
    structure = check_choice("structure", structure, ("scalar", "diagonal"))
    mode = check_choice("mode", mode, ("almost_sure", "mean_square"))
    kappa = check_real("target_rate", target_rate)
    max_level = check_positive("max_level", max_level)
    H = params.hidden_size
    base = check_stability_lmi(params, metric=metric, solver=solver)
    c = base.bound
    label = f"lmi-{metric}"

    def out(exists, level, reason):
        return StabilizingNoise(
            exists=exists,
            level=level,
            structure=structure,
            target_rate=kappa,
            lambda_hat=c,
            one_sided=label,
            hidden_size=H,
            reason=reason,
        )

    if c < kappa:
        return out(True, 0.0, f"the LMI rate {c:.6g} is already below the target without noise")
    if mode == "mean_square":
        return out(
            False,
            math.inf,
            "mean-square: multiplicative noise adds s^2 N(P) >= 0 to LV for every metric P, "
            f"so no level brings the rate {c:.6g} below {kappa:g} (docs/theory/stability.md (e))",
        )
    if structure == "scalar" or H == 1:
        level = math.sqrt(2.0 * (c - kappa))
        return out(
            True,
            level,
            f"Mao with V = Delta^T P Delta: bound c - s^2/2 reaches {kappa:g} at s = {level:.6g}",
        )

    def bound_at(s: float) -> float:
        noise = NoiseSpec(sigma2=s, structure="diagonal")
        return check_stability_lmi(
            params, noise, condition="lmi_almost_sure_diagonal", metric=metric, solver=solver
        ).bound

    grid = [max_level * (i + 1) / n_grid for i in range(n_grid)]
    prev = 0.0
    for s in grid:
        if bound_at(s) <= kappa:
            lo, hi = prev, s
            for _ in range(6):
                mid = 0.5 * (lo + hi)
                lo, hi = (lo, mid) if bound_at(mid) <= kappa else (mid, hi)
            return out(
                True,
                hi,
                f"diagonal noise: c_ms(s) - s^2/H <= {kappa:g} certified at s = {hi:.6g} "
                "(grid search, levels between grid points not claimed)",
            )
        prev = s
    return out(
        False,
        math.inf,
        f"diagonal noise: no level on a grid up to {max_level:g} gives c_ms(s) - s^2/H <= "
        f"{kappa:g} (the 1/H gain does not beat the mean-square cost for H = {H})",
    )


# ============================================================================ finite horizon
def _horizon_descent(
    conds: list[QuadraticCondition],
    counts: list[int],
    P0: Tensor,
    mults0: list[Tensor],
    metric: str,
    tol: float,
    max_iter: int = 100,
) -> tuple[Tensor, list[Tensor]]:
    r"""Minimize :math:`\tfrac12\log\kappa(P) + \sum_g n_g\tfrac12\log r^\star_g(P, \lambda_g)`.

    The finite-horizon bound in one metric :math:`P` for every step (groups ``g`` of
    ``n_g`` steps sharing a sector), smoothed as in :func:`_descent` (each
    :math:`r^\star_g` by :class:`_Value`, :math:`\log\kappa` by soft maximum and minimum
    of :math:`\log\mathrm{eig}(P)`), by L-BFGS over :math:`P` (``"full"``:
    :math:`LL^\top`; ``"diagonal"``) and the log multipliers of every group. Returns
    the point of smallest smoothed value at the last stage (the caller re-verifies).
    """
    H = conds[0].hidden_size
    values = [_Value(c) for c in conds]
    tri = np.tril_indices(H)
    P_init = P0.numpy()
    if metric == "full":
        xP = np.linalg.cholesky(0.5 * (P_init + P_init.T))[tri]
    else:
        xP = np.log(np.diagonal(P_init).copy())
    nP = xP.size
    sizes = [c.n_multipliers for c in conds]
    x = np.concatenate([xP] + [np.log(np.clip(m.numpy(), 1e-300, None)) for m in mults0])
    dt = conds[0].dt

    def unpack(z):
        if metric == "full":
            L = np.zeros((H, H))
            L[tri] = z[:nP]
            return L @ L.T, L
        return np.diag(np.exp(z[:nP])), None

    best = [math.inf, x]

    def fg(z: np.ndarray, temp: float, tk: float):
        P, L = unpack(z)
        w, U = np.linalg.eigh(0.5 * (P + P.T))
        if not w[0] > 0:
            return math.inf, np.zeros_like(z)
        lw = np.log(w)
        pu = np.exp((lw - lw.max()) / tk)
        pu /= pu.sum()
        pl = np.exp(-(lw - lw.min()) / tk)
        pl /= pl.sum()
        f = 0.5 * (lw.max() + tk * math.log(np.exp((lw - lw.max()) / tk).sum()))
        f -= 0.5 * (lw.min() - tk * math.log(np.exp(-(lw - lw.min()) / tk).sum()))
        G = 0.5 * (U * ((pu - pl) / w)) @ U.T
        grads = []
        exact = 0.5 * (lw[-1] - lw[0])
        off = nP
        for v, n_g, m in zip(values, counts, sizes, strict=True):
            mult = np.exp(z[off : off + m])
            out = v(P, mult, temp)
            if out is None or not out[0] > 0 or not out[1] > 0:
                return math.inf, np.zeros_like(z)
            fv, r, Gg, gm = out
            f += 0.5 * n_g * math.log(fv)
            exact += 0.5 * n_g * math.log(r)
            G = G + (0.5 * n_g / fv) * Gg
            grads.append((0.5 * n_g / fv) * gm * mult)
            off += m
        if exact < best[0]:
            best[0], best[1] = exact, z.copy()
        if metric == "full":
            gP = (2.0 * G @ L)[tri]
        else:
            gP = np.diagonal(G) * np.exp(z[:nP])
        return f, np.concatenate([gP, *grads])

    # Temperatures: the smoothing bias of each log r is below tau log H / r; stop when
    # the total bias per unit time is a quarter of tol.
    T = sum(counts)
    tau_end = 0.25 * tol * 2.0 * T * dt / (T * math.log(H + 1))
    temp, tk = 1e-2, 1e-1
    while True:
        x = _lbfgs(lambda z, t=temp, k=tk: fg(z, t, k), x, max_iter, ftol=1e-3 * temp)
        if temp <= tau_end:
            break
        temp, tk = max(temp / 10.0, tau_end), max(tk / 10.0, 1e-3)
    P, _ = unpack(best[1])
    out, off = [], nP
    for m in sizes:
        out.append(torch.as_tensor(np.exp(best[1][off : off + m]), dtype=F64))
        off += m
    return torch.as_tensor(P, dtype=F64), out


def _step_groups(lo: Tensor, hi: Tensor, merge_tol: float) -> list[tuple[int, int]]:
    """Runs [k0, k1) of consecutive steps whose sectors stay within merge_tol of the first."""
    T = int(lo.shape[0])
    groups = []
    k0 = 0
    for k in range(1, T + 1):
        if (
            k == T
            or float(torch.maximum((lo[k] - lo[k0]).abs(), (hi[k] - hi[k0]).abs()).max())
            > merge_tol
        ):
            groups.append((k0, k))
            k0 = k
    return groups


def finite_horizon_certificate(
    params: NRNNParams,
    reach: ReachableSet | SlopeSector,
    *,
    metric: Metric = "full",
    solver: Solver = "auto",
    tol: float = 1e-3,
    merge_tol: float = 0.01,
) -> Certificate:
    r"""Certified bound on :math:`\|\partial h_T/\partial h_0\|_2` over an input set.

    With per-step sectors :math:`[s_{lo,k}, s_{hi,k}]` (the reachable set's), every
    tangent map :math:`\tilde J_k = I + S(\alpha A + D_kW)` along a trajectory from the
    initial set with inputs in the input set satisfies, for a metric :math:`P`,
    :math:`\|\tilde J_k\|_P \le \rho_k` (an LMI with :math:`P` fixed, per step), hence

    .. math:: \Big\|\frac{\partial h_T}{\partial h_0}\Big\|_2 \le \sqrt{\kappa(P)}
              \prod_{k<T}\rho_k,\qquad
              \lambda_T = \frac{1}{T\Delta t}\log\Big\|\frac{\partial h_T}{\partial h_0}
              \Big\|_2 \le \frac{\tfrac12\log\kappa(P) + \sum_k\log\rho_k}{T\Delta t}.

    :math:`P` is the metric of the discrete contraction LMI on the hull of the
    per-step sectors; the identity metric (:math:`\kappa = 1`) is tried too and the
    smaller bound kept. Every per-step factor is re-verified in float64.

    Parameters
    ----------
    params : NRNNParams
    reach : ReachableSet or per-step SlopeSector
        The reachable set over the input set, or per-step sectors (T, H).
    metric : {"identity", "diagonal", "full"}
    solver, tol
        As in :func:`solve_lmi`.
    merge_tol : float
        Consecutive steps whose sectors differ from the first of the run by at most
        this (per unit, both ends) share one LMI over the hull of their sectors (sound,
        a little looser; 0 solves one LMI per distinct step).

    Returns
    -------
    Certificate
        ``bound`` is the finite-time exponent bound (per unit time); ``quantities``
        holds ``norm_bound`` and ``log_norm_bound``; ``holds`` when every step
        verified and the bound is negative.
    """
    params = check_params(params)
    metric = check_choice("metric", metric, METRICS)
    merge_tol = check_nonnegative("merge_tol", merge_tol)
    H = params.hidden_size
    if isinstance(reach, ReachableSet):
        sec = reachable_sector(reach, dynamics="map", per_step=True)
    elif isinstance(reach, SlopeSector):
        sec = reach
        if not sec.per_step:
            raise ValueError("reach: expected a per-step SlopeSector (T, H) or a ReachableSet")
    else:
        raise TypeError(f"reach: expected ReachableSet or SlopeSector, got {type(reach).__name__}")
    if sec.lo.shape[-1] != H:
        raise ValueError(f"reach: expected {H} units, got {sec.lo.shape[-1]}")
    T = int(sec.lo.shape[0])
    hull = SlopeSector(
        lo=sec.lo.min(0).values,
        hi=sec.hi.max(0).values,
        source=sec.source + " (hull)",
        valid_for="map",
        horizon=T,
        input_set=sec.input_set,
    )
    candidates = [("identity", torch.eye(H, dtype=F64))]
    if metric != "identity":
        cond = quadratic_condition(params, dynamics="map", sector=hull)
        sol = solve_lmi(cond, metric=metric, solver=solver, tol=tol)
        if sol.verified:
            candidates.append((metric, sol.P))
    groups = _step_groups(sec.lo, sec.hi, merge_tol)
    conds = []
    for k0, k1 in groups:
        step_sec = SlopeSector(
            lo=sec.lo[k0:k1].min(0).values,
            hi=sec.hi[k0:k1].max(0).values,
            source=sec.source,
            valid_for="map",
            horizon=k1 - k0,
            input_set=sec.input_set,
        )
        conds.append(quadratic_condition(params, dynamics="map", sector=step_sec))
    resolved = _resolve_solver(solver, "identity", H)

    def per_step(P: Tensor):
        """Verified log rho of every group at P (multipliers optimized), and multipliers."""
        prev = None
        logs, mults = [], []
        for cond_k in conds:
            if resolved == "descent":
                # Neighbouring steps have close sectors: warm-start the multipliers.
                Pd, md = _descent(
                    cond_k, "identity", None, prev, 150, fixed_P=P, tol=tol, warm=prev is not None
                )
                ver, _, md = _finalize(cond_k, Pd, md)
                ok_k = ver is not None and ver.holds
                prev = md if ok_k else None
                logs.append(ver.rate * params.dt if ok_k else math.inf)
                mults.append(md)
            else:
                s_k = solve_lmi(cond_k, metric="identity", solver=solver, tol=tol, P=P)
                logs.append(s_k.rate * params.dt if s_k.verified else math.inf)
                mults.append(s_k.multipliers)
        return logs, mults

    def total(P: Tensor, logs: list[float]) -> tuple[float, float]:
        w = torch.linalg.eigvalsh(P)
        kappa = float(w[-1] / w[0])
        n = [k1 - k0 for k0, k1 in groups]
        ok = all(math.isfinite(v) for v in logs)
        log_norm = (
            0.5 * math.log(kappa) + sum(a * b for a, b in zip(n, logs, strict=True))
            if ok
            else math.inf
        )
        return log_norm, kappa

    best = None
    for name, P in candidates:
        logs, mults = per_step(P)
        log_norm, kappa = total(P, logs)
        if best is None or log_norm < best[1]:
            best = (name, log_norm, kappa, P, logs, mults)
    if metric != "identity" and math.isfinite(best[1]):
        # Minimize the bound itself, 1/2 log cond(P) + sum_k log rho_k(P), over P and
        # the per-step multipliers, from the best candidate; re-verified per step.
        P1, m1 = _horizon_descent(
            conds, [k1 - k0 for k0, k1 in groups], best[3], best[5], metric, tol
        )
        logs = []
        for cond_k, m_k in zip(conds, m1, strict=True):
            ver, _, _ = _finalize(cond_k, P1, m_k)
            logs.append(ver.rate * params.dt if ver is not None and ver.holds else math.inf)
        log_norm, kappa = total(P1, logs)
        if log_norm < best[1]:
            best = (f"{metric} (horizon-optimized)", log_norm, kappa, P1, logs, m1)
    name, log_norm, kappa, P, glogs, _ = best
    logs = []
    for (k0, k1), v in zip(groups, glogs, strict=True):
        logs += [v] * (k1 - k0)
    ok = all(math.isfinite(v) for v in logs)
    best = (name, log_norm, kappa, P, logs, ok)
    name, log_norm, kappa, P, logs, ok = best
    bound = log_norm / (T * params.dt)
    q = {
        "norm_bound": math.exp(log_norm) if log_norm < 700 else math.inf,
        "log_norm_bound": log_norm,
        "horizon": float(T),
        "condition_number_P": kappa,
        "mean_log_rho_per_step": (sum(logs) / T) if ok else math.inf,
        "n_step_lmis": float(len(groups)),
        "max_log_rho_per_step": max(logs),
        "dt": float(params.dt),
        "hidden_size": float(H),
    }
    assumptions = [
        "bounds ||dh_T/dh_0||_2 along every trajectory of the clean map from the initial "
        f"set with inputs in the input set ({sec.input_set}), T = {T}",
        *_sector_words(sec)[:1],
        "||J_k||_P <= rho_k per step (LMI with P fixed, re-verified in float64); "
        "||dh_T/dh_0||_2 <= sqrt(cond P) prod rho_k; bound = log of it / (T dt)",
    ]
    return Certificate(
        holds=bool(ok and bound < 0.0),
        bound=bound,
        condition="lmi_finite_horizon",
        description=LMI_CONDITIONS["lmi_finite_horizon"],
        one_sided=_S_PROCEDURE,
        quantities=q,
        assumptions=tuple(assumptions),
        noise=None,
        convention="clean",
        metric=name,
        metric_matrix=P,
        metric_condition_number=kappa,
        solver_status=(
            f"{_resolve_solver(solver, 'identity', H)} per step, every step re-verified in "
            "float64" + ("" if ok else "; some step FAILED verification")
        ),
        input_set=sec.input_set,
    )
