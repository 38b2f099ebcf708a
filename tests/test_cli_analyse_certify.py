"""End-to-end tests of `nrnn analyse` and `nrnn certify` on tiny trained checkpoints.

Oracle: the library functions (tested against their own oracles elsewhere) called
directly on the same checkpoint, examples, noise and seeds; the CLI must reproduce
their numbers exactly up to float64 rounding.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from nrnn_theory import NoiseSpec
from nrnn_theory.cli import main
from nrnn_theory.flatness import estimate_hessian_trace, hessian_eigenvalues, module_loss
from nrnn_theory.regularizer import estimate_noise_gap, explicit_regularizer
from nrnn_theory.stability import (
    check_stability,
    format_stability_report,
    stability_report,
)
from nrnn_theory.train import load_checkpoint, load_task, noise_from_module, params_from_module

from _tolerances import tol


F64 = torch.float64
EL = tol("elementwise", F64)
APPROX = {"rel": EL["rtol"], "abs": EL["atol"]}  # the same tolerance for pytest.approx


def _train(out, model, extra=()):
    argv = ["train", "--task", "digits", "--model", model, "--hidden", "6", "--epochs", "1"]
    assert main([*argv, "--out", str(out), "--quiet", *extra]) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny runs gain nothing from threads (see single_thread)
    try:
        _train(root / "nrnn", "nrnn", ["--add", "0.05", "--mult", "0.3"])
        _train(root / "lip", "lipschitz")
        _train(root / "lstm", "lstm")
    finally:
        torch.set_num_threads(old)
    return root


def _examples(ck, n):
    """The first n test examples of the checkpoint's own task, as the CLI takes them."""
    task = dict(ck.task)
    data = load_task(task.pop("name"), **task)
    return data.inputs("test")[:n].to(F64), data.labels("test")[:n]


def _json(capsys, argv):
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _close(actual, expected):
    torch.testing.assert_close(torch.tensor(actual, dtype=F64), expected.to(F64), **EL)


# ------------------------------------------------------------------------------ analyse
def test_analyse_json_equals_library(runs, capsys, single_thread):
    argv = ["analyse", str(runs / "nrnn"), "--regularizer", "--flatness", "--examples", "10"]
    argv += ["--mc-pairs", "4", "--probes", "6", "--top-k", "2", "--seed", "3", "--json"]
    out = _json(capsys, argv)
    ck = load_checkpoint(runs / "nrnn")
    xs, ys = _examples(ck, 10)
    params = params_from_module(ck.model, dtype=F64)
    noise = noise_from_module(ck.model)
    assert out["n_examples"] == 10 and out["dtype"] == "float64" and out["model"] == "nrnn"

    reg = out["regularizer"]
    assert reg["noise_source"] == "checkpoint"
    assert NoiseSpec.from_dict(reg["noise"]) == noise
    direct = explicit_regularizer(params, xs, ys, noise, method="adjoint")
    for name in ("Q", "R", "total", "noise_gap", "mean_shift", "predicted_gap", "per_step_R"):
        _close(reg["result"][name], getattr(direct, name))
    assert reg["summary"]["R"]["mean"] == pytest.approx(float(direct.R.mean()), **APPROX)
    assert reg["summary"]["noise_gap"]["q50"] == pytest.approx(
        float(torch.quantile(direct.noise_gap, 0.5)), **APPROX
    )
    per_step = direct.per_step_R.mean(0)
    assert [s["step"] for s in reg["top_steps"]] == torch.topk(per_step, 5).indices.tolist()
    mc = estimate_noise_gap(
        params, xs, ys, noise, n_pairs=4, generator=torch.Generator().manual_seed(3)
    )
    assert reg["monte_carlo"]["mean"] == pytest.approx(mc.mean, **APPROX)
    assert reg["monte_carlo"]["mean_stderr"] == pytest.approx(mc.mean_stderr, **APPROX)
    _close(reg["monte_carlo"]["gap"], mc.gap)

    flat = out["flatness"]
    model = load_checkpoint(runs / "nrnn").model.to(F64)
    loss_fn, theta = module_loss(model, xs, ys)
    blocks = {k: (k,) for k in theta}
    trace = estimate_hessian_trace(
        loss_fn, theta, n_probes=6, blocks=blocks, generator=torch.Generator().manual_seed(3)
    )
    eig = hessian_eigenvalues(loss_fn, theta, k=2, generator=torch.Generator().manual_seed(3))
    assert flat["loss_value"] == pytest.approx(float(loss_fn(theta)), **APPROX)
    assert flat["trace"]["mean"] == pytest.approx(trace.mean, **APPROX)
    assert flat["trace"]["n_probes"] == 6
    assert set(flat["trace"]["block_means"]) == {"M_A", "M_W", "U", "b", "V", "c"}
    _close(flat["eigenvalues"]["eigenvalues"], eig.eigenvalues)
    assert flat["n_params"] == sum(t.numel() for t in theta.values())


