"""Ingest a radar archive into the radar Zarr store: incremental, idempotent, crash-safe.

``ingest_archive(archive, store, source="hko7")`` lists the archive's frames (the
source's ``discover``, :mod:`pipeline.sources`; for HKO-7
:func:`pipeline.hko7.discover_frames`), drops those whose time the store already holds,
and writes the rest in batches of ``batch_size`` frames, or a tenth of the store's frames
when that is more (up to 16,384; see :func:`_batch_frames`). Each batch:

1. checks every PNG's header and end (two tiny reads; HKO-7): truncated files are
   reported and left out before anything is laid out;
2. opens a writable Icechunk session (:class:`pipeline.store.StoreWriter`): chunks before
   the batch's insertion point stay shared with the parent snapshot (by reference);
3. runs one dask graph (local threads by default, a ``dask.distributed`` scheduler when
   ``scheduler_address`` is given) with, per time chunk from the insertion point on, a
   task that decodes the chunk's new files straight into a recycled chunk buffer (HKO-7:
   PNGs with imagecodecs' libpng and zlib masks with libdeflate, see
   :mod:`pipeline.sources.hko7`; other sources: read and converted to dBZ pixels) and a
   task that adds the chunk's old frames (read from the parent snapshot) and hands the
   Blosc-compressed chunk to the session (:mod:`pipeline.store_chunks`); on dask
   distributed each write task gets a fork of the session (:meth:`icechunk.Session.fork`),
   the workers write their chunks into their forks in parallel and this process merges
   the forks (still one commit);
4. a frame whose PNG or mask still turns out unreadable is reported in
   :attr:`IngestReport.corrupt` with the reason and dropped; chunks from its position on
   are decoded and written again without it (the rest of the batch goes in);
5. writes ``time`` last and commits: ``ingest: add N frames, FIRST to LAST``.

Properties (see :mod:`pipeline.store` for the costs):

- **idempotent**: frames are keyed by time; ingesting the same days again writes nothing
  and makes no commit;
- **order-independent**: days ingested out of order end up sorted, and the store is
  identical (chunk for chunk) to an in-order ingest; inserting before existing frames
  rewrites the chunks after the insertion point, once per batch;
- **crash-safe**: a process killed at any moment leaves the last commit (it opens and
  holds whole batches only); the next run completes the store to the same content as a
  clean run; concurrent ingests into a local store are serialised by its writer lock;
- **bounded memory**: a few decoded chunks per worker (dask runs each chunk's write right
  after its decode; buffers are recycled) plus the frame list, whatever the batch size:
  peak RSS 186 MB for 1,868 frames in one batch or in four; a year is never held at once;
- a frame's pixels are stored exactly; ``mask = per-frame mask AND NOT exclude_mask``
  (``mask_dat.npz``; when the archive has no such file nothing is excluded, and a frame
  without a mask file is all valid).

Speed (``benchmarks/ingest.py``, best of 3, 2 synthetic days, 2 threads, shared 2-core
machine): 0.84 of bare Pillow decoding with the layout before Icechunk, 0.88 on Icechunk
(~10 ms per commit). Per frame, on top of the ~1.1 ms PNG decode: mask read and inflate
~0.05 ms, Blosc-LZ4 ~0.16 ms (pixels and mask, one thread), handing the chunk to the
session ~0.05 ms, plus ~50 ms per call to list the archive and lay out the batch.
"""

from __future__ import annotations

import functools
import os
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import hko7
from pipeline._chunk_io import _compute
from pipeline.objectstore.batches import BatchRetry
from pipeline.sources import DEFAULT_SOURCE, ingest_plan, new_store_attrs
from pipeline.store import (
    DATA_VARS,
    TIME_CHUNK,
    StoreWriter,
    create_store,
    is_url,
    resize_arrays,
)
from pipeline.store_chunks import _fast_codec, _put_chunk, _Sink

DEFAULT_BATCH_SIZE: int = 512
"""Frames per committed batch (a multiple of the time chunk, about two days)."""
BATCH_GROWTH: int = 10
"""Batches grow to ``1 / BATCH_GROWTH`` of the frames stored (see :func:`_batch_frames`)."""
MAX_GROWN_BATCH: int = 16384
"""Largest batch that growth alone gives (about 70 days of frames, ~15 s of work here)."""


