r"""The engine of :mod:`nrnn_theory.verification`: linear bound propagation through the loop.

No validation happens here: :mod:`nrnn_theory.verification` validates once at the
boundary, converts to float64 and calls :func:`lower_bounds` / :func:`search_radius`.
The names are public within the package (the tests use the ``"identity"`` activation,
a linear RNN whose bounds are exact, as a closed-form oracle).

The network, written for bound propagation (column convention, one example):

.. math::
    z_k = W h_k + U x_k + b,\qquad a_k = \phi(z_k),\qquad
    h_{k+1} = D_k\odot h_k + S_k\odot(\alpha A h_k + a_k) + c_k + e_k,
    \quad |e_k| \le \rho_k,

with :math:`\phi = \tanh` (or the identity), :math:`h_0` fixed, and the logits
:math:`V h_T + c`. The clean model has :math:`D_k = 1`, :math:`S_k = s` (``dt`` or the
per-unit step), :math:`c_k = e_k = 0`; frozen noise with draws in a box gives
:math:`D_k, S_k, c_k` from the box centre and :math:`\rho_k` from its half-width
(:class:`StepNoise`). The step matrix is :math:`M_k = \mathrm{diag}(D_k) +
\mathrm{diag}(S_k)\,\alpha A`.

Three ways to bound the pre-activations :math:`z_k` over the input set:

* **IBP**: intervals in centre/radius form, :math:`|M|` and :math:`|W|` on radii.
* **forward** (symbolic intervals): linear lower/upper bounds of :math:`h_k` in the
  input deviations :math:`\delta = x - x_0`, kept as centre and radius linear functions
  :math:`C(\delta)\pm R(\delta)`, propagated step by step (:math:`C` by :math:`M`,
  :math:`R` by :math:`|M|`) and concretized per step. Cost O(T^2 D H^2) per example,
  memory O(T D H).
* **backward** (CROWN): for every step k the linear function :math:`\pm W h_k` is
  back-substituted through steps :math:`k-1, \dots, 0` with the relaxation of each
  activation chosen by the sign of its coefficient, down to the inputs, and
  concretized by the dual norm. Each step is one batched product with a matrix built
  once per step (:meth:`_Sweep._fused`). Cost O(T^2 H^3) per example.

One sweep runs the IBP chain untouched, the forward part from IBP and its own
intervals only, and the CROWN relaxations from the back-substituted intervals
intersected with those; the output bound of a method is the maximum of its own and the
cheaper methods' bounds. The cheaper methods' computations inside a sweep are
therefore exactly those of their own sweeps, and ``crown >= forward >= ibp`` holds on
every bound by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


__all__ = [
    "ACTIVATIONS",
    "BOUND_METHODS",
    "LINE_SLACK",
    "InputSet",
    "Network",
    "StepNoise",
    "first_order",
    "lower_bounds",
    "relax_identity",
    "relax_tanh",
    "reuse_radius",
    "search_radius",
]

#: Bound-propagation methods, cheapest first.
BOUND_METHODS: tuple[str, ...] = ("ibp", "forward", "crown")

#: Outward shift of every tanh relaxation line, absorbing the rounding of the line's
#: own computation (its coefficients are O(1); float64 rounding is ~1e-16).
LINE_SLACK = 1e-12

# tanh'' is bounded by 4 / (3 sqrt 3) in absolute value.
_TANH2_MAX = 4.0 / (3.0 * math.sqrt(3.0))
# Below this interval width the relaxation is the tangent at the midpoint with a
# Taylor error band (the chord's slope would lose digits to cancellation).
_NARROW = 1e-6


# ----------------------------------------------------------------------- relaxations
_TABLE_MIN, _TABLE_STEP = -20.0, 1e-3
_TABLES: dict[tuple[torch.dtype, torch.device], Tensor] = {}


def _tangent_table(dtype: torch.dtype, device: torch.device) -> Tensor:
    r""":math:`d^*(l)` on the grid :math:`l_i = -20 + 10^{-3} i \le 0` (cached).

    :math:`d^*(l) > 0` is where the tangent of tanh passes through :math:`(l, \tanh l)`;
    computed by 64 bisection steps on :math:`\phi(d) = \tanh d + \tanh'(d)(l - d) -
    \tanh l` (increasing in d > 0), keeping the upper end (:math:`\phi \ge 0`).
    """
    key = (dtype, device)
    if key not in _TABLES:
        n = int(round(-_TABLE_MIN / _TABLE_STEP)) + 1
        grid = _TABLE_MIN + _TABLE_STEP * torch.arange(n, dtype=torch.float64)
        tl = torch.tanh(grid)
        a = torch.zeros_like(grid)
        b = torch.full_like(grid, 12.0)  # d*(-20) is about 4.3
        for _ in range(64):
            mid = 0.5 * (a + b)
            t = torch.tanh(mid)
            ok = t + (1.0 - t * t) * (grid - mid) - tl >= 0
            b = torch.where(ok, mid, b)
            a = torch.where(ok, a, mid)
        _TABLES[key] = b.to(dtype=dtype, device=device)
    return _TABLES[key]


def _tangent_point(lo: Tensor) -> Tensor:
    r"""A tangent point :math:`d \ge d^*(lo)` for ``lo < 0``: the table value at the grid
    point at or below ``lo`` (:math:`d^*` decreases in ``lo``); ``inf`` below the grid."""
    table = _tangent_table(lo.dtype, lo.device)
    pos = torch.floor((lo - _TABLE_MIN) / _TABLE_STEP)
    inside = (pos >= 0) & (lo < 0)
    idx = pos.clamp(0, table.numel() - 1).long()
    return torch.where(inside, table[idx], math.inf)


def _tanh_upper(lo: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    r"""A line :math:`a z + b \ge \tanh z` on :math:`[lo, u]` with :math:`a \ge 0`.

    * :math:`u \le 0` (tanh convex there): the chord.
    * :math:`lo \ge 0` (concave): the tangent at the midpoint :math:`m` (least area).
    * :math:`lo < 0 < u`: the tangent at :math:`d = \min(\max(d^*, m), u)` (least area
      among the sound tangents), where the tangent at :math:`d^*` passes through
      :math:`(lo, \tanh lo)`; any :math:`d \ge d^*` is sound
      (the tangent at :math:`d \ge 0` lies above tanh on :math:`[0,\infty)`, and on
      :math:`[lo, 0]` the gap is concave, non-negative at both ends). When
      :math:`d^* > u` the chord is sound instead (the chord's slope is then below
      :math:`\tanh'(u)`, so the gap is convex on :math:`[0, u]` with a negative slope
      at :math:`u`, and concave on :math:`[lo, 0]`).
    """
    tl, tu = torch.tanh(lo), torch.tanh(u)
    w = u - lo
    m = 0.5 * (lo + u)
    wide = w > _NARROW
    safe_w = torch.where(wide, w, 1.0)
    chord_a = (tu - tl) / safe_w
    chord_b = tl - chord_a * lo

    def tangent(d: Tensor) -> tuple[Tensor, Tensor]:
        td = torch.tanh(d)
        a = 1.0 - td * td
        return a, td - a * d

    # Crossing case: phi(d) = tanh d + tanh'(d)(lo - d) - tanh lo increases for d > 0,
    # and phi(d) >= 0 <=> d >= d*(lo). d* comes from a table (conservative side), the
    # least-area choice is max(d*, m), and the chosen point is re-checked.
    def phi(d: Tensor) -> Tensor:
        a, b = tangent(d)
        return a * lo + b - tl

    cross = (lo < 0) & (u > 0) & wide
    ok_u = phi(u) >= 0  # d* <= u: some tangent point in [0, u] is sound
    d = torch.minimum(torch.maximum(_tangent_point(lo), m), u)
    ok_d = phi(d) >= 0
    d = torch.where(ok_d, d, u)
    cross_a, cross_b = tangent(d)
    use_tangent_cross = cross & ok_u

    tan_a, tan_b = tangent(m)
    a = torch.where(u <= 0, chord_a, tan_a)
    b = torch.where(u <= 0, chord_b, tan_b)
    a = torch.where(use_tangent_cross, cross_a, a)
    b = torch.where(use_tangent_cross, cross_b, b)
    chord_cross = cross & ~ok_u
    a = torch.where(chord_cross, chord_a, a)
    b = torch.where(chord_cross, chord_b, b)
    # Narrow intervals: tangent at the midpoint plus the Taylor band max|tanh''| w^2 / 8.
    band = _TANH2_MAX * (0.5 * w) ** 2 / 2.0
    a = torch.where(wide, a, tan_a)
    b = torch.where(wide, b, tan_b + band)
    return a, b + LINE_SLACK


def relax_tanh(lo: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""Sound linear bounds of tanh on :math:`[lo, u]` (elementwise), slopes :math:`\ge 0`.

    .. math:: a_L z + b_L \le \tanh z \le a_U z + b_U,\qquad z\in[lo, u]

    Upper line by :func:`_tanh_upper`; the lower line by the odd symmetry
    :math:`\tanh z = -\tanh(-z)`: the upper line of :math:`[-u, -lo]`, reflected.
    Returns ``(a_L, b_L, a_U, b_U)``.
    """
    aU, bU = _tanh_upper(lo, u)
    aL, bL_neg = _tanh_upper(-u, -lo)
    return aL, -bL_neg, aU, bU


