"""Issue 19: crafted checkpoints are refused with ``CheckpointError`` before any model is
built or any file outside the checkpoint is read; a pickle payload is never executed.

Each case takes a genuine checkpoint, edits its JSON (and re-computes the digest, as an
attacker would: the digest detects accidents, it is not a signature) or its tensor file,
and asserts the error names the file and the offending key.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tracemalloc
from pathlib import Path

import pytest
import torch

from nrnn_theory.cli import main as cli_main
from nrnn_theory.train import CheckpointError, LipschitzRNN, load_checkpoint, save_checkpoint


def _digest(meta: dict) -> str:  # how the format defines it (checkpoint.py's docstring)
    body = {k: v for k, v in meta.items() if k != "digest"}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    ).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def ckpt(tmp_path):
    model = LipschitzRNN(1, 4, 3, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.zeros(2, 3, 1)).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(1)
    return save_checkpoint(
        tmp_path / "ck", model, epoch=1, step=1, optimizer=opt, generators={"noise": gen}
    )


def _edit(path: Path, change) -> None:
    meta = json.loads((path / "checkpoint.json").read_text())
    change(meta)
    meta["digest"] = _digest(meta)
    (path / "checkpoint.json").write_text(json.dumps(meta))


def test_the_test_digest_matches_the_format(ckpt):
    _edit(ckpt, lambda m: None)
    assert load_checkpoint(ckpt).epoch == 1


def _set(*keys, value):
    def change(meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return change


def _drop(*keys):
    def change(meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]

    return change


CASES = [
    ("absolute path", _set("tensors", "file", value="/etc/passwd"), "tensors.file"),
    ("dot-dot", _set("tensors", "file", value="../ck2/tensors.safetensors"), "tensors.file"),
    ("dot-dot inner", _set("tensors", "file", value="a/../../x.safetensors"), "tensors.file"),
    ("empty name", _set("tensors", "file", value=""), "tensors.file"),
    ("file not a str", _set("tensors", "file", value=3), "tensors.file"),
    ("keys not a list", _set("tensors", "keys", value="model.B"), "tensors.keys"),
    ("sha not a str", _set("tensors", "sha256", value=None), "tensors.sha256"),
    ("tensors missing", _drop("tensors"), "'tensors'"),
    ("tensors.file missing", _drop("tensors", "file"), "tensors.file"),
    ("model missing", _drop("model"), "'model'"),
    ("model not a dict", _set("model", value=[1, 2]), "'model'"),
    ("epoch missing", _drop("epoch"), "'epoch'"),
    ("epoch a string", _set("epoch", value="3"), "'epoch'"),
    ("epoch a bool", _set("epoch", value=True), "'epoch'"),
    ("step a float", _set("step", value=1.5), "'step'"),
    ("history a dict", _set("history", value={}), "'history'"),
    ("generators not listed", _set("generators", value=["noise", "other"]), "generators"),
    ("generators not str", _set("generators", value=[1]), "generators"),
    ("optimizer a list", _set("optimizer", value=[]), "'optimizer'"),
    ("optimizer malformed", _drop("optimizer", "param_groups"), "'optimizer'"),
    ("oversize", _set("model", "hidden_size", value=1_000_000), "hidden_size|shape"),
    ("model type", _set("model", "model", value="transformer"), "configuration"),
]


@pytest.mark.parametrize("change, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_crafted_json_is_refused_naming_the_key(ckpt, change, pattern):
    _edit(ckpt, change)
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_checkpoint(ckpt)
    assert "ck" in str(info.value)  # the file or folder is named


def test_oversize_configuration_is_refused_without_allocating(ckpt):
    """hidden_size = 10^6 would be an 8 TB model: refused from the header shapes, with
    the peak of allocated Python memory far below one such matrix."""
    _edit(ckpt, _set("model", "hidden_size", value=1_000_000))
    tracemalloc.start()
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(ckpt)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**30


def test_a_symlink_leading_outside_is_refused(ckpt, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copy(ckpt / "tensors.safetensors", outside)
    (ckpt / "link.safetensors").symlink_to(outside)
    _edit(ckpt, _set("tensors", "file", value="link.safetensors"))
    with pytest.raises(CheckpointError, match="outside the checkpoint folder"):
        load_checkpoint(ckpt)


def test_a_file_outside_with_the_right_hash_is_still_refused(ckpt, tmp_path):
    """Even a genuine tensor file, with its hash recorded, is refused outside the folder."""
    other = tmp_path / "other"
    other.mkdir()
    shutil.move(ckpt / "tensors.safetensors", other / "tensors.safetensors")
    _edit(ckpt, _set("tensors", "file", value="../other/tensors.safetensors"))
    with pytest.raises(CheckpointError, match="tensors.file"):
        load_checkpoint(ckpt)
    _edit(ckpt, _set("tensors", "file", value=str(other / "tensors.safetensors")))
    with pytest.raises(CheckpointError, match="tensors.file"):
        load_checkpoint(ckpt)


class _Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_where_safetensors_should_be_is_refused_and_never_run(ckpt, tmp_path):
    marker = tmp_path / "PWNED"
    blob = pickle.dumps({"model.B": _Payload(str(marker))})
    pickle.loads(blob)  # the payload is live: unpickling it does create the marker
    assert marker.exists()
    marker.unlink()
    tensor_file = ckpt / "tensors.safetensors"
    tensor_file.write_bytes(blob)
    _edit(ckpt, _set("tensors", "sha256", value=_sha256(tensor_file)))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(ckpt)
    torch_file = tmp_path / "model.pt"  # the torch.save form of the same attack
    torch.save({"model.B": _Payload(str(marker))}, torch_file)
    marker.unlink(missing_ok=True)
    shutil.copy(torch_file, tensor_file)
    _edit(ckpt, _set("tensors", "sha256", value=_sha256(tensor_file)))
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(ckpt)
    assert cli_main(["margins", str(ckpt), "--examples", "2"]) == 2
    assert not marker.exists()


def test_truncated_and_lying_headers_are_refused(ckpt):
    tensor_file = ckpt / "tensors.safetensors"
    data = tensor_file.read_bytes()
    for payload in (b"", b"\x01", data[:8], (10**12).to_bytes(8, "little") + data[8:]):
        tensor_file.write_bytes(payload)
        _edit(ckpt, _set("tensors", "sha256", value=_sha256(tensor_file)))
        with pytest.raises(CheckpointError, match="safetensors"):
            load_checkpoint(ckpt)


def test_cli_reports_a_crafted_checkpoint_in_one_line(ckpt, capsys):
    _edit(ckpt, _set("tensors", "file", value="/etc/passwd"))
    assert cli_main(["margins", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tensors.file" in err and "Traceback" not in err
    assert os.path.exists(ckpt / "checkpoint.json")
