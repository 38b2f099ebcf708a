"""Atomic file writes, honouring the umask (public within the package).

Every file the package writes goes through here: it is written to a temporary name in
the target's folder, flushed to disk and renamed over the target, so a crash or an
error never leaves a half-written or clobbered file. New files get the usual mode
``0o666 & ~umask`` and new folders ``0o777 & ~umask`` (``tempfile`` would create them
``0o600`` and ``0o700``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


__all__ = [
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_many",
    "atomic_write_text",
    "current_umask",
]


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_temp(path: Path, data: bytes) -> Path:
    """``data`` in a new temporary file beside ``path`` (mode ``0o666 & ~umask``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write_many(files: Mapping[str | os.PathLike, bytes]) -> list[Path]:
    """Write several files so that either all are replaced or none is.

    Every file is first written to a temporary name; only when all are on disk are
    they renamed into place. An error before that leaves every target as it was.
    Returns the paths, in order.
    """
    temps: list[tuple[Path, Path]] = []
    try:
        for target, data in files.items():
            target = Path(target)
            temps.append((_write_temp(target, data), target))
        for tmp, target in temps:
            os.replace(tmp, target)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
    return [target for _, target in temps]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename); creates the
    parent folders.

    The new file gets the mode the user's umask gives (``0o666 & ~umask``), and an
    existing file is replaced only once the new one is complete.

    Parameters
    ----------
    path : str or os.PathLike
        The destination.
    data : bytes
        The file's contents.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile
    >>> p = atomic_write_bytes(Path(tempfile.mkdtemp()) / "a" / "b.txt", b"hi")
    >>> p.read_bytes(), oct(p.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())
    (b'hi', True)
    """
    return atomic_write_many({path: data})[0]


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Build a new folder under a temporary name; it appears at ``path`` only if the
    ``with`` block succeeds (it is removed otherwise).

    The folder gets mode ``0o777 & ~umask``; its files are fsynced by the caller. An
    existing ``path`` is never replaced: ``FileExistsError`` before or after the block.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "run"
    >>> with atomic_directory(target) as tmp:
    ...     _ = (tmp / "x.txt").write_text("done")
    >>> (target / "x.txt").read_text()
    'done'
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"path: {path} exists; it is never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        yield tmp
        _fsync_dir(tmp)
        if path.exists():
            raise FileExistsError(f"path: {path} appeared while writing; not overwritten")
        os.rename(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
