r"""Stability certificates, one-sided constants and stochastic stabilization
(docs/theory/stability.md).

Two trajectories :math:`h, h'` driven by the same input and the same noise path have
a difference :math:`\Delta = h - h'` with

.. math:: d\Delta = \big(\alpha A\Delta + D_t W\Delta\big)\,dt + (\text{multiplicative part})\,dB,

where :math:`D_t = \mathrm{diag}\big((\tanh z_i - \tanh z_i')/(z_i - z_i')\big)` has
entries in :math:`[0, L_a]`, :math:`L_a = 1` (additive noise cancels). Everything here
starts from a **one-sided constant**

.. math:: \hat\lambda \ge \sup_{D\in[0,L_a]^{d_h}}
          \lambda_{\max}\big(\mathrm{sym}(\alpha A + DW)\big),

so that :math:`\Delta^\top(f(h) - f(h')) \le \hat\lambda|\Delta|^2`, and turns it into
a certified exponent bound under one of the named conditions of docs/theory/stability.md:

==========================  =====================================================
condition                   certified bound on :math:`\limsup\frac1t\log|\Delta_t|`
==========================  =====================================================
``"contraction"`` (a)       :math:`\hat\lambda` (deterministic ODE)
``"discrete"`` (f)          :math:`\log\rho/\Delta t`, :math:`\rho\ge\|\tilde J_k\|_2`
``"almost_sure_scalar"``    :math:`\hat\lambda - \frac12\epsilon^2\sigma_2^2` (c)
``"almost_sure_diagonal"``  :math:`\hat\lambda + \epsilon^2\sigma_2^2(\frac12 - \frac1{d_h})` (d)
``"mean_square"`` (e)       :math:`\hat\lambda + \frac12\epsilon^2\sigma_2^2`, rate of
                            :math:`(\mathbb E|\Delta|^2)^{1/2}`
==========================  =====================================================

All certificates compute in float64 on the CPU whatever the model's dtype and
device, and record every quantity and assumption they used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from nrnn_theory._contract import (
    check_choice,
    check_noise,
    check_params,
    check_positive_int,
    check_real,
    check_xs,
    resolve_generator,
)
from nrnn_theory._linalg import sym
from nrnn_theory._record import Result
from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory.lyapunov import LyapunovSpectrum


__all__ = [
    "CONDITIONS",
    "EXACT_MAX_HIDDEN",
    "ONE_SIDED_METHODS",
    "Certificate",
    "StabilityReport",
    "StabilizingNoise",
    "StepCheck",
    "check_stability",
    "check_step",
    "format_stability_report",
    "minimal_stabilizing_noise",
    "one_sided_constant",
    "stability_report",
    "step_norm_bound",
]


# ---------------------------------------------------------------------- records
@dataclass(frozen=True)
class Certificate(Result):
    r"""A stability certificate (docs/theory/stability.md), computed in float64.

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
        The condition in words with its reference in ``docs/theory/``.
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
    metric : str or None
        Quadratic metric :math:`\|\Delta\|_P` of an LMI certificate
        (``"identity"``, ``"diagonal"``, ``"full"``); ``None`` for the norm-based ones.
    metric_matrix : Tensor, shape (H, H), or None
        The metric :math:`P \succ 0` (float64) in which the bound holds.
    metric_condition_number : float or None
        :math:`\kappa(P) = \lambda_{\max}(P)/\lambda_{\min}(P)`; Euclidean distances
        obey :math:`|\Delta_t| \le \sqrt{\kappa(P)}\,e^{\text{bound}\cdot t}|\Delta_0|`.
    solver_status : str or None
        Solver, its status and tolerances, and the float64 re-verification outcome.
    input_set : str or None
        The inputs (and initial states) the certificate holds for, in words.
    """

    holds: bool
    bound: float
    condition: str
    description: str
    one_sided: str
    quantities: dict[str, float]
    assumptions: tuple[str, ...]
    noise: NoiseSpec | None = None
    convention: str = "clean"
    dtype: str = "float64"
    metric: str | None = None
    metric_matrix: Tensor | None = None
    metric_condition_number: float | None = None
    solver_status: str | None = None
    input_set: str | None = None


@dataclass(frozen=True)
class StabilizingNoise(Result):
    r"""Smallest multiplicative noise level certified to reach a target rate.

    Theory: docs/theory/stability.md.

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
        :math:`\hat\lambda` by each method computed (docs/theory/stability.md).
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

    one_sided: dict[str, float]
    certificates: tuple[Certificate, ...]
    spectra: tuple[LyapunovSpectrum, ...]
    minimal_noise: tuple[StabilizingNoise, ...]
    hidden_size: int
    dt: float


OneSided = Literal["auto", "standard", "midpoint", "relaxation", "exact"]
Condition = Literal[
    "auto", "contraction", "discrete", "almost_sure_scalar", "almost_sure_diagonal", "mean_square"
]

#: Lipschitz constant of tanh, the activation of every NRNN here (docs/theory/model.md).
LIPSCHITZ_TANH = 1.0

#: Largest hidden size for which ``one_sided="exact"`` enumerates the 2^H vertices.
EXACT_MAX_HIDDEN = 16

#: ``one_sided="auto"`` uses ``"exact"`` up to this size and ``"relaxation"`` above.
_AUTO_EXACT_MAX = 12


# ============================================================================ float64 data
class _Model:
    """The float64 CPU quantities every certificate needs, computed once."""

    def __init__(self, params: NRNNParams) -> None:
        A = params.A.detach().to("cpu", torch.float64)
        self.W = params.W.detach().to("cpu", torch.float64)
        self.alpha = float(params.alpha)
        self.aA = self.alpha * A
        self.H = params.hidden_size
        self.dt = float(params.dt)
        self.L = LIPSCHITZ_TANH
        self.step = params.drift_step.detach().to("cpu", torch.float64)
        self.per_unit = params.step is not None
        self.S = sym(self.aA)
        self.lambda_sym_A = float(torch.linalg.eigvalsh(self.S)[-1])
        self.norm_W = float(torch.linalg.matrix_norm(self.W, ord=2))
        self.norm_A = float(torch.linalg.matrix_norm(self.aA, ord=2))
        self._lambda_hat: dict[str, float] = {}

    def lambda_hat(self, method: str) -> float:
        """The one-sided constant by ``method``, computed once per model (the
        relaxation solves an optimization problem; a report needs it several times)."""
        if method not in self._lambda_hat:
            self._lambda_hat[method] = _ONE_SIDED[method](self)
        return self._lambda_hat[method]

    def base_quantities(self) -> dict[str, float]:
        return {
            "lambda_max_sym_alphaA": self.lambda_sym_A,
            "norm_W": self.norm_W,
            "norm_alphaA": self.norm_A,
            "lipschitz_activation": self.L,
            "alpha": self.alpha,
            "hidden_size": float(self.H),
            "dt": self.dt,
        }


