r"""The one implementation of an NRNN step, shared by every numeric module.

Every step of either convention (docs/theory/conventions.md) is written in the unified form of
docs/theory/regularizer.md,

.. math:: h_{k+1} = h_k + s_{\mathrm{eff}}(\eta_k) \odot f(h_k, x_k) + G(h_k)\,\eta_k,

where :math:`\eta_k \in \mathbb R^r` are *standardized* draws (mean 0, covariance
:math:`I`, symmetric in law):

* ``"sde"``, ``"diagonal"``: ``r = H``, :math:`\eta\sim\mathcal N(0, I_H)` and
  :math:`G\eta = \epsilon\sqrt{\Delta t}\,(\sigma_1 + \sigma_2 h)\odot\eta`;
* ``"sde"``, ``"scalar"``: ``r = H + 1``, :math:`\eta = (\xi, \beta)\sim\mathcal N(0, I)`
  and :math:`G\eta = \epsilon\sqrt{\Delta t}\,(\sigma_1\xi + \sigma_2 h\beta)`;
* ``"paper_code"``: ``r = 2H``, :math:`\eta = (\zeta, \sqrt{12}(u - \tfrac12))` with
  :math:`\zeta\sim\mathcal N(0, I)`, :math:`u\sim\mathcal U(0,1)^H`; the additive part is
  :math:`a\zeta` and the drift step is
  :math:`s_{\mathrm{eff}} = d\odot(1 - \tfrac\mu2 + \tfrac{\mu}{\sqrt{12}}\eta_{H:})`,
  i.e. :math:`d\odot m` with :math:`m = 1 - \mu + \mu u`.

``eta = None`` means :math:`\eta = 0`: the clean step for ``noise=None`` and the
*reference chain* of docs/theory/regularizer.md otherwise (for ``"paper_code"`` that is the mean
step :math:`(1-\mu/2)\,d`, not the inference step :math:`d`).

This module performs no validation; the public wrappers in
:mod:`nrnn_theory.dynamics` validate once at the boundary.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nrnn_theory._types import NoiseSpec, NRNNParams


__all__ = ["SQRT12", "StepKernel", "draw_noise", "noise_dim"]

SQRT12 = math.sqrt(12.0)


def noise_dim(noise: NoiseSpec, hidden_size: int) -> int:
    """Number ``r`` of standardized draws per step and example (module docstring).

    Parameters
    ----------
    noise : NoiseSpec
    hidden_size : int
        ``H``.

    Returns
    -------
    int
        ``H`` for ``"diagonal"`` ``"sde"`` noise, ``H + 1`` for ``"scalar"`` (one extra
        draw for the shared multiplicative Brownian motion), ``2H`` for ``"paper_code"``
        (a Gaussian and a uniform draw per unit).
    """
    from nrnn_theory._contract import check_positive_int

    if not isinstance(noise, NoiseSpec):
        raise TypeError(f"noise: expected a NoiseSpec, got {type(noise).__name__}")
    check_positive_int("hidden_size", hidden_size)
    if noise.convention == "paper_code":
        return 2 * hidden_size
    return hidden_size + 1 if noise.structure == "scalar" else hidden_size


class StepKernel:
    """Precomputed pieces of one step for fixed parameters and noise.

    Not a public API: the public, validated functions live in
    :mod:`nrnn_theory.dynamics`. Analysis modules that need their own streaming
    loop (Lyapunov spectra, regularizer recursions) use this class so that the step
    exists once.

    Parameters
    ----------
    params : NRNNParams
    noise : NoiseSpec or None
        ``None`` (or a spec with zero levels) is the clean step.
    """

    def __init__(self, params: NRNNParams, noise: NoiseSpec | None) -> None:
        self.params = params
        H = params.hidden_size
        self.H = H
        self.has_linear = params.alpha != 0.0
        # One matmul for both linear maps: h @ [alpha A; W]^T -> (B, 2H). Stored
        # contiguous: MKL multiplies faster by it than by the transposed view.
        if self.has_linear:
            self.RT = torch.cat([params.alpha * params.A, params.W], dim=0).mT.contiguous()
        else:
            self.RT = params.W.mT.contiguous()
        self.s = params.drift_step
        if noise is not None and noise.is_zero:
            noise = None
        self.noise = noise
        self.mode = "clean" if noise is None else noise.convention
        self.r = 0 if noise is None else noise_dim(noise, H)
        self.structure = None if noise is None else noise.structure
        self.s_mean = self.s
        self.g_add = 0.0
        self.g_mult = 0.0
        if noise is not None and noise.convention == "sde":
            root = math.sqrt(params.dt)
            self.g_add = root * noise.additive
            self.g_mult = root * noise.multiplicative
        elif noise is not None:  # paper_code
            mu = noise.multiplicative
            self.g_add = noise.additive
            self.g_mult = mu / SQRT12
            self.s_mean = self.s * (1.0 - 0.5 * mu)
        # 0-dim constants: c0 = 1 - mu/2 of the paper_code factor and the additive level.
        # The step's arithmetic below uses fused multiply-adds (add with alpha, addcmul);
        # nrnn_theory._recurrence repeats it op for op, so both give the same bits.
        mu = noise.multiplicative if noise is not None and self.mode == "paper_code" else 0.0
        kw = {"dtype": params.dtype, "device": params.device}
        self.c0 = torch.tensor(1.0 - 0.5 * mu, **kw)
        self.g_add_t = torch.tensor(self.g_add, **kw)

    # ------------------------------------------------------------------ pieces
    def project(self, xs: Tensor) -> Tensor:
        """Input projection ``U x + b`` for inputs (..., D) -> (..., H)."""
        p = self.params
        return torch.addmm(p.b, xs.reshape(-1, xs.shape[-1]), p.U.mT).reshape(
            *xs.shape[:-1], self.H
        )

    def drift(self, h: Tensor, ux: Tensor) -> tuple[Tensor, Tensor]:
        """Drift ``f`` and activation ``tanh(z)`` at states (B, H), projections (B, H)."""
        hz = h @ self.RT
        if self.has_linear:
            act = torch.tanh(hz[:, self.H :] + ux)
            return hz[:, : self.H] + act, act
        act = torch.tanh(hz + ux)
        return act, act

    def factor(self, eta: Tensor) -> Tensor:
        r"""``paper_code``: :math:`r = 1 - \mu/2 + \tfrac{\mu}{\sqrt{12}}\eta_{H:}`, (B, H)."""
        return torch.add(self.c0, eta[:, self.H :], alpha=self.g_mult)

    def effective_step(self, eta: Tensor | None) -> Tensor:
        """Step multiplying the drift: (H,) or, for noisy ``paper_code``, (B, H)."""
        if self.mode != "paper_code":
            return self.s
        if eta is None:
            return self.s_mean
        return self.s * self.factor(eta)

    def advance(self, h: Tensor, ux: Tensor, eta: Tensor | None) -> tuple[Tensor, Tensor]:
        """One step. Returns the next state (B, H) and ``tanh(z)`` at ``h`` (B, H)."""
        f, act = self.drift(h, ux)
        if eta is None or self.mode == "clean":
            return torch.addcmul(h, self.s_mean, f), act
        H = self.H
        if self.mode == "paper_code":
            h_next = torch.addcmul(h, self.effective_step(eta), f)
            if self.g_add:
                h_next = h_next.add(eta[:, :H], alpha=self.g_add)
            return h_next, act
        h_next = torch.addcmul(h, self.s, f)
        if self.structure == "diagonal":
            if self.g_mult:
                return h_next.addcmul(torch.add(self.g_add_t, h, alpha=self.g_mult), eta), act
            return h_next.add(eta, alpha=self.g_add), act
        if self.g_add:
            h_next = h_next.add(eta[:, :H], alpha=self.g_add)
        if self.g_mult:
            h_next = h_next.addcmul(h, eta[:, H:], value=self.g_mult)
        return h_next, act

    def jacobian(self, h: Tensor, act: Tensor, eta: Tensor | None) -> Tensor:
        r"""State Jacobian :math:`\partial h_{k+1}/\partial h_k`, shape (B, H, H).

        :math:`I + \mathrm{diag}(s_{\mathrm{eff}})(\alpha A + \mathrm{diag}(1-\tanh^2 z)W)`
        plus, for multiplicative ``"sde"`` noise, :math:`\epsilon\sqrt{\Delta t}\sigma_2`
        times :math:`\mathrm{diag}(\eta)` (diagonal) or :math:`\beta I` (scalar).
        """
        p = self.params
        K = (1.0 - act * act).unsqueeze(-1) * p.W
        if self.has_linear:
            K = K + p.alpha * p.A
        s = self.effective_step(eta)
        J = s.unsqueeze(-1) * K
        eye = torch.eye(self.H, dtype=h.dtype, device=h.device)
        J = J + eye
        if eta is not None and self.mode == "sde" and self.g_mult:
            if self.structure == "diagonal":
                J = J + torch.diag_embed(self.g_mult * eta)
            else:
                J = J + (self.g_mult * eta[:, self.H :]).unsqueeze(-1) * eye
        return J

    def input_jacobian(self, act: Tensor, eta: Tensor | None) -> Tensor:
        r"""Input Jacobian, shape (B, H, D).

        :math:`\partial h_{k+1}/\partial x_k = \mathrm{diag}(s_{\mathrm{eff}}\odot(1-\tanh^2 z))U`.
        """
        s = self.effective_step(eta)
        return (s * (1.0 - act * act)).unsqueeze(-1) * self.params.U

    def noise_matrix(self, h: Tensor, f: Tensor) -> Tensor:
        r"""Dense :math:`G` of the unified form, shape (B, H, r).

        For ``"paper_code"`` the multiplicative columns are
        :math:`\tfrac{\mu}{\sqrt{12}}\mathrm{diag}(d\odot f)`, so that the step is
        :math:`h + (1-\mu/2)d\odot f + G\eta` (docs/theory/regularizer.md).
        """
        B, H = h.shape
        eye = torch.eye(H, dtype=h.dtype, device=h.device)
        if self.mode == "clean":
            return h.new_zeros(B, H, 0)
        if self.mode == "paper_code":
            add = self.g_add * eye.expand(B, H, H)
            mult = torch.diag_embed(self.g_mult * self.s * f)
            return torch.cat([add, mult], dim=-1)
        if self.structure == "diagonal":
            return torch.diag_embed(self.g_add + self.g_mult * h)
        add = self.g_add * eye.expand(B, H, H)
        return torch.cat([add, (self.g_mult * h).unsqueeze(-1)], dim=-1)

    # ------------------------------------------------------------- randomness
    def draw(self, batch: int, *, dtype, device, generator: torch.Generator | None) -> Tensor:
        """Standardized draws for one step, shape (B, r), in a fixed order (:func:`draw_noise`)."""
        if self.noise is None:
            return torch.zeros(batch, 0, dtype=dtype, device=device)
        return draw_noise(
            self.noise, batch, self.H, dtype=dtype, device=device, generator=generator
        )


def draw_noise(
    noise: NoiseSpec, batch: int, hidden_size: int, *, dtype, device, generator
) -> Tensor:
    """Standardized draws of ``noise`` for one step, shape (B, r), in a fixed order.

    ``"paper_code"``: H normal then H uniform draws (rescaled to unit variance);
    ``"sde"``: r normal draws. :meth:`StepKernel.draw` and
    :func:`nrnn_theory.dynamics.sample_noise` both draw through here.
    """
    H = hidden_size
    if noise.convention == "paper_code":
        zeta = torch.randn(batch, H, dtype=dtype, device=device, generator=generator)
        u = torch.rand(batch, H, dtype=dtype, device=device, generator=generator)
        return torch.cat([zeta, SQRT12 * (u - 0.5)], dim=-1)
    r = noise_dim(noise, H)
    return torch.randn(batch, r, dtype=dtype, device=device, generator=generator)
