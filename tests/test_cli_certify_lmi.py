"""`nrnn certify` with the LMI flags: --metric, --input-box, --horizon, the conclusion line.

Oracles: the library functions (``check_stability_lmi``, ``reachable_set``,
``finite_horizon_certificate``, ``stability_report``; tested against their own oracles
elsewhere) called directly on the same checkpoint, and three hand-built checkpoints whose
answer is known in closed form: ``A = -2 I``, ``W ~ 0`` contracts for any input (global
sector); ``A = 0.05 I``, ``W = -3 I`` expands at slope 0 but contracts at slopes near 1,
which the reachable set over a small input box certifies (reachable sector only); and
``A = 0.5 I``, ``W ~ 0`` expands (no certificate holds).
"""

from __future__ import annotations

import json

import pytest
import torch

from nrnn_theory import (
    check_stability_lmi,
    finite_horizon_certificate,
    reachable_sector,
    reachable_set,
)
from nrnn_theory.cli import main
from nrnn_theory.train import (
    NoisyRNN,
    load_checkpoint,
    load_task,
    params_from_module,
    save_checkpoint,
)

from _tolerances import tol


F64 = torch.float64
EL = tol("elementwise", F64)
APPROX = {"rel": EL["rtol"], "abs": EL["atol"]}


def _checkpoint(path, *, gamma_A, gamma_W, u_scale, seed):
    """A digits NRNN with A = -gamma_A I (M_A = 0), W = -gamma_W I + tiny, U scaled."""
    task = load_task("digits")
    g = torch.Generator().manual_seed(seed)
    model = NoisyRNN(
        task.input_size,
        4,
        task.num_classes,
        gamma_A=gamma_A,
        gamma_W=gamma_W,
        noise=None,
        init_std=1e-3,
        generator=g,
        dtype=F64,
    )
    with torch.no_grad():
        model.M_A.zero_()
        model.U.mul_(u_scale)
        model.b.zero_()
    save_checkpoint(path, model, epoch=0, task={"name": "digits", "seed": 0})
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmi-runs")
    return {
        "contracting": _checkpoint(root / "c", gamma_A=2.0, gamma_W=0.0, u_scale=1.0, seed=0),
        "reach": _checkpoint(root / "r", gamma_A=-0.05, gamma_W=3.0, u_scale=0.05, seed=1),
        "expanding": _checkpoint(root / "e", gamma_A=-0.5, gamma_W=0.0, u_scale=1.0, seed=2),
    }


def _json(capsys, argv):
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _params(path):
    return params_from_module(load_checkpoint(path).model, dtype=F64)


def _f(x):
    return float(x)  # also the "inf" strings of to_jsonable


BASE = ["--examples", "3", "--exponents", "1", "--json"]


@pytest.mark.parametrize("metric", ["identity", "diagonal", "sdp"])
def test_lmi_json_equals_library(ckpts, capsys, single_thread, metric):
    path = ckpts["expanding"]
    out = _json(capsys, ["certify", str(path), *BASE, "--metric", metric, "--input-box", "0,1"])
    lmi = out["lmi"]
    m = "full" if metric == "sdp" else metric
    assert lmi["metric"] == m and lmi["input_box"] == [0.0, 1.0]
    assert lmi["input_set"] == "inputs in [0,1]" and lmi["input_box_source"] == "command line"
    digits_steps = load_task("digits").inputs("test").shape[1]
    assert lmi["horizon"] == digits_steps  # default: the sequence length
    p = _params(path)
    reach = reachable_set(p, (0.0, 1.0), digits_steps)
    direct = [
        check_stability_lmi(p, condition="lmi_discrete", metric=m),
        check_stability_lmi(p, condition="lmi_discrete", metric=m, sector=reach),
        finite_horizon_certificate(p, reach, metric=m),
    ]
    assert [c["condition"] for c in lmi["certificates"]] == [
        "lmi_discrete",
        "lmi_discrete",
        "lmi_finite_horizon",
    ]
    for got, cert in zip(lmi["certificates"], direct, strict=True):
        assert _f(got["bound"]) == pytest.approx(cert.bound, **APPROX)
        assert got["holds"] == cert.holds is False
        assert got["metric"] == cert.metric and got["input_set"] == cert.input_set
        assert got["metric_condition_number"] == pytest.approx(cert.metric_condition_number)
        assert "re-verif" in got["solver_status"]
    # A = 0.5 I expands: the measured exponent is about +0.5 and nothing holds.
    measured = out["report"]["spectra"][0]["exponents"][0]
    assert lmi["measured_top_exponent"] == pytest.approx(measured, **APPROX)
    assert measured > 0.3 and lmi["certified"] is False
    best = min(_f(c["bound"]) for c in lmi["certificates"])
    assert lmi["best_bound"] == pytest.approx(best, **APPROX)
    assert lmi["conclusion"].startswith(f"not certified; best certified bound {best:.4g} ")
    assert f"measured top exponent {measured:.4g}" in lmi["conclusion"]
    assert "on inputs in [0,1]" in lmi["conclusion"]