# ============================================================================ one-sided
def _standard(m: _Model) -> float:
    return m.lambda_sym_A + m.L * m.norm_W


def _midpoint(m: _Model) -> float:
    M = sym(m.aA + 0.5 * m.L * m.W)
    return float(torch.linalg.eigvalsh(M)[-1]) + 0.5 * m.L * m.norm_W


def _vertex_matrices(m: _Model, chunk: int) -> Sequence[Tensor]:
    """The vertex diagonals D in {0, L}^H, in chunks of rows (each (n, H))."""
    H = m.H
    out = []
    codes = torch.arange(2**H)
    bits = torch.arange(H)
    for part in codes.split(chunk):
        out.append(((part[:, None] >> bits) & 1).to(torch.float64) * m.L)
    return out


def _exact(m: _Model) -> float:
    if m.H > EXACT_MAX_HIDDEN:
        raise ValueError(
            f"one_sided: 'exact' enumerates the 2^H vertices D in {{0, L_a}}^H and is "
            f"limited to H <= {EXACT_MAX_HIDDEN}, got H = {m.H}; use 'relaxation' (sound "
            "and close to exact) or 'midpoint'"
        )
    best = -math.inf
    for D in _vertex_matrices(m, 4096):
        M = m.aA + D[:, :, None] * m.W
        best = max(best, float(torch.linalg.eigvalsh(sym(M))[:, -1].max()))
    return best


def _relaxation_parts(m: _Model, p: Tensor, delta: float):
    """(a, b, q, dq/db, db/dv) at parameters p = (log a, v), b = L/4 (1 + tanh v)."""
    H, L = m.H, m.L
    a = p[:H].exp()
    th = torch.tanh(p[H:])
    b = 0.25 * L * (1.0 + th)
    z = b - 0.25 * L
    # q = max(b^2, (L/2 - b)^2) = mean + (L/2)|b - L/4|; during the search |z| is
    # smoothed from above by sqrt(z^2 + delta^2), so q stays feasible.
    absz = torch.sqrt(z * z + delta * delta) if delta > 0 else z.abs()
    q = 0.5 * (b * b + (0.5 * L - b) ** 2) + 0.5 * L * absz
    dq = 2.0 * b - 0.5 * L + (0.5 * L * z / absz if delta > 0 else 0.5 * L * torch.sign(z))
    return a, b, q, dq, 0.25 * L * (1.0 - th * th)


def _relaxation_matrix(m: _Model, a: Tensor, b: Tensor, q: Tensor) -> Tensor:
    bW = (2.0 * b)[:, None] * m.W
    return m.S + torch.diag(a) + sym(bW) + (m.W.mT * (q / a)) @ m.W


def _relaxation_objective(m: _Model, p: Tensor, temperature: float, delta: float):
    """Log-sum-exp smoothing of lambda_max(M(a, b)) and its gradient in p (by hand).

    With P = V diag(softmax(w / T)) V^T = dF/dM:
    dF/da_i = P_ii - (q_i / a_i^2)(W P W^T)_ii, dF/db_i = 2 (W P)_ii + (q_i'/a_i)(W P W^T)_ii.
    """
    a, b, q, dq, db = _relaxation_parts(m, p, delta)
    w, V = torch.linalg.eigh(_relaxation_matrix(m, a, b, q))
    top = w[-1]
    e = torch.exp((w - top) / temperature)
    total = e.sum()
    value = top + temperature * torch.log(total)
    P = (V * (e / total)) @ V.mT
    WP = m.W @ P
    wpw = (WP * m.W).sum(dim=1)
    grad_a = (torch.diagonal(P) - wpw * q / (a * a)) * a
    grad_b = (2.0 * torch.diagonal(WP) + wpw * dq / a) * db
    return value, torch.cat([grad_a, grad_b])


def _lbfgs(
    fg: Callable[[Tensor], tuple[Tensor, Tensor]], p: Tensor, max_iter: int, memory: int = 10
) -> Tensor:
    """Minimize a smooth function by L-BFGS with Armijo backtracking (no bounds)."""
    f, g = fg(p)
    S: list[Tensor] = []
    Y: list[Tensor] = []
    for _ in range(max_iter):
        q = g.clone()
        coeffs = []
        for s, y in zip(reversed(S), reversed(Y), strict=True):
            rho = 1.0 / (y @ s)
            c = rho * (s @ q)
            q = q - c * y
            coeffs.append((rho, c, s, y))
        if S:
            q = q * ((S[-1] @ Y[-1]) / (Y[-1] @ Y[-1]))
        else:
            q = q * (0.1 / float(g.norm().clamp_min(1e-300)))
        for rho, c, s, y in reversed(coeffs):
            q = q + (c - rho * (y @ q)) * s
        d = -q
        slope = float(g @ d)
        if slope >= 0:  # not a descent direction: restart from steepest descent
            S.clear()
            Y.clear()
            d = -g
            slope = -float(g @ g)
        if slope == 0.0:
            break
        step = 1.0
        while True:
            p_new = p + step * d
            f_new, g_new = fg(p_new)
            if float(f_new) <= float(f) + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        if step < 1e-10:
            break
        s, y = p_new - p, g_new - g
        if float(s @ y) > 1e-12 * float(y @ y):
            S.append(s)
            Y.append(y)
            del S[:-memory], Y[:-memory]
        done = float(f) - float(f_new) <= 1e-12 * max(1.0, abs(float(f)))
        p, f, g = p_new, f_new, g_new
        if done:
            break
    return p


def _relaxation(m: _Model, max_iter: int = 300) -> float:
    H, L = m.H, m.L
    mid = _midpoint(m)
    if m.norm_W == 0.0:
        return m.lambda_sym_A
    scale = float(torch.linalg.matrix_norm(m.S, ord=2)) + L * m.norm_W
    # Start at a = (L/4)||W||, b = L/4, where the bound is already <= the midpoint one.
    p = torch.cat(
        [
            torch.full((H,), math.log(0.25 * L * m.norm_W), dtype=torch.float64),
            torch.zeros(H, dtype=torch.float64),
        ]
    )
    for rel in (1e-1, 1e-2, 1e-3):
        p = _lbfgs(
            lambda x, rel=rel: _relaxation_objective(m, x, rel * scale, rel * L), p, max_iter
        )
    a, b, q, _, _ = _relaxation_parts(m, p, 0.0)
    value = float(torch.linalg.eigvalsh(_relaxation_matrix(m, a, b, q))[-1])
    return min(value, mid)


