"""Where radar stores live: Icechunk storage for a directory or an ``s3://`` URL, the writer
lock of local stores, and recognition of the old (pre-Icechunk) layout.

Used by :mod:`pipeline.store` (which re-exports the public names); see its docstring for
the engine's properties.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

CURRENT_FILE: str = "CURRENT"
"""Pointer file of the old (pre-Icechunk) layout; see :mod:`pipeline.store_migrate`."""


def is_url(location: str | os.PathLike) -> bool:
    """True when *location* is an object-storage URL (``s3://bucket/prefix``)."""
    return str(location).startswith("s3://")


def _storage(location: str | os.PathLike):
    """Icechunk storage of a local directory or an ``s3://bucket/prefix`` URL.

    For S3 the credentials come from the usual environment variables
    (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``), the region
    from ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` and a non-AWS endpoint (MinIO, moto, ...)
    from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``.
    """
    import icechunk

    if not os.environ.get("ICECHUNK_LOG"):
        # the local-storage warning about concurrent commits: our own lock covers it
        icechunk.set_logs_filter("icechunk=error")
    text = str(location)
    if is_url(text):
        bucket, _, prefix = text[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"store URL {text!r}: expected s3://bucket/prefix")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return icechunk.s3_storage(
            bucket=bucket,
            prefix=prefix.strip("/") or None,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            endpoint_url=endpoint,
            allow_http=bool(endpoint and endpoint.startswith("http://")),
            force_path_style=bool(endpoint),
            from_env=True,
        )
    return icechunk.local_filesystem_storage(str(Path(location).absolute()))


def _old_layout_error(path: Path) -> ValueError:
    return ValueError(
        f"{path} is a radar store in the old layout (version folders and a '{CURRENT_FILE}' "
        f"pointer); convert it with `nowcast store migrate {path} NEW` and use NEW"
    )


def is_old_layout(location: str | os.PathLike) -> bool:
    """True when *location* is a store of the home-made layout (``CURRENT`` + ``vNNNNNN.zarr``)."""
    return not is_url(location) and (Path(location) / CURRENT_FILE).is_file()


def is_icechunk_store(location: str | os.PathLike) -> bool:
    """True when *location* (directory or ``s3://`` URL) holds an Icechunk repository."""
    import icechunk

    if not is_url(location) and not (Path(location) / "refs").is_dir():
        return False
    return bool(icechunk.Repository.exists(_storage(location)))


def open_repo(location: str | os.PathLike):
    """The :class:`icechunk.Repository` of the store at *location*.

    Raises
    ------
    FileNotFoundError
        If nothing exists at *location*.
    ValueError
        If *location* is a store of the old layout (naming ``nowcast store migrate``) or
        something else that is not an Icechunk repository.
    """
    import icechunk

    if is_old_layout(location):
        raise _old_layout_error(Path(location))
    if not is_url(location) and not Path(location).exists():
        raise FileNotFoundError(f"radar store {location} does not exist")
    if not is_icechunk_store(location):
        raise ValueError(
            f"{location} is not a radar store: expected an Icechunk repository "
            "(create one with pipeline.store.create_store or `nowcast ingest`)"
        )
    return icechunk.Repository.open(_storage(location))


@contextlib.contextmanager
def store_lock(location: str | os.PathLike) -> Iterator[None]:
    """Exclusive writer lock of a local store (``flock`` on ``.<name>.lock`` beside it).

    Icechunk's local-filesystem storage is not safe for concurrent commits, so local
    writers take this lock (released by the OS even on SIGKILL). On object storage it does
    nothing: a conflicting commit is detected by Icechunk and refused (see
    :class:`StoreWriter`).
    """
    if is_url(location):
        yield
        return
    path = Path(location).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    # beside the store, not in it: Icechunk creates repositories only in clean prefixes
    with open(path.parent / f".{path.name}.lock", "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def replacement_session(dst: Path, tmp: Path):
    """A writable session for a store that a job writes whole (resample): ``(session, fresh)``.

    An Icechunk *dst* gets a new commit on its own branch (``fresh`` False: readers of
    earlier snapshots are not disturbed); otherwise a new repository is created at *tmp*
    (removed first when a killed run left it) to be moved into place by
    :func:`place_store` once committed.
    """
    import shutil

    import icechunk

    if is_icechunk_store(dst):
        return open_repo(dst).writable_session("main"), False
    if tmp.exists():
        shutil.rmtree(tmp)
    return icechunk.Repository.create(_storage(tmp)).writable_session("main"), True


def place_store(tmp: Path, dst: Path, old: Path) -> None:
    """Move the committed store *tmp* to *dst*; an existing *dst* (a plain Zarr store of
    before) is swapped out by two renames through *old* and deleted."""
    import shutil

    if dst.exists():
        os.replace(dst, old)
        os.replace(tmp, dst)
        shutil.rmtree(old)
    else:
        os.replace(tmp, dst)
