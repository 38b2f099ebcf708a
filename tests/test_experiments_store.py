"""Tests of the results store (atomic, verified) and of the verdict rules."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from nrnn_theory.experiments import (
    ResultStore,
    atomic_write_bytes,
    compare_directional,
    compare_noninferior,
    mean_ci,
)


def test_round_trip_and_metadata(tmp_path):
    store = ResultStore(tmp_path)
    store.save(
        "a/b", {"x": 1.5, "nan": float("nan")}, arrays={"v": np.arange(4.0)}, config={"seed": 3}
    )
    entry = store.load("a/b")
    assert entry.data == {"x": 1.5, "nan": "nan"}
    np.testing.assert_array_equal(entry.arrays["v"], np.arange(4.0))
    assert entry.meta["config"] == {"seed": 3} and entry.meta["version"]
    assert store.names() == ["a/b"] and store.status("a/b") == "ok"
    assert store.status("zzz") == "missing"


@pytest.mark.parametrize(
    "damage",
    ["edit_payload", "truncate_npz", "drop_npz", "garbage_json", "foreign_schema", "swap_npz"],
)
def test_damaged_entries_are_detected(tmp_path, damage):
    store = ResultStore(tmp_path)
    store.save("e", {"acc": 0.9}, arrays={"v": np.ones(10)})
    store.save("other", {"acc": 0.1}, arrays={"v": np.zeros(10)})
    js, npz = tmp_path / "e.json", tmp_path / "e.npz"
    if damage == "edit_payload":
        doc = json.loads(js.read_text())
        doc["data"]["acc"] = 0.99
        js.write_text(json.dumps(doc))
    elif damage == "truncate_npz":
        npz.write_bytes(npz.read_bytes()[:50])
    elif damage == "drop_npz":
        npz.unlink()
    elif damage == "garbage_json":
        js.write_text('{"meta": {"schema"')
    elif damage == "foreign_schema":
        doc = json.loads(js.read_text())
        doc["meta"]["schema"] = "someone.else/9"
        js.write_text(json.dumps(doc))
    elif damage == "swap_npz":
        npz.write_bytes((tmp_path / "other.npz").read_bytes())
    assert store.status("e") == "corrupt"
    with pytest.raises(ValueError, match="e\\.(json|npz)"):
        store.load("e")
    assert store.status("other") == "ok"


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary left behind


def test_entry_names_are_confined(tmp_path):
    with pytest.raises(ValueError, match="^name: expected a relative entry name"):
        ResultStore(tmp_path).save("../escape", {})


# -------------------------------------------------------------------------- verdicts
def test_mean_ci_matches_scipy():
    x = [0.3, 0.5, 0.45, 0.2, 0.61]
    m, lo, hi = mean_ci(x, level=0.9)
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(0.9)
    assert math.isclose(m, np.mean(x)) and math.isclose(lo, ci.low) and math.isclose(hi, ci.high)
    assert math.isnan(mean_ci([1.0])[1])
    with pytest.raises(ValueError, match="^values: expected finite"):
        mean_ci([1.0, float("nan")])


@pytest.mark.parametrize(
    ("a", "b", "direction", "expected"),
    [
        ([1.0, 1.1, 1.2], [0.0, 0.1, 0.1], "greater", "supported"),
        ([1.0, 1.1, 1.2], [0.0, 0.1, 0.1], "less", "not supported"),
        ([0.0, 0.1, 0.1], [1.0, 1.1, 1.2], "less", "supported"),
        ([0.0, 0.1, 0.1], [1.0, 1.1, 1.2], "greater", "not supported"),
        ([1.0, -1.0, 0.5], [0.0, 0.0, 0.0], "greater", "inconclusive"),
        ([2.0], [1.0], "greater", "inconclusive"),
    ],
)
def test_directional_branches(a, b, direction, expected):
    c = compare_directional(a, b, direction=direction)
    assert c.verdict == expected
    assert c.n == len(a) and math.isclose(c.diff, np.mean(np.subtract(a, b)))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0.90, 0.91, 0.92], [0.91, 0.91, 0.91], "supported"),
        ([0.80, 0.81, 0.80], [0.91, 0.92, 0.91], "not supported"),
        ([0.80, 0.95, 0.85], [0.90, 0.90, 0.90], "inconclusive"),
    ],
)
def test_noninferiority_branches(a, b, expected):
    assert compare_noninferior(a, b, margin=0.03).verdict == expected


def test_comparison_input_errors():
    with pytest.raises(ValueError, match="^a, b: expected two 1-D sequences of equal length"):
        compare_directional([1.0, 2.0], [1.0], direction="greater")
    with pytest.raises(ValueError, match="^direction: expected"):
        compare_directional([1.0], [1.0], direction="up")
    with pytest.raises(ValueError, match="^margin: expected a number > 0"):
        compare_noninferior([1.0], [1.0], margin=0)