_ONE_SIDED: dict[str, Callable[[_Model], float]] = {
    "standard": _standard,
    "midpoint": _midpoint,
    "relaxation": _relaxation,
    "exact": _exact,
}
#: Methods accepted by ``one_sided=`` (``"auto"``: exact for H <= 12, else relaxation).
ONE_SIDED_METHODS: tuple[str, ...] = ("auto", *_ONE_SIDED)


def _resolve_one_sided(method: object, H: int) -> str:
    method = check_choice("one_sided", method, ONE_SIDED_METHODS)
    if method == "auto":
        return "exact" if H <= _AUTO_EXACT_MAX else "relaxation"
    return method


def one_sided_constant(params: NRNNParams, method: OneSided = "auto") -> float:
    r"""A sound one-sided Lipschitz constant :math:`\hat\lambda` of the drift.

    Theory: docs/theory/stability.md.

    Every method returns an upper bound on

    .. math:: \lambda^\star = \max_{D\in\{0,L_a\}^{d_h}}
              \lambda_{\max}\big(\mathrm{sym}(\alpha A + DW)\big)
              = \sup_{D\in[0,L_a]^{d_h}}\lambda_{\max}\big(\mathrm{sym}(\alpha A + DW)\big),

    so that :math:`\Delta^\top(f(h,x) - f(h',x)) \le \hat\lambda|\Delta|^2` for all
    states and inputs; in order of decreasing value:

    * ``"standard"``: :math:`\lambda_{\max}(\mathrm{sym}\,\alpha A) + L_a\|W\|_2`;
    * ``"midpoint"``: :math:`\lambda_{\max}(\mathrm{sym}(\alpha A + \tfrac{L_a}2W)) +
      \tfrac{L_a}2\|W\|_2`;
    * ``"relaxation"``: a quadratic (S-procedure) relaxation, never above the
      midpoint value and in practice within a few percent of the exact one (Notes);
    * ``"exact"``: the maximum over the :math:`2^{d_h}` vertices (the supremum is a
      convex function of :math:`D`, so vertices suffice); only for
      ``H <= EXACT_MAX_HIDDEN``.

    Parameters
    ----------
    params : NRNNParams
    method : {"auto", "standard", "midpoint", "relaxation", "exact"}
        ``"auto"`` is ``"exact"`` for ``H <= 12`` and ``"relaxation"`` above.

    Returns
    -------
    float
        Computed in float64.

    Raises
    ------
    ValueError
        For ``"exact"`` above ``EXACT_MAX_HIDDEN`` hidden units, or an unknown method.

    Notes
    -----
    **Relaxation and its soundness.** For a unit vector :math:`x`, write
    :math:`y = Wx`. For any admissible :math:`D`,

    .. math:: x^\top\mathrm{sym}(\alpha A + DW)x = x^\top S x + \sum_i d_i x_i y_i
              \le x^\top S x + L_a\sum_i\max(0, x_iy_i),\qquad S = \mathrm{sym}(\alpha A).

    Take per unit :math:`a_i > 0`, :math:`b_i\in[0, L_a/2]` and
    :math:`c_i = \max(b_i^2, (L_a/2 - b_i)^2)/a_i`. Then both 2x2 matrices
    :math:`\begin{pmatrix}a_i & b_i\\ b_i & c_i\end{pmatrix}` and
    :math:`\begin{pmatrix}a_i & b_i - L_a/2\\ b_i - L_a/2 & c_i\end{pmatrix}` are
    positive semidefinite (their determinants are :math:`a_ic_i - b_i^2 \ge 0` and
    :math:`a_ic_i - (L_a/2 - b_i)^2 \ge 0`), i.e. the quadratic form
    :math:`q_i(x_i, y_i) = a_ix_i^2 + 2b_ix_iy_i + c_iy_i^2` satisfies
    :math:`q_i \ge 0` and :math:`q_i \ge L_a x_iy_i`, hence
    :math:`q_i \ge L_a\max(0, x_iy_i)`. Summing over :math:`i`,

    .. math:: x^\top\mathrm{sym}(\alpha A + DW)x \le x^\top\big(S + \mathrm{diag}(a)
              + \mathrm{sym}(2\,\mathrm{diag}(b)W) + W^\top\mathrm{diag}(c)W\big)x
              \le \lambda_{\max}(M(a, b)),

    so :math:`\lambda_{\max}(M(a, b))` is a sound :math:`\hat\lambda` for **every**
    feasible :math:`(a, b)`; the optimizer only has to find a good one, never a
    certified optimum. The function is convex in :math:`(a, b)` (each
    :math:`c_i` is jointly convex, :math:`\lambda_{\max}` is convex and monotone),
    and at :math:`a_i = L_a\|W\|_2/4`, :math:`b_i = L_a/4` it is at most the
    midpoint value because :math:`\tfrac{L_a}4(\|W\|_2I + W^\top W/\|W\|_2) \preceq
    \tfrac{L_a}2\|W\|_2 I`. The search minimizes a log-sum-exp smoothing of
    :math:`\lambda_{\max}` (temperatures :math:`10^{-1}, 10^{-2}, 10^{-3}` of
    :math:`\|S\|_2 + L_a\|W\|_2`) by L-BFGS in :math:`(\log a, \operatorname{artanh}
    (4b/L_a - 1))`; the value returned is the exact largest eigenvalue at the final
    point (in float64), and never more than the midpoint value. Cost: a few hundred
    symmetric eigendecompositions of size :math:`d_h`.

    Examples
    --------
    >>> import torch
    >>> from nrnn_theory import NRNNParams
    >>> H = 3
    >>> g = torch.Generator().manual_seed(0)
    >>> p = NRNNParams(A=torch.randn(H, H, generator=g, dtype=torch.float64),
    ...     W=torch.randn(H, H, generator=g, dtype=torch.float64),
    ...     U=torch.zeros(H, 1, dtype=torch.float64), b=torch.zeros(H, dtype=torch.float64),
    ...     V=torch.eye(H, dtype=torch.float64), c=torch.zeros(H, dtype=torch.float64), dt=0.1)
    >>> vals = [one_sided_constant(p, m) for m in ("standard", "midpoint", "exact")]
    >>> vals == sorted(vals, reverse=True)
    True
    """
    params = check_params(params)
    check_choice("method", method, ONE_SIDED_METHODS)
    m = _Model(params)
    return _ONE_SIDED[_resolve_one_sided(method, m.H)](m)


