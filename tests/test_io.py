"""Atomic writes honour the umask, replace all-or-nothing and never clobber a folder."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from nrnn_theory._io import atomic_directory, atomic_write_bytes, atomic_write_many
from nrnn_theory.experiments import ResultStore
from nrnn_theory.train import LipschitzRNN, save_checkpoint


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_and_folders_get_the_umask_modes(tmp_path, umask_027):
    assert _mode(atomic_write_bytes(tmp_path / "a.txt", b"x")) == 0o640
    with atomic_directory(tmp_path / "d") as tmp:
        (tmp / "f").write_bytes(b"y")
    assert _mode(tmp_path / "d") == 0o750
    # the writers that use them: a checkpoint folder and a result-store entry
    ckpt = save_checkpoint(tmp_path / "ckpt", LipschitzRNN(1, 2, 2), epoch=1)
    assert _mode(ckpt) == 0o750
    assert {_mode(p) for p in ckpt.iterdir()} == {0o640}
    ResultStore(tmp_path / "store").save("e", {"v": 1}, arrays={"a": torch.zeros(2).numpy()})
    assert {_mode(p) for p in (tmp_path / "store").iterdir()} == {0o640}


def test_many_files_are_replaced_together_or_not_at_all(tmp_path, monkeypatch):
    (tmp_path / "a").write_bytes(b"old a")
    (tmp_path / "b").write_bytes(b"old b")
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 1:
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_many({tmp_path / "a": b"new a", tmp_path / "b": b"new b"})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary left
    assert (tmp_path / "a").read_bytes() == b"old a" and (tmp_path / "b").read_bytes() == b"old b"
    atomic_write_many({tmp_path / "a": b"new a", tmp_path / "b": b"new b"})
    assert (tmp_path / "b").read_bytes() == b"new b"


def test_atomic_directory_never_replaces_and_cleans_up(tmp_path):
    (tmp_path / "d").mkdir()
    with (
        pytest.raises(FileExistsError, match="never overwritten"),
        atomic_directory(tmp_path / "d"),
    ):
        pass
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "e") as tmp:
        (tmp / "half").write_bytes(b"...")
        raise RuntimeError("crash")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