def test_analyse_human_output(runs, capsys, single_thread):
    argv = ["analyse", str(runs / "nrnn"), "--regularizer", "--flatness", "--examples", "6"]
    assert main([*argv, "--mc-pairs", "3", "--probes", "4", "--top-k", "2"]) == 0
    text = capsys.readouterr().out
    # rows carry the JSON keys of regularizer.summary
    for row in ("Q ", "R ", "total ", "noise_gap ", "mean_shift ", "predicted_gap "):
        assert f"\n  {row}" in text
    assert "standard errors: pass" in text or "standard errors: fail" in text
    assert "paper_code add_noise a = 0.05, mult_noise mu = 0.3" in text
    assert "% of R-hat" in text and "measured gap" in text
    assert "Hutchinson trace" in text and "(4 probes)" in text
    assert "top 2 eigenvalues" in text and "mean cross-entropy" in text
    assert "\n    M_W " in text  # per-parameter trace row


def test_analyse_noise_free_model_needs_noise(runs, capsys, single_thread):
    assert main(["analyse", str(runs / "lip"), "--regularizer", "--examples", "4"]) == 2
    err = capsys.readouterr().err
    assert "trained without noise" in err and "--add" in err and str(runs / "lip") in err
    argv = ["analyse", str(runs / "lip"), "--regularizer", "--examples", "4", "--json"]
    out = _json(
        capsys, [*argv, "--convention", "sde", "--add", "0.2", "--noise-structure", "scalar"]
    )
    noise = NoiseSpec(sigma1=0.2, structure="scalar", convention="sde")
    assert out["regularizer"]["noise_source"] == "command line"
    assert NoiseSpec.from_dict(out["regularizer"]["noise"]) == noise
    ck = load_checkpoint(runs / "lip")
    xs, ys = _examples(ck, 4)
    direct = explicit_regularizer(params_from_module(ck.model, dtype=F64), xs, ys, noise)
    _close(out["regularizer"]["result"]["Q"], direct.Q)
    _close(out["regularizer"]["result"]["R"], direct.R)
    assert "mean_shift" not in out["regularizer"]["summary"]  # sde: no mean shift
    assert out["flatness"] is None


def test_analyse_non_nrnn_model(runs, capsys, single_thread):
    argv = ["analyse", str(runs / "lstm"), "--examples", "4"]
    assert main([*argv, "--regularizer", "--flatness"]) == 2
    err = capsys.readouterr().err
    assert "'lstm' model, not one of the NRNN family" in err and "--flatness works" in err
    out = _json(capsys, [*argv, "--flatness", "--probes", "3", "--top-k", "1", "--json"])
    assert out["regularizer"] is None
    flat = out["flatness"]
    assert flat["n_params"] == sum(flat["parameters"].values()) > 0
    assert len(flat["eigenvalues"]["eigenvalues"]) == 1
    ck = load_checkpoint(runs / "lstm")
    xs, ys = _examples(ck, 4)
    loss_fn, theta = module_loss(ck.model.to(F64), xs, ys)
    eig = hessian_eigenvalues(loss_fn, theta, k=1, generator=torch.Generator().manual_seed(0))
    _close(flat["eigenvalues"]["eigenvalues"], eig.eigenvalues)


