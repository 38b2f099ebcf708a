r"""Gradient attacks and empirical margins: FGSM, PGD, DeepFool, PGD bisection.

The empirical side of docs/theory/margins.md: the smallest perturbation an attack finds that
changes a prediction is an *upper* bound on the input margin, so a certified radius
(:func:`nrnn_theory.margins.certified_margin`) must never exceed it. The same
attacks, at a fixed budget, are the adversarial perturbation (d) of the robustness
sweeps (docs/theory/experiments.md, :mod:`nrnn_theory.robustness`).

Every attack takes a generic differentiable ``model(xs) -> logits`` mapping inputs
(B, T, D) to logits (B, C) (or an :class:`~nrnn_theory.NRNNParams`, meaning its
clean logits). Input gradients come from ``torch.autograd.grad`` with respect to the
input only; no parameter ``.grad`` is touched and the model is never modified.
Examples must not interact (eval mode). Norms are taken over all T*D values of a
sequence: :math:`\|\delta\|_2` and :math:`\|\delta\|_\infty = \max|\delta|`.

Perturbed inputs are clipped to ``bounds = (low, high)`` when given (the data
range); by default they are not, which matches the unconstrained margin that the
certificate bounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from nrnn_theory._contract import (
    check_choice,
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_real,
    check_tensor,
    is_transformed,
)
from nrnn_theory._model import as_model, check_inputs, evaluate, input_gradient, resolve_labels
from nrnn_theory._record import Result
from nrnn_theory._types import NRNNParams


__all__ = [
    "ATTACK_LOSSES",
    "MINIMAL_METHODS",
    "NORMS",
    "EmpiricalMargin",
    "deepfool",
    "fgsm",
    "minimal_perturbation",
    "perturbation_norm",
    "pgd",
]


# ---------------------------------------------------------------------- records
@dataclass(frozen=True)
class EmpiricalMargin(Result):
    r"""Smallest perturbation an attack found that changes the prediction, per example.

    Every finite ``distance`` belongs to a verified adversarial input
    (``perturbed``), so it is an upper bound on the true margin; a certified radius
    must never exceed it (docs/theory/margins.md).

    Attributes
    ----------
    distance : Tensor, shape (B,)
        Norm (``norm``) of ``perturbed - xs``; ``inf`` where no attack succeeded and
        0 where the label is already not the prediction.
    success : Tensor, shape (B,), bool
    perturbed : Tensor, shape (B, T, D)
        The adversarial inputs (the clean inputs where ``success`` is False).
    labels : Tensor, shape (B,)
        The classes the attack moved away from.
    lower : Tensor, shape (B,)
        Largest radius at which the bisection's attack failed: a bracket, **not** a
        certified bound (0 when no bisection ran).
    norm : str
        ``"l2"`` or ``"linf"``, over all T*D input values.
    method : str
    bounds : tuple of float or None
        Box the perturbed inputs were clipped to, if any.
    """

    distance: Tensor
    success: Tensor
    perturbed: Tensor
    labels: Tensor
    lower: Tensor
    norm: str
    method: str
    bounds: tuple[float, float] | None


Norm = Literal["l2", "linf"]
NORMS: tuple[str, ...] = ("l2", "linf")
ModelLike = NRNNParams | Callable[[Tensor], Tensor]


# ------------------------------------------------------------------------ primitives
def _ce(scores: Tensor, y: Tensor) -> Tensor:
    return torch.nn.functional.cross_entropy(scores, y, reduction="none")


def _margin_loss(scores: Tensor, y: Tensor) -> Tensor:
    own = scores.gather(1, y.unsqueeze(1)).squeeze(1)
    others = scores.scatter(1, y.unsqueeze(1), float("-inf"))
    return others.max(dim=1).values - own


#: Loss maximized by FGSM/PGD: cross-entropy, or the margin loss
#: :math:`\max_{j\ne y}s_j - s_y` (positive exactly when the prediction is not ``y``).
ATTACK_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "ce": _ce,
    "margin": _margin_loss,
}


def perturbation_norm(delta: Tensor, norm: Norm = "l2") -> Tensor:
    r"""Norm of each perturbation over all its T*D values, shape (B,).

    Parameters
    ----------
    delta : Tensor, shape (B, T, D)
        Perturbations, one per example.
    norm : {"l2", "linf"}
        Euclidean norm or largest absolute value.

    Returns
    -------
    Tensor, shape (B,)

    Examples
    --------
    >>> d = torch.tensor([[[3.0], [-4.0]]])
    >>> perturbation_norm(d, "l2"), perturbation_norm(d, "linf")
    (tensor([5.]), tensor([4.]))
    """
    check_choice("norm", norm, NORMS)
    delta = check_tensor("delta", delta)
    if delta.ndim < 1:
        raise ValueError("delta: expected a batch of perturbations (B, ...), got a 0-dim tensor")
    flat = delta.flatten(1)
    if norm == "l2":
        return flat.norm(dim=1)
    return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])


def unit_direction(g: Tensor, norm: str) -> Tensor:
    """Steepest-ascent direction of unit norm for a gradient (B, T, D).

    Package-internal (not in ``__all__``): shared with :mod:`nrnn_theory.robustness`.
    """
    if norm == "linf":
        return g.sign()
    n = g.flatten(1).norm(dim=1).view(-1, 1, 1)
    return torch.where(n > 0, g / torch.where(n > 0, n, 1.0), 0.0)


def _project(delta: Tensor, eps: Tensor, norm: str) -> Tensor:
    """Project perturbations (B, T, D) onto the balls of radii ``eps`` (B, 1, 1)."""
    if norm == "linf":
        return torch.maximum(torch.minimum(delta, eps), -eps)
    n = delta.flatten(1).norm(dim=1).view(-1, 1, 1)
    factor = torch.where(n > eps, eps / torch.where(n > 0, n, 1.0), 1.0)
    return delta * factor


def _clip(x: Tensor, bounds: tuple[float, float] | None) -> Tensor:
    return x if bounds is None else x.clamp(bounds[0], bounds[1])


def _check_bounds(bounds: object) -> tuple[float, float] | None:
    if bounds is None:
        return None
    if not isinstance(bounds, tuple | list) or len(bounds) != 2:
        raise TypeError(f"bounds: expected None or a pair (low, high), got {bounds!r}")
    lo, hi = check_real("bounds[0]", bounds[0]), check_real("bounds[1]", bounds[1])
    if not lo < hi:
        raise ValueError(f"bounds: expected low < high, got ({lo}, {hi})")
    return lo, hi


def _check_eps(eps: object, xs: Tensor, name: str = "eps") -> Tensor:
    """A radius per example, shape (B, 1, 1), in the inputs' dtype; must be >= 0."""
    B = xs.shape[0]
    if isinstance(eps, Tensor):
        if eps.ndim == 0:
            eps = eps.reshape(1).expand(B)
        if eps.shape != (B,):
            raise ValueError(
                f"{name}: expected a number or a tensor of shape ({B},), got {tuple(eps.shape)}"
            )
        if not is_transformed(eps) and (
            bool((eps < 0).any()) or not bool(torch.isfinite(eps).all())
        ):
            raise ValueError(f"{name}: expected finite radii >= 0, got min {float(eps.min())}")
        return eps.to(dtype=xs.dtype, device=xs.device).view(B, 1, 1)
    e = check_nonnegative(name, eps)
    return torch.full((B, 1, 1), e, dtype=xs.dtype, device=xs.device)


