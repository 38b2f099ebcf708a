r"""An unbiased, O(M H^2) estimate of the explicit regularizer's noise gap
(docs/theory/regularizer.md).

For the chain :math:`h_{k+1} = h_k + s\odot f(h_k, x_k) + \epsilon G_k\eta_k` the noise
gap of :func:`nrnn_theory.explicit_regularizer` is
:math:`\tfrac{\epsilon^2}{2}(\hat Q + \hat R)`. Its exact value needs the H x H
covariances :math:`\hat\Sigma_k` (O(M H^3) per example). The pathwise expansion of
docs/theory/regularizer.md gives the same number as an expectation over *probes* :math:`\eta` (any
i.i.d. entries with mean 0 and variance 1; here Rademacher signs) of

.. math::
    Z(\eta) = \sum_{k<M}\lambda_{k+1}^\top\big(\tfrac12 s\odot\tanh''(z_k)\odot
              (W h^{(1)}_k)^2\big) + \tfrac12 h^{(1)\top}_M H_\ell h^{(1)}_M,

where :math:`h^{(1)}_{k+1} = \tilde J_k h^{(1)}_k + G_k\eta_k` (:math:`h^{(1)}_0 = 0`) is
the first-order response to the probe and :math:`\lambda_{k+1} =
\hat\Phi_{M,k+1}^\top g` the reference chain's adjoint (:math:`\lambda_M = g`). Since
:math:`\mathbb E[h^{(1)}_kh^{(1)\top}_k] = \hat\Sigma_k`,
:math:`\mathbb E\,(Wh^{(1)}_k)_l^2 = (W\hat\Sigma_kW^\top)_{ll}`, so the first sum has
mean :math:`\sum_k\lambda_{k+1}^\top(\tfrac12 s\odot\hat v_k) = \hat Q/2` and the second
:math:`\tfrac12\mathrm{tr}(H_\ell\hat\Sigma_M) = \hat R/2`:

.. math:: \mathbb E_\eta\,\epsilon^2 Z(\eta) = \tfrac{\epsilon^2}{2}(\hat Q + \hat R)
          \quad\text{exactly (not to leading order).}

(It is the control variate of :func:`~nrnn_theory.estimate_noise_gap` with the
zero-mean term :math:`g^\top\partial_hG[h^{(1)}]\eta` left out, which keeps the mean and
lowers the variance.) The reference chain runs through the fused rollout; the
:math:`h^{(1)}` and :math:`\lambda` recursions are vector recursions through the same
row-vector products, O(M (N + 1) K H^2) for K examples and N probes, and every term is
differentiable in the parameters (so its gradient is an unbiased estimate of the exact
penalty's gradient).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nrnn_theory._step import SQRT12, StepKernel, noise_dim
from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory.dynamics import rollout


__all__ = ["draw_probes", "pathwise_noise_gap"]


def draw_probes(
    noise: NoiseSpec,
    hidden_size: int,
    n_steps: int,
    n_probes: int,
    batch_size: int,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    generator: torch.Generator | None,
) -> Tensor:
    """Rademacher probes (M, N, B, r): i.i.d. signs, mean 0 and variance 1.

    ``r = noise_dim(noise, H)``; the entries play the role of the standardized draws
    :math:`\\eta` of :mod:`nrnn_theory.dynamics`.
    """
    r = noise_dim(noise, hidden_size)
    shape = (n_steps, n_probes, batch_size, r)
    signs = torch.randint(0, 2, shape, generator=generator, device=device)
    return signs.to(dtype).mul_(2).sub_(1)


def pathwise_noise_gap(
    params: NRNNParams, xs: Tensor, labels: Tensor, noise: NoiseSpec, probes: Tensor
) -> Tensor:
    r"""Per-example :math:`\epsilon^2 Z`, averaged over the probes (module docstring), (B,).

    Parameters
    ----------
    params : NRNNParams
    xs : Tensor, shape (B, M, D)
    labels : Tensor, shape (B,)
        Class indices (cross-entropy loss).
    noise : NoiseSpec
        The regularizer's noise (either convention); it must inject something.
    probes : Tensor, shape (M, N, B, r)
        Probe draws with mean 0 and identity covariance (e.g. :func:`draw_probes`).

    Returns
    -------
    Tensor, shape (B,)
        Its expectation over the probes is the ``noise_gap`` of
        :func:`nrnn_theory.explicit_regularizer` (the mean-step shift of ``"paper_code"``
        is not included).
    """
    kernel = StepKernel(params, noise)
    B, M, _ = xs.shape
    H = params.hidden_size
    N = probes.shape[1]
    s, d = kernel.s_mean, kernel.s  # reference step; d scales the paper_code factor
    if noise.convention == "paper_code":
        g_add, g_mult = noise.sigma1, noise.sigma2 / SQRT12  # per unit epsilon
    else:
        root = math.sqrt(params.dt)
        g_add, g_mult = root * noise.sigma1, root * noise.sigma2
    lin = kernel.has_linear
    W = params.W
    # ---- the reference chain (eta = 0), differentiable, through the fused rollout
    states = rollout(params.replace(step=s), xs, return_states=True)  # (B, M, H)
    h_M = states[:, -1]
    h_prev = torch.cat([xs.new_zeros(B, 1, H), states[:, :-1]], dim=1).transpose(0, 1)
    ux = kernel.project(xs).transpose(0, 1)  # (M, B, H)
    y = h_prev @ kernel.RT
    act = torch.tanh((y[..., H:] if lin else y) + ux)
    dact = 1.0 - act * act
    f = y[..., :H] + act if lin else act
    sd = s * dact  # diag(s) diag(tanh') (M, B, H)
    # ---- G_k eta_k for every probe (M, N, B, H)
    if noise.convention == "paper_code":
        gn = g_add * probes[..., :H] + (g_mult * d * f).unsqueeze(1) * probes[..., H:]
    elif noise.structure == "diagonal":
        gn = (g_add + g_mult * h_prev).unsqueeze(1) * probes
    else:
        gn = g_add * probes[..., :H] + (g_mult * h_prev).unsqueeze(1) * probes[..., H:]
    # ---- h1: rows h1 @ [B0^T | W^T] = [B0 h1 | W h1] with B0 = I + diag(s) alpha A, so
    # J~ h1 = B0 h1 + diag(s tanh') W h1
    eye = torch.eye(H, dtype=xs.dtype, device=xs.device)
    B0 = eye + s.unsqueeze(1) * (params.alpha * params.A) if lin else eye
    R1 = torch.cat([B0, W], dim=0)  # (2H, H)
    R1T = R1.mT
    gns = gn.reshape(M, N * B, H).unbind(0)
    sds = sd.unsqueeze(1).expand(M, N, B, H).reshape(M, N * B, H).unbind(0)
    h1 = xs.new_zeros(N * B, H)
    h1s = []
    for k in range(M):
        h1s.append(h1)
        yk = h1 @ R1T
        h1 = torch.addcmul(yk[:, :H] + gns[k], sds[k], yk[:, H:])
    H1 = torch.stack(h1s, dim=0).view(M, N, B, H)  # h1_k, k < M
    # ---- lambda: J~^T lam = B0^T lam + W^T (s tanh' lam), rows [lam, sd lam] @ R1
    logits = h_M @ params.V.mT + params.c
    p = torch.softmax(logits, dim=-1)
    gy = p - torch.nn.functional.one_hot(labels, p.shape[-1]).to(p.dtype)
    lam = gy @ params.V  # g = V^T (p - e_y), (B, H)
    scales = torch.stack([torch.ones_like(sd), sd], dim=2).unbind(0)  # (B, 2, H) per step
    lams = []
    for k in range(M - 1, -1, -1):
        lams.append(lam)  # lambda_{k+1}
        lam = (lam.unsqueeze(1) * scales[k]).view(B, 2 * H) @ R1
    Lam = torch.stack(lams[::-1], dim=0).unsqueeze(1)  # (M, 1, B, H)
    # ---- Z = sum_k lam_{k+1} . (1/2 s tanh'' (W h1_k)^2) + 1/2 h1_M^T H_l h1_M
    Wh1 = H1 @ W.mT
    half_s_curv = -(sd * act).unsqueeze(1)  # 1/2 s tanh''(z) = -s tanh tanh'
    z_q = (Lam * half_s_curv * Wh1 * Wh1).sum(dim=(0, 3))  # (N, B)
    u = h1.view(N, B, H) @ params.V.mT  # V h1_M, (N, B, C)
    quad = (p * u * u).sum(-1) - (p * u).sum(-1).square()  # u^T (diag p - p p^T) u
    z = z_q + 0.5 * quad
    return noise.epsilon**2 * z.mean(dim=0)
