r"""The rollout's time loop, with a hand-written backward through time.

:func:`run` is the loop behind :func:`nrnn_theory.rollout` (and so behind every model's
forward pass). It advances the unified step of :mod:`nrnn_theory._step`

.. math:: h_{k+1} = h_k + S_k\odot f(h_k, x_k) + G(h_k)\,\eta_k,\qquad
          f(h, x) = \alpha A h + \tanh(W h + U x + b),

with :math:`S_k = s` (clean, ``"sde"``) or :math:`S_k = s\odot r_k`,
:math:`r_k = 1 - \tfrac\mu2 + \tfrac{\mu}{\sqrt{12}}\eta_{k,H:}` (``"paper_code"``), in
exactly the floating-point operations of :meth:`StepKernel.advance
<nrnn_theory._step.StepKernel.advance>` (input projection per step, as
:func:`~nrnn_theory.step` does), so its states are bitwise those of a loop of ``advance``
calls (:func:`step_loop`). It draws the noise from the generator in the order of
:meth:`StepKernel.draw <nrnn_theory._step.StepKernel.draw>`, bitwise the noise path of
:func:`~nrnn_theory.sample_noise`.

When a gradient is needed the whole loop is one :class:`torch.autograd.Function`,
:class:`Recurrence`. Its forward records no graph and keeps, in one time-major
workspace, only what backpropagation through time needs: the states :math:`h_k`, the
activations :math:`a_k = \tanh(z_k)`, the drifts :math:`f_k` and, for ``"paper_code"``
noise, the factors :math:`r_k` (for multiplicative ``"sde"`` noise, the draws). Its
backward runs from :math:`\delta_T = \partial L/\partial h_T` for
:math:`k = T-1, \dots, 0` (row vectors)

.. math::
    p_k = \delta_{k+1}\odot S_k,\qquad q_k = p_k\odot(1 - a_k^2),\qquad
    \delta_k = \delta_{k+1} + p_k\,\alpha A + q_k W + \delta_{k+1}\odot\partial_h(G\eta_k),

writing :math:`p_k, q_k` over :math:`f_k, a_k`, where :math:`\partial_h(G\eta)` is
:math:`\epsilon\sqrt{\Delta t}\sigma_2\eta_k` (diagonal ``"sde"``),
:math:`\epsilon\sqrt{\Delta t}\sigma_2\beta_k` (scalar ``"sde"``) or 0, and then forms
every weight gradient with one product over all steps stacked:

.. math::
    \frac{\partial L}{\partial(\alpha A)^\top} = \sum_k h_k^\top p_k,\quad
    \frac{\partial L}{\partial W^\top} = \sum_k h_k^\top q_k,\quad
    \Big[\frac{\partial L}{\partial U^\top}\ \frac{\partial L}{\partial b}\Big]
        = \sum_k [x_k\ 1]^\top q_k,\quad
    \frac{\partial L}{\partial s} = \sum_{k,b}\delta_{k+1}\odot r_k\odot f_k

(:math:`r_k = 1` without ``"paper_code"`` noise), e.g. :math:`(H, TB) @ (TB, H)` for
:math:`W`.

**Workspace.** On CPU a fresh O(T B H) buffer costs a page fault per 4 KiB on first
touch, on every call, which at T = 784, B = H = 128 is more than all the elementwise
work of the step. The workspace of a differentiable CPU rollout is therefore leased
from a small pool: it returns to the pool when the backward pass has used it (or when
its graph is freed without one), and the next rollout of the same shape reuses it. At
most one free workspace is kept (O(T B H) floats, about 205 MB at T = 784, B = H = 128
in float32, a little less than autograd saved for the same rollout).

A backward with ``create_graph=True`` (double backward, e.g. Hessian-vector products)
recomputes the loop with autograd recording and differentiates that, so higher
derivatives stay exact; a second backward through the same graph
(``retain_graph=True``) recomputes the forward into a new workspace. Inputs wrapped by
``torch.func`` transforms, forward-mode dual tensors and noise draws that require a
gradient take :func:`step_loop`, the plain loop of ``advance`` calls.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from torch import Tensor

from nrnn_theory._contract import is_transformed
from nrnn_theory._step import SQRT12, StepKernel


__all__ = ["CHUNK", "Recurrence", "run", "step_loop"]

#: Steps whose input projection is one GEMM, batch-major as StepKernel.project does it
#: (bitwise the projection of the former rollout); a workspace buffer of CHUNK * B * H.
CHUNK = 128


@dataclass(frozen=True)
class _Plan:
    """The constants of one rollout's step (from a :class:`StepKernel`)."""

    H: int
    has_linear: bool
    mode: str  # "clean", "sde" or "paper_code"
    structure: str | None
    r: int
    g_add: float
    g_mult: float
    c0: float  # 1 - mu / 2 for "paper_code"
    sample: bool  # draw eta from the generator (else eta is given, or clean)

    @classmethod
    def of(cls, kernel: StepKernel, sample: bool) -> _Plan:
        mu = kernel.noise.multiplicative if kernel.mode == "paper_code" else 0.0
        return cls(
            H=kernel.H,
            has_linear=kernel.has_linear,
            mode=kernel.mode,
            structure=kernel.structure,
            r=kernel.r,
            g_add=kernel.g_add,
            g_mult=kernel.g_mult,
            c0=1.0 - 0.5 * mu,
            sample=sample,
        )

    @property
    def keeps_r(self) -> bool:
        return self.mode == "paper_code"

    @property
    def keeps_draws(self) -> bool:
        """Multiplicative ``"sde"`` noise drawn here: the draws enter the backward."""
        return self.mode == "sde" and self.g_mult != 0.0 and self.sample


