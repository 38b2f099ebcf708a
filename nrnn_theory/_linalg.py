"""Small linear-algebra helpers shared by the numeric modules.

Symmetric and skew parts, the Lipschitz-RNN parametrization of docs/theory/model.md, and two
batched reduced QR factorizations with a non-negative diagonal of ``R`` (docs/theory/stability.md:
the Benettin algorithm needs ``log R_ii``, the stretch factors): Householder
(:func:`qr_positive`, LAPACK) and CholeskyQR2 (:func:`cholesky_qr2`, matrix products
and two small Cholesky factorizations).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


__all__ = [
    "benettin_condition_target",
    "cholesky_qr2",
    "cholesky_qr_max_condition",
    "lipschitz_matrix",
    "qr_positive",
    "skew",
    "sym",
]


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
        Free (trainable) matrix, column convention (``M_A`` or ``M_W`` of docs/theory/model.md).
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


def benettin_condition_target(dtype: torch.dtype) -> float:
    r"""Condition number a block of tangent maps may reach between two QRs (Benettin).

    :math:`\varepsilon^{-1/4}` for the machine epsilon of ``dtype`` (54 in float32,
    8192 in float64). A product of ``n`` tangent maps applied to the aligned frame
    has condition number about :math:`e^{(\lambda_1-\lambda_k)n\Delta t}`, and a
    (backward-stable) QR of it perturbs each :math:`\log R_{ii}` by about
    :math:`\varepsilon\kappa`, the smallest stretch suffering most. The target keeps
    that at :math:`\varepsilon^{3/4}` per QR (2e-6 in float32, 2e-12 in float64),
    well inside CholeskyQR2's safe range (:func:`cholesky_qr_max_condition`).
    """
    return torch.finfo(dtype).eps ** -0.25


def cholesky_qr_max_condition(dtype: torch.dtype) -> float:
    r"""Largest estimated condition number :math:`\hat\kappa(Y)` CholeskyQR2 accepts.

    :math:`0.1/\sqrt{\varepsilon}` for the machine epsilon :math:`\varepsilon` of
    ``dtype`` (about 290 in float32, 6.7e6 in float64). The Gram matrix
    :math:`Y^\top Y` squares the condition number, so the first pass's
    :math:`Q_1 = YR_1^{-1}` loses about :math:`\varepsilon\kappa(Y)^2` of orthogonality;
    at this threshold that is :math:`10^{-2}`, from which the second pass restores
    orthogonality and a backward-stable :math:`R` to :math:`O(\varepsilon)` (Yamamoto,
    Nakatsukasa, Yanagisawa & Fukaya 2015, whose sufficient condition is stricter in
    the worst case). Beyond it, or where the Cholesky factorization fails outright,
    Householder QR is the safe choice.
    """
    return 0.1 / math.sqrt(torch.finfo(dtype).eps)


def _cholesky_solve_pass(Y: Tensor, G: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``Q = Y R^{-1}`` for ``G = R^T R``, ``diag(R)`` and a per-matrix failure flag."""
    L, info = torch.linalg.cholesky_ex(G)
    Q = torch.linalg.solve_triangular(L.mT, Y, upper=True, left=False)
    return Q, torch.diagonal(L, dim1=-2, dim2=-1), info != 0


def cholesky_qr2(Y: Tensor, *, max_condition: float | None = None) -> tuple[Tensor, Tensor] | None:
    r"""CholeskyQR2: reduced QR by two Cholesky passes, or ``None`` when unsafe.

    .. math:: Y^\top Y = R_1^\top R_1,\quad Q_1 = Y R_1^{-1},\qquad
              Q_1^\top Q_1 = R_2^\top R_2,\quad Q = Q_1 R_2^{-1},\quad R = R_2 R_1 .

    Matrix products, two small Cholesky factorizations and triangular solves do the
    work. ``R`` is never formed: its diagonal is
    :math:`\mathrm{diag}(R_2)\odot\mathrm{diag}(R_1)` (both factors are upper
    triangular), returned as logarithms.

    The condition number is estimated *a posteriori* from the second Gram matrix:
    the first pass loses :math:`\omega = \max_{ij}|(Q_1^\top Q_1 - I)_{ij}| \approx
    \varepsilon\kappa(Y)^2` of orthogonality, so :math:`\hat\kappa =
    \sqrt{\omega/\varepsilon}`. (The ratio of the extreme diagonal entries of
    :math:`R_1` is only a lower bound on :math:`\kappa`, often far below it.)

    Parameters
    ----------
    Y : Tensor, shape (..., n, k)
        ``k <= n``.
    max_condition : float, optional
        Refuse (return ``None``) when :math:`\hat\kappa` of any matrix exceeds it,
        i.e. when :math:`\omega > \varepsilon\,` ``max_condition**2`` (default
        :func:`cholesky_qr_max_condition` of the dtype: :math:`\omega > 10^{-2}`).

    Returns
    -------
    (Q, log_diag_R) or None
        ``Q`` (..., n, k) with orthonormal columns and ``log diag R`` (..., k), the
        diagonal being positive; ``None`` if a Cholesky factorization failed, a value
        is not finite, or :math:`\hat\kappa` > ``max_condition``: the caller then uses
        Householder (:func:`qr_positive`).

    Examples
    --------
    >>> Y = torch.tensor([[3.0, 0.0], [4.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    >>> Q, log_r = cholesky_qr2(Y)
    >>> log_r.exp()  # |R_ii| of any QR of Y
    tensor([5.0000, 2.0000], dtype=torch.float64)
    """
    if max_condition is None:
        max_condition = cholesky_qr_max_condition(Y.dtype)
    max_loss = torch.finfo(Y.dtype).eps * max_condition**2
    Q1, d1, bad1 = _cholesky_solve_pass(Y, Y.mT @ Y)
    G2 = Q1.mT @ Q1
    eye = torch.eye(G2.shape[-1], dtype=G2.dtype, device=G2.device)
    loss = (G2 - eye).abs().amax(dim=(-2, -1))
    Q, d2, bad2 = _cholesky_solve_pass(Q1, G2)
    log_r = torch.log(d1) + torch.log(d2)
    bad = bad1 | bad2 | ~(loss <= max_loss)  # a NaN loss counts as bad
    if bool(bad.any()) or not bool(torch.isfinite(log_r).all()):
        return None
    return Q, log_r