# ============================================================================ discrete map
def _step_range(m: _Model, noise: NoiseSpec | None) -> tuple[float, float]:
    """Range of the entries of the effective step s_eff = d * m_k (any sign of d)."""
    lo = float(m.step.min())
    hi = float(m.step.max())
    if noise is not None and noise.convention == "paper_code":
        shrink = 1.0 - noise.multiplicative  # m_k in [1 - mu, 1]
        lo, hi = min(lo, lo * shrink), max(hi, hi * shrink)
    return lo, hi


def _rho(m: _Model, lam: float, noise: NoiseSpec | None, exact: bool) -> dict[str, float]:
    lo, hi = _step_range(m, noise)
    d = 0.5 * (lo + hi)
    half = 0.5 * (hi - lo)
    kappa = m.norm_A + m.L * m.norm_W
    eye = torch.eye(m.H, dtype=torch.float64)
    rho_norm = float(torch.linalg.matrix_norm(eye + d * m.aA, ord=2)) + abs(d) * m.L * m.norm_W
    # 2 d x^T K x <= 2 d lambda_hat needs d >= 0 (a trained per-unit step can be negative).
    rho_one_sided = (
        math.sqrt(max(0.0, 1.0 + 2.0 * d * lam + (d * kappa) ** 2)) if d >= 0 else math.inf
    )
    rho = min(rho_norm, rho_one_sided) + half * kappa
    out = {
        "rho": rho,
        "rho_norm": rho_norm,
        "rho_one_sided": rho_one_sided,
        "step_mean": d,
        "step_half_range": half,
        "kappa": kappa,
    }
    random_step = (
        noise is not None and noise.convention == "paper_code" and noise.multiplicative > 0
    )
    if exact and not random_step and m.H <= EXACT_MAX_HIDDEN:
        # sup_D ||I + diag(s)(aA + DW)||_2 is convex in D: attained at a vertex.
        best = 0.0
        s = m.step[:, None]
        for D in _vertex_matrices(m, 2048):
            J = eye + s * (m.aA + D[:, :, None] * m.W)
            best = max(best, float(torch.linalg.matrix_norm(J, ord=2).max()))
        out["rho_vertex"] = best
        out["rho"] = min(rho, best)
    return out


def step_norm_bound(
    params: NRNNParams, *, one_sided: OneSided = "midpoint", noise: NoiseSpec | None = None
) -> float:
    r"""A bound :math:`\rho \ge \|\tilde J_k\|_2` on every clean step Jacobian.

    Theory: docs/theory/stability.md (f).

    For the Euler step with :math:`K = \alpha A + DW`, :math:`D\in[0, L_a]^{d_h}`,

    .. math:: \|I + \Delta t K\|_2 \le \min\Big\{\|I + \Delta t\alpha A\|_2
              + \Delta t L_a\|W\|_2,\ \big(1 + 2\Delta t\hat\lambda + \Delta t^2
              (\|\alpha A\|_2 + L_a\|W\|_2)^2\big)^{1/2}\Big\},

    and with a per-unit step :math:`d` the bound at :math:`\bar d = \frac12(\max d +
    \min d)` plus :math:`\frac12(\max d - \min d)(\|\alpha A\|_2 + L_a\|W\|_2)`
    (the first form with :math:`|\bar d|`, the second only for :math:`\bar d \ge 0`:
    a trained step may turn negative). It
    holds along every trajectory, for every input, so it bounds
    :math:`|h_{k+1} - h'_{k+1}| \le \rho|h_k - h'_k|` and the sensitivity
    :math:`\|\partial h_M/\partial h_k\|_2 \le \rho^{M-k}` used by the global margin
    bound of docs/theory/margins.md.

    Parameters
    ----------
    params : NRNNParams
    one_sided : {"midpoint", "standard", "relaxation", "exact", "auto"}
        Method of the one-sided constant :math:`\hat\lambda` in the second bound
        (:func:`one_sided_constant`). With ``"exact"`` (small ``H``) the exact vertex
        maximum of :math:`\|I + \mathrm{diag}(d)K\|_2` is used as well.
    noise : NoiseSpec, optional
        Additive noise cancels in differences and changes nothing; ``"paper_code"``
        noise widens the step range to :math:`[(1-\mu)\min d, \max d]` (the random
        factor :math:`m_k\in[1-\mu, 1]`). Multiplicative ``"sde"`` noise has no
        deterministic bound and is refused.

    Returns
    -------
    float
        :math:`\rho`, computed in float64; :math:`\rho < 1` certifies contraction of
        the discrete map.

    Examples
    --------
    >>> import torch
    >>> from nrnn_theory import NRNNParams
    >>> p = NRNNParams(A=-torch.eye(2), W=torch.zeros(2, 2), U=torch.zeros(2, 1),
    ...                b=torch.zeros(2), V=torch.eye(2), c=torch.zeros(2), dt=0.1)
    >>> round(step_norm_bound(p), 6)
    0.9
    """
    params = check_params(params)
    noise = _check_discrete_noise(check_noise(noise))
    return step_norm_terms(params, one_sided, noise)["rho"]


def step_norm_terms(
    params: NRNNParams, one_sided: OneSided, noise: NoiseSpec | None
) -> dict[str, float]:
    """:func:`step_norm_bound` with every candidate form and quantity (checked inputs).

    Keys: ``rho`` and those of :func:`_rho`, plus ``lambda_hat`` (the one-sided constant
    of the method ``one_sided`` resolves to). Package-internal (not in ``__all__``):
    used by :func:`nrnn_theory.margins.certified_margin`.
    """
    m = _Model(params)
    method = _resolve_one_sided(one_sided, m.H)
    lam = _ONE_SIDED[method](m)
    return {**_rho(m, lam, noise, method == "exact"), "lambda_hat": lam}


def _check_discrete_noise(noise: NoiseSpec | None) -> NoiseSpec | None:
    if noise is not None and noise.convention == "sde" and noise.multiplicative > 0:
        raise ValueError(
            "noise: the discrete-map bound (docs/theory/stability.md (f)) needs a deterministic "
            "step norm, but multiplicative 'sde' noise adds an unbounded Gaussian term to the "
            "tangent map; use condition 'almost_sure_scalar' / 'almost_sure_diagonal' for "
            f"the SDE, or measure the frozen-noise exponent, got {noise!r}"
        )
    return noise


