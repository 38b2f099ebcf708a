r"""Lyapunov spectra of NRNNs and of generic maps (Benettin/QR), and Jacobian norms.

Implements the Lyapunov-spectrum part of docs/theory/stability.md. For a chain
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

Cost. The frame's image :math:`\tilde J_j Q_{j-1}` is one batched matrix product per
step (the Jacobians are formed in one fused pass, or never formed when ``k`` is small).
Re-orthonormalizing every step makes the QR dominate at ``k = H``; since the ``R`` of
a product is the product of the ``R`` factors, QRs are needed only often enough to
keep the frame well conditioned. ``reortho_every="auto"`` (the default) reads the
spread of :math:`\log R_{ii}` at each QR, i.e. the growth rate of the frame's
condition number, and makes the next block as long as keeps that condition number at
:math:`\varepsilon^{-1/4}` of the dtype. The QR itself is Householder (LAPACK) or
CholeskyQR2 (matrix products; ``qr="cholesky"``), which falls back to Householder
when its a-posteriori condition estimate exceeds :math:`0.1/\sqrt{\varepsilon}`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from nrnn_theory._contract import (
    check_choice,
    check_eta,
    check_finite,
    check_linalg_dtype,
    check_noise,
    check_params,
    check_positive,
    check_positive_int,
    check_state,
    check_tensor,
    check_xs,
    resolve_generator,
)
from nrnn_theory._linalg import benettin_condition_target, cholesky_qr2, qr_positive
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
    r"""Lyapunov exponents estimated by the Benettin/QR method (docs/theory/stability.md).

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
    reortho_every : int or str
        Steps between re-orthonormalizations as requested: an integer, or
        ``"auto"`` (adapted to the spectrum's spread).
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
    qr : str
        Re-orthonormalization used: ``"householder"`` or ``"cholesky"`` (CholeskyQR2).
    n_reortho : int
        Number of QR factorizations performed (transient included).
    n_fallback : int
        How many of them fell back from CholeskyQR2 to Householder.
    """

    exponents: Tensor
    exponents_per_step: Tensor
    stderr: Tensor
    per_trajectory: Tensor
    n_steps: int
    transient: int
    dt: float
    reortho_every: int | Literal["auto"]
    convention: str
    noise: NoiseSpec | None = None
    history: Tensor | None = None
    history_steps: Tensor | None = None
    qr: Literal["householder", "cholesky"] = "householder"
    n_reortho: int = 0
    n_fallback: int = 0

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

#: Re-orthonormalization methods (the ``qr`` option); see :func:`lyapunov_spectrum`.
_QR_METHODS = ("auto", "householder", "cholesky")

#: Longest block of tangent maps between two QRs that ``reortho_every="auto"`` allows.
_AUTO_MAX_EVERY = 64


# --------------------------------------------------------------------------- core
class _Benettin:
    """Streaming Benettin/QR accumulator fed the frame's image ``J Q`` each step.

    The frame is re-orthonormalized every ``every`` steps (or on the adaptive
    schedule of ``reortho_every="auto"``), and always at the end of the transient
    and of the run, so the accumulated blocks start exactly after the transient.
    ``log diag R`` is summed only for blocks past the transient.
    """

    def __init__(
        self,
        Q0: Tensor,
        n_steps: int,
        transient: int,
        reortho_every: int | str,
        qr: str,
        keep_history: bool,
    ) -> None:
        self.Q = Q0
        self.n_steps = n_steps
        self.transient = transient
        self.setting = reortho_every
        self.auto = reortho_every == "auto"
        self.every = 1 if self.auto else int(reortho_every)
        self.qr = _resolve_qr(qr, Q0)
        self.t = 0
        self.since = 0
        self.n_reortho = 0
        self.n_fallback = 0
        self.longest = 0
        self.log_sum = Q0.new_zeros(Q0.shape[0], Q0.shape[-1])
        self.history: list[Tensor] | None = [] if keep_history else None
        self.history_steps: list[int] = []
        finfo = torch.finfo(Q0.dtype)
        self.log_kappa = math.log(benettin_condition_target(Q0.dtype))
        # Entries of a block's product stay within exp(+-log_range) of the frame's:
        # a quarter of the exponent range, far from overflow and underflow.
        self.log_range = 0.25 * math.log(finfo.max)

    def push(self, Y: Tensor) -> None:
        """Take the frame's image ``Y = J Q`` (B, n, k) under this step's tangent map."""
        self.Q = Y
        self.t += 1
        self.since += 1
        t = self.t
        if self.since >= self.every or t == self.transient or t == self.n_steps:
            self._reorthonormalize()

    def _reorthonormalize(self) -> None:
        n, t = self.since, self.t
        log_r = None
        if self.qr == "cholesky":
            out = cholesky_qr2(self.Q)
            if out is None:
                self.n_fallback += 1
            else:
                self.Q, log_r = out
        if log_r is None:
            self.Q, R = qr_positive(self.Q)
            log_r = torch.log(torch.diagonal(R, dim1=-2, dim2=-1))
        self.n_reortho += 1
        self.longest = max(self.longest, n)
        self.since = 0
        if t > self.transient:
            self.log_sum = self.log_sum + log_r
            if self.history is not None:
                self.history.append(self.log_sum / (t - self.transient))
                self.history_steps.append(t - self.transient)
        if self.auto:
            self.every = self._next_block(log_r, n)

    def _next_block(self, log_r: Tensor, n: int) -> int:
        r"""Length of the next block from the stretches ``log_r`` (B, k) of the last ``n`` steps.

        The spread :math:`\max_i\log R_{ii} - \min_i\log R_{ii}` (worst trajectory)
        is the logarithm of the block's estimated condition number; its rate per step
        gives the block length that reaches the condition target
        (:func:`~nrnn_theory._linalg.benettin_condition_target`). The largest
        :math:`|\log R_{ii}|` bounds the length that keeps the product's entries in
        range. The length at most doubles from one block to the next, so a quiet
        stretch of the trajectory does not commit the run to a long block.
        """
        spread = (log_r.amax(dim=-1) - log_r.amin(dim=-1)).amax()
        size = log_r.abs().amax()
        spread, size = torch.stack([spread, size]).tolist()
        limit = min(2 * n, _AUTO_MAX_EVERY)
        if not (math.isfinite(spread) and math.isfinite(size)):
            return 1
        for total, budget in ((spread, self.log_kappa), (size, self.log_range)):
            if total > 0:
                limit = min(limit, int(budget * n / total))
        return max(1, limit)


def _resolve_qr(qr: str, Q: Tensor) -> str:
    """The concrete method for ``qr="auto"``: Householder on CPU, CholeskyQR2 elsewhere."""
    if qr != "auto":
        return qr
    return "householder" if Q.device.type == "cpu" else "cholesky"


class _NRNNTangent:
    r"""The analytic tangent map of :meth:`StepKernel.jacobian` applied to a frame.

    :math:`\tilde J Q = Q + \mathrm{diag}(s)\,(\alpha A Q + \mathrm{diag}(1-a^2)\,W Q)`
    plus the multiplicative ``"sde"`` term :math:`\epsilon\sqrt{\Delta t}\sigma_2
    \mathrm{diag}(\eta)\,Q` (diagonal) or :math:`\epsilon\sqrt{\Delta t}\sigma_2\beta\,Q`
    (scalar). Two evaluations of the same formula, chosen by cost:

    * ``"form"``: build :math:`\tilde J` (B, H, H) in one fused pass (the constant part
      :math:`I + \mathrm{diag}(s)\alpha A` is precomputed) and multiply the batch of
      frames, :math:`2BH^2k` FLOPs plus :math:`BH^2` elementwise;
    * ``"shared"``: multiply all frames at once by the shared matrices
      (:math:`[I + \mathrm{diag}(s)\alpha A;\ W]` as one (2H, H) @ (H, Bk) product) and
      combine elementwise, :math:`4BH^2k` FLOPs (:math:`2BH^2k` without the linear term)
      plus :math:`O(BHk)`, never forming :math:`\tilde J`: cheaper when ``k`` is small.

    Frames travel in the layout (H, B, k) seen as (B, H, k) on the ``"shared"`` path,
    so that consecutive steps reshape without copying.
    """

    def __init__(self, kernel: StepKernel, k: int) -> None:
        p = kernel.params
        H = kernel.H
        self.kernel = kernel
        self.H = H
        self.W = p.W
        eye = torch.eye(H, dtype=p.dtype, device=p.device)
        self.eye = eye
        self.alpha_A = p.alpha * p.A if kernel.has_linear else None
        # Constant part of the Jacobian when the step s does not depend on the draw.
        s = kernel.effective_step(None)
        self.C = eye if self.alpha_A is None else torch.addcmul(eye, s.unsqueeze(-1), self.alpha_A)
        self.shared = self.alpha_A is None or 4 * k <= H
        if self.shared:
            self.M_const = self.W if self.alpha_A is None else torch.cat([self.C, self.W], dim=0)
            self.M_vary = None if self.alpha_A is None else torch.cat([self.alpha_A, self.W], dim=0)
        self.mult = kernel.mode == "sde" and bool(kernel.g_mult)

    def _mult_diag(self, eta: Tensor | None) -> Tensor | None:
        """The multiplicative-noise diagonal (B, H) or (B, 1), or None."""
        if eta is None or not self.mult:
            return None
        k = self.kernel
        if k.structure == "diagonal":
            return k.g_mult * eta
        return k.g_mult * eta[:, self.H :]

    def __call__(self, Q: Tensor, act: Tensor, eta: Tensor | None) -> Tensor:
        """``J Q`` for frames ``Q`` (B, H, k) at activations ``act`` (B, H)."""
        d = 1.0 - act * act
        s = self.kernel.effective_step(eta)
        m = self._mult_diag(eta)
        if self.shared:
            return self._shared(Q, d, s, m)
        if s.ndim == 1:  # J = (I + diag(s) alpha A) + diag(s d) W
            J = torch.addcmul(self.C, (s * d).unsqueeze(-1), self.W)
        else:  # paper_code along a draw: J = I + diag(s) (alpha A + diag(d) W)
            K = (
                d.unsqueeze(-1) * self.W
                if self.alpha_A is None
                else torch.addcmul(self.alpha_A, d.unsqueeze(-1), self.W)
            )
            J = torch.addcmul(self.eye, s.unsqueeze(-1), K)
        if m is not None:
            diag = torch.diagonal(J, dim1=-2, dim2=-1)
            diag += m
        return torch.bmm(J, Q)

    def _shared(self, Q: Tensor, d: Tensor, s: Tensor, m: Tensor | None) -> Tensor:
        B, H, k = Q.shape
        Qt = Q.transpose(0, 1)  # (H, B, k); free when Q came from this method
        flat = Qt.reshape(H, B * k)
        dt_ = d.mT.unsqueeze(-1)  # (H, B, 1)
        if s.ndim == 1:
            Z = (self.M_const @ flat).view(-1, B, k)
            if self.alpha_A is None:  # Y = Q + diag(s d) W Q
                Yt = torch.addcmul(Qt, (s.unsqueeze(-1) * d.mT).unsqueeze(-1), Z)
            else:  # Y = C Q + diag(s d) W Q
                Yt = torch.addcmul(Z[:H], (s.unsqueeze(-1) * d.mT).unsqueeze(-1), Z[H:])
        else:
            if self.alpha_A is None:
                inner = dt_ * (self.W @ flat).view(H, B, k)
            else:
                Z = (self.M_vary @ flat).view(-1, B, k)
                inner = torch.addcmul(Z[:H], dt_, Z[H:])
            Yt = torch.addcmul(Qt, s.mT.unsqueeze(-1), inner)
        if m is not None:
            Yt = torch.addcmul(Yt, m.mT.unsqueeze(-1), Qt)
        return Yt.transpose(0, 1)


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
        reortho_every=acc.setting,
        qr=acc.qr,
        n_reortho=acc.n_reortho,
        n_fallback=acc.n_fallback,
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


def _check_reortho(reortho_every: object, qr: object) -> tuple[int | str, str]:
    if reortho_every != "auto":
        if isinstance(reortho_every, str):
            raise ValueError(
                f"reortho_every: expected a positive integer or 'auto', got {reortho_every!r}"
            )
        reortho_every = check_positive_int("reortho_every", reortho_every)
    return reortho_every, check_choice("qr", qr, _QR_METHODS)


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
    reortho_every: int | Literal["auto"] = "auto",
    qr: Literal["auto", "householder", "cholesky"] = "auto",
    h0: Tensor | None = None,
    generator: torch.Generator | None = None,
    return_history: bool = False,
    eta: Tensor | None = None,
) -> LyapunovSpectrum:
    r"""Lyapunov spectrum of the input-driven NRNN, clean or along a frozen noise path.

    Each sequence ``xs[b]`` drives one trajectory; with a ``noise`` each trajectory
    follows its own noise path, fixed once drawn, and the tangent dynamics include
    the multiplicative-noise term (docs/theory/stability.md):

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
    reortho_every : int or "auto"
        Steps between QR factorizations. ``"auto"`` (default) adapts it as the run
        goes: a block of ``n`` tangent maps stretches the frame by about
        :math:`e^{(\lambda_1-\lambda_k)n\Delta t}`, which is its condition number, and
        the next block is as long as keeps that estimate (read off the last QR's
        :math:`\log R_{ii}`) at :math:`\varepsilon^{-1/4}` for the dtype's epsilon (54 in
        float32, 8192 in float64), at most doubling from block to block, at most
        64 steps, and short enough that the product's entries
        stay far from overflow. Each QR then perturbs :math:`\log R_{ii}` by about
        :math:`\varepsilon^{3/4}` (2e-6 in float32, 2e-12 in float64), so the
        exponents agree with ``reortho_every=1`` to about
        :math:`\varepsilon^{3/4}/(n\Delta t)` per unit time (see Notes). An integer
        fixes the block length: ``1`` is the classical algorithm; large values risk
        overflow or losing the smallest exponents when
        :math:`(\lambda_1-\lambda_k)\cdot` ``reortho_every * dt`` exceeds the precision.
    qr : {"auto", "householder", "cholesky"}
        How the frame is re-orthonormalized. ``"householder"``: LAPACK's Householder
        QR (sign-corrected). ``"cholesky"``: CholeskyQR2, two passes of
        :math:`Y^\top Y = R^\top R`, :math:`Q = YR^{-1}` made of matrix products,
        falling back to Householder for any QR whose Cholesky factorization fails or
        whose estimated condition number exceeds
        :math:`0.1/\sqrt{\varepsilon}` (290 in float32, 6.7e6 in float64: beyond
        it the Gram matrix has lost too many digits). ``"auto"`` (default) is
        ``"householder"`` on CPU, where torch's batched Cholesky factorization and
        triangular solve are slow enough at ``k = 128`` that CholeskyQR2 costs about
        1.4 Householder QRs (``benchmarks/README.md``), and ``"cholesky"`` on other
        devices, where matrix products outrun LAPACK-style QR (not measured here).
        The result records the method and how many QRs fell back.
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
    Cost: each step applies the tangent map to the frame, :math:`2BH^2k` FLOPs as
    one batched product (or, for ``k <= H/4`` and without a linear term, as products
    with the shared weights, never forming the (B, H, H) Jacobians); each QR costs
    :math:`O(BHk^2)`. With ``reortho_every="auto"`` the QRs become rare wherever the
    spectrum's spread allows, and the products dominate.

    Accuracy of ``"auto"``: the exponents are sums of :math:`\log R_{ii}` over blocks;
    the ``R`` of a product is the product of the per-step ``R`` factors, so the block
    length changes the result only through rounding, of relative size
    :math:`\varepsilon\kappa` per QR for a block of condition number :math:`\kappa`.

    Streaming: the input projection is computed in chunks of 128 steps and the
    loop iterates over ``unbind`` views, so memory is :math:`O(BHk)` independent of
    ``T``. With a per-unit ``step`` the exponents are still divided by ``dt``; use
    ``exponents_per_step`` when "time" is ambiguous. For the full spectrum the sum
    of exponents equals the time average of :math:`\log|\det\tilde J_k|` (docs/theory/stability.md),
    a check used by the tests.

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
    if B == 0:
        raise ValueError("xs: expected at least one trajectory (B >= 1), got an empty batch")
    check_linalg_dtype("xs", xs, "the QR factorizations")
    H = params.hidden_size
    k = _check_k(k, H, "hidden size H")
    transient = _check_transient(transient, T, T // 10)
    reortho_every, qr = _check_reortho(reortho_every, qr)
    h = xs.new_zeros(B, H) if h0 is None else check_state(params, h0, "h0", B)
    eta = check_eta(params, noise, eta, (B, T))
    kernel = StepKernel(params, noise)
    generator = resolve_generator(generator, xs.device)
    Q0 = _random_basis(B, H, k, dtype=xs.dtype, device=xs.device, generator=generator)
    acc = _Benettin(Q0, T, transient, reortho_every, qr, return_history)
    tangent = _NRNNTangent(kernel, k)
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
                acc.push(tangent(acc.Q, act, e))
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
    reortho_every: int | Literal["auto"] = "auto",
    qr: Literal["auto", "householder", "cholesky"] = "auto",
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
    reortho_every : int or "auto"
        Steps between QR factorizations; ``"auto"`` (default) adapts them to the
        spectrum's spread as in :func:`lyapunov_spectrum`.
    qr : {"auto", "householder", "cholesky"}
        Re-orthonormalization, as in :func:`lyapunov_spectrum`.
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
    reortho_every, qr = _check_reortho(reortho_every, qr)
    dt = check_positive("dt", dt)
    generator = resolve_generator(generator, x.device)
    if jacobian is None:
        jacobian = _autodiff_jacobian(step)
    Q0 = _random_basis(B, n, k, dtype=x.dtype, device=x.device, generator=generator)
    acc = _Benettin(Q0, n_steps, transient, reortho_every, qr, return_history)
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
            acc.push(torch.bmm(J, acc.Q))
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
    try:
        values = torch.as_tensor(exponents, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            "exponents: expected a LyapunovSpectrum, a tensor or a sequence of numbers, got "
            f"{type(exponents).__name__}"
        ) from None
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
    next to the Lyapunov spectrum (docs/theory/stability.md).

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
    check_linalg_dtype("xs", xs, "the matrix norms")
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