def test_conclusion_certified_by_the_global_sector(ckpts, capsys, single_thread):
    out = _json(capsys, ["certify", str(ckpts["contracting"]), *BASE, "--metric", "diagonal"])
    lmi = out["lmi"]
    glob = lmi["certificates"][0]
    assert lmi["certified"] is True and glob["holds"] is True
    # A = -2 I, |W| ~ 1e-3: the map contracts at log(1 - 0.2 + O(1e-3)) / 0.1 ~ -2.2.
    assert -2.3 < _f(glob["bound"]) < -2.1
    loc = lmi["certificates"][1]
    # The smaller of the two bounds is reported; W ~ 0 makes them (nearly) equal.
    if _f(glob["bound"]) <= _f(loc["bound"]):
        words = f"certified contracting at rate <= {_f(glob['bound']):.4g} on inputs in [0,1]"
        assert lmi["conclusion"] == words + " (the global sector: it holds for any input)"
    else:
        assert lmi["conclusion"].startswith(
            f"certified contracting at rate <= {_f(loc['bound']):.4g} on inputs in [0,1]"
        )
    # Default input box: the range of the digits training inputs, [0, 1].
    assert lmi["input_box"] == [0.0, 1.0] and lmi["input_box_source"].startswith("range of")


def test_conclusion_certified_by_the_reachable_sector_only(ckpts, capsys, single_thread):
    path = ckpts["reach"]
    argv = ["certify", str(path), *BASE, "--metric", "diagonal", "--input-box", "0,1"]
    out = _json(capsys, [*argv, "--horizon", "12"])
    lmi = out["lmi"]
    glob, loc, fin = lmi["certificates"]
    # Slope 0 leaves A = 0.05 I (expanding): the global sector cannot certify.
    assert glob["holds"] is False and _f(glob["bound"]) >= 0.05 - 1e-3
    assert loc["holds"] is True and fin["quantities"]["horizon"] == 12
    p = _params(path)
    sector = reachable_sector(reachable_set(p, (0.0, 1.0), 12), dynamics="map")
    assert lmi["sector_horizon"] == sector.horizon
    words = f"certified contracting at rate <= {_f(loc['bound']):.4g} on inputs in [0,1]"
    if sector.horizon is not None:
        words += f" for {sector.horizon} steps"
    assert lmi["conclusion"] == words and lmi["certified"] is True
    assert lmi["best_bound"] == pytest.approx(_f(loc["bound"]), **APPROX)


def test_human_output_starts_with_the_conclusion(ckpts, capsys, single_thread):
    path = str(ckpts["expanding"])
    assert main(["certify", path, "--examples", "3", "--exponents", "1", "--horizon", "8"]) == 0
    text = capsys.readouterr().out
    first, *rest = text.splitlines()
    out = _json(capsys, ["certify", path, *BASE, "--horizon", "8"])
    assert first == out["lmi"]["conclusion"]
    assert "LMI certificates, metric identity, inputs in [0,1] (range of" in text
    assert "horizon 8:" in text
    rows = [line for line in rest if line.startswith("  lmi_")]
    assert [r.split()[0] for r in rows] == ["lmi_discrete", "lmi_discrete", "lmi_finite_horizon"]
    assert all("re-verif" in r for r in rows[:2])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--input-box", "1"], "--input-box: expected LO,HI, got '1'"),
        (["--input-box", "a,b"], "--input-box: expected LO,HI"),
        (["--input-box", "1,0"], "--input-box: expected finite LO <= HI, got '1,0'"),
        (["--input-box", "0,inf"], "--input-box: expected finite LO <= HI"),
        (["--horizon", "0"], "--horizon: expected an integer >= 1, got 0"),
    ],
)
def test_lmi_option_errors(ckpts, capsys, extra, message):
    assert main(["certify", str(ckpts["expanding"]), "--examples", "2", *extra]) == 2
    assert message in capsys.readouterr().err


def test_unknown_metric_is_an_argparse_error(ckpts, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["certify", str(ckpts["expanding"]), "--metric", "full"])
    assert exc.value.code == 2
    assert "invalid choice: 'full'" in capsys.readouterr().err