def _prepare(model: object, xs: object, labels: object) -> tuple[Callable, Tensor, Tensor, Tensor]:
    fn = as_model(model)
    xs = check_inputs(model, xs).detach()
    scores = evaluate(fn, xs)
    y = resolve_labels(labels, scores)
    return fn, xs, y, scores


# ------------------------------------------------------------------------ FGSM and PGD
def fgsm(
    model: ModelLike,
    xs: Tensor,
    labels: Tensor | None = None,
    *,
    eps: float | Tensor,
    norm: Norm = "linf",
    loss: Literal["ce", "margin"] = "ce",
    bounds: tuple[float, float] | None = None,
) -> Tensor:
    r"""Fast gradient (sign) method: one step of size ``eps`` up the loss.

    .. math:: x' = \mathrm{clip}\big(x + \epsilon\,\mathrm{sign}\nabla_x\ell\big)
              \ (\ell_\infty),\qquad
              x' = \mathrm{clip}\Big(x + \epsilon\frac{\nabla_x\ell}{\|\nabla_x\ell\|_2}\Big)
              \ (\ell_2)

    Parameters
    ----------
    model : NRNNParams or callable
        ``model(xs) -> logits (B, C)``.
    xs : Tensor, shape (B, T, D)
    labels : Tensor, shape (B,), optional
        True classes (default: the predictions).
    eps : float or Tensor, shape (B,)
        Budget, >= 0; ``eps = 0`` returns ``xs`` unchanged (clipped if ``bounds``).
    norm : {"linf", "l2"}
    loss : {"ce", "margin"}
        Loss whose gradient is followed (:data:`ATTACK_LOSSES`).
    bounds : (float, float), optional
        Clip the result to this box (the data range).

    Returns
    -------
    Tensor, shape (B, T, D)

    Examples
    --------
    >>> model = lambda x: torch.cat([x.sum((1, 2))[:, None], torch.zeros(len(x), 1)], 1)
    >>> fgsm(model, torch.ones(1, 2, 1), eps=0.1).squeeze().tolist()
    [0.9, 0.9]
    """
    check_choice("norm", norm, NORMS)
    check_choice("loss", loss, tuple(ATTACK_LOSSES))
    bounds = _check_bounds(bounds)
    fn, xs, y, _ = _prepare(model, xs, labels)
    e = _check_eps(eps, xs)
    lossf = ATTACK_LOSSES[loss]
    _, g = input_gradient(fn, xs, lambda s: lossf(s, y))
    return _clip(xs + e * unit_direction(g, norm), bounds)