# -------------------------------------------------------------------------- workspace
class _Workspace:
    """Buffers of one rollout, time-major so that every per-step slice is contiguous.

    ``slots = T`` keeps every step (differentiable rollouts), ``slots = 1`` one step
    (no-grad rollouts, whose states ping-pong between two buffers unless kept).
    """

    def __init__(self, plan: _Plan, T: int, B: int, slots: int, keep_h: bool, dtype, device):
        H = plan.H
        kw = {"dtype": dtype, "device": device}
        self.key = (plan.H, plan.has_linear, plan.keeps_r, plan.keeps_draws, plan.r, T, B)
        self.key += (slots, keep_h, dtype, str(device))
        self.differentiable = slots == T and keep_h  # the pool keeps one of each kind
        self.h = torch.empty(T + 1 if keep_h else 2, B, H, **kw)
        self.fa = torch.empty(2 if plan.has_linear else 1, slots, B, H, **kw)  # [f; a]
        self.r = torch.empty(slots, B, H, **kw) if plan.keeps_r else None
        self.e = None
        if plan.mode == "sde":
            width = plan.r if plan.structure == "scalar" else H
            self.e = torch.empty(slots if plan.keeps_draws else 1, B, width, **kw)
        self.hz = torch.empty(B, 2 * H if plan.has_linear else H, **kw)
        self.ux = torch.empty(min(T, CHUNK) * B * H, **kw)
        self.t1 = torch.empty(B, H, **kw)
        self.t2 = torch.empty(B, H, **kw)


