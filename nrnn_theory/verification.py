r"""Certified robustness radii of NRNNs by linear bound propagation through the time loop.

For a clean (or frozen-noise) NRNN, inputs :math:`x_0\in\mathbb R^{T\times D}`, a class
:math:`y` and the input set

.. math:: \mathcal X(r) = \{x : \|x - x_0\| \le r\}\ \cap\ [lo, hi]^{T\times D}
          \quad(\ell_\infty\text{ or }\ell_2\text{ over all } T\cdot D
          \text{ values jointly; the range is optional}),

this module computes sound lower and upper bounds on every logit difference
:math:`z_y(x) - z_j(x)` over :math:`\mathcal X(r)` (:func:`logit_difference_bounds`)
and the largest radius :math:`r` at which all lower bounds stay positive
(:func:`certified_radius`). It is the certified counterpart of the attacks of
:mod:`nrnn_theory.attacks` (docs/theory/margins.md: certified <= empirical), and unlike the
global Lipschitz bound of :func:`nrnn_theory.certified_margin` it does not grow like
:math:`\rho^T`.

The step :math:`h_{k+1} = h_k + s\odot(\alpha A h_k + \tanh(W h_k + U x_k + b))`
(docs/theory/model.md, conventions.md) is affine apart from the tanh, which is enclosed per unit and
step by two lines chosen from the interval of its pre-activation (the chord, or the tangent
of least area among the sound ones; see ``nrnn_theory._bound_propagation.relax_tanh``).
Three methods bound the pre-activations:

* ``"ibp"``: interval bound propagation, O(T H^2) per example: the baseline.
* ``"forward"``: symbolic intervals: linear lower/upper bounds of every state in the
  inputs, propagated forward, O(T^2 D H^2) per example, memory O(T D H); the output
  bound is one backward substitution, O(T H^2 C). Cheap for long sequences, but on
  trained (near-isometric) models its radius part grows like :math:`\rho(|M|)^T`
  with :math:`|M|` the entrywise absolute step matrix, as IBP's does: informative for
  short sequences or contractive models only.
* ``"crown"``: CROWN-style back-substitution of every pre-activation through all
  earlier steps to the inputs with signed coefficients, O(T^2 H^3) per example (one
  batched matrix product per step and pre-activation): the tightest, and the one that
  certifies non-vacuous radii on trained models.
* ``"auto"``: ``"crown"`` when :math:`T^2H^3 \le 2^{33}` on a CPU (e.g. T = 64,
  H = 64 or T = 180, H = 64) or :math:`\le 2^{42}` on a GPU (T = 784, H = 128, where
  one CROWN bound costs about 5e12 flops per example: seconds on a GPU, about an hour
  on 2 loaded CPU cores), else ``"forward"``.

Each method intersects its intervals with the cheaper methods' ones computed in the
same sweep and returns the maximum of their bounds, so ``crown >= forward >= ibp``
holds for every bound; :func:`certified_radius` runs them as a cascade, so it holds for
every radius too.

Frozen noise: with ``noise`` and ``noise_box``, the bounds hold for every noise path
whose standardized draws (:mod:`nrnn_theory.dynamics`, "Noise draws") lie in the box,
per step and unit; the step is still a tanh recurrence whose parameters depend on the
draws, and the draw-dependent parts are enclosed by the box centre plus a radius.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from nrnn_theory._bound_propagation import (
    BOUND_METHODS,
    Network,
    StepNoise,
    first_order,
    lower_bounds,
    search_radius,
)
from nrnn_theory._contract import (
    check_choice,
    check_generator,
    check_noise,
    check_params,
    check_positive,
    check_positive_int,
    check_real,
    check_state,
    check_tensor,
    check_xs,
    resolve_generator,
)
from nrnn_theory._step import StepKernel, noise_dim
from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory.dynamics import logits, readout, rollout
from nrnn_theory.losses import check_labels
from nrnn_theory.results import Result


__all__ = [
    "AUTO_CROWN_WORK",
    "AUTO_CROWN_WORK_GPU",
    "CASCADE_MAX_ITER",
    "CASCADE_RTOL",
    "CertifiedRadius",
    "NEGLIGIBLE",
    "LogitBounds",
    "NORMS",
    "RADIUS_STATUSES",
    "VERIFICATION_METHODS",
    "certified_radius",
    "logit_difference_bounds",
    "resolve_method",
]

Norm = Literal["linf", "l2"]
Method = Literal["auto", "crown", "forward", "ibp"]
NORMS: tuple[str, ...] = ("linf", "l2")
VERIFICATION_METHODS: tuple[str, ...] = ("auto", *reversed(BOUND_METHODS))

#: ``method="auto"`` picks CROWN when ``T**2 * H**3`` is at most this (about 8.6e9 on
#: a CPU: T = 64, H = 64 is 1.1e9; 4.4e12 on a GPU: T = 784, H = 128 is 1.3e12): one
#: CROWN bound costs about ``2 T^2 H^3`` flops per example, the forward mode's
#: ``4 T^2 D H^2``.
AUTO_CROWN_WORK = 2**33
AUTO_CROWN_WORK_GPU = 2**42

#: Relative tolerance and evaluation cap of the cheaper methods' searches in the cascade
#: of :func:`certified_radius` (they only provide a certified starting point).
CASCADE_RTOL = 0.1
CASCADE_MAX_ITER = 5

#: Per-example outcomes of :func:`certified_radius`.
RADIUS_STATUSES: tuple[str, ...] = (
    "certified",
    "misclassified",
    "not_certified",
    "negligible",
    "whole_range",
    "max_radius",
    "max_iter",
)

#: The search stops, with status ``"negligible"``, when the bound fails at a radius
#: below this fraction of the first-order distance to the boundary: a method that
#: certifies nothing larger is vacuous for the example (float64 rounding is ~1e-16).
NEGLIGIBLE = 1e-9

_ASSUMPTIONS = (
    "NRNN step h' = h + s*(alpha*A*h + tanh(W h + U x + b)) (+ frozen noise with draws in "
    "the stated box), readout V h_T + c, h_0 fixed; the input set is the norm ball over all "
    "T*D input values jointly (intersected with the data range when given); computed in "
    "float64 with every tanh relaxation line shifted outward by 1e-12 to absorb its own "
    "rounding; rounding of the propagation itself (relative ~1e-13) is not accounted for."
)


def resolve_method(
    method: str, n_steps: int, hidden_size: int, device: torch.device | str = "cpu"
) -> str:
    """The bound method ``"auto"`` stands for at this size and device.

    CROWN when :math:`T^2H^3` is at most :data:`AUTO_CROWN_WORK` (CPU) or
    :data:`AUTO_CROWN_WORK_GPU` (CUDA), else forward.

    Parameters
    ----------
    method : {"auto", "crown", "forward", "ibp"}
        The requested method; anything but ``"auto"`` is returned unchanged.
    n_steps : int
        Sequence length :math:`T`.
    hidden_size : int
        Hidden size :math:`H`.
    device : torch.device or str, default "cpu"
        Where the bounds will be computed.

    Returns
    -------
    str
        ``"crown"``, ``"forward"`` or ``"ibp"``.

    Examples
    --------
    >>> resolve_method("auto", 64, 64), resolve_method("auto", 784, 128)
    ('crown', 'forward')
    >>> resolve_method("auto", 784, 128, device="cuda")
    'crown'
    """
    check_choice("method", method, VERIFICATION_METHODS)
    if method != "auto":
        return method
    budget = AUTO_CROWN_WORK_GPU if torch.device(device).type == "cuda" else AUTO_CROWN_WORK
    return "crown" if n_steps**2 * hidden_size**3 <= budget else "forward"


# ------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class LogitBounds(Result):
    r"""Sound bounds on the logit differences :math:`z_y - z_j` over an input set.

    Attributes
    ----------
    lower, upper : Tensor, shape (B, C), float64
        :math:`\underline d_j \le z_y(x) - z_j(x) \le \overline d_j` for every
        :math:`x\in\mathcal X(r)` (and every noise path in the box); 0 at ``j = y``.
    nominal : Tensor, shape (B, C), float64
        :math:`z_y - z_j` at ``xs`` (and the box-centre noise path).
    labels : Tensor, shape (B,)
        The class ``y`` of each example.
    certified : Tensor, shape (B,), bool
        ``lower > 0`` for every ``j != y``: no point of the set changes the prediction
        away from ``y``.
    radius : Tensor, shape (B,), float64
    norm, method : str
        The input set's norm and the bound method used (``"auto"`` resolved).
    data_range : tuple of float or None
    noise : NoiseSpec or None
    noise_box : tuple of Tensor or None
        ``(low, high)`` of the standardized draws, broadcastable to (B, T, r).
    noise_probability : Tensor, shape (B,), or None
        Probability under the noise law that a whole path's draws lie in the box.
    dtype, assumptions : str
    """

    lower: Tensor
    upper: Tensor
    nominal: Tensor
    labels: Tensor
    certified: Tensor
    radius: Tensor
    norm: str
    method: str
    data_range: tuple[float, float] | None
    noise: NoiseSpec | None
    noise_box: tuple[Tensor, Tensor] | None
    noise_probability: Tensor | None
    dtype: str
    assumptions: str


@dataclass(frozen=True)
class CertifiedRadius(Result):
    r"""Certified radii per example: no input within them changes the prediction.

    Attributes
    ----------
    radius : Tensor, shape (B,), float64
        The largest radius found at which every lower bound of :math:`z_y - z_j` is
        positive (certified by an evaluation of the bounds); 0 for misclassified
        examples, ``inf`` when the whole data range is certified.
    bracket_upper : Tensor, shape (B,), float64
        The smallest radius found at which the method failed (``inf`` if none): the
        search closed ``[radius, bracket_upper]`` to ``rtol``. Not a bound on the true
        margin, only on what this method certifies.
    status : tuple of str
        Per example, one of :data:`RADIUS_STATUSES`: ``"certified"`` (bracket closed),
        ``"misclassified"`` (radius 0), ``"not_certified"`` (not even radius 0: frozen
        noise alone can flip it), ``"negligible"`` (the bound failed below
        :data:`NEGLIGIBLE` times the first-order distance: the method is vacuous here;
        the radius is the largest certified one found, possibly 0), ``"whole_range"``
        (every point of the data range), ``"max_radius"`` (certified at the cap),
        ``"max_iter"`` (bracket not closed).
    labels : Tensor, shape (B,)
    score_margin : Tensor, shape (B,), float64
        :math:`z_y - \max_{j\ne y} z_j` at ``xs`` (box-centre noise path).
    radii : dict of str to Tensor
        The radius of every method of the cascade (``"ibp"``, then ``"forward"``, then
        ``"crown"``, up to ``method``): each starts where the cheaper one stopped, so
        they are ordered on every example.
    iterations : dict of str to Tensor
        Bound evaluations per example and method.
    norm, method : str
    rtol : float
    data_range : tuple of float or None
    noise : NoiseSpec or None
    noise_box : tuple of Tensor or None
    noise_probability : Tensor, shape (B,), or None
    n_checked : int
        Points of each certified set evaluated after the search (vertices or sphere
        points, an FGSM point; random in-box noise paths): all kept the label.
    dtype, assumptions : str
    """

    radius: Tensor
    bracket_upper: Tensor
    status: tuple[str, ...]
    labels: Tensor
    score_margin: Tensor
    radii: dict[str, Tensor]
    iterations: dict[str, Tensor]
    norm: str
    method: str
    rtol: float
    data_range: tuple[float, float] | None
    noise: NoiseSpec | None
    noise_box: tuple[Tensor, Tensor] | None
    noise_probability: Tensor | None
    n_checked: int
    dtype: str
    assumptions: str


# --------------------------------------------------------------------------- the setup
def _check_data_range(data_range: object, xs: Tensor) -> tuple[float, float] | None:
    if data_range is None:
        return None
    if not isinstance(data_range, tuple | list) or len(data_range) != 2:
        raise TypeError(f"data_range: expected None or a pair (low, high), got {data_range!r}")
    lo = check_real("data_range[0]", data_range[0])
    hi = check_real("data_range[1]", data_range[1])
    if not lo < hi:
        raise ValueError(f"data_range: expected low < high, got ({lo}, {hi})")
    xmin, xmax = float(xs.min()), float(xs.max())
    if xmin < lo or xmax > hi:
        raise ValueError(
            f"xs: expected values inside data_range ({lo}, {hi}), got values in [{xmin}, {xmax}]"
        )
    return lo, hi


def _check_radius(radius: object, B: int, device: torch.device) -> Tensor:
    if isinstance(radius, Tensor):
        r = check_tensor("radius", radius)
        if r.ndim == 0:
            r = r.reshape(1).expand(B)
        if r.shape != (B,):
            raise ValueError(
                f"radius: expected a number or a tensor of shape ({B},), got {tuple(r.shape)}"
            )
        r = r.detach().to(dtype=torch.float64, device=device)
        if not bool(torch.isfinite(r).all()) or bool((r < 0).any()):
            raise ValueError(f"radius: expected finite radii >= 0, got min {float(r.min())}")
        return r.contiguous()
    r = check_real("radius", radius)
    if r < 0:
        raise ValueError(f"radius: expected a number >= 0, got {r}")
    return torch.full((B,), r, dtype=torch.float64, device=device)


def _as_box_tensor(name: str, value: object, B: int, T: int, r: int, device) -> Tensor:
    if isinstance(value, Tensor):
        t = check_tensor(name, value).detach().to(dtype=torch.float64, device=device)
    else:
        t = torch.tensor(check_real(name, value), dtype=torch.float64, device=device)
    if t.ndim > 3:
        raise ValueError(f"{name}: expected at most 3 dimensions (B, T, r), got {t.ndim}")
    t = t.reshape((1,) * (3 - t.ndim) + tuple(t.shape))
    try:
        shape = torch.broadcast_shapes(t.shape, (B, T, r))
    except RuntimeError:
        shape = None
    if shape != (B, T, r):
        raise ValueError(
            f"{name}: expected a shape broadcastable to (B, T, r) = ({B}, {T}, {r}) with "
            f"r = noise_dim(noise, H), got {tuple(t.shape)}"
        )
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: expected finite values")
    return t.expand(t.shape[0], t.shape[1], r)


def _noise_box(noise_box: object, B: int, T: int, r: int, device) -> tuple[Tensor, Tensor]:
    if isinstance(noise_box, tuple | list):
        if len(noise_box) != 2:
            raise TypeError(
                f"noise_box: expected a radius or a pair (low, high), got {len(noise_box)} items"
            )
        lo = _as_box_tensor("noise_box[0]", noise_box[0], B, T, r, device)
        hi = _as_box_tensor("noise_box[1]", noise_box[1], B, T, r, device)
        if bool((lo > hi).any()):
            raise ValueError("noise_box: expected low <= high everywhere, got low > high")
        return lo, hi
    rad = _as_box_tensor("noise_box", noise_box, B, T, r, device)
    if bool((rad < 0).any()):
        raise ValueError(f"noise_box: expected a radius >= 0, got min {float(rad.min())}")
    return -rad, rad


def _nonzero(t: Tensor | None) -> Tensor | None:
    return t if t is not None and bool(t.any()) else None


def _step_noise(
    p: NRNNParams, noise: NoiseSpec | None, box: tuple[Tensor, Tensor] | None
) -> tuple[StepNoise, Tensor | None, Tensor | None]:
    """The per-step pieces of the (frozen-noise) step, the box centre path and log P(box).

    Returns ``(StepNoise, centre draws (Bn, Tn, r) or None, log-probability (Bn, Tn))``.
    """
    H = p.hidden_size
    s = p.drift_step.view(1, 1, H)
    if noise is None:
        return StepNoise(S=s), None, None
    lo, hi = box
    k = StepKernel(p, noise)
    if noise.convention == "paper_code":
        ups_lo = lo[..., H:].clamp(min=-math.sqrt(3.0))
        ups_hi = hi[..., H:].clamp(max=math.sqrt(3.0))
        if bool((ups_lo > ups_hi).any()):
            raise ValueError(
                "noise_box: the uniform draws sqrt(12)(u - 1/2) of 'paper_code' lie in "
                "[-sqrt(3), sqrt(3)]; the box misses that interval"
            )
        lo = torch.cat([lo[..., :H].expand_as(ups_lo), ups_lo], dim=-1)
        hi = torch.cat([hi[..., :H].expand_as(ups_hi), ups_hi], dim=-1)
    mid, rad = 0.5 * (lo + hi), 0.5 * (hi - lo)
    ga, gm = abs(k.g_add), abs(k.g_mult)
    if noise.convention == "paper_code":
        mu = noise.multiplicative
        m_c = 1.0 - 0.5 * mu + gm * mid[..., H:]
        step = StepNoise(
            S=s * m_c,
            c=_nonzero(ga * mid[..., :H]) if ga else None,
            rho_add=_nonzero(ga * rad[..., :H]) if ga else None,
            coef_f=_nonzero(s.abs() * gm * rad[..., H:]) if gm else None,
        )
        gauss = slice(0, H)
        uniform = slice(H, 2 * H)
    elif noise.structure == "diagonal":
        step = StepNoise(
            S=s,
            D=(1.0 + gm * mid) if gm and bool(mid.any()) else None,
            c=_nonzero(ga * mid) if ga else None,
            rho_add=_nonzero(ga * rad) if ga else None,
            coef_h=_nonzero(gm * rad) if gm else None,
        )
        gauss, uniform = slice(0, H), None
    else:  # scalar: (xi (H), beta (1))
        beta_c, beta_r = mid[..., H:], rad[..., H:]
        step = StepNoise(
            S=s,
            D=(1.0 + gm * beta_c).expand(*beta_c.shape[:-1], H)
            if gm and bool(beta_c.any())
            else None,
            c=_nonzero(ga * mid[..., :H]) if ga else None,
            rho_add=_nonzero(ga * rad[..., :H]) if ga else None,
            coef_h=_nonzero((gm * beta_r).expand(*beta_r.shape[:-1], H)) if gm else None,
        )
        gauss, uniform = slice(0, H + 1), None
    sd = torch.special.ndtr(hi[..., gauss]) - torch.special.ndtr(lo[..., gauss])
    logp = torch.log(sd.clamp(min=0.0)).sum(-1)
    if uniform is not None:
        width = (hi[..., uniform] - lo[..., uniform]) / (2.0 * math.sqrt(3.0))
        logp = logp + torch.log(width.clamp(min=0.0)).sum(-1)
    return step, mid, logp


@dataclass
class _Setup:
    p: NRNNParams  # float64
    net: Network
    noise_step: StepNoise
    x0: Tensor  # (B, T, D) float64
    h0: Tensor | None
    labels: Tensor
    nominal: Tensor  # (B, C): z_y - z_j
    others: Tensor  # (B, C - 1) class indices j != y
    spec: Tensor  # (B, C - 1, H)
    spec_const: Tensor  # (B, C - 1)
    data_range: tuple[float, float] | None
    norm: str
    noise: NoiseSpec | None
    box: tuple[Tensor, Tensor] | None
    centre: Tensor | None  # (B, T, r) centre draws
    noise_probability: Tensor | None  # (B,)

    def subset(self, idx: Tensor) -> tuple[StepNoise, Tensor, Tensor | None, Tensor, Tensor]:
        nz = self.noise_step

        def take(t: Tensor | None) -> Tensor | None:
            return t if t is None or t.shape[0] == 1 else t[idx]

        sub = StepNoise(
            S=take(nz.S),
            D=take(nz.D),
            c=take(nz.c),
            rho_add=take(nz.rho_add),
            coef_h=take(nz.coef_h),
            coef_f=take(nz.coef_f),
        )
        h0 = None if self.h0 is None else self.h0[idx]
        return sub, self.x0[idx], h0, self.spec[idx], self.spec_const[idx]


def _setup(params, xs, labels, norm, data_range, noise, noise_box, h0, activation="tanh") -> _Setup:
    params = check_params(params)
    xs = check_xs(params, xs)
    check_choice("norm", norm, NORMS)
    noise = check_noise(noise)
    if noise is not None and noise.is_zero:
        noise = None
    B, T, _ = xs.shape
    if B == 0:
        raise ValueError("xs: expected at least one example (B >= 1), got an empty batch")
    C = params.num_classes
    if C < 2:
        raise ValueError(f"params: expected at least 2 classes (V of shape (C, H)), got C = {C}")
    if h0 is not None:
        h0 = check_state(params, h0, "h0", B).detach().to(torch.float64)
    p = params.detach().to(torch.float64)
    x0 = xs.detach().to(torch.float64)
    data_range = _check_data_range(data_range, x0)
    box = centre = logp = None
    if noise is not None:
        r = noise_dim(noise, p.hidden_size)
        box = _noise_box(noise_box, B, T, r, x0.device)
    noise_step, centre, logp = _step_noise(p, noise, box)
    eta = None if noise is None else centre.expand(B, T, -1)
    with torch.no_grad():
        z = logits(p, x0, noise=noise, h0=h0, eta=eta)
    if labels is None:
        y = z.argmax(dim=1)
    else:
        y = check_labels(labels, B, C, x0.device)
    nominal = z.gather(1, y.unsqueeze(1)) - z
    ar = torch.arange(C - 1, device=x0.device).expand(B, C - 1)
    others = ar + (ar >= y.unsqueeze(1)).long()
    spec = p.V[y].unsqueeze(1) - p.V[others]
    spec_const = p.c[y].unsqueeze(1) - p.c[others]
    net = Network(
        W=p.W,
        U=p.U,
        b=p.b,
        aA=None if p.alpha == 0 else p.alpha * p.A,
        V=p.V,
        c=p.c,
        activation=activation,
    )
    prob = None
    if logp is not None:
        prob = torch.exp(logp.expand(B, T).sum(1))
    return _Setup(
        p=p,
        net=net,
        noise_step=noise_step,
        x0=x0,
        h0=h0,
        labels=y,
        nominal=nominal,
        others=others,
        spec=spec,
        spec_const=spec_const,
        data_range=data_range,
        norm=norm,
        noise=noise,
        box=box,
        centre=None if centre is None else centre.expand(B, T, -1),
        noise_probability=prob,
    )


def _lower(st: _Setup, idx: Tensor, radius: Tensor, method: str, both=False, with_radius=False):
    nz, x0, h0, spec, const = st.subset(idx)
    if both:
        spec = torch.cat([spec, -spec], dim=1)
        const = torch.cat([const, -const], dim=1)
    return lower_bounds(
        st.net, nz, x0, radius, st.norm, st.data_range, spec, const, method, h0, with_radius
    )


# ------------------------------------------------------------------------------ bounds
def logit_difference_bounds(
    params: NRNNParams,
    xs: Tensor,
    labels: Tensor | None = None,
    *,
    radius: float | Tensor,
    norm: Norm = "linf",
    method: Method = "auto",
    data_range: tuple[float, float] | None = None,
    noise: NoiseSpec | None = None,
    noise_box: float | Tensor | tuple[float | Tensor, float | Tensor] = 4.0,
    h0: Tensor | None = None,
) -> LogitBounds:
    r"""Sound bounds on every logit difference :math:`z_y - z_j` over an input ball.

    .. math:: \underline d_j \le \min_{x\in\mathcal X(r)} (z_y - z_j)(x),\qquad
              \overline d_j \ge \max_{x\in\mathcal X(r)} (z_y - z_j)(x),\qquad
              \mathcal X(r) = \{x: \|x - x_0\| \le r\}\cap[lo, hi]^{T\times D}

    by linear bound propagation through the time loop (module docstring). A backward
    pass with the coefficients of both :math:`\pm(z_y - z_j)` gives both sides.

    Parameters
    ----------
    params : NRNNParams
    xs : Tensor, shape (B, T, D)
        Centres :math:`x_0` of the input sets.
    labels : Tensor, shape (B,), optional
        Classes ``y`` (default: the predictions at ``xs``).
    radius : float or Tensor, shape (B,)
        Radius :math:`r \ge 0` of each ball.
    norm : {"linf", "l2"}
        Norm over all T*D input values of a sequence jointly. Bounds are concretized
        with the dual norm (:math:`\ell_1` for :math:`\ell_\infty` balls, :math:`\ell_2`
        for :math:`\ell_2` balls).
    method : {"auto", "crown", "forward", "ibp"}
        Module docstring; ``"auto"`` picks by the size :math:`T^2H^3`
        (:data:`AUTO_CROWN_WORK`). Each method is at least as tight as the cheaper
        ones on every example (it takes the maximum with their bounds).
    data_range : (float, float), optional
        Intersect the ball with this box (e.g. ``(0, 1)`` for pixels); ``xs`` must lie
        in it. For :math:`\ell_\infty` the box is clipped exactly; for :math:`\ell_2` the
        bound is the better of the ball's and the clipped :math:`\ell_\infty` box's
        (both contain the intersection, so it is sound but not exact).
    noise : NoiseSpec, optional
        Frozen-noise certification: the bounds hold for every noise path of this noise
        whose standardized draws (``eta`` of :func:`nrnn_theory.rollout`) lie in
        ``noise_box``. ``None`` (default) is the clean inference model.
    noise_box : float or Tensor or (low, high)
        The box of the draws, per step and coordinate: a radius (``|eta| <= radius``) or a
        pair ``(low, high)``, each broadcastable to (B, T, r),
        ``r = noise_dim(noise, H)``. For ``"paper_code"`` the uniform coordinates are
        also clipped to their support :math:`[-\sqrt3, \sqrt3]`. Default 4: each
        Gaussian draw in :math:`\pm 4\sigma` (a whole path of T*r draws lies in it with
        the probability reported in ``noise_probability``).
    h0 : Tensor, shape (B, H), optional
        Fixed initial state (default zeros).

    Returns
    -------
    LogitBounds
        float64 bounds (B, C), the nominal differences and ``certified``.

    Notes
    -----
    Computed in float64 on the device of ``params``. Time per example and bound:
    IBP O(T H^2); forward O(T^2 D H^2 + T H^2 C); CROWN O(T^2 H^3), one batched
    (2H, 2H) x (2H, H + D + 1) product per step and pre-activation (about
    :math:`2T^2H^2(H + D + 1)` flops: 4.4e9 at T = 64, H = 64; 5.3e12 at T = 784,
    H = 128). Memory per example (float64 values): IBP O(H); forward about
    8 T D H (centre and radius coefficients of the states and pre-activations);
    CROWN that plus :math:`2TH(H + D + 1)` for the step matrices of the
    back-substitution (4.3 MB at T = 64, H = 64; 210 MB at T = 784, H = 128) and
    :math:`2TDH` for the input coefficients. Batch with ``certified_radius``'s
    ``batch_size`` when that does not fit.

    Frozen multiplicative noise enters as a radius proportional to the state
    (``"sde"``) or drift (``"paper_code"``) interval, taken from the forward and IBP
    intervals.

    On trained (near-isometric) Lipschitz RNNs the IBP and forward bounds grow like
    :math:`\rho(|M|)^T` with :math:`|M|` the entrywise absolute step matrix (the
    wrapping effect of intervals), so beyond a few tens of steps they certify nothing
    useful; CROWN substitutes signed coefficients back to the inputs and does not
    wrap (measured in ``benchmarks/bench_verification.py``).

    References
    ----------
    .. [1] docs/theory/model.md, conventions.md (the step), docs/theory/margins.md
       (certified <= empirical margin).
    .. [2] Zhang et al., Efficient neural network robustness certification with general
       activation functions (CROWN), NeurIPS 2018; Ko et al., POPQORN, ICML 2019.

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(1), W=torch.zeros(1, 1), U=torch.ones(1, 1),
    ...                b=torch.zeros(1), V=torch.tensor([[1.0], [-1.0]]),
    ...                c=torch.zeros(2), dt=0.5)
    >>> bnd = logit_difference_bounds(p, torch.ones(1, 1, 1), radius=0.1, method="crown")
    >>> lo, hi = bnd.lower[0, 1].item(), bnd.upper[0, 1].item()  # z_0 - z_1 = tanh(x)
    >>> lo <= math.tanh(0.9) and math.tanh(1.1) <= hi, round(lo, 4), round(hi, 4)
    (True, 0.7163, 0.8005)
    """
    st = _setup(params, xs, labels, norm, data_range, noise, noise_box, h0)
    B, T, _ = st.x0.shape
    C = st.p.num_classes
    m = resolve_method(method, T, st.p.hidden_size, st.x0.device)
    r = _check_radius(radius, B, st.x0.device)
    idx = torch.arange(B, device=st.x0.device)
    low = _lower(st, idx, r, m, both=True)
    lower = torch.zeros(B, C, dtype=torch.float64, device=st.x0.device)
    upper = torch.zeros_like(lower)
    lower.scatter_(1, st.others, low[:, : C - 1])
    upper.scatter_(1, st.others, -low[:, C - 1 :])
    return LogitBounds(
        lower=lower,
        upper=upper,
        nominal=st.nominal,
        labels=st.labels,
        certified=(low[:, : C - 1] > 0).all(dim=1),
        radius=r,
        norm=norm,
        method=m,
        data_range=st.data_range,
        noise=st.noise,
        noise_box=st.box,
        noise_probability=st.noise_probability,
        dtype="float64",
        assumptions=_ASSUMPTIONS,
    )


# ------------------------------------------------------------------------------ radius
def _full_radius(st: _Setup) -> Tensor:
    """Radius from which the ball covers the whole data range (inf without one)."""
    B = st.x0.shape[0]
    if st.data_range is None:
        return torch.full((B,), math.inf, dtype=torch.float64, device=st.x0.device)
    lo, hi = st.data_range
    far = torch.maximum(st.x0 - lo, hi - st.x0).flatten(1)
    return far.amax(dim=1) if st.norm == "linf" else far.norm(dim=1)


def _check_points(
    st: _Setup, radius: Tensor, ok: Tensor, n_samples: int, generator: torch.Generator
) -> int:
    """Evaluate sampled points of each certified set; raise if one changes the label."""
    idx = ok.nonzero().squeeze(1)
    if idx.numel() == 0 or n_samples == 0:
        return 0
    x0 = st.x0[idx]
    n, T, D = x0.shape
    r = radius[idx].view(n, 1, 1, 1)
    shape = (n, n_samples, T, D)
    dev = x0.device
    if st.norm == "linf":
        sign = torch.randint(0, 2, shape, generator=generator, device=dev).to(x0.dtype) * 2 - 1
        u = torch.rand(shape, generator=generator, dtype=x0.dtype, device=dev)
        vertex = torch.rand(n, n_samples, 1, 1, generator=generator, dtype=x0.dtype, device=dev)
        delta = r * torch.where(vertex < 0.5, sign, 2 * u - 1)
    else:
        z = torch.randn(shape, generator=generator, dtype=x0.dtype, device=dev)
        delta = r * z / z.flatten(2).norm(dim=2).view(n, n_samples, 1, 1)
    pts = x0.unsqueeze(1) + delta
    if st.data_range is not None:
        pts = pts.clamp(*st.data_range)
    pts = pts.reshape(n * n_samples, T, D)
    eta = None
    if st.noise is not None:
        lo, hi = st.box
        lo = lo.expand(st.x0.shape[0], T, -1)[idx]
        hi = hi.expand(st.x0.shape[0], T, -1)[idx]
        if st.noise.convention == "paper_code":
            H = st.p.hidden_size
            s3 = math.sqrt(3.0)
            lo = torch.cat([lo[..., :H], lo[..., H:].clamp(min=-s3)], dim=-1)
            hi = torch.cat([hi[..., :H], hi[..., H:].clamp(max=s3)], dim=-1)
        u = torch.rand(
            (n, n_samples, *lo.shape[1:]), generator=generator, dtype=x0.dtype, device=dev
        )
        eta = (lo.unsqueeze(1) + u * (hi - lo).unsqueeze(1)).reshape(n * n_samples, T, -1)
    h0 = None if st.h0 is None else st.h0[idx].repeat_interleave(n_samples, dim=0)
    with torch.no_grad():
        hT = rollout(st.p, pts, noise=st.noise, h0=h0, eta=eta, allow_nonfinite=True)
        z = readout(st.p, hT)
    y = st.labels[idx].repeat_interleave(n_samples)
    own = z.gather(1, y.unsqueeze(1))
    others = z.scatter(1, y.unsqueeze(1), -math.inf)
    bad = ~(own.squeeze(1) > others.max(dim=1).values)
    if bool(bad.any()):
        k = int(bad.nonzero()[0])
        raise RuntimeError(
            "certified_radius: a sampled point inside a certified set changes the label "
            f"(example {int(idx[k // n_samples])}); the bounds are unsound. Please report "
            "this with the model and inputs."
        )
    return n_samples


def certified_radius(
    params: NRNNParams,
    xs: Tensor,
    labels: Tensor | None = None,
    *,
    norm: Norm = "linf",
    method: Method = "auto",
    data_range: tuple[float, float] | None = None,
    noise: NoiseSpec | None = None,
    noise_box: float | Tensor | tuple[float | Tensor, float | Tensor] = 4.0,
    h0: Tensor | None = None,
    rtol: float = 1e-2,
    max_iter: int = 40,
    max_radius: float | None = None,
    batch_size: int | None = None,
    check_samples: int = 16,
    generator: torch.Generator | None = None,
) -> CertifiedRadius:
    r"""Certified robustness radius per example: the largest :math:`r` found with
    :math:`\min_{x\in\mathcal X(r)} (z_y - z_j)(x) > 0` for all :math:`j\ne y`.

    .. math:: r^\star = \sup\{r : \underline d_j(r) > 0\ \ \forall j\ne y\}

    with the lower bounds :math:`\underline d_j(r)` of
    :func:`logit_difference_bounds`. The search runs the methods as a cascade (IBP,
    then forward, then CROWN, up to ``method``), each starting from the radius the
    cheaper one certified: the first probe is the first-order distance
    :math:`\min_j d_j(x_0)/\|\nabla_x d_j(x_0)\|_*`, then the radius grows until the
    bound fails and the bracket is closed by safeguarded false position (Illinois)
    to ``rtol``.

    Parameters
    ----------
    params : NRNNParams
    xs : Tensor, shape (B, T, D)
    labels : Tensor, shape (B,), optional
        True classes (default: the predictions). A misclassified example gets radius 0
        and status ``"misclassified"``.
    norm : {"linf", "l2"}
        Over all T*D input values jointly.
    method : {"auto", "crown", "forward", "ibp"}
        See :func:`logit_difference_bounds`.
    data_range : (float, float), optional
        Intersect the ball with this box. For :math:`\ell_\infty`, radii beyond the one
        that covers the whole range are all the same set: if it is certified the radius
        is ``inf`` (status ``"whole_range"``).
    noise, noise_box, h0
        See :func:`logit_difference_bounds`.
    rtol : float
        The search stops when the bracket ``[radius, bracket_upper]`` satisfies
        ``bracket_upper - radius <= rtol * bracket_upper``. Each halving of ``rtol``
        costs about one more bound evaluation.
    max_iter : int
        Bound evaluations per example and method.
    max_radius : float, optional
        Cap on the radius (status ``"max_radius"`` when certified there).
    batch_size : int, optional
        Examples propagated together (default all); memory is proportional to it.
    check_samples : int
        After the search, this many random points of each certified set (``linf``:
        half vertices, half interior; ``l2``: sphere points; clipped to the data
        range; with noise, random in-box noise paths) are evaluated by
        :func:`nrnn_theory.logits` in float64. A point that changes the label would
        prove the bounds unsound: ``RuntimeError``. 0 disables the check.
    generator : torch.Generator, optional
        Randomness of the check; ``None`` means fresh randomness.

    Returns
    -------
    CertifiedRadius
        ``radius`` (B,) float64, ``status``, ``radii`` and ``iterations`` per method.

    Notes
    -----
    The radius is certified for the method's bounds; it is a lower bound on the true
    input margin, so it never exceeds the distance of any successful attack
    (docs/theory/margins.md). Time: about 4-6 bound evaluations per example for the requested
    method plus at most :data:`CASCADE_MAX_ITER` for each cheaper one
    (:func:`logit_difference_bounds`, Notes, for their cost); memory that of one
    evaluation of ``batch_size`` examples.

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(1), W=torch.zeros(1, 1), U=torch.ones(1, 1),
    ...                b=torch.zeros(1), V=torch.tensor([[1.0], [-1.0]]),
    ...                c=torch.zeros(2), dt=0.5)
    >>> g = torch.Generator().manual_seed(0)
    >>> res = certified_radius(p, torch.ones(1, 1, 1), method="crown", generator=g)
    >>> res.status, abs(float(res.radius[0]) - 1.0) <= 0.01  # z_0 - z_1 = tanh(x)
    (('certified',), True)
    """
    rtol = check_positive("rtol", rtol)
    if rtol >= 1:
        raise ValueError(f"rtol: expected a number in (0, 1), got {rtol}")
    max_iter = check_positive_int("max_iter", max_iter)
    if max_radius is not None:
        max_radius = check_positive("max_radius", max_radius)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    check_samples = check_positive_int("check_samples", check_samples, minimum=0)
    check_generator(generator)
    st = _setup(params, xs, labels, norm, data_range, noise, noise_box, h0)
    B, T, _ = st.x0.shape
    dev = st.x0.device
    m = resolve_method(method, T, st.p.hidden_size, dev)
    cascade = BOUND_METHODS[: BOUND_METHODS.index(m) + 1]

    def evaluate(method_name: str):
        def f(idx: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
            step = idx.numel() if batch_size is None else batch_size
            vals, reuse = [], []
            for i in range(0, idx.numel(), step):
                low, r_star = _lower(
                    st, idx[i : i + step], r[i : i + step], method_name, with_radius=True
                )
                vals.append(low.min(dim=1).values)
                reuse.append(r_star)
            return torch.cat(vals), torch.cat(reuse)

        return f

    margin = (
        torch.where(
            torch.nn.functional.one_hot(st.labels, st.p.num_classes).bool(), math.inf, st.nominal
        )
        .min(dim=1)
        .values
    )
    correct = margin > 0
    f0 = margin.clone()
    iterations: dict[str, Tensor] = {}
    if st.noise is not None and bool(correct.any()):
        # With frozen noise even radius 0 needs the bounds.
        idx = correct.nonzero().squeeze(1)
        zero = torch.zeros(idx.numel(), dtype=torch.float64, device=dev)
        f0[idx] = evaluate(m)(idx, zero)[0]
    active = correct & (f0 > 0)
    # First probe: the first-order distance to the nearest boundary.
    value, dual = first_order(st.net, st.noise_step, st.x0, norm, st.spec, st.spec_const, st.h0)
    ratio = torch.where(dual > 0, value / torch.where(dual > 0, dual, 1.0), math.inf)
    first = ratio.clamp(min=0.0).min(dim=1).values
    r_full = _full_radius(st)
    r_max = r_full if max_radius is None else r_full.clamp(max=max_radius)
    first = torch.where(torch.isfinite(first) & (first > 0), first, torch.ones_like(first))
    first = torch.minimum(first, r_max)
    first_order_radius = first.clone()
    slope0 = torch.where(f0 > 0, f0 / first, 0.0)  # the linear model's root is ``first``
    lo = torch.zeros(B, dtype=torch.float64, device=dev)
    radii: dict[str, Tensor] = {}
    res = None
    for name in cascade:
        if res is not None:  # start where the cheaper method stopped
            first = torch.where(first > 1.5 * lo, first, 2.0 * lo)
            first = torch.minimum(torch.where(first > 0, first, 1.0), r_max)
        final = name == m
        res = search_radius(
            evaluate(name),
            lo,
            f0,
            first=first,
            rtol=rtol if final else max(rtol, CASCADE_RTOL),
            max_iter=max_iter if final else min(max_iter, CASCADE_MAX_ITER),
            r_max=r_max,
            active=active,
            slope0=slope0,
            min_radius=NEGLIGIBLE * first_order_radius,
        )
        lo = res["lo"]
        radii[name] = torch.where(
            res["capped"] & (r_max >= r_full) & torch.isfinite(r_full), math.inf, lo
        )
        iterations[name] = res["n_eval"]
    radius = radii[m]
    status = []
    for b in range(B):
        if not bool(correct[b]):
            status.append("misclassified")
        elif not bool(active[b]):
            status.append("not_certified")
        elif bool(res["capped"][b]):
            status.append("whole_range" if math.isinf(float(radius[b])) else "max_radius")
        elif bool(res["converged"][b]):
            status.append("certified")
        elif bool(res["negligible"][b]):
            status.append("negligible")
        else:
            status.append("max_iter")
    gen = resolve_generator(generator, dev)
    n_checked = _check_points(st, torch.minimum(lo, r_max), active & (lo > 0), check_samples, gen)
    return CertifiedRadius(
        radius=radius,
        bracket_upper=torch.where(active, res["hi"], 0.0),
        status=tuple(status),
        labels=st.labels,
        score_margin=margin,
        radii=radii,
        iterations=iterations,
        norm=norm,
        method=m,
        rtol=rtol,
        data_range=st.data_range,
        noise=st.noise,
        noise_box=st.box,
        noise_probability=st.noise_probability,
        n_checked=n_checked,
        dtype="float64",
        assumptions=_ASSUMPTIONS,
    )
