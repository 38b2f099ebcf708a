r"""The readout loss and its exact derivatives with respect to the hidden state.

docs/theory/model.md: with logits :math:`s = Vh + c`, :math:`p = \mathrm{softmax}(s)` and
:math:`\ell(h) = \mathrm{CE}(Vh + c, y)`,

.. math:: g = \nabla_h\ell = V^\top(p - e_y),\qquad
          H_\ell = \nabla_h^2\ell = V^\top\Pi_pV,\qquad \Pi_p = \mathrm{diag}(p) - pp^\top.

These enter the regularizer (docs/theory/regularizer.md), flatness
(docs/theory/flatness.md) and margins (docs/theory/margins.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from nrnn_theory._contract import check_same_dtype_device, check_shape, check_tensor
from nrnn_theory._types import NRNNParams


__all__ = ["check_labels", "cross_entropy_derivatives"]


def check_labels(labels: object, batch: int, num_classes: int, device: torch.device) -> Tensor:
    """Validate integer class labels of shape (B,) with values in ``[0, num_classes)``.

    Parameters
    ----------
    labels : Tensor, shape (B,)
        Integer class indices.
    batch : int
        The expected batch size ``B``.
    num_classes : int
        The number of classes ``C``.
    device : torch.device
        The device the labels must be on.

    Returns
    -------
    Tensor, shape (B,)
        The labels, validated.
    """
    if not isinstance(labels, Tensor):
        raise TypeError(
            f"labels: expected a torch.Tensor of class indices, got {type(labels).__name__}"
        )
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(
            f"labels: expected an integer tensor of class indices, got dtype {labels.dtype}"
        )
    if labels.shape != (batch,):
        raise ValueError(
            f"labels: expected shape ({batch},) to match the batch, got {tuple(labels.shape)}"
        )
    if labels.device != device:
        raise ValueError(f"labels: expected device {device}, got {labels.device}")
    if batch and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels: expected class indices in [0, {num_classes}), got values in "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    return labels.long()


def cross_entropy_derivatives(
    params: NRNNParams, h: Tensor, labels: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Per-example cross-entropy of the readout, its gradient and Hessian in ``h``.

    .. math:: \ell = \mathrm{CE}(Vh + c, y),\quad g = V^\top(p - e_y),\quad
              H_\ell = V^\top(\mathrm{diag}(p) - pp^\top)V

    Parameters
    ----------
    params : NRNNParams
        Supplies the readout ``V`` (C, H) and ``c`` (C,).
    h : Tensor, shape (B, H)
        Hidden states (typically the final state :math:`\bar h_M`).
    labels : Tensor, shape (B,)
        Integer class indices.

    Returns
    -------
    loss : Tensor, shape (B,)
    grad : Tensor, shape (B, H)
    hess : Tensor, shape (B, H, H)
        Symmetric positive semi-definite, rank at most ``C - 1``.

    Examples
    --------
    >>> p = NRNNParams(A=torch.zeros(2, 2), W=torch.zeros(2, 2), U=torch.zeros(2, 1),
    ...                b=torch.zeros(2), V=torch.eye(2), c=torch.zeros(2), dt=0.1)
    >>> loss, g, Hl = cross_entropy_derivatives(p, torch.zeros(1, 2), torch.tensor([0]))
    >>> round(float(loss), 4), g.tolist(), Hl[0].tolist()
    (0.6931, [[-0.5, 0.5]], [[0.25, -0.25], [-0.25, 0.25]])
    """
    if not isinstance(params, NRNNParams):
        raise TypeError(f"params: expected NRNNParams, got {type(params).__name__}")
    h = check_tensor("h", h)
    check_shape("h", h, (None, params.hidden_size), f"(B, H) with H = {params.hidden_size}")
    check_same_dtype_device("h", h, "params", params.A)
    labels = check_labels(labels, h.shape[0], params.num_classes, h.device)
    V = params.V
    s = h @ V.mT + params.c
    logp = torch.log_softmax(s, dim=-1)
    p = logp.exp()
    loss = -logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    r = p - torch.nn.functional.one_hot(labels, params.num_classes).to(p.dtype)
    grad = r @ V
    pV = p.unsqueeze(-1) * V  # (B, C, H): diag(p) V
    hess = V.mT @ pV - (p @ V).unsqueeze(-1) * (p @ V).unsqueeze(-2)
    return loss, grad, hess
