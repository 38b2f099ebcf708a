r"""Lyapunov spectra of NRNNs and of generic maps (Benettin/QR), and Jacobian norms.

Implements the Lyapunov-spectrum part of THEORY.md §9. For a chain
:math:`h_{k+1} = F_k(h_k)` with tangent maps :math:`\tilde J_k = \partial F_k/\partial h`,
the exponents are the growth rates

.. math:: \lambda_i = \lim_{n\to\infty} \frac{1}{n\Delta t}\sum_{j<n}\log (R_j)_{ii},
          \qquad \tilde J_j Q_{j-1} = Q_j R_j,

where :math:`Q_j R_j` is the sign-corrected reduced QR factorization. For an NRNN the
tangent maps are analytic (``StepKernel.jacobian`` of the private step kernel):

* clean or ``"sde"``: :math:`I + \Delta t(\alpha A + \mathrm{diag}(\tanh'(z_k))W)`;
* frozen ``"sde"`` multiplicative noise adds :math:`\epsilon\sqrt{\Delta t}\sigma_2
  \mathrm{diag}(\xi_k)` (``diagonal``) or :math:`\epsilon\sqrt{\Delta t}\sigma_2\beta_k I`
  (``scalar``): the exponents are those of the random dynamical system along one
  fixed noise path per trajectory;
* ``"paper_code"``: :math:`I + \mathrm{diag}(d\odot m_k)(\alpha A +
  \mathrm{diag}(\tanh'(z_k))W)`.

Everything streams over time: memory is :math:`O(BHk)` whatever the sequence length
(plus :math:`O(BTk)` if a history is requested).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nrnn_theory._contract import (
    check_choice,
    check_eta,
    check_finite,
    check_noise,
    check_params,
    check_positive,
    check_positive_int,
    check_state,
    check_tensor,
    check_xs,
    resolve_generator,
)
from nrnn_theory._linalg import qr_positive
from nrnn_theory._record import Result
from nrnn_theory._step import StepKernel
from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory.dynamics import NonFiniteStateError


__all__ = [
    "LyapunovSpectrum",
    "StateJacobianNorms",
    "kaplan_yorke_dimension",
    "lyapunov_spectrum",
    "lyapunov_spectrum_map",
    "state_jacobian_norms",
]


# ---------------------------------------------------------------------- records
@dataclass(frozen=True)
class LyapunovSpectrum(Result):
    r"""Lyapunov exponents estimated by the Benettin/QR method (THEORY.md §9).

    Attributes
    ----------
    exponents : Tensor, shape (k,)
        Mean over trajectories, natural log, per unit time (per step divided by
        ``dt``), sorted in descending order.
    exponents_per_step : Tensor, shape (k,)
        The same per step (``exponents * dt``); the natural unit when a per-unit
        step makes "time" ambiguous.
    stderr : Tensor, shape (k,)
        Standard error of ``exponents`` across trajectories (sample standard
        deviation over ``sqrt(B)``); NaN for a single trajectory.
    per_trajectory : Tensor, shape (B, k)
        Finite-time exponents of each trajectory (per unit time), columns in the
        order of ``exponents``.
    n_steps : int
        Steps accumulated after the transient.
    transient : int
        Steps discarded before accumulating.
    dt : float
        Time step used to convert per step to per unit time.
    reortho_every : int
        Steps between re-orthonormalizations.
    convention : str
        ``"clean"``, ``"sde"`` or ``"paper_code"`` for an NRNN; ``"map"`` for
        :func:`~nrnn_theory.lyapunov_spectrum_map`.
    noise : NoiseSpec or None
        Noise whose frozen path the tangent dynamics followed.
    history : Tensor, shape (B, n_records, k), or None
        Finite-time exponents (per unit time) after each re-orthonormalization
        past the transient, if requested.
    history_steps : Tensor, shape (n_records,), or None
        Steps since the transient at each record of ``history``.
    """

    exponents: Tensor
    exponents_per_step: Tensor
    stderr: Tensor
    per_trajectory: Tensor
    n_steps: int
    transient: int
    dt: float
    reortho_every: int
    convention: str
    noise: NoiseSpec | None = None
    history: Tensor | None = None
    history_steps: Tensor | None = None

    @property
    def k(self) -> int:
        """Number of exponents."""
        return int(self.exponents.shape[0])

    @property
    def top(self) -> float:
        """The largest exponent (per unit time) as a float."""
        return float(self.exponents[0])


@dataclass(frozen=True)
class StateJacobianNorms(Result):
    r"""Norms of the state-transition Jacobians :math:`\partial h_T/\partial h_k`.

    Attributes
    ----------
    norms : Tensor, shape (B, T + 1)
        :math:`\|\partial h_T/\partial h_k\|` for :math:`k = 0, \dots, T`
        (``norms[:, T] == 1``). May overflow to ``inf`` in low precision when the
        dynamics explode; ``log_norms`` does not.
    log_norms : Tensor, shape (B, T + 1)
        Natural logarithms of ``norms``, accumulated without overflow.
    norm : str
        ``"spectral"`` or ``"frobenius"``.
    noise : NoiseSpec or None
        Noise of the frozen path along which the Jacobians were evaluated.
    """

    norms: Tensor
    log_norms: Tensor
    norm: str
    noise: NoiseSpec | None = None


#: Time steps whose input projection is computed at once (bounds memory whatever T is).
_CHUNK = 128


# --------------------------------------------------------------------------- core
class _Benettin:
    """Streaming Benettin/QR accumulator fed one batch of Jacobians per step.

    The QR runs every ``reortho_every`` steps, and always at the end of the
    transient and of the run, so the accumulated blocks start exactly after the
    transient. ``log diag R`` is summed only for blocks past the transient.
    """

    def __init__(
        self, Q0: Tensor, n_steps: int, transient: int, reortho_every: int, keep_history: bool
    ) -> None:
        self.Q = Q0
        self.n_steps = n_steps
        self.transient = transient
        self.every = reortho_every
        self.t = 0
        self.since = 0
        self.log_sum = Q0.new_zeros(Q0.shape[0], Q0.shape[-1])
        self.history: list[Tensor] | None = [] if keep_history else None
        self.history_steps: list[int] = []

    def push(self, J: Tensor) -> None:
        self.Q = torch.bmm(J, self.Q)
        self.t += 1
        self.since += 1
        t = self.t
        if self.since == self.every or t == self.transient or t == self.n_steps:
            self.Q, R = qr_positive(self.Q)
            self.since = 0
            if t > self.transient:
                self.log_sum = self.log_sum + torch.log(torch.diagonal(R, dim1=-2, dim2=-1))
                if self.history is not None:
                    self.history.append(self.log_sum / (t - self.transient))
                    self.history_steps.append(t - self.transient)


def _random_basis(B: int, n: int, k: int, *, dtype, device, generator: torch.Generator) -> Tensor:
    """A random orthonormal frame (B, n, k), drawn in float64 (where the device has it)
    so that runs in different precisions start from the same frame."""
    draw_dtype = torch.float32 if torch.device(device).type == "mps" else torch.float64
    G = torch.randn(B, n, k, dtype=draw_dtype, device=device, generator=generator)
    return qr_positive(G)[0].to(dtype)


def _finish(
    acc: _Benettin, *, dt: float, convention: str, noise: NoiseSpec | None
) -> LyapunovSpectrum:
    n_used = acc.n_steps - acc.transient
    per_step = acc.log_sum / n_used  # (B, k)
    if bool(torch.isnan(per_step).any()):
        raise NonFiniteStateError(
            "lyapunov_spectrum: the tangent dynamics produced NaN (the state or the "
            "Jacobian product overflowed); reduce dt, the weights, the noise level or "
            "reortho_every"
        )
    mean = per_step.mean(dim=0)
    order = torch.argsort(mean, descending=True)
    per_step = per_step[:, order]
    B = per_step.shape[0]
    per_time = per_step / dt
    if B > 1:
        stderr = per_time.std(dim=0, correction=1) / math.sqrt(B)
    else:
        stderr = torch.full_like(per_time[0], float("nan"))
    history = history_steps = None
    if acc.history is not None:
        history = torch.stack(acc.history, dim=1)[:, :, order] / dt
        history_steps = torch.tensor(acc.history_steps, dtype=torch.long)
    return LyapunovSpectrum(
        exponents=per_time.mean(dim=0),
        exponents_per_step=per_step.mean(dim=0),
        stderr=stderr,
        per_trajectory=per_time,
        n_steps=n_used,
        transient=acc.transient,
        dt=dt,
        reortho_every=acc.every,
        convention=convention,
        noise=noise,
        history=history,
        history_steps=history_steps,
    )


def _check_k(k: object, n: int, what: str) -> int:
    if k is None:
        return n
    k = check_positive_int("k", k)
    if k > n:
        raise ValueError(
            f"k: expected an integer <= {n} (the {what}; there are at most that many "
            f"exponents), got {k}"
        )
    return k


def _check_transient(transient: object, n_steps: int, default: int) -> int:
    if transient is None:
        return default
    transient = check_positive_int("transient", transient, minimum=0)
    if transient >= n_steps:
        raise ValueError(
            f"transient: expected fewer steps than the sequence length {n_steps} (at least "
            f"one step must be accumulated), got {transient}"
        )
    return transient


# ------------------------------------------------------------------------ NRNN spectrum
def lyapunov_spectrum(
    params: NRNNParams,
    xs: Tensor,
    *,
    noise: NoiseSpec | None = None,
    k: int | None = None,
    transient: int | None = None,
    reortho_every: int = 1,
    h0: Tensor | None = None,
    generator: torch.Generator | None = None,
    return_history: bool = False,
    eta: Tensor | None = None,
) -> LyapunovSpectrum:
    r"""Lyapunov spectrum of the input-driven NRNN, clean or along a frozen noise path.

    Each sequence ``xs[b]`` drives one trajectory; with a ``noise`` each trajectory
    follows its own noise path, fixed once drawn, and the tangent dynamics include
    the multiplicative-noise term (THEORY.md §9):

    .. math:: \lambda_i = \frac{1}{n\Delta t}\sum_{j=t_0}^{t_0+n-1}\log(R_j)_{ii},
              \qquad \tilde J_j Q_{j-1} = Q_j R_j .

    Parameters
    ----------
    params : NRNNParams
    xs : Tensor, shape (B, T, D)
        Input sequences, one trajectory each; dtype and device of ``params``.
    noise : NoiseSpec, optional
        ``None`` for the clean (inference) dynamics. Otherwise the exponents of the
        random dynamical system along one frozen noise path per trajectory, in the
        noise's convention (``"paper_code"``: the tangent map carries the random step
        :math:`d\odot m_k`).
    k : int, optional
        Number of leading exponents (default: all ``H``). Cost per step is
        :math:`O(BH^2k)` with a QR of :math:`O(BHk^2)`.
    transient : int, optional
        Steps discarded before accumulating, during which the orthonormal frame
        aligns with the dominant directions (default ``T // 10``). Must be ``< T``.
    reortho_every : int
        Steps between QR factorizations. Larger values save most of the cost at
        ``k = H`` (the QR dominates), at the risk of overflow or of losing the
        smallest exponents when the spread of exponents times ``reortho_every * dt``
        exceeds the precision (see the benchmark in ``benchmarks/README.md``).
    h0 : Tensor, shape (B, H), optional
        Initial state (default zeros).
    generator : torch.Generator, optional
        Draws, in this order, the random initial frame (B, H, k), in float64
        whatever the dtype (so float32 and float64 runs start from the same frame),
        and then the noise per step exactly as :func:`~nrnn_theory.rollout` does.
        ``None`` means fresh randomness. To share a noise path with a rollout, pass ``eta``.
    return_history : bool
        Also return the finite-time exponents after each QR past the transient
        (memory :math:`O(BTk)`).
    eta : Tensor, shape (B, T, r), optional
        Standardized noise draws (see :mod:`nrnn_theory.dynamics`); requires ``noise``.

    Returns
    -------
    LyapunovSpectrum
        Exponents per unit time (per step divided by ``dt``) sorted in descending
        order, per step, their standard error across the ``B`` trajectories, the
        per-trajectory values and the number of steps used.

    Raises
    ------
    ValueError, TypeError
        On bad shapes, ``k > H``, ``transient >= T``, or ``eta`` without ``noise``.
    NonFiniteStateError
        If the state or the tangent dynamics overflow.

    Notes
    -----
    Streaming: the input projection is computed in chunks of 128 steps and the
    loop iterates over ``unbind`` views, so memory is :math:`O(BHk)` independent of
    ``T``. With a per-unit ``step`` the exponents are still divided by ``dt``; use
    ``exponents_per_step`` when "time" is ambiguous. For the full spectrum the sum
    of exponents equals the time average of :math:`\log|\det\tilde J_k|` (THEORY.md
    §9), a check used by the tests.

    Examples
    --------
    >>> import torch
    >>> from nrnn_theory import NRNNParams, lyapunov_spectrum
    >>> H = 2
    >>> p = NRNNParams(A=-torch.eye(H, dtype=torch.float64), W=torch.zeros(H, H,
    ...     dtype=torch.float64), U=torch.zeros(H, 1, dtype=torch.float64),
    ...     b=torch.zeros(H, dtype=torch.float64), V=torch.eye(H, dtype=torch.float64),
    ...     c=torch.zeros(H, dtype=torch.float64), dt=0.1)
    >>> g = torch.Generator().manual_seed(0)
    >>> spec = lyapunov_spectrum(p, torch.zeros(2, 50, 1, dtype=torch.float64), generator=g)
    >>> [round(v, 4) for v in spec.exponents.tolist()]  # log(0.9) / 0.1
    [-1.0536, -1.0536]
    """
    params = check_params(params)
    noise = check_noise(noise)
    xs = check_xs(params, xs)
    B, T, _ = xs.shape
    H = params.hidden_size
    k = _check_k(k, H, "hidden size H")
    transient = _check_transient(transient, T, T // 10)
    reortho_every = check_positive_int("reortho_every", reortho_every)
    h = xs.new_zeros(B, H) if h0 is None else check_state(params, h0, "h0", B)
    eta = check_eta(params, noise, eta, (B, T))
    kernel = StepKernel(params, noise)
    generator = resolve_generator(generator, xs.device)
    Q0 = _random_basis(B, H, k, dtype=xs.dtype, device=xs.device, generator=generator)
    acc = _Benettin(Q0, T, transient, reortho_every, return_history)
    noisy = kernel.mode != "clean"
    sample = noisy and eta is None
    eta_chunks = eta.split(_CHUNK, dim=1) if (noisy and eta is not None) else None
    with torch.no_grad():
        for c, x_chunk in enumerate(xs.split(_CHUNK, dim=1)):
            ux_steps = kernel.project(x_chunk).unbind(1)
            e_steps = eta_chunks[c].unbind(1) if eta_chunks is not None else None
            for j, ux in enumerate(ux_steps):
                if sample:
                    e = kernel.draw(B, dtype=h.dtype, device=h.device, generator=generator)
                else:
                    e = e_steps[j] if e_steps is not None else None
                h_next, act = kernel.advance(h, ux, e)
                acc.push(kernel.jacobian(h, act, e))
                h = h_next
    if not bool(torch.isfinite(h).all()):
        raise NonFiniteStateError(
            "lyapunov_spectrum: the hidden state became non-finite (NaN or inf); the "
            "dynamics overflowed. Reduce dt, the weights or the noise level."
        )
    return _finish(acc, dt=params.dt, convention=kernel.mode, noise=noise)


# ------------------------------------------------------------------------ generic maps
def lyapunov_spectrum_map(
    step: Callable[[Tensor, int], Tensor],
    jacobian: Callable[[Tensor, int], Tensor] | None,
    x0: Tensor,
    n_steps: int,
    *,
    k: int | None = None,
    dt: float = 1.0,
    transient: int = 0,
    reortho_every: int = 1,
    generator: torch.Generator | None = None,
    return_history: bool = False,
) -> LyapunovSpectrum:
    r"""Lyapunov spectrum of a generic differentiable map :math:`x_{i+1} = F_i(x_i)`.

    .. math:: \lambda_j = \frac{1}{n\Delta t}\sum_i \log (R_i)_{jj},\qquad
              \partial F_i(x_i)\,Q_{i-1} = Q_i R_i .

    Parameters
    ----------
    step : callable ``(x, i) -> x_next``
        The map at step ``i`` on a batch ``x`` of shape (B, n). The index lets
        random or time-dependent maps (a frozen noise path, an input sequence) be
        expressed; ignore it for autonomous maps.
    jacobian : callable ``(x, i) -> J`` or None
        Its Jacobian at ``x``, shape (B, n, n). ``None`` computes it by reverse-mode
        autodiff (``n`` vmapped ``torch.func.vjp`` pullbacks per step), which requires
        the rows of ``step``'s output to depend only on the same rows of ``x``
        (independent trajectories) and ``step`` to be traceable by ``torch.func``.
    x0 : Tensor, shape (B, n) or (n,)
        Initial states of ``B`` independent trajectories.
    n_steps : int
        Total steps, including the transient.
    k : int, optional
        Number of leading exponents (default ``n``).
    dt : float
        Time per step; exponents are reported per unit time and per step.
    transient : int
        Steps discarded first; must be ``< n_steps``.
    reortho_every : int
        Steps between QR factorizations.
    generator : torch.Generator, optional
        Draws the random initial orthonormal frame; ``None`` means fresh randomness.
    return_history : bool
        Also return finite-time exponents after each QR past the transient.

    Returns
    -------
    LyapunovSpectrum
        With ``convention="map"``.

    Examples
    --------
    >>> import torch
    >>> M = torch.tensor([[0.5, 1.0], [0.0, 2.0]], dtype=torch.float64)
    >>> spec = lyapunov_spectrum_map(lambda x, i: x @ M.mT, lambda x, i: M.expand(
    ...     x.shape[0], 2, 2), torch.ones(1, 2, dtype=torch.float64), 200,
    ...     generator=torch.Generator().manual_seed(0))
    >>> [round(v, 4) for v in spec.exponents.tolist()]  # log 2, log 0.5
    [0.6931, -0.6931]
    """
    if not callable(step):
        raise TypeError(f"step: expected a callable (x, i) -> x_next, got {type(step).__name__}")
    if jacobian is not None and not callable(jacobian):
        raise TypeError(
            f"jacobian: expected a callable (x, i) -> J or None, got {type(jacobian).__name__}"
        )
    x = check_tensor("x0", x0)
    if x.ndim == 1:
        x = x.unsqueeze(0)
    if x.ndim != 2:
        raise ValueError(f"x0: expected shape (B, n) or (n,), got {tuple(x0.shape)}")
    check_finite("x0", x)
    n_steps = check_positive_int("n_steps", n_steps)
    B, n = x.shape
    k = _check_k(k, n, "state dimension n")
    transient = _check_transient(transient, n_steps, 0)
    reortho_every = check_positive_int("reortho_every", reortho_every)
    dt = check_positive("dt", dt)
    generator = resolve_generator(generator, x.device)
    if jacobian is None:
        jacobian = _autodiff_jacobian(step)
    Q0 = _random_basis(B, n, k, dtype=x.dtype, device=x.device, generator=generator)
    acc = _Benettin(Q0, n_steps, transient, reortho_every, return_history)
    with torch.no_grad():
        for i in range(n_steps):
            J = jacobian(x, i)
            if tuple(J.shape) != (B, n, n):
                raise ValueError(
                    f"jacobian: expected a result of shape ({B}, {n}, {n}) at step {i}, "
                    f"got {tuple(J.shape)}"
                )
            x_next = step(x, i)
            if tuple(x_next.shape) != (B, n):
                raise ValueError(
                    f"step: expected a result of shape ({B}, {n}) at step {i}, "
                    f"got {tuple(x_next.shape)}"
                )
            acc.push(J)
            x = x_next
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteStateError(
            "lyapunov_spectrum_map: the state became non-finite (NaN or inf); the map overflowed"
        )
    return _finish(acc, dt=dt, convention="map", noise=None)


def _autodiff_jacobian(step: Callable[[Tensor, int], Tensor]) -> Callable[[Tensor, int], Tensor]:
    """Per-trajectory Jacobians by reverse mode: one VJP per output direction, vmapped.

    Seeding every row with the same cotangent ``e_j`` gives, because rows do not
    interact, row ``j`` of every trajectory's Jacobian. (Reverse rather than forward
    mode: forward mode loads TorchScript decompositions that warn on torch >= 2.9.)
    """

    def jac(x: Tensor, i: int) -> Tensor:
        B, n = x.shape
        basis = torch.eye(n, dtype=x.dtype, device=x.device).unsqueeze(1).expand(n, B, n)
        with torch.enable_grad():
            _, pullback = torch.func.vjp(lambda y: step(y, i), x)
            return torch.func.vmap(pullback)(basis)[0].transpose(0, 1)

    return jac


# ------------------------------------------------------------------------ Kaplan-Yorke
def kaplan_yorke_dimension(exponents: Tensor | Sequence[float] | LyapunovSpectrum) -> float:
    r"""Kaplan-Yorke (Lyapunov) dimension of a spectrum.

    .. math:: D_{KY} = j + \frac{\sum_{i\le j}\lambda_i}{|\lambda_{j+1}|},\qquad
              j = \max\{m : \textstyle\sum_{i\le m}\lambda_i \ge 0\},

    with exponents sorted in descending order; ``0`` if :math:`\lambda_1 < 0`.

    Parameters
    ----------
    exponents : Tensor, shape (k,), sequence of float, or LyapunovSpectrum

    Returns
    -------
    float
        If the partial sums never become negative, ``k`` is returned: the dimension
        of the full space, or a lower bound when the spectrum was truncated
        (``k < H``).

    Examples
    --------
    >>> round(kaplan_yorke_dimension([0.906, 0.0, -14.57]), 4)  # Lorenz-63
    2.0622
    """
    if isinstance(exponents, LyapunovSpectrum):
        exponents = exponents.exponents
    values = torch.as_tensor(exponents, dtype=torch.float64).detach().cpu()
    if values.ndim != 1 or values.numel() == 0:
        raise ValueError(
            f"exponents: expected a non-empty 1-D sequence, got shape {tuple(values.shape)}"
        )
    check_finite("exponents", values)
    lam = torch.sort(values, descending=True).values.tolist()
    total = 0.0
    for j, v in enumerate(lam):
        if total + v < 0:
            return j + total / abs(v)
        total += v
    return float(len(lam))


# ------------------------------------------------------------------------ Jacobian norms
_NORMS = {
    "spectral": lambda P: torch.linalg.matrix_norm(P, ord=2),
    "frobenius": lambda P: torch.linalg.matrix_norm(P, ord="fro"),
}


def state_jacobian_norms(
    params: NRNNParams,
    xs: Tensor,
    *,
    noise: NoiseSpec | None = None,
    h0: Tensor | None = None,
    eta: Tensor | None = None,
    generator: torch.Generator | None = None,
    norm: str = "spectral",
) -> StateJacobianNorms:
    r"""Norms :math:`\|\partial h_T/\partial h_k\|` of the state-transition Jacobians.

    .. math:: \frac{\partial h_T}{\partial h_k} = \tilde J_{T-1}\cdots\tilde J_k,
              \qquad k = 0, \dots, T,

    the factor through which a loss gradient at the last state reaches step ``k``:
    growth or decay over ``k`` is the exploding or vanishing gradient, to be read
    next to the Lyapunov spectrum (THEORY.md §9).

    Parameters
    ----------
    params : NRNNParams
    xs : Tensor, shape (B, T, D)
    noise : NoiseSpec, optional
        Evaluate along one frozen noise path per sequence (as in
        :func:`lyapunov_spectrum`).
    h0 : Tensor, shape (B, H), optional
    eta : Tensor, shape (B, T, r), optional
        Standardized noise draws; requires ``noise``.
    generator : torch.Generator, optional
        Noise randomness when ``eta`` is omitted (drawn as :func:`~nrnn_theory.rollout`
        does).
    norm : {"spectral", "frobenius"}
        ``"spectral"`` (the operator 2-norm, an SVD per step) or the cheaper
        ``"frobenius"``, an upper bound on it.

    Returns
    -------
    StateJacobianNorms
        ``norms`` and ``log_norms`` of shape (B, T + 1); index ``T`` is the identity.

    Notes
    -----
    A forward pass stores the activations (and noise draws), :math:`O(TBH)` memory;
    a backward sweep forms the reverse products :math:`P_k = P_{k+1}\tilde J_k`, each
    rescaled to unit norm with the logarithm of the scale accumulated, so nothing
    overflows. Cost :math:`O(TBH^3)` time (one matrix product and, for the spectral
    norm, one SVD per step), :math:`O(BH^2)` extra memory.

    Examples
    --------
    >>> import torch
    >>> from nrnn_theory import NRNNParams
    >>> p = NRNNParams(A=-torch.eye(1), W=torch.zeros(1, 1), U=torch.zeros(1, 1),
    ...                b=torch.zeros(1), V=torch.eye(1), c=torch.zeros(1), dt=0.5)
    >>> state_jacobian_norms(p, torch.zeros(1, 3, 1)).norms
    tensor([[0.1250, 0.2500, 0.5000, 1.0000]])
    """
    params = check_params(params)
    noise = check_noise(noise)
    xs = check_xs(params, xs)
    norm = check_choice("norm", norm, tuple(_NORMS))
    B, T, _ = xs.shape
    H = params.hidden_size
    h = xs.new_zeros(B, H) if h0 is None else check_state(params, h0, "h0", B)
    eta = check_eta(params, noise, eta, (B, T))
    kernel = StepKernel(params, noise)
    noisy = kernel.mode != "clean"
    if noisy and eta is None:
        generator = resolve_generator(generator, xs.device)
    acts: list[Tensor] = []
    etas: list[Tensor | None] = []
    eta_chunks = eta.split(_CHUNK, dim=1) if (noisy and eta is not None) else None
    with torch.no_grad():
        for c, x_chunk in enumerate(xs.split(_CHUNK, dim=1)):
            ux_steps = kernel.project(x_chunk).unbind(1)
            e_steps = eta_chunks[c].unbind(1) if eta_chunks is not None else None
            for j, ux in enumerate(ux_steps):
                if noisy and eta_chunks is None:
                    e = kernel.draw(B, dtype=h.dtype, device=h.device, generator=generator)
                else:
                    e = e_steps[j] if e_steps is not None else None
                h, act = kernel.advance(h, ux, e)
                acts.append(act)
                etas.append(e)
        if not bool(torch.isfinite(h).all()):
            raise NonFiniteStateError(
                "state_jacobian_norms: the hidden state became non-finite (NaN or inf)"
            )
        measure = _NORMS[norm]
        log_norms = xs.new_zeros(B, T + 1)
        P = torch.eye(H, dtype=xs.dtype, device=xs.device).expand(B, H, H)
        log_scale = xs.new_zeros(B)
        for t in range(T - 1, -1, -1):
            P = torch.bmm(P, kernel.jacobian(h, acts[t], etas[t]))
            size = measure(P)
            log_scale = log_scale + torch.log(size)
            log_norms[:, t] = log_scale
            P = P / size.clamp_min(torch.finfo(P.dtype).tiny)[:, None, None]
    return StateJacobianNorms(norms=log_norms.exp(), log_norms=log_norms, norm=norm, noise=noise)
