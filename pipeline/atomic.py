"""Atomic file writes: a temporary file in the same directory, fsync, ``os.replace``.

One helper for every layer (``pipeline``, ``nowcast``, ``products``, ``flows``): a reader
of the target path sees the previous content or the new one, never a half-written file,
and after a crash the path holds one of the two. The temporary file is named
``.<name>.tmp-<pid>-<hex><suffix>`` next to the target (hidden, and keeping the target's
suffix so that writers which pick a format from the file name, such as matplotlib's
``savefig``, still do) and is removed when the write fails.

:func:`atomic_write` takes any writer ``write(tmp_path)`` (``torch.save``,
``Dataset.to_netcdf``, ``Figure.savefig``); :func:`atomic_write_bytes`,
:func:`atomic_write_text` and :func:`atomic_write_json` are the common cases. All of them
go through :func:`atomic_write`, so replacing that one function (a test simulating a
full disk) affects every atomic write.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Path], object], *, fsync: bool = True
) -> Path:
    """Write *path* atomically with ``write(tmp)`` and ``os.replace(tmp, path)``.

    Parameters
    ----------
    path : path-like
        Target file; its directory must exist. An existing file is replaced.
    write : callable
        Called once with the temporary path (same directory, same suffix); must create
        that file.
    fsync : bool
        Flush the temporary file to disk before the rename (after a crash the target
        then holds the old or the new content, not an empty file).

    Returns
    -------
    pathlib.Path
        *path*.

    Raises
    ------
    ValueError
        If the directory of *path* does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"directory {path.parent} of {path.name} does not exist")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        write(tmp)
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write *data* to *path* atomically (see :func:`atomic_write`); returns *path*."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write *text* to *path* atomically, encoded with *encoding*; returns *path*."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``json.dumps(obj, indent=1)`` atomically (strict JSON: NaN raises ValueError).

    Values JSON does not know (timestamps, paths) are written as ``str(value)``.
    """
    text = json.dumps(obj, indent=1, allow_nan=False, default=str)
    return atomic_write_text(path, text)