def _random_start(xs: Tensor, eps: Tensor, norm: str, generator) -> Tensor:
    if norm == "linf":
        u = torch.rand(xs.shape, dtype=xs.dtype, device=xs.device, generator=generator)
        return (2.0 * u - 1.0) * eps
    z = torch.randn(xs.shape, dtype=xs.dtype, device=xs.device, generator=generator)
    n = z.flatten(1).norm(dim=1).view(-1, 1, 1)
    r = torch.rand(xs.shape[0], 1, 1, dtype=xs.dtype, device=xs.device, generator=generator)
    dim = xs[0].numel()
    return z / n * eps * r.pow(1.0 / dim)


def run_pgd(fn, xs, y, eps, norm, steps, step, lossf, random_start, bounds, generator, init=None):
    """PGD core on validated inputs. Returns (x_adv, fooled (B,), last iterate).

    Package-internal (not in ``__all__``): the loop behind :func:`pgd`,
    :func:`minimal_perturbation` and the attack perturbations of
    :mod:`nrnn_theory.robustness`.

    ``init`` (B, T, D), if given, is the starting perturbation (projected onto the
    ball) instead of zero or a random start.
    """
    delta = torch.zeros_like(xs)
    if init is not None:
        delta = _clip(xs + _project(init, eps, norm), bounds) - xs
    elif random_start:
        delta = _clip(xs + _random_start(xs, eps, norm, generator), bounds) - xs
    best = xs.clone()
    fooled = torch.zeros(xs.shape[0], dtype=torch.bool, device=xs.device)
    x = xs + delta
    for _ in range(steps):
        scores, g = input_gradient(fn, x, lambda s: lossf(s, y))
        newly = (scores.argmax(dim=1) != y) & ~fooled
        best[newly] = x[newly]
        fooled |= newly
        delta = _project(delta + step * unit_direction(g, norm), eps, norm)
        x = _clip(xs + delta, bounds)
        delta = x - xs
    scores = evaluate(fn, x)
    newly = (scores.argmax(dim=1) != y) & ~fooled
    best[newly] = x[newly]
    fooled |= newly
    return torch.where(fooled.view(-1, 1, 1), best, x), fooled, x


