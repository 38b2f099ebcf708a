"""Checkpoints that cannot execute code on load, written atomically, checked on read.

A checkpoint is a directory with two files:

``tensors.safetensors``
    Every tensor: the model's ``state_dict`` (``model.<name>``), the optimizer's
    tensor state (``optim.<param>.<key>``) and the random generators' states
    (``rng.<name>``). safetensors stores raw arrays only, so loading runs no code.
``checkpoint.json``
    Everything else: the model configuration (:func:`~nrnn_theory.train.model_config`),
    its noise, the task (the :func:`~nrnn_theory.train.load_task` arguments and a
    fingerprint of the data), the training settings, seed, epoch, step, history so far,
    the optimizer's non-tensor state, the package and torch versions,
    the SHA-256 of the tensor file and a ``digest`` over all of it.

The digest ties the two files together: editing either file, or swapping the tensor
file for another one, makes :func:`load_checkpoint` fail with a clear error instead of
silently building a different model. (It detects accidents and casual edits; it is
not a signature.)

Writes go to a temporary directory next to the target, which is renamed into place
only when complete (``nrnn_theory._io.atomic_directory``, folder mode
``0o777 & ~umask``), so a crash never leaves a half-written checkpoint; an existing
checkpoint is never overwritten.

A training run (``fit(..., out_dir=RUN)``) keeps its checkpoints in
``RUN/checkpoints/epoch-NNNN``; :func:`load_checkpoint` accepts either such a
directory or the run directory (then it loads the latest one). With a validation
split, the run also keeps a copy of its best-validation epoch in ``RUN/checkpoints/best``
(:func:`best_checkpoint`; the one checkpoint that is replaced, by
:func:`update_best_checkpoint`, when a later epoch is better).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nrnn_theory._io import atomic_directory, current_umask
from nrnn_theory._version import __version__
from nrnn_theory.train.models import build_model, model_config, unwrap_model


__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "BEST_NAME",
    "CheckpointError",
    "best_checkpoint",
    "checkpoint_dirs",
    "latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "update_best_checkpoint",
]

CHECKPOINT_FORMAT = "nrnn_theory.checkpoint"
FORMAT_VERSION = 1
JSON_NAME = "checkpoint.json"
TENSORS_NAME = "tensors.safetensors"
_EPOCH_DIR = re.compile(r"^epoch-(\d+)$")
#: Name of the best-validation checkpoint beside the ``epoch-NNNN`` ones.
BEST_NAME = "best"
_BEST_OLD = ".best-old-"


class CheckpointError(ValueError):
    """A path is not a checkpoint, or its files are inconsistent or were modified."""


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A loaded checkpoint.

    Attributes
    ----------
    path : Path
        The checkpoint directory.
    model : nn.Module
        The rebuilt model with the stored weights, in eval mode, on ``map_location``.
    config : dict
        Its :func:`~nrnn_theory.train.model_config` (including ``"noise"``).
    task : dict or None
        The :func:`~nrnn_theory.train.load_task` arguments of its data.
    data_fingerprint : str or None
        :meth:`~nrnn_theory.train.TaskData.fingerprint` of the data it was trained on.
    fit : dict or None
        Training settings of :func:`~nrnn_theory.train.fit`.
    seed : int or None
    epoch : int
        Completed epochs.
    step : int
        Completed optimizer steps.
    history : tuple of dict
        Per-epoch records so far.
    version : str
        Package version that wrote it.
    optimizer_state : dict or None
        ``state_dict`` of the optimizer (tensors on ``map_location``).
    generator_states : dict of str to Tensor
        ``get_state()`` of each random generator (uint8 CPU tensors).
    extra : dict
        Any further JSON data stored by the writer.
    """

    path: Path
    model: nn.Module
    config: dict[str, object]
    task: dict[str, object] | None
    data_fingerprint: str | None
    fit: dict[str, object] | None
    seed: int | None
    epoch: int
    step: int
    history: tuple[dict[str, float | None], ...]
    version: str
    optimizer_state: dict[str, object] | None = None
    generator_states: dict[str, Tensor] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def noise(self):
        """The model's training noise (a :class:`~nrnn_theory.NoiseSpec`) or ``None``."""
        return getattr(self.model, "noise", None)

    @property
    def explicit_regularizer(self):
        """The explicit-regularizer penalty the model was trained with, or ``None``.

        An :class:`~nrnn_theory.train.ExplicitRegularizerPenalty` (``noise``, ``weight``
        = lambda, ``max_examples`` = K) rebuilt from ``fit["penalty"]``; ``None`` when
        the run used no penalty or a Python callable that cannot be rebuilt. Such a
        model trained noise-free: :attr:`noise` is ``None``.
        """
        from nrnn_theory.train.penalties import PENALTY_NAME, penalty_from_config

        record = (self.fit or {}).get("penalty")
        if isinstance(record, dict) and record.get("name") == PENALTY_NAME:
            return penalty_from_config(record)
        return None