def relax_identity(lo: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The exact 'relaxation' of the identity: slope 1, intercept 0 on both sides."""
    one = torch.ones_like(lo)
    zero = torch.zeros_like(lo)
    return one, zero, one, zero


#: name -> (relaxation(l, u) -> (aL, bL, aU, bU), the monotone activation itself).
ACTIVATIONS: dict[str, tuple[Callable, Callable[[Tensor], Tensor]]] = {
    "tanh": (relax_tanh, torch.tanh),
    "identity": (relax_identity, lambda z: z),
}


# ------------------------------------------------------------------------- the pieces
@dataclass
class Network:
    """The clean linear maps of an NRNN in the propagation dtype (float64)."""

    W: Tensor  # (H, H)
    U: Tensor  # (H, D)
    b: Tensor  # (H,)
    aA: Tensor | None  # alpha * A (H, H), None when alpha = 0
    V: Tensor  # (C, H)
    c: Tensor  # (C,)
    activation: str = "tanh"

    def __post_init__(self) -> None:
        self.H = self.W.shape[0]
        self.Wt = self.W.mT.contiguous()
        self.absWt = self.W.abs().mT.contiguous()
        self.Ut = self.U.mT.contiguous()
        self.absU = self.U.abs()
        self.U_row_norm = self.U.norm(dim=1)  # (H,) for l2 balls
        if self.aA is not None:
            self.AW = torch.cat([self.aA, self.W], dim=0).contiguous()  # (2H, H)
            self.aAt = self.aA.mT.contiguous()
            self.absaAt = self.aA.abs().mT.contiguous()
            self.aA_diag = torch.diagonal(self.aA)
        self.relax, self.phi = ACTIVATIONS[self.activation]


@dataclass
class StepNoise:
    r"""Per-step pieces :math:`D_k, S_k, c_k` and the radius ingredients of :math:`e_k`.

    Every tensor has shape (Bn, Tn, H) with Bn in {1, B} and Tn in {1, T}.
    :math:`\rho_k = \rho^{add}_k + \kappa^h_k\odot\max|h_k| + \kappa^f_k\odot\max|f_k|`
    with :math:`f_k = \alpha A h_k + a_k` (the drift), from the intervals of the sweep.
    """

    S: Tensor
    D: Tensor | None = None
    c: Tensor | None = None
    rho_add: Tensor | None = None
    coef_h: Tensor | None = None
    coef_f: Tensor | None = None

    def at(self, name: str, k: int) -> Tensor | None:
        t = getattr(self, name)
        if t is None:
            return None
        return t[:, k if t.shape[1] > 1 else 0]

    @property
    def constant(self) -> bool:
        """True when D and S are shared by all examples and steps (one matrix M)."""
        return all(t is None or (t.shape[0] == 1 and t.shape[1] == 1) for t in (self.S, self.D))


class InputSet:
    r"""The perturbation set :math:`\{x: \|x - x_0\| \le r\}\cap[lo, hi]` per example.

    Linear functions :math:`w\cdot\delta + c` of the deviation :math:`\delta = x - x_0`
    are stored with coefficients of shape (n, B, K) (row ``t * D + d`` is input value
    ``x[:, t, d]``; only the first n rows may be non-zero) and concretized by
    :meth:`bound`:

    * :math:`\ell_\infty` (with or without the range): the box
      :math:`[\max(-r, lo - x_0), \min(r, hi - x_0)]`, exactly:
      :math:`\min = c + w\cdot\mathrm{mid} - |w|\cdot\mathrm{rad}`.
    * :math:`\ell_2`: :math:`\min = c - r\|w\|_2` (the dual norm, exact for the ball);
      with a data range, the maximum of that and the box bound of the
      :math:`\ell_\infty` box of radius r clipped to the range, which contains the
      intersection (sound, not exact).
    """

    def __init__(self, x0: Tensor, radius: Tensor, norm: str, data_range) -> None:
        B, T, D = x0.shape
        self.B, self.T, self.D = B, T, D
        self.N = T * D
        self.norm = norm
        self.r = radius
        self.ball = norm == "l2"
        self.box = norm == "linf" or data_range is not None
        self.centered = data_range is None
        r3 = radius.view(B, 1, 1).expand(B, T, D)
        if self.box:
            dlo, dhi = -r3, r3
            if data_range is not None:
                lo, hi = data_range
                dlo = torch.maximum(dlo, lo - x0)
                dhi = torch.minimum(dhi, hi - x0)
            mid = 0.5 * (dlo + dhi)
            rad = (0.5 * (dhi - dlo)).clamp(min=0.0)
            self.mid = mid.reshape(B, self.N).mT.contiguous()  # (N, B)
            self.rad = rad.reshape(B, self.N).mT.contiguous()
            self.step_mid = mid  # (B, T, D)
            self.step_rad = rad

    def bound(self, w: Tensor, const: Tensor, upper: bool = False) -> Tensor:
        """Min (or max if ``upper``) of ``w . delta + const`` over the set, shape (B, K)."""
        n = w.shape[0]
        sign = 1.0 if upper else -1.0
        out = None
        if self.box:
            v = const + sign * (w.abs() * self.rad[:n].unsqueeze(-1)).sum(0)
            if not self.centered:
                v = v + (w * self.mid[:n].unsqueeze(-1)).sum(0)
            out = v
        if self.ball:
            v = const + sign * self.r.unsqueeze(-1) * torch.linalg.vector_norm(w, dim=0)
            if out is None:
                out = v
            else:
                out = torch.minimum(out, v) if upper else torch.maximum(out, v)
        return out

    def input_interval(self, Ux0: Tensor, net: Network) -> tuple[Tensor, Tensor]:
        """Interval of :math:`U x_k` for every step (IBP), each (T, B, H)."""
        lows, highs = [], []
        if self.box:
            c = Ux0 + self.step_mid @ net.Ut  # (B, T, H)
            r = self.step_rad @ net.absU.mT
            lows.append(c - r)
            highs.append(c + r)
        if self.ball:
            r = self.r.view(-1, 1, 1) * net.U_row_norm
            lows.append(Ux0 - r)
            highs.append(Ux0 + r)
        lo, hi = lows[0], highs[0]
        if len(lows) == 2:
            lo, hi = torch.maximum(lo, lows[1]), torch.minimum(hi, highs[1])
        return lo.transpose(0, 1), hi.transpose(0, 1)


# ------------------------------------------------------------------------ propagation
@dataclass
class _Relaxed:
    """What the backward substitution needs from one step."""

    S: Tensor  # (Bn, H)
    D: Tensor | None
    c: Tensor | None
    rho: Tensor | None  # (B, H)
    aU: Tensor  # (B, H)
    da: Tensor  # aL - aU
    bU: Tensor
    db: Tensor  # bL - bU
    ub: Tensor  # U x0_k + b, (B, H)

    def __post_init__(self) -> None:
        B = self.aU.shape[0]
        self.S3 = self.S.unsqueeze(1)
        self.aU3 = self.aU.unsqueeze(1)
        self.da3 = self.da.unsqueeze(1)
        bU = self.bU.expand(B, -1)
        self.cvec = torch.cat([bU, self.ub, self.db.expand(B, -1)], dim=1).unsqueeze(1)


class _Sweep:
    """One pass over the time loop at one radius: intervals and relaxations per step."""

    def __init__(self, net, noise, inset, x0, h0, method, store: bool = False) -> None:
        self.net, self.noise, self.inset, self.method = net, noise, inset, method
        self.store = store or method != "ibp"
        self.B, self.T, self.D = x0.shape
        self.forward = method in ("forward", "crown")
        self.crown = method == "crown"
        H = net.H
        self.Ux0b = x0 @ net.Ut + net.b  # (B, T, H)
        self.pl, self.pu = inset.input_interval(self.Ux0b - net.b, net)
        self.pl = self.pl + net.b
        self.pu = self.pu + net.b
        self.h0 = h0
        self.steps: list[_Relaxed] = []  # relaxations from the IBP/forward intervals
        self.steps_crown: list[_Relaxed] = []  # from the CROWN intervals
        dt = x0.dtype
        dev = x0.device
        B, N = self.B, self.T * self.D
        self.hc = x0.new_zeros(B, H) if h0 is None else h0.clone()
        self.hr = x0.new_zeros(B, H)
        if self.forward:
            self.Cw = torch.zeros(N, B, H, dtype=dt, device=dev)
            self.Rw = torch.zeros(N, B, H, dtype=dt, device=dev)
            self.Cw2 = torch.zeros_like(self.Cw)  # zeros: rows >= k D are read as zero
            self.Rw2 = torch.zeros_like(self.Rw)
            self.Cz = torch.empty_like(self.Cw)
            self.Rz = torch.empty_like(self.Cw)
            self.Cb = self.hc.clone()
            self.Rb = x0.new_zeros(B, H)
            self.bc, self.br = self.hc.clone(), x0.new_zeros(B, H)  # best interval of h_k
        if self.crown:
            self.Wpm = torch.cat([net.W, -net.W], dim=0)  # (2H, H)
            self.Gz = torch.zeros(N, B, 2 * H, dtype=dt, device=dev)
            width = 2 * H + self.D + 1  # [p | lam | g | c]
            self.bufs = [torch.empty(B, 2 * H, width, dtype=dt, device=dev) for _ in range(2)]
            self.fused: list[Tensor] = []
        self._M = None

    # -- the step matrix, shared by all examples when the noise pieces allow it
    def _shared_M(self, S: Tensor, D: Tensor | None) -> tuple[Tensor, Tensor]:
        net = self.net
        H = net.H
        s = S.reshape(H)
        M = torch.diag(torch.ones(H, dtype=s.dtype, device=s.device) if D is None else D.reshape(H))
        if net.aA is not None:
            M = M + s.unsqueeze(1) * net.aA
        return M.mT.contiguous(), M.abs().mT.contiguous()

    def _corr(self, S: Tensor, D: Tensor | None) -> Tensor:
        r""":math:`|D + S\,\mathrm{diag}(\alpha A)| - |S|\,|\mathrm{diag}(\alpha A)|`."""
        net = self.net
        d = 1.0 if D is None else D
        if net.aA is None:
            return torch.ones_like(S) if D is None else (D.abs() + 0.0 * S)
        return (d + S * net.aA_diag).abs() - S.abs() * net.aA_diag.abs()

    def _ibp_step(self, hc, hr, lo, hi, S, Dk, ck, k):
        """One IBP step from the interval (hc +- hr) with pre-activations in [lo, hi].

        Returns the next interval, the noise radius used and the activation interval.
        """
        net = self.net
        al, au = net.phi(lo), net.phi(hi)
        ac, ar = 0.5 * (al + au), 0.5 * (au - al)
        if net.aA is not None:
            fc = hc @ net.aAt + ac
            fr = hr @ net.absaAt + ar
        else:
            fc, fr = ac, ar
        rho = self._rho(k, hc, hr, fc, fr)
        hc2 = fc * S + (hc if Dk is None else Dk * hc)
        if ck is not None:
            hc2 = hc2 + ck
        hr2 = fr * S.abs() + self._corr(S, Dk) * hr
        if rho is not None:
            hr2 = hr2 + rho
        return hc2, hr2, rho

    def _relaxed(self, lo, hi, S, Dk, ck, rho, k) -> _Relaxed:
        aL, bL, aU, bU = self.net.relax(lo, hi)
        return _Relaxed(
            S=S,
            D=Dk,
            c=ck,
            rho=rho,
            aU=aU,
            da=aL - aU,
            bU=bU,
            db=bL - bU,
            ub=self.Ux0b[:, k],
        )

    def run(self) -> None:
        """Sweep the time loop once.

        The IBP chain (``hc``, ``hr``) is pure interval arithmetic; the forward part
        uses IBP and its own intervals only, so the forward results inside a CROWN sweep
        are those of the forward method bitwise; CROWN intervals (back-substitution,
        intersected with the forward ones) only choose the relaxations of
        ``steps_crown``.
        """
        net, nz = self.net, self.noise
        D_in = self.D
        track = nz.coef_h is not None or nz.coef_f is not None
        for k in range(self.T):
            n, n1 = k * D_in, (k + 1) * D_in
            S, Dk, ck = nz.at("S", k), nz.at("D", k), nz.at("c", k)
            # ---- IBP
            lo = self.hc @ net.Wt
            r = self.hr @ net.absWt
            lo, hi = lo - r + self.pl[k], lo + r + self.pu[k]
            hi = torch.maximum(hi, lo)
            if not self.forward:
                hc, hr, rho = self._ibp_step(self.hc, self.hr, lo, hi, S, Dk, ck, k)
                if self.store:
                    self.steps.append(self._relaxed(lo, hi, S, Dk, ck, rho, k))
                self.hc, self.hr = hc, hr
                continue
            self.hc, self.hr, _ = self._ibp_step(self.hc, self.hr, lo, hi, S, Dk, ck, k)
            # ---- forward: pre-activation bounds
            Cz, Rz = self.Cz[:n1], self.Rz[:n1]
            if n:
                torch.matmul(self.Cw[:n], net.Wt, out=Cz[:n])
                torch.matmul(self.Rw[:n], net.absWt, out=Rz[:n])
            Cz[n:n1] = net.Ut.unsqueeze(1)
            Rz[n:n1] = 0.0
            Czb = self.Cb @ net.Wt + self.Ux0b[:, k]
            Rzb = self.Rb @ net.absWt
            lo = torch.maximum(lo, self.inset.bound(Cz - Rz, Czb - Rzb))
            hi = torch.minimum(hi, self.inset.bound(Cz + Rz, Czb + Rzb, upper=True))
            hi = torch.maximum(hi, lo)  # rounding only: both enclose the true values
            # noise radius from the best state interval (IBP of it, and forward)
            bc2, br2, rho = self._ibp_step(self.bc, self.br, lo, hi, S, Dk, ck, k)
            st = self._relaxed(lo, hi, S, Dk, ck, rho, k)
            self.steps.append(st)
            if self.crown:
                if k > 0:
                    lc, uc = self._backward_z(k)
                    lc, uc = torch.maximum(lo, lc), torch.minimum(hi, uc)
                    self.steps_crown.append(
                        self._relaxed(lc, torch.maximum(uc, lc), S, Dk, ck, rho, k)
                    )
                else:
                    self.steps_crown.append(st)
                if k < self.T - 1:  # later pre-activations substitute through this step
                    self.fused.append(self._fused(self.steps_crown[-1]))
            # ---- forward step
            aL, aU = st.aU + st.da, st.aU
            bL, bU = st.bU + st.db, st.bU
            sp, sm = 0.5 * (aL + aU), 0.5 * (aU - aL)
            Ca = torch.addcmul(sp * Cz, sm, Rz)
            Ra = torch.addcmul(sm * Cz, sp, Rz)
            Cab = sp * Czb + sm * Rzb + 0.5 * (bL + bU)
            Rab = sm * Czb + sp * Rzb + 0.5 * (bU - bL)
            Cw2, Rw2 = self.Cw2[:n1], self.Rw2[:n1]
            Cw, Rw = self.Cw[:n1], self.Rw[:n1]
            if nz.constant:
                if self._M is None:
                    self._M = self._shared_M(S, Dk)
                Mt, absMt = self._M
                s = S.reshape(-1)
                torch.matmul(Cw, Mt, out=Cw2)
                Cw2.addcmul_(Ca, s)
                torch.matmul(Rw, absMt, out=Rw2)
                Rw2.addcmul_(Ra, s.abs())
                Cb = torch.addcmul(self.Cb @ Mt, Cab, s)
                Rb = torch.addcmul(self.Rb @ absMt, Rab, s.abs())
            else:
                corr = self._corr(S, Dk)
                if net.aA is not None:
                    torch.matmul(Cw, net.aAt, out=Cw2)
                    Cw2.add_(Ca)
                    torch.matmul(Rw, net.absaAt, out=Rw2)
                    Rw2.add_(Ra)
                    Cb = self.Cb @ net.aAt + Cab
                    Rb = self.Rb @ net.absaAt + Rab
                else:
                    Cw2.copy_(Ca)
                    Rw2.copy_(Ra)
                    Cb, Rb = Cab, Rab
                Cw2.mul_(S)
                Cw2.add_(Cw if Dk is None else Dk * Cw)
                Rw2.mul_(S.abs())
                Rw2.addcmul_(Rw, corr)
                Cb = Cb * S + (self.Cb if Dk is None else Dk * self.Cb)
                Rb = Rb * S.abs() + corr * self.Rb
            if ck is not None:
                Cb = Cb + ck
            if rho is not None:
                Rb = Rb + rho
            self.Cw, self.Cw2 = self.Cw2, self.Cw
            self.Rw, self.Rw2 = self.Rw2, self.Rw
            self.Cb, self.Rb = Cb, Rb
            if track:
                # The next noise radius uses |h_{k+1}|: intersect with the forward bounds.
                Cn, Rn = self.Cw[:n1], self.Rw[:n1]
                hl = torch.maximum(bc2 - br2, self.inset.bound(Cn - Rn, Cb - Rb))
                hu = torch.minimum(bc2 + br2, self.inset.bound(Cn + Rn, Cb + Rb, upper=True))
                hu = torch.maximum(hu, hl)
                self.bc, self.br = 0.5 * (hl + hu), 0.5 * (hu - hl)

    def _rho(self, k: int, hc: Tensor, hr: Tensor, fc: Tensor, fr: Tensor) -> Tensor | None:
        nz = self.noise
        rho = nz.at("rho_add", k)
        kh, kf = nz.at("coef_h", k), nz.at("coef_f", k)
        if kh is not None:
            t = kh * (hc.abs() + hr)
            rho = t if rho is None else rho + t
        if kf is not None:
            t = kf * (fc.abs() + fr)
            rho = t if rho is None else rho + t
        if rho is not None and rho.shape[0] != self.B:
            rho = rho.expand(self.B, -1)
        return rho

    # -- backward substitution
    def _fused(self, st: _Relaxed) -> Tensor:
        r"""The step's back-substitution as one matrix :math:`R_j` (B, 2H, H + D + 1).

        With :math:`p = \lambda^+` and :math:`\mu = \lambda\odot S`, the relaxation
        by the sign of :math:`\mu` gives :math:`\mu^+ = S^-\lambda + |S|p`, so the
        activation's coefficient is :math:`\nu = \lambda\odot s_a + p\odot s_d` with
        :math:`s_a = S a_U + S^- (a_L - a_U)`, :math:`s_d = |S|(a_L - a_U)`, and one
        step is :math:`[p\,|\,\lambda] R_j = [\lambda_{new}\,|\,g_j\,|\,\Delta c]`:
        the next coefficient :math:`\lambda(D + S\alpha A) + \nu W`, the input
        coefficient :math:`g_j = \nu U` and the constant (intercepts, :math:`\nu\cdot
        (U x_j + b)`, noise centre, and :math:`-|\lambda|\rho = \lambda\rho - 2p\rho`).
        Built once per step, used by every later pre-activation's back-substitution.
        """
        net = self.net
        B, H, D = self.B, net.H, self.D
        S = st.S.expand(B, H)
        S_neg, S_abs = S.clamp(max=0.0), S.abs()
        sa = S * st.aU + S_neg * st.da
        sd = S_abs * st.da
        R = S.new_empty(B, 2 * H, H + D + 1)
        R[:, :H, :H] = sd.unsqueeze(-1) * net.W
        R[:, :H, H : H + D] = sd.unsqueeze(-1) * net.U
        cp = sd * st.ub + S_abs * st.db
        lam_blk = sa.unsqueeze(-1) * net.W
        if net.aA is not None:
            lam_blk += S.unsqueeze(-1) * net.aA
        lam_blk.diagonal(dim1=1, dim2=2).add_(1.0 if st.D is None else st.D.expand(B, H))
        R[:, H:, :H] = lam_blk
        R[:, H:, H : H + D] = sa.unsqueeze(-1) * net.U
        cl = sa * st.ub + S * st.bU + S_neg * st.db
        if st.c is not None:
            cl = cl + st.c
        if st.rho is not None:
            cl = cl + st.rho
            cp = cp - 2.0 * st.rho
        R[:, :H, H + D] = cp
        R[:, H:, H + D] = cl
        return R

    def _backward_z(self, k: int) -> tuple[Tensor, Tensor]:
        r"""CROWN bounds on :math:`z_k = W h_k + U x_k + b` (each (B, H)).

        The coefficients of :math:`\pm W h_k` live in a buffer ``[p | lam | g | c]``;
        each earlier step is one batched product with its :meth:`_fused` matrix and one
        ``clamp`` (two buffers in turn).
        """
        net = self.net
        H, D = net.H, self.D
        A, Bf = self.bufs
        A[..., H : 2 * H] = self.Wpm
        torch.clamp(A[..., H : 2 * H], min=0.0, out=A[..., :H])
        ub = self.Ux0b[:, k]
        c = torch.cat([ub, -ub], dim=1)
        G = self.Gz
        G[k * D : (k + 1) * D] = torch.cat([net.Ut, -net.Ut], dim=1).unsqueeze(1)
        for j in range(k - 1, -1, -1):
            torch.bmm(A[..., : 2 * H], self.fused[j], out=Bf[..., H:])
            torch.clamp(Bf[..., H : 2 * H], min=0.0, out=Bf[..., :H])
            c += Bf[..., 2 * H + D]
            G[j * D : (j + 1) * D] = Bf[..., 2 * H : 2 * H + D].permute(2, 0, 1)
            A, Bf = Bf, A
        if self.h0 is not None:
            c += torch.linalg.vecdot(A[..., H : 2 * H], self.h0.unsqueeze(1))
        low = self.inset.bound(G[: (k + 1) * D], c)
        return low[:, :H], -low[:, H:]

    def substitute(
        self,
        lam: Tensor,
        const: Tensor,
        G: Tensor,
        k_end: int,
        rows: int,
        steps=None,
        concretize: bool = True,
    ) -> Tensor:
        """Lower bound (B, K) of ``lam . h_{k_end} + const`` over the input set.

        Back-substitutes through steps ``k_end - 1, ..., 0``: ``lam`` (B, K, H) is the
        coefficient of :math:`h_{k_{end}}`, ``const`` (B, K). The input coefficients of
        step j go to rows ``[j D, (j + 1) D)`` of ``G`` (N, B, K); the first ``rows``
        rows are concretized (row block ``k_end`` may hold a direct input term). With
        ``concretize=False`` the constant (B, K) is returned instead (``G`` holds the
        coefficients): the linear bound, valid over every input set contained in this one.
        """
        net = self.net
        B, K, H = lam.shape
        D = self.D
        c = const.clone()
        steps = self.steps if steps is None else steps
        # One buffer [mu | nu | p] per row: the constant terms are one batched product
        # with [b_U; U x_j + b; b_L - b_U], the new coefficient one GEMM with [aA; W].
        buf = lam.new_empty(B, K, 3 * H)
        mu, nu, p = buf[..., :H], buf[..., H : 2 * H], buf[..., 2 * H :]
        flat = buf.view(B * K, 3 * H)
        lhs, rhs = (flat[:, : 2 * H], net.AW) if net.aA is not None else (flat[:, H : 2 * H], net.W)
        for j in range(k_end - 1, -1, -1):
            st = steps[j]
            torch.mul(lam, st.S3, out=mu)
            torch.clamp(mu, min=0.0, out=p)
            torch.mul(mu, st.aU3, out=nu)
            nu.addcmul_(p, st.da3)
            c += torch.linalg.vecdot(buf, st.cvec)
            if st.c is not None:
                c += torch.linalg.vecdot(lam, st.c.unsqueeze(1))
            if st.rho is not None:
                c -= torch.linalg.vecdot(lam.abs(), st.rho.unsqueeze(1))
            G[j * D : (j + 1) * D] = (nu @ net.U).permute(2, 0, 1)
            base = lam if st.D is None else lam * st.D.unsqueeze(1)
            lam = torch.addmm(base.reshape(B * K, H), lhs, rhs).view(B, K, H)
        if self.h0 is not None:
            c += torch.linalg.vecdot(lam, self.h0.unsqueeze(1))
        return self.inset.bound(G[:rows], c) if concretize else c

    # -- output bounds
    def output_lower(self, spec: Tensor, spec_const: Tensor) -> Tensor:
        """Lower bounds (B, K) on ``spec @ h_T + spec_const`` (the best of the methods run)."""
        # IBP
        low = (
            spec_const
            + (spec @ self.hc.unsqueeze(-1)).squeeze(-1)
            - (spec.abs() @ self.hr.unsqueeze(-1)).squeeze(-1)
        )
        if not self.forward:
            return low
        # Forward linear bounds of h_T, composed with the spec.
        Cw, Rw = self.Cw.transpose(0, 1), self.Rw.transpose(0, 1)  # (B, N, H)
        w = (Cw @ spec.mT - Rw @ spec.abs().mT).transpose(0, 1)  # (N, B, K)
        c0 = (
            spec_const
            + (spec @ self.Cb.unsqueeze(-1)).squeeze(-1)
            - (spec.abs() @ self.Rb.unsqueeze(-1)).squeeze(-1)
        )
        low = torch.maximum(low, self.inset.bound(w, c0))
        # Backward substitution from the output, with the relaxations of each method.
        B, K, _ = spec.shape
        rows = self.T * self.D
        self.linear = []
        for steps in [self.steps] + ([self.steps_crown] if self.crown else []):
            G = spec.new_zeros(rows, B, K)
            c = self.substitute(spec, spec_const.clone(), G, self.T, rows, steps, False)
            low = torch.maximum(low, self.inset.bound(G, c))
            self.linear.append((G, c))
        return low


def lower_bounds(
    net: Network,
    noise: StepNoise,
    x0: Tensor,
    radius: Tensor,
    norm: str,
    data_range: tuple[float, float] | None,
    spec: Tensor,
    spec_const: Tensor,
    method: str,
    h0: Tensor | None = None,
    with_radius: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Lower bounds on :math:`\Lambda h_T + \lambda_0` over the input set, shape (B, K).

    Parameters
    ----------
    net, noise : Network, StepNoise
    x0 : Tensor, shape (B, T, D)
    radius : Tensor, shape (B,)
    norm : {"linf", "l2"}
    data_range : (float, float) or None
    spec : Tensor, shape (B, K, H)
    spec_const : Tensor, shape (B, K)
    method : {"ibp", "forward", "crown"}
    h0 : Tensor, shape (B, H), optional
    with_radius : bool
        Also return, per example, the largest radius :math:`r' \le r` at which the
        output's back-substitutions at this radius certify :math:`\min_K > 0`
        (:func:`reuse_radius`; 0 for IBP): the relaxations chosen for radius r stay
        sound on every smaller set, so a failed probe still certifies something.
    """
    inset = InputSet(x0, radius, norm, data_range)
    sweep = _Sweep(net, noise, inset, x0, h0, method)
    sweep.run()
    low = sweep.output_lower(spec, spec_const)
    if not with_radius:
        return low
    ok = low.min(dim=1).values > 0
    if method == "ibp":
        return low, torch.where(ok, radius, 0.0)
    return low, torch.where(ok, radius, reuse_radius(sweep.linear, x0, radius, norm, data_range))


def reuse_radius(
    linear: list[tuple[Tensor, Tensor]],
    x0: Tensor,
    radius: Tensor,
    norm: str,
    data_range: tuple[float, float] | None,
    iterations: int = 50,
) -> Tensor:
    r"""Largest :math:`r' \in [0, r]` with :math:`\max_i \min_K (G_i\cdot\delta + c_i) > 0`
    over the input set of radius :math:`r'`, by bisection (per example, (B,)).

    Each ``(G (N, B, K), c (B, K))`` is a linear lower bound valid on the set of
    radius ``radius``, hence on every smaller one; its concretization decreases in
    :math:`r'`. Returns 0 where not even :math:`r' = 0` is certified.
    """
    lo = torch.zeros_like(radius)
    hi = radius.clone()

    def certified(r: Tensor) -> Tensor:
        inset = InputSet(x0, r, norm, data_range)
        ok = torch.zeros_like(r, dtype=torch.bool)
        for G, c in linear:
            ok |= inset.bound(G, c).min(dim=1).values > 0
        return ok

    base = certified(lo)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        ok = certified(mid)
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid)
    return torch.where(base, lo, 0.0)