def _batch_frames(batch_size: int, n_stored: int) -> int:
    """Frames in the next batch: *batch_size*, or a tenth of the store when that is more.

    Every commit writes a new manifest listing all chunks of the store (Icechunk), a cost
    that grows with the store. Growing batches with the store keep that cost at a few per
    cent of the ingest (O(n) in all instead of O(n^2)). Memory does not grow with the
    batch; a killed ingest loses at most the batch in progress.

    Examples
    --------
    >>> _batch_frames(512, 0), _batch_frames(512, 20_000), _batch_frames(512, 240_000)
    (512, 2000, 16384)
    """
    grown = min(MAX_GROWN_BATCH, n_stored // BATCH_GROWTH) // TIME_CHUNK * TIME_CHUNK
    return max(batch_size, grown)


@dataclass
class IngestReport:
    """What one :func:`ingest_archive` call did.

    Attributes
    ----------
    store : Path
        The store written.
    frames_found : int
        Frames listed in the archive within ``start``/``end``.
    frames_written : int
        Frames added to the store.
    skipped_existing : int
        Frames whose time the store already held (not read).
    corrupt : list of (str, str)
        ``(file path, reason)`` of each frame skipped because its PNG or mask is unreadable,
        and of each archive entry passed over: an impossible frame name or day folder, a
        symbolic link leading outside the archive root.
    seconds : float
        Wall-clock time of the call.
    batches : int
        Commits made (one per batch that added frames).
    commit_seconds : float
        Wall-clock time spent in the commits themselves.
    static_mask_used : bool
        Whether ``mask_dat.npz`` was found and applied.
    """

    store: Path
    frames_found: int = 0
    frames_written: int = 0
    skipped_existing: int = 0
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    batches: int = 0
    static_mask_used: bool = False
    commit_seconds: float = 0.0

    @property
    def frames_per_second(self) -> float:
        """Frames written per second of wall-clock time (0 when nothing was written)."""
        return self.frames_written / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One human-readable line."""
        return (
            f"{self.store}: {self.frames_written} frames written, {self.skipped_existing} "
            f"already present, {len(self.corrupt)} corrupt, of {self.frames_found} found; "
            f"{self.seconds:.1f} s ({self.frames_per_second:.0f} frames/s, "
            f"{self.batches} commits)"
        )


# ----------------------------------------------------------------------------- tasks


@dataclass
class _Decoder:
    """Decodes one file of *source* into chunk-buffer views (picklable for dask workers).

    Attributes
    ----------
    source : pipeline.sources.RadarSource
        The files' source (:meth:`~pipeline.sources.RadarSource.decode_into`).
    grid : pipeline.geo.Grid or None
        The store's grid (None for HKO-7: its fixed grid, checked by the PNG header).
    shape : (int, int)
        ``(H, W)`` of the store's frames.
    """

    source: object
    grid: object
    shape: tuple[int, int]

    def __call__(self, frame_path, mask_path, pixels_out, mask_out, valid_static):
        return self.source.decode_into(
            frame_path, mask_path, pixels_out, mask_out, valid_static, self.grid
        )


class _Opaque:
    """Holds a list that dask must not walk (hundreds of small tuples cost ~0.25 ms/frame)."""

    __slots__ = ("items",)

    def __init__(self, items: list) -> None:
        self.items = items


_POOL: queue.SimpleQueue = queue.SimpleQueue()
_POOL_MAX = 8


def _take_buffers(frame: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A ``(TIME_CHUNK, H, W)`` uint8 / bool buffer pair, recycled when possible.

    Fresh multi-megabyte arrays come from ``mmap`` and page-fault on first touch, which
    costs about 0.3 ms per frame here; reusing a few buffers per process avoids that.
    """
    shape = (TIME_CHUNK, *frame)
    try:
        pair = _POOL.get_nowait()
        if pair[0].shape == shape:
            return pair
    except queue.Empty:
        pass
    return np.empty(shape, dtype=np.uint8), np.empty(shape, dtype=bool)


def _give_buffers(pixels: np.ndarray, masks: np.ndarray) -> None:
    if _POOL.qsize() < _POOL_MAX:
        _POOL.put((pixels, masks))


def _decode_chunk(
    is_old: np.ndarray, sources: _Opaque, valid_static: np.ndarray | None, decoder: _Decoder
) -> tuple[np.ndarray | None, np.ndarray | None, list[tuple[str, str]]]:
    """Decode the new frames of one time chunk into chunk-sized buffers.

    Parameters
    ----------
    is_old : np.ndarray
        ``(m,)`` bool, True where slot ``i`` will hold a frame of the current version.
    sources : _Opaque
        ``list[tuple[str, str]]``: ``(frame_path, mask_path)`` of the other slots, in order
        (``mask_path == ""``: no mask file, all pixels valid).
    valid_static : np.ndarray or None
        ``(H, W)`` bool, False where the static mask excludes the pixel.
    decoder : _Decoder
        The source's decoding into the buffers.

    Returns
    -------
    pixels, masks : np.ndarray or None
        ``(TIME_CHUNK, H, W)`` uint8 / bool; new slots filled, old slots undefined,
        slots ``>= m`` zero (the fill value pads a partial last chunk). None on errors.
    errors : list of (str, str)
        ``(path, reason)`` of unreadable files (paths as given in *sources*).
    """
    pixels, masks = _take_buffers(decoder.shape)
    m = is_old.size
    if m < TIME_CHUNK:
        pixels[m:] = 0
        masks[m:] = False
    errors = []
    for slot, (frame_path, mask_path) in zip(np.flatnonzero(~is_old), sources.items, strict=True):
        err = decoder(frame_path, mask_path, pixels[slot], masks[slot], valid_static)
        if err is not None:
            errors.append(err)
    if errors:
        _give_buffers(pixels, masks)
        return None, None, errors
    return pixels, masks, errors


@functools.lru_cache(maxsize=8)
def _parent_arrays(location: str, snapshot: str) -> tuple[object, object]:
    """``reflectivity`` and ``mask`` of a committed snapshot (read-only; cached per process)."""
    import zarr

    from pipeline.store import open_repo

    store = open_repo(location).readonly_session(snapshot_id=snapshot).store
    group = zarr.open_group(store, mode="r")
    return group["reflectivity"], group["mask"]


def _write_chunk(
    sink: _Sink,
    parent: tuple[str, str],
    start: int,
    is_old: np.ndarray,
    old_lo: int,
    decoded: tuple[np.ndarray | None, np.ndarray | None, list[tuple[str, str]]],
) -> tuple[list[tuple[str, str]], list[tuple[str, bytes]]]:
    """Complete one decoded time chunk with the parent snapshot's frames and write it.

    Parameters
    ----------
    sink : _Sink
        Where the encoded chunks go.
    parent : (str, str)
        Store location and id of the snapshot the new one is based on (old frames are read
        from it: it never changes, whatever this batch has written already).
    start : int
        First frame index of the chunk (a multiple of ``TIME_CHUNK``).
    is_old : np.ndarray
        ``(m,)`` bool, True where slot ``i`` comes from the parent snapshot.
    old_lo : int
        Parent index of the first old slot (old slots are consecutive there).
    decoded : tuple
        Output of :func:`_decode_chunk` for this chunk (its buffers are recycled here).

    Returns
    -------
    errors : list of (str, str)
        The decode errors; when not empty nothing was written.
    payload : list of (str, bytes)
        Encoded chunks for the coordinator to write (when ``sink.store`` is None).
    """
    pixels, masks, errors = decoded
    if errors:
        return errors, []
    m = is_old.size
    n_old = int(is_old.sum())
    if n_old:
        slots = np.flatnonzero(is_old)
        for block, old in zip((pixels, masks), _parent_arrays(*parent), strict=True):
            block[slots] = old[old_lo : old_lo + n_old]
    payload = _put_chunk(sink, "reflectivity", start, pixels[:m], pixels)
    payload += _put_chunk(sink, "mask", start, masks[:m], masks)
    _give_buffers(pixels, masks)
    return [], payload


def _write_chunk_fork(
    fork,
    length: int,
    codecs: dict,
    parent: tuple[str, str],
    start: int,
    is_old: np.ndarray,
    old_lo: int,
    decoded: tuple,
) -> tuple[list[tuple[str, str]], object]:
    """:func:`_write_chunk` on a dask worker into *fork* (a forked session); returns the
    decode errors and the fork, for :meth:`pipeline.store.StoreWriter.merge`. The fork
    first gives its arrays the batch's *length* (a session with changes cannot be forked,
    so the coordinator's stays unchanged until the merge)."""
    import zarr

    if not decoded[2]:  # unreadable frames: nothing is written, the chunk is redone
        group = zarr.open_group(fork.store, mode="r+")
        for name in DATA_VARS:
            group[name].resize((length, *group[name].shape[1:]))
    errors, _ = _write_chunk(_Sink(fork.store, codecs), parent, start, is_old, old_lo, decoded)
    return errors, fork


# ----------------------------------------------------------------------------- driver


def _batch_message(new_secs: np.ndarray, errors: list) -> str:
    """Commit message of one ingest batch: what it added (frames, first and last time)."""

    def fmt(sec: np.int64) -> str:
        return pd.Timestamp(int(sec), unit="s").strftime("%Y-%m-%d %H:%M")

    msg = f"ingest: add {new_secs.size} frames, {fmt(new_secs.min())} to {fmt(new_secs.max())}"
    if errors:
        msg += f" ({len(errors)} unreadable files left out)"
    return msg


def _commit_batch(
    writer: StoreWriter,
    old_secs: np.ndarray,
    new_secs: np.ndarray,
    sources: list[tuple[str, str]],
    valid_static,
    workers: int,
    client,
    bar=None,
    report: IngestReport | None = None,
    decoder: _Decoder | None = None,
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Merge sorted new frames into the store as one commit (time added to *report*).

    Per time chunk from the insertion point on, one dask task decodes the chunk's new
    frames straight into a (recycled) chunk buffer and a second one adds the chunk's old
    frames and writes it, so chunks are written while other frames still decode and at
    most a few chunks per worker are in memory. Unreadable files are dropped: chunks
    before the first of them are already right, so only the chunks from there on are
    decoded and written again (on average half a batch per batch holding a bad file).

    Returns
    -------
    secs : np.ndarray
        Times (int64 s) of the store after the call (unchanged when no frame was readable).
    errors : list of (str, str)
        ``(path, reason)`` of unreadable files.
    """
    import dask

    n_old = old_secs.size
    first = int(np.searchsorted(old_secs, new_secs[0]))
    c0 = first // TIME_CHUNK
    start = c0 * TIME_CHUNK
    tail = old_secs[start:]
    distributed = client is not None
    # on a cluster the session stays unchanged until the workers' forks are merged
    group = writer.prepare(c0, n_old + new_secs.size, resize=not distributed)
    location = writer.location if is_url(writer.location) else Path(writer.location).absolute()
    parent = (str(location), writer.parent_snapshot)
    codecs = {name: _fast_codec(group[name].metadata.to_dict()) for name in DATA_VARS}
    if not distributed:  # threads of this process write into the session directly
        sink = _Sink(writer.session.store, codecs, {name: group[name] for name in DATA_VARS})
        write = dask.delayed(_write_chunk, pure=False)
    else:  # each task writes its chunk into a fork of the session, merged before the commit
        write = dask.delayed(_write_chunk_fork, pure=False)
    forks: dict[int, object] = {}  # time chunk -> fork that wrote it (latest attempt)
    decode = dask.delayed(_decode_chunk, pure=False)
    names = list(sources)  # (frame_path, mask_path) of each new frame still in the batch
    redo_from = c0
    all_errors: list[tuple[str, str]] = []
    for attempt in range(len(names) + 1):  # each retry drops at least one frame
        merged_tail = np.concatenate([tail, new_secs])
        order = np.argsort(merged_tail, kind="stable")
        length = n_old + new_secs.size
        writes, layout = [], []
        chunk_ids = range(redo_from, -(-length // TIME_CHUNK))
        for k in chunk_ids:
            sel = order[(k - c0) * TIME_CHUNK : (k - c0 + 1) * TIME_CHUNK]
            is_old = sel < tail.size
            old_idx = sel[is_old]
            new_idx = sel[~is_old] - tail.size
            old_lo = int(old_idx[0]) + start if old_idx.size else 0
            d = decode(is_old, _Opaque([names[i] for i in new_idx]), valid_static, decoder)
            args = (parent, k * TIME_CHUNK, is_old, old_lo, d)
            if distributed:
                writes.append(write(writer.session.fork(), length, codecs, *args))
            else:
                writes.append(write(sink, *args))
            layout.append((is_old, new_idx))

        def _tick(i: int, layout=layout) -> None:
            if bar is not None and i < len(layout):
                bar.update(int((~layout[i][0]).sum()))

        results = _compute(writes, workers, client, _tick if attempt == 0 else None)
        if distributed:
            forks.update(zip(chunk_ids, (fork for _, fork in results), strict=True))
        errors = [e for chunk_errors, _ in results for e in chunk_errors]
        if not errors:
            break
        all_errors.extend(errors)
        bad_paths = {path for path, _ in errors}
        bad = [i for i, (f, m) in enumerate(names) if f in bad_paths or m in bad_paths]
        if not bad:  # cannot happen: errors name the paths given in *sources*
            raise RuntimeError(f"unmatched decode errors: {errors}")
        # output position of the earliest bad frame: chunks before it are already right
        position = int(np.flatnonzero(order == tail.size + min(bad))[0]) + start
        redo_from = max(c0, position // TIME_CHUNK)
        bad_set = set(bad)
        keep = [i for i in range(len(names)) if i not in bad_set]
        names = [names[i] for i in keep]
        new_secs = new_secs[keep]
        if not keep:
            writer.abort()
            return old_secs, all_errors
        if not distributed:
            resize_arrays(group, n_old + new_secs.size)  # drops chunks past the end
    if distributed:  # the forks of chunks still in the store, then the final shape
        n_chunks = -(-length // TIME_CHUNK)
        writer.merge([fork for k, fork in sorted(forks.items()) if k < n_chunks])
        resize_arrays(group, length)
    secs = np.concatenate([old_secs[:start], merged_tail[order]])
    group["time"][:] = secs  # the time coordinate goes last, then the commit
    t_commit = time.perf_counter()
    writer.commit(_batch_message(new_secs, all_errors))
    writer.known_secs = secs
    if report is not None:
        report.commit_seconds += time.perf_counter() - t_commit
    return secs, all_errors


def ingest_archive(
    archive: str | os.PathLike,
    store: str | os.PathLike,
    start: object = None,
    end: object = None,
    workers: int | None = None,
    progress: bool = True,
    scheduler_address: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    follow_links: bool = False,
    source: str = DEFAULT_SOURCE,
) -> IngestReport:
    """Add an archive's frames to the radar store (created when missing).

    Parameters
    ----------
    archive : str or PathLike
        Archive root: an HKO-7 archive (holding ``radarPNG/``) or a folder of *source*'s
        files.
    store : str or PathLike
        Store directory or ``s3://bucket/prefix`` URL (see :mod:`pipeline.store`); created
        when it does not exist.
    start, end : timestamp-like, optional
        Inclusive time bounds of the frames to ingest (anything pandas parses).
    workers : int, optional
        Threads of the local dask scheduler (default: number of CPUs). Ignored when
        *scheduler_address* is given.
    progress : bool
        Show a tqdm bar with frame counts and frames/s.
    scheduler_address : str, optional
        Address of a running ``dask.distributed`` scheduler (e.g. ``tcp://host:8786``):
        its workers decode and write the chunks in parallel, each into a fork of the
        batch's Icechunk session, merged here into one commit per batch. The workers must
        see *archive* and a local *store* under the same paths (or reach the ``s3://``
        store, with the ``AWS_*`` variables set in their environment).
    batch_size : int
        Frames per commit, at least; batches grow to a tenth of the frames already stored
        (up to 16,384) so that the per-commit cost (the manifest of every chunk) stays a few
        per cent. A killed ingest loses the batch in progress.
    follow_links : bool
        Follow symbolic links leading outside the archive root; by default they are
        skipped and listed in :attr:`IngestReport.corrupt`.
    source : str
        Radar source of the files (:func:`pipeline.sources.get_source`: ``hko7``, ``odim``,
        ``knmi``, ``bom``, ``mch``, ``fmi``; docs/sources.md). A new store takes the grid
        of the first readable file; files on another grid are reported and skipped.

    Returns
    -------
    IngestReport
        Counts, corrupt frames with reasons, timing. ``corrupt`` also lists the entries
        passed over while walking the archive (impossible frame names and day folders,
        links outside the root; see :func:`pipeline.hko7.discover_frames`).

    Raises
    ------
    ValueError
        If *archive* is not an HKO-7 archive (or a folder), a bound is not a date, *start*
        is after *end*, *batch_size* or *workers* is not positive, *source* is unknown or
        none of its files is readable for a new store, or *store* exists and is not a
        radar store of the files' grid.
    """
    t_start = time.perf_counter()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    archive = Path(archive)
    store = str(store) if is_url(store) else Path(store)
    src, frames, skipped, grid, valid_static = ingest_plan(
        source, archive, store, start, end, follow_links
    )
    # no-op for an existing store; refuses the old layout
    create_store(store, grid=grid, attrs=new_store_attrs(src) or None)
    report = IngestReport(store=store, frames_found=len(frames), corrupt=skipped)
    report.static_mask_used = valid_static is not None

    client = None
    if scheduler_address is not None:
        from dask.distributed import Client

        client = Client(scheduler_address, set_as_default=False)
    try:
        with StoreWriter(store) as writer:
            shape = writer.frame_shape()
            want = hko7.FRAME_SHAPE if grid is None else grid.shape
            if shape != want or (grid is not None and not _same_coords(writer, grid)):
                raise ValueError(
                    f"store {store} holds {shape[0]} x {shape[1]} frames on another grid, "
                    f"expected the {want[0]} x {want[1]} grid of the {source} files"
                )
            decoder = _Decoder(src, grid, shape)
            frame_secs = frames.index.values.astype("datetime64[s]").astype(np.int64)
            retry = BatchRetry(store)
            while True:  # object storage: lost commit races and transient faults
                try:
                    secs = writer.times()
                    todo = ~np.isin(frame_secs, secs)
                    report.skipped_existing = int((~todo).sum()) - report.frames_written
                    _ingest_batches(
                        writer, frames[todo], frame_secs[todo], secs, valid_static,
                        batch_size, workers, client, progress, report, decoder,
                    )  # fmt: skip
                    break
                except Exception as err:
                    retry.after(err, frame_secs, writer.known_secs)
    finally:
        if client is not None:
            client.close()
    report.corrupt = list(dict.fromkeys(report.corrupt))  # a retried batch reports again
    report.seconds = time.perf_counter() - t_start
    return report


def _same_coords(writer: StoreWriter, grid) -> bool:
    """Whether the store's x/y are *grid*'s pixel centres (within 1 m)."""
    x, y = writer.frame_coords()
    return bool(np.allclose(x, grid.x, atol=1e-3) and np.allclose(y, grid.y, atol=1e-3))


def _ingest_batches(
    writer: StoreWriter,
    todo: pd.DataFrame,
    todo_secs: np.ndarray,
    secs: np.ndarray,
    valid_static: np.ndarray | None,
    batch_size: int,
    workers: int,
    client,
    progress: bool,
    report: IngestReport,
    decoder: _Decoder,
) -> None:
    import dask

    from pipeline.console.progress import progress_bar as tqdm

    static = dask.delayed(valid_static) if client is not None else valid_static
    bar = tqdm(total=len(todo), unit="frame", desc="ingest", disable=not progress, smoothing=0.1)
    try:
        b0 = 0
        while b0 < len(todo):
            n = _batch_frames(batch_size, secs.size)
            part = todo.iloc[b0 : b0 + n]
            part_secs = todo_secs[b0 : b0 + n]
            b0 += len(part)
            sources = list(zip(part["frame_path"], part["mask_path"], strict=True))
            early = decoder.source.precheck(sources)  # e.g. truncated PNGs, without decoding
            if early:
                report.corrupt.extend(early)
                bad = {path for path, _ in early}
                keep = [i for i, (f, _) in enumerate(sources) if f not in bad]
                sources = [sources[i] for i in keep]
                part_secs = part_secs[keep]
            if not sources:
                bar.update(b0 - bar.n)
                continue
            new_secs, errors = _commit_batch(
                writer, secs, part_secs, sources, static, workers, client, bar, report, decoder
            )
            report.corrupt.extend(errors)
            if new_secs.size > secs.size:
                report.frames_written += new_secs.size - secs.size
                report.batches += 1
            secs = new_secs
            bar.update(b0 - bar.n)  # exact count at the end of each batch
            bar.set_postfix(corrupt=len(report.corrupt), refresh=False)
    finally:
        bar.close()
