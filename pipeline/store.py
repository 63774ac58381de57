"""The radar Zarr store: schema, CF attributes, encodings, crash-safe versions, opening.

Schema (docs/contracts.md, Store schema)
----------------------------------------
Dims ``(time, y, x)``, 480 x 480 per frame for HKO-7 (any ``H x W`` on another source's
grid, with that source's projection as ``crs``: docs/sources.md):

- ``reflectivity (time, y, x)``: dBZ, stored as the HKO-7 ``uint8`` pixels with
  ``scale_factor = 70/255`` and ``add_offset = -10`` so that the decoded value equals
  ``pipeline.units.pixel_to_dbz(p)`` exactly once cast to float32 (:func:`open_store`
  returns float32; xarray alone decodes to float64 because JSON attributes carry no dtype).
- ``mask (time, y, x)`` bool: True = valid pixel (per-frame mask AND NOT the static
  ``exclude_mask``). Stored as one byte per pixel, Blosc-LZ4: about 5 KB per frame.
- ``crs``: scalar CF grid mapping (azimuthal equidistant, :mod:`pipeline.geo`).
- Coordinates ``time`` (int64 "seconds since 1970-01-01" on disk, datetime64[ns] decoded),
  ``y``/``x`` (km, pixel centres, ``y`` decreasing), 2-D ``lat``/``lon``.

Chunking: one time chunk = ``TIME_CHUNK = 16`` full frames
-------------------------------------------------------------
Readers want whole frames for short sequences (5-30 frames for training clips, whole
days for resampling). docs/facts.md section 9 measured 480 x 480 uint8 frames with Blosc
zstd on this machine: time chunk 16 writes about 300 frames/s and reads 1,500 frames/s;
time chunk 1 writes about 180 and reads only 260 (one file per frame). The cost of 16 is
that extending a partly filled chunk rewrites it (82 ms instead of 25 ms for one frame),
which only matters for frame-by-frame appends. Ingest writes in batches of whole chunks
(a day is 240 frames = 15 chunks), so that cost is paid once per batch. A 3.7 MB
uncompressed chunk is a good unit for dask too. Sharding (chunk 1 in shards of 64) was
not chosen: it reads slower than plain 16-frame chunks and is rewritten as a whole anyway.

Chunk keys: zarr's default ``c/<t>/0/0`` (the only encoding Icechunk accepts); on
Icechunk they are objects under ``chunks/``, named by the engine, not files per key.

Compression: Blosc-LZ4 (no shuffle) for both ``reflectivity`` and ``mask``. Measured on
synthetic HKO-7-like frames (64 % no-echo pixels) on this machine, per frame:
LZ4 level 1: 97 KB in 0.19 ms, Blosc-zstd-1 77 KB in 0.9 ms, zstd-3 about 3x slower again; the
PNG archive holds the same frame in about 55 KB (PNG's row filters help), so the store is
about 1.8x the archive. Ingest is bound by PNG decoding (~1.8 ms a frame), so LZ4 keeps
the store cheap to write and fastest to read; masks compress to ~5 KB a frame either way.

Engine: Icechunk (transactions, snapshots, object storage)
---------------------------------------------------------
A store is an Icechunk repository: a local directory or an ``s3://bucket/prefix`` URL
(see :func:`open_repo`). Each update (an ingest batch, see :class:`StoreWriter`) is one
commit on branch ``main`` with a message saying what it added; ``nowcast store log STORE``
lists them (:func:`store_log`) and any snapshot opens read-only
(``open_store(path, snapshot=ID)``).

- **readers keep their snapshot**: :func:`open_store` reads from a read-only session, and
  Icechunk never changes or deletes the chunks of a committed snapshot (no garbage
  collection is run), so a dataset opened before later commits reads the same values;
- **crash safety**: a writer writes new chunk objects first and moves the branch ref last,
  so a process killed at any point leaves the last commit as it was; the chunk objects of
  an unfinished commit are unreferenced (``icechunk`` garbage collection can remove them);
- **sorted time**: chunk ``k`` always holds sorted frames ``16k .. 16k+15``; appending in
  time order rewrites only the last, partly filled chunk plus the new ones (the others are
  shared with the parent snapshot by reference), a day inserted before existing frames
  rewrites the chunks from its insertion point on, streamed from the parent snapshot;
- **concurrency**: Icechunk's local-filesystem storage is not safe for concurrent commits,
  so local writers hold an ``flock`` on ``.<store name>.lock`` beside the store
  (:func:`store_lock`); on object storage a conflicting commit is detected and refused
  with a clear message (:class:`CommitConflictError`; ingest redoes the batch from the new
  tip);
- **distributed writes**: on a dask cluster each write task gets a fork of the batch's
  session (``Session.fork``), writes its chunks to storage itself, and the forks are merged
  into the session before its one commit (:meth:`StoreWriter.merge`);
- **old stores** (version folders ``vNNNNNN.zarr`` and a ``CURRENT`` pointer, before
  2026-12) are recognised and refused with the command that converts them,
  ``nowcast store migrate OLD NEW`` (:mod:`pipeline.store_migrate`).

Open a store with one line, ``ds = pipeline.store.open_store("radar.zarr")``; with
icechunk and xarray only::

    repo = icechunk.Repository.open(icechunk.local_filesystem_storage("radar.zarr"))
    ds = xr.open_zarr(repo.readonly_session("main").store, consolidated=False)
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from pipeline import geo
from pipeline.schema import STORE_ATTRS as GLOBAL_ATTRS
from pipeline.schema import validate_store  # noqa: F401 (re-exported: the store schema's check)
from pipeline.store_engine import (  # noqa: F401 (re-exported: store locations)
    REPO_ENTRIES,
    CommitConflictError,
    _call,
    _old_layout_error,
    _session_store,
    _storage,
    as_location,
    commit_checked,
    create_or_open,
    holds_group,
    is_icechunk_store,
    is_old_layout,
    is_url,
    join_location,
    open_group,
    open_or_create_repo,
    open_repo,
    store_lock,
    store_log,
)
from pipeline.store_writer import DATA_VARS, StoreWriter, resize_arrays  # noqa: F401 (re-exported)
from pipeline.units import lookup_pixels

TIME_CHUNK: int = 16
"""Frames per time chunk of ``reflectivity`` and ``mask``."""
TIME_COORD_CHUNK: int = 4096
"""Values per chunk of the ``time`` coordinate."""
TIME_UNITS: str = "seconds since 1970-01-01"
"""On-disk encoding of ``time`` (int64)."""
SCALE_FACTOR: float = 70.0 / 255.0
"""dBZ per pixel step."""
ADD_OFFSET: float = -10.0
"""dBZ of pixel 0."""


def _codecs(kind: str) -> list:
    from zarr.codecs import BloscCodec

    if kind == "mask":
        return [BloscCodec(cname="lz4", clevel=1, shuffle="noshuffle", typesize=1)]
    if kind == "pixels":
        return [BloscCodec(cname="lz4", clevel=1, shuffle="noshuffle", typesize=1)]
    return [BloscCodec(cname="zstd", clevel=3, shuffle="shuffle", typesize=8)]


def _write_schema(store, size: int, source_grid=None, attrs: dict | None = None) -> None:
    """Write an empty (time length 0) store schema as a Zarr v3 group into *store*.

    *source_grid* (a :class:`pipeline.geo.Grid`, any ``(H, W)``) replaces the HKO-7 grid of
    *size*; *attrs* update the global attributes (docs/sources.md).
    """
    import zarr

    g = zarr.open_group(
        store, mode="w", zarr_format=3, attributes={**GLOBAL_ATTRS, **(attrs or {})}
    )
    if source_grid is None:
        grid, frame, crs_attrs = geo.grid_coords(size), (size, size), geo.crs_attrs()
    else:  # a source's own projection: x/y in km, lat/lon by pyproj, CF mapping by pyproj
        lat, lon = source_grid.lat_lon()
        grid = geo.GridCoords(x=source_grid.x, y=source_grid.y, lat=lat, lon=lon)
        frame, crs_attrs = source_grid.shape, source_grid.cf_attrs()
    # zarr's default "/" chunk keys (c/<t>/0/0): the only ones Icechunk accepts
    common = {"chunk_key_encoding": {"name": "default", "separator": "/"}}
    g.create_array(
        "reflectivity",
        shape=(0, *frame),
        dtype="uint8",
        chunks=(TIME_CHUNK, *frame),
        compressors=_codecs("pixels"),
        fill_value=0,
        dimension_names=("time", "y", "x"),
        attributes={
            "standard_name": "equivalent_reflectivity_factor",
            "long_name": "equivalent radar reflectivity factor at 2 km altitude",
            "units": "dBZ",
            "scale_factor": SCALE_FACTOR,
            "add_offset": ADD_OFFSET,
            "valid_min": 0,
            "valid_max": 255,
            "grid_mapping": "crs",
            "coordinates": "lat lon",
            "comment": "stored as the HKO-7 8-bit pixel p; dBZ = p * scale_factor + add_offset",
        },
        **common,
    )
    g.create_array(
        "mask",
        shape=(0, *frame),
        dtype="bool",
        chunks=(TIME_CHUNK, *frame),
        compressors=_codecs("mask"),
        fill_value=False,
        dimension_names=("time", "y", "x"),
        attributes={
            "long_name": "valid pixel mask (true = use the pixel)",
            "comment": "per-frame HKO-7 mask AND NOT the static exclude_mask (outlier | "
            "out of boundary)",
            "grid_mapping": "crs",
            "coordinates": "lat lon",
        },
        **common,
    )
    g.create_array(
        "time",
        shape=(0,),
        dtype="int64",
        chunks=(TIME_COORD_CHUNK,),
        compressors=_codecs("coord"),
        fill_value=0,
        dimension_names=("time",),
        attributes={
            "standard_name": "time",
            "long_name": "observation time (UTC)",
            "units": TIME_UNITS,
            "calendar": "proleptic_gregorian",
            "axis": "T",
        },
        **common,
    )
    for name, values, attrs in (
        (
            "x",
            grid.x,
            {
                "standard_name": "projection_x_coordinate",
                "long_name": "x distance east of the radar (pixel centre)"
                if source_grid is None
                else "x of the source projection (pixel centre)",
                "units": "km",
                "axis": "X",
            },
        ),
        (
            "y",
            grid.y,
            {
                "standard_name": "projection_y_coordinate",
                "long_name": "y distance north of the radar (pixel centre)"
                if source_grid is None
                else "y of the source projection (pixel centre)",
                "units": "km",
                "axis": "Y",
            },
        ),
    ):
        a = g.create_array(
            name,
            shape=values.shape,
            dtype="float64",
            chunks=values.shape,
            compressors=_codecs("coord"),
            fill_value=np.nan,
            dimension_names=(name,),
            attributes=attrs,
            **common,
        )
        a[:] = values
    for name, values, attrs in (
        ("lat", grid.lat, {"standard_name": "latitude", "units": "degrees_north"}),
        ("lon", grid.lon, {"standard_name": "longitude", "units": "degrees_east"}),
    ):
        a = g.create_array(
            name,
            shape=values.shape,
            dtype="float64",
            chunks=values.shape,
            compressors=_codecs("coord"),
            fill_value=np.nan,
            dimension_names=("y", "x"),
            attributes=attrs,
            **common,
        )
        a[:] = values
    crs = g.create_array(
        "crs",
        shape=(),
        dtype="int32",
        fill_value=0,
        dimension_names=(),
        attributes=crs_attrs,
        **common,
    )
    crs[()] = 0


_REPO_ENTRIES = REPO_ENTRIES


def create_store(
    location: str | os.PathLike, size: int = geo.NATIVE_SIZE, grid=None, attrs=None
) -> str | Path:
    """Create an empty radar store (no frames yet) at *location*: one commit.

    Safe against concurrent callers (one creates, the others find the store: on object
    storage, where there is no lock, a creator that loses the race opens the store that
    won) and against a creator killed half-way (an uncommitted schema is written again).

    Parameters
    ----------
    location : str or PathLike
        Directory (must not exist or be empty) or ``s3://bucket/prefix`` URL. An existing
        store is left alone.
    size : int
        Pixels per side of a frame (480 for HKO-7).
    grid : pipeline.geo.Grid, optional
        A radar source's grid (any ``(H, W)``, its projection as the ``crs`` grid mapping;
        :mod:`pipeline.sources`) instead of the HKO-7 grid of *size*.
    attrs : dict, optional
        Global attributes replacing the HKO-7 ones (title, source, history).

    Returns
    -------
    Path or str
        The store directory (a Path) or URL (a str).

    Raises
    ------
    ValueError
        If *location* is a non-empty directory that is not a radar store, a file, or a
        store of the old layout.
    """

    out: str | Path = str(location) if is_url(location) else Path(location)
    if is_old_layout(location):
        raise _old_layout_error(Path(location))
    if not is_url(location):
        p = Path(location)
        if p.exists() and (not p.is_dir() or not all(x.name in _REPO_ENTRIES for x in p.iterdir())):
            raise ValueError(
                f"cannot create a radar store at {p}: it exists and is not an empty directory "
                "or an existing store"
            )
    if is_url(location) and not holds_group(location):
        from pipeline.objectstore.claim import create_once
        from pipeline.store_engine import _split_url

        bucket, prefix = _split_url(str(location))
        create = functools.partial(_create_store, location, size, grid, attrs)
        create_once(str(location), bucket, prefix, create, lambda: holds_group(location))
        return out
    _create_store(location, size, grid, attrs)
    return out


def _create_store(location, size, grid, attrs) -> None:
    """The creation of :func:`create_store` (under the store's lock, or its claim)."""
    import icechunk
    import zarr

    with store_lock(location):
        storage = _storage(location)
        if _call(location, lambda: icechunk.Repository.exists(storage), "open the store"):
            repo = _call(location, lambda: icechunk.Repository.open(storage), "open the store")
        else:
            if not is_url(location):  # leftovers of a creator killed before its first ref
                for name in _REPO_ENTRIES & {x.name for x in Path(location).iterdir()}:
                    target = Path(location) / name
                    shutil.rmtree(target) if target.is_dir() else target.unlink()
            repo = create_or_open(location, "radar store")
        session = _call(location, lambda: repo.writable_session("main"), "open the store")
        try:
            zarr.open_group(session.store, mode="r")
            return  # another process was first
        except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
            pass
        _write_schema(session.store, size, grid, attrs)
        h, w = grid.shape if grid is not None else (size, size)
        try:
            session.commit(f"create an empty radar store ({h} x {w} frames)")
        except icechunk.ConflictError:
            # object storage: another creator committed its schema first; use that one
            if not holds_group(location):
                raise


# ----------------------------------------------------------------------------- reading


def store_times(location: str | os.PathLike, snapshot: str | None = None) -> pd.DatetimeIndex:
    """Committed frame times of a store without opening it with xarray.

    Returns
    -------
    pandas.DatetimeIndex
        Named ``time``, sorted, datetime64[ns].
    """
    import zarr

    g = zarr.open_group(_session_store(location, snapshot), mode="r")
    secs = np.asarray(g["time"][:], dtype=np.int64)
    return pd.DatetimeIndex(secs.astype("datetime64[s]").astype("datetime64[ns]"), name="time")


def open_store(path, chunks: dict | str = "auto", snapshot: str | None = None) -> xr.Dataset:
    """Open a radar store lazily (dask-backed) from a read-only session.

    An Icechunk store (directory or ``s3://`` URL) is read from a read-only session of the
    latest snapshot of ``main``, or of *snapshot*: the dataset keeps reading that snapshot
    whatever writers commit later. Any other directory is opened as a plain Zarr group.
    Grid-mapping variables (``crs``) and ``lat``/``lon`` become coordinates. A ``uint8``
    ``reflectivity`` is returned as float32 dBZ (``encoding`` kept, so ``to_zarr`` writes
    ``uint8`` again). The equivalent without this package::

        repo = icechunk.Repository.open(icechunk.local_filesystem_storage("radar.zarr"))
        ds = xr.open_zarr(repo.readonly_session("main").store, consolidated=False)

    Parameters
    ----------
    path : str, PathLike or icechunk.IcechunkStore
        Store directory, ``s3://bucket/prefix`` URL, or an already pinned session store.
    chunks : dict or "auto"
        Dask chunks for :func:`xarray.open_zarr`; ``"auto"`` keeps the on-disk chunks
        (16 frames). ``None`` (no dask) is refused: it would decode the whole store.
    snapshot : str, optional
        Snapshot id (see :func:`store_log`) to open instead of the latest.

    Returns
    -------
    xarray.Dataset
        Dims ``(time, y, x)``; see the module docstring for variables.

    Raises
    ------
    FileNotFoundError
        If *path* does not exist.
    ValueError
        If *path* holds no Zarr group, or is a store of the old layout.
    """
    import zarr

    if chunks is None:
        raise ValueError(
            "open_store needs dask chunks (a dict or 'auto'), got None: reflectivity is "
            "decoded lazily per chunk"
        )
    if chunks == "auto":
        chunks = {}
    if isinstance(path, str | os.PathLike):
        if is_url(path) or is_icechunk_store(path) or is_old_layout(path):
            target = _session_store(path, snapshot)
        else:
            p = Path(path)
            if not p.exists():
                raise FileNotFoundError(f"radar store {p} does not exist")
            if not (p / "zarr.json").is_file() and not (p / ".zgroup").is_file():
                raise ValueError(
                    f"{p} is not a Zarr store: expected an Icechunk repository or a Zarr "
                    "group (zarr.json)"
                )
            target = p
    else:
        target = path
    group = zarr.open_group(target, mode="r")
    own = (
        not isinstance(target, Path)
        and "reflectivity" in group
        and group["reflectivity"].dtype == np.uint8
    )
    if own:  # our own schema: decode the uint8 pixels through a lookup table
        ds = xr.open_zarr(
            target, consolidated=False, decode_coords="all", chunks=chunks, mask_and_scale=False
        )
        return _decode_pixels(ds)
    ds = xr.open_zarr(target, consolidated=False, decode_coords="all", chunks=chunks)
    if "reflectivity" in ds and ds["reflectivity"].dtype == np.float64:
        enc_dtype = ds["reflectivity"].encoding.get("dtype")
        if enc_dtype is not None and np.issubdtype(np.dtype(enc_dtype), np.integer):
            var = ds["reflectivity"]
            cast = var.astype(np.float32)
            cast.attrs = dict(var.attrs)
            cast.encoding = dict(var.encoding)
            ds["reflectivity"] = cast
    return ds


def _decode_pixels(ds: xr.Dataset) -> xr.Dataset:
    """Replace raw ``uint8`` reflectivity by float32 dBZ via a 256-entry lookup table.

    Same values as xarray's CF decoding cast to float32 (``p * scale_factor + add_offset``
    in float64, then rounded once), without the float64 intermediate: about 10x faster.
    """
    raw = ds["reflectivity"]
    attrs = dict(raw.attrs)
    scale = float(attrs.pop("scale_factor", 1.0))
    offset = float(attrs.pop("add_offset", 0.0))
    if raw.dtype != np.uint8:
        raise ValueError(f"reflectivity is stored as {raw.dtype}, expected uint8 pixels")
    lut = (np.arange(256, dtype=np.float64) * scale + offset).astype(np.float32)
    decode = functools.partial(lookup_pixels, lut=lut)
    dbz = raw.copy(data=raw.data.map_blocks(decode, dtype=np.float32))  # keeps coords
    dbz.attrs = attrs
    dbz.encoding = dict(
        raw.encoding, dtype=np.dtype("uint8"), scale_factor=scale, add_offset=offset
    )
    ds["reflectivity"] = dbz
    return ds