def first_order(
    net: Network,
    noise: StepNoise,
    x0: Tensor,
    norm: str,
    spec: Tensor,
    spec_const: Tensor,
    h0: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Values and gradient dual norms of :math:`\Lambda h_T + \lambda_0` at ``x0``.

    One sweep at radius 0 (every interval is a point, every relaxation the tangent)
    and one backward substitution: the coefficients are the exact input gradient.
    Returns ``(value (B, K), dual_norm (B, K))`` with the dual norm of the input set's
    norm (l1 for ``"linf"``, l2 for ``"l2"``); ``value / dual_norm`` is the
    first-order distance to each boundary, the search's first probe.
    """
    B = x0.shape[0]
    radius = x0.new_zeros(B)
    inset = InputSet(x0, radius, norm, None)
    sweep = _Sweep(net, noise, inset, x0, h0, "ibp", store=True)
    sweep.run()
    K = spec.shape[1]
    G = spec.new_zeros(sweep.T * sweep.D, B, K)
    value = sweep.substitute(spec, spec_const.clone(), G, sweep.T, rows=sweep.T * sweep.D)
    dual = G.abs().sum(0) if norm == "linf" else torch.linalg.vector_norm(G, dim=0)
    return value, dual


# ----------------------------------------------------------------------------- search
def search_radius(
    evaluate: Callable[[Tensor, Tensor], Tensor],
    lo: Tensor,
    f0: Tensor,
    *,
    first: Tensor,
    rtol: float,
    max_iter: int,
    r_max: Tensor,
    active: Tensor,
    slope0: Tensor | None = None,
    min_radius: Tensor | None = None,
) -> dict[str, Tensor]:
    r"""Largest certified radius per example by a safeguarded bracketing search.

    ``evaluate(idx, r)`` returns :math:`f(r) = \min_j` (lower bound of
    :math:`z_y - z_j`) for the examples ``idx`` at radii ``r`` (each (n,)), and a radius
    :math:`r' \le r` certified by the same evaluation (:func:`reuse_radius`; r itself
    when :math:`f(r) > 0`); a radius is *certified* when :math:`f(r) > 0`. ``lo`` (B,)
    is already certified (e.g. by a cheaper method) and ``f0`` is :math:`f(0)`:

    1. probe ``first`` (at least 1.5 ``lo``), then double while the bound holds (never
       beyond ``r_max``; certified at ``r_max`` stops the search: ``capped``);
    2. inside the bracket ``[lo, hi]``: false position on :math:`f` through the last
       certified point (at first :math:`(0, f(0))`) and the last failed one, with the
       Illinois modification (an end that stays put has its value halved); a step that
       did not halve a bracket wider than :math:`4\,\mathrm{rtol}\cdot hi` is followed
       by a bisection (geometric while :math:`hi > 4\,lo`); a failed probe's own
       bounds also raise ``lo`` (:func:`reuse_radius`); probes stay
       :math:`\mathrm{rtol}\cdot hi/2` inside the bracket, so a probe next to the root
       closes it;
    3. stop when :math:`hi - lo \le \mathrm{rtol}\cdot hi` (``converged``), when a
       probe at or below ``min_radius`` failed (``negligible``: what the method
       certifies is below that scale), or after ``max_iter`` probes.

    Every returned ``lo`` was certified by an evaluation (or is the given ``lo``).

    Returns
    -------
    dict of Tensor, each (B,)
        ``lo``, ``hi`` (inf if no probe failed), ``n_eval``, ``converged``, ``capped``,
        ``negligible``.
    """
    B = lo.shape[0]
    dev = lo.device
    lo = lo.clone()
    hi = torch.full_like(lo, math.inf)
    anchor_r, anchor_f = torch.zeros_like(lo), f0.clone()  # secant's certified point
    w_hi = torch.full_like(lo, -math.inf)
    # True values at the bracket's evaluated ends and at the end replaced last (for
    # inverse quadratic interpolation).
    ta_r, ta_f = torch.zeros_like(lo), f0.clone()
    tb_f = torch.full_like(lo, -math.inf)
    tc_r, tc_f = torch.full_like(lo, math.nan), torch.full_like(lo, math.nan)
    side = torch.zeros(B, dtype=torch.long, device=dev)
    bisect = torch.zeros(B, dtype=torch.bool, device=dev)
    n_eval = torch.zeros(B, dtype=torch.long, device=dev)
    capped = torch.zeros(B, dtype=torch.bool, device=dev)
    started = torch.zeros(B, dtype=torch.bool, device=dev)
    inactive = ~active
    floor = torch.zeros_like(lo) if min_radius is None else min_radius
    for _ in range(max_iter):
        conv = torch.isfinite(hi) & (hi - lo <= rtol * hi)
        small = hi <= floor
        idx = (~(inactive | conv | capped | small)).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        a, b = lo[idx], hi[idx]
        ar, af, fb = anchor_r[idx], anchor_f[idx], w_hi[idx]
        open_ = torch.isinf(b)
        # 1. growth while no probe failed
        grow = torch.where(started[idx], 2.0 * a, torch.maximum(first[idx], 1.5 * a))
        grow = torch.minimum(grow, r_max[idx])
        # 2. inside the bracket
        bb = torch.where(open_, 2.0 * a + 1.0, b)  # finite placeholder where open
        denom = af - fb
        t = torch.where(denom > 0, af / torch.where(denom > 0, denom, 1.0), 0.5).clamp(0, 1)
        sec = ar + t * (bb - ar)
        if slope0 is not None:  # from (0, f(0)) only: f = f0 - slope0 r - q r^2 through hi
            s0 = slope0[idx]
            q = (af - s0 * bb - fb) / (bb * bb)
            quad = 2.0 * af / (s0 + torch.sqrt((s0 * s0 + 4.0 * q * af).clamp(min=0.0)))
            use = (ar == 0) & (s0 > 0) & (q > 0) & torch.isfinite(quad)
            sec = torch.where(use, quad, sec)
        # inverse quadratic interpolation through three evaluated points, if inside
        x1, y1, y2, x3, y3 = ta_r[idx], ta_f[idx], tb_f[idx], tc_r[idx], tc_f[idx]
        iqi = (
            x1 * y2 * y3 / ((y1 - y2) * (y1 - y3))
            + bb * y1 * y3 / ((y2 - y1) * (y2 - y3))
            + x3 * y1 * y2 / ((y3 - y1) * (y3 - y2))
        )
        good = torch.isfinite(iqi) & (iqi > a) & (iqi < bb) & torch.isfinite(y2)
        sec = torch.where(good & (ar > 0), iqi, sec)
        wide = (a > 0) & (bb > 4.0 * a)
        inner = torch.where(wide & bisect[idx], torch.sqrt(a * bb), sec)
        half_tol = 0.5 * rtol * bb
        inner = torch.minimum(torch.maximum(inner, a + half_tol), bb - half_tol)
        r = torch.where(open_, grow, inner)
        f, r_star = evaluate(idx, r)
        n_eval[idx] += 1
        started[idx] = True
        ok = f > 0
        prev = side[idx]
        new_lo = torch.where(ok, r, torch.maximum(a, r_star))
        new_hi = torch.where(ok, b, r)
        lo[idx], hi[idx] = new_lo, new_hi
        anchor_r[idx] = torch.where(ok, r, ar)
        anchor_f[idx] = torch.where(ok, f, torch.where(prev == -1, 0.5 * af, af))
        w_hi[idx] = torch.where(ok, torch.where(prev == 1, 0.5 * fb, fb), f)
        side[idx] = torch.where(ok, 1, -1)
        tc_r[idx] = torch.where(ok, ta_r[idx], torch.where(open_, math.nan, b))
        tc_f[idx] = torch.where(ok, ta_f[idx], torch.where(open_, math.nan, tb_f[idx]))
        ta_r[idx] = torch.where(ok, r, ta_r[idx])
        ta_f[idx] = torch.where(ok, f, ta_f[idx])
        tb_f[idx] = torch.where(ok, tb_f[idx], f)
        # A step that did not halve the log-width of a wide bracket: bisect next time.
        old_w = torch.log(bb / a.clamp(min=1e-300))
        new_w = torch.log(new_hi.clamp(max=1e300) / new_lo.clamp(min=1e-300))
        bisect[idx] = ~open_ & (new_w > 0.5 * old_w) & (new_hi > 4.0 * new_lo)
        capped[idx] = ok & open_ & (r >= r_max[idx])
    conv = torch.isfinite(hi) & (hi - lo <= rtol * hi)
    negligible = ~conv & (hi <= floor)
    return {
        "lo": lo,
        "hi": hi,
        "n_eval": n_eval,
        "converged": conv,
        "capped": capped,
        "negligible": negligible,
    }
