r"""NRNN dynamics: drift, diffusion, steps in both conventions, rollouts, Jacobians, readout.

Implements docs/theory/model.md, conventions.md. The model is the SDE

.. math:: dh_t = f(h_t, x_t)\,dt + \epsilon\,\sigma(h_t)\,dB_t,\qquad
          f(h, x) = \alpha A h + \tanh(W h + U x + b),

discretized either by Euler-Maruyama (``convention="sde"``) or as in the authors'
public code (``convention="paper_code"``); see :class:`~nrnn_theory.NoiseSpec`.

All functions are pure and batch-first: inputs ``xs`` are (B, T, D), states (B, H),
logits (B, C). dtype and device follow the parameters; inputs must match them.
Randomness comes only from the keyword-only ``generator``.

Noise draws
-----------
Functions that take ``eta`` expect *standardized* draws (mean 0, covariance I) of
shape (B, T, r) for a rollout or (B, r) for one step, with ``r = noise_dim(noise, H)``:

* ``"sde"``, ``"diagonal"``: ``r = H``, the Brownian increments divided by
  :math:`\sqrt{\Delta t}`;
* ``"sde"``, ``"scalar"``: ``r = H + 1``, the additive increments then the shared
  multiplicative one;
* ``"paper_code"``: ``r = 2H``, the additive normals :math:`\zeta` then
  :math:`\sqrt{12}(u - 1/2)` for the uniforms :math:`u` of the multiplicative factor.

:func:`sample_noise` draws exactly what :func:`rollout` draws internally for the same
generator state, so a sampled path can be replayed or shared between two rollouts.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nrnn_theory._contract import (
    check_eta,
    check_input,
    check_noise,
    check_params,
    check_positive_int,
    check_same_dtype_device,
    check_state,
    check_tensor,
    check_xs,
    is_transformed,
    resolve_generator,
)
from nrnn_theory._recurrence import run
from nrnn_theory._step import StepKernel, draw_noise, noise_dim
from nrnn_theory._types import NoiseSpec, NRNNParams


__all__ = [
    "NonFiniteStateError",
    "diffusion",
    "drift",
    "input_jacobian",
    "logits",
    "noise_covariance",
    "noise_dim",
    "noise_matrix",
    "readout",
    "rollout",
    "sample_noise",
    "state_jacobian",
    "step",
    "step_moments",
]


class NonFiniteStateError(FloatingPointError, ValueError):
    """A rollout's hidden state overflowed to NaN or infinity."""


# ------------------------------------------------------------------------ single step
def drift(params: NRNNParams, h: Tensor, x: Tensor) -> Tensor:
    r"""Drift :math:`f(h, x) = \alpha A h + \tanh(W h + U x + b)` (docs/theory/model.md).

    Parameters
    ----------
    params : NRNNParams
    h : Tensor, shape (B, H)
    x : Tensor, shape (B, D)

    Returns
    -------
    Tensor, shape (B, H)

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(2), W=torch.zeros(2, 2), U=torch.zeros(2, 1),
    ...                b=torch.zeros(2), V=torch.eye(2), c=torch.zeros(2), dt=0.1)
    >>> drift(p, torch.ones(1, 2), torch.zeros(1, 1))
    tensor([[-1., -1.]])
    """
    params = check_params(params)
    h = check_state(params, h, "h", None)
    x = check_input(params, x, h.shape[0])
    k = StepKernel(params, None)
    return k.drift(h, k.project(x))[0]


