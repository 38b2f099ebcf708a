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

from nrnn_theory.cli import build_parser, main
from nrnn_theory.train import latest_checkpoint, load_checkpoint


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
        assert action.help and "(default:" in entry, entry
    assert "--crash-after-steps" not in text  # the hidden test option


def test_train_prints_final_clean_accuracy(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--epochs", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("final clean test accuracy: ") and str(out) in printed
    summary = json.loads((out / "summary.json").read_text())
    assert f"{summary['test_accuracy']:.4f}" in printed
    ck = load_checkpoint(out)
    assert ck.config["noise"]["convention"] == "paper_code" and ck.config["noise"]["sigma1"] == 0.02
    assert ck.fit["lr_schedule"] == [30] and ck.task["name"] == "digits"
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


def _cli(*args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
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
    killed = _cli(*args, "--out", str(tmp_path / "killed"), "--crash-after-steps", "17")
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