class _Pool:
    """At most one free workspace per kind (differentiable or not), reused by the next
    rollout of the same shape on CPU."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: dict[bool, _Workspace] = {}

    def take(
        self, plan: _Plan, T: int, B: int, slots: int, keep_h: bool, dtype, device
    ) -> _Workspace:
        key = (plan.H, plan.has_linear, plan.keeps_r, plan.keeps_draws, plan.r, T, B)
        key += (slots, keep_h, dtype, str(device))
        if torch.device(device).type == "cpu":
            with self._lock:
                ws = self._free.pop(slots == T and keep_h, None)
            if ws is not None and ws.key == key:
                return ws
        return _Workspace(plan, T, B, slots, keep_h, dtype, device)

    def give(self, ws: _Workspace) -> None:
        if ws.h.device.type == "cpu":
            with self._lock:
                self._free[ws.differentiable] = ws


_POOL = _Pool()


class _Lease:
    """Returns a workspace to the pool when the graph that holds it is freed."""

    __slots__ = ("ws",)

    def __init__(self, ws: _Workspace) -> None:
        self.ws: _Workspace | None = ws

    def release(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            _POOL.give(ws)

    def __del__(self) -> None:  # graph freed without a backward pass
        try:
            self.release()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


# --------------------------------------------------------------------- forward loops
def _consts(plan: _Plan, dtype, device) -> dict[str, Tensor]:
    # Python floats in tensor ops are wrapped and cast on every call; 0-dim tensors of
    # the state's dtype give the same values (the scalar is cast to that dtype either
    # way) without the per-call cast.
    bits = 24 if dtype == torch.float32 else 53  # the random bits of torch.rand

    def c(v: float) -> Tensor:
        return torch.tensor(v, dtype=dtype, device=device)

    return {
        "g_add": c(plan.g_add),
        "c0": c(plan.c0),
        "half": c(0.5),
        "root12": c(SQRT12),
        "mid": c(2.0 ** (bits - 1)),
        "root12_ulp": c(SQRT12 * 2.0**-bits),
        "top": 2**bits,
    }


def _loop(
    plan: _Plan,
    ws: _Workspace,
    xs: Tensor,
    h0: Tensor,
    U: Tensor,
    b: Tensor,
    RT: Tensor,
    s: Tensor,
    eta: Tensor | None,
    generator: torch.Generator | None,
) -> None:
    """The time loop, writing into ``ws`` (``out=`` and in-place ops only, no autograd).

    Op for op the arithmetic of :meth:`StepKernel.advance` (module docstring).
    """
    B, T, _ = xs.shape
    H = plan.H
    mode, lin, sample = plan.mode, plan.has_linear, plan.sample
    diag = plan.structure == "diagonal"
    dtype, device = h0.dtype, h0.device
    c = _consts(plan, dtype, device)
    g_add, c0 = c["g_add"], c["c0"]
    has_add, has_mult = plan.g_add != 0.0, plan.g_mult != 0.0
    # On CPU torch.rand(B, H) is k * 2**-m with k = random_(0, 2**m) (m = 24, 53), so
    # u - 1/2 = (k - 2**(m-1)) * 2**-m exactly: SQRT12 * (rand - 0.5) bitwise, faster.
    fast_uniform = device.type == "cpu" and dtype in (torch.float32, torch.float64)
    full = ws.fa.shape[1] == T
    keep_h = ws.h.shape[0] == T + 1
    keep_e = plan.keeps_draws and full
    UT = U.mT
    hbuf, fa, hz, t1, t2 = ws.h, ws.fa, ws.hz, ws.t1, ws.t2
    # Views made once (indexing in the loop costs microseconds per step).
    hs = hbuf.unbind(0)
    fs, acts = fa[0].unbind(0), fa[-1].unbind(0)
    rs = ws.r.unbind(0) if ws.r is not None else None
    es = ws.e.unbind(0) if ws.e is not None else None
    hz_a, hz_w = (hz[:, :H], hz[:, H:]) if lin else (None, hz)
    if mode != "clean" and not sample:
        eta_steps = eta.unbind(1)
        if mode == "paper_code":
            zetas, etas_u = eta[..., :H].unbind(1), eta[..., H:].unbind(1)
    hbuf[0].copy_(h0)
    for k in range(T):
        j = k if full else 0
        h = hs[k] if keep_h else hs[k & 1]
        h_next = hs[k + 1] if keep_h else hs[(k + 1) & 1]
        if k % CHUNK == 0:  # StepKernel.project of the next CHUNK steps, one GEMM
            n = min(CHUNK, T - k)
            x_chunk = xs[:, k : k + n].reshape(B * n, xs.shape[-1])
            proj = ws.ux[: B * n * H].view(B * n, H)
            uxs = torch.addmm(b, x_chunk, UT, out=proj).view(B, n, H).unbind(1)
        ux = uxs[k % CHUNK]
        # ---- the noise of this step (the order and arithmetic of StepKernel.draw)
        if mode == "paper_code":
            r = rs[j]
            if sample:
                zeta = torch.randn(B, H, generator=generator, out=t2)
                if fast_uniform:
                    r.random_(0, c["top"], generator=generator).sub_(c["mid"])
                    eta_u = r.mul_(c["root12_ulp"])
                else:
                    torch.rand(B, H, generator=generator, out=r).sub_(c["half"])
                    eta_u = r.mul_(c["root12"])
            else:
                zeta, eta_u = zetas[k], etas_u[k]
            torch.add(c0, eta_u, alpha=plan.g_mult, out=r)  # StepKernel.factor
        elif mode == "sde":
            if sample:
                e = torch.randn(B, plan.r, generator=generator, out=es[j if keep_e else 0])
            else:
                e = eta_steps[k]
        # ---- drift (StepKernel.drift)
        torch.mm(h, RT, out=hz)
        a = acts[j]
        torch.add(hz_w, ux, out=a).tanh_()
        if lin:
            f = fs[j]
            torch.add(hz_a, a, out=f)
        else:
            f = a
        # ---- the step (StepKernel.advance, op for op)
        if mode == "paper_code":
            torch.addcmul(h, torch.mul(s, r, out=t1), f, out=h_next)
            if has_add:
                h_next.add_(zeta, alpha=plan.g_add)
        else:
            torch.addcmul(h, s, f, out=h_next)
            if mode == "sde":
                if diag:
                    if has_mult:
                        h_next.addcmul_(torch.add(g_add, h, alpha=plan.g_mult, out=t2), e)
                    else:
                        h_next.add_(e, alpha=plan.g_add)
                else:
                    if has_add:
                        h_next.add_(e[:, :H], alpha=plan.g_add)
                    if has_mult:
                        h_next.addcmul_(h, e[:, H:], value=plan.g_mult)


def _recorded(
    plan: _Plan,
    xs: Tensor,
    h0: Tensor,
    U: Tensor,
    b: Tensor,
    RT: Tensor,
    s: Tensor,
    eta: Tensor | None,
    generator: torch.Generator | None,
    keep_states: bool,
) -> tuple[Tensor, Tensor | None]:
    """The same loop with out-of-place ops, for autograd to record (double backward)."""
    B, T, _ = xs.shape
    H = plan.H
    mode, lin, sample = plan.mode, plan.has_linear, plan.sample
    diag = plan.structure == "diagonal"
    c = _consts(plan, h0.dtype, h0.device)
    eta_steps = eta.unbind(1) if (mode != "clean" and not sample) else None
    kw = {"dtype": h0.dtype, "device": h0.device, "generator": generator}
    states = []
    h = h0
    uxs = [
        u
        for x_chunk in xs.split(CHUNK, dim=1)
        for u in torch.addmm(b, x_chunk.reshape(-1, xs.shape[2]), U.mT).view(B, -1, H).unbind(1)
    ]
    for k, ux in enumerate(uxs):
        if mode == "paper_code":
            if sample:
                zeta = torch.randn(B, H, **kw)
                eta_u = (torch.rand(B, H, **kw) - c["half"]) * c["root12"]
            else:
                zeta, eta_u = eta_steps[k][:, :H], eta_steps[k][:, H:]
        elif mode == "sde":
            e = torch.randn(B, plan.r, **kw) if sample else eta_steps[k]
        hz = h @ RT
        if lin:
            a = torch.tanh(hz[:, H:] + ux)
            f = hz[:, :H] + a
        else:
            f = torch.tanh(hz + ux)
        if mode == "paper_code":
            r = torch.add(c["c0"], eta_u, alpha=plan.g_mult)
            h_next = torch.addcmul(h, s * r, f).add(zeta, alpha=plan.g_add)
        else:
            h_next = torch.addcmul(h, s, f)
            if mode == "sde":
                if diag:
                    h_next = h_next.addcmul(torch.add(c["g_add"], h, alpha=plan.g_mult), e)
                else:
                    h_next = h_next.add(e[:, :H], alpha=plan.g_add)
                    h_next = h_next.addcmul(h, e[:, H:], value=plan.g_mult)
        h = h_next
        states.append(h)
    return h, (torch.stack(states, dim=1) if keep_states else None)


# --------------------------------------------------------------------- autograd node
class Recurrence(torch.autograd.Function):
    """The whole rollout as one autograd node (module docstring).

    ``Recurrence.apply(plan, generator, keep_states, h0, xs, U, b, RT, s, eta)``
    returns ``(h_T, states)`` with ``states`` (B, T, H) when ``keep_states`` (else an
    empty tensor). ``RT`` is :attr:`StepKernel.RT` (``[alpha A; W]^T``), ``s`` the step
    vector (H,) (``StepKernel.s``, or ``s_mean`` for the clean step) and ``eta`` the
    given draws (no gradient) or None.
    """

    @staticmethod
    def forward(ctx, plan, generator, keep_states, h0, xs, U, b, RT, s, eta):
        ctx.set_materialize_grads(False)
        ctx.plan, ctx.keep_states = plan, keep_states
        ctx.gen_state = generator.get_state() if plan.sample else None
        ctx.gen_device = generator.device if plan.sample else None
        B, T, _ = xs.shape
        ws = _POOL.take(plan, T, B, T, True, h0.dtype, h0.device)
        _loop(plan, ws, xs, h0, U, b, RT, s, eta, generator)
        ctx.lease = _Lease(ws)
        ctx.save_for_backward(h0, xs, U, b, RT, s, eta)
        hT = ws.h[T].clone()
        if keep_states:
            return hT, ws.h[1:].transpose(0, 1).contiguous()
        out_states = hT.new_empty(0)
        ctx.mark_non_differentiable(out_states)
        return hT, out_states

    @staticmethod
    def backward(ctx, grad_hT, grad_states):
        if torch.is_grad_enabled():  # create_graph=True: differentiate a recorded loop
            return _recorded_backward(ctx, grad_hT, grad_states)
        h0, xs, U, b, RT, s, eta = ctx.saved_tensors
        plan = ctx.plan
        ws = ctx.lease.ws
        if ws is None:  # a second backward (retain_graph=True): recompute the forward
            generator = _regenerate(ctx)
            T = xs.shape[1]
            ws = _POOL.take(plan, T, xs.shape[0], T, True, h0.dtype, h0.device)
            _loop(plan, ws, xs, h0, U, b, RT, s, eta, generator)
            ctx.lease = _Lease(ws)
        grads = _backward(ctx, ws, grad_hT, grad_states, h0, xs, U, b, RT, s, eta)
        ctx.lease.release()
        return grads


def _backward(ctx, ws, grad_hT, grad_states, h0, xs, U, b, RT, s, eta):
    plan = ctx.plan
    H = plan.H
    B, T, D = xs.shape
    lin = plan.has_linear
    needs = ctx.needs_input_grad
    want_h0, want_xs, want_U, want_b, want_RT, want_s = needs[3:9]
    mult = plan.mode == "sde" and plan.g_mult != 0.0
    if mult:  # d(G eta)/dh = g_mult * (eta_k or beta_k): the draws of step k
        draws = ws.e if plan.sample else eta.transpose(0, 1)  # (T, B, r)
        draws = draws if plan.structure == "diagonal" else draws[..., H:]
    R = RT.mT.contiguous()  # h @ RT -> grad_h = grad_hz @ RT^T = p (alpha A) + q W
    WA = R[:H] if lin else None
    Wm = R[H:] if lin else R
    fa, rr = ws.fa, ws.r
    g_mult = plan.g_mult
    delta = ws.t1
    if grad_hT is not None:
        delta.copy_(grad_hT)
    else:
        delta.zero_()
    if grad_states is not None:
        delta.add_(grad_states[:, T - 1])
    spare = ws.t2
    acc_s = torch.zeros(B, H, dtype=h0.dtype, device=h0.device) if want_s else None
    p_tmp = None if lin else torch.empty(B, H, dtype=h0.dtype, device=h0.device)
    for k in range(T - 1, -1, -1):
        if lin:
            f, a = fa[0, k], fa[1, k]
            p, q = f, a  # p_k, q_k overwrite f_k, a_k once these are used
        else:
            f = a = q = fa[0, k]
            p = p_tmp
        t = rr[k].mul_(delta) if plan.keeps_r else delta  # delta * r_k
        if want_s:
            acc_s.addcmul_(t, f)
        torch.mul(t, s, out=p)
        torch.ops.aten.tanh_backward.grad_input(p, a, grad_input=q)
        new = torch.addmm(delta, q, Wm, out=spare)
        if lin:
            new.addmm_(p, WA)
        if mult:
            new.addcmul_(delta, draws[k], value=g_mult)
        if grad_states is not None and k:
            new.add_(grad_states[:, k - 1])
        delta, spare = new, delta
    TB = T * B
    g_RT = g_U = g_b = g_xs = g_s = None
    if want_RT:
        hs = ws.h[:T].reshape(TB, H).mT
        if lin:
            g_RT = torch.cat([hs @ fa[0].reshape(TB, H), hs @ fa[1].reshape(TB, H)], dim=1)
        else:
            g_RT = hs @ fa[0].reshape(TB, H)
    Q = fa[-1].reshape(TB, H)
    if want_U or want_b:
        x_aug = torch.cat([xs.transpose(0, 1), xs.new_ones(T, B, 1)], dim=2).reshape(TB, D + 1)
        # (H, D + 1): [dL/dU | dL/db]; computed as (x_aug^T Q)^T, which MKL runs ~8x
        # faster than Q^T x_aug (a thin N = D + 1 product with a transposed tall A)
        g_Ub = (x_aug.mT @ Q).mT
        g_U = g_Ub[:, :D] if want_U else None
        g_b = g_Ub[:, D] if want_b else None
    if want_xs:
        g_xs = (Q @ U).reshape(T, B, D).transpose(0, 1)
    if want_s:
        g_s = acc_s.sum(0)
    g_h0 = delta.clone() if want_h0 else None
    return None, None, None, g_h0, g_xs, g_U, g_b, g_RT, g_s, None


def _regenerate(ctx) -> torch.Generator | None:
    """A generator in the state the forward pass drew from."""
    if not ctx.plan.sample:
        return None
    generator = torch.Generator(device=ctx.gen_device)
    generator.set_state(ctx.gen_state)
    return generator


def _recorded_backward(ctx, grad_hT, grad_states):
    """Backward with ``create_graph=True``: rerun the loop recording a graph, then grad."""
    h0, xs, U, b, RT, s, eta = ctx.saved_tensors
    inputs = (h0, xs, U, b, RT, s)
    wanted = [i for i, t in enumerate(inputs) if ctx.needs_input_grad[3 + i]]
    generator = _regenerate(ctx)
    with torch.enable_grad():
        hT, states = _recorded(ctx.plan, xs, h0, U, b, RT, s, eta, generator, ctx.keep_states)
        outs, grads = [], []
        if grad_hT is not None:
            outs.append(hT)
            grads.append(grad_hT)
        if grad_states is not None and ctx.keep_states:
            outs.append(states)
            grads.append(grad_states)
        got = torch.autograd.grad(
            outs, [inputs[i] for i in wanted], grads, create_graph=True, allow_unused=True
        )
    ctx.lease.release()
    result: list[Tensor | None] = [None] * 10
    for i, g in zip(wanted, got, strict=True):
        result[3 + i] = g
    return tuple(result)


# ----------------------------------------------------------------------- the fallback
def step_loop(
    kernel: StepKernel,
    xs: Tensor,
    h0: Tensor,
    eta: Tensor | None,
    generator: torch.Generator | None,
    keep_states: bool,
) -> tuple[Tensor, Tensor | None]:
    """The plain loop of :meth:`StepKernel.advance` calls, recorded by autograd.

    The reference the fused path is tested against (bitwise), and the path for inputs
    under ``torch.func`` transforms, forward-mode AD or draws that require a gradient.
    Returns ``(h_T, states (B, T, H) or None)``.
    """
    B = xs.shape[0]
    sample = kernel.mode != "clean" and eta is None
    use_eta = kernel.mode != "clean" and eta is not None
    states: list[Tensor] | None = [] if keep_states else None
    e_steps = eta.unbind(1) if use_eta else None
    h = h0
    k = 0
    for x_chunk in xs.split(CHUNK, dim=1):
        for ux in kernel.project(x_chunk).unbind(1):
            if sample:
                e = kernel.draw(B, dtype=h.dtype, device=h.device, generator=generator)
            else:
                e = e_steps[k] if use_eta else None
            h, _ = kernel.advance(h, ux, e)
            if states is not None:
                states.append(h)
            k += 1
    return h, (torch.stack(states, dim=1) if keep_states else None)


def _forward_ad_active() -> bool:
    return getattr(torch.autograd.forward_ad, "_current_level", -1) >= 0


def run(
    kernel: StepKernel,
    xs: Tensor,
    h0: Tensor,
    eta: Tensor | None,
    generator: torch.Generator | None,
    keep_states: bool,
) -> tuple[Tensor, Tensor | None]:
    """Roll ``kernel`` over ``xs`` (B, T, D) from ``h0``: ``(h_T, states (B, T, H) or None)``.

    ``eta`` (B, T, r) are given draws, or None to draw from ``generator`` (a resolved
    generator when the kernel is noisy). Takes the fused loop (module docstring) unless
    an input needs :func:`step_loop`.
    """
    p = kernel.params
    RT = kernel.RT
    s = kernel.s if kernel.mode != "clean" else kernel.s_mean
    tensors = (xs, h0, p.U, p.b, RT, s) + ((eta,) if eta is not None else ())
    grad_on = torch.is_grad_enabled()
    if (
        any(is_transformed(t) for t in tensors)
        or (grad_on and _forward_ad_active())
        or (eta is not None and grad_on and eta.requires_grad)
    ):
        return step_loop(kernel, xs, h0, eta, generator, keep_states)
    plan = _Plan.of(kernel, sample=kernel.mode != "clean" and eta is None)
    B, T, _ = xs.shape
    if grad_on and any(t.requires_grad for t in tensors):
        hT, states = Recurrence.apply(plan, generator, keep_states, h0, xs, p.U, p.b, RT, s, eta)
        return hT, (states if keep_states else None)
    ws = _POOL.take(plan, T, B, 1, keep_states, h0.dtype, h0.device)
    _loop(plan, ws, xs, h0, p.U, p.b, RT, s, eta, generator)
    hT = ws.h[T if keep_states else T & 1].clone()
    states = ws.h[1:].transpose(0, 1).contiguous() if keep_states else None
    _POOL.give(ws)
    return hT, states