def diffusion(params: NRNNParams, h: Tensor, noise: NoiseSpec) -> Tensor:
    r"""SDE diffusion coefficient :math:`\sigma(h)` (without :math:`\epsilon`),
    docs/theory/model.md.

    ``"diagonal"``: :math:`\sigma_1 I + \sigma_2\mathrm{diag}(h)`, shape (B, H, H).
    ``"scalar"``: :math:`[\sigma_1 I \mid \sigma_2 h]`, shape (B, H, H + 1).

    Only defined for ``convention="sde"``; the ``"paper_code"`` step has no diffusion
    coefficient of this form (see :func:`noise_matrix`).

    Parameters
    ----------
    params : NRNNParams
    h : Tensor, shape (B, H)
        States at which to evaluate :math:`\sigma`.
    noise : NoiseSpec
        With ``convention="sde"``; its ``epsilon`` is not applied.

    Returns
    -------
    Tensor, shape (B, H, r)
        ``r = H`` (``"diagonal"``) or ``H + 1`` (``"scalar"``).

    Raises
    ------
    ValueError
        For a ``"paper_code"`` noise or ``noise=None``.

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(2), W=torch.zeros(2, 2), U=torch.zeros(2, 1),
    ...                b=torch.zeros(2), V=torch.eye(2), c=torch.zeros(2), dt=0.1)
    >>> diffusion(p, torch.tensor([[1.0, 2.0]]), NoiseSpec(sigma1=1.0, sigma2=0.5))
    tensor([[[1.5000, 0.0000],
             [0.0000, 2.0000]]])
    """
    params = check_params(params)
    noise = check_noise(noise)
    if noise is None or noise.convention != "sde":
        got = None if noise is None else noise.convention
        raise ValueError(f"noise: expected a NoiseSpec with convention 'sde', got {got!r}")
    h = check_state(params, h, "h", None)
    unit = NoiseSpec(
        epsilon=1.0, sigma1=noise.sigma1, sigma2=noise.sigma2, structure=noise.structure
    )
    # The unified G of the kernel is eps * sqrt(dt) * sigma(h); undo the step scale.
    k = StepKernel(params.replace(dt=1.0), unit)
    if unit.is_zero:
        return h.new_zeros(h.shape[0], params.hidden_size, noise_dim(noise, params.hidden_size))
    return k.noise_matrix(h, h)


def noise_matrix(params: NRNNParams, h: Tensor, x: Tensor, noise: NoiseSpec) -> Tensor:
    r"""The matrix :math:`G(h, x)` of one step :math:`h + s\odot f + G\eta`, shape (B, H, r).

    ``"sde"``: :math:`G = \epsilon\sqrt{\Delta t}\,\sigma(h)` and :math:`s = \Delta t`
    (or ``params.step``). ``"paper_code"``: :math:`G = [\,aI \mid
    \tfrac{\mu}{\sqrt{12}}\mathrm{diag}(d\odot f)\,]` and :math:`s = (1-\mu/2)\,d`
    (docs/theory/conventions.md, regularizer.md). ``G G^T`` is the step's noise covariance.

    Parameters
    ----------
    params : NRNNParams
    h : Tensor, shape (B, H)
        The state :math:`h_k`.
    x : Tensor, shape (B, D)
        The input :math:`x_k` of the step.
    noise : NoiseSpec
        The noise and its convention.

    Returns
    -------
    Tensor, shape (B, H, r)
        ``r`` is :func:`noise_dim`.
    """
    params = check_params(params)
    noise = check_noise(noise)
    if noise is None:
        raise ValueError("noise: expected a NoiseSpec, got None")
    h = check_state(params, h, "h", None)
    x = check_input(params, x, h.shape[0])
    k = StepKernel(params, noise)
    if k.mode == "clean":
        return h.new_zeros(h.shape[0], params.hidden_size, noise_dim(noise, params.hidden_size))
    f, _ = k.drift(h, k.project(x))
    return k.noise_matrix(h, f)


