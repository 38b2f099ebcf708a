r"""Krylov and subspace methods for a symmetric operator given only by products.

Pure torch, batched, device- and dtype-following. Used by :mod:`nrnn_theory.flatness`
for top eigenvalues and stochastic Lanczos quadrature (docs/theory/flatness.md), but written for
any symmetric ``matvec`` mapping a batch of vectors (P, n) to (P, n), so the tests can
drive it with dense matrices.

Lanczos here keeps every basis vector and reorthogonalizes each new one against all
of them twice ("twice is enough"), so the tridiagonal matrix stays faithful in
floating point and no spurious copies of converged Ritz values appear. Memory is
O(m n) for m steps; that is the price of accuracy without restarts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


__all__ = ["lanczos_extreme", "lanczos_tridiagonal", "ritz", "select_ritz", "subspace_iteration"]

Matvec = Callable[[Tensor], Tensor]


def _breakdown_threshold(n: int, dtype: torch.dtype, scale: Tensor) -> Tensor:
    # After full reorthogonalization, an exhausted Krylov space leaves a residual of
    # roundoff size ~ eps * ||H|| * sqrt(n); anything below 10x that is a breakdown.
    return 10.0 * max(n, 1) ** 0.5 * torch.finfo(dtype).eps * scale


def _orthogonalize(w: Tensor, Q: Tensor) -> Tensor:
    """Remove from each ``w[p]`` (P, n) its components along the rows of ``Q[p]`` (P, j, n)."""
    for _ in range(2):
        w = w - torch.einsum("pjn,pj->pn", Q, torch.einsum("pjn,pn->pj", Q, w))
    return w


def lanczos_tridiagonal(matvec: Matvec, v0: Tensor, m: int) -> tuple[Tensor, Tensor]:
    r"""``m`` Lanczos steps from each of ``P`` unit start vectors, batched.

    Parameters
    ----------
    matvec : callable
        Symmetric operator, (P, n) -> (P, n).
    v0 : Tensor, shape (P, n)
        Start vectors (normalized here).
    m : int
        Number of steps, ``1 <= m <= n``.

    Returns
    -------
    alpha : Tensor, shape (P, m)
    beta : Tensor, shape (P, m - 1)
        Diagonal and off-diagonal of the tridiagonal :math:`T_m = Q^\top H Q`. After a
        breakdown (an invariant subspace reached) the remaining entries are exactly
        zero, so the trailing block is decoupled from :math:`e_1` and carries zero
        quadrature weight.
    """
    P, n = v0.shape
    dtype = v0.dtype
    Q = v0.new_zeros(P, m, n)
    q = v0 / torch.linalg.vector_norm(v0, dim=1, keepdim=True)
    alphas, betas = [], []
    scale = v0.new_zeros(P)
    beta_prev = v0.new_zeros(P)
    q_prev = torch.zeros_like(q)
    for j in range(m):
        Q[:, j] = q
        w = matvec(q)
        a = (q * w).sum(dim=1)
        alphas.append(a)
        if j == m - 1:
            break
        w = w - a[:, None] * q - beta_prev[:, None] * q_prev
        w = _orthogonalize(w, Q[:, : j + 1])
        b = torch.linalg.vector_norm(w, dim=1)
        scale = torch.maximum(scale, torch.maximum(a.abs(), b))
        alive = b > _breakdown_threshold(n, dtype, scale)
        b = torch.where(alive, b, torch.zeros_like(b))
        q_prev = q
        q = torch.where(alive[:, None], w / torch.where(alive, b, 1.0)[:, None], 0.0)
        betas.append(b)
        beta_prev = b
    alpha = torch.stack(alphas, dim=1)
    beta = torch.stack(betas, dim=1) if betas else v0.new_zeros(P, 0)
    return alpha, beta


def _tridiagonal(alpha: Tensor, beta: Tensor) -> Tensor:
    """Dense symmetric tridiagonal matrices (P, m, m) from (P, m) and (P, m - 1)."""
    T = torch.diag_embed(alpha)
    if beta.shape[-1]:
        T = T + torch.diag_embed(beta, offset=1) + torch.diag_embed(beta, offset=-1)
    return T


def ritz(alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    """Ritz values (P, m) ascending and eigenvectors (P, m, m) of the tridiagonals."""
    return torch.linalg.eigh(_tridiagonal(alpha, beta))


def select_ritz(theta: Tensor, k: int, which: str) -> Tensor:
    """Indices of the ``k`` wanted values of a 1-D ascending ``theta``, in report order.

    ``"largest"`` descending, ``"smallest"`` ascending, ``"magnitude"`` by descending
    absolute value.
    """
    if which == "largest":
        return torch.arange(len(theta) - 1, len(theta) - 1 - k, -1, device=theta.device)
    if which == "smallest":
        return torch.arange(k, device=theta.device)
    return torch.argsort(theta.abs(), descending=True, stable=True)[:k]


def _random_unit(n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    gdev = generator.device if generator is not None else like.device
    v = torch.randn(1, n, dtype=like.dtype, device=gdev, generator=generator).to(like.device)
    return v / torch.linalg.vector_norm(v)


def lanczos_extreme(
    matvec: Matvec,
    n: int,
    k: int,
    which: str,
    *,
    max_iter: int,
    tol: float,
    like: Tensor,
    generator: torch.Generator | None,
    check_every: int = 5,
) -> tuple[Tensor, Tensor, Tensor, int, bool]:
    r"""Extreme eigenpairs of a symmetric operator by Lanczos with full reorthogonalization.

    When the Krylov space becomes invariant (:math:`\beta_j` below ``tol`` times the
    largest Ritz value, so its Ritz pairs are converged), Lanczos restarts from a
    random vector orthogonal to the basis, with a decoupled tridiagonal block: a single
    Krylov space holds only one copy of a repeated eigenvalue, and the restart lets
    the other copies appear. Convergence is checked every ``check_every`` steps, and
    not before ``check_every`` steps after a restart, on the Ritz residual estimates
    :math:`|\beta_j s_{j,i}|` of the wanted pairs relative to the largest Ritz value in
    magnitude.

    Returns
    -------
    values : Tensor, shape (k,)
    vectors : Tensor, shape (k, n)
        Unit Ritz vectors.
    estimates : Tensor, shape (k,)
        Ritz residual estimates.
    n_matvecs : int
    converged : bool
    """
    Q = like.new_zeros(1, min(max_iter, n), n)
    alphas: list[Tensor] = []
    betas: list[Tensor] = []
    q = _random_unit(n, like, generator)
    q_prev = torch.zeros_like(q)
    beta_prev = like.new_zeros(1)
    scale = like.new_zeros(1)
    converged = False
    m = Q.shape[1]
    steps = 0
    last_beta = like.new_zeros(1)
    since_restart = 0
    for j in range(m):
        Q[:, j] = q
        w = matvec(q)
        steps += 1
        a = (q * w).sum(dim=1)
        alphas.append(a)
        w = w - a[:, None] * q - beta_prev[:, None] * q_prev
        w = _orthogonalize(w, Q[:, : j + 1])
        b = torch.linalg.vector_norm(w, dim=1)
        scale = torch.maximum(scale, torch.maximum(a.abs(), b))
        last_beta = b
        if j + 1 == n:
            converged = True
            last_beta = torch.zeros_like(b)
            break
        since_restart += 1
        limit = torch.maximum(_breakdown_threshold(n, like.dtype, scale), tol * scale)
        if bool(b <= limit):
            # Invariant subspace (to tolerance): restart orthogonally, decoupled.
            since_restart = 0
            b = torch.zeros_like(b)
            w = _orthogonalize(_random_unit(n, like, generator), Q[:, : j + 1])
            w = w / torch.linalg.vector_norm(w)
            q_prev, q = q, w
        else:
            q_prev, q = q, w / b[:, None]
        betas.append(b)
        beta_prev = b
        due = (j + 1) % check_every == 0 or j + 1 == m
        if j + 1 >= k and since_restart >= check_every and due:
            alpha_t = torch.stack(alphas, dim=1)
            beta_t = torch.stack(betas[:-1], dim=1) if len(betas) > 1 else like.new_zeros(1, 0)
            theta, S = ritz(alpha_t, beta_t)
            idx = select_ritz(theta[0], k, which)
            est = (last_beta * S[0, -1, idx]).abs()
            if bool((est <= tol * theta[0].abs().max()).all()):
                converged = True
                break
    alpha_t = torch.stack(alphas, dim=1)
    nb = len(alphas) - 1
    beta_t = torch.stack(betas[:nb], dim=1) if nb > 0 else like.new_zeros(1, 0)
    theta, S = ritz(alpha_t, beta_t)
    idx = select_ritz(theta[0], k, which)
    est = (last_beta * S[0, -1, idx]).abs()
    vectors = S[0, :, idx].mT @ Q[0, : len(alphas)]
    vectors = vectors / torch.linalg.vector_norm(vectors, dim=1, keepdim=True)
    return theta[0, idx], vectors, est, steps, converged


def subspace_iteration(
    matvec: Matvec,
    n: int,
    k: int,
    which: str,
    *,
    max_iter: int,
    tol: float,
    like: Tensor,
    generator: torch.Generator | None,
    oversample: int = 2,
) -> tuple[Tensor, Tensor, Tensor, int, bool]:
    r"""Extreme eigenpairs by block power (orthogonal) iteration with Rayleigh-Ritz.

    Power iteration converges to the eigenvalues largest in *magnitude*. For the
    algebraic top (or bottom) the operator is shifted: a first run finds the spectral
    radius :math:`\rho`, then :math:`\pm H + \rho' I` with :math:`\rho' \ge \rho` is
    positive semi-definite and its dominant eigenvalues are the wanted ones. The
    returned values are Rayleigh quotients of ``H`` itself. Convergence is linear with
    rate :math:`|\lambda_{k+p}|/|\lambda_k|` of the iterated operator (slower than
    Lanczos); it is provided as an independent cross-check.

    Returns
    -------
    values, vectors, residuals, n_matvecs, converged
        As :func:`lanczos_extreme`, with exact residual norms :math:`\|Hy - \theta y\|`.
    """
    used = 0
    shift = 0.0
    sign = 1.0
    if which != "magnitude":
        vals, _, res, used, _ = subspace_iteration(
            matvec,
            n,
            1,
            "magnitude",
            max_iter=max_iter,
            tol=max(tol, 1e-3),
            like=like,
            generator=generator,
            oversample=oversample,
        )
        shift = 1.01 * (float(vals.abs()[0]) + float(res[0]))
        sign = 1.0 if which == "largest" else -1.0

    def op(X: Tensor) -> Tensor:
        return sign * matvec(X) + shift * X

    p = min(n, k + oversample)
    gdev = generator.device if generator is not None else like.device
    X = torch.randn(p, n, dtype=like.dtype, device=gdev, generator=generator).to(like.device)
    X = torch.linalg.qr(X.mT).Q.mT
    converged = False
    for _ in range(max_iter):
        Z = op(X)
        used += p
        mu, S = torch.linalg.eigh(X @ Z.mT)
        order = torch.argsort(mu.abs() if which == "magnitude" else mu, descending=True)
        mu, S = mu[order], S[:, order]
        Y = S.mT @ X
        R = S.mT @ Z - mu[:, None] * Y
        res = torch.linalg.vector_norm(R, dim=1)
        theta = sign * (mu - shift)
        scale = theta.abs().max()
        if bool((res[:k] <= tol * scale).all()):
            converged = True
            break
        X = torch.linalg.qr((S.mT @ Z).mT).Q.mT
    values, vectors, res = theta[:k], Y[:k], res[:k]
    if which == "smallest":
        order = torch.argsort(values)
        values, vectors, res = values[order], vectors[order], res[order]
    return values, vectors, res, used, converged
