"""The writer of a radar store's next snapshot: :class:`StoreWriter` (one Icechunk commit).

Used by :mod:`pipeline.ingest` and :mod:`pipeline.store_migrate`; re-exported by
:mod:`pipeline.store` (see its docstring for the engine's properties).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline.store_engine import (
    CommitConflictError,
    _call,
    commit_checked,
    is_url,
    open_repo,
    store_lock,
)

DATA_VARS: tuple[str, ...] = ("reflectivity", "mask")
"""Variables with a time dimension written by ingest."""


def resize_arrays(group, length: int) -> None:
    """Give the time arrays (``reflectivity``, ``mask``, ``time``) of *group* *length* frames
    (a shorter length drops the chunks past the end)."""
    for name in DATA_VARS:
        arr = group[name]
        arr.resize((length, *arr.shape[1:]))
    group["time"].resize((length,))


class StoreWriter:
    """Writer of the next store snapshot (one Icechunk commit; used by :mod:`pipeline.ingest`).

    Use as a context manager: it takes the store's writer lock (local stores, see
    :func:`store_lock`). :meth:`prepare` opens a writable session on the tip of ``main``
    and resizes the arrays; :meth:`commit` commits it with a message. Nothing written
    before the commit is visible to readers, and a writer killed at any point leaves the
    last commit as it was (Icechunk writes chunks first and moves the branch last).

    Parameters
    ----------
    location : str or PathLike
        A store made by :func:`create_store` (directory or ``s3://`` URL).

    Examples
    --------
    >>> with StoreWriter(path) as w:                      # doctest: +SKIP
    ...     group = w.prepare(first_time_chunk=3, length=100)
    ...     group["reflectivity"][48:100] = pixels
    ...     group["time"][:] = seconds
    ...     w.commit("add 52 frames")
    """

    def __init__(self, location: str | os.PathLike) -> None:
        self.location = str(location) if is_url(location) else Path(location)
        self.path = self.location  # the name used before
        self.repo = None
        self._lock = None
        self._session = None
        self.known_secs: np.ndarray | None = None
        """Frame times (int64 s) last read or committed by this writer."""
        self._base: str | None = None  # the snapshot known_secs belong to

    def __enter__(self) -> StoreWriter:
        self.repo = open_repo(self.location)  # validates
        self._lock = store_lock(self.location)
        self._lock.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._session = None  # uncommitted changes are dropped
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def _tip(self):
        return _call(
            self.location, lambda: self.repo.readonly_session(branch="main"), "read the store"
        )

    @property
    def parent_snapshot(self) -> str:
        """Snapshot the prepared session is based on (or the tip of ``main``)."""
        if self._session is not None:
            return self._session.snapshot_id
        return self._tip().snapshot_id

    @property
    def session(self):
        """The writable :class:`icechunk.Session` of :meth:`prepare` (None before)."""
        return self._session

    def frame_shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of the store's frames."""
        import zarr

        g = zarr.open_group(self._tip().store, mode="r")
        return tuple(int(n) for n in g["reflectivity"].shape[1:])

    def frame_coords(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` pixel-centre coordinates (km) of the store's grid."""
        import zarr

        g = zarr.open_group(self._tip().store, mode="r")
        return np.asarray(g["x"][:]), np.asarray(g["y"][:])

    def times(self) -> np.ndarray:
        """Committed frame times as int64 seconds since 1970-01-01, sorted."""
        import zarr

        tip = self._tip()
        g = zarr.open_group(tip.store, mode="r")
        self.known_secs = np.asarray(g["time"][:], dtype=np.int64)
        self._base = tip.snapshot_id
        return self.known_secs

    def prepare(self, first_time_chunk: int, length: int, resize: bool = True):
        """Open a writable session on the tip of ``main`` and resize the data arrays.

        Parameters
        ----------
        first_time_chunk : int
            Index of the first time chunk the caller will (re)write; chunks before it stay
            shared with the parent snapshot (Icechunk copies nothing).
        length : int
            Number of frames of the new snapshot (>= committed length).
        resize : bool
            False: leave the session unchanged (no resize), so that it can still be
            forked (:meth:`icechunk.Session.fork`) for writers on a dask cluster; the caller
            resizes it after merging the forks.

        Returns
        -------
        zarr.Group
            The store in the writable session.

        Raises
        ------
        CommitConflictError
            If another writer committed since this one last read :meth:`times` or
            committed (object storage): the caller's frame times are stale; redo from
            the new tip.
        """
        import zarr

        if first_time_chunk < 0:
            raise ValueError(f"first_time_chunk must be >= 0, got {first_time_chunk}")
        session = _call(self.location, lambda: self.repo.writable_session("main"), "open the store")
        if self._base is not None and session.snapshot_id != self._base:
            raise CommitConflictError(
                f"store {self.location}: another writer committed since its frames were "
                "read; redo the batch from the new tip"
            )
        self._session = session
        g = zarr.open_group(self._session.store, mode="r+")
        if resize:
            resize_arrays(g, length)
        return g

    def merge(self, forks: list) -> None:
        """Merge forked sessions (:meth:`icechunk.Session.fork` of :attr:`session`, written
        by dask workers) into the prepared session; the commit stays one."""
        if self._session is None:
            raise ValueError(f"{self.location}: merge() called without prepare()")
        if forks:
            self._session.merge(*forks)

    def abort(self) -> None:
        """Discard the prepared session (the last commit stays as it is)."""
        self._session = None

    def commit(self, message: str = "update") -> str:
        """Commit the prepared session; returns the new snapshot id.

        A commit that another writer's commit overtook is refused
        (:func:`pipeline.store_engine.commit_checked`); ingest redoes the batch.

        Raises
        ------
        CommitConflictError
            (a RuntimeError) If another writer committed to the store since
            :meth:`prepare` (object storage, where there is no lock): nothing of this
            session is kept.
        pipeline.objectstore.StoreAccessError
            If object storage failed during the commit (``transient`` when retrying may
            help); the last commit stays as it was, unless this one landed unseen.
        """
        if self._session is None:
            raise ValueError(f"{self.location}: commit() called without prepare()")
        try:
            snap = commit_checked(
                self._session,
                message,
                self.location,
                "run again (ingest skips the frames already stored)",
            )
        finally:
            self._session = None
        self._base = snap
        return snap
