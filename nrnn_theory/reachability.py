r"""Reachable sets of the clean NRNN over an input box, and the tanh slope sectors on them.

The stability certificates of docs/theory/stability.md use that the slope of tanh between two
pre-activations lies in :math:`[0, 1]`. A trained model only sees inputs in its data
range, so its pre-activations stay in a box and the slopes lie in a much narrower
**sector**: if :math:`z_i, z'_i \in [l_i, u_i]` then by the mean value theorem

.. math:: \frac{\tanh z_i - \tanh z'_i}{z_i - z'_i} = \tanh'(\xi_i)
          \in \Big[\min_{[l_i,u_i]}\tanh',\ \max_{[l_i,u_i]}\tanh'\Big]
          = \big[1 - \tanh^2\max(|l_i|, |u_i|),\ 1 - \tanh^2 \mathrm{clip}(0, l_i, u_i)\big].

This module computes, for the clean map
:math:`h_{k+1} = h_k + s\odot(\alpha A h_k + \tanh(W h_k + U x_k + b))` with inputs
:math:`x_k` in a box :math:`X` and initial states in a box :math:`H_0`:

* per-step boxes containing every reachable state :math:`h_k` and pre-activation
  :math:`z_k` (:func:`reachable_set`), by interval arithmetic, either naively (one
  box per step), with the linear part composed exactly (``"symbolic"``), or by
  zonotopes with tanh relaxed by parallel lines (``"zonotope"``, the default);
* an **invariant box** where one exists: a box :math:`B` with :math:`F(B, X)\subseteq B`
  containing the state box of some step, so every later state stays in it; and whether
  the same box is forward invariant for the ODE :math:`\dot h = f(h, x)` (Nagumo's
  condition on each face);
* the slope sectors over these boxes (:func:`reachable_sector`,
  :func:`sector_from_preactivation_boxes`, :func:`global_sector`), which the SDP
  certificates of :mod:`nrnn_theory.sdp_certificates` take.

The reachable set is about the clean (inference) dynamics: Gaussian noise has
unbounded support, so a noisy model has no bounded reachable set. Everything is
computed in float64 on the CPU, with every box widened outward by a relative
:math:`10^{-12}` (plus :math:`10^{-300}`) per step to cover rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from nrnn_theory._contract import (
    check_choice,
    check_finite,
    check_params,
    check_positive_int,
    check_tensor,
)
from nrnn_theory._record import Result
from nrnn_theory._types import NRNNParams


__all__ = [
    "REACH_METHODS",
    "ReachableSet",
    "SlopeSector",
    "global_sector",
    "reachable_sector",
    "reachable_set",
    "sector_from_preactivation_boxes",
    "tanh_slope_range",
]

#: Propagation methods of :func:`reachable_set`.
REACH_METHODS: tuple[str, ...] = ("zonotope", "symbolic", "interval")

#: Relative outward widening per step that covers float64 rounding of the box arithmetic.
_ROUND = 1e-12

F64 = torch.float64


# ============================================================================ records
@dataclass(frozen=True)
class ReachableSet(Result):
    r"""Boxes containing every reachable state and pre-activation of the clean map.

    Attributes
    ----------
    state_lo, state_hi : Tensor, shape (T + 1, H)
        Box of :math:`h_k`, :math:`k = 0, \dots, T` (row 0 is the initial box).
    pre_lo, pre_hi : Tensor, shape (T, H)
        Box of :math:`z_k = W h_k + U x_k + b`, :math:`k = 0, \dots, T-1`.
    input_lo, input_hi : Tensor, shape (T, D)
        The input box of each step.
    invariant_lo, invariant_hi : Tensor, shape (H,), or None
        A box containing every state from step ``invariant_from`` on (``None`` if
        none was found): the union of :math:`B, F(B), \dots, F^{K-1}(B)` for a box
        :math:`B` with :math:`F^K(B, X)\subseteq B` (``K = window`` for
        ``"zonotope"`` and ``"symbolic"``, 1 for ``"interval"``), inputs in the hull of the per-step
        input boxes.
    invariant_pre_lo, invariant_pre_hi : Tensor, shape (H,), or None
        Box of the pre-activations of those states.
    invariant_from : int or None
        First step whose state box lies in the invariant box.
    ode_invariant : bool
        Whether a box forward invariant for the ODE
        :math:`\dot h = \alpha A h + \tanh(Wh + Ux + b)` (Nagumo's condition, checked
        face by face) and containing the initial box was found: the hull of every state
        box and the invariant box, possibly enlarged about its centre (x1.5, x2, ..., x16).
    ode_lo, ode_hi, ode_pre_lo, ode_pre_hi : Tensor, shape (H,), or None
        That box and its pre-activation box (``None`` when not found).
    method : str
        ``"zonotope"``, ``"symbolic"`` or ``"interval"``.
    """

    state_lo: Tensor
    state_hi: Tensor
    pre_lo: Tensor
    pre_hi: Tensor
    input_lo: Tensor
    input_hi: Tensor
    invariant_lo: Tensor | None
    invariant_hi: Tensor | None
    invariant_pre_lo: Tensor | None
    invariant_pre_hi: Tensor | None
    invariant_from: int | None
    ode_invariant: bool
    method: str
    ode_lo: Tensor | None = None
    ode_hi: Tensor | None = None
    ode_pre_lo: Tensor | None = None
    ode_pre_hi: Tensor | None = None

    @property
    def horizon(self) -> int:
        """Number of steps ``T`` covered by the per-step boxes."""
        return int(self.pre_lo.shape[0])

    @property
    def hidden_size(self) -> int:
        """Number of hidden units H."""
        return int(self.pre_lo.shape[1])

    def describe(self) -> str:
        """The input and initial sets in words."""
        lo, hi = float(self.input_lo.min()), float(self.input_hi.max())
        h_lo, h_hi = float(self.state_lo[0].min()), float(self.state_hi[0].max())
        init = "h0 = 0" if h_lo == h_hi == 0.0 else f"h0 in [{h_lo:g}, {h_hi:g}]^H"
        return f"inputs in [{lo:g}, {hi:g}]^D, {init}"


@dataclass(frozen=True)
class SlopeSector(Result):
    r"""Per-unit bounds :math:`[s_{lo}, s_{hi}]` on the slopes of tanh between two states.

    Attributes
    ----------
    lo, hi : Tensor, shape (H,) or (T, H)
        Lower and upper slope bounds, :math:`0 \le lo \le hi \le 1`; one row per step
        for a per-step sector.
    source : str
        ``"global"`` (the sector [0, 1] of docs/theory/stability.md) or where the boxes came from.
    valid_for : str
        ``"all"`` (any trajectory: global sector), ``"map"`` (trajectories of the clean
        map from the initial set with inputs in the input set) or ``"map+ode"`` (also
        the ODE's, from an ODE-invariant box).
    horizon : int or None
        ``None`` when the sector holds at every step; otherwise the number of steps it
        covers (the certificate then holds for those steps only).
    input_set : str
        The input and initial sets in words (``"any input"`` for the global sector).
    """

    lo: Tensor
    hi: Tensor
    source: str
    valid_for: str
    horizon: int | None
    input_set: str

    @property
    def per_step(self) -> bool:
        """Whether the sector has one row per step."""
        return self.lo.ndim == 2

    @property
    def is_global(self) -> bool:
        """Whether this is the global sector [0, 1] (valid for any states and inputs)."""
        return self.source == "global"


# ============================================================================ slopes
def _sech2(z: Tensor) -> Tensor:
    """1 - tanh(z)^2 = 4 / (e^z + e^-z)^2, accurate for large |z| (no cancellation)."""
    a = z.abs()
    e = torch.exp(-2.0 * a)
    return 4.0 * e / (1.0 + e) ** 2


def tanh_slope_range(z_lo: Tensor, z_hi: Tensor) -> tuple[Tensor, Tensor]:
    r"""Range of :math:`\tanh'` over boxes :math:`[l, u]`, widened outward for rounding.

    .. math:: \min_{[l,u]}\tanh' = \tanh'(\max(|l|, |u|)),\qquad
              \max_{[l,u]}\tanh' = \tanh'(\mathrm{clip}(0, l, u)),

    since :math:`\tanh' = 1 - \tanh^2` is even and decreasing in :math:`|z|`.

    Parameters
    ----------
    z_lo, z_hi : Tensor, same shape
        Box bounds with ``z_lo <= z_hi``.

    Returns
    -------
    (Tensor, Tensor)
        Float64 lower and upper slopes in [0, 1], the lower one rounded down and the
        upper one up by a relative :math:`10^{-12}`.

    Examples
    --------
    >>> import torch
    >>> lo, hi = tanh_slope_range(torch.tensor([-1.0, 0.5]), torch.tensor([2.0, 3.0]))
    >>> [round(v, 4) for v in lo.tolist()], [round(v, 4) for v in hi.tolist()]
    ([0.0707, 0.0099], [1.0, 0.7864])
    """
    z_lo = check_tensor("z_lo", z_lo).to("cpu", F64)
    z_hi = check_tensor("z_hi", z_hi).to("cpu", F64)
    if z_lo.shape != z_hi.shape:
        raise ValueError(
            f"z_hi: expected the shape of z_lo {tuple(z_lo.shape)}, got {tuple(z_hi.shape)}"
        )
    if bool((z_lo > z_hi).any()):
        raise ValueError("z_lo: expected z_lo <= z_hi entrywise, got a box with lo > hi")
    far = torch.maximum(z_lo.abs(), z_hi.abs())
    near = torch.clamp(torch.zeros_like(z_lo), z_lo, z_hi)
    lo = _sech2(far) * (1.0 - _ROUND)
    hi = torch.clamp(_sech2(near) * (1.0 + _ROUND), max=1.0)
    return lo.clamp_min(0.0), hi


def global_sector(hidden_size: int) -> SlopeSector:
    r"""The sector :math:`[0, 1]` of every unit: valid for any states and inputs.

    Parameters
    ----------
    hidden_size : int
        Number of hidden units H.

    Returns
    -------
    SlopeSector
        ``lo`` zeros and ``hi`` ones, shape (H,), float64.

    Examples
    --------
    >>> s = global_sector(3)
    >>> s.lo.tolist(), s.hi.tolist(), s.valid_for
    ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], 'all')
    """
    H = check_positive_int("hidden_size", hidden_size)
    return SlopeSector(
        lo=torch.zeros(H, dtype=F64),
        hi=torch.ones(H, dtype=F64),
        source="global",
        valid_for="all",
        horizon=None,
        input_set="any input",
    )


def sector_from_preactivation_boxes(
    z_lo: Tensor,
    z_hi: Tensor,
    *,
    source: str = "precomputed pre-activation boxes",
    valid_for: Literal["map", "map+ode"] = "map",
    horizon: int | None = None,
    input_set: str = "the set the boxes were computed for",
) -> SlopeSector:
    r"""A slope sector from precomputed pre-activation boxes (e.g. bound propagation).

    The plug-in point for tighter boxes than :func:`reachable_set` computes: the
    caller vouches that every pre-activation of every trajectory the certificate is
    about lies in ``[z_lo, z_hi]`` (per step when the boxes have a time axis).

    Parameters
    ----------
    z_lo, z_hi : Tensor, shape (H,) or (T, H)
        Pre-activation boxes.
    source, valid_for, horizon, input_set
        Recorded in the sector (see :class:`SlopeSector`). A (T, H) box without
        ``horizon`` sets it to ``T``.

    Returns
    -------
    SlopeSector
        Per-step if the boxes have a time axis.
    """
    valid_for = check_choice("valid_for", valid_for, ("map", "map+ode"))
    z_lo = check_tensor("z_lo", z_lo)
    if z_lo.ndim not in (1, 2):
        raise ValueError(f"z_lo: expected shape (H,) or (T, H), got {tuple(z_lo.shape)}")
    check_finite("z_lo", z_lo)
    check_finite("z_hi", check_tensor("z_hi", z_hi))
    lo, hi = tanh_slope_range(z_lo, z_hi)
    if z_lo.ndim == 2 and horizon is None:
        horizon = int(z_lo.shape[0])
    return SlopeSector(
        lo=lo, hi=hi, source=source, valid_for=valid_for, horizon=horizon, input_set=input_set
    )


# ============================================================================ propagation
def _box(name: str, value, shape_last: int, what: str) -> tuple[Tensor, Tensor]:
    """A box (lo, hi) from a pair of floats or tensors broadcastable to (..., n)."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(f"{name}: expected a pair (lo, hi), got {type(value).__name__}")
    parts = []
    for v in value:
        if isinstance(v, Tensor):
            t = v.detach().to("cpu", F64)
        elif isinstance(v, int | float) and not isinstance(v, bool):
            t = torch.tensor(float(v), dtype=F64)
        else:
            raise TypeError(f"{name}: expected numbers or tensors, got {type(v).__name__}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name}: expected finite bounds, got {t}")
        parts.append(t)
    lo, hi = parts
    try:
        lo, hi = torch.broadcast_tensors(lo, hi)
        if lo.ndim == 0:
            lo, hi = lo.expand(shape_last), hi.expand(shape_last)
        if lo.shape[-1] != shape_last:
            raise RuntimeError
    except RuntimeError:
        raise ValueError(
            f"{name}: expected bounds of shape ({shape_last},) or (T, {shape_last}) {what}, "
            f"got {tuple(parts[0].shape)} and {tuple(parts[1].shape)}"
        ) from None
    if bool((lo > hi).any()):
        raise ValueError(f"{name}: expected lo <= hi, got a box with lo > hi")
    return lo.clone(), hi.clone()


