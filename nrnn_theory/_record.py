"""The base of every result record and its JSON serialization (public within the package).

A record is a frozen dataclass deriving from :class:`Result`, defined beside the
function that returns it (scipy.stats' ``_result_classes`` style) and re-exported by
:mod:`nrnn_theory.results`. Its fields are typed (``Tensor``, ``NoiseSpec``, ``float``,
``tuple[...]``); those types drive :meth:`Result.from_dict`, the inverse of
:meth:`Result.to_dict`:

* ``to_dict()`` gives strict JSON data with a ``"schema"`` key (``"<ClassName>/1"``):
  tensors and arrays as nested lists, non-finite floats as the strings ``"nan"``,
  ``"inf"``, ``"-inf"``, a :class:`~nrnn_theory.NoiseSpec` or
  :class:`~nrnn_theory.NRNNParams` as its own ``to_dict()``, nested records likewise;
* ``from_dict(data)`` rebuilds the record: float tensors come back as float64 (every
  float32 value is exactly representable), integer and boolean tensors as int64 and
  bool, on the CPU unless ``device`` is given.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import torch
from torch import Tensor

from nrnn_theory._types import SCHEMA_VERSION, NoiseSpec, NRNNParams


__all__ = ["Result", "require_pandas", "to_jsonable"]


def to_jsonable(value: Any) -> Any:  # Any: the point is to accept anything JSON-like
    """Convert tensors, arrays, records, dataclasses and containers to JSON-ready data.

    Non-finite floats become the strings ``"nan"``, ``"inf"`` and ``"-inf"`` so
    the output is strict JSON. A :class:`~nrnn_theory.NoiseSpec`,
    :class:`~nrnn_theory.NRNNParams` or result record becomes its own ``to_dict()``.

    Parameters
    ----------
    value : object
        A tensor, array, record, dataclass, mapping, sequence or scalar, nested in any way.

    Returns
    -------
    object
        Lists, dicts, strings, numbers, booleans and ``None`` only.

    Examples
    --------
    >>> to_jsonable({"a": torch.tensor([1.0, float("inf")]), "b": (1, 2)})
    {'a': [1.0, 'inf'], 'b': [1, 2]}
    """
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, NoiseSpec | NRNNParams | Result):
        return value.to_dict()  # the record's own (versioned) layout
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _number(value: object, where: str) -> object:
    """A stored number: ints and floats as they are, ``"nan"``/``"inf"`` strings as floats."""
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    return value


def _tensor(value: object, where: str, device) -> Tensor:
    flat: list[object] = []

    def walk(v):
        if isinstance(v, list):
            for x in v:
                walk(x)
        else:
            flat.append(v)

    walk(value)
    if flat and all(isinstance(x, bool) for x in flat):
        dtype = torch.bool
    elif flat and all(isinstance(x, int) and not isinstance(x, bool) for x in flat):
        dtype = torch.int64
    else:
        dtype = torch.float64

    def numbers(v):
        return [numbers(x) for x in v] if isinstance(v, list) else _number(v, where)

    try:
        data = numbers(value) if dtype is torch.float64 else value
        return torch.tensor(data, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{where}: expected a nested list of numbers ({err})") from None


def _from_jsonable(value: object, tp: object, where: str, device) -> object:
    """Rebuild a value of type ``tp`` from its :func:`to_jsonable` form."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _from_jsonable(value, inner[0], where, device) if len(inner) == 1 else value
    if tp is Tensor:
        return _tensor(value, where, device)
    if tp in (NoiseSpec, NRNNParams):
        return tp.from_dict(value) if tp is NoiseSpec else tp.from_dict(value, device=device)
    if isinstance(tp, type) and issubclass(tp, Result):
        return tp.from_dict(value, device=device)
    if tp is float or tp is int:
        return _number(value, where)
    if tp is bool or tp is str:
        if not isinstance(value, tp):
            raise ValueError(f"{where}: expected a {tp.__name__}, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(
                _from_jsonable(v, args[0], f"{where}[{i}]", device) for i, v in enumerate(value)
            )
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} entries, got {len(value)}")
        return tuple(
            _from_jsonable(v, a, f"{where}[{i}]", device)
            for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin is dict:
        _, inner = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return {k: _from_jsonable(v, inner, f"{where}[{k!r}]", device) for k, v in value.items()}
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ValueError(f"{where}: expected one of {typing.get_args(tp)}, got {value!r}")
        return value
    return value  # ``object``: plain JSON data, kept as stored


@dataclass(frozen=True)
class Result:
    """Base class of result records: frozen, with :meth:`Result.to_dict` and
    :meth:`Result.from_dict`."""

    def to_dict(self) -> dict[str, Any]:  # Any: JSON values of the field types
        """All fields as JSON-ready data (see :func:`~nrnn_theory.results.to_jsonable`), with a
        ``"schema"`` key."""
        out: dict[str, Any] = {"schema": f"{type(self).__name__}/{SCHEMA_VERSION}"}
        for f in dataclasses.fields(self):
            out[f.name] = to_jsonable(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object], *, device=None) -> Self:
        """Rebuild a record from its :meth:`to_dict` output (e.g. read back from JSON).

        Keys that :meth:`to_dict` adds for convenience (the values of properties, such
        as ``ExplicitRegularizer.Q_mean``) are ignored; a missing field without a
        default, an unknown key or another schema raises ``ValueError`` naming it.

        Parameters
        ----------
        data : Mapping
        device : torch.device or str, optional
            Where tensors are put (default CPU).
        """
        name = cls.__name__
        if not isinstance(data, Mapping):
            raise TypeError(f"{name}: expected a mapping (its to_dict), got {type(data).__name__}")
        schema = data.get("schema", f"{name}/{SCHEMA_VERSION}")
        if schema != f"{name}/{SCHEMA_VERSION}":
            raise ValueError(f"{name}: expected schema {name}/{SCHEMA_VERSION}, got {schema!r}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = [
            k
            for k in data
            if k != "schema" and k not in fields and not isinstance(getattr(cls, k, None), property)
        ]
        if unknown:
            raise ValueError(f"{name}: unknown key(s) {sorted(unknown)}")
        kwargs = {}
        for key, f in fields.items():
            if key not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ValueError(f"{name}: missing key {key!r}")
                continue
            kwargs[key] = _from_jsonable(data[key], hints[key], f"{name}.{key}", device)
        return cls(**kwargs)


def require_pandas():
    """The ``pandas`` module, for the ``to_pandas`` methods of records (an optional
    dependency: an ``ImportError`` naming the extra to install when it is missing)."""
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(
            "to_pandas needs pandas, an optional dependency: pip install 'nrnn_theory[pandas]'"
        ) from exc
    return pandas
