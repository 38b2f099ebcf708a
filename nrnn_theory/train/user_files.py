r"""Your own data and your own model, as plain files that run no code when read.

Two formats let the command line (``nrnn analyse``, ``certify``, ``margins``,
``robustness``) and Python read what was built elsewhere:

**Data: one ``.npz`` file** (``numpy.savez``; read with ``allow_pickle=False``, so a file
holding Python objects is refused). Either layout:

=========================  ===============  ===============================================
array                      shape            meaning
=========================  ===============  ===============================================
``x``                      (N, T, D)        input sequences, batch first (float or integer)
``y``                      (N,)             integer class labels, ``0 <= y < C``
``split`` (optional)       (N,)             strings ``"train"``, ``"val"`` or ``"test"``
=========================  ===============  ===============================================

or ``x_train``/``y_train``, ``x_val``/``y_val``, ``x_test``/``y_test`` (any of the three
pairs). Optional in both: ``value_range`` (2,), the nominal ``(low, high)`` of the data
(default: the minimum and maximum of every ``x``), used by salt-and-pepper noise and to
clip attacks; ``class_names`` (C,) strings. A file with ``x`` and ``y`` only holds one
split, ``"test"`` (the split the commands evaluate by default). :func:`save_data_file`
writes such a file; :func:`load_data_file` reads and checks it (shapes, dtypes, finite
values, labels in range, known array names), with a one-line error naming the file,
the array and what was expected.

**Model: a torch RNN as two files.** A classifier made of a one-layer tanh
``torch.nn.RNN`` and an ``nn.Linear`` readout on the last hidden state (the model
family :func:`~nrnn_theory.train.params_from_torch_rnn` maps exactly to an NRNN) is
stored as ``NAME.safetensors`` (raw tensors: the state dict) and ``NAME.json``::

    {
      "format": "nrnn_theory.torch_rnn",
      "format_version": 1,
      "weights": "NAME.safetensors",
      "input_size": 1, "hidden_size": 32, "num_classes": 10,
      "rnn": "rnn", "readout": "fc"
    }

``rnn`` and ``readout`` are the prefixes of the two modules' keys in the tensor file
(``rnn.weight_ih_l0``, ``rnn.weight_hh_l0``, ``rnn.bias_ih_l0``, ``rnn.bias_hh_l0``,
``fc.weight``, ``fc.bias``; biases optional), as ``model.state_dict()`` names them for a
module with attributes ``rnn`` and ``fc``; ``weights`` is a file name in the same folder.
:func:`save_model_file` writes both from a module, :func:`load_model_file` rebuilds it
as a :class:`TorchRNNClassifier`. The JSON file is what the commands take in place of
a checkpoint.

Examples
--------
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> g = torch.Generator().manual_seed(0)
>>> xs, ys = torch.rand(6, 5, 2, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])
>>> data = load_data_file(save_data_file(folder / "data.npz", xs, ys))
>>> data.splits, data.input_size, data.num_classes
(('test',), 2, 3)
>>> model = TorchRNNClassifier(2, 4, 3)
>>> back = load_model_file(save_model_file(folder / "model.json", model))
>>> bool(torch.equal(back(xs), model(xs)))
True
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from nrnn_theory._io import atomic_write_bytes, atomic_write_many


__all__ = [
    "DATA_SPLITS",
    "MODEL_FORMAT",
    "DataFile",
    "TorchRNNClassifier",
    "load_data_file",
    "load_model_file",
    "save_data_file",
    "save_model_file",
]

#: The split names a data file may hold.
DATA_SPLITS: tuple[str, ...] = ("train", "val", "test")
#: The ``"format"`` of a model file's JSON.
MODEL_FORMAT = "nrnn_theory.torch_rnn"
MODEL_FORMAT_VERSION = 1
_OPTIONAL = ("value_range", "class_names")
_SPLIT_KEYS = tuple(f"{a}_{s}" for s in DATA_SPLITS for a in ("x", "y"))


# ---------------------------------------------------------------------------------- data
@dataclass(frozen=True, eq=False)
class DataFile:
    """The examples of a data file (:func:`load_data_file`), split by split.

    Attributes
    ----------
    path : Path
        The file read.
    data : dict of str to (Tensor, Tensor)
        ``split -> (x (N, T, D), y (N,) int64)`` for the splits the file holds.
    value_range : tuple of float
        ``(low, high)`` of the data values.
    class_names : tuple of str
        Name of each class (empty when the file names none).
    """

    path: Path
    data: dict[str, tuple[Tensor, Tensor]]
    value_range: tuple[float, float]
    class_names: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        """The file's name (used where a task name would be printed)."""
        return self.path.name

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits the file holds, in the order train, val, test."""
        return tuple(s for s in DATA_SPLITS if s in self.data)

    @property
    def input_size(self) -> int:
        """Values per step ``D``."""
        return next(iter(self.data.values()))[0].shape[2]

    @property
    def num_classes(self) -> int:
        """Number of classes: of ``class_names`` if given, else the largest label + 1."""
        if self.class_names:
            return len(self.class_names)
        return 1 + max(int(y.max()) for _, y in self.data.values() if y.numel())

    def _split(self, split: str) -> tuple[Tensor, Tensor]:
        if split not in self.data:
            raise ValueError(
                f"--split: {self.path} holds no {split!r} split; it holds "
                f"{', '.join(self.splits)} (a file with only x and y is the test split)"
            )
        return self.data[split]

    def inputs(self, split: str) -> Tensor:
        """The input sequences (N, T, D) of a split.

        Parameters
        ----------
        split : {"train", "val", "test"}
            A split the file holds.

        Returns
        -------
        Tensor, shape (N, T, D)
        """
        return self._split(split)[0]

    def labels(self, split: str) -> Tensor:
        """The labels (N,) of a split.

        Parameters
        ----------
        split : {"train", "val", "test"}
            A split the file holds.

        Returns
        -------
        Tensor, shape (N,), int64
        """
        return self._split(split)[1]


def _fail(path: Path, message: str) -> ValueError:
    return ValueError(f"{path}: {message}")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise _fail(path, "expected an .npz archive (numpy.savez), got a single .npy array")
        with loaded as f:
            arrays = {}
            for key in f.files:
                try:
                    arrays[key] = f[key]
                except ValueError as exc:
                    if "allow_pickle" in str(exc):
                        raise _fail(
                            path,
                            f"array {key!r} holds Python objects (a pickle); refusing to load "
                            "it: store numbers and strings only",
                        ) from None
                    raise _fail(path, f"array {key!r} is unreadable ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _fail(path, f"expected an .npz archive (numpy.savez), unreadable ({exc})") from None
    except ValueError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise _fail(path, f"expected an .npz archive (numpy.savez), got {exc}") from None
    return arrays


def _inputs(path: Path, key: str, a: np.ndarray) -> Tensor:
    if a.dtype.kind not in "fiu" or a.dtype.kind == "b":
        raise _fail(
            path, f"array {key!r}: expected numbers (float or integer), got dtype {a.dtype}"
        )
    if a.ndim != 3:
        raise _fail(
            path, f"array {key!r}: expected 3 dimensions (N, T, D), got shape {tuple(a.shape)}"
        )
    if 0 in a.shape:
        raise _fail(path, f"array {key!r}: expected a non-empty (N, T, D), got {tuple(a.shape)}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        n_bad = int((~np.isfinite(a)).sum())
        raise _fail(path, f"array {key!r}: expected finite values, got {n_bad} NaN or infinite")
    dtype = torch.float64 if a.dtype == np.float64 else torch.float32
    return torch.as_tensor(np.ascontiguousarray(a)).to(dtype)


def _labels(path: Path, key: str, a: np.ndarray, n: int, num_classes: int | None) -> Tensor:
    if a.dtype.kind not in "iu":
        raise _fail(path, f"array {key!r}: expected integer class labels, got dtype {a.dtype}")
    if a.shape != (n,):
        raise _fail(path, f"array {key!r}: expected shape ({n},) to match x, got {tuple(a.shape)}")
    y = torch.as_tensor(a.astype(np.int64))
    high = num_classes
    if int(y.min()) < 0 or (high is not None and int(y.max()) >= high):
        bad = int(torch.nonzero((y < 0) | (y >= (high or 1 << 62)))[0, 0])
        limit = f"[0, {high})" if high is not None else ">= 0"
        raise _fail(
            path, f"array {key!r}: expected labels in {limit}, got {int(y[bad])} at index {bad}"
        )
    return y


def load_data_file(path: str | os.PathLike, *, num_classes: int | None = None) -> DataFile:
    """Read and check a data file in the ``.npz`` format of this module.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file.
    num_classes : int, optional
        The classes of the model it is for: labels must lie in ``[0, num_classes)``
        (default: any label >= 0, or fewer than ``len(class_names)``).

    Returns
    -------
    DataFile
        Inputs as float32 (float64 when stored so), labels as int64.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        With one line naming the file, the array and what was expected: not an ``.npz``
        archive, an array of Python objects, unknown or missing arrays, both layouts
        at once, wrong dimensions or dtypes, NaN or infinite inputs, labels out of
        range, splits of different shapes.
    """
    path = Path(path)
    arrays = _read_npz(path)
    known = {"x", "y", "split", *_SPLIT_KEYS, *_OPTIONAL}
    unknown = sorted(set(arrays) - known)
    if unknown:
        raise _fail(
            path,
            f"unknown array(s) {unknown}; expected x and y (optionally split), or "
            f"x_train/y_train, x_val/y_val, x_test/y_test, and optionally value_range, "
            f"class_names",
        )
    class_names: tuple[str, ...] = ()
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.dtype.kind != "U" or names.ndim != 1:
            raise _fail(path, f"array 'class_names': expected (C,) strings, got {names.dtype}")
        class_names = tuple(str(s) for s in names)
        if num_classes is None:
            num_classes = len(class_names)
    flat = "x" in arrays or "y" in arrays or "split" in arrays
    per_split = [s for s in DATA_SPLITS if f"x_{s}" in arrays or f"y_{s}" in arrays]
    if flat and per_split:
        raise _fail(path, "expected either x, y (and split) or x_<split>, y_<split>, got both")
    data: dict[str, tuple[Tensor, Tensor]] = {}
    if flat:
        for key in ("x", "y"):
            if key not in arrays:
                raise _fail(path, f"missing array {key!r} (expected x (N, T, D) and y (N,))")
        x = _inputs(path, "x", arrays["x"])
        y = _labels(path, "y", arrays["y"], x.shape[0], num_classes)
        if "split" in arrays:
            split = arrays["split"]
            if split.dtype.kind != "U" or split.shape != (x.shape[0],):
                raise _fail(
                    path,
                    f"array 'split': expected ({x.shape[0]},) strings train/val/test, got "
                    f"dtype {split.dtype} and shape {tuple(split.shape)}",
                )
            bad = sorted(set(split.tolist()) - set(DATA_SPLITS))
            if bad:
                raise _fail(path, f"array 'split': expected train, val or test, got {bad}")
            for s in DATA_SPLITS:
                idx = torch.as_tensor(np.nonzero(split == s)[0])
                if len(idx):
                    data[s] = (x[idx], y[idx])
        else:
            data["test"] = (x, y)
    elif per_split:
        shape = None
        for s in per_split:
            for key in (f"x_{s}", f"y_{s}"):
                if key not in arrays:
                    raise _fail(path, f"missing array {key!r} (x_{s} and y_{s} go together)")
            x = _inputs(path, f"x_{s}", arrays[f"x_{s}"])
            if shape is not None and x.shape[1:] != shape[1:]:
                raise _fail(
                    path,
                    f"array 'x_{s}': expected (N, {shape[1]}, {shape[2]}) like the other "
                    f"splits, got {tuple(x.shape)}",
                )
            shape = x.shape
            data[s] = (x, _labels(path, f"y_{s}", arrays[f"y_{s}"], x.shape[0], num_classes))
        dtypes = {x.dtype for x, _ in data.values()}
        if len(dtypes) > 1:
            data = {s: (x.to(torch.float64), y) for s, (x, y) in data.items()}
    else:
        raise _fail(path, "missing arrays: expected x and y, or x_<split> and y_<split>")
    if "value_range" in arrays:
        vr = arrays["value_range"]
        if vr.shape != (2,) or vr.dtype.kind not in "fiu":
            raise _fail(path, f"array 'value_range': expected (low, high), got {vr!r}")
        lo, hi = float(vr[0]), float(vr[1])
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise _fail(path, f"array 'value_range': expected finite low <= high, got {lo}, {hi}")
    else:
        lo = min(float(x.min()) for x, _ in data.values())
        hi = max(float(x.max()) for x, _ in data.values())
    return DataFile(path=path, data=data, value_range=(lo, hi), class_names=class_names)


def save_data_file(
    path: str | os.PathLike,
    xs: Tensor | np.ndarray,
    ys: Tensor | np.ndarray,
    *,
    split: np.ndarray | list[str] | None = None,
    value_range: tuple[float, float] | None = None,
) -> Path:
    """Write inputs and labels as a data file that :func:`load_data_file` reads.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file to write (atomically; an existing file is replaced).
    xs : Tensor or ndarray, shape (N, T, D)
        Input sequences.
    ys : Tensor or ndarray, shape (N,)
        Integer labels.
    split : sequence of str, shape (N,), optional
        ``"train"``, ``"val"`` or ``"test"`` per example (default: all are ``"test"``).
    value_range : (float, float), optional
        The nominal range of the data values.

    Returns
    -------
    Path
        ``path``.
    """
    arrays = {"x": np.asarray(torch.as_tensor(xs).detach().cpu())}
    arrays["y"] = np.asarray(torch.as_tensor(ys).detach().cpu()).astype(np.int64)
    if split is not None:
        arrays["split"] = np.asarray(split, dtype=str)
    if value_range is not None:
        arrays["value_range"] = np.asarray(value_range, dtype=np.float64)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path = atomic_write_bytes(path, buf.getvalue())
    load_data_file(path)  # what was written must read back
    return path


# --------------------------------------------------------------------------------- model
class TorchRNNClassifier(nn.Module):
    """A one-layer tanh ``torch.nn.RNN`` (batch first) with an ``nn.Linear`` readout on the
    last hidden state: the model of a model file.

    Its :func:`~nrnn_theory.train.params_from_module` is exact (see
    :func:`~nrnn_theory.train.params_from_torch_rnn`).

    Parameters
    ----------
    input_size, hidden_size, num_classes : int
        ``D``, ``H`` and ``C``.
    bias : bool
        Whether the RNN has biases.
    readout_bias : bool
        Whether the readout has a bias.
    dtype : torch.dtype, optional
        Parameter dtype (default torch's default).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_classes: int,
        *,
        bias: bool = True,
        readout_bias: bool = True,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, bias=bias, batch_first=True, dtype=dtype)
        self.fc = nn.Linear(hidden_size, num_classes, bias=readout_bias, dtype=dtype)

    def forward(self, xs: Tensor) -> Tensor:
        """Logits (B, C) of inputs ``xs`` (B, T, D).

        Parameters
        ----------
        xs : Tensor, shape (B, T, D)
            Input sequences, batch first.

        Returns
        -------
        Tensor, shape (B, C)
        """
        return self.fc(self.rnn(xs)[0][:, -1])