def pgd(
    model: ModelLike,
    xs: Tensor,
    labels: Tensor | None = None,
    *,
    eps: float | Tensor,
    norm: Norm = "linf",
    steps: int = 20,
    step_size: float | None = None,
    loss: Literal["ce", "margin"] = "ce",
    random_start: bool = True,
    bounds: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Projected gradient ascent on the loss inside the ``eps``-ball (Madry et al.).

    .. math:: \delta \leftarrow \Pi_{\|\delta\|\le\epsilon}\big(\delta +
              a\,\mathrm{dir}(\nabla_x\ell(x + \delta))\big),\qquad
              \mathrm{dir}(g) = \mathrm{sign}\,g\ (\ell_\infty),\ g/\|g\|_2\ (\ell_2),

    then clipping to ``bounds``. Returns, per example, the first iterate that
    changed the prediction if any did, else the last iterate.

    Parameters
    ----------
    model : NRNNParams or callable
    xs : Tensor, shape (B, T, D)
    labels : Tensor, shape (B,), optional
        Default: the predictions.
    eps : float or Tensor, shape (B,)
        Budget per example, >= 0.
    norm : {"linf", "l2"}
    steps : int
        Gradient steps (each one forward and one backward pass).
    step_size : float, optional
        Step :math:`a` relative to ``eps``; default ``2.5 / steps`` (the usual choice:
        the iterates can cross the ball 2.5 times).
    loss : {"ce", "margin"}
        ``"ce"`` is the usual PGD; ``"margin"`` (:math:`\max_{j\ne y}s_j - s_y`) is
        better at finding the nearest boundary.
    random_start : bool
        Start uniformly in the ball (drawn from ``generator``).
    bounds : (float, float), optional
        Clip every iterate to this box (the data range).
    generator : torch.Generator, optional
        Random start; ``None`` means fresh randomness.

    Returns
    -------
    Tensor, shape (B, T, D)

    Examples
    --------
    >>> model = lambda x: torch.cat([x.sum((1, 2))[:, None], torch.zeros(len(x), 1)], 1)
    >>> g = torch.Generator().manual_seed(0)
    >>> adv = pgd(model, torch.ones(1, 2, 1), eps=1.5, generator=g)
    >>> model(adv).argmax(1).item()
    1
    """
    check_choice("norm", norm, NORMS)
    check_choice("loss", loss, tuple(ATTACK_LOSSES))
    steps = check_positive_int("steps", steps)
    rel = 2.5 / steps if step_size is None else check_positive("step_size", step_size)
    bounds = _check_bounds(bounds)
    fn, xs, y, _ = _prepare(model, xs, labels)
    e = _check_eps(eps, xs)
    adv, _, _ = run_pgd(
        fn, xs, y, e, norm, steps, rel * e, ATTACK_LOSSES[loss], random_start, bounds, generator
    )
    return adv


# ---------------------------------------------------------------------------- DeepFool
def _deepfool_core(fn, xs, y, norm, max_iter, overshoot, refine_steps, bounds, target=None):
    """DeepFool with a final bisection along the found direction; returns (x_adv, success).

    ``target`` (B,) restricts the linearized boundaries to one class per example.
    """
    B = xs.shape[0]
    C = evaluate(fn, xs[:1]).shape[1]
    if target is None:
        candidates = [torch.full_like(y, j) for j in range(C)]
    else:
        candidates = [target]
    dual = 1 if norm == "linf" else 2  # the dual norm measures the gradients
    total = torch.zeros_like(xs)
    onehot_y = torch.nn.functional.one_hot(y, C).to(xs.dtype)
    done = torch.zeros(B, dtype=torch.bool, device=xs.device)
    for _ in range(max_iter):
        x = _clip(xs + (1.0 + overshoot) * total, bounds).requires_grad_(True)
        with torch.enable_grad():
            scores = fn(x)
            done = done | (scores.detach().argmax(dim=1) != y)
            if bool(done.all()):
                break
            s_y = scores.detach().gather(1, y.unsqueeze(1)).squeeze(1)
            best = torch.full((B,), math.inf, dtype=xs.dtype, device=xs.device)
            step = torch.zeros_like(xs)
            for k, j in enumerate(candidates):
                u = torch.nn.functional.one_hot(j, C).to(xs.dtype) - onehot_y
                last = k == len(candidates) - 1
                (w,) = torch.autograd.grad(scores, x, grad_outputs=u, retain_graph=not last)
                f = (scores.detach().gather(1, j.unsqueeze(1)).squeeze(1) - s_y).abs()
                n = w.flatten(1).norm(p=dual, dim=1)
                ratio = torch.where((y != j) & (n > 0), f / torch.where(n > 0, n, 1.0), math.inf)
                better = ratio < best
                if norm == "l2":
                    cand = (ratio / torch.where(n > 0, n, 1.0)).view(-1, 1, 1) * w
                else:
                    cand = ratio.view(-1, 1, 1) * w.sign()
                step = torch.where(better.view(-1, 1, 1), cand, step)
                best = torch.where(better, ratio, best)
        move = ~done & torch.isfinite(best)
        if not bool(move.any()):
            break
        total = total + torch.where(move.view(-1, 1, 1), step, 0.0)
    x_adv = _clip(xs + (1.0 + overshoot) * total, bounds)
    success = evaluate(fn, x_adv).argmax(dim=1) != y
    # Bisection along the segment xs -> x_adv: the smallest verified adversarial point.
    lo = torch.zeros(B, dtype=xs.dtype, device=xs.device)
    hi = torch.ones_like(lo)
    for _ in range(refine_steps):
        mid = 0.5 * (lo + hi)
        x_mid = xs + mid.view(-1, 1, 1) * (x_adv - xs)
        adv = evaluate(fn, x_mid).argmax(dim=1) != y
        hi = torch.where(success & adv, mid, hi)
        lo = torch.where(success & ~adv, mid, lo)
    x_out = torch.where(success.view(-1, 1, 1), xs + hi.view(-1, 1, 1) * (x_adv - xs), xs)
    return x_out, success


def _deepfool_best(fn, xs, y, norm, max_iter, overshoot, refine_steps, bounds, targeted):
    """Untargeted DeepFool, or the nearest of the C targeted runs."""
    if not targeted:
        return _deepfool_core(fn, xs, y, norm, max_iter, overshoot, refine_steps, bounds)
    C = evaluate(fn, xs[:1]).shape[1]
    best_x = xs.clone()
    best_d = torch.full((xs.shape[0],), math.inf, dtype=xs.dtype, device=xs.device)
    for j in range(C):
        x_j, ok = _deepfool_core(
            fn, xs, y, norm, max_iter, overshoot, refine_steps, bounds, torch.full_like(y, j)
        )
        d = perturbation_norm(x_j - xs, norm)
        better = ok & (d < best_d)
        best_x = torch.where(better.view(-1, 1, 1), x_j, best_x)
        best_d = torch.where(better, d, best_d)
    return best_x, torch.isfinite(best_d)


def _finish(fn, xs, y, x_adv, norm, method, bounds, lower) -> EmpiricalMargin:
    """Verify every adversarial point once, in one batch, and measure it."""
    wrong = evaluate(fn, x_adv).argmax(dim=1) != y
    dist = perturbation_norm(x_adv - xs, norm)
    dist = torch.where(wrong, dist, math.inf)
    return EmpiricalMargin(
        distance=dist,
        success=wrong,
        perturbed=torch.where(wrong.view(-1, 1, 1), x_adv, xs),
        labels=y,
        lower=lower,
        norm=norm,
        method=method,
        bounds=bounds,
    )


def deepfool(
    model: ModelLike,
    xs: Tensor,
    labels: Tensor | None = None,
    *,
    norm: Norm = "l2",
    max_iter: int = 50,
    overshoot: float = 0.02,
    refine_steps: int = 20,
    targeted: bool = False,
    bounds: tuple[float, float] | None = None,
) -> EmpiricalMargin:
    r"""DeepFool (Moosavi-Dezfooli et al. 2016): iterated nearest linearized boundary.

    At each iterate, for every class :math:`j\ne y` with
    :math:`f_j = s_j - s_y` and :math:`w_j = \nabla_x f_j`, step to the nearest
    boundary of the linearization,

    .. math:: \delta = \frac{|f_{j^*}|}{\|w_{j^*}\|_2^2}w_{j^*}\ (\ell_2),\quad
              \frac{|f_{j^*}|}{\|w_{j^*}\|_1}\mathrm{sign}\,w_{j^*}\ (\ell_\infty),\qquad
              j^* = \arg\min_j\frac{|f_j|}{\|w_j\|_*},

    until the prediction changes; the accumulated step is scaled by
    ``1 + overshoot``. A final bisection along the segment from ``xs`` to the
    adversarial point returns the nearest point on it that is still verified
    adversarial. For an affine model the result is the exact margin (up to
    :math:`2^{-\text{refine\_steps}}` relative).

    Parameters
    ----------
    model : NRNNParams or callable
    xs : Tensor, shape (B, T, D)
    labels : Tensor, shape (B,), optional
        Default: the predictions. Misclassified examples get distance 0.
    norm : {"l2", "linf"}
    max_iter : int
        Linearization steps; each costs one forward and C backward passes.
    overshoot : float
        Relative push past the linearized boundary (the bisection removes it again).
    refine_steps : int
        Bisection steps along the found direction (0 disables).
    targeted : bool
        Run once per class :math:`j`, linearizing only the boundary with
        :math:`j`, and keep the nearest success: C - 1 times the cost, but it also
        finds boundaries that the untargeted choice of :math:`j^*` aims past (e.g.
        one that a saturating unit makes unreachable).
    bounds : (float, float), optional
        Clip iterates to this box.

    Returns
    -------
    EmpiricalMargin
        ``distance`` (B,) (``inf`` where DeepFool failed), ``perturbed`` (B, T, D).

    Examples
    --------
    >>> model = lambda x: torch.cat([x.sum((1, 2))[:, None], torch.zeros(len(x), 1)], 1)
    >>> r = deepfool(model, torch.ones(1, 4, 1))
    >>> round(float(r.distance[0]), 4)  # s_0 - s_1 = 4 and ||grad|| = 2
    2.0
    """
    check_choice("norm", norm, NORMS)
    max_iter = check_positive_int("max_iter", max_iter)
    overshoot = check_nonnegative("overshoot", overshoot)
    refine_steps = check_positive_int("refine_steps", refine_steps, minimum=0)
    bounds = _check_bounds(bounds)
    fn, xs, y, _ = _prepare(model, xs, labels)
    x_adv, _ = _deepfool_best(
        fn, xs, y, norm, max_iter, overshoot, refine_steps, bounds, bool(targeted)
    )
    lower = torch.zeros(xs.shape[0], dtype=xs.dtype, device=xs.device)
    method = "deepfool (targeted)" if targeted else "deepfool"
    return _finish(fn, xs, y, x_adv, norm, method, bounds, lower)


# ------------------------------------------------------------------- minimal perturbation
MINIMAL_METHODS: tuple[str, ...] = ("deepfool+pgd", "deepfool", "pgd")


def minimal_perturbation(
    model: ModelLike,
    xs: Tensor,
    labels: Tensor | None = None,
    *,
    norm: Norm = "l2",
    method: Literal["deepfool+pgd", "deepfool", "pgd"] = "deepfool+pgd",
    pgd_steps: int = 20,
    bisection_steps: int = 30,
    rtol: float = 1e-3,
    max_doublings: int = 12,
    initial_radius: float | None = None,
    targeted: bool = False,
    bounds: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
) -> EmpiricalMargin:
    r"""Smallest perturbation found that changes the prediction: the empirical margin.

    ``"deepfool"``: :func:`deepfool` alone. ``"pgd"``: bisection over the radius
    :math:`r` with :func:`pgd` (margin loss) as the oracle "an adversarial point
    exists within :math:`r`"; after a success at radius :math:`r` the upper bracket
    becomes the norm of the point found (:math:`\le r`), after a failure the lower
    bracket becomes :math:`r`. Each probe starts from the previous probe's last
    iterate rescaled to the new radius, so the ascent continues across probes (a
    continuation in :math:`r`). ``"deepfool+pgd"`` (default) starts the bisection
    from DeepFool's point and distance, so it can only improve on it. PGD is not
    monotone in the radius; a success below the lower bracket resets it to 0.

    Every finite distance belongs to a verified adversarial input (checked once
    more, in one batch, at the end), so it is an upper bound on the true margin;
    ``lower`` is only the bracket where PGD failed, **not** a certificate.

    Parameters
    ----------
    model : NRNNParams or callable
    xs : Tensor, shape (B, T, D)
    labels : Tensor, shape (B,), optional
        Default: the predictions. Misclassified examples get distance 0.
    norm : {"l2", "linf"}
    method : {"deepfool+pgd", "deepfool", "pgd"}
    pgd_steps : int
        PGD steps per bisection probe.
    bisection_steps : int
        Cap on radius bisection steps. While no failure is known the radius
        halves; then it bisects geometrically (:math:`\sqrt{lo\cdot hi}`), so the
        bracket's *relative* width halves in log scale each step.
    rtol : float
        Stop bisecting an example once ``hi - lo <= rtol * hi``.
    max_doublings : int
        Where no upper bracket is known, the radius doubles from
        ``initial_radius`` until PGD succeeds, at most this many times.
    initial_radius : float, optional
        First radius tried by the doubling search (default: the median DeepFool
        distance, else the median input norm).
    targeted : bool
        Use the targeted DeepFool of :func:`deepfool` (one run per class).
    bounds : (float, float), optional
        Clip perturbed inputs to this box (the data range).
    generator : torch.Generator, optional
        PGD random starts; ``None`` means fresh randomness.

    Returns
    -------
    EmpiricalMargin

    References
    ----------
    .. [1] docs/theory/margins.md (empirical margin; certified <= empirical),
       docs/theory/oracles.md V9.

    Examples
    --------
    >>> model = lambda x: torch.cat([x.sum((1, 2))[:, None], torch.zeros(len(x), 1)], 1)
    >>> g = torch.Generator().manual_seed(0)
    >>> r = minimal_perturbation(model, torch.ones(2, 4, 1), generator=g)
    >>> [round(d, 3) for d in r.distance.tolist()]
    [2.0, 2.0]
    """
    check_choice("norm", norm, NORMS)
    check_choice("method", method, MINIMAL_METHODS)
    pgd_steps = check_positive_int("pgd_steps", pgd_steps)
    bisection_steps = check_positive_int("bisection_steps", bisection_steps, minimum=0)
    rtol = check_positive("rtol", rtol)
    max_doublings = check_positive_int("max_doublings", max_doublings, minimum=0)
    if initial_radius is not None:
        initial_radius = check_positive("initial_radius", initial_radius)
    bounds = _check_bounds(bounds)
    fn, xs, y, scores = _prepare(model, xs, labels)
    B = xs.shape[0]
    correct = scores.argmax(dim=1) == y
    best = xs.clone()
    hi = torch.where(correct, math.inf, 0.0).to(xs.dtype)
    lo = torch.zeros(B, dtype=xs.dtype, device=xs.device)
    if method != "pgd":
        x_df, ok = _deepfool_best(fn, xs, y, norm, 50, 0.02, 20, bounds, bool(targeted))
        found = ok & correct
        best = torch.where(found.view(-1, 1, 1), x_df, best)
        hi = torch.where(found, perturbation_norm(x_df - xs, norm), hi)
    if method == "deepfool":
        return _finish(fn, xs, y, best, norm, method, bounds, lo)

    lossf = ATTACK_LOSSES["margin"]
    warm = best - xs  # DeepFool's perturbation where it succeeded, else zero (random start)

    def probe(idx: Tensor, radius: Tensor) -> None:
        """PGD at ``radius`` for examples ``idx``; update the brackets in place."""
        e = radius.view(-1, 1, 1)
        x_sub = xs[idx]
        step = (2.5 / pgd_steps) * e
        # Warm start: the last iterate of the previous probe rescaled to this radius,
        # so that the ascent continues across probes (a continuation in r); a random
        # start at the first probe.
        prev = warm[idx]
        d_prev = perturbation_norm(prev, norm).view(-1, 1, 1)
        init = torch.where(
            d_prev > 0,
            prev * (e / torch.where(d_prev > 0, d_prev, 1.0)),
            _random_start(x_sub, e, norm, generator),
        )
        adv, fooled, last = run_pgd(
            fn, x_sub, y[idx], e, norm, pgd_steps, step, lossf, True, bounds, generator, init
        )
        warm[idx] = last - x_sub
        d = perturbation_norm(adv - x_sub, norm)
        win = fooled & (d < hi[idx])
        best[idx[win]] = adv[win]
        hi[idx[win]] = d[win]
        # PGD is not monotone in the radius: a success below the lower bracket voids it.
        below = idx[win & (d < lo[idx])]
        lo[below] = 0.0
        lo[idx[~fooled]] = torch.maximum(lo[idx[~fooled]], radius[~fooled])

    # Upper brackets by doubling where none is known yet.
    unknown = torch.isinf(hi)
    if bool(unknown.any()):
        if initial_radius is not None:
            r0 = initial_radius
        elif bool((known := torch.isfinite(hi) & (hi > 0)).any()):
            r0 = float(hi[known].median())
        else:
            r0 = float(perturbation_norm(xs, norm).median()) or 1.0
        radius = torch.full((B,), r0, dtype=xs.dtype, device=xs.device)
        for _ in range(max_doublings + 1):
            idx = torch.isinf(hi).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            probe(idx, radius[idx])
            radius = radius * 2.0
    for _ in range(bisection_steps):
        open_ = torch.isfinite(hi) & (hi > 0) & (hi - lo > rtol * hi)
        idx = open_.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        a, b = lo[idx], hi[idx]
        probe(idx, torch.where(a > 0, torch.sqrt(a * b), 0.5 * b))
    return _finish(fn, xs, y, best, norm, method, bounds, lo)