def noise_covariance(params: NRNNParams, h: Tensor, x: Tensor, noise: NoiseSpec) -> Tensor:
    r"""Covariance :math:`C = G G^\top` of one step's noise, shape (B, H, H).

    ``"sde"``: :math:`\epsilon^2\Delta t\,\sigma\sigma^\top`. ``"paper_code"``:
    :math:`a^2 I + \tfrac{\mu^2}{12}\mathrm{diag}(d\odot f)^2` (docs/theory/conventions.md).

    Parameters
    ----------
    params : NRNNParams
    h : Tensor, shape (B, H)
        The state :math:`h_k`.
    x : Tensor, shape (B, D)
        The input :math:`x_k` of the step.
    noise : NoiseSpec
        The noise and its convention.

    Returns
    -------
    Tensor, shape (B, H, H)
    """
    G = noise_matrix(params, h, x, noise)
    return G @ G.mT


def step_moments(
    params: NRNNParams, h: Tensor, x: Tensor, noise: NoiseSpec
) -> tuple[Tensor, Tensor]:
    r"""Exact mean (B, H) and covariance (B, H, H) of one noisy step from ``h``.

    Mean :math:`h + s\odot f(h, x)` with :math:`s = \Delta t` (``"sde"``) or
    :math:`(1-\mu/2)\,d` (``"paper_code"``); covariance :func:`noise_covariance`.
    This is the oracle of docs/theory/oracles.md V3.

    Parameters
    ----------
    params : NRNNParams
    h : Tensor, shape (B, H)
        The state :math:`h_k`.
    x : Tensor, shape (B, D)
        The input :math:`x_k` of the step.
    noise : NoiseSpec
        The noise and its convention.

    Returns
    -------
    mean : Tensor, shape (B, H)
    cov : Tensor, shape (B, H, H)
    """
    params = check_params(params)
    noise = check_noise(noise)
    if noise is None:
        raise ValueError("noise: expected a NoiseSpec, got None")
    h = check_state(params, h, "h", None)
    x = check_input(params, x, h.shape[0])
    k = StepKernel(params, noise)
    mean, _ = k.advance(h, k.project(x), None)
    return mean, noise_covariance(params, h, x, noise)