def _rnn_and_readout(model: object) -> tuple[nn.RNN, nn.Linear]:
    from nrnn_theory.train.adapters import params_from_torch_rnn

    if isinstance(model, tuple) and len(model) == 2:
        rnn, fc = model
    elif isinstance(model, nn.Module):
        children = [m for m in model.children() if any(True for _ in m.parameters())]
        rnns = [m for m in children if isinstance(m, nn.RNNBase)]
        fcs = [m for m in children if isinstance(m, nn.Linear)]
        if len(children) != 2 or len(rnns) != 1 or len(fcs) != 1:
            raise TypeError(
                f"model: expected a module whose only children with parameters are one "
                f"torch.nn.RNN and one nn.Linear (or a tuple (rnn, linear)), got "
                f"{type(model).__name__}"
            )
        rnn, fc = rnns[0], fcs[0]
    else:
        raise TypeError(
            f"model: expected an nn.Module or (rnn, linear), got {type(model).__name__}"
        )
    params_from_torch_rnn(rnn, fc)  # the same checks: one layer, tanh, sizes, dtypes
    return rnn, fc


def save_model_file(path: str | os.PathLike, model: nn.Module | tuple[nn.RNN, nn.Linear]) -> Path:
    """Write a torch RNN classifier as ``NAME.json`` plus ``NAME.safetensors``.

    Parameters
    ----------
    path : str or os.PathLike
        The JSON file to write (``.json``); the tensors go beside it, same stem. Both are
        written together, atomically.
    model : nn.Module or (torch.nn.RNN, nn.Linear)
        A module whose only children with parameters are a one-layer tanh ``nn.RNN``
        and an ``nn.Linear`` readout (applied to the last hidden state), or the pair.

    Returns
    -------
    Path
        The JSON file.

    Raises
    ------
    TypeError, ValueError
        For a model outside this family (as :func:`~nrnn_theory.train.params_from_torch_rnn`
        says), or a ``path`` not ending in ``.json``.
    """
    from safetensors.torch import save as safetensors_bytes

    path = Path(path)
    if path.suffix != ".json":
        raise ValueError(f"path: expected a .json file name, got {path}")
    rnn, fc = _rnn_and_readout(model)
    tensors = {f"rnn.{k}": v for k, v in rnn.state_dict().items()}
    tensors.update({f"fc.{k}": v for k, v in fc.state_dict().items()})
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    weights = path.with_suffix(".safetensors")
    meta = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "weights": weights.name,
        "input_size": rnn.input_size,
        "hidden_size": rnn.hidden_size,
        "num_classes": fc.out_features,
        "rnn": "rnn",
        "readout": "fc",
    }
    text = json.dumps(meta, indent=1) + "\n"
    atomic_write_many({weights: safetensors_bytes(tensors), path: text.encode()})
    return path