# ============================================================================ certificates
_DESCRIPTIONS = {
    "contraction": "deterministic contraction of the ODE (docs/theory/stability.md (a))",
    "discrete": "contraction of the discrete map (docs/theory/stability.md (f))",
    "almost_sure_scalar": (
        "almost-sure exponential stability, scalar multiplicative noise "
        "(stochastic stabilization; docs/theory/stability.md (b)-(c))"
    ),
    "almost_sure_diagonal": (
        "almost-sure exponential stability, diagonal multiplicative noise "
        "(docs/theory/stability.md (b),(d))"
    ),
    "mean_square": "mean-square exponential stability (docs/theory/stability.md (e))",
}
#: Named conditions and their descriptions (``"auto"`` picks one from the noise).
CONDITIONS: dict[str, str] = dict(_DESCRIPTIONS)

_DIFF = (
    "bounds |h_t - h'_t| for two trajectories driven by the same input "
    "(and the same noise path); additive noise cancels in the difference"
)
_ONE_SIDED_WORDS = (
    "Delta^T (f(h, x) - f(h', x)) <= lambda_hat |Delta|^2 with lambda_hat >= "
    "sup_D lambda_max(sym(alpha A + D W)), D diagonal in [0, L_a], L_a = 1 (tanh)"
)
_SDE_WORDS = (
    "a statement about the SDE dh = f dt + eps sigma(h) dB; the Euler-Maruyama model "
    "agrees up to O(dt) (check with lyapunov_spectrum along a frozen noise path)"
)


def _auto_condition(noise: NoiseSpec | None) -> str:
    if noise is None or noise.is_zero:
        return "contraction"
    if noise.convention == "paper_code":
        return "discrete"
    if noise.multiplicative == 0:
        return "contraction"
    return "almost_sure_scalar" if noise.structure == "scalar" else "almost_sure_diagonal"


def _check_condition_noise(condition: str, noise: NoiseSpec | None, H: int) -> None:
    mult = 0.0 if noise is None else noise.multiplicative
    if condition == "discrete":
        _check_discrete_noise(noise)
        return
    if noise is not None and noise.convention == "paper_code" and not noise.is_zero:
        raise ValueError(
            f"condition: {condition!r} is a statement about the SDE (convention 'sde'); "
            "'paper_code' noise rescales the step and cannot change the sign of exponents "
            "(docs/theory/conventions.md), use condition 'discrete', got a 'paper_code' noise"
        )
    if condition == "contraction" and mult > 0:
        raise ValueError(
            "condition: 'contraction' is the deterministic condition (a) and ignores "
            "multiplicative noise; use 'almost_sure_scalar', 'almost_sure_diagonal' or "
            f"'mean_square', or noise=None, got multiplicative level {mult}"
        )
    if mult > 0 and H > 1:
        structure = noise.structure
        if condition == "almost_sure_scalar" and structure != "scalar":
            raise ValueError(
                "condition: 'almost_sure_scalar' needs scalar multiplicative noise; got "
                f"structure {structure!r}, use 'almost_sure_diagonal'"
            )
        if condition == "almost_sure_diagonal" and structure != "diagonal":
            raise ValueError(
                "condition: 'almost_sure_diagonal' needs diagonal multiplicative noise; got "
                f"structure {structure!r}, use 'almost_sure_scalar'"
            )


def _continuous_assumptions(m: _Model) -> list[str]:
    out = [_DIFF, _ONE_SIDED_WORDS]
    if m.per_unit:
        out.append(
            "the per-unit step d of the model is not part of the SDE; condition "
            "'discrete' covers the model with its step"
        )
    return out


def _certify(m: _Model, noise: NoiseSpec | None, condition: str, method: str) -> Certificate:
    lam = m.lambda_hat(method)
    q = m.base_quantities()
    q["lambda_hat"] = lam
    eps = 0.0 if noise is None else noise.epsilon
    sigma2 = 0.0 if noise is None else noise.sigma2
    s2 = (eps * sigma2) ** 2 if noise is not None and noise.convention == "sde" else 0.0
    convention = "clean" if noise is None or noise.is_zero else noise.convention

    def certificate(holds: bool, bound: float, assumptions: list[str]) -> Certificate:
        return Certificate(
            holds=holds,
            bound=bound,
            condition=condition,
            description=_DESCRIPTIONS[condition],
            one_sided=method,
            quantities=q,
            assumptions=tuple(assumptions),
            noise=noise,
            convention=convention,
        )

    if condition == "discrete":
        r = _rho(m, lam, noise, method == "exact")
        q.update(r)
        if noise is not None and noise.convention == "paper_code":
            q["mult_noise_mu"] = noise.multiplicative
        rho = r["rho"]
        bound = math.log(rho) / m.dt if rho > 0 else -math.inf
        assumptions = [
            _DIFF,
            _ONE_SIDED_WORDS,
            "|h_{k+1} - h'_{k+1}| <= rho |h_k - h'_k| at every step, for every input; "
            "bound = log(rho) / dt per unit time",
        ]
        if noise is not None and noise.convention == "paper_code":
            assumptions.append(
                "'paper_code' multiplicative noise only rescales the step: d*m_k with "
                "m_k in [1 - mu, 1], covered by the per-unit step bound"
            )
        return certificate(rho < 1.0, bound, assumptions)
    q["epsilon"] = eps
    q["sigma2"] = sigma2
    q["multiplicative_level"] = math.sqrt(s2)
    assumptions = _continuous_assumptions(m)
    if condition == "contraction":
        bound = lam
        assumptions.append("|Delta_t| <= exp(lambda_hat t) |Delta_0| for the ODE dh = f dt")
    elif condition in ("almost_sure_scalar", "almost_sure_diagonal"):
        if condition == "almost_sure_scalar":
            bound = lam - 0.5 * s2
            c3 = 4.0 * s2
        else:
            q["dimension_term"] = 0.5 - 1.0 / m.H
            bound = lam + s2 * (0.5 - 1.0 / m.H)
            c3 = 4.0 * s2 / m.H
        c2 = 2.0 * lam + s2
        q.update({"mao_c2": c2, "mao_c3": c3, "mao_p": 2.0})
        assumptions += [
            "Mao's theorem with V = |Delta|^2, p = 2: LV <= c2 V and |V_x G|^2 >= c3 V^2 "
            "give limsup (1/t) log|Delta_t| <= -(c3 - 2 c2)/4 almost surely",
            _SDE_WORDS,
        ]
    else:  # mean_square
        bound = lam + 0.5 * s2
        q["mean_square_rate"] = 2.0 * lam + s2
        assumptions += [
            "d/dt E|Delta|^2 <= (2 lambda_hat + eps^2 sigma2^2) E|Delta|^2; bound is the "
            "rate of (E|Delta|^2)^(1/2). Multiplicative noise only hurts in mean square",
            _SDE_WORDS,
        ]
    return certificate(bound < 0.0, bound, assumptions)


