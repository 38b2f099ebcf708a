"""Small linear-algebra helpers shared by the numeric modules.

Symmetric and skew parts, the Lipschitz-RNN parametrization of THEORY.md §2, and a
batched, sign-corrected reduced QR (THEORY.md §9: the Benettin algorithm needs a QR
whose ``R`` has a non-negative diagonal so that ``log R_ii`` is the stretch factor).
"""

from __future__ import annotations

import torch
from torch import Tensor


__all__ = ["lipschitz_matrix", "qr_positive", "skew", "sym"]


def sym(M: Tensor) -> Tensor:
    r"""Symmetric part :math:`\tfrac12(M + M^\top)` of a (batch of) square matrices."""
    return 0.5 * (M + M.mT)


def skew(M: Tensor) -> Tensor:
    r"""Skew-symmetric part :math:`\tfrac12(M - M^\top)` of a (batch of) square matrices."""
    return 0.5 * (M - M.mT)


def lipschitz_matrix(M: Tensor, beta: float, gamma: float) -> Tensor:
    r"""The Lipschitz-RNN recurrent matrix built from a free matrix.

    .. math:: (1-\beta)(M + M^\top) + \beta(M - M^\top) - \gamma I

    Parameters
    ----------
    M : Tensor, shape (H, H)
        Free (trainable) matrix, column convention (``M_A`` or ``M_W`` of THEORY.md §2).
    beta : float
        Interpolates between a symmetric (``beta=0``) and a skew-symmetric
        (``beta=1``) matrix.
    gamma : float
        Diagonal shift; larger values make the matrix more dissipative.

    Returns
    -------
    Tensor, shape (H, H)
        Differentiable in ``M``.

    Examples
    --------
    >>> M = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    >>> lipschitz_matrix(M, beta=1.0, gamma=0.5)
    tensor([[-0.5000,  1.0000],
            [-1.0000, -0.5000]])
    """
    eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    return (1.0 - beta) * (M + M.mT) + beta * (M - M.mT) - gamma * eye


def qr_positive(M: Tensor) -> tuple[Tensor, Tensor]:
    """Reduced QR with the signs fixed so that ``diag(R) >= 0``.

    Parameters
    ----------
    M : Tensor, shape (..., n, k)
        ``k <= n``.

    Returns
    -------
    Q : Tensor, shape (..., n, k)
        Orthonormal columns.
    R : Tensor, shape (..., k, k)
        Upper triangular with non-negative diagonal; ``Q @ R == M``.
    """
    Q, R = torch.linalg.qr(M, mode="reduced")
    d = torch.diagonal(R, dim1=-2, dim2=-1)
    sign = torch.where(d < 0, -torch.ones_like(d), torch.ones_like(d))
    return Q * sign.unsqueeze(-2), R * sign.unsqueeze(-1)