def _model_meta(path: Path) -> dict[str, object]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"expected the JSON of a model file, unreadable ({exc})") from None
    if not isinstance(meta, Mapping) or meta.get("format") != MODEL_FORMAT:
        got = meta.get("format") if isinstance(meta, Mapping) else type(meta).__name__
        raise _fail(path, f"expected a model file with format {MODEL_FORMAT!r}, got {got!r}")
    if meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise _fail(
            path,
            f"expected format_version {MODEL_FORMAT_VERSION}, got {meta.get('format_version')!r}",
        )
    required = ("weights", "input_size", "hidden_size", "num_classes")
    missing = [k for k in required if k not in meta]
    if missing:
        raise _fail(path, f"missing key(s) {missing}")
    for key in ("input_size", "hidden_size", "num_classes"):
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _fail(path, f"{key}: expected an integer >= 1, got {value!r}")
    if meta["num_classes"] < 2:
        raise _fail(path, f"num_classes: expected at least 2, got {meta['num_classes']}")
    weights = meta["weights"]
    if not isinstance(weights, str) or Path(weights).name != weights or weights in ("", ".", ".."):
        raise _fail(path, f"weights: expected a file name in the same folder, got {weights!r}")
    for key in ("rnn", "readout"):
        if not isinstance(meta.get(key, ""), str):
            raise _fail(path, f"{key}: expected the prefix of its keys (a string)")
    return dict(meta)


