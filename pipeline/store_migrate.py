"""Convert a radar store of the old layout (version folders + ``CURRENT``) to Icechunk.

Before 2026-12 the ingest store was a directory of complete Zarr groups ``vNNNNNN.zarr``
and a one-line file ``CURRENT`` naming the committed one (copy-on-write versions with hard
links). :func:`migrate_store` copies its committed version into a new Icechunk store
(:mod:`pipeline.store`) chunk by chunk (16 frames at a time, raw ``uint8`` pixels and
masks, no decoding), as one commit; the old store is left as it was. Command line:
``nowcast store migrate OLD NEW``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from pipeline.store import DATA_VARS, TIME_CHUNK, StoreWriter, create_store
from pipeline.store_engine import CURRENT_FILE

_VERSION_RE = re.compile(r"^v(\d{6})\.zarr$")


def old_current_version(path: str | os.PathLike) -> Path:
    """Directory of the committed Zarr group of an old-layout store.

    Raises
    ------
    ValueError
        If *path* has no valid ``CURRENT`` file naming a Zarr group.
    """
    p = Path(path)
    f = p / CURRENT_FILE
    if not f.is_file():
        raise ValueError(f"{p} is not a store of the old layout: no '{CURRENT_FILE}' file")
    name = f.read_text().strip()
    if not _VERSION_RE.match(name):
        raise ValueError(f"{f}: expected a version name like 'v000001.zarr', got {name!r}")
    vdir = p / name
    if not (vdir / "zarr.json").is_file():
        raise ValueError(f"{p}: {CURRENT_FILE} names {name!r} but {vdir} holds no Zarr group")
    return vdir


def migrate_store(old: str | os.PathLike, new: str | os.PathLike) -> int:
    """Copy the committed version of the old-layout store *old* into a new store *new*.

    Parameters
    ----------
    old : str or PathLike
        Store directory of the old layout.
    new : str or PathLike
        New store: a directory that does not exist (or is empty) or an ``s3://`` URL.

    Returns
    -------
    int
        Frames copied.

    Raises
    ------
    ValueError
        If *old* is not a store of the old layout or *new* already holds frames.
    """
    import zarr

    src = zarr.open_group(str(old_current_version(old)), mode="r")
    n = int(src["time"].shape[0])
    size = int(src["reflectivity"].shape[1])
    create_store(new, size=size)
    with StoreWriter(new) as w:
        if w.times().size:
            raise ValueError(f"migration target {new} already holds frames; choose a new path")
        dst = w.prepare(first_time_chunk=0, length=n)
        for lo in range(0, n, TIME_CHUNK):
            hi = min(n, lo + TIME_CHUNK)
            for name in DATA_VARS:
                dst[name][lo:hi] = src[name][lo:hi]
        dst["time"][:] = np.asarray(src["time"][:], dtype=np.int64)
        w.commit(f"migrate {n} frames from the old-layout store {Path(old).absolute()}")
    return n
