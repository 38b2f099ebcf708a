"""Boundary validation: every check raises an error naming the argument, what was
expected and what was given.

Public functions call these once, on entry; inner loops never re-check
(CONVENTIONS.md §3). Checks that need a tensor's *values* (finiteness) are skipped
for tensors wrapped by ``torch.func`` transforms, where data-dependent Python control
flow is not allowed; the untransformed call has already checked them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor


__all__ = [
    "check_choice",
    "check_finite",
    "check_nonnegative",
    "check_positive",
    "check_positive_int",
    "check_real",
    "check_same_dtype_device",
    "check_shape",
    "check_tensor",
    "is_transformed",
]


def is_transformed(t: Tensor) -> bool:
    """True when ``t`` is wrapped by a ``torch.func`` transform (vmap, grad, jvp)."""
    return bool(torch._C._functorch.is_functorch_wrapped_tensor(t))


def check_tensor(name: str, value: object) -> Tensor:
    """Require a ``torch.Tensor`` of floating dtype."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {value.dtype}")
    return value


def _fmt_shape(shape: Iterable[object]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(tuple(shape)) == 1 else "") + ")"


def check_shape(name: str, t: Tensor, expected: Sequence[int | None], what: str = "") -> None:
    """Require ``t.shape`` to match ``expected`` (``None`` matches any size).

    ``what`` explains where the expected sizes come from, e.g. ``"to match U (64, 3)"``.
    """
    shape = tuple(t.shape)
    ok = len(shape) == len(expected) and all(
        e is None or s == e for s, e in zip(shape, expected, strict=False)
    )
    if not ok:
        exp = _fmt_shape("?" if e is None else e for e in expected)
        suffix = f" {what}" if what else ""
        raise ValueError(f"{name}: expected shape {exp}{suffix}, got {_fmt_shape(shape)}")


def check_same_dtype_device(name: str, t: Tensor, ref_name: str, ref: Tensor) -> None:
    """Require ``t`` to share dtype and device with ``ref``."""
    if t.dtype != ref.dtype:
        raise TypeError(
            f"{name}: expected dtype {ref.dtype} (the dtype of {ref_name}), got {t.dtype}"
        )
    if t.device != ref.device:
        raise ValueError(
            f"{name}: expected device {ref.device} (the device of {ref_name}), got {t.device}"
        )


def check_finite(name: str, t: Tensor) -> None:
    """Require every entry of ``t`` to be finite (no NaN or infinity)."""
    if is_transformed(t):
        return
    if not bool(torch.isfinite(t).all()):
        n_bad = int((~torch.isfinite(t)).sum())
        raise ValueError(
            f"{name}: expected finite values, got {n_bad} non-finite "
            f"entr{'y' if n_bad == 1 else 'ies'} (NaN or inf) in a tensor of shape "
            f"{_fmt_shape(t.shape)}"
        )


def check_real(name: str, value: object) -> float:
    """Require a finite real number and return it as ``float``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, Tensor) and value.numel() == 1:
            value = float(value)
        else:
            raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    return value


def check_nonnegative(name: str, value: object) -> float:
    """Require a finite real number >= 0 and return it as ``float``."""
    v = check_real(name, value)
    if v < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {v}")
    return v


def check_positive(name: str, value: object) -> float:
    """Require a finite real number > 0 and return it as ``float``."""
    v = check_real(name, value)
    if v <= 0:
        raise ValueError(f"{name}: expected a number > 0, got {v}")
    return v


def check_positive_int(name: str, value: object, *, minimum: int = 1) -> int:
    """Require an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return value


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Require ``value`` to be one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value  # type: ignore[return-value]
