"""A results directory whose entries are written atomically and verified on read.

Each entry is a pair ``<name>.json`` + ``<name>.npz`` under a root folder. The JSON
holds the metadata (job id, config, package version, git revision, creation time),
the JSON-ready payload, and SHA-256 checksums of the payload and of the NPZ file. The
NPZ is written first and the JSON last, each to a temporary name then renamed, so an
interrupted writer leaves either a complete entry or none that :meth:`ResultStore.load`
accepts. A corrupted, partial or foreign entry is reported by :meth:`ResultStore.status`
and never silently used.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nrnn_theory._io import atomic_write_bytes
from nrnn_theory._record import to_jsonable
from nrnn_theory._version import __version__


__all__ = [
    "SCHEMA",
    "Entry",
    "ResultStore",
    "atomic_write_bytes",
    "git_revision",
    "stored_float",
]

#: Format tag written into every entry; entries with another tag are refused.
SCHEMA = "nrnn_theory.result/1"


def git_revision(path: str | os.PathLike | None = None) -> str | None:
    """The git commit of the source tree (``None`` outside a git checkout).

    Parameters
    ----------
    path : str or os.PathLike, optional
        A folder inside the checkout (default: this package's source folder).

    Returns
    -------
    str or None
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def stored_float(value: Any) -> float:
    """A number read back from a stored entry as a float: ``None`` and the strings
    ``"nan"``, ``"inf"``, ``"-inf"`` (how :func:`~nrnn_theory.results.to_jsonable`
    stores non-finite floats) become ``nan``, ``inf``, ``-inf``.

    Parameters
    ----------
    value : object
        A stored number, ``None`` or one of the strings above.

    Returns
    -------
    float

    Examples
    --------
    >>> stored_float("nan"), stored_float(None), stored_float(2)
    (nan, nan, 2.0)
    """
    if value is None:
        return math.nan
    if isinstance(value, str):
        if value not in ("nan", "inf", "-inf"):
            raise ValueError(f"value: expected a number or 'nan'/'inf'/'-inf', got {value!r}")
        return float(value)
    return float(value)


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Entry:
    """A verified entry: its metadata, JSON payload and arrays.

    Attributes
    ----------
    name : str
        The entry's name in its store.
    meta : dict
        Version, git revision, configuration and the hashes that were verified.
    data : dict
        The JSON payload.
    arrays : dict of str to numpy.ndarray
        The stored arrays.
    """

    name: str
    meta: dict[str, Any]
    data: dict[str, Any]
    arrays: dict[str, np.ndarray]


class ResultStore:
    """Atomic, verified ``.json`` + ``.npz`` entries under a root folder.

    Parameters
    ----------
    root : path
        Folder holding the entries (created on first write). Entry names may contain
        ``/`` to form sub-folders, e.g. ``"digits/nrnn_small/seed0/analysis"``.

    Examples
    --------
    >>> import tempfile
    >>> store = ResultStore(tempfile.mkdtemp())
    >>> store.save("demo/a", {"accuracy": 0.9}, arrays={"x": np.arange(3.0)})
    >>> store.status("demo/a")
    'ok'
    >>> store.load("demo/a").data["accuracy"]
    0.9
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def _paths(self, name: str) -> tuple[Path, Path]:
        if not name or name.startswith("/") or ".." in Path(name).parts:
            raise ValueError(f"name: expected a relative entry name without '..', got {name!r}")
        base = self.root / name
        return base.with_suffix(".json"), base.with_suffix(".npz")

    def save(
        self,
        name: str,
        data: dict[str, Any],
        *,
        arrays: dict[str, np.ndarray] | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        """Write an entry atomically (arrays first, metadata last).

        Parameters
        ----------
        name : str
            The entry's name, a relative path such as ``"theory/regularizer_law"``.
        data : dict
            JSON-ready payload (converted with :func:`~nrnn_theory.results.to_jsonable`).
        arrays : dict of str to numpy.ndarray, optional
            Arrays stored beside the payload.
        config : dict, optional
            The configuration that produced the entry, kept in its metadata.
        """
        json_path, npz_path = self._paths(name)
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in (arrays or {}).items()})
        npz_bytes = buf.getvalue()
        payload = to_jsonable(data)
        meta = {
            "schema": SCHEMA,
            "name": name,
            "config": to_jsonable(config or {}),
            "version": __version__,
            "git": git_revision(),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "data_sha256": _sha256(_canonical(payload)),
            "npz_sha256": _sha256(npz_bytes),
        }
        atomic_write_bytes(npz_path, npz_bytes)
        document = {"meta": meta, "data": payload}
        atomic_write_bytes(json_path, json.dumps(document, indent=1, allow_nan=False).encode())

    def status(self, name: str) -> Literal["ok", "missing", "corrupt"]:
        """``"ok"`` if the entry verifies, ``"missing"`` if absent, else ``"corrupt"``.

        Parameters
        ----------
        name : str
            The entry's name.

        Returns
        -------
        {"ok", "missing", "corrupt"}
        """
        json_path, _ = self._paths(name)
        if not json_path.exists():
            return "missing"
        try:
            self.load(name)
        except (OSError, ValueError):
            return "corrupt"
        return "ok"

    def load(self, name: str) -> Entry:
        """Read and verify an entry.

        Parameters
        ----------
        name : str
            The entry's name.

        Returns
        -------
        Entry

        Raises
        ------
        FileNotFoundError
            If the entry does not exist.
        ValueError
            If it is partial, corrupted, or not written by this package.
        """
        json_path, npz_path = self._paths(name)
        if not json_path.exists():
            raise FileNotFoundError(f"name: no result entry {name!r} under {self.root}")
        try:
            document = json.loads(json_path.read_text())
            meta, data = document["meta"], document["data"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{json_path}: not a readable result entry ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
            got = meta.get("schema") if isinstance(meta, dict) else type(meta).__name__
            raise ValueError(f"{json_path}: expected schema {SCHEMA!r}, got {got!r}")
        if _sha256(_canonical(data)) != meta.get("data_sha256"):
            raise ValueError(f"{json_path}: payload checksum mismatch (edited or truncated)")
        if not npz_path.exists():
            raise ValueError(f"{npz_path}: missing arrays file of entry {name!r}")
        npz_bytes = npz_path.read_bytes()
        if _sha256(npz_bytes) != meta.get("npz_sha256"):
            raise ValueError(f"{npz_path}: arrays checksum mismatch (edited or truncated)")
        with np.load(io.BytesIO(npz_bytes), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        return Entry(name=name, meta=meta, data=data, arrays=arrays)

    def names(self) -> list[str]:
        """Names of all entries present (verified or not), sorted."""
        if not self.root.exists():
            return []
        return sorted(
            str(p.relative_to(self.root).with_suffix("")) for p in self.root.rglob("*.json")
        )
