"""Where radar stores live: Icechunk storage for a directory or an ``s3://`` URL, the writer
lock of local stores, recognition of the old (pre-Icechunk) layout, and the read-only
opening of a store's group and history.

Used by :mod:`pipeline.store` (which re-exports the public names); see its docstring for
the engine's properties.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

CURRENT_FILE: str = "CURRENT"
"""Pointer file of the old (pre-Icechunk) layout; see :mod:`pipeline.store_migrate`."""


def is_url(location: str | os.PathLike) -> bool:
    """True when *location* is an object-storage URL (``s3://bucket/prefix``)."""
    return str(location).startswith("s3://")


def as_location(location: str | os.PathLike) -> str | Path:
    """*location* as stores take it: an ``s3://`` URL stays a str, anything else is a Path.

    (``Path("s3://bucket/x")`` would collapse the double slash.)
    """
    return str(location) if is_url(location) else Path(location)


def join_location(base: str | os.PathLike, location: str | os.PathLike) -> str | Path:
    """*location* taken relative to the directory *base*, unless it is absolute or a URL.

    Examples
    --------
    >>> join_location("site", "forecasts.zarr")
    PosixPath('site/forecasts.zarr')
    >>> join_location("site", "s3://bucket/archive/forecasts.zarr")
    's3://bucket/archive/forecasts.zarr'
    """
    if is_url(location):
        return str(location)
    return Path(base) / location


def _split_url(url: str) -> tuple[str, str]:
    bucket, _, prefix = str(url)[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"store URL {url!r}: expected s3://bucket/prefix")
    return bucket, prefix.strip("/")


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def _call(location: str | os.PathLike, fn, what: str):
    """``fn()``; on object storage with transient faults retried and every storage fault
    raised as a one-line :class:`pipeline.objectstore.StoreAccessError`."""
    if not is_url(location):
        return fn()
    from pipeline.objectstore import with_retries

    return with_retries(str(location), fn, what)


def _storage(location: str | os.PathLike):
    """Icechunk storage of a local directory or an ``s3://bucket/prefix`` URL.

    For S3 the credentials come from the usual environment variables
    (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``), the region
    from ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` and a non-AWS endpoint (MinIO, moto, ...)
    from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``. Before the first use of a bucket
    one cheap request checks that it exists, that the credentials are accepted and that
    the endpoint answers (:func:`pipeline.objectstore.check_bucket`, retried for
    ``NOWCAST_STORE_RETRY_SECONDS``): a fault is a one-line ``StoreAccessError``.
    """
    import icechunk

    if not os.environ.get("ICECHUNK_LOG"):
        # the local-storage warning about concurrent commits: our own lock covers it
        icechunk.set_logs_filter("icechunk=error")
    text = str(location)
    if is_url(text):
        from pipeline.objectstore import check_bucket

        bucket, prefix = _split_url(text)
        check_bucket(text, bucket, prefix)
        endpoint = _endpoint()
        return icechunk.s3_storage(
            bucket=bucket,
            prefix=prefix or None,
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
    storage = _storage(location)
    return bool(_call(location, lambda: icechunk.Repository.exists(storage), "open the store"))


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
    storage = _storage(location)
    return _call(location, lambda: icechunk.Repository.open(storage), "open the store")


@contextlib.contextmanager
def store_lock(location: str | os.PathLike) -> Iterator[None]:
    """Exclusive writer lock of a local store (``flock`` on ``.<name>.lock`` beside it).

    Icechunk's local-filesystem storage is not safe for concurrent commits, so local
    writers take this lock (released by the OS even on SIGKILL). On object storage it does
    nothing: a conflicting commit is detected by Icechunk and refused (see
    :class:`pipeline.store.StoreWriter`).
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


REPO_ENTRIES: frozenset[str] = frozenset(
    {"refs", "snapshots", "manifests", "transactions", "chunks", "config.yaml"}
)
"""Top-level entries of a local Icechunk repository."""


def open_or_create_repo(location: str | os.PathLike, what: str = "store"):
    """The :class:`icechunk.Repository` at *location*, created when nothing is there yet.

    The generic "open repository at location" of the stores written whole or appended by
    one writer (resampled store, the site's forecast archive): *location* is a directory or
    an ``s3://bucket/prefix`` URL (credentials and endpoint from the ``AWS_*`` environment
    variables, see :func:`_storage`). A local directory left by a creator killed before
    its first commit (only Icechunk entries, no ref) is cleared and created again. Local
    callers hold :func:`store_lock` around their write.

    Parameters
    ----------
    location : str or PathLike
        Directory or ``s3://`` URL.
    what : str
        Name of the store in error messages (e.g. ``"forecast archive"``).

    Raises
    ------
    ValueError
        If *location* is a plain Zarr group (written before the stores moved to Icechunk),
        a store of the old layout, a file, or a directory holding anything else.
    """
    import shutil

    import icechunk

    if is_old_layout(location):
        raise _old_layout_error(Path(location))
    if is_icechunk_store(location):
        storage = _storage(location)
        return _call(location, lambda: icechunk.Repository.open(storage), f"open the {what}")
    if not is_url(location):
        p = Path(location)
        if (p / "zarr.json").exists() or (p / ".zgroup").exists():
            raise ValueError(
                f"{what} {p} is a plain Zarr group (written before the stores moved to "
                f"Icechunk): move it aside; the next write starts a new {what}"
            )
        if p.exists() and not p.is_dir():
            raise ValueError(f"{what} {p} is a file; expected a directory or an s3:// URL")
        if p.exists():
            names = {x.name for x in p.iterdir()}
            if not names <= REPO_ENTRIES:
                raise ValueError(
                    f"cannot create a {what} at {p}: the directory holds {sorted(names)[:5]}, "
                    "expected an empty directory or an Icechunk repository"
                )
            for name in names:  # leftovers of a creator killed before its first ref
                target = p / name
                shutil.rmtree(target) if target.is_dir() else target.unlink()
    return create_or_open(location, what)


def create_or_open(location: str | os.PathLike, what: str = "store"):
    """``icechunk.Repository.create`` at *location*; on object storage a repository that
    another writer created at the same moment (the create lost the race) is opened instead.
    """
    import icechunk

    storage = _storage(location)
    try:
        return _call(location, lambda: icechunk.Repository.create(storage), f"create the {what}")
    except Exception:
        if is_url(location) and is_icechunk_store(location):
            return _call(location, lambda: icechunk.Repository.open(storage), f"open the {what}")
        raise


def holds_group(location: str | os.PathLike) -> bool:
    """True when *location* holds a Zarr group: a local path that exists, or an ``s3://``
    Icechunk repository whose latest snapshot has a root group (a repository a killed
    creator left with no commit but the initial one does not count)."""
    if not is_url(location):
        return Path(location).exists()
    if not is_icechunk_store(location):
        return False
    import zarr

    store = open_repo(location).readonly_session(branch="main").store
    try:
        zarr.open_group(store, mode="r")
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
        return False
    return True


def write_object(url: str, data: bytes) -> None:
    """Write *data* as the object *url* (``s3://bucket/key``), with the endpoint and
    credentials of :func:`_storage` (for small files next to a store: reports, tables)."""
    from pipeline.objectstore.access import s3_client

    bucket, key = _split_url(url)
    if not key:
        raise ValueError(f"object URL {url!r}: expected s3://bucket/key")
    client = s3_client()
    _call(url, lambda: client.put_object(Bucket=bucket, Key=key, Body=data), "write the object")


def read_object(url: str) -> bytes:
    """The bytes of the object *url* (``s3://bucket/key``); see :func:`write_object`."""
    from pipeline.objectstore.access import s3_client

    bucket, key = _split_url(url)
    client = s3_client()
    return _call(
        url, lambda: client.get_object(Bucket=bucket, Key=key)["Body"].read(), "read the object"
    )


class CommitConflictError(RuntimeError):
    """Another writer committed to the store while this one was writing (object storage)."""


def commit_session(session, message: str, location: str | os.PathLike, rerun: str) -> str:
    """Commit *session*; a commit lost to another writer (object storage, no lock) raises
    :class:`CommitConflictError` naming *location* and what to do (*rerun*), keeping
    nothing of this session. Returns the new snapshot id."""
    import icechunk

    try:
        return session.commit(message)
    except icechunk.ConflictError as err:
        raise CommitConflictError(
            f"store {location}: another writer committed while this one was writing ({err}); "
            f"nothing was committed, {rerun}"
        ) from err


def commit_checked(session, message: str, location: str | os.PathLike, rerun: str) -> str:
    """Commit *session*; refused when another writer committed since it was opened.

    Icechunk's rebase (``session.commit(..., rebase_with=ConflictDetector())``) cannot help
    ingest batches: any two of them extend the same ``time`` array and rewrite its chunk,
    a conflict no solver may resolve without losing frames. A refused batch is instead
    redone from the new tip by the caller (:class:`pipeline.objectstore.batches.BatchRetry`):
    its changes replayed on top of the other writer's by the code that knows the schema.
    Returns the new snapshot id.

    Raises
    ------
    CommitConflictError
        Another writer committed first; nothing of this session is kept (*rerun* says
        what to do).
    pipeline.objectstore.StoreAccessError
        Object storage failed during the commit (``transient`` when a retry may help).
    """
    import icechunk

    from pipeline.objectstore import StoreAccessError, storage_error

    try:
        return session.commit(message)
    except (icechunk.ConflictError, icechunk.RebaseFailedError) as err:
        raise CommitConflictError(
            f"store {location}: another writer committed while this one was writing ({err}); "
            f"nothing was committed, {rerun}"
        ) from err
    except Exception as err:
        fault = storage_error(err) if is_url(location) else None
        if fault is None:
            raise
        raise StoreAccessError(
            f"store {location}: the commit failed: {fault.said}",
            transient=fault.transient,
            said=fault.said,
        ) from err


def replacement_session(dst: str | Path, tmp: Path | None):
    """A writable session for a store that a job writes whole (resample): ``(session, fresh)``.

    An Icechunk *dst* gets a new commit on its own branch (``fresh`` False: readers of
    earlier snapshots are not disturbed); so does an ``s3://`` *dst*, created in place when
    missing (object storage cannot rename: nothing is visible before the commit anyway);
    otherwise a new repository is created at *tmp* (removed first when a killed run left
    it) to be moved into place by :func:`place_store` once committed.
    """
    import shutil

    import icechunk

    if is_url(dst):
        return open_or_create_repo(dst, what="resampled store").writable_session("main"), False
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_siblings(dst: str | os.PathLike) -> list[str]:
    """Remove what killed writers of the local store *dst* left beside it; their names.

    A job that writes a whole store (resample) builds it in ``.<name>.tmp-<pid>`` and
    swaps an older one out through ``.<name>.old-<pid>`` (:func:`place_store`). When the
    process *pid* is dead these are leftovers: a ``tmp`` is deleted; an ``old`` is
    deleted when *dst* exists, and moved back to *dst* when the kill fell between the two
    renames (then *dst* is missing and ``old`` is the last complete store). Siblings of
    live processes are kept. Nothing is done for an ``s3://`` URL (no temporaries there).

    Parameters
    ----------
    dst : path-like or str
        The store's directory.

    Returns
    -------
    list of str
        ``"removed NAME"`` / ``"restored NAME"`` for each leftover handled.
    """
    import re
    import shutil

    if is_url(dst):
        return []
    dst = Path(dst)
    if not dst.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(dst.name)}\.(tmp|old)-(\d+)")
    done = []
    for entry in sorted(dst.parent.iterdir(), key=lambda p: p.name):
        m = pattern.fullmatch(entry.name)
        if m is None or int(m.group(2)) == os.getpid() or _pid_alive(int(m.group(2))):
            continue
        if m.group(1) == "old" and not dst.exists():
            os.replace(entry, dst)
            done.append(f"restored {entry.name}")
        else:
            shutil.rmtree(entry, ignore_errors=True)
            done.append(f"removed {entry.name}")
    return done


# ----------------------------------------------------------------------------- reading


def _session_store(location: str | os.PathLike, snapshot: str | None = None):
    repo = open_repo(location)
    if snapshot is not None:
        return _call(
            location, lambda: repo.readonly_session(snapshot_id=snapshot).store, "read the store"
        )
    return _call(location, lambda: repo.readonly_session(branch="main").store, "read the store")


def open_group(location, mode: str = "r", snapshot: str | None = None):
    """The root :class:`zarr.Group` of a store, read-only.

    An Icechunk store (directory or ``s3://`` URL) is read from a read-only session of the
    latest snapshot (or of *snapshot*); any other directory is opened as a plain Zarr group.

    Parameters
    ----------
    location : str, PathLike or zarr store
        Store location, or an already opened zarr store (returned as a group as it is).
    mode : str
        Only ``"r"``: writers go through :class:`pipeline.store.StoreWriter` or a session.
    snapshot : str, optional
        Snapshot id to open instead of the latest.
    """
    import zarr

    if mode != "r":
        raise ValueError(f"open_group opens stores read-only, got mode={mode!r}")
    if not isinstance(location, str | os.PathLike):
        return zarr.open_group(location, mode="r")
    if is_url(location) or is_icechunk_store(location) or is_old_layout(location):
        return zarr.open_group(_session_store(location, snapshot), mode="r")
    return zarr.open_group(str(location), mode="r")


def store_log(location: str | os.PathLike) -> list[tuple[str, pd.Timestamp, str]]:
    """History of a store, newest first: ``(snapshot id, commit time UTC, message)``."""
    import pandas as pd

    repo = open_repo(location)
    return _call(
        location,
        lambda: [
            (s.id, pd.Timestamp(s.written_at), s.message) for s in repo.ancestry(branch="main")
        ],
        "read the store's history",
    )
