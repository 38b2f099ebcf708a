r"""Objectives: losses of a model on fixed data as pure functions of named tensors.

The curvature estimators of :mod:`nrnn_theory.flatness` (docs/theory/flatness.md) take a loss
``loss_fn(params) -> scalar tensor`` on a mapping of named tensors. This module builds
such callables from models:

* :func:`nrnn_loss`: an :class:`~nrnn_theory.NRNNParams` (optionally in the
  Lipschitz-RNN free matrices ``M_A, M_W``), with a second-order forward pass
  ``loss_fn.quadratic_form`` that :func:`~nrnn_theory.estimate_hessian_trace` uses;
* :func:`module_loss`: any ``nn.Module`` mapping (B, T, D) inputs to logits, through
  ``torch.func.functional_call`` (the module is never mutated).

Noise is off, or a frozen path that is never resampled between calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor
from torch.func import functional_call

from nrnn_theory._contract import (
    check_eta,
    check_finite,
    check_noise,
    check_params,
    check_real,
    check_tensor,
    check_xs,
)
from nrnn_theory._linalg import lipschitz_matrix, skew, sym
from nrnn_theory._step import StepKernel
from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory.losses import check_labels


__all__ = ["LossFn", "module_loss", "nrnn_loss"]

#: A loss on a mapping of named tensors, returning a 0-dim tensor.
#: A loss as a function of named parameter tensors: ``loss_fn(mapping) -> Tensor`` (0-dim).
LossFn = Callable[[Mapping[str, Tensor]], Tensor]


def select_names(
    names: Sequence[str] | str | None, available: Sequence[str], *, argument: str = "names"
) -> tuple[str, ...]:
    """The names among ``available`` (all by default); a missing name, or none, raises a
    ``ValueError`` naming ``argument``. Package-internal (also used by
    :mod:`nrnn_theory.flatness` for its blocks); not in ``__all__``."""
    if names is None:
        return tuple(available)
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    if not names:
        raise ValueError(f"{argument}: expected at least one of {list(available)}, got none")
    for k in names:
        if k not in available:
            raise ValueError(f"{argument}: expected names among {list(available)}, got {k!r}")
    return names


def nrnn_loss(
    params: NRNNParams,
    xs: Tensor,
    labels: Tensor,
    *,
    names: Sequence[str] | None = None,
    noise: NoiseSpec | None = None,
    eta: Tensor | None = None,
    h0: Tensor | None = None,
    beta: float | None = None,
    gamma_A: float = 0.0,
    gamma_W: float = 0.0,
) -> tuple[LossFn, dict[str, Tensor]]:
    r"""The mean cross-entropy of an NRNN on fixed data, as a function of named tensors.

    .. math:: L(\theta) = \frac1B\sum_{i=1}^B \mathrm{CE}(V h_M^{(i)}(\theta) + c,\ y_i)

    The rollout is clean (inference) unless ``noise`` and a frozen ``eta`` path are
    given; the path is fixed inside the returned callable, so every probe sees the
    same noise (docs/theory/flatness.md: noise off, or frozen and never resampled).

    Parameters
    ----------
    params : NRNNParams
        The model; tensors are copied (detached), not referenced for mutation.
    xs : Tensor, shape (B, T, D)
        A fixed data subset.
    labels : Tensor, shape (B,)
        Integer class indices.
    names : Sequence[str], optional
        Which tensors are variables: among ``A, W, U, b, V, c`` and ``step`` (when
        ``params.step`` is set), or ``M_A, M_W`` instead of ``A, W`` with ``beta``.
        Default: all of them. The others are held fixed.
    noise : NoiseSpec, optional
    eta : Tensor, shape (B, T, r), optional
        A frozen path of standardized draws (:func:`~nrnn_theory.sample_noise`);
        required with ``noise``.
    h0 : Tensor, shape (B, H), optional
    beta, gamma_A, gamma_W : float, optional
        With ``beta`` in (0, 1), differentiate in the Lipschitz-RNN free matrices
        ``M_A, M_W`` of docs/theory/model.md instead of ``A, W``. They are recovered from
        ``A, W`` exactly (the map is invertible for ``0 < beta < 1``):
        :math:`M = \mathrm{sym}(A + \gamma I)/(2(1-\beta)) + \mathrm{skew}(A)/(2\beta)`.

    Returns
    -------
    loss_fn : callable
        ``loss_fn(mapping) -> Tensor`` (0-dim); missing names take their fixed values.
        It also has ``loss_fn.quadratic_form(mapping, directions) -> Tensor (P,)``,
        :math:`v_j^\top\nabla^2L\,v_j` for directions given as ``(P, *shape)`` per name
        (missing names: zero), by a second-order forward pass that
        :func:`estimate_hessian_trace` uses.
    params : dict[str, Tensor]
        The starting point: the variables' current values.

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(2), W=torch.zeros(2, 2), U=torch.ones(2, 1),
    ...                b=torch.zeros(2), V=torch.eye(2), c=torch.zeros(2), dt=0.5)
    >>> loss_fn, theta = nrnn_loss(p, torch.ones(4, 3, 1), torch.tensor([0, 1, 0, 1]))
    >>> sorted(theta), round(float(loss_fn(theta)), 4)
    (['A', 'U', 'V', 'W', 'b', 'c'], 0.6931)
    """
    params = check_params(params).detach()
    noise = check_noise(noise)
    xs = check_xs(params, xs)
    B, T, _ = xs.shape
    if B == 0:
        raise ValueError("xs: expected at least one example (B >= 1), got an empty batch")
    labels = check_labels(labels, B, params.num_classes, xs.device)
    if noise is not None and eta is None:
        raise ValueError(
            "eta: expected a frozen noise path (B, T, r) with noise, so that every "
            "probe sees the same noise (draw one with sample_noise); got None"
        )
    eta = check_eta(params, noise, eta, (B, T))
    if h0 is None:
        h0 = xs.new_zeros(B, params.hidden_size)
    else:
        h0 = check_tensor("h0", h0)
        if h0.shape != (B, params.hidden_size):
            raise ValueError(
                f"h0: expected shape ({B}, {params.hidden_size}), got {tuple(h0.shape)}"
            )
        check_finite("h0", h0)
    fixed: dict[str, Tensor] = {
        "A": params.A,
        "W": params.W,
        "U": params.U,
        "b": params.b,
        "V": params.V,
        "c": params.c,
    }
    if params.step is not None:
        fixed["step"] = params.step
    lipschitz = beta is not None
    if lipschitz:
        beta = check_real("beta", beta)
        if not 0.0 < beta < 1.0:
            raise ValueError(
                f"beta: expected 0 < beta < 1 to recover M_A, M_W from A, W, got {beta}"
            )
        gamma_A = check_real("gamma_A", gamma_A)
        gamma_W = check_real("gamma_W", gamma_W)
        eye = torch.eye(params.hidden_size, dtype=params.dtype, device=params.device)
        for key, gamma in (("A", gamma_A), ("W", gamma_W)):
            M = fixed.pop(key)
            fixed["M_" + key] = sym(M + gamma * eye) / (2 * (1 - beta)) + skew(M) / (2 * beta)
    names = select_names(names, tuple(fixed))
    loss_fn = _NRNNLoss(
        fixed=fixed,
        xs=xs,
        labels=labels,
        noise=noise,
        eta=eta,
        h0=h0,
        dt=params.dt,
        alpha=params.alpha,
        lipschitz=(beta, gamma_A, gamma_W) if lipschitz else None,
    )
    start = {k: fixed[k].clone() for k in names}
    return loss_fn, start


class _NRNNLoss:
    r"""The callable returned by :func:`nrnn_loss`, with a forward-mode quadratic form.

    Calling it gives the mean cross-entropy. :meth:`quadratic_form` gives
    :math:`v^\top\nabla^2L\,v = \frac{d^2}{dt^2}L(\theta + tv)|_{t=0}` for a batch of
    directions by propagating the second-order Taylor coefficients
    :math:`(h, \dot h, \ddot h)` forward through the recurrence (docs/theory/flatness.md):

    .. math:: z = Wh + Ux + b,\quad \dot z = W\dot h + \dot Wh + \dot Ux + \dot b,\quad
              \ddot z = W\ddot h + 2\dot W\dot h,

    :math:`\dot a = a'\dot z`, :math:`\ddot a = a'\ddot z - 2 a a'\dot z^2` for
    :math:`a = \tanh z`, :math:`a' = 1 - a^2`, and likewise through the linear term,
    the step (:math:`\ddot h_{k+1} = \ddot h_k + s\odot\ddot f + 2\dot s\odot\dot f`) and
    the frozen noise (linear in :math:`h`). At the readout,
    :math:`\frac{d^2}{dt^2}\mathrm{CE} = \dot o^\top\Pi_p\dot o + (p - e_y)^\top\ddot o`.
    This costs eight (B, H) @ (H, H) products per step and direction where a
    Hessian-vector product by double backward costs about twelve, and stores no graph:
    memory is O(P B H) whatever the sequence length.

    The pass carries :math:`\dot h` and the Taylor coefficient :math:`\ddot h/2`, and
    does all products of a step in one batched product per direction,

    .. math:: \begin{bmatrix}\dot h & h & x & 1\\ \ddot h/2 & \dot h & 0 & 0\end{bmatrix}
              \begin{bmatrix}M_1^\top & W^\top\\ N^\top & \dot W^\top\\
              0 & \dot U^\top\\ 0 & \dot b^\top\end{bmatrix},

    whose right half is :math:`(\dot z, \ddot z/2)`. When the step :math:`s` is fixed
    (clean or ``"sde"`` noise, and no ``step`` direction) it is folded into the left
    block, :math:`M_1 = I + \mathrm{diag}(s)\alpha A`, :math:`N = \mathrm{diag}(s)\alpha\dot A`,
    which then gives :math:`\dot h + s\odot\alpha(A\dot h + \dot Ah)` directly; otherwise
    :math:`M_1 = \alpha A`, :math:`N = \alpha\dot A` and the step multiplies after.
    """

    def __init__(self, *, fixed, xs, labels, noise, eta, h0, dt, alpha, lipschitz):
        self.fixed = fixed
        self.xs = xs
        self.labels = labels
        self.noise = noise
        self.eta = eta
        self.h0 = h0
        self.dt = dt
        self.alpha = alpha
        self.lipschitz = lipschitz

    def _params(self, mapping: Mapping[str, Tensor]) -> NRNNParams:
        t = {**self.fixed, **mapping}
        if self.lipschitz is not None:
            beta, gamma_A, gamma_W = self.lipschitz
            A = lipschitz_matrix(t["M_A"], beta, gamma_A)
            W = lipschitz_matrix(t["M_W"], beta, gamma_W)
        else:
            A, W = t["A"], t["W"]
        return NRNNParams(
            A=A, W=W, U=t["U"], b=t["b"], V=t["V"], c=t["c"], dt=self.dt, step=t.get("step"),
            alpha=self.alpha,
        )  # fmt: skip

    def _draws(self) -> Sequence[Tensor | None]:
        T = self.xs.shape[1]
        return self.eta.unbind(1) if self.eta is not None else (None,) * T

    def __call__(self, mapping: Mapping[str, Tensor]) -> Tensor:
        prm = self._params(mapping)
        kernel = StepKernel(prm, self.noise)
        h = self.h0
        for ux, e in zip(kernel.project(self.xs).unbind(1), self._draws(), strict=True):
            h, _ = kernel.advance(h, ux, e)
        return torch.nn.functional.cross_entropy(h @ prm.V.mT + prm.c, self.labels)

    def quadratic_form(
        self, mapping: Mapping[str, Tensor], directions: Mapping[str, Tensor]
    ) -> Tensor:
        r""":math:`v_j^\top\nabla^2L\,v_j` for directions ``(P, *shape)`` per name; (P,)."""
        prm = self._params(mapping)
        kernel = StepKernel(prm, self.noise)
        d = directions
        if self.lipschitz is not None:
            beta = self.lipschitz[0]
            dA = lipschitz_matrix(d["M_A"], beta, 0.0) if "M_A" in d else None
            dW = lipschitz_matrix(d["M_W"], beta, 0.0) if "M_W" in d else None
        else:
            dA, dW = d.get("A"), d.get("W")
        dU, db, dV, dc, dstep = (d.get(k) for k in ("U", "b", "V", "c", "step"))
        P = next(iter(d.values())).shape[0]
        B, _, D = self.xs.shape
        H = prm.hidden_size
        mode, structure = kernel.mode, kernel.structure
        linear = kernel.has_linear
        # The step is the same at every step unless it follows a paper_code draw.
        fold = dstep is None and not (mode == "paper_code" and self.eta is not None)
        z = {"dtype": self.xs.dtype, "device": self.xs.device}
        # Right operand (P, 2H + D + 1, 2H) of the step's one batched product.
        R = torch.zeros(P, 2 * H + D + 1, 2 * H, **z)
        s_fixed = kernel.effective_step(None)
        if fold:
            R[:, :H, :H] = torch.eye(H, **z)
        if linear:
            scale = (s_fixed * prm.alpha).unsqueeze(-1) if fold else prm.alpha
            R[:, :H, :H] += (scale * prm.A).mT
            if dA is not None:
                R[:, H : 2 * H, :H] = (scale * dA).mT
        R[:, :H, H:] = prm.W.mT
        if dW is not None:
            R[:, H : 2 * H, H:] = dW.mT
        if dU is not None:
            R[:, 2 * H : 2 * H + D, H:] = dU.mT
        if db is not None:
            R[:, 2 * H + D, H:] = db
        # Left operands (P, 2B, 2H + D + 1): rows [h1 | h | x 1] and [c2 | h1 | 0 0], with
        # h1 the first-order and c2 the second-order Taylor coefficient; two buffers.
        cur = torch.zeros(P, 2 * B, 2 * H + D + 1, **z)
        nxt = torch.zeros_like(cur)
        ones = torch.ones(*self.xs.shape[:2], 1, **z)
        x_aug = torch.cat([self.xs, ones], dim=-1).unbind(1)
        h = self.h0
        for x, ux, e in zip(x_aug, kernel.project(self.xs).unbind(1), self._draws(), strict=True):
            if dstep is not None:
                f, _ = kernel.drift(h, ux)
            h_next, a = kernel.advance(h, ux, e)
            g = 1.0 - a * a
            cur[:, :B, H : 2 * H] = h
            cur[:, :B, 2 * H :] = x
            Y = torch.bmm(cur, R)  # (P, 2B, 2H)
            h1, c2 = cur[:, :B, :H], cur[:, B:, :H]
            h1n, c2n = nxt[:, :B, :H], nxt[:, B:, :H]
            z1 = Y[:, :B, H:]
            if fold:
                sg = s_fixed * g
                torch.addcmul(Y[:, :B, :H], sg, z1, out=h1n)
                torch.addcmul(Y[:, B:, :H], sg, Y[:, B:, H:], out=c2n)
                c2n.addcmul_(sg * a, z1.square(), value=-1.0)
            else:
                s = kernel.effective_step(e)
                f1 = torch.addcmul(Y[:, :B, :H], g, z1)  # first derivative of the drift
                f2 = torch.addcmul(Y[:, B:, :H], g, Y[:, B:, H:])  # half the second
                f2.addcmul_(a * g, z1.square(), value=-1.0)
                torch.addcmul(h1, s, f1, out=h1n)
                torch.addcmul(c2, s, f2, out=c2n)
                if dstep is not None:
                    s1 = dstep[:, None, :]
                    if mode == "paper_code" and e is not None:  # s_eff = step * factor
                        mu = kernel.noise.multiplicative
                        s1 = s1 * (1.0 - 0.5 * mu + kernel.g_mult * e[:, H:])
                    h1n.addcmul_(s1, f)
                    c2n.addcmul_(s1, f1)
            if mode == "sde" and e is not None and kernel.g_mult:  # noise c0 + c1 * h
                c1 = kernel.g_mult * (e if structure == "diagonal" else e[:, H:])
                h1n.addcmul_(c1, h1)
                c2n.addcmul_(c1, c2)
            nxt[:, B:, H : 2 * H] = h1n
            h = h_next
            cur, nxt = nxt, cur
        h1, c2 = cur[:, :B, :H], cur[:, B:, :H]
        o = h @ prm.V.mT + prm.c
        o1 = h1 @ prm.V.mT
        o2 = c2 @ prm.V.mT  # half the second derivative of the logits
        if dV is not None:
            o1 = o1 + torch.matmul(h, dV.mT)
            o2 = o2 + torch.matmul(h1, dV.mT)
        if dc is not None:
            o1 = o1 + dc[:, None, :]
        p = torch.softmax(o, dim=-1)
        po1 = (p * o1).sum(-1)
        quad = (p * o1 * o1).sum(-1) - po1 * po1
        r = p - torch.nn.functional.one_hot(self.labels, p.shape[-1]).to(p.dtype)
        quad = quad + 2.0 * (r * o2).sum(-1)
        return quad.mean(-1)


def module_loss(
    module: torch.nn.Module,
    xs: Tensor,
    labels: Tensor,
    *,
    names: Sequence[str] | None = None,
    forward_kwargs: Mapping[str, object] | None = None,
    check_deterministic: bool = True,
) -> tuple[LossFn, dict[str, Tensor]]:
    r"""The mean cross-entropy of any ``nn.Module`` on fixed data, as a pure function.

    ``loss_fn(mapping)`` evaluates ``torch.func.functional_call(module, mapping, (xs,),
    forward_kwargs)``: the module's own parameters are never modified, read for
    gradients or replaced outside that call. Parameters not in ``names`` and all
    buffers keep their current values.

    Parameters
    ----------
    module : torch.nn.Module
        Maps inputs (B, T, D) to logits (B, C). Left untouched, including its
        ``training`` flag: put it in the mode you want measured before calling.
    xs : Tensor, shape (B, T, D)
    labels : Tensor, shape (B,)
    names : Sequence[str], optional
        Names (as in ``named_parameters()``) of the variables; default all.
    forward_kwargs : Mapping[str, object], optional
        Extra keyword arguments of ``forward``, e.g. ``{"noise": None}`` for the clean
        pass, or ``{"noise": spec, "eta": eta}`` for a frozen noise path of shape
        (B, T, r) from :func:`~nrnn_theory.sample_noise`.
    check_deterministic : bool
        Evaluate the loss twice and raise if the values differ: a forward that
        resamples noise (or applies dropout) between calls would make every
        curvature estimate meaningless.

    Returns
    -------
    loss_fn : callable
    params : dict[str, Tensor]
        Detached copies of the variables' current values.

    Raises
    ------
    ValueError
        On unknown names, logits not of shape (B, C), labels out of range, or a
        non-deterministic forward.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 3))
    >>> loss_fn, theta = module_loss(net, torch.zeros(2, 3, 2), torch.tensor([0, 2]))
    >>> sorted(theta), theta["1.bias"].requires_grad
    (['1.bias', '1.weight'], False)
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    xs = check_tensor("xs", xs)
    if xs.ndim != 3:
        raise ValueError(f"xs: expected shape (B, T, D), got {tuple(xs.shape)}")
    all_params = dict(module.named_parameters())
    if not all_params:
        raise ValueError("module: expected at least one parameter, got none")
    names = select_names(names, tuple(all_params))
    kwargs = dict(forward_kwargs or {})
    fixed = {k: v.detach() for k, v in all_params.items() if k not in names}
    fixed.update({k: b.detach() for k, b in module.named_buffers()})
    start = {k: all_params[k].detach().clone() for k in names}
    with torch.no_grad():
        out = functional_call(module, {**fixed, **start}, (xs,), kwargs)
    if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != xs.shape[0]:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"module: expected forward(xs) to return logits (B, C) with B = {xs.shape[0]}, "
            f"got {shape}"
        )
    labels = check_labels(labels, xs.shape[0], out.shape[1], xs.device)

    def loss_fn(mapping: Mapping[str, Tensor]) -> Tensor:
        logits_ = functional_call(module, {**fixed, **mapping}, (xs,), kwargs)
        return torch.nn.functional.cross_entropy(logits_, labels)

    if check_deterministic:
        with torch.no_grad():
            first, second = loss_fn(start), loss_fn(start)
        if not torch.equal(first, second):
            raise ValueError(
                "module: two forward passes at the same parameters gave different losses "
                f"({float(first)!r} and {float(second)!r}); the forward is random (noise "
                "resampled, or dropout in training mode). Pass a frozen noise path through "
                "forward_kwargs (e.g. eta=...) or put the module in eval mode first"
            )
    return loss_fn, start