def step(
    params: NRNNParams,
    h: Tensor,
    x: Tensor,
    *,
    noise: NoiseSpec | None = None,
    eta: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""One step of the NRNN in the convention of ``noise`` (docs/theory/conventions.md).

    .. math:: h_{k+1} = h_k + s_{\mathrm{eff}}\odot f(h_k, x_k) + G(h_k)\,\eta_k

    Parameters
    ----------
    params : NRNNParams
    h : Tensor, shape (B, H)
    x : Tensor, shape (B, D)
    noise : NoiseSpec, optional
        ``None`` is the clean (inference) step :math:`h + s\odot f`.
    eta : Tensor, shape (B, r), optional
        Standardized draws (module docstring). Drawn from ``generator`` if omitted
        and ``noise`` is given.
    generator : torch.Generator, optional
        Source of randomness when ``eta`` is omitted; ``None`` means fresh randomness.

    Returns
    -------
    Tensor, shape (B, H)

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(1), W=torch.zeros(1, 1), U=torch.zeros(1, 1),
    ...                b=torch.zeros(1), V=torch.eye(1), c=torch.zeros(1), dt=0.5)
    >>> step(p, torch.ones(1, 1), torch.zeros(1, 1))
    tensor([[0.5000]])
    >>> noise = NoiseSpec(sigma1=1.0)
    >>> step(p, torch.ones(1, 1), torch.zeros(1, 1), noise=noise, eta=torch.ones(1, 1))
    tensor([[1.2071]])
    """
    params = check_params(params)
    noise = check_noise(noise)
    h = check_state(params, h, "h", None)
    x = check_input(params, x, h.shape[0])
    eta = check_eta(params, noise, eta, (h.shape[0],))
    k = StepKernel(params, noise)
    if k.mode != "clean" and eta is None:
        gen = resolve_generator(generator, h.device)
        eta = k.draw(h.shape[0], dtype=h.dtype, device=h.device, generator=gen)
    return k.advance(h, k.project(x), eta)[0]


def state_jacobian(
    params: NRNNParams,
    h: Tensor,
    x: Tensor,
    *,
    noise: NoiseSpec | None = None,
    eta: Tensor | None = None,
) -> Tensor:
    r"""Analytic one-step Jacobian :math:`\partial h_{k+1}/\partial h_k`, shape (B, H, H).

    .. math:: I + \mathrm{diag}(s_{\mathrm{eff}})\big(\alpha A + \mathrm{diag}(\tanh'(z))W\big)
              + \epsilon\sqrt{\Delta t}\,\sigma_2\,\mathrm{diag}(\eta)

    with :math:`z = Wh + Ux + b`; the last term is present for multiplicative
    ``"sde"`` noise (``"diagonal"``; :math:`\beta I` for ``"scalar"``), and for
    ``"paper_code"`` :math:`s_{\mathrm{eff}} = d\odot m`. ``eta=None`` with a
    ``noise`` is the reference chain :math:`\eta = 0` of docs/theory/regularizer.md.

    Parameters
    ----------
    params : NRNNParams
    h : Tensor, shape (B, H)
        The state :math:`h_k` at which to differentiate.
    x : Tensor, shape (B, D)
        The input :math:`x_k` of the step.
    noise : NoiseSpec, optional
        The noise of the step; ``None`` (default) is the clean step.
    eta : Tensor, shape (B, r), optional
        The standardized draws of the step (see :func:`sample_noise`); with ``noise``
        and ``eta=None``, the reference chain :math:`\eta = 0`.

    Returns
    -------
    Tensor, shape (B, H, H)

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(1), W=torch.zeros(1, 1), U=torch.zeros(1, 1),
    ...                b=torch.zeros(1), V=torch.eye(1), c=torch.zeros(1), dt=0.5)
    >>> state_jacobian(p, torch.ones(1, 1), torch.zeros(1, 1))
    tensor([[[0.5000]]])
    """
    params = check_params(params)
    noise = check_noise(noise)
    h = check_state(params, h, "h", None)
    x = check_input(params, x, h.shape[0])
    eta = check_eta(params, noise, eta, (h.shape[0],))
    k = StepKernel(params, noise)
    _, act = k.drift(h, k.project(x))
    return k.jacobian(h, act, eta)


def input_jacobian(
    params: NRNNParams,
    h: Tensor,
    x: Tensor,
    *,
    noise: NoiseSpec | None = None,
    eta: Tensor | None = None,
) -> Tensor:
    r"""Analytic input Jacobian :math:`\partial h_{k+1}/\partial x_k`, shape (B, H, D).

    .. math:: \mathrm{diag}\big(s_{\mathrm{eff}}\odot\tanh'(Wh + Ux + b)\big)\,U

    Parameters
    ----------
    params : NRNNParams
    h : Tensor, shape (B, H)
        The state :math:`h_k` at which to differentiate.
    x : Tensor, shape (B, D)
        The input :math:`x_k` of the step.
    noise : NoiseSpec, optional
        The noise of the step; ``None`` (default) is the clean step.
    eta : Tensor, shape (B, r), optional
        The standardized draws of the step (see :func:`sample_noise`); with ``noise``
        and ``eta=None``, the reference chain :math:`\eta = 0`.

    Returns
    -------
    Tensor, shape (B, H, D)
    """
    params = check_params(params)
    noise = check_noise(noise)
    h = check_state(params, h, "h", None)
    x = check_input(params, x, h.shape[0])
    eta = check_eta(params, noise, eta, (h.shape[0],))
    k = StepKernel(params, noise)
    _, act = k.drift(h, k.project(x))
    return k.input_jacobian(act, eta)


# --------------------------------------------------------------------------- rollouts
def sample_noise(
    noise: NoiseSpec,
    batch_size: int,
    n_steps: int,
    hidden_size: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Standardized noise draws for a whole rollout, shape (B, T, r).

    Draws step by step in the same order as :func:`rollout`, so
    ``rollout(..., eta=sample_noise(..., generator=g1))`` equals
    ``rollout(..., generator=g2)`` bitwise when ``g1`` and ``g2`` start in the same state
    (and ``dtype``/``device`` match the parameters).

    Parameters
    ----------
    noise : NoiseSpec
        Fixes the number ``r`` of draws per step (:func:`noise_dim`).
    batch_size, n_steps, hidden_size : int
        ``B``, ``T`` and ``H``.
    dtype : torch.dtype
        Default ``torch.float32``; pass the parameters' dtype.
    device : torch.device or str, optional
        Default CPU.
    generator : torch.Generator, optional
        ``None`` means fresh randomness.

    Returns
    -------
    Tensor, shape (B, T, r)

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> sample_noise(NoiseSpec(sigma1=1.0, structure="scalar"), 4, 10, 3, generator=g).shape
    torch.Size([4, 10, 4])
    """
    noise = check_noise(noise)
    if noise is None:
        raise ValueError("noise: expected a NoiseSpec, got None")
    check_positive_int("batch_size", batch_size)
    check_positive_int("n_steps", n_steps)
    check_positive_int("hidden_size", hidden_size)
    device = torch.device("cpu") if device is None else torch.device(device)
    gen = resolve_generator(generator, device)
    draws = [
        draw_noise(noise, batch_size, hidden_size, dtype=dtype, device=device, generator=gen)
        for _ in range(n_steps)
    ]
    return torch.stack(draws, dim=1)


def rollout(
    params: NRNNParams,
    xs: Tensor,
    *,
    noise: NoiseSpec | None = None,
    h0: Tensor | None = None,
    eta: Tensor | None = None,
    return_states: bool = False,
    generator: torch.Generator | None = None,
    allow_nonfinite: bool = False,
) -> Tensor:
    r"""Run the NRNN over input sequences (docs/theory/conventions.md).

    .. math:: h_{k+1} = h_k + s_{\mathrm{eff}}\odot f(h_k, x_k) + G(h_k)\eta_k,
              \qquad k = 0, \dots, T-1

    Parameters
    ----------
    params : NRNNParams
    xs : Tensor, shape (B, T, D)
        Input sequences, batch first; dtype and device of ``params``.
    noise : NoiseSpec, optional
        Noise and convention; ``None`` is the clean (inference) rollout.
    h0 : Tensor, shape (B, H), optional
        Initial state (default zeros).
    eta : Tensor, shape (B, T, r), optional
        Standardized draws (module docstring), e.g. from :func:`sample_noise`; pass
        the same tensor to two rollouts to share one noise path, or its negative for
        an antithetic partner. Drawn from ``generator`` if omitted.
    return_states : bool
        Return all states :math:`h_1, \dots, h_T` (B, T, H) instead of :math:`h_T`.
    generator : torch.Generator, optional
        Randomness when ``eta`` is omitted; ``None`` means fresh randomness.
    allow_nonfinite : bool
        Return a non-finite result instead of raising.

    Returns
    -------
    Tensor, shape (B, H) or (B, T, H)

    Raises
    ------
    NonFiniteStateError
        If the state overflows, naming the first step at which it did.

    Notes
    -----
    Cost O(T B H^2). Memory O(B H) without autograd (the input projection is
    computed in chunks of 128 steps) and O(T B H) when differentiating.

    When a gradient is needed the whole loop is one autograd node with a
    hand-written backward through time (``nrnn_theory._recurrence``): its states
    are bitwise those of a loop of single steps, its noise is drawn in the order of
    :func:`sample_noise`, and its backward keeps only the states, activations, drifts
    and noise factors and forms the weight gradients with one product over all steps.
    On CPU the O(T B H) buffers of a differentiable rollout are reused by the next
    rollout of the same shape (at most one free set is kept, about 205 MB at
    T = 784, B = H = 128 in float32), which spares the page faults of fresh memory on
    every training step. Double backward (``create_graph=True``) recomputes the loop
    under autograd, and inputs under ``torch.func`` transforms take a plain loop.

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(2), W=torch.zeros(2, 2), U=torch.ones(2, 1),
    ...                b=torch.zeros(2), V=torch.eye(2), c=torch.zeros(2), dt=0.5)
    >>> rollout(p, torch.ones(1, 3, 1))
    tensor([[0.6664, 0.6664]])
    >>> g = torch.Generator().manual_seed(0)
    >>> rollout(p, torch.ones(1, 3, 1), noise=NoiseSpec(sigma1=0.1), generator=g).shape
    torch.Size([1, 2])
    """
    params = check_params(params)
    noise = check_noise(noise)
    xs = check_xs(params, xs)
    B, T, _ = xs.shape
    if h0 is None:
        h0 = xs.new_zeros(B, params.hidden_size)
    else:
        h0 = check_state(params, h0, "h0", B)
    eta = check_eta(params, noise, eta, (B, T))
    kernel = StepKernel(params, noise)
    gen_state = None
    if kernel.mode != "clean" and eta is None:
        generator = resolve_generator(generator, xs.device)
        gen_state = generator.get_state()
    h, states = run(kernel, xs, h0, eta, generator, return_states)
    out = states if return_states else h
    if not allow_nonfinite and not is_transformed(h) and not bool(torch.isfinite(h).all()):
        if gen_state is not None:
            generator.set_state(gen_state)
        with torch.no_grad():
            _, all_states = run(kernel, xs, h0, eta, generator, True)
        bad = ~torch.isfinite(all_states).all(dim=2)  # (B, T)
        first = int(bad.any(dim=0).nonzero()[0])
        n_ex = int(bad[:, first].sum())
        raise NonFiniteStateError(
            f"rollout: the hidden state became non-finite (NaN or inf) at step {first} of "
            f"{T} (0-based; the update h_{first} -> h_{first + 1}) in {n_ex} of {B} sequences; "
            "the dynamics overflowed. Reduce dt, the "
            "weights or the noise level, or pass allow_nonfinite=True to get the result."
        )
    return out


def readout(params: NRNNParams, h: Tensor) -> Tensor:
    r"""Readout logits :math:`V h + c`.

    Parameters
    ----------
    params : NRNNParams
        Its ``V`` (C, H) and ``c`` (C,) are used.
    h : Tensor, shape (..., H)

    Returns
    -------
    Tensor, shape (..., C)
    """
    params = check_params(params)
    h = check_tensor("h", h)
    H = params.hidden_size
    if h.ndim < 1 or h.shape[-1] != H:
        raise ValueError(
            f"h: expected shape (..., {H}) to match V {tuple(params.V.shape)}, got {tuple(h.shape)}"
        )
    check_same_dtype_device("h", h, "params", params.A)
    return h @ params.V.mT + params.c


def logits(
    params: NRNNParams,
    xs: Tensor,
    *,
    noise: NoiseSpec | None = None,
    h0: Tensor | None = None,
    eta: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Logits (B, C) of the final state: ``readout(params, rollout(params, xs, ...))``.

    Parameters
    ----------
    params : NRNNParams
    xs : Tensor, shape (B, T, D)
        Input sequences, batch first.
    noise, h0, eta, generator
        As in :func:`rollout`; ``noise=None`` (default) gives the clean logits used at
        inference.

    Returns
    -------
    Tensor, shape (B, C)

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(2), W=torch.zeros(2, 2), U=torch.ones(2, 1),
    ...                b=torch.zeros(2), V=torch.eye(2), c=torch.zeros(2), dt=0.5)
    >>> logits(p, torch.ones(3, 5, 1)).shape
    torch.Size([3, 2])
    """
    h = rollout(params, xs, noise=noise, h0=h0, eta=eta, generator=generator)
    return readout(params, h)
