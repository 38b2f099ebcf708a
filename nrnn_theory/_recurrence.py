r"""The rollout's time loop, with a hand-written backward through time.

:func:`run` is the loop behind :func:`nrnn_theory.rollout` (and so behind every model's
forward pass). It advances the unified step of :mod:`nrnn_theory._step`

.. math:: h_{k+1} = h_k + S_k\odot f(h_k, x_k) + G(h_k)\,\eta_k,\qquad
          f(h, x) = \alpha A h + \tanh(W h + U x + b),

with :math:`S_k = s` (clean, ``"sde"``) or :math:`S_k = s\odot r_k`,
:math:`r_k = 1 - \tfrac\mu2 + \tfrac{\mu}{\sqrt{12}}\eta_{k,H:}` (``"paper_code"``), in
exactly the floating-point operations of :meth:`StepKernel.advance
<nrnn_theory._step.StepKernel.advance>`, so its states are bitwise those of a loop of
``advance`` calls, and it draws the noise from the generator in the same order as
:meth:`StepKernel.draw <nrnn_theory._step.StepKernel.draw>` (bitwise the noise path of
:func:`~nrnn_theory.sample_noise`).

When a gradient is needed, the whole loop is one :class:`torch.autograd.Function`,
:class:`Recurrence`. Its forward records no graph and keeps per step only what
backpropagation through time needs: the state :math:`h_k`, the activation
:math:`a_k = \tanh(z_k)`, and, when they are needed, :math:`f_k` (for a gradient in the
step) and the noise factors :math:`r_k` or :math:`\eta_k`. Its backward runs, from
:math:`\delta_T = \partial L/\partial h_T`, for :math:`k = T-1, \dots, 0`

.. math::
    p_k = \delta_{k+1}\odot S_k,\qquad q_k = p_k\odot(1 - a_k^2),\qquad
    \delta_k = \delta_{k+1} + [p_k\ q_k]\begin{bmatrix}\alpha A\\ W\end{bmatrix}
               + \delta_{k+1}\odot\partial_h(G\eta_k),

(row vectors, one GEMM per step) and accumulates the parameter gradients

.. math::
    \partial L/\partial[\alpha A;W]^\top \mathrel{+}= h_k^\top[p_k\ q_k],\quad
    \partial L/\partial U \mathrel{+}= q_k^\top x_k,\quad
    \partial L/\partial b \mathrel{+}= \textstyle\sum_b q_k,\quad
    \partial L/\partial s \mathrel{+}= \textstyle\sum_b \delta_{k+1}\odot r_k\odot f_k,

where :math:`\partial_h(G\eta)` is :math:`\epsilon\sqrt{\Delta t}\sigma_2\eta_k` (diagonal
``"sde"``), :math:`\epsilon\sqrt{\Delta t}\sigma_2\beta_k` (scalar ``"sde"``) or 0. The
weight-gradient products use the per-step tensors where they lie: stacking them into one
``(H, B T) @ (B T, 2H)`` product needs buffers of O(T B H) bytes, and on CPU the first
touch of such a buffer (fresh pages from the kernel on every call) costs more than the
GEMM saves (see ``benchmarks/README.md``).

A backward with ``create_graph=True`` (double backward, e.g. Hessian-vector products)
recomputes the loop with autograd recording and differentiates that, so higher
derivatives stay exact; inputs wrapped by ``torch.func`` transforms, forward-mode dual
tensors and noise draws that require a gradient take :func:`step_loop`, the plain loop
of ``advance`` calls, instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nrnn_theory._contract import is_transformed
from nrnn_theory._step import SQRT12, StepKernel


__all__ = ["CHUNK", "Recurrence", "run", "step_loop"]

#: Time steps whose input projection is computed at once; bounds the no-grad memory
#: of a rollout to O(B * H * CHUNK) whatever T is.
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


class _Saved:
    """Per-step tensors kept for the backward pass."""

    __slots__ = ("a", "e", "f", "h", "r")

    def __init__(self) -> None:
        self.h: list[Tensor] = []  # h_1 .. h_{T-1} (h_0 is an input)
        self.a: list[Tensor] = []  # tanh(z_k)
        self.f: list[Tensor] = []  # f_k, when the step needs a gradient
        self.r: list[Tensor] = []  # paper_code: r_k
        self.e: list[Tensor] = []  # sde with multiplicative noise: the draws


def _forward(
    plan: _Plan,
    xs: Tensor,
    h0: Tensor,
    U: Tensor,
    b: Tensor,
    RT: Tensor,
    s: Tensor,
    eta: Tensor | None,
    generator: torch.Generator | None,
    saved: _Saved | None,
    keep_states: bool,
    keep_f: bool,
) -> tuple[Tensor, list[Tensor] | None]:
    """The time loop. Only out-of-place and in-place ops on fresh tensors (no ``out=``),
    so it is differentiable when run with autograd recording (double backward)."""
    B, _, D = xs.shape
    H = plan.H
    mode, lin, sample = plan.mode, plan.has_linear, plan.sample
    diag = plan.structure == "diagonal"
    dtype, device = h0.dtype, h0.device
    noisy = mode != "clean"

    # Python floats in tensor ops are wrapped and cast on every call; 0-dim tensors of
    # the state's dtype give the same values (the scalar is cast to that dtype either
    # way) without the per-call cast.
    def const(v: float) -> Tensor:
        return torch.tensor(v, dtype=dtype, device=device)

    g_add, g_mult, c0 = const(plan.g_add), const(plan.g_mult), const(plan.c0)
    half, root12 = const(0.5), const(SQRT12)
    fast_uniform = device.type == "cpu" and dtype in (torch.float32, torch.float64)
    bits = 24 if dtype == torch.float32 else 53  # the random bits of torch.rand
    top, mid, root12_ulp = 2**bits, const(2.0 ** (bits - 1)), const(SQRT12 * 2.0**-bits)
    has_add, has_mult = plan.g_add != 0.0, plan.g_mult != 0.0
    states: list[Tensor] | None = [] if keep_states else None
    eta_steps = eta.unbind(1) if (noisy and not sample) else None
    UT = U.mT
    h = h0
    k = 0
    for x_chunk in xs.split(CHUNK, dim=1):
        # Bitwise StepKernel.project: one addmm per chunk, batch-major rows.
        uxs = torch.addmm(b, x_chunk.reshape(-1, D), UT).reshape(B, -1, H).unbind(1)
        for ux in uxs:
            # ---- the noise of this step (the order and arithmetic of StepKernel.draw)
            if mode == "paper_code":
                if sample:
                    zeta = torch.randn(B, H, dtype=dtype, device=device, generator=generator)
                    if fast_uniform:
                        # On CPU torch.rand(B, H) is k * 2**-m with k = random_(0, 2**m)
                        # (m = 24, 53), so u - 1/2 = (k - 2**(m-1)) * 2**-m exactly and this
                        # is bitwise SQRT12 * (rand(B, H) - 0.5) of StepKernel.draw, faster.
                        k_u = torch.empty(B, H, dtype=dtype, device=device)
                        k_u = k_u.random_(0, top, generator=generator)
                        eta_u = k_u.sub_(mid).mul_(root12_ulp)
                    else:
                        u = torch.rand(B, H, dtype=dtype, device=device, generator=generator)
                        eta_u = u.sub_(half).mul_(root12)
                else:
                    e = eta_steps[k]
                    zeta, eta_u = e[:, :H], e[:, H:]
            elif mode == "sde":
                if sample:
                    e = torch.randn(B, plan.r, dtype=dtype, device=device, generator=generator)
                else:
                    e = eta_steps[k]
            # ---- drift (StepKernel.drift)
            hz = torch.mm(h, RT)
            if lin:
                a = torch.tanh_(hz[:, H:] + ux)
                f = hz[:, :H] + a
            else:
                a = torch.tanh_(hz + ux)
                f = a
            # ---- the step (StepKernel.advance, op for op)
            if mode == "paper_code":
                r = (eta_u * g_mult).add_(c0)
                h_next = h + (s * r) * f
                if has_add:
                    h_next = h_next.add_(zeta * g_add)
            else:
                h_next = h + s * f
                if mode == "sde":
                    if diag:
                        if has_mult:
                            h_next = h_next.add_((h * g_mult).add_(g_add).mul_(e))
                        else:
                            h_next = h_next.add_(e * g_add)
                    else:
                        if has_add:
                            h_next = h_next.add_(e[:, :H] * g_add)
                        if has_mult:
                            h_next = h_next.add_((h * g_mult).mul_(e[:, H:]))
            if saved is not None:
                if k:
                    saved.h.append(h)
                saved.a.append(a)
                if keep_f:
                    saved.f.append(f)
                if mode == "paper_code":
                    saved.r.append(r)
                elif mode == "sde" and has_mult:
                    saved.e.append(e if diag else e[:, H:])
            h = h_next
            if states is not None:
                states.append(h)
            k += 1
    return h, states


class Recurrence(torch.autograd.Function):
    """The whole rollout as one autograd node (module docstring).

    ``Recurrence.apply(plan, generator, keep_states, h0, xs, U, b, RT, s, eta)``
    returns ``(h_T, states)`` with ``states`` (B, T, H) when ``keep_states`` (else an
    empty tensor). ``RT`` is :attr:`StepKernel.RT` (``[alpha A; W]^T``), ``s`` the step
    vector (H,) (``StepKernel.s`` or ``s_mean``), ``eta`` the given draws (no gradient)
    or None.
    """

    @staticmethod
    def forward(ctx, plan, generator, keep_states, h0, xs, U, b, RT, s, eta):
        ctx.set_materialize_grads(False)
        ctx.plan, ctx.keep_states = plan, keep_states
        ctx.gen_state = generator.get_state() if plan.sample else None
        ctx.gen_device = generator.device if plan.sample else None
        keep_f = ctx.needs_input_grad[8]
        saved = _Saved()
        hT, states = _forward(plan, xs, h0, U, b, RT, s, eta, generator, saved, keep_states, keep_f)
        ctx.saved = saved
        ctx.save_for_backward(h0, xs, U, b, RT, s, eta)
        out_states = torch.stack(states, dim=1) if keep_states else hT.new_empty(0)
        if not keep_states:
            ctx.mark_non_differentiable(out_states)
        return hT, out_states

    @staticmethod
    def backward(ctx, grad_hT, grad_states):
        h0, xs, U, b, RT, s, eta = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph=True: differentiate a recorded loop
            return _recorded_backward(ctx, grad_hT, grad_states)
        plan, saved = ctx.plan, ctx.saved
        H = plan.H
        B, T, D = xs.shape
        lin = plan.has_linear
        paper = plan.mode == "paper_code"
        mult = plan.mode == "sde" and plan.g_mult != 0.0
        g_mult = plan.g_mult
        R = RT.mT.contiguous()  # (2H, H) or (H, H): h @ RT -> grad_h = grad_hz @ R
        want_h0, want_xs, want_U, want_b, want_RT, want_s = (
            needs[3],
            needs[4],
            needs[5],
            needs[6],
            needs[7],
            needs[8],
        )
        delta = grad_hT if grad_hT is not None else h0.new_zeros(B, H)
        if grad_states is not None:
            delta = delta + grad_states[:, T - 1]
        g_RT = torch.zeros_like(RT) if want_RT else None
        g_U = torch.zeros_like(U) if want_U else None
        acc_b = h0.new_zeros(B, H) if want_b else None
        acc_s = h0.new_zeros(B, H) if want_s else None
        g_x: list[Tensor] = [] if want_xs else None
        xsteps = xs.unbind(1) if want_U else None
        width = 2 * H if lin else H
        for k in range(T - 1, -1, -1):
            a = saved.a[k]
            h = saved.h[k - 1] if k else h0
            pq = torch.empty(B, width, dtype=delta.dtype, device=delta.device)
            if lin:
                p, q = pq[:, :H], pq[:, H:]
            else:
                p = q = pq
            if paper:
                t = delta * saved.r[k]  # delta * r_k; p = delta * S_k = t * s
                torch.mul(t, s, out=p)
            else:
                t = delta
                torch.mul(delta, s, out=p)
            torch.ops.aten.tanh_backward.grad_input(p, a, grad_input=q)
            new = torch.addmm(delta, pq, R)
            if mult:
                new.addcmul_(delta, saved.e[k], value=g_mult)
            if want_RT:
                g_RT.addmm_(h.mT, pq)
            if want_U:
                g_U.addmm_(q.mT, xsteps[k])
            if want_b:
                acc_b.add_(q)
            if want_xs:
                g_x.append(q @ U)
            if want_s:
                acc_s.addcmul_(t, saved.f[k])
            if grad_states is not None and k:
                new.add_(grad_states[:, k - 1])
            delta = new
        g_xs = torch.stack(g_x[::-1], dim=1) if want_xs else None
        g_b = acc_b.sum(0) if want_b else None
        g_s = acc_s.sum(0) if want_s else None
        return (
            None,
            None,
            None,
            delta if want_h0 else None,
            g_xs,
            g_U,
            g_b,
            g_RT,
            g_s,
            None,
        )


def _recorded_backward(ctx, grad_hT, grad_states):
    """Backward with ``create_graph=True``: rerun the loop recording a graph, then grad."""
    h0, xs, U, b, RT, s, eta = ctx.saved_tensors
    plan = ctx.plan
    generator = None
    if plan.sample:
        generator = torch.Generator(device=ctx.gen_device)
        generator.set_state(ctx.gen_state)
    inputs = (h0, xs, U, b, RT, s)
    wanted = [i for i, t in enumerate(inputs) if ctx.needs_input_grad[3 + i]]
    with torch.enable_grad():
        hT, states = _forward(
            plan, xs, h0, U, b, RT, s, eta, generator, None, ctx.keep_states, False
        )
        outs, grads = [], []
        if grad_hT is not None:
            outs.append(hT)
            grads.append(grad_hT)
        if grad_states is not None and ctx.keep_states:
            outs.append(torch.stack(states, dim=1))
            grads.append(grad_states)
        got = torch.autograd.grad(
            outs,
            [inputs[i] for i in wanted],
            grads,
            create_graph=True,
            allow_unused=True,
        )
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

    The reference the fused path is tested against, and the path for inputs under
    ``torch.func`` transforms, forward-mode AD or draws that require a gradient.
    Returns ``(h_T, states (B, T, H) or None)``.
    """
    B = xs.shape[0]
    sample = kernel.mode != "clean" and eta is None
    use_eta = kernel.mode != "clean" and eta is not None
    states: list[Tensor] | None = [] if keep_states else None
    eta_chunks = eta.split(CHUNK, dim=1) if use_eta else None
    h = h0
    for c, x_chunk in enumerate(xs.split(CHUNK, dim=1)):
        ux_steps = kernel.project(x_chunk).unbind(1)
        e_steps = eta_chunks[c].unbind(1) if use_eta else None
        for j, ux in enumerate(ux_steps):
            if sample:
                e = kernel.draw(B, dtype=h.dtype, device=h.device, generator=generator)
            else:
                e = e_steps[j] if use_eta else None
            h, _ = kernel.advance(h, ux, e)
            if states is not None:
                states.append(h)
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

    ``eta`` (B, T, r) are given draws, or None to draw from ``generator`` (which must
    then be a resolved generator when the kernel is noisy). Chooses the fused loop
    (module docstring) unless an input needs :func:`step_loop`.
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
    if grad_on and any(t.requires_grad for t in tensors):
        hT, states = Recurrence.apply(plan, generator, keep_states, h0, xs, p.U, p.b, RT, s, eta)
        return hT, (states if keep_states else None)
    hT, states = _forward(plan, xs, h0, p.U, p.b, RT, s, eta, generator, None, keep_states, False)
    return hT, (torch.stack(states, dim=1) if keep_states else None)