def _widen(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    pad = _ROUND * torch.maximum(lo.abs(), hi.abs()) + 1e-300
    return lo - pad, hi + pad


class _Map:
    """float64 CPU pieces of the clean map and its interval extension."""

    def __init__(self, params: NRNNParams) -> None:
        def f64(t: Tensor) -> Tensor:
            return t.detach().to("cpu", F64)

        self.H = params.hidden_size
        self.aA = float(params.alpha) * f64(params.A)
        self.W = f64(params.W)
        self.U = f64(params.U)
        self.b = f64(params.b)
        self.s = f64(params.drift_step)
        self.M = torch.eye(self.H, dtype=F64) + self.s[:, None] * self.aA  # I + S alpha A

    def pre(self, c: Tensor, r: Tensor, xc: Tensor, xr: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-activation box from a state box (centre, radius) and an input box."""
        zc = self.W @ c + self.U @ xc + self.b
        zr = self.W.abs() @ r + self.U.abs() @ xr
        return _widen(zc - zr, zc + zr)

    def step(self, c, r, xc, xr):
        """Naive interval step: state box and pre-activation box at the current step."""
        z_lo, z_hi = self.pre(c, r, xc, xr)
        t_lo, t_hi = torch.tanh(z_lo), torch.tanh(z_hi)
        tc, tr = 0.5 * (t_lo + t_hi), 0.5 * (t_hi - t_lo)
        nc = self.M @ c + self.s * tc
        nr = self.M.abs() @ r + self.s.abs() * tr
        lo, hi = _widen(nc - nr, nc + nr)
        return (lo, hi), (z_lo, z_hi)


def reachable_set(
    params: NRNNParams,
    input_box: tuple,
    horizon: int,
    *,
    initial_box: tuple | None = None,
    method: Literal["zonotope", "symbolic", "interval"] = "zonotope",
    window: int = 64,
    invariant: bool = True,
    max_invariant_iter: int = 50,
) -> ReachableSet:
    r"""Boxes containing every state and pre-activation of the clean map over an input box.

    For every input sequence with :math:`x_k\in X_k` and initial state in
    :math:`H_0`, the clean map :math:`h_{k+1} = M h_k + S\tanh(z_k)`,
    :math:`M = I + S\alpha A`, :math:`S = \mathrm{diag}(s)`, :math:`z_k = W h_k + U x_k + b`
    stays in the returned boxes. ``"interval"`` propagates one box per step
    (:math:`r_{k+1} = |M| r_k + |S| r^{\tanh}_k`); ``"symbolic"`` keeps

    .. math:: h_k = M^{k-j}h_j + \sum_{j\le i<k} M^{k-1-i}S\,t_i,
              \qquad t_i\in[\tanh l_i, \tanh u_i],

    exactly for the last ``window`` steps (:math:`|M^n|\le|M|^n` entrywise, so its boxes
    are never wider), then re-boxes. ``"zonotope"`` (the default) also relaxes tanh by
    parallel lines, :math:`\tanh z \in az + \beta\pm\gamma`, and keeps every state
    an affine function of the initial state, the inputs and the relaxation errors (the
    oldest generators boxed beyond ``window`` steps' worth), which keeps the correlation
    that a negative feedback through tanh creates; its boxes are intersected with the
    ``"symbolic"`` ones, so they are never wider.

    Parameters
    ----------
    params : NRNNParams
    input_box : (lo, hi)
        Floats, tensors of shape (D,), or per-step tensors of shape (T, D).
    horizon : int
        Number of steps ``T``.
    initial_box : (lo, hi), optional
        Box of initial states (floats or (H,) tensors); default :math:`h_0 = 0`, the
        package's initial state.
    method : {"zonotope", "symbolic", "interval"}
    window : int
        Steps composed exactly by ``"symbolic"`` before re-boxing, and steps' worth of
        zonotope generators (:math:`\mathrm{window}\,(H + D)`) kept. Cost
        :math:`O(T\cdot\mathrm{window}\cdot H^2(H + D))` for the zonotope.
    invariant : bool
        Also search an invariant set (inputs in the hull of the per-step boxes):
        starting from the last state box :math:`B`, propagate ``K`` steps and stop if
        :math:`F^K(B)\subseteq B`, else :math:`B \leftarrow B\cup F^K(B)` widened by
        1% of its radius, at most ``max_invariant_iter`` times.
    max_invariant_iter : int

    Returns
    -------
    ReachableSet

    Examples
    --------
    >>> import torch
    >>> from nrnn_theory import NRNNParams
    >>> p = NRNNParams(A=-torch.eye(2), W=0.5 * torch.eye(2), U=torch.ones(2, 1),
    ...                b=torch.zeros(2), V=torch.eye(2), c=torch.zeros(2), dt=0.1)
    >>> r = reachable_set(p, (0.0, 1.0), horizon=50)
    >>> r.invariant_lo is not None, bool((r.pre_hi <= 2.0).all())
    (True, True)
    """
    params = check_params(params)
    T = check_positive_int("horizon", horizon)
    method = check_choice("method", method, REACH_METHODS)
    window = check_positive_int("window", window)
    max_invariant_iter = check_positive_int("max_invariant_iter", max_invariant_iter)
    m = _Map(params)
    H, D = m.H, params.input_size
    x_lo, x_hi = _box("input_box", input_box, D, "(inputs)")
    if x_lo.ndim == 1:
        x_lo, x_hi = x_lo.expand(T, D).clone(), x_hi.expand(T, D).clone()
    elif x_lo.shape[0] != T:
        raise ValueError(
            f"input_box: expected per-step bounds with T = horizon = {T} rows, got {x_lo.shape[0]}"
        )
    if initial_box is None:
        h_lo, h_hi = torch.zeros(H, dtype=F64), torch.zeros(H, dtype=F64)
    else:
        h_lo, h_hi = _box("initial_box", initial_box, H, "(states)")
        if h_lo.ndim != 1:
            raise ValueError(f"initial_box: expected bounds of shape ({H},), got {h_lo.shape}")
    xc, xr = 0.5 * (x_lo + x_hi), 0.5 * (x_hi - x_lo)
    s_lo, s_hi = [h_lo], [h_hi]
    z_lo_all, z_hi_all = [], []
    if method == "interval":
        lo, hi = h_lo, h_hi
        for k in range(T):
            (lo, hi), (zl, zh) = m.step(0.5 * (lo + hi), 0.5 * (hi - lo), xc[k], xr[k])
            s_lo.append(lo)
            s_hi.append(hi)
            z_lo_all.append(zl)
            z_hi_all.append(zh)
    else:
        _symbolic(m, h_lo, h_hi, xc, xr, window, s_lo, s_hi, z_lo_all, z_hi_all)
    state_lo, state_hi = torch.stack(s_lo), torch.stack(s_hi)
    pre_lo, pre_hi = torch.stack(z_lo_all), torch.stack(z_hi_all)
    if method == "zonotope":
        # Both contain every reachable point: keep the intersection.
        (zs_lo, zs_hi), (zz_lo, zz_hi) = _zonotope(m, h_lo, h_hi, xc, xr, window * (H + D))
        state_lo[1:] = torch.maximum(state_lo[1:], zs_lo)
        state_hi[1:] = torch.minimum(state_hi[1:], zs_hi)
        pre_lo, pre_hi = torch.maximum(pre_lo, zz_lo), torch.minimum(pre_hi, zz_hi)
    inv = (None, None, None, None, None)
    ode = (None, None, None, None)
    if invariant:
        X = (x_lo.min(0).values, x_hi.max(0).values)
        inv = _invariant_box(m, state_lo, state_hi, X, max_invariant_iter, window, method)
        if inv[0] is not None:
            lo = torch.minimum(state_lo.min(0).values, inv[0])
            hi = torch.maximum(state_hi.max(0).values, inv[1])
            c, r = 0.5 * (lo + hi), 0.5 * (hi - lo)
            for grow in (1.0, 1.5, 2.0, 4.0, 8.0, 16.0):
                b_lo, b_hi = c - grow * r, c + grow * r
                if _ode_invariant(m, b_lo, b_hi, X):
                    z = m.pre(c, grow * r, 0.5 * (X[0] + X[1]), 0.5 * (X[1] - X[0]))
                    ode = (b_lo, b_hi, z[0], z[1])
                    break
    return ReachableSet(
        state_lo=state_lo,
        state_hi=state_hi,
        pre_lo=pre_lo,
        pre_hi=pre_hi,
        input_lo=x_lo,
        input_hi=x_hi,
        invariant_lo=inv[0],
        invariant_hi=inv[1],
        invariant_pre_lo=inv[2],
        invariant_pre_hi=inv[3],
        invariant_from=inv[4],
        ode_invariant=ode[0] is not None,
        method=method,
        ode_lo=ode[0],
        ode_hi=ode[1],
        ode_pre_lo=ode[2],
        ode_pre_hi=ode[3],
    )


class _Powers:
    """M^j, M^j S and W M^j, W M^j S (and absolute values) for j <= n, computed once."""

    def __init__(self, m: _Map, n: int) -> None:
        H = m.H
        Mp = [torch.eye(H, dtype=F64)]
        for _ in range(n):
            Mp.append(m.M @ Mp[-1])
        self.M = torch.stack(Mp)  # (n + 1, H, H): M^j
        self.MS = self.M * m.s  # M^j S (columns scaled)
        self.WM = m.W @ self.M
        self.WMS = self.WM * m.s
        self.aM, self.aMS = self.M.abs(), self.MS.abs()
        self.aWM, self.aWMS = self.WM.abs(), self.WMS.abs()
        # Side by side, (H, (n + 1) H): block j is the j-th power, so that a sum
        # sum_j X_j v_j is one matrix-vector product with the stacked v's.
        self.cat = {
            name: getattr(self, name).permute(1, 0, 2).reshape(H, -1)
            for name in ("MS", "aMS", "WMS", "aWMS")
        }

    def apply(self, name: str, v: Tensor) -> Tensor:
        """sum_{j < len(v)} X_j v_j for the stack ``name``; v has shape (n, H)."""
        n, H = v.shape
        return self.cat[name][:, : n * H] @ v.reshape(-1)


def _window(m: _Map, pw: _Powers, lo: Tensor, hi: Tensor, xc: Tensor, xr: Tensor):
    r"""Symbolic propagation for len(xc) steps from the state box [lo, hi].

    With :math:`t_i` the tanh boxes, :math:`h_n = M^n h_0 + \sum_{i<n} M^{n-1-i}S t_i`;
    the sums use the precomputed powers (O(n H^2) per step). Returns the state boxes
    of steps 1..n and the pre-activation boxes of steps 0..n-1, as pairs of (n, H).
    """
    base_c, base_r = 0.5 * (lo + hi), 0.5 * (hi - lo)
    n_steps = xc.shape[0]
    tc = torch.zeros(n_steps, m.H, dtype=F64)
    tr = torch.zeros(n_steps, m.H, dtype=F64)
    states_lo, states_hi, pres_lo, pres_hi = [], [], [], []
    for n in range(n_steps):
        # Terms i < n use the powers j = n - 1 - i (reversed order of the t's).
        rev_c, rev_r = tc[:n].flip(0), tr[:n].flip(0)
        zc = pw.WM[n] @ base_c + pw.apply("WMS", rev_c)
        zr = pw.aWM[n] @ base_r + pw.apply("aWMS", rev_r)
        zc = zc + m.U @ xc[n] + m.b
        zr = zr + m.U.abs() @ xr[n]
        zl, zh = _widen(zc - zr, zc + zr)
        pres_lo.append(zl)
        pres_hi.append(zh)
        tl, th = torch.tanh(zl), torch.tanh(zh)
        tc[n], tr[n] = 0.5 * (tl + th), 0.5 * (th - tl)
        rev_c, rev_r = tc[: n + 1].flip(0), tr[: n + 1].flip(0)
        c = pw.M[n + 1] @ base_c + pw.apply("MS", rev_c)
        r = pw.aM[n + 1] @ base_r + pw.apply("aMS", rev_r)
        slo, shi = _widen(c - r, c + r)
        states_lo.append(slo)
        states_hi.append(shi)
    return (
        (torch.stack(states_lo), torch.stack(states_hi)),
        (torch.stack(pres_lo), torch.stack(pres_hi)),
    )


def _symbolic(m: _Map, h_lo, h_hi, xc, xr, window, s_lo, s_hi, z_lo_all, z_hi_all) -> None:
    """Exact composition of the linear part over windows of steps (see reachable_set)."""
    T = xc.shape[0]
    lo, hi = h_lo, h_hi
    pw = _Powers(m, min(window, T))
    for k0 in range(0, T, window):
        (sl, sh), (zl, zh) = _window(m, pw, lo, hi, xc[k0 : k0 + window], xr[k0 : k0 + window])
        s_lo.extend(sl.unbind(0))
        s_hi.extend(sh.unbind(0))
        z_lo_all.extend(zl.unbind(0))
        z_hi_all.extend(zh.unbind(0))
        lo, hi = sl[-1], sh[-1]


def _tanh_parallel(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""Parallel linear bounds of tanh on boxes: :math:`\tanh z \in az + \beta \pm \gamma`.

    The slope :math:`a` is the chord's (:math:`\tanh'` at a degenerate box); the offsets
    are the exact extremes of :math:`\phi(z) = \tanh z - az` on :math:`[l, u]`, attained
    at an end or where :math:`\tanh' = a`, i.e. :math:`z = \pm\,\mathrm{artanh}\sqrt{1-a}`,
    widened for rounding.
    """
    width = hi - lo
    tl, th = torch.tanh(lo), torch.tanh(hi)
    safe = torch.where(width > 0, width, torch.ones_like(width))
    a = torch.where(width > 0, (th - tl) / safe, _sech2(lo))
    a = a.clamp(0.0, 1.0)
    zs = torch.atanh(torch.sqrt((1.0 - a).clamp(0.0, 1.0)).clamp(max=1.0 - 1e-16))
    cands = torch.stack([lo, hi, zs.clamp(lo, hi), (-zs).clamp(lo, hi)])
    phi = torch.tanh(cands) - a * cands
    pmin, pmax = phi.min(0).values, phi.max(0).values
    pad = _ROUND * (torch.maximum(lo.abs(), hi.abs()) + 1.0) + 1e-300
    pmin, pmax = pmin - pad, pmax + pad
    return a, 0.5 * (pmax + pmin), 0.5 * (pmax - pmin)


def _zonotope(m: _Map, lo: Tensor, hi: Tensor, xc: Tensor, xr: Tensor, max_gens: int):
    r"""Zonotope propagation :math:`h_k = c_k + G_k e`, :math:`e \in [-1, 1]^{m}`.

    Each step relaxes tanh by parallel bounds (:func:`_tanh_parallel`), so
    :math:`h_{k+1} = Mc + S(a\odot z_c + \beta) + [(M + S\,\mathrm{diag}(a)W)G,\
    S\,\mathrm{diag}(a)U\,\mathrm{diag}(x_r),\ S\,\mathrm{diag}(\gamma)]\,(e, e_x, e_t)`:
    the linear dependence of the state on the initial state, the inputs and the
    earlier relaxation errors is kept exactly (this keeps the correlation of a
    negative feedback through tanh that boxes lose). When there are more than
    ``max_gens`` generators, the oldest are replaced by their interval hull (H
    diagonal generators). Rounding is covered by a diagonal generator of a relative
    :math:`10^{-12}` of the magnitude of every term, per step. Returns the state boxes
    of steps 1..n and the pre-activation boxes of steps 0..n-1, as pairs of (n, H).
    """
    H = m.H
    c = 0.5 * (lo + hi)
    G = torch.diag(0.5 * (hi - lo))
    aU, aM, aS = m.U.abs(), m.M.abs(), m.s.abs()
    states_lo, states_hi, pres_lo, pres_hi = [], [], [], []
    for n in range(xc.shape[0]):
        zc = m.W @ c + m.U @ xc[n] + m.b
        WG = m.W @ G
        zr = WG.abs().sum(1) + aU @ xr[n]
        zl, zh = _widen(zc - zr, zc + zr)
        pres_lo.append(zl)
        pres_hi.append(zh)
        a, beta, gamma = _tanh_parallel(zl, zh)
        sa = m.s * a
        c_new = m.M @ c + m.s * (a * zc + beta)
        # The relaxation error S gamma and the rounding allowance share one diagonal.
        mag = aM @ (c.abs() + G.abs().sum(1)) + aS * (a * (zc.abs() + zr) + beta.abs() + gamma)
        err = aS * gamma + _ROUND * mag + 1e-300
        G_new = torch.cat(
            [m.M @ G + sa[:, None] * WG, (sa[:, None] * m.U) * xr[n], torch.diag(err)], dim=1
        )
        G_new = G_new[:, G_new.abs().amax(0) > 1e-300]
        if G_new.shape[1] > max_gens:
            k = G_new.shape[1] - max_gens + H  # box the oldest k generators
            old = G_new[:, :k].abs().sum(1)
            G_new = torch.cat([torch.diag(old * (1.0 + _ROUND)), G_new[:, k:]], dim=1)
        c, G = c_new, G_new
        r = G.abs().sum(1)
        slo, shi = _widen(c - r, c + r)
        states_lo.append(slo)
        states_hi.append(shi)
    return (
        (torch.stack(states_lo), torch.stack(states_hi)),
        (torch.stack(pres_lo), torch.stack(pres_hi)),
    )


def _invariant_box(m: _Map, state_lo, state_hi, X, max_iter, steps, method):
    """Search B with F^K(B, X) inside B (K = ``steps``), from the last state box.

    Then every state after the first step whose box lies in B stays in the union of
    F^j(B), j < K, whose pre-activation hull is returned.
    """
    x_lo, x_hi = X
    K = (min(steps, 16) if method == "zonotope" else steps) if method != "interval" else 1
    xc = (0.5 * (x_lo + x_hi)).expand(K, -1)
    xr = (0.5 * (x_hi - x_lo)).expand(K, -1)
    T = state_lo.shape[0] - 1
    lo, hi = state_lo[T].clone(), state_hi[T].clone()
    pw = _Powers(m, K) if method != "interval" else None
    for _ in range(max_iter):
        if method != "interval":
            (sl, sh), (zl, zh) = _window(m, pw, lo, hi, xc, xr)
            if method == "zonotope":
                (al, ah), (bl, bh) = _zonotope(m, lo, hi, xc, xr, K * (m.H + x_lo.shape[0]))
                sl, sh = torch.maximum(sl, al), torch.minimum(sh, ah)
                zl, zh = torch.maximum(zl, bl), torch.minimum(zh, bh)
        else:
            (n_lo, n_hi), (z1, z2) = m.step(0.5 * (lo + hi), 0.5 * (hi - lo), xc[0], xr[0])
            (sl, sh), (zl, zh) = (n_lo[None], n_hi[None]), (z1[None], z2[None])
        n_lo, n_hi = sl[-1], sh[-1]
        if not (bool(torch.isfinite(sl).all()) and bool(torch.isfinite(sh).all())):
            break
        if bool((n_lo >= lo).all()) and bool((n_hi <= hi).all()):
            inside = ((state_lo >= lo) & (state_hi <= hi)).all(dim=1)
            first = int(torch.nonzero(inside)[0]) if bool(inside.any()) else None
            # States from then on lie in B and its first K - 1 images.
            all_lo = torch.minimum(lo, sl[:-1].min(0).values) if K > 1 else lo
            all_hi = torch.maximum(hi, sh[:-1].max(0).values) if K > 1 else hi
            return all_lo, all_hi, zl.min(0).values, zh.max(0).values, first
        lo2, hi2 = torch.minimum(lo, n_lo), torch.maximum(hi, n_hi)
        pad = 0.01 * 0.5 * (hi2 - lo2) + 1e-12
        lo, hi = lo2 - pad, hi2 + pad
        if float((hi - lo).max()) > 1e12:
            break
    return None, None, None, None, None


def _ode_invariant(m: _Map, lo: Tensor, hi: Tensor, X: tuple[Tensor, Tensor]) -> bool:
    r"""Nagumo's condition on every face of the box for :math:`\dot h = \alpha Ah + \tanh z`.

    On the face :math:`h_i = u_i` the field must satisfy :math:`f_i \le 0`, on
    :math:`h_i = l_i`, :math:`f_i \ge 0`, for every point of the face and every input.
    Interval bounds: :math:`(\alpha A h)_i \le \alpha A_{ii}u_i + \sum_{j\ne i}
    \max(\alpha A_{ij}l_j, \alpha A_{ij}u_j)` and :math:`\tanh z_i \le \tanh(\sup z_i)`
    over the whole box (a superset of the face).
    """
    x_lo, x_hi = X
    z_lo, z_hi = m.pre(0.5 * (lo + hi), 0.5 * (hi - lo), 0.5 * (x_lo + x_hi), 0.5 * (x_hi - x_lo))
    A = m.aA
    diag = torch.diagonal(A)
    off_hi = torch.maximum(A * lo, A * hi).sum(1) - torch.maximum(diag * lo, diag * hi)
    off_lo = torch.minimum(A * lo, A * hi).sum(1) - torch.minimum(diag * lo, diag * hi)
    up = diag * hi + off_hi + torch.tanh(z_hi)
    down = diag * lo + off_lo + torch.tanh(z_lo)
    slack = 1e-12 * (1.0 + hi.abs().max() + lo.abs().max())
    return bool((up <= -slack).all()) and bool((down >= slack).all())


# ============================================================================ sectors
def reachable_sector(
    reach: ReachableSet,
    *,
    dynamics: Literal["map", "ode"] = "map",
    per_step: bool = False,
    tail: bool = False,
) -> SlopeSector:
    r"""Slope sectors of tanh over a reachable set.

    Parameters
    ----------
    reach : ReachableSet
    dynamics : {"map", "ode"}
        ``"map"``: the sector over every step of the clean map. With an invariant box
        it holds at every step (per-step boxes before ``invariant_from``, the
        invariant box after); without one, only for the ``T`` steps computed
        (``horizon = T``). ``"ode"``: the sector over the invariant box, which must be
        ODE invariant (``reach.ode_invariant``), else a ``ValueError``.
    per_step : bool
        ``"map"`` only: one sector per step (shape (T, H)), for finite-horizon bounds.
    tail : bool
        ``"map"`` only: the sector over the invariant box alone, which holds from step
        ``reach.invariant_from`` on (the transient before it is left out): enough for
        asymptotic statements such as Lyapunov exponents, whose limit ignores any
        finite transient. ``ValueError`` if no invariant box was found.

    Returns
    -------
    SlopeSector

    Examples
    --------
    >>> import torch
    >>> from nrnn_theory import NRNNParams
    >>> p = NRNNParams(A=-torch.eye(2), W=0.5 * torch.eye(2), U=torch.ones(2, 1),
    ...                b=torch.zeros(2), V=torch.eye(2), c=torch.zeros(2), dt=0.1)
    >>> s = reachable_sector(reachable_set(p, (0.0, 1.0), horizon=50))
    >>> s.horizon is None, bool((s.lo > 0.1).all())
    (True, True)
    """
    if not isinstance(reach, ReachableSet):
        raise TypeError(f"reach: expected ReachableSet, got {type(reach).__name__}")
    dynamics = check_choice("dynamics", dynamics, ("map", "ode"))
    words = reach.describe()
    if dynamics == "ode":
        if per_step:
            raise ValueError("per_step: expected False for dynamics 'ode' (no time grid)")
        if not reach.ode_invariant:
            raise ValueError(
                "reach: the ODE needs a forward-invariant box containing the initial set, "
                "and none was found (ReachableSet.ode_invariant is False); use the global "
                "sector or dynamics 'map'"
            )
        lo, hi = tanh_slope_range(reach.ode_pre_lo, reach.ode_pre_hi)
        return SlopeSector(
            lo=lo,
            hi=hi,
            source=f"ODE-invariant box ({reach.method} reachable set)",
            valid_for="map+ode",
            horizon=None,
            input_set=words,
        )
    if tail:
        if per_step:
            raise ValueError("tail: expected per_step False (the tail sector is one box)")
        if reach.invariant_from is None:
            raise ValueError(
                "reach: tail=True needs an invariant box, and none was found "
                "(ReachableSet.invariant_from is None)"
            )
        k = reach.invariant_from
        lo, hi = tanh_slope_range(reach.invariant_pre_lo, reach.invariant_pre_hi)
        return SlopeSector(
            lo=lo,
            hi=hi,
            source=f"{reach.method} invariant box, from step {k} on (transient left out)",
            valid_for="map",
            horizon=None,
            input_set=f"{words}, from step {k} on",
        )
    lo, hi = tanh_slope_range(reach.pre_lo, reach.pre_hi)  # (T, H)
    if per_step:
        return SlopeSector(
            lo=lo,
            hi=hi,
            source=f"per-step {reach.method} reachable set",
            valid_for="map",
            horizon=reach.horizon,
            input_set=words,
        )
    if reach.invariant_from is not None:
        k = reach.invariant_from
        ilo, ihi = tanh_slope_range(reach.invariant_pre_lo, reach.invariant_pre_hi)
        lo_all = torch.cat([lo[:k], ilo[None]]).min(0).values
        hi_all = torch.cat([hi[:k], ihi[None]]).max(0).values
        return SlopeSector(
            lo=lo_all,
            hi=hi_all,
            source=f"{reach.method} reachable set, invariant from step {k}",
            valid_for="map",
            horizon=None,
            input_set=words,
        )
    return SlopeSector(
        lo=lo.min(0).values,
        hi=hi.max(0).values,
        source=f"{reach.method} reachable set, first {reach.horizon} steps (no invariant box)",
        valid_for="map",
        horizon=reach.horizon,
        input_set=words,
    )