# ------------------------------------------------------------------------------ helpers
def _canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's JSON: {value!r}")


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Optimizer state_dict -> (JSON part, tensors keyed optim.<param>.<key>)."""
    tensors: dict[str, Tensor] = {}
    other: dict[str, dict[str, Any]] = {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                other.setdefault(str(pid), {})[key] = _jsonable(value)
    return {"param_groups": _jsonable(state["param_groups"]), "state_other": other}, tensors


def _join_optimizer(meta: dict[str, Any], tensors: dict[str, Tensor]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for pid, entries in meta.get("state_other", {}).items():
        state.setdefault(int(pid), {}).update(entries)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


# ---------------------------------------------------------------------------------- save
def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    epoch: int,
    step: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    generators: dict[str, torch.Generator] | None = None,
    task: dict[str, Any] | None = None,
    data_fingerprint: str | None = None,
    fit: dict[str, Any] | None = None,
    seed: int | None = None,
    history: list[dict[str, Any]] | tuple[dict[str, Any], ...] = (),
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically.

    Parameters
    ----------
    path : str or Path
        The checkpoint directory to create. It must not exist: checkpoints are never
        overwritten.
    model : nn.Module
        A model of :data:`~nrnn_theory.train.MODELS` (possibly DDP-wrapped).
    epoch, step : int
        Completed epochs and optimizer steps.
    optimizer : torch.optim.Optimizer, optional
        Saved with its ``state_dict``.
    generators : dict of str to torch.Generator, optional
        Random generators whose states a resumed run must restore.
    task, data_fingerprint, fit, seed, history, extra : optional
        JSON-able metadata (see :class:`Checkpoint`).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    FileExistsError
        If ``path`` exists.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"path: {path} exists; checkpoints are never overwritten")
    inner = unwrap_model(model)
    config = model_config(inner)
    tensors: dict[str, Tensor] = {f"model.{k}": v for k, v in inner.state_dict().items()}
    meta: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "nrnn_theory_version": __version__,
        "torch_version": torch.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": _jsonable(config),
        "task": _jsonable(task),
        "data_fingerprint": data_fingerprint,
        "fit": _jsonable(fit),
        "seed": seed,
        "epoch": int(epoch),
        "step": int(step),
        "history": _jsonable(list(history)),
        "optimizer": None,
        "generators": sorted(generators or {}),
        "extra": _jsonable(extra or {}),
    }
    if optimizer is not None:
        meta["optimizer"], opt_tensors = _split_optimizer(optimizer.state_dict())
        meta["optimizer"]["class"] = type(optimizer).__name__
        tensors.update(opt_tensors)
    for name, gen in (generators or {}).items():
        tensors[f"rng.{name}"] = gen.get_state()
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}

    with atomic_directory(path) as tmp:
        tensor_file = tmp / TENSORS_NAME
        save_file(tensors, str(tensor_file))
        os.chmod(tensor_file, 0o666 & ~current_umask())  # safetensors creates it 0o600
        meta["tensors"] = {
            "file": TENSORS_NAME,
            "sha256": _sha256_file(tensor_file),
            "keys": sorted(tensors),
        }
        meta["digest"] = hashlib.sha256(_canonical(meta)).hexdigest()
        with open(tmp / JSON_NAME, "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        with open(tensor_file, "rb+") as f:
            os.fsync(f.fileno())
    return path


# ---------------------------------------------------------------------------------- load
def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """The ``checkpoints/epoch-NNNN`` directories of a run, oldest first.

    Parameters
    ----------
    run_dir : str or Path
        A run folder written by :func:`~nrnn_theory.train.fit` or ``nrnn train``.

    Returns
    -------
    list of Path
    """
    base = Path(run_dir) / "checkpoints"
    if not base.is_dir():
        return []
    found = []
    for p in base.iterdir():
        m = _EPOCH_DIR.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint directory of a run, or ``None`` if it has none.

    Parameters
    ----------
    run_dir : str or Path
        A run folder written by :func:`~nrnn_theory.train.fit` or ``nrnn train``.

    Returns
    -------
    Path or None
    """
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def best_checkpoint(run_dir: str | Path) -> Path | None:
    """The best-validation checkpoint of a run (``checkpoints/best``), or ``None``.

    A run interrupted while replacing it keeps the previous best under a temporary
    name; that one is returned then.

    Parameters
    ----------
    run_dir : str or Path
        A run folder written by :func:`~nrnn_theory.train.fit` or ``nrnn train``.

    Returns
    -------
    Path or None
    """
    base = Path(run_dir) / "checkpoints"
    best = base / BEST_NAME
    if (best / JSON_NAME).is_file():
        return best
    if base.is_dir():
        old = sorted(p for p in base.iterdir() if p.name.startswith(_BEST_OLD))
        for p in old:
            if (p / JSON_NAME).is_file():
                return p
    return None


