"""`nrnn train`: help, a run, refusing to overwrite, and a killed run resumed bitwise."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from nrnn_theory import NoiseSpec
from nrnn_theory.cli import build_parser, main
from nrnn_theory.train import FitSettings, latest_checkpoint, load_checkpoint
from nrnn_theory.train.loop import CRASH_AFTER_STEPS_ENV


pytestmark = pytest.mark.usefixtures("single_thread")

SMALL = [
    "--task",
    "digits",
    "--hidden",
    "8",
    "--batch-size",
    "100",
    "--add",
    "0.02",
    "--mult",
    "0.02",
    "--lr",
    "0.01",
    "--quiet",
]


def _train_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def test_help_documents_every_option_with_its_default():
    parser = _train_parser()
    text = parser.format_help()
    formatter = parser._get_formatter()
    shown = [a for a in parser._actions if a.help != argparse.SUPPRESS]
    assert len(shown) > 40
    for action in shown:
        if isinstance(action, argparse._HelpAction):
            continue
        entry = " ".join(formatter._format_action(action).split())
        assert action.option_strings[-1] in text
        # A default is stated once: by the formatter, or in the help's own words; flags
        # and unset (None) options have none to state.
        stated = "(default:" in entry or "default" in action.help or "unset:" in action.help
        unstated = action.default is None or isinstance(action.default, bool)
        assert action.help and (stated or unstated), entry
        assert entry.count("(default:") <= 1, entry
    assert "crash" not in text  # the test seam is an environment variable, not an option


def test_train_prints_final_clean_accuracy(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--epochs", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("final clean test accuracy: ") and str(out) in printed
    summary = json.loads((out / "summary.json").read_text())
    assert f"{summary['test_accuracy']:.4f}" in printed
    ck = load_checkpoint(out)
    assert ck.config["noise"]["convention"] == "paper_code" and ck.config["noise"]["sigma1"] == 0.02
    # the decay default follows --epochs: floor(0.9 * 2) = 1
    assert ck.fit["lr_schedule"] == [1] and ck.task["name"] == "digits"
    assert ck.fit["lr"] == FitSettings().lr and ck.fit["patience"] is None
    assert ck.fit["penalty"] is None and ck.explicit_regularizer is None
    assert main(["train", *SMALL, "--epochs", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["epochs"] == 1 and data["out_dir"] is None


def test_train_refuses_to_overwrite_and_to_resume_a_non_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert main(["train", *SMALL, "--epochs", "1", "--out", str(out)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert main(["train", "--resume", str(out)]) == 2
    assert "is not a checkpoint" in capsys.readouterr().err
    assert main(["train", *SMALL, "--model", "lstm", "--epochs", "1"]) == 2
    assert "takes no noise" in capsys.readouterr().err
    assert main(["train", *SMALL, "--pixels-per-step", "4"]) == 2
    assert "takes no such option" in capsys.readouterr().err


def _cli(*args, env=None, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "nrnn_theory.cli", "train", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        **kw,
    )


def test_killed_run_resumes_to_bitwise_identical_weights(tmp_path):
    """A run killed with SIGKILL mid-epoch, resumed with --resume, ends where an
    uninterrupted run ends: the same weights, optimizer state and generator states."""
    args = [*SMALL, "--epochs", "3", "--lr-decay-epochs", "2", "--seed", "4"]
    full = _cli(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    # The fault is injected through the test-only environment variable read by fit.
    crash = {CRASH_AFTER_STEPS_ENV: "17"}
    killed = _cli(*args, "--out", str(tmp_path / "killed"), env=crash)
    assert killed.returncode == -signal.SIGKILL, killed.stderr  # 13 steps per epoch
    assert latest_checkpoint(tmp_path / "killed").name == "epoch-0001"
    resumed = _cli("--resume", str(tmp_path / "killed"))
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split(" (")[0] == full.stdout.split(" (")[0]  # same final accuracy
    a = load_file(str(latest_checkpoint(tmp_path / "full") / "tensors.safetensors"))
    b = load_file(str(latest_checkpoint(tmp_path / "killed") / "tensors.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("optim.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --------------------------------------------------------------- --explicit-reg (issue 6)
REG = [*SMALL[:6], "--add", "0.05", "--mult", "0.1", "--lr", "0.01", "--quiet"]


def test_explicit_reg_round_trip(tmp_path, capsys):
    """Train noise-free with the regularizer, load it back, resume it with the penalty."""
    out = tmp_path / "reg"
    args = ["train", *REG, "--explicit-reg", "2", "--reg-examples", "16", "--epochs", "1"]
    assert main([*args, "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("final clean test accuracy")
    ck = load_checkpoint(out)
    assert ck.config["model"] == "nrnn" and ck.config["noise"] is None
    assert ck.fit["penalty"] == {
        "name": "explicit_regularizer",
        "weight": 2.0,
        "max_examples": 16,
        "estimator": "pathwise",
        "probes": 1,
        "noise": NoiseSpec.paper_code(add=0.05, mult=0.1).to_dict(),
    }
    assert ck.history[0]["train_penalty"] > 0
    assert ck.explicit_regularizer.weight == 2.0 and ck.explicit_regularizer.max_examples == 16
    # the loaded model is noise-free in either mode
    xs = torch.rand(3, 64, 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean = ck.model.eval()(xs)
        trained = ck.model.train()(xs)
    assert ck.model.noise is None and torch.equal(clean, trained)
    # --resume rebuilds the penalty from the record (a different one would be refused)
    assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0
    capsys.readouterr()
    resumed = load_checkpoint(out)
    assert resumed.epoch == 2 and resumed.fit["penalty"] == ck.fit["penalty"]
    assert "train_penalty" in resumed.history[1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--explicit-reg", "-1"], "expected a finite LAMBDA >= 0"),
        (["--explicit-reg", "nan"], "expected a finite LAMBDA >= 0"),
        (["--explicit-reg", "1", "--model", "lstm"], "defined for the NRNN family"),
        (["--explicit-reg", "1", "--model", "cornn"], "defined for the NRNN family"),
        (["--explicit-reg", "1", "--reg-examples", "0"], "--reg-examples: expected a positive"),
        (["--reg-examples", "8"], "only meaningful with --explicit-reg"),
    ],
)
def test_explicit_reg_bad_input(extra, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *REG, *extra, "--epochs", "1", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_explicit_reg_needs_a_noise_level(tmp_path, capsys):
    args = ["train", *SMALL[:6], "--explicit-reg", "1", "--epochs", "1", "--quiet"]
    assert main(args) == 2
    assert "--add and/or --mult" in capsys.readouterr().err


def test_train_options_default_to_the_settings_record():
    from nrnn_theory._cli.train import _fit_settings

    args = build_parser().parse_args(["train", "--epochs", "50"])
    assert _fit_settings(args) == FitSettings(epochs=50)  # one set of defaults
    assert _fit_settings(args).lr_schedule == (45,)
    args = build_parser().parse_args(
        ["train", "--epochs", "50", "--patience", "5", "--keep-last", "--lr-decay-epochs"]
    )
    s = _fit_settings(args)
    assert s.patience == 5 and not s.restore_best and s.lr_schedule == ()
