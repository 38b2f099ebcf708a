"""No file or folder the package writes is less readable than the umask allows (nor more
open): the CLI writers end to end, under a restrictive and a permissive umask."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from nrnn_theory.cli import main
from nrnn_theory.train import TorchRNNClassifier, save_data_file, save_model_file


def _modes(root) -> dict[str, int]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = stat.S_IMODE(os.lstat(path).st_mode)
    return out


@pytest.mark.parametrize("umask", [0o027, 0o002])
def test_every_written_file_follows_the_umask(tmp_path, umask):
    old_umask, old_threads = os.umask(umask), torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777 & ~umask)
    try:
        run = out / "run"
        train = ["train", "--task", "digits", "--model", "nrnn", "--hidden", "4"]
        assert main([*train, "--epochs", "1", "--out", str(run), "--quiet"]) == 0
        plot = out / "robustness.png"
        robust = ["robustness", str(run), "--examples", "8", "--draws", "1"]
        assert main([*robust, "--attack-steps", "1", "--plot", str(plot), "--quiet"]) == 0
        g = torch.Generator().manual_seed(0)
        xs, ys = torch.rand(4, 3, 2, generator=g), torch.tensor([0, 1, 0, 1])
        save_data_file(out / "own" / "data.npz", xs, ys)
        save_model_file(out / "own" / "model.json", TorchRNNClassifier(2, 3, 2))
    finally:
        os.umask(old_umask)
        torch.set_num_threads(old_threads)
    modes = _modes(out)
    assert any(p.endswith(".png") for p in modes) and any("safetensors" in p for p in modes)
    assert any(p.startswith("run") and p.endswith(".json") for p in modes)
    for path, mode in modes.items():
        full = out / path
        expected = (0o777 if full.is_dir() else 0o666) & ~umask
        assert mode == expected, f"{path}: mode {oct(mode)}, expected {oct(expected)}"