def update_best_checkpoint(run_dir: str | Path, source: str | Path) -> Path:
    """Make the checkpoint ``source`` the run's best one (``checkpoints/best``).

    The files are copied to a temporary folder, which then replaces the previous best
    by two renames; the previous best is deleted last, so at any moment one complete
    best checkpoint exists (:func:`best_checkpoint` finds it).

    Parameters
    ----------
    run_dir : str or Path
        The run folder.
    source : str or Path
        A checkpoint directory (normally ``checkpoints/epoch-NNNN`` of the same run).

    Returns
    -------
    Path
        ``run_dir/checkpoints/best``.
    """
    source = Path(source)
    if not (source / JSON_NAME).is_file():
        raise CheckpointError(f"source: {source} is not a checkpoint directory")
    base = Path(run_dir) / "checkpoints"
    target = base / BEST_NAME
    new = base / f".best-new-{os.getpid()}"
    shutil.rmtree(new, ignore_errors=True)  # left by an interrupted earlier call
    with atomic_directory(new) as tmp:
        for f in sorted(source.iterdir()):
            shutil.copyfile(f, tmp / f.name)
            os.chmod(tmp / f.name, 0o666 & ~current_umask())
            with open(tmp / f.name, "rb+") as fh:
                os.fsync(fh.fileno())
    old = None
    if target.exists():
        old = base / f"{_BEST_OLD}{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
    os.rename(new, target)
    for p in base.iterdir():
        if p.name.startswith(_BEST_OLD):
            shutil.rmtree(p, ignore_errors=True)
    return target


def _resolve(path: Path) -> Path:
    if (path / JSON_NAME).is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is not None:
        return latest
    if not path.exists():
        raise CheckpointError(f"path: {path} does not exist")
    raise CheckpointError(
        f"path: {path} is not a checkpoint: it holds neither {JSON_NAME} nor "
        "checkpoints/epoch-NNNN directories of a training run"
    )


#: Keys of ``checkpoint.json`` read on load: key -> (accepted types, required).
_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "tensors": ((dict,), True),
    "model": ((dict,), True),
    "epoch": ((int,), True),
    "step": ((int,), False),
    "history": ((list,), False),
    "generators": ((list,), False),
    "optimizer": ((dict, type(None)), False),
    "fit": ((dict, type(None)), False),
    "task": ((dict, type(None)), False),
    "seed": ((int, type(None)), False),
    "extra": ((dict, type(None)), False),
}
_TENSOR_FIELDS: dict[str, type] = {"file": str, "sha256": str, "keys": list}

#: safetensors dtype names -> torch dtypes (those a checkpoint can hold).
_ST_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_MAX_HEADER = 100 * 2**20  # a safetensors header larger than this is not a checkpoint's


def _type_error(json_path: Path, key: str, expected: str, value: Any) -> CheckpointError:
    return CheckpointError(
        f"{json_path}: key {key!r}: expected {expected}, got {type(value).__name__} {value!r:.80}"
    )


