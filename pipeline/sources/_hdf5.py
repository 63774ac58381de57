"""Safe access to HDF5 and NetCDF files: one process-wide lock, declared sizes checked.

netCDF4 and h5py (and pysteps' importers, which use them) are not safe to call from
several threads at once: the HDF5 library is built without its thread-safe option, and
61 BoM Rainfields files read by the ingest's default threads crashed the process with a
segmentation fault every time. Every source whose files are HDF5 or NetCDF sets
``uses_hdf5 = True``; :meth:`pipeline.sources.base.RadarSource.__init_subclass__` then
wraps its readers (``read``, ``file_time``, ``grid_of``, ``precheck``) in
:data:`HDF5_LOCK`, so at most one thread of the process is inside the library at any
time, whoever calls the reader (safe by construction, not by convention). The lock is
re-entrant (a reader may call another). Decoding, conversion to the store's pixels and
writing stay parallel; processes (a dask cluster) each have their own library and lock.

:func:`check_hdf5_shapes` reads only the metadata of an HDF5 file (NetCDF-4 is HDF5)
and refuses one whose datasets declare more pixels than
:data:`pipeline.guards.MAX_FRAME_PIXELS`, before any reader allocates them, or whose
hidden NetCDF-4 dimension ids are impossible (netCDF-C aborts the process on those:
found by ``benchmarks/fuzz.py``).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from pipeline.guards import check_declared_shape

__all__ = ["HDF5_LOCK", "READER_METHODS", "check_hdf5_shapes", "locked"]

HDF5_LOCK = threading.RLock()
"""Held while any thread of this process is inside netCDF4 / h5py through a source."""

READER_METHODS: tuple[str, ...] = ("read", "file_time", "grid_of", "precheck")
"""Methods of an HDF5 source run under :data:`HDF5_LOCK`."""

F = TypeVar("F", bound=Callable[..., Any])


def locked(fn: F) -> F:
    """*fn* run while holding :data:`HDF5_LOCK` (marked ``__hdf5_locked__``)."""
    if getattr(fn, "__hdf5_locked__", False):
        return fn

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with HDF5_LOCK:
            return fn(*args, **kwargs)

    wrapper.__hdf5_locked__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def check_hdf5_shapes(path: str) -> str | None:
    """Why the HDF5 file *path* cannot hold a frame by its declared sizes, or None.

    Opens the file's metadata only (no dataset is read) and checks every dataset of
    two or more dimensions against :data:`pipeline.guards.MAX_FRAME_PIXELS`. A file
    h5py cannot open returns None: its reader gives the reason.
    """
    import h5py

    found: list[str] = []
    dimids: dict[str, Any] = {}
    coordinates: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        if not found and isinstance(obj, h5py.Dataset) and len(obj.shape or ()) >= 2:
            reason = check_declared_shape(obj.shape)
            if reason is not None:
                found.append(f"dataset /{name} {reason}")
        if "_Netcdf4Dimid" in obj.attrs:
            dimids[name] = obj.attrs["_Netcdf4Dimid"]
        if "_Netcdf4Coordinates" in obj.attrs:
            coordinates[name] = obj.attrs["_Netcdf4Coordinates"]

    with HDF5_LOCK:
        try:
            with h5py.File(path, "r") as f:
                f.visititems(visit)
        except Exception:  # noqa: BLE001 - not HDF5, truncated...: the reader says why
            return None
    return found[0] if found else _netcdf_ids_problem(dimids, coordinates)


_MAX_DIMID = 1 << 16


def _netcdf_ids_problem(dimids: dict[str, Any], coordinates: dict[str, Any]) -> str | None:
    """Why the NetCDF-4 dimension ids of a file are impossible (None when they are fine).

    The netCDF-C library trusts these hidden attributes and aborts the process (``NClist
    failure``) on an id out of range, so they are checked with h5py before it opens the file.
    """
    import numpy as np

    seen: set[int] = set()
    for name, value in dimids.items():
        v = np.asarray(value)
        if v.size != 1 or v.dtype.kind not in "iu" or not 0 <= int(v.reshape(-1)[0]) < _MAX_DIMID:
            return f"NetCDF-4 dimension id of /{name} is {value!r}, not a small integer"
        if int(v.reshape(-1)[0]) in seen:
            return f"NetCDF-4 dimension id {int(v.reshape(-1)[0])} of /{name} is used twice"
        seen.add(int(v.reshape(-1)[0]))
    for name, value in coordinates.items():
        v = np.asarray(value)
        if v.dtype.kind not in "iu" or v.ndim > 1 or not set(v.reshape(-1).tolist()) <= seen:
            return f"NetCDF-4 coordinates of /{name} are {value!r}, not ids of its dimensions"
    return None
