"""Classifiers as plain callables: the one adapter shared by margins, attacks and sweeps.

The empirical analyses (attacks, robustness sweeps, Jacobian norms) work with any
differentiable classifier ``model(xs) -> logits`` mapping inputs (B, T, D) to logits
(B, C), e.g. ``functools.partial(nrnn_theory.logits, params)`` or an eval-mode
``nn.Module``. Examples must not interact (no batch statistics), so that the
Jacobian of the batch is block diagonal. An :class:`~nrnn_theory.NRNNParams` is
accepted wherever a model is and means its clean (inference) logits.

Nothing here calls ``.backward()`` or touches parameter ``.grad``: input gradients
come from ``torch.autograd.grad`` with respect to the input only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from nrnn_theory._contract import check_finite, check_tensor, check_xs
from nrnn_theory._types import NRNNParams
from nrnn_theory.dynamics import logits
from nrnn_theory.losses import check_labels


__all__ = ["Model", "as_model", "check_inputs", "evaluate", "input_gradient", "resolve_labels"]

Model = Callable[[Tensor], Tensor]


def as_model(model: object) -> Model:
    """A callable ``xs -> logits`` for an :class:`NRNNParams` or a callable model."""
    if isinstance(model, NRNNParams):
        return functools.partial(logits, model)
    if not callable(model):
        raise TypeError(
            "model: expected NRNNParams or a callable mapping inputs (B, T, D) to logits "
            f"(B, C), got {type(model).__name__}"
        )
    return model


def check_inputs(model: object, xs: object, name: str = "xs") -> Tensor:
    """Validate a batch of input sequences (B, T, D): non-empty, finite, floating point.

    For an :class:`NRNNParams` the input size, dtype and device must match the
    parameters as well.
    """
    if isinstance(model, NRNNParams):
        xs = check_xs(model, xs)
    else:
        xs = check_tensor(name, xs)
        if xs.ndim != 3:
            raise ValueError(
                f"{name}: expected input sequences of shape (B, T, D), got {tuple(xs.shape)}"
            )
        check_finite(name, xs)
    if xs.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one example (B >= 1), got an empty batch")
    if xs.shape[1] == 0 or xs.shape[2] == 0:
        raise ValueError(f"{name}: expected T >= 1 and D >= 1, got shape {tuple(xs.shape)}")
    return xs


def evaluate(model: Model, xs: Tensor, *, batch_size: int | None = None) -> Tensor:
    """Logits (B, C) of ``model`` without autograd, in batches of ``batch_size``.

    A model that fails on the inputs (typically a model for another task's input
    size) raises a ``ValueError`` naming the input shape.
    """
    B = xs.shape[0]
    step = B if batch_size is None else batch_size
    outs = []
    with torch.no_grad():
        for chunk in xs.split(step, dim=0):
            try:
                out = model(chunk)
            except (RuntimeError, ValueError, TypeError) as exc:
                raise ValueError(
                    f"xs: the model could not be evaluated on inputs of shape "
                    f"{tuple(chunk.shape)} (B, T, D); is the input size right for this "
                    f"model? The model raised: {exc}"
                ) from exc
            if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != chunk.shape[0]:
                got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise ValueError(
                    f"model: expected logits of shape ({chunk.shape[0]}, C) for inputs "
                    f"{tuple(chunk.shape)}, got {got}"
                )
            outs.append(out)
    out = torch.cat(outs, dim=0)
    if out.shape[1] < 2:
        raise ValueError("model: expected at least 2 classes (logits (B, C), C >= 2), got C = 1")
    return out


def resolve_labels(labels: object, scores: Tensor) -> Tensor:
    """Validated labels (B,), or the model's predictions when ``labels`` is None."""
    if labels is None:
        return scores.argmax(dim=-1)
    return check_labels(labels, scores.shape[0], scores.shape[1], scores.device)


def input_gradient(
    model: Model, xs: Tensor, objective: Callable[[Tensor], Tensor]
) -> tuple[Tensor, Tensor]:
    """Logits and the gradient of ``objective(logits).sum()`` with respect to ``xs`` only.

    Returns ``(scores (B, C), grad (B, T, D))``, both detached. Uses
    ``torch.autograd.grad(..., inputs=x)``, so parameter ``.grad`` fields are never
    touched even if the model's parameters require grad.
    """
    x = xs.detach().requires_grad_(True)
    with torch.enable_grad():
        scores = model(x)
        (grad,) = torch.autograd.grad(objective(scores).sum(), x)
    return scores.detach(), grad
