"""Tests of the ``nrnn`` command line: help, subcommand registry, the demo."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nrnn_theory.cli import COMMANDS, main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_module_entry_point_runs():
    """``python -m nrnn_theory.cli`` is the form torchrun needs."""
    res = subprocess.run(
        [sys.executable, "-m", "nrnn_theory.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert res.stdout.startswith("nrnn_theory ")


def test_demo_json(capsys):
    assert main(["demo", "--json", "--examples", "32", "--hidden", "8"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["hidden_size"] == 8
    assert len(data["noisy"]) == 4
    for row in data["noisy"]:
        assert row["rms_state_change"] > 0


def test_bad_argument_is_a_clean_error(capsys):
    assert main(["demo", "--dt", "-1"]) == 2
    assert "dt: expected a number > 0" in capsys.readouterr().err


def test_every_subcommand_takes_threads(monkeypatch):
    import torch

    from nrnn_theory.cli import COMMANDS, build_parser

    parser = build_parser()
    for name in COMMANDS:
        extra = {"margins": ["ck"], "robustness": ["ck"], "analyse": ["ck"], "certify": ["ck"]}
        args = parser.parse_args([name, *extra.get(name, []), "--threads", "2"])
        # reproduce: the torch threads of each of its tasks (alias of --threads-per-worker)
        dest = "threads_per_worker" if name == "reproduce" else "threads"
        assert getattr(args, dest) == 2, name
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    assert main(["demo", "--threads", "-1"]) == 2
    assert calls == []