def load_model_file(path: str | os.PathLike) -> TorchRNNClassifier:
    """Rebuild the model of a model file (``NAME.json`` beside its tensor file).

    Parameters
    ----------
    path : str or os.PathLike
        The JSON file, or its ``.safetensors`` file (the JSON is then the file with the
        same stem).

    Returns
    -------
    TorchRNNClassifier
        In eval mode, with the dtype of the stored tensors.

    Raises
    ------
    FileNotFoundError
        If either file is missing.
    ValueError
        With one line naming the file: not a model file, a missing or unexpected
        tensor, a shape that does not match the sizes the JSON names, non-finite
        weights.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix == ".safetensors":
        path = path.with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    meta = _model_meta(path)
    weights = path.parent / str(meta["weights"])
    if not weights.is_file():
        raise FileNotFoundError(f"{path}: its tensor file {weights} does not exist")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise _fail(weights, f"unreadable tensor file ({exc})") from None
    D, H, C = (int(meta[k]) for k in ("input_size", "hidden_size", "num_classes"))
    pr, pf = str(meta.get("rnn", "rnn")), str(meta.get("readout", "fc"))
    pr, pf = (p if not p or p.endswith(".") else p + "." for p in (pr, pf))
    rnn_keys = {
        "weight_ih_l0": (H, D),
        "weight_hh_l0": (H, H),
        "bias_ih_l0": (H,),
        "bias_hh_l0": (H,),
    }
    fc_keys = {"weight": (C, H), "bias": (C,)}
    expected = {pr + k: s for k, s in rnn_keys.items()} | {pf + k: s for k, s in fc_keys.items()}
    unexpected = sorted(set(tensors) - set(expected))
    missing = [
        k for k in (pr + "weight_ih_l0", pr + "weight_hh_l0", pf + "weight") if k not in tensors
    ]
    if unexpected or missing:
        raise _fail(
            weights,
            f"expected the tensors of a one-layer nn.RNN ({pr}*) and an nn.Linear ({pf}*); "
            f"missing {missing}, unexpected {unexpected}",
        )
    has_bias = [pr + "bias_ih_l0" in tensors, pr + "bias_hh_l0" in tensors]
    if has_bias[0] != has_bias[1]:
        raise _fail(weights, f"expected both {pr}bias_ih_l0 and {pr}bias_hh_l0, or neither")
    dtype = tensors[pr + "weight_hh_l0"].dtype
    for key, t in tensors.items():
        if tuple(t.shape) != expected[key]:
            raise _fail(
                weights,
                f"tensor {key!r}: expected shape {expected[key]} (input_size {D}, hidden_size "
                f"{H}, num_classes {C}), got {tuple(t.shape)}",
            )
        if not t.is_floating_point() or t.dtype != dtype:
            raise _fail(weights, f"tensor {key!r}: expected dtype {dtype}, got {t.dtype}")
        if not bool(torch.isfinite(t).all()):
            raise _fail(weights, f"tensor {key!r}: expected finite values, got NaN or infinite")
    model = TorchRNNClassifier(
        D, H, C, bias=has_bias[0], readout_bias=pf + "bias" in tensors, dtype=dtype
    )
    state = {f"rnn.{k}": tensors[pr + k] for k in rnn_keys if pr + k in tensors}
    state |= {f"fc.{k}": tensors[pf + k] for k in fc_keys if pf + k in tensors}
    model.load_state_dict(state)
    return model.eval()
