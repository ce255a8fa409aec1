"""Atomic file writes: a temporary file in the same folder, fsync, then ``os.replace``.

A reader sees the old file or the new one, never half of one. Inside
:func:`all_or_nothing`, the renames wait until every file of the block is
written, so a report is replaced whole or not at all (a full disk half way
through the Markdown, CSV and JSON files leaves the previous report as it
was). Disk errors (full, read-only, no permission, a file where a folder
should be) become a one-line :class:`WriteError` naming the path and the fix.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator

from ecgbench.errors import EcgbenchError


class WriteError(EcgbenchError):
    """A file or folder could not be written (disk full, read-only, no permission, a file in the way)."""


# (temporary, final) pairs waiting for the end of an all_or_nothing() block.
_PENDING: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar("ecgbench_atomic_pending", default=None)

_WHY = {
    errno.ENOSPC: "no space left on the device: free some space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded: free some space or write elsewhere",
    errno.EROFS: "the file system is read-only: write to a writable folder",
    errno.EACCES: "permission denied: write to a folder you may write to",
    errno.EPERM: "permission denied: write to a folder you may write to",
    errno.EEXIST: "a file is in the way where a folder should be: remove it or choose another folder",
    errno.ENOTDIR: "a file is in the way where a folder should be: remove it or choose another folder",
    errno.EISDIR: "is a folder, not a file: remove it or choose another path",
}


def write_error(exc: OSError, path: str | os.PathLike, hint: str = "") -> EcgbenchError | OSError:
    """The one-line :class:`WriteError` for a disk error on ``path``, or ``exc`` itself when it is none of those."""
    why = _WHY.get(exc.errno or 0)
    if why is None:
        return exc
    where = exc.filename if exc.errno in (errno.EEXIST, errno.ENOTDIR) and exc.filename else path
    return WriteError(f"cannot write {where}: {why}" + (f" ({hint})" if hint else ""))


@contextlib.contextmanager
def translated(path: str | os.PathLike, hint: str = "") -> Iterator[None]:
    """Turn a disk error raised inside the block into a one-line :class:`WriteError` about ``path``."""
    try:
        yield
    except OSError as exc:
        error = write_error(exc, path, hint)
        if error is exc:
            raise
        raise error from exc


def ensure_dir(folder: str | os.PathLike, hint: str = "") -> Path:
    """Create ``folder`` (and its parents) if missing; a file in the way or a read-only disk is a :class:`WriteError`."""
    folder = Path(folder)
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                raise WriteError(f"cannot write into {path}: it is a file, not a folder; remove it or choose another folder" + (f" ({hint})" if hint else ""))
            break
    with translated(folder, hint):
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def _file_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 less the umask); ``mkstemp`` alone gives 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_bytes(path: str | os.PathLike, data: bytes, hint: str = "") -> Path:
    """Write ``data`` to ``path`` atomically (deferred to the end of an :func:`all_or_nothing` block inside one)."""
    path = Path(path)
    ensure_dir(path.parent, hint)
    with translated(path, hint):
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        try:
            os.fchmod(fd, _file_mode())
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            pending = _PENDING.get()
            if pending is not None:
                pending.append((tmp, path))
            else:
                os.replace(tmp, path)
                _fsync_dir(path.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return path


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8", hint: str = "") -> Path:
    """Write ``text`` to ``path`` atomically; see :func:`write_bytes`."""
    return write_bytes(path, text.encode(encoding), hint)


@contextlib.contextmanager
def all_or_nothing() -> Iterator[None]:
    """Files written inside the block replace their old versions together at its end, or not at all if it raises."""
    outer = _PENDING.get()
    if outer is not None:  # nested: the outermost block commits
        yield
        return
    pending: list[tuple[Path, Path]] = []
    token = _PENDING.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _path in pending:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _PENDING.reset(token)
    for tmp, path in pending:
        with translated(path):
            os.replace(tmp, path)
    for folder in {path.parent for _tmp, path in pending}:
        _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