def check_stability(
    params: NRNNParams,
    noise: NoiseSpec | None = None,
    *,
    condition: Condition = "auto",
    one_sided: OneSided = "auto",
) -> Certificate:
    r"""Certify exponential stability of an NRNN under a named condition (docs/theory/stability.md).

    Parameters
    ----------
    params : NRNNParams
    noise : NoiseSpec, optional
        The noise the certificate is about. Additive noise cancels in differences.
    condition : str
        ``"contraction"`` (a): the deterministic ODE, bound :math:`\hat\lambda`.
        ``"discrete"`` (f): the model's own map (per-unit step and ``"paper_code"``
        noise included), bound :math:`\log\rho/\Delta t` with ``rho`` from
        :func:`step_norm_bound`.
        ``"almost_sure_scalar"`` (c): scalar multiplicative noise, bound
        :math:`\hat\lambda - \frac12\epsilon^2\sigma_2^2`, negative once
        :math:`\epsilon^2\sigma_2^2 > 2\hat\lambda` even if :math:`\hat\lambda > 0`
        (stochastic stabilization).
        ``"almost_sure_diagonal"`` (d): diagonal multiplicative noise, bound
        :math:`\hat\lambda + \epsilon^2\sigma_2^2(\frac12 - \frac1{d_h})`, weaker
        than the deterministic one for :math:`d_h\ge 3`.
        ``"mean_square"`` (e): rate :math:`\hat\lambda + \frac12\epsilon^2\sigma_2^2`
        of :math:`(\mathbb E|\Delta|^2)^{1/2}`; noise only hurts.
        ``"auto"`` (default): ``"contraction"`` without multiplicative noise,
        the almost-sure condition matching the structure with ``"sde"``
        multiplicative noise, ``"discrete"`` for ``"paper_code"`` noise.
    one_sided : {"auto", "standard", "midpoint", "relaxation", "exact"}
        Method for :math:`\hat\lambda` (:func:`one_sided_constant`).

    Returns
    -------
    Certificate
        ``holds``, the certified ``bound`` (per unit time; negative means
        exponentially stable), the condition, every quantity entering it and the
        assumptions in words. Computed in float64 whatever the model's dtype.

    Raises
    ------
    ValueError
        If the condition does not apply to the noise (e.g. ``"almost_sure_scalar"``
        with diagonal noise, ``"discrete"`` with multiplicative ``"sde"`` noise).

    Examples
    --------
    >>> import torch
    >>> from nrnn_theory import NoiseSpec, NRNNParams
    >>> H = 4
    >>> p = NRNNParams(A=0.5 * torch.eye(H), W=torch.zeros(H, H), U=torch.zeros(H, 1),
    ...                b=torch.zeros(H), V=torch.eye(H), c=torch.zeros(H), dt=0.01)
    >>> check_stability(p).holds  # lambda_hat = 0.5 > 0
    False
    >>> cert = check_stability(p, NoiseSpec(sigma2=1.5, structure="scalar"))
    >>> cert.condition, cert.holds, round(cert.bound, 3)  # 0.5 - 1.5**2 / 2
    ('almost_sure_scalar', True, -0.625)
    """
    params = check_params(params)
    noise = check_noise(noise)
    condition = check_choice("condition", condition, ("auto", *CONDITIONS))
    m = _Model(params)
    method = _resolve_one_sided(one_sided, m.H)
    if condition == "auto":
        condition = _auto_condition(noise)
    _check_condition_noise(condition, noise, m.H)
    return _certify(m, noise, condition, method)


# ============================================================================ minimal noise
def minimal_stabilizing_noise(
    params: NRNNParams,
    *,
    structure: Literal["scalar", "diagonal"] = "scalar",
    target_rate: float = 0.0,
    one_sided: OneSided = "auto",
) -> StabilizingNoise:
    r"""Smallest multiplicative ``"sde"`` noise level certified to reach a rate.

    Theory: docs/theory/stability.md.

    ``"scalar"`` (c): :math:`\hat\lambda - \frac12 s^2 \le \kappa` for
    :math:`s = \epsilon\sigma_2 \ge \sqrt{2\max(\hat\lambda - \kappa, 0)}`.
    ``"diagonal"`` (d): :math:`\hat\lambda + s^2(\frac12 - \frac1{d_h}) \le \kappa`,
    which noise can only help for :math:`d_h = 1`; for :math:`d_h \ge 2` no level
    certifies :math:`\kappa` unless :math:`\hat\lambda \le \kappa` already.

    Parameters
    ----------
    params : NRNNParams
    structure : {"scalar", "diagonal"}
    target_rate : float
        The exponent :math:`\kappa` to certify; ``0`` for almost-sure stability
        (levels strictly above the returned one give a negative bound).
    one_sided : {"auto", "standard", "midpoint", "relaxation", "exact"}

    Returns
    -------
    StabilizingNoise
        ``level`` is :math:`\epsilon\sigma_2` (``inf`` when none exists), with the
        reason in words.

    Examples
    --------
    >>> import torch
    >>> from nrnn_theory import NRNNParams
    >>> p = NRNNParams(A=0.5 * torch.eye(3), W=torch.zeros(3, 3), U=torch.zeros(3, 1),
    ...                b=torch.zeros(3), V=torch.eye(3), c=torch.zeros(3), dt=0.01)
    >>> minimal_stabilizing_noise(p).level  # sqrt(2 * 0.5)
    1.0
    >>> minimal_stabilizing_noise(p, structure="diagonal").exists
    False
    """
    params = check_params(params)
    structure = check_choice("structure", structure, ("scalar", "diagonal"))
    kappa = check_real("target_rate", target_rate)
    return _minimal(
        _Model(params), structure, kappa, _resolve_one_sided(one_sided, params.hidden_size)
    )