def _check_fields(meta: dict[str, Any], json_path: Path) -> None:
    """Every key the loader reads is present and of the right type, else a
    ``CheckpointError`` naming the file and the key."""
    for key, (types, required) in _FIELDS.items():
        if key not in meta:
            if required:
                raise CheckpointError(f"{json_path}: required key {key!r} is missing")
            continue
        value = meta[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise _type_error(json_path, key, names, value)
    for key, kind in _TENSOR_FIELDS.items():
        if key not in meta["tensors"]:
            raise CheckpointError(f"{json_path}: required key 'tensors.{key}' is missing")
        if not isinstance(meta["tensors"][key], kind):
            raise _type_error(json_path, f"tensors.{key}", kind.__name__, meta["tensors"][key])
    for key in ("keys", "generators"):
        items = meta["tensors"]["keys"] if key == "keys" else meta.get("generators", [])
        if not all(isinstance(k, str) for k in items):
            where = "tensors.keys" if key == "keys" else "generators"
            raise _type_error(json_path, where, "a list of strings", items)
    missing = [g for g in meta.get("generators", []) if f"rng.{g}" not in meta["tensors"]["keys"]]
    if missing:
        raise CheckpointError(
            f"{json_path}: key 'generators' names {missing}, whose states (rng.<name>) are "
            "not among tensors.keys"
        )


def _tensor_path(ckpt_dir: Path, name: str, json_path: Path) -> Path:
    """The tensor file named in the JSON, which must lie inside the checkpoint folder:
    a plain relative name, no ``..``, no link leading outside (resolved and compared)."""
    rel = Path(name)
    if name == "" or rel.is_absolute() or rel.drive or ".." in rel.parts:
        raise CheckpointError(
            f"{json_path}: key 'tensors.file': expected a file name inside the checkpoint "
            f"folder, got {name!r}; refusing to read a file outside it"
        )
    target = ckpt_dir / rel
    root = ckpt_dir.resolve()
    resolved = target.resolve()
    if resolved == root or root not in resolved.parents:
        raise CheckpointError(
            f"{json_path}: key 'tensors.file': {name!r} leads outside the checkpoint folder "
            f"(to {resolved}); refusing to read it"
        )
    if not resolved.is_file():
        raise CheckpointError(f"{ckpt_dir}: tensor file {name} is missing")
    return resolved


def _safetensors_header(path: Path) -> dict[str, tuple[torch.dtype | None, tuple[int, ...]]]:
    """The dtype and shape of every tensor, from the header alone (8-byte little-endian
    length, then JSON); anything else (a pickle, a truncated file) is a CheckpointError."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or n > min(size - 8, _MAX_HEADER):
                raise CheckpointError(
                    f"{path}: not a safetensors file (header length {n} for a file of "
                    f"{size} bytes); refusing to read it"
                )
            header = json.loads(f.read(n))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (its header is not a mapping)")
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise CheckpointError(f"{path}: tensor {key!r} has no valid shape in the header")
        out[key] = (_ST_DTYPES.get(info.get("dtype")), tuple(shape))
    return out


def read_checkpoint_meta(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """Locate and verify a checkpoint; return its directory and its JSON metadata.

    Checks the format marker, the digest and the tensor file's hash, but loads no
    tensors.
    """
    ckpt_dir = _resolve(Path(path))
    json_path = ckpt_dir / JSON_NAME
    try:
        with open(json_path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{json_path}: not a readable checkpoint JSON file ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{json_path}: not an nrnn_theory checkpoint (format marker "
            f"{meta.get('format') if isinstance(meta, dict) else None!r}, expected "
            f"{CHECKPOINT_FORMAT!r})"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{json_path}: checkpoint format version {meta.get('format_version')!r}; this "
            f"nrnn_theory {__version__} reads version {FORMAT_VERSION}"
        )
    digest = meta.pop("digest", None)
    if digest != hashlib.sha256(_canonical(meta)).hexdigest():
        raise CheckpointError(
            f"{json_path}: the digest does not match the contents: the file was modified "
            "after it was written (or is damaged); refusing to load it"
        )
    _check_fields(meta, json_path)
    tensor_file = _tensor_path(ckpt_dir, meta["tensors"]["file"], json_path)
    if _sha256_file(tensor_file) != meta["tensors"]["sha256"]:
        raise CheckpointError(
            f"{tensor_file}: its SHA-256 does not match the one recorded in {JSON_NAME}: the "
            "tensor file was modified or replaced; refusing to load it"
        )
    return ckpt_dir, meta


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load and verify a checkpoint written by :func:`save_checkpoint` or ``fit``.

    Parameters
    ----------
    path : str or Path
        A checkpoint directory, or a run directory (its latest checkpoint is loaded).
    map_location : str or torch.device
        Device for the model and optimizer tensors.

    Returns
    -------
    Checkpoint
        ``.model`` is in eval mode.

    Raises
    ------
    CheckpointError
        If ``path`` is not a checkpoint, was written by something else, was modified
        after writing, or its weights do not fit its model configuration.

    Examples
    --------
    >>> import tempfile
    >>> from nrnn_theory.train import LipschitzRNN
    >>> model = LipschitzRNN(1, 4, 2, generator=torch.Generator().manual_seed(0))
    >>> d = Path(tempfile.mkdtemp()) / "ckpt"
    >>> _ = save_checkpoint(d, model, epoch=3)
    >>> ck = load_checkpoint(d)
    >>> ck.epoch, ck.model.training, bool(torch.equal(ck.model.M_W, model.M_W))
    (3, False, True)
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    ckpt_dir, meta = read_checkpoint_meta(path)
    device = torch.device(map_location)
    tensor_file = _tensor_path(ckpt_dir, meta["tensors"]["file"], ckpt_dir / JSON_NAME)
    header = _safetensors_header(tensor_file)
    if sorted(header) != sorted(meta["tensors"]["keys"]):
        raise CheckpointError(f"{ckpt_dir}: tensor keys differ from those recorded in {JSON_NAME}")
    # The configuration's shapes, checked against the header before any memory is
    # spent: the model is first built on the meta device (no storage).
    try:
        with torch.device("meta"):
            shapes = build_model(dict(meta["model"]), generator=torch.Generator()).state_dict()
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{ckpt_dir}: invalid model configuration: {exc}") from None
    stored = {k[len("model.") :]: v for k, v in header.items() if k.startswith("model.")}
    for name, value in shapes.items():
        if name in stored and stored[name] != (value.dtype, tuple(value.shape)):
            dtype, shape = stored[name]
            raise CheckpointError(
                f"{ckpt_dir}: weight {name!r} has shape {shape} and dtype {dtype}, but the "
                f"configuration implies {tuple(value.shape)} and {value.dtype}"
            )
    missing, unexpected = sorted(set(shapes) - set(stored)), sorted(set(stored) - set(shapes))
    if missing or unexpected:
        raise CheckpointError(
            f"{ckpt_dir}: weights do not match the model configuration: missing {missing}, "
            f"unexpected {unexpected}"
        )
    try:
        tensors = load_file(str(tensor_file), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{ckpt_dir}: unreadable tensor file ({exc})") from None
    try:
        model = build_model(dict(meta["model"]), generator=torch.Generator().manual_seed(0))
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{ckpt_dir}: invalid model configuration: {exc}") from None
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(state)
    model.to(device).eval()
    optimizer_state = None
    if meta.get("optimizer") is not None:
        opt_tensors = {k: v.to(device) for k, v in tensors.items() if k.startswith("optim.")}
        try:
            optimizer_state = _join_optimizer(meta["optimizer"], opt_tensors)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"{ckpt_dir / JSON_NAME}: key 'optimizer' is malformed ({type(exc).__name__}: "
                f"{exc})"
            ) from None
    generators = {name: tensors[f"rng.{name}"] for name in meta.get("generators", [])}
    return Checkpoint(
        path=ckpt_dir,
        model=model,
        config=meta["model"],
        task=meta.get("task"),
        data_fingerprint=meta.get("data_fingerprint"),
        fit=meta.get("fit"),
        seed=meta.get("seed"),
        epoch=int(meta["epoch"]),
        step=int(meta.get("step", 0)),
        history=tuple(meta.get("history") or ()),
        version=meta.get("nrnn_theory_version", "?"),
        optimizer_state=optimizer_state,
        generator_states=generators,
        extra=meta.get("extra") or {},
    )
