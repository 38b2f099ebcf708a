"""Your own data (.npz) and model (safetensors + JSON) files, and the Python entry points
analyse_model / certify_model, checked against the command line and the core functions."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
import torch

import nrnn_theory
from nrnn_theory import NoiseSpec, explicit_regularizer, logits, stability_report
from nrnn_theory.cli import build_parser, main
from nrnn_theory.train import (
    TorchRNNClassifier,
    load_data_file,
    load_model_file,
    params_from_module,
    save_data_file,
    save_model_file,
)
from nrnn_theory.train.analysis import analyse_model, certify_model

from _tolerances import tol


F64 = torch.float64


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own")
    g = torch.Generator().manual_seed(3)
    xs = torch.rand(12, 6, 2, generator=g, dtype=F64)
    ys = torch.randint(0, 3, (12,), generator=g)
    torch.manual_seed(5)
    model = TorchRNNClassifier(2, 5, 3, dtype=F64)
    return {
        "folder": folder,
        "xs": xs,
        "ys": ys,
        "model": model,
        "data": save_data_file(folder / "data.npz", xs, ys),
        "model_file": save_model_file(folder / "model.json", model),
    }


# ----------------------------------------------------------------------------- data files
def test_data_file_round_trips_in_both_layouts(tmp_path):
    g = torch.Generator().manual_seed(0)
    xs, ys = torch.rand(9, 4, 3, generator=g), torch.randint(0, 4, (9,), generator=g)
    split = ["train"] * 5 + ["val"] * 2 + ["test"] * 2
    data = load_data_file(save_data_file(tmp_path / "a.npz", xs, ys, split=split))
    assert data.splits == ("train", "val", "test") and data.input_size == 3
    torch.testing.assert_close(data.inputs("train"), xs[:5], rtol=0, atol=0)
    torch.testing.assert_close(data.labels("test"), ys[7:], rtol=0, atol=0)
    assert data.value_range == (float(xs.min()), float(xs.max()))
    np.savez(
        tmp_path / "b.npz",
        x_train=xs[:5].numpy(),
        y_train=ys[:5].numpy(),
        x_test=xs[5:].numpy(),
        y_test=ys[5:].numpy(),
        value_range=np.array([0.0, 1.0]),
        class_names=np.array(["a", "b", "c", "d"]),
    )
    data = load_data_file(tmp_path / "b.npz")
    assert data.splits == ("train", "test") and data.num_classes == 4
    assert data.value_range == (0.0, 1.0)
    torch.testing.assert_close(data.inputs("test"), xs[5:], rtol=0, atol=0)
    with pytest.raises(ValueError, match="holds no 'val' split"):
        data.inputs("val")


def _bad_files(tmp_path):
    x, y = np.zeros((4, 3, 2), np.float32), np.array([0, 1, 2, 1])
    nan = x.copy()
    nan[1, 2, 0] = np.nan
    return [
        ({"x": x, "labels": y}, "unknown array(s) ['labels']"),
        ({"x": x}, "missing array 'y'"),
        ({"x": x[:, :, 0], "y": y}, "expected 3 dimensions (N, T, D), got shape (4, 3)"),
        ({"x": x, "y": y[:3]}, "expected shape (4,) to match x, got (3,)"),
        ({"x": x.astype(bool), "y": y}, "expected numbers (float or integer), got dtype bool"),
        ({"x": x, "y": y.astype(np.float32)}, "expected integer class labels"),
        ({"x": nan, "y": y}, "expected finite values, got 1 NaN or infinite"),
        ({"x": x, "y": np.array([0, -1, 0, 0])}, "expected labels in"),
        ({"x": x, "y": y, "x_test": x, "y_test": y}, "got both"),
        ({"x_test": x}, "missing array 'y_test'"),
        ({"x": x, "y": y, "split": np.array(["train", "dev", "test", "test"])}, "got ['dev']"),
        ({"x": np.array([object()] * 4, dtype=object), "y": y}, "holds Python objects"),
    ]


def test_bad_data_files_give_one_line_errors(tmp_path):
    for i, (arrays, message) in enumerate(_bad_files(tmp_path)):
        path = tmp_path / f"bad{i}.npz"
        np.savez(path, **arrays)
        with pytest.raises(ValueError) as info:
            load_data_file(path)
        text = str(info.value)
        assert message in text and str(path) in text, (message, text)
        assert "\n" not in text
    np.savez(tmp_path / "ok.npz", x=np.zeros((2, 3, 1)), y=np.array([0, 3]))
    with pytest.raises(ValueError, match=r"expected labels in \[0, 3\), got 3 at index 1"):
        load_data_file(tmp_path / "ok.npz", num_classes=3)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="expected an .npz archive"):
        load_data_file(tmp_path / "text.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match="got a single .npy array"):
        load_data_file(tmp_path / "single.npy")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_data_file(tmp_path / "missing.npz")


# ---------------------------------------------------------------------------- model files
def test_model_file_round_trips_and_maps_exactly_to_an_nrnn(files, tmp_path):
    back = load_model_file(files["model_file"])
    assert isinstance(back, TorchRNNClassifier) and not back.training
    xs = files["xs"]
    torch.testing.assert_close(back(xs), files["model"](xs), rtol=0, atol=0)
    # Oracle: the NRNN logits of the mapped parameters (dense float64 rollout).
    torch.testing.assert_close(logits(params_from_module(back), xs), back(xs), **tol("reduction"))
    assert load_model_file(files["model_file"].with_suffix(".safetensors")) is not None
    # A module with other attribute names and no readout bias.
    model = torch.nn.Module()
    model.core = torch.nn.RNN(2, 4, batch_first=True)
    model.head = torch.nn.Linear(4, 3, bias=False)
    back = load_model_file(save_model_file(tmp_path / "m.json", model))
    assert back.fc.bias is None
    torch.testing.assert_close(back.rnn.weight_hh_l0, model.core.weight_hh_l0, rtol=0, atol=0)


def test_bad_model_files_give_one_line_errors(files, tmp_path):
    meta = json.loads(files["model_file"].read_text())
    weights = files["folder"] / meta["weights"]
    cases = [
        ({**meta, "format": "other"}, "expected a model file with format"),
        ({**meta, "format_version": 9}, "expected format_version 1"),
        ({**meta, "hidden_size": 0}, "hidden_size: expected an integer >= 1"),
        ({**meta, "hidden_size": 6}, "hidden_size 6, num_classes 3), got"),
        ({**meta, "weights": "../x.safetensors"}, "expected a file name in the same folder"),
        ({**meta, "rnn": "core"}, "missing ['core.weight_ih_l0'"),
    ]
    for i, (m, message) in enumerate(cases):
        path = files["folder"] / f"bad{i}.json"
        path.write_text(json.dumps(m))
        with pytest.raises(ValueError) as info:
            load_model_file(path)
        assert message in str(info.value) and "\n" not in str(info.value), (message, info.value)
    with pytest.raises(ValueError, match="expected a .json file name"):
        save_model_file(tmp_path / "m.pt", files["model"])
    lstm = torch.nn.Module()
    lstm.rnn, lstm.fc = torch.nn.LSTM(2, 4), torch.nn.Linear(4, 3)
    with pytest.raises(TypeError):
        save_model_file(tmp_path / "l.json", lstm)
    assert weights.is_file()


# ---------------------------------------------------------- Python entries and the CLI
def _cli_json(capsys, argv):
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def mc_se(result):
    return result.regularizer.monte_carlo.mean_stderr


def test_analyse_model_agrees_with_the_core_and_the_cli(files, capsys):
    model, xs, ys = files["model"], files["xs"], files["ys"]
    noise = NoiseSpec.paper_code(add=0.05, mult=0.02)
    result = analyse_model(model, xs, ys, noise=noise, probes=5, top_k=2, mc_pairs=4, seed=1)
    # Oracle: the core's exact regularizer of the mapped parameters.
    reg = explicit_regularizer(params_from_module(model), xs, ys, noise)
    torch.testing.assert_close(result.regularizer.result.Q, reg.Q, **tol("reduction"))
    torch.testing.assert_close(result.regularizer.result.R, reg.R, **tol("reduction"))
    assert result.summary["Q"]["mean"] == pytest.approx(float(reg.Q.mean()), rel=1e-9)
    shares = result.top_steps
    assert [s.R for s in shares] == sorted((s.R for s in shares), reverse=True)
    assert (
        result.flatness.n_params == 2 * 5 + 5 * 5 + 5 + 5 + 3 * 5 + 3
        and result.noise_source == "argument"
    )
    assert type(result).from_dict(json.loads(json.dumps(result.to_dict()))).seed == 1
    argv = [
        "analyse",
        str(files["model_file"]),
        "--data",
        str(files["data"]),
        "--regularizer",
        "--flatness",
        "--add",
        "0.05",
        "--mult",
        "0.02",
        "--probes",
        "5",
        "--top-k",
        "2",
        "--mc-pairs",
        "4",
        "--seed",
        "1",
        "--json",
    ]
    out = _cli_json(capsys, argv)
    assert out["task"] == "data.npz" and out["n_examples"] == 12 and out["model"] == "torch_rnn"
    assert out["command_line"].startswith("nrnn analyse ") and out["command_line"].endswith(
        "--json"
    )
    assert out["package_version"] == nrnn_theory.__version__ and out["date"].endswith("+00:00")
    check = out["regularizer"]["monte_carlo_check"]
    assert check["pass"] == (abs(check["difference"]) <= 4 * mc_se(result))
    assert out["regularizer"]["summary"] == result.summary  # the same computation
    mc = result.regularizer.monte_carlo
    assert out["regularizer"]["monte_carlo"]["mean"] == pytest.approx(mc.mean, rel=1e-12)
    assert out["flatness"]["trace"]["mean"] == pytest.approx(result.flatness.trace.mean, rel=1e-12)
    # The text: every check says pass or fail; the rows carry the JSON keys.
    assert main(argv[:-1]) == 0
    text = capsys.readouterr().out
    verdict = "pass" if check["pass"] else "fail"
    assert f"within 4 standard errors: {verdict}" in text and "converged: pass" in text
    rows = [
        line.split()[0]
        for line in text.splitlines()
        if line.startswith("  ") and line[2:3] in "QRtnmp"
    ]
    assert set(result.summary) <= set(rows), rows


def test_certify_model_agrees_with_the_core_and_the_cli(files, capsys):
    model, xs = files["model"], files["xs"]
    noise = NoiseSpec.paper_code(add=0.1)
    report = certify_model(model, xs, noise=noise, k=2, seed=2)
    oracle = stability_report(
        params_from_module(model),
        xs,
        noises=[noise],
        k=2,
        generator=torch.Generator().manual_seed(2),
    )
    assert report.to_dict() == oracle.to_dict()
    out = _cli_json(
        capsys,
        [
            "certify",
            str(files["model_file"]),
            "--data",
            str(files["data"]),
            "--add",
            "0.1",
            "--exponents",
            "2",
            "--seed",
            "2",
            "--json",
        ],
    )
    assert out["report"] == json.loads(json.dumps(report.to_dict()))


def test_entries_explain_what_they_cannot_do(files):
    model, xs, ys = files["model"], files["xs"], files["ys"]
    with pytest.raises(ValueError, match="carries no training noise"):
        analyse_model(model, xs, ys, flatness=False)
    with pytest.raises(TypeError, match="needs an nn.Module"):
        analyse_model(params_from_module(model), xs, ys, flatness=True)
    with pytest.raises(ValueError, match="not one"):
        analyse_model(torch.nn.LSTM(2, 3), xs, ys, noise=NoiseSpec.paper_code(add=0.1))
    with pytest.raises(ValueError, match="mc_pairs: expected 0"):
        analyse_model(model, xs, ys, noise=NoiseSpec.paper_code(add=0.1), mc_pairs=1)
    with pytest.raises(ValueError, match="labels: expected integer labels of shape"):
        analyse_model(model, xs, ys[:3], flatness=True, regularizer=False)
    with pytest.raises(ValueError, match="k: expected at most the hidden size 5"):
        certify_model(model, xs, k=6)


def test_cli_data_errors_are_one_line(files, tmp_path, capsys):
    np.savez(tmp_path / "nan.npz", x=np.full((2, 6, 2), np.nan), y=np.array([0, 1]))
    np.savez(tmp_path / "wide.npz", x=np.zeros((2, 6, 3)), y=np.array([0, 1]))
    np.savez(tmp_path / "high.npz", x=np.zeros((2, 6, 2)), y=np.array([0, 7]))
    model = str(files["model_file"])
    cases = [
        (["margins", model, "--data", str(tmp_path / "nan.npz")], "expected finite values"),
        (["robustness", model, "--data", str(tmp_path / "wide.npz")], "input size 3"),
        (["certify", model, "--data", str(tmp_path / "high.npz")], "expected labels in [0, 3)"),
        (["certify", model, "--data", str(files["data"]), "--task", "digits"], "got both"),
        (["certify", model], "pass --task or your own --data"),
        (["certify", model, "--data", str(tmp_path / "none.npz")], "does not exist"),
        (["margins", model, "--data", str(files["data"]), "--split", "val"], "no 'val' split"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_off_with_quiet_and_threads(files, monkeypatch):
    argv = ["certify", str(files["model_file"]), "--data", str(files["data"]), "--json"]
    old = torch.get_num_threads()
    try:
        for extra, shown in (([], True), (["--quiet"], False)):
            err = _Terminal()
            monkeypatch.setattr(sys, "stderr", err)
            monkeypatch.setattr(sys, "stdout", io.StringIO())
            assert main([*argv, "--threads", "1", *extra]) == 0
            assert ("certify" in err.getvalue()) is shown, err.getvalue()
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(old)


def test_every_subcommand_takes_quiet_and_threads():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        flags = {s for a in p._actions for s in a.option_strings}
        assert {"--quiet", "--threads"} <= flags, name


def test_to_pandas_views_and_the_missing_extra(files, monkeypatch):
    from nrnn_theory import comparison_table, robustness_sweep

    model, xs, ys = files["model"], files["xs"], files["ys"]
    result = analyse_model(model, xs, ys, noise=NoiseSpec.paper_code(add=0.05), flatness=False)
    frame = result.to_pandas()
    assert (
        list(frame.index) == list(result.summary)
        and frame.loc["Q", "mean"] == (result.summary["Q"]["mean"])
    )
    sweep = robustness_sweep(
        model.double(),
        xs,
        ys,
        perturbations=["white_noise"],
        grids={"white_noise": (0.1,)},
        n_draws=1,
        generator=torch.Generator().manual_seed(0),
    )
    table = comparison_table({"m": sweep})
    frame = table.to_pandas()
    assert len(frame) == len(table.columns) and set(frame["model"]) == {"m"}
    assert frame["accuracy"].tolist() == table.accuracy[0].tolist()
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"nrnn_theory\[pandas\]"):
        table.to_pandas()