def _minimal(m: _Model, structure: str, kappa: float, method: str) -> StabilizingNoise:
    lam = m.lambda_hat(method)
    gap = lam - kappa
    coef = -0.5 if structure == "scalar" else (0.5 - 1.0 / m.H)
    if gap < 0:
        level, exists = 0.0, True
        reason = f"lambda_hat = {lam:.6g} is already below the target rate without noise"
    elif coef < 0:
        level, exists = math.sqrt(gap / -coef), True
        reason = (
            f"bound lambda_hat - {-coef:g} s^2 reaches {kappa:g} at s = eps*sigma2 = "
            f"{math.sqrt(gap / -coef):.6g}"
        )
    else:
        level, exists = math.inf, False
        reason = (
            f"diagonal noise adds s^2 (1/2 - 1/H) = s^2 * {coef:.4g} >= 0 to the bound for "
            f"H = {m.H}: no level certifies {kappa:g} when lambda_hat = {lam:.6g} >= it"
        )
    return StabilizingNoise(
        exists=exists,
        level=level,
        structure=structure,
        target_rate=kappa,
        lambda_hat=lam,
        one_sided=method,
        hidden_size=m.H,
        reason=reason,
    )


# ============================================================================ report
def _conditions_for(noise: NoiseSpec | None) -> tuple[str, ...]:
    if noise is None or noise.is_zero:
        return ("contraction", "discrete")
    if noise.convention == "paper_code":
        return ("discrete",)
    if noise.multiplicative == 0:
        return ("contraction", "discrete")
    a_s = "almost_sure_scalar" if noise.structure == "scalar" else "almost_sure_diagonal"
    return (a_s, "mean_square")


def stability_report(
    params: NRNNParams,
    xs: Tensor | None = None,
    *,
    noises: Sequence[NoiseSpec] = (),
    one_sided: OneSided = "auto",
    k: int = 1,
    transient: int | None = None,
    n_steps: int = 1000,
    n_trajectories: int = 8,
    generator: torch.Generator | None = None,
) -> StabilityReport:
    r"""Certificates for each condition and noise, beside measured top exponents.

    Everything ``nrnn certify`` prints (see :func:`format_stability_report`): the
    one-sided constant by every applicable method, the certificates of every
    condition that applies without noise and with each noise in ``noises``, the
    measured top Lyapunov exponents (:func:`~nrnn_theory.lyapunov_spectrum`) without
    noise and along a frozen path of each noise, and the smallest ``scalar`` and
    ``diagonal`` multiplicative levels certifying almost-sure stability.

    Parameters
    ----------
    params : NRNNParams
    xs : Tensor, shape (B, T, D), optional
        Input sequences driving the measured trajectories (e.g. test data), started
        from zero. ``None``: ``n_trajectories`` trajectories of the autonomous
        dynamics (zero input for ``n_steps`` steps) from standard normal initial
        states drawn from ``generator``.
    noises : sequence of NoiseSpec
        Noise levels to certify and measure (e.g. the training noise).
    one_sided : {"auto", "standard", "midpoint", "relaxation", "exact"}
        Method used by the certificates; the report lists all cheap methods too.
    k : int
        Number of leading exponents measured.
    transient : int, optional
        Passed to :func:`~nrnn_theory.lyapunov_spectrum`.
    n_steps, n_trajectories : int
        Size of the autonomous run when ``xs`` is None.
    generator : torch.Generator, optional
        Initial states, frames and noise paths; ``None`` means fresh randomness.

    Returns
    -------
    StabilityReport

    Examples
    --------
    >>> import torch
    >>> from nrnn_theory import NoiseSpec, NRNNParams
    >>> p = NRNNParams(A=0.2 * torch.eye(2), W=torch.zeros(2, 2), U=torch.zeros(2, 1),
    ...                b=torch.zeros(2), V=torch.eye(2), c=torch.zeros(2), dt=0.1)
    >>> rep = stability_report(p, noises=[NoiseSpec(sigma2=1.0, structure="scalar")],
    ...                        n_steps=50, generator=torch.Generator().manual_seed(0))
    >>> [c.condition for c in rep.certificates]
    ['contraction', 'discrete', 'almost_sure_scalar', 'mean_square']
    """
    from nrnn_theory.lyapunov import lyapunov_spectrum

    params = check_params(params)
    noises = tuple(check_noise(n) for n in noises)
    m = _Model(params)
    method = _resolve_one_sided(one_sided, m.H)
    constants = {name: m.lambda_hat(name) for name in ("standard", "midpoint", "relaxation")}
    if m.H <= EXACT_MAX_HIDDEN:
        constants["exact"] = m.lambda_hat("exact")
    generator = resolve_generator(generator, params.device)
    h0 = None
    if xs is None:
        check_positive_int("n_steps", n_steps, minimum=2)
        check_positive_int("n_trajectories", n_trajectories)
        dd = {"dtype": params.dtype, "device": params.device}
        xs = torch.zeros(n_trajectories, n_steps, params.input_size, **dd)
        h0 = torch.randn(n_trajectories, m.H, generator=generator, **dd)
    else:
        xs = check_xs(params, xs)
    certificates = []
    spectra = []
    for noise in (None, *noises):
        for cond in _conditions_for(noise):
            certificates.append(_certify(m, noise, cond, method))
        spectra.append(
            lyapunov_spectrum(
                params, xs, noise=noise, k=k, transient=transient, h0=h0, generator=generator
            )
        )
    minimal = tuple(_minimal(m, s, 0.0, method) for s in ("scalar", "diagonal"))
    return StabilityReport(
        one_sided=constants,
        certificates=tuple(certificates),
        spectra=tuple(spectra),
        minimal_noise=minimal,
        hidden_size=m.H,
        dt=m.dt,
    )


def _noise_label(noise: NoiseSpec | None) -> str:
    if noise is None or noise.is_zero:
        return "none"
    if noise.convention == "paper_code":
        return f"paper_code a={noise.additive:.3g} mu={noise.multiplicative:.3g}"
    return f"sde {noise.structure} eps*s1={noise.additive:.3g} eps*s2={noise.multiplicative:.3g}"


