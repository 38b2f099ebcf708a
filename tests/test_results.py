"""Result records: every record round-trips through JSON (to_dict -> from_dict)."""

from __future__ import annotations

import dataclasses
import json
import math
import typing

import pytest
import torch

from nrnn_theory import NoiseSpec, check_stability, lyapunov_spectrum, results, robustness_sweep
from nrnn_theory.experiments.report import Evidence
from nrnn_theory.results import Result
from nrnn_theory.train import FitHistory

from _problems import random_params


RECORDS = [getattr(results, n) for n in results.__all__ if n not in ("Result", "to_jsonable")]


def _example(tp, generator: torch.Generator, depth: int = 0):
    """A value of type ``tp`` (random tensors, a nan among the floats)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, type(int | None)):
        return _example(next(a for a in args if a is not type(None)), generator, depth)
    if tp is torch.Tensor:
        return torch.randn(2, 3, generator=generator, dtype=torch.float64)
    if tp is NoiseSpec:
        return NoiseSpec.paper_code(add=0.02, mult=0.05)
    if isinstance(tp, type) and issubclass(tp, Result):
        return _instance(tp, generator, depth + 1)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_example(args[0], generator, depth) for _ in range(2))
        return tuple(_example(a, generator, depth) for a in args)
    if origin is dict:
        return {"a": _example(args[1], generator, depth), "b": _example(args[1], generator, depth)}
    if origin is typing.Literal:
        return args[0]
    return {bool: True, int: 7, float: math.nan, str: "text"}.get(tp, {"json": [1, "x", None]})


def _instance(cls, generator, depth=0):
    hints = typing.get_type_hints(cls)
    return cls(
        **{f.name: _example(hints[f.name], generator, depth) for f in dataclasses.fields(cls)}
    )


def _assert_same(a, b, where="record"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        torch.testing.assert_close(b, a.to(b.dtype), rtol=0, atol=0, equal_nan=True, msg=where)
    elif isinstance(a, Result):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            _assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, tuple | list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b and type(a) is type(b), where


def _round_trip(record):
    data = json.loads(json.dumps(record.to_dict(), allow_nan=False))
    assert data["schema"] == f"{type(record).__name__}/1"
    return type(record).from_dict(data)


@pytest.mark.parametrize("cls", [*RECORDS, FitHistory, Evidence], ids=lambda c: c.__name__)
def test_every_record_round_trips_through_json(cls, generator):
    record = _instance(cls, generator)
    _assert_same(record, _round_trip(record), cls.__name__)


def test_records_of_real_computations_round_trip(generator):
    p = random_params(3, 2, 4, generator=generator)
    xs = torch.randn(5, 6, 2, generator=generator, dtype=torch.float64)
    noise = NoiseSpec(epsilon=0.1, sigma1=1.0, sigma2=0.5)
    spec = lyapunov_spectrum(p, xs, noise=noise, k=2, generator=generator)
    cert = check_stability(p, noise)
    labels = torch.tensor([0, 1, 2, 3, 0])
    sweep = robustness_sweep(p, xs, labels, n_draws=2, attack_steps=2, generator=generator)
    for record in (spec, cert, sweep):
        back = _round_trip(record)
        _assert_same(record, back, type(record).__name__)
    assert back.curve("white_noise").draws.shape == sweep.curve("white_noise").draws.shape
    assert _round_trip(spec).noise == noise and _round_trip(cert).noise == noise


def test_from_dict_reads_unversioned_data_and_names_what_is_wrong(generator):
    record = _instance(results.StabilizingNoise, generator)
    data = record.to_dict()
    del data["schema"]  # as written before records were versioned
    _assert_same(record, results.StabilizingNoise.from_dict(data))
    with pytest.raises(ValueError, match="expected schema StabilizingNoise/1"):
        results.StabilizingNoise.from_dict({**data, "schema": "StabilizingNoise/2"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['extra'\]"):
        results.StabilizingNoise.from_dict({**data, "extra": 1})
    with pytest.raises(ValueError, match="missing key 'level'"):
        results.StabilizingNoise.from_dict({k: v for k, v in data.items() if k != "level"})
    with pytest.raises(ValueError, match="StabilizingNoise.level: expected a number"):
        results.StabilizingNoise.from_dict({**data, "level": "high"})
    with pytest.raises(TypeError, match="expected a mapping"):
        results.StabilizingNoise.from_dict([1, 2])


def test_convenience_keys_of_to_dict_are_ignored_on_reading(generator):
    reg = _instance(results.ExplicitRegularizer, generator)
    data = reg.to_dict()
    assert "Q_mean" in data  # a property, added by ExplicitRegularizer.to_dict
    _assert_same(reg, results.ExplicitRegularizer.from_dict(data))