def test_analyse_option_errors(runs, tmp_path, capsys):
    nrnn = str(runs / "nrnn")
    cases = [
        ([nrnn], "expected at least one of --regularizer and --flatness"),
        ([nrnn, "--flatness", "--mc-pairs", "1"], "--mc-pairs: expected 0"),
        ([nrnn, "--flatness", "--probes", "0"], "--probes: expected an integer >= 1"),
        ([nrnn, "--regularizer", "--convention", "sde"], "--convention: expected together"),
        ([nrnn, "--flatness", "--add", "0.1"], "only apply with --regularizer"),
        ([nrnn, "--regularizer", "--add", "-1"], "--add: expected a finite level >= 0"),
        ([nrnn, "--flatness", "--top-k", "100000"], "--top-k: expected at most"),
    ]
    for argv, message in cases:
        assert main(["analyse", *argv, "--examples", "2"]) == 2
        assert message in capsys.readouterr().err, argv


# ------------------------------------------------------------------------------ certify
def test_certify_json_equals_library(runs, capsys, single_thread):
    argv = ["certify", str(runs / "nrnn"), "--examples", "8", "--exponents", "2", "--json"]
    out = _json(capsys, [*argv, "--seed", "5"])
    ck = load_checkpoint(runs / "nrnn")
    xs, _ = _examples(ck, 8)
    params = params_from_module(ck.model, dtype=F64)
    noise = noise_from_module(ck.model)
    direct = stability_report(
        params, xs, noises=[noise], k=2, generator=torch.Generator().manual_seed(5)
    )
    rep = out["report"]
    assert NoiseSpec.from_dict(out["noise"]) == noise and out["noise_source"] == "checkpoint"
    assert rep["one_sided"] == pytest.approx(direct.one_sided, **APPROX)
    assert [c["condition"] for c in rep["certificates"]] == ["contraction", "discrete", "discrete"]
    for got, cert in zip(rep["certificates"], direct.certificates, strict=True):
        assert got["bound"] == pytest.approx(cert.bound, **APPROX)
        assert got["holds"] == cert.holds
        assert got["quantities"] == pytest.approx(cert.quantities, **APPROX)
    # The rows are check_stability's own certificates.
    assert rep["certificates"][2]["bound"] == pytest.approx(
        check_stability(params, noise, condition="discrete").bound, **APPROX
    )
    for got, spec in zip(rep["spectra"], direct.spectra, strict=True):
        _close(got["exponents"], spec.exponents)
        _close(got["stderr"], spec.stderr)
        assert len(got["exponents"]) == 2
    assert rep["minimal_noise"][0]["level"] == pytest.approx(
        direct.minimal_noise[0].level, **APPROX
    )


def test_certify_human_table_with_sde_override(runs, capsys, single_thread):
    argv = ["certify", str(runs / "lip"), "--examples", "4", "--one-sided", "midpoint"]
    assert main([*argv, "--convention", "sde", "--mult", "1.5", "--noise-structure", "scalar"]) == 0
    text = capsys.readouterr().out
    for row in ("contraction [midpoint]", "discrete [midpoint]"):
        assert "\n  none " in text and row in text
    label = "sde scalar eps*s1=0 eps*s2=1.5"
    for cond in ("almost_sure_scalar [midpoint]", "mean_square [midpoint]"):
        assert any(line.startswith(f"  {label}") and cond in line for line in text.splitlines())
    assert "noise from the command line" in text
    assert "Quantities entering each bound:" in text and "lambda_hat = " in text
    assert "Measured leading exponents" in text and "Smallest multiplicative" in text
    assert main(["certify", str(runs / "lip"), "--examples", "4"]) == 0
    text = capsys.readouterr().out
    assert "noise from the checkpoint: none" in text
    assert not any(line.startswith("  sde ") for line in text.splitlines())