def format_stability_report(report: StabilityReport, *, details: bool = False) -> str:
    r"""Plain-text table of a :class:`~nrnn_theory.results.StabilityReport`.

    One row per certificate: noise, condition, certified bound, whether it holds
    and the measured top exponent (mean ± standard error, per unit time) along the
    same noise; then the one-sided constants and the minimal stabilizing noise.
    With ``details``, also every quantity entering each certificate and all the
    measured exponents of each spectrum (what ``nrnn certify`` prints).

    Parameters
    ----------
    report : StabilityReport
        From :func:`stability_report`.
    details : bool
        Also print the quantities of every certificate and every measured exponent.

    Returns
    -------
    str

    Examples
    --------
    >>> import torch
    >>> from nrnn_theory import NRNNParams
    >>> p = NRNNParams(A=-torch.eye(2), W=torch.zeros(2, 2), U=torch.zeros(2, 1),
    ...                b=torch.zeros(2), V=torch.eye(2), c=torch.zeros(2), dt=0.1)
    >>> rep = stability_report(p, n_steps=20, generator=torch.Generator().manual_seed(0))
    >>> print(format_stability_report(rep).splitlines()[0])
    Stability of an NRNN with H = 2, dt = 0.1 (certificates in float64, docs/theory/stability.md)
    """
    if not isinstance(report, StabilityReport):
        raise TypeError(f"report: expected StabilityReport, got {type(report).__name__}")
    lines = [
        f"Stability of an NRNN with H = {report.hidden_size}, dt = {report.dt:g} "
        "(certificates in float64, docs/theory/stability.md)",
        "",
        "One-sided constant lambda_hat (sound upper bounds unless 'exact'):",
    ]
    for name, value in report.one_sided.items():
        lines.append(f"  {name:<11} {value: .6g}")
    measured = {}
    for spec in report.spectra:
        key = _noise_label(spec.noise)
        err = float(spec.stderr[0])
        err_s = "n/a" if math.isnan(err) else f"{err:.3g}"
        measured[key] = f"{spec.top: .4g} ± {err_s}"
    header = ("noise", "condition", "bound", "holds", "measured top exponent")
    rows = []
    for cert in report.certificates:
        key = _noise_label(cert.noise)
        rows.append(
            (
                key,
                f"{cert.condition} [{cert.one_sided}]",
                f"{cert.bound: .4g}",
                "yes" if cert.holds else "no",
                measured.get(key, "-"),
            )
        )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines += ["", "Certified bounds and measured exponents (per unit time):"]
    fmt = "  " + "  ".join(f"{{:<{w}}}" for w in widths)
    lines.append(fmt.format(*header).rstrip())
    lines.append(fmt.format(*("-" * w for w in widths)).rstrip())
    lines += [fmt.format(*r).rstrip() for r in rows]
    lines.append(
        "  (contraction, almost_sure_* and mean_square bound the SDE; the measured exponents "
        "of the discrete model agree up to O(dt), ± one standard error)"
    )
    lines += ["", "Smallest multiplicative 'sde' noise certifying almost-sure stability:"]
    for mn in report.minimal_noise:
        value = f"eps*sigma2 > {mn.level:.4g}" if mn.exists else "none"
        lines.append(f"  {mn.structure:<9} {value}  ({mn.reason})")
    if details:
        lines += ["", "Quantities entering each bound:"]
        for cert in report.certificates:
            lines.append(f"  {_noise_label(cert.noise)}, {cert.condition}:")
            items = [f"{k} = {v:.6g}" for k, v in cert.quantities.items()]
            lines += ["    " + ", ".join(items[i : i + 4]) for i in range(0, len(items), 4)]
        lines += ["", "Measured leading exponents (per unit time, ± one standard error):"]
        for spec in report.spectra:
            values = ", ".join(
                f"{v:.4g} ± {e:.2g}"
                for v, e in zip(spec.exponents.tolist(), spec.stderr.tolist(), strict=True)
            )
            lines.append(
                f"  {_noise_label(spec.noise)}: {values}  ({spec.per_trajectory.shape[0]} "
                f"trajectories, {spec.n_steps} steps after a transient of {spec.transient})"
            )
    return "\n".join(lines)


# ============================================================================ learned step
@dataclass(frozen=True)
class StepCheck(Result):
    r"""The sign of a model's Euler step :math:`s` (:func:`~nrnn_theory.check_step`).

    Attributes
    ----------
    learned : bool
        Whether the model has a trained per-unit step (the authors' ``solver='noisy'``)
        rather than the fixed ``dt``.
    n_units : int
        :math:`d_h`.
    n_nonpositive : int
        Units with :math:`s_i \le 0`.
    step_min, step_median, step_max : float
    flagged : bool
        ``n_nonpositive > 0``.
    message : str
        What the flag means, or ``""``.
    """

    learned: bool
    n_units: int
    n_nonpositive: int
    step_min: float
    step_median: float
    step_max: float
    flagged: bool
    message: str


def check_step(params: NRNNParams) -> StepCheck:
    r"""Flag a step with entries :math:`s_i \le 0` (docs/theory/conventions.md).

    The clean map is :math:`h_{k+1} = h_k + s\odot f(h_k, x_k)`. With :math:`s_i > 0`
    it is the Euler step of the ODE :math:`\dot h = f` in every unit; a trained per-unit
    step can cross zero, and a unit with :math:`s_i < 0` steps *against* its drift: the
    map is then the Euler step of :math:`\dot h_i = -f_i`, anti-diffusive where
    :math:`f` is dissipative, and the continuous-time certificates of
    docs/theory/stability.md (which read the drift with a positive step) do not
    describe it; only the discrete-map bound (``"discrete"``), which allows any sign,
    applies. A unit with :math:`s_i = 0` is frozen at its initial state.

    Parameters
    ----------
    params : NRNNParams

    Returns
    -------
    StepCheck

    Examples
    --------
    >>> import torch
    >>> from nrnn_theory import NRNNParams
    >>> H = 3
    >>> p = NRNNParams(A=-torch.eye(H), W=torch.zeros(H, H), U=torch.zeros(H, 1),
    ...                b=torch.zeros(H), V=torch.eye(H), c=torch.zeros(H), dt=0.1,
    ...                step=torch.tensor([0.1, -0.2, 0.3]))
    >>> c = check_step(p)
    >>> c.flagged, c.n_nonpositive, c.step_min
    (True, 1, -0.2)
    """
    params = check_params(params)
    s = params.drift_step.detach().to("cpu", torch.float64).reshape(-1)
    n_bad = int((s <= 0).sum())
    lo, mid, hi = float(s.min()), float(s.median()), float(s.max())
    message = ""
    if n_bad:
        message = (
            f"{n_bad} of {s.numel()} units have a step <= 0 (min {lo:.3g}): the map steps "
            "against the drift there (anti-diffusive); the ODE/SDE certificates of "
            "docs/theory/stability.md do not describe it, only the discrete-map bound does "
            "(docs/theory/conventions.md)"
        )
    return StepCheck(
        learned=params.step is not None,
        n_units=int(s.numel()),
        n_nonpositive=n_bad,
        step_min=lo,
        step_median=mid,
        step_max=hi,
        flagged=n_bad > 0,
        message=message,
    )
