"""End-to-end tests of the checkpoint-based subcommands (`nrnn robustness`, `nrnn margins`)."""

from __future__ import annotations

import json

import pytest

from nrnn_theory.cli import main


def _train(out, model, epochs, hidden=8, extra=()):
    argv = [
        "train",
        "--task",
        "digits",
        "--model",
        model,
        "--hidden",
        str(hidden),
        "--epochs",
        str(epochs),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]
    assert main(argv) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    _train(root / "nrnn", "nrnn", 1, extra=["--add", "0.05", "--mult", "0.02"])
    _train(root / "lstm", "lstm", 1)
    return root


def test_robustness_table_and_figure(runs, tmp_path, capsys, single_thread):
    fig = tmp_path / "rob.png"
    argv = [
        "robustness",
        str(runs / "nrnn"),
        str(runs / "lstm"),
        "--examples",
        "40",
        "--draws",
        "2",
        "--attack-steps",
        "3",
        "--plot",
        str(fig),
        "--json",
    ]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    table = out["table"]
    assert [r for r in table["models"]] == ["nrnn@epoch 1", "lstm@epoch 1"]  # folder, epoch
    families = {name for name, _ in table["columns"]}
    assert {"clean", "white_noise", "multiplicative_noise", "salt_and_pepper"} <= families
    # the zoo's attacks by default: FGSM and PGD at l_inf 0.01, 0.03, 0.05
    for attack in ("fgsm_linf", "pgd_linf"):
        assert sorted(s for name, s in table["columns"] if name == attack) == [0.01, 0.03, 0.05]
    assert fig.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rob.png"]  # exactly the file named
    # An existing --plot file is refused before any work, and left as it was.
    before = fig.read_bytes()
    assert main(argv[:-1]) == 2
    assert "--plot" in capsys.readouterr().err and fig.read_bytes() == before
    # Text mode prints one row per model; --force replaces the figure.
    assert main([*argv[:-1], "--force"]) == 0
    text = capsys.readouterr().out
    assert "nrnn" in text and "lstm" in text


def test_margins_certified_below_empirical(runs, capsys, single_thread):
    assert main(["margins", str(runs / "nrnn"), "--examples", "12", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cert = out["certified"]["radius"]
    emp = out["empirical"]["distance"]
    assert len(cert) == len(emp) == 12
    assert all(c <= e for c, e in zip(cert, emp, strict=True))
    assert out["summary"]["n_violations"] == 0
    # The certified radius by bound propagation (CROWN by default) in the attack's norm.
    radius = out["certified_radius"]
    assert radius["method"] == "crown" and radius["norm"] == "l2"
    assert radius["data_range"] == [0.0, 1.0]
    assert all(r <= e for r, e in zip(radius["radius"], emp, strict=True))
    assert out["radius_summary"]["n_violations"] == 0
    assert main(["margins", str(runs / "nrnn"), "--examples", "6", "--norm", "linf"]) == 0
    text = capsys.readouterr().out
    assert "certified radius (crown, linf)" in text
    assert "certified > empirical on 0 (must be 0)" in text
    assert main(["margins", str(runs / "lstm"), "--examples", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["certified"] is None


def test_checkpoint_errors_are_clean(runs, tmp_path, capsys):
    # A task with another input size (BasicMotions: 6 channels) than the model's (1).
    assert main(["margins", str(runs / "nrnn"), "--task", "ucr:BasicMotions"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint" in err and "input size 6" in err and "got input size 1" in err
    assert main(["robustness", str(tmp_path)]) == 2
    assert "checkpoint" in capsys.readouterr().err.lower()
    assert main(["margins", str(runs / "nrnn"), "--examples", "0"]) == 2
    assert "--examples: expected an integer >= 1" in capsys.readouterr().err
    assert main(["robustness", str(runs / "nrnn"), "--perturbations", "rain"]) == 2
    assert "--perturbations: expected names from" in capsys.readouterr().err


@pytest.mark.slow
def test_trained_noisy_and_deterministic_models_compare_end_to_end(tmp_path, capsys, single_thread):
    """Issue 8: a trained noisy and a trained deterministic model on digits give a full
    comparison table over the four perturbation families."""
    _train(tmp_path / "nrnn", "nrnn", 25, hidden=32, extra=["--add", "0.05", "--mult", "0.02"])
    _train(tmp_path / "lip", "lipschitz", 25, hidden=32)
    capsys.readouterr()  # drop the training summaries
    argv = [
        "robustness",
        str(tmp_path / "nrnn"),
        str(tmp_path / "lip"),
        "--perturbations",
        "white_noise,multiplicative_noise,salt_and_pepper,fgsm_linf,pgd_linf,pgd_l2",
        "--plot",
        str(tmp_path / "fig.png"),
        "--json",
    ]
    assert main(argv) == 0
    table = json.loads(capsys.readouterr().out)["table"]
    clean = [name for name, _ in table["columns"]].index("clean")
    for row in table["accuracy"]:
        assert row[clean] > 0.6  # both models learned the task
        assert all(0.0 <= a <= 1.0 for a in row)
    assert len(table["columns"]) == 1 + 6 * 3


def test_robustness_epoch_choice_and_refusal_of_other_data(runs, tmp_path, capsys):
    base = ["--examples", "8", "--draws", "1", "--attack-steps", "1", "--json"]
    base += ["--perturbations", "white_noise"]
    assert main(["robustness", str(runs / "nrnn"), "--epoch", "best", *base]) == 0
    assert json.loads(capsys.readouterr().out)["table"]["models"] == ["nrnn@best(epoch 1)"]
    assert main(["robustness", str(runs / "nrnn"), "--epoch", "1", *base]) == 0
    assert json.loads(capsys.readouterr().out)["table"]["models"] == ["nrnn@epoch 1"]
    assert main(["robustness", str(runs / "nrnn"), "--epoch", "7", *base]) == 2
    assert "--epoch 7" in capsys.readouterr().err
    # a model trained on another split seed of the same task is refused, by name
    _train(tmp_path / "other", "nrnn", 1, extra=["--split-seed", "1"])
    capsys.readouterr()
    assert main(["robustness", str(runs / "nrnn"), str(tmp_path / "other"), *base]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {tmp_path / 'other'}" in err and "split seed" in err