def test_certify_errors(runs, tmp_path, capsys):
    assert main(["certify", str(runs / "lstm"), "--examples", "2"]) == 2
    assert "not one of the NRNN family" in capsys.readouterr().err
    assert main(["certify", str(runs / "nrnn"), "--exponents", "7", "--examples", "2"]) == 2
    assert "--exponents: expected at most the hidden size 6" in capsys.readouterr().err
    missing = tmp_path / "no-such-run"
    assert main(["certify", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    # A checkpoint whose tensor file was altered after writing.
    bad = tmp_path / "bad"
    shutil.copytree(runs / "nrnn", bad)
    tensors = sorted(bad.glob("checkpoints/epoch-*/tensors.safetensors"))[-1]  # not best/
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 0xFF
    tensors.write_bytes(bytes(data))
    for argv in (["certify", str(bad)], ["analyse", str(bad), "--flatness"]):
        assert main(argv) == 2
        assert str(bad) in capsys.readouterr().err


def test_format_stability_report_details(generator):
    from _problems import random_params

    p = random_params(3, 2, 2, generator=generator)
    noise = NoiseSpec(sigma2=0.7, structure="scalar")
    rep = stability_report(
        p, noises=[noise], k=2, n_steps=20, n_trajectories=2, generator=generator
    )
    plain = format_stability_report(rep)
    full = format_stability_report(rep, details=True)
    assert full.startswith(plain) and len(full) > len(plain)
    for cert in rep.certificates:
        for key, value in cert.quantities.items():
            assert f"{key} = {value:.6g}" in full
    for spec in rep.spectra:
        assert all(f"{v:.4g} ± " in full for v in spec.exponents.tolist())


def test_stability_report_computes_each_one_sided_constant_once(generator, monkeypatch):
    """The report's certificates and minimal noises share one relaxation solve (it
    dominated `nrnn certify` at H = 64), and the shared value is check_stability's."""
    from nrnn_theory import stability

    from _problems import random_params

    calls = []
    relaxation = stability._ONE_SIDED["relaxation"]

    def counted(m):
        calls.append(m)
        return relaxation(m)

    monkeypatch.setitem(stability._ONE_SIDED, "relaxation", counted)
    p = random_params(13, 2, 2, generator=generator)  # H > 12: "auto" is the relaxation
    noise = NoiseSpec(sigma2=0.7, structure="scalar")
    rep = stability_report(p, noises=[noise], n_steps=5, n_trajectories=2, generator=generator)
    assert len(calls) == 1
    assert [c.one_sided for c in rep.certificates] == ["relaxation"] * 4
    assert rep.certificates[2] == check_stability(p, noise)
    assert len(calls) == 2  # check_stability builds its own model
    assert rep.minimal_noise[0] == stability.minimal_stabilizing_noise(p)


def test_certify_and_analyse_flag_a_learned_step_below_zero(runs, tmp_path, capsys, single_thread):
    from nrnn_theory.train import save_checkpoint

    _train(tmp_path / "learned", "nrnn", ["--learn-step"])
    capsys.readouterr()  # the training's own output
    ck = load_checkpoint(tmp_path / "learned")
    with torch.no_grad():
        ck.model.step[:2] = -0.05  # two units step against their drift
    bad = save_checkpoint(
        tmp_path / "negative", ck.model, epoch=ck.epoch, task=ck.task, fit=ck.fit, seed=ck.seed
    )
    out = _json(capsys, ["certify", str(bad), "--examples", "4", "--exponents", "1", "--json"])
    assert out["step_check"]["flagged"] and out["step_check"]["n_nonpositive"] == 2
    out = _json(
        capsys, ["analyse", str(bad), "--examples", "4", "--flatness", "--probes", "2", "--json"]
    )
    assert out["step_check"]["flagged"] and out["step_check"]["step_min"] == pytest.approx(-0.05)
    assert main(["certify", str(bad), "--examples", "4", "--exponents", "1"]) == 0
    assert "warning: learned step: 2 of 6 units" in capsys.readouterr().out
    fine = _json(capsys, ["certify", str(runs / "nrnn"), "--examples", "4", "--json"])
    assert not fine["step_check"]["flagged"] and not fine["step_check"]["learned"]
