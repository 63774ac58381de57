"""The radar Zarr store: schema, CF attributes, encodings, crash-safe versions, opening.

Schema (contract C2)
--------------------
Dims ``(time, y, x)``, 480 x 480 per frame:

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
days for resampling). REFERENCE.md section 9 measured 480 x 480 uint8 frames with Blosc
zstd on this machine: time chunk 16 writes about 300 frames/s and reads 1,500 frames/s;
time chunk 1 writes about 180 and reads only 260 (one file per frame). The cost of 16 is
that extending a partly filled chunk rewrites it (82 ms instead of 25 ms for one frame),
which only matters for frame-by-frame appends. Ingest writes in batches of whole chunks
(a day is 240 frames = 15 chunks), so that cost is paid once per batch. A 3.7 MB
uncompressed chunk is a good unit for dask too. Sharding (chunk 1 in shards of 64) was
not chosen: it reads slower than plain 16-frame chunks and is rewritten as a whole anyway.

Chunk keys: ``c.<t>.0.0`` files directly in each array directory (zarr's default key
encoding with the ``"."`` separator), so writing a new time chunk creates one file and no
directories. Stores written before 2026-11 use ``c/<t>/0/0``; they are read and extended in
their own layout.

Compression: Blosc-LZ4 (no shuffle) for both ``reflectivity`` and ``mask``. Measured on
synthetic HKO-7-like frames (64 % no-echo pixels) on this machine, per frame:
LZ4 level 1: 97 KB in 0.19 ms, Blosc-zstd-1 77 KB in 0.9 ms, zstd-3 about 3x slower again; the
PNG archive holds the same frame in about 55 KB (PNG's row filters help), so the store is
about 1.8x the archive. Ingest is bound by PNG decoding (~1.8 ms a frame), so LZ4 keeps
the store cheap to write and fastest to read; masks compress to ~5 KB a frame either way.

Crash safety and sorted time: copy-on-write versions
----------------------------------------------------
The store path is a directory holding complete Zarr groups ``vNNNNNN.zarr`` and a
one-line file ``CURRENT`` naming the committed one. An update (see :class:`StoreWriter`)
builds the next version in a hidden ``.vNNNNNN.partial`` directory: every chunk *before*
the first touched time chunk is hard-linked from the current version (free: no bytes are
copied), every chunk from there on is written anew, then the directory is renamed and
``CURRENT`` is replaced atomically (``os.replace``) -- that rename is the commit. A
process killed at any point leaves ``CURRENT`` naming a complete version, so the store
always opens; leftovers are deleted by the next writer.

Consequences and costs:

- appending days in time order rewrites only the last, partly filled chunk plus the new
  chunks, and hard-links the rest (about 11k links per commit for a year of frames,
  ~0.2 s);
- a day that belongs *before* existing frames rewrites every chunk from its insertion
  point to the end (streamed chunk by chunk from the previous version, so memory stays a
  few chunks per worker), i.e. O(frames after the insertion point) -- once per batch;
- the layout is a pure function of the set of frames (chunk ``k`` always holds sorted
  frames ``16k .. 16k+15``), so a store built in any order, or resumed after a crash, has
  the same chunks byte for byte as a clean in-order build;
- the previous ``KEEP_VERSIONS - 1`` versions are kept so that a reader that opened the
  store just before a commit keeps working; older ones are removed after the commit;
- the file system must support hard links (otherwise chunks are copied: correct but slow);
- a shared (linked) file is never written to: chunks from the first touched one on are
  created anew in the new version and metadata files are copied, not linked (zarr-python
  3.1 also writes through a temporary file and a rename, which would be safe anyway).

Use :func:`open_store` to read: it follows ``CURRENT`` (and opens plain Zarr stores, such
as resampled ones, directly).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from pipeline import geo

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
KEEP_VERSIONS: int = 2
"""Committed versions kept on disk (the current one and its predecessor)."""
CURRENT_FILE: str = "CURRENT"
DATA_VARS: tuple[str, ...] = ("reflectivity", "mask")
"""Variables with a time dimension written by ingest."""

_VERSION_RE = re.compile(r"^v(\d{6})\.zarr$")
_PARTIAL_RE = re.compile(r"^\.v(\d{6})\.partial$")

GLOBAL_ATTRS: dict[str, str] = {
    "Conventions": "CF-1.10",
    "title": "HKO-7 style radar reflectivity at 2 km altitude (Zarr)",
    "institution": "hko-nowcast pipeline",
    "source": "ground-based weather radar, HKO-7 archive layout (radarPNG, radarPNG_mask, "
    "mask_dat.npz)",
    "history": "pipeline.ingest: HKO-7 uint8 PNG frames copied losslessly (pixel p -> "
    "dBZ = p / 255 * 70 - 10); mask = per-frame mask AND NOT static exclude_mask",
    "references": "Shi et al. 2017, Deep Learning for Precipitation Nowcasting: A Benchmark "
    "and A New Model (HKO-7)",
}


def _codecs(kind: str) -> list:
    from zarr.codecs import BloscCodec

    if kind == "mask":
        return [BloscCodec(cname="lz4", clevel=1, shuffle="noshuffle", typesize=1)]
    if kind == "pixels":
        return [BloscCodec(cname="lz4", clevel=1, shuffle="noshuffle", typesize=1)]
    return [BloscCodec(cname="zstd", clevel=3, shuffle="shuffle", typesize=8)]


def _write_schema(group_path: Path, size: int) -> None:
    """Write an empty (time length 0) store schema as a Zarr v3 group at *group_path*."""
    import zarr

    g = zarr.open_group(str(group_path), mode="w", zarr_format=3, attributes=GLOBAL_ATTRS)
    grid = geo.grid_coords(size)
    frame = (size, size)
    # "." keys (c.<t>.0.0) keep every chunk file in its array directory: no directory
    # per time chunk to create (two mkdirs per chunk and array, ~0.3 ms each on this VM)
    common = {"chunk_key_encoding": {"name": "default", "separator": "."}}
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
                "long_name": "x distance east of the radar (pixel centre)",
                "units": "km",
                "axis": "X",
            },
        ),
        (
            "y",
            grid.y,
            {
                "standard_name": "projection_y_coordinate",
                "long_name": "y distance north of the radar (pixel centre)",
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
        attributes=geo.crs_attrs(),
        **common,
    )
    crs[()] = 0


# ----------------------------------------------------------------------------- versions


def _read_current(path: Path) -> str | None:
    f = path / CURRENT_FILE
    if not f.is_file():
        return None
    name = f.read_text().strip()
    if not _VERSION_RE.match(name):
        raise ValueError(f"{f}: expected a version name like 'v000001.zarr', got {name!r}")
    return name


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_current(path: Path, name: str) -> None:
    tmp = path / f".{CURRENT_FILE}.tmp"
    with open(tmp, "w") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path / CURRENT_FILE)
    _fsync_dir(path)


def is_versioned_store(path: str | os.PathLike) -> bool:
    """True when *path* is a store made by :func:`create_store` (has a ``CURRENT`` file)."""
    return (Path(path) / CURRENT_FILE).is_file()


def current_version(path: str | os.PathLike) -> Path:
    """Directory of the committed Zarr group of the store at *path*.

    Raises
    ------
    FileNotFoundError
        If *path* does not exist.
    ValueError
        If *path* is not a store made by :func:`create_store`.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"radar store {p} does not exist")
    name = _read_current(p)
    if name is None:
        raise ValueError(
            f"{p} is not a versioned radar store: expected a '{CURRENT_FILE}' file naming a "
            "'vNNNNNN.zarr' group (create one with pipeline.store.create_store)"
        )
    vdir = p / name
    if not (vdir / "zarr.json").is_file():
        raise ValueError(f"{p}: {CURRENT_FILE} names {name!r} but {vdir} holds no Zarr group")
    return vdir


@contextlib.contextmanager
def _store_lock(path: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``<path>/.lock`` (released by the OS even on SIGKILL)."""
    with open(path / ".lock", "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _is_leftover(name: str) -> bool:
    """Names a killed writer may leave in a store directory."""
    return (
        name in (".lock", f".{CURRENT_FILE}.tmp")
        or bool(_VERSION_RE.match(name))
        or bool(_PARTIAL_RE.match(name))
    )


def create_store(path: str | os.PathLike, size: int = geo.NATIVE_SIZE) -> Path:
    """Create an empty radar store (no frames yet) at *path*.

    Safe against concurrent callers (one creates, the others find the store) and against
    a creator killed half-way (its leftovers are replaced).

    Parameters
    ----------
    path : str or PathLike
        Directory to create; must not exist or be empty. An existing store is left alone.
    size : int
        Pixels per side of a frame (480 for HKO-7).

    Returns
    -------
    Path
        The store directory.

    Raises
    ------
    ValueError
        If *path* is a non-empty directory that is not a radar store, or a file.
    """
    p = Path(path)
    if is_versioned_store(p):
        return p
    if p.exists() and (not p.is_dir() or not all(_is_leftover(x.name) for x in p.iterdir())):
        raise ValueError(
            f"cannot create a radar store at {p}: it exists and is not an empty directory "
            "or an existing store"
        )
    p.mkdir(parents=True, exist_ok=True)
    with _store_lock(p):
        if is_versioned_store(p):  # another process was first
            return p
        for name in (".v000001.partial", "v000001.zarr"):
            if (p / name).exists():  # uncommitted: CURRENT was never written
                shutil.rmtree(p / name)
        _write_schema(p / ".v000001.partial", size)
        os.rename(p / ".v000001.partial", p / "v000001.zarr")
        _write_current(p, "v000001.zarr")
    return p


def _time_chunk_index(rel_parts: tuple[str, ...], name: str) -> int | None:
    """Time-chunk index of chunk file *name* in directory *rel_parts* of a version, or None.

    Chunk keys are ``c.<t>.<y>.<x>`` files in the array directory (this store's layout),
    or ``c/<t>/<y>/<x>`` (zarr's default ``"/"`` separator, stores written before 2026-11).
    """
    if len(rel_parts) == 1 and name.startswith("c."):
        return int(name.split(".")[1])
    if len(rel_parts) >= 3 and rel_parts[1] == "c":
        return int(rel_parts[2])
    return None


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copy2(src, dst)


class StoreWriter:
    """Low-level, crash-safe writer of the next store version (used by :mod:`pipeline.ingest`).

    Use as a context manager: it takes an exclusive ``flock`` on ``<store>/.lock`` (released
    by the OS even on SIGKILL) and deletes uncommitted leftovers of killed writers.

    Parameters
    ----------
    path : str or PathLike
        A store made by :func:`create_store`.

    Examples
    --------
    >>> with StoreWriter(path) as w:                      # doctest: +SKIP
    ...     group = w.prepare(first_time_chunk=3, length=100)
    ...     group["reflectivity"][48:100] = pixels       # chunk-aligned start
    ...     group["time"][:] = seconds
    ...     w.commit()
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = None
        self._partial: Path | None = None
        self._next: str | None = None

    # -- context management
    def __enter__(self) -> StoreWriter:
        current_version(self.path)  # validates
        self._lock = _store_lock(self.path)
        self._lock.__enter__()
        self._cleanup(keep=KEEP_VERSIONS)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._partial is not None and self._partial.exists():
                shutil.rmtree(self._partial, ignore_errors=True)
            self._partial = None
        finally:
            if self._lock is not None:
                self._lock.__exit__(None, None, None)
                self._lock = None

    # -- state
    @property
    def current(self) -> Path:
        """Directory of the committed version."""
        return current_version(self.path)

    @property
    def partial_dir(self) -> Path | None:
        """Directory of the version being prepared (None outside ``prepare``/``commit``)."""
        return self._partial

    def frame_shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of the store's frames."""
        import zarr

        g = zarr.open_group(str(self.current), mode="r")
        return tuple(int(n) for n in g["reflectivity"].shape[1:])

    def times(self) -> np.ndarray:
        """Committed frame times as int64 seconds since 1970-01-01, sorted."""
        import zarr

        g = zarr.open_group(str(self.current), mode="r")
        return np.asarray(g["time"][:], dtype=np.int64)

    def _cleanup(self, keep: int) -> None:
        current = _read_current(self.path)
        versions = sorted(
            (int(m.group(1)), d.name)
            for d in self.path.iterdir()
            if (m := _VERSION_RE.match(d.name)) and d.is_dir()
        )
        cur_num = int(_VERSION_RE.match(current).group(1)) if current else 0
        kept = [name for num, name in versions if num <= cur_num][-keep:]
        for d in self.path.iterdir():
            if d.name in kept or d.name in (CURRENT_FILE, ".lock"):
                continue
            if _VERSION_RE.match(d.name) or _PARTIAL_RE.match(d.name):
                shutil.rmtree(d, ignore_errors=True)
            elif d.name == f".{CURRENT_FILE}.tmp":
                d.unlink()

    # -- update
    def prepare(self, first_time_chunk: int, length: int):
        """Start the next version: a copy of the current one sharing its unchanged chunks.

        Time chunks ``< first_time_chunk`` of ``reflectivity`` and ``mask`` are hard-linked
        from the current version; the rest must be written by the caller, who must also
        rewrite the whole ``time`` array. Arrays are resized to *length* frames.

        Parameters
        ----------
        first_time_chunk : int
            Index of the first time chunk the caller will (re)write.
        length : int
            Number of frames of the new version (>= committed length).

        Returns
        -------
        zarr.Group
            The new version, opened for writing.
        """
        import zarr

        cur = self.current
        num = int(_VERSION_RE.match(cur.name).group(1)) + 1
        self._next = f"v{num:06d}.zarr"
        part = self.path / f".v{num:06d}.partial"
        if part.exists():
            shutil.rmtree(part)
        self._partial = part
        for src_dir, dirs, files in os.walk(cur):
            rel = Path(src_dir).relative_to(cur)
            dst_dir = part / rel
            dst_dir.mkdir(parents=True, exist_ok=True)
            top = rel.parts[0] if rel.parts else ""
            for f in files:
                src = Path(src_dir) / f
                if f == "zarr.json":
                    shutil.copyfile(src, dst_dir / f)  # rewritten by resize: never share
                    continue
                if top == "time":
                    continue
                if top in DATA_VARS:
                    t_chunk = _time_chunk_index(rel.parts, f)
                    if t_chunk is not None and t_chunk >= first_time_chunk:
                        continue
                _link_or_copy(src, dst_dir / f)
            dirs.sort()
        g = zarr.open_group(str(part), mode="r+")
        for name in DATA_VARS:
            arr = g[name]
            arr.resize((length, *arr.shape[1:]))
        g["time"].resize((length,))
        return g

    def abort(self) -> None:
        """Discard the prepared version (the current one stays as it is)."""
        if self._partial is not None and self._partial.exists():
            shutil.rmtree(self._partial)
        self._partial = None
        self._next = None

    def commit(self) -> Path:
        """Make the prepared version the current one (atomic) and drop old versions.

        Returns
        -------
        Path
            Directory of the new current version.
        """
        if self._partial is None or self._next is None:
            raise ValueError(f"{self.path}: commit() called without prepare()")
        final = self.path / self._next
        os.rename(self._partial, final)
        _fsync_dir(self.path)
        _write_current(self.path, self._next)
        self._partial = None
        self._cleanup(keep=KEEP_VERSIONS)
        return final


# ----------------------------------------------------------------------------- reading


def store_times(path: str | os.PathLike) -> pd.DatetimeIndex:
    """Committed frame times of a versioned store without opening it with xarray.

    Returns
    -------
    pandas.DatetimeIndex
        Named ``time``, sorted, datetime64[ns].
    """
    import zarr

    g = zarr.open_group(str(current_version(path)), mode="r")
    secs = np.asarray(g["time"][:], dtype=np.int64)
    return pd.DatetimeIndex(secs.astype("datetime64[s]").astype("datetime64[ns]"), name="time")


def open_store(path: str | os.PathLike, chunks: dict | str = "auto") -> xr.Dataset:
    """Open a radar store lazily (dask-backed).

    Follows ``CURRENT`` for stores made by :func:`create_store`; any other path is opened
    as a plain Zarr group (for example a resampled store). The dataset reads the version
    that was current when it was opened; that version stays on disk until two more
    commits have happened (``KEEP_VERSIONS``), so reopen long-lived datasets after ingests. Grid-mapping variables (``crs``)
    and ``lat``/``lon`` become coordinates. An integer-encoded ``reflectivity`` is returned
    as float32 dBZ (``encoding`` kept, so ``to_zarr`` writes ``uint8`` again).

    Parameters
    ----------
    path : str or PathLike
        Store directory.
    chunks : dict or "auto"
        Dask chunks for :func:`xarray.open_zarr`; ``"auto"`` keeps the on-disk chunks
        (16 frames). ``None`` (no dask) is refused: it would decode the whole store.

    Returns
    -------
    xarray.Dataset
        Dims ``(time, y, x)``; see the module docstring for variables.

    Raises
    ------
    FileNotFoundError
        If *path* does not exist.
    ValueError
        If *path* holds no Zarr group.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"radar store {p} does not exist")
    target = current_version(p) if is_versioned_store(p) else p
    if not (target / "zarr.json").is_file() and not (target / ".zgroup").is_file():
        raise ValueError(
            f"{p} is not a Zarr store: expected a '{CURRENT_FILE}' file or a Zarr group (zarr.json)"
        )
    if chunks is None:
        raise ValueError(
            "open_store needs dask chunks (a dict or 'auto'), got None: reflectivity is "
            "decoded lazily per chunk"
        )
    if chunks == "auto":
        chunks = {}
    if target != p:  # our own schema: decode the uint8 pixels through a lookup table
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
    dbz = raw.copy(data=raw.data.map_blocks(lut.take, dtype=np.float32))  # keeps coords
    dbz.attrs = attrs
    dbz.encoding = dict(
        raw.encoding, dtype=np.dtype("uint8"), scale_factor=scale, add_offset=offset
    )
    ds["reflectivity"] = dbz
    return ds


def validate_store(ds: xr.Dataset, size: int | None = geo.NATIVE_SIZE, name: str = "") -> None:
    """Check that *ds* follows the radar store schema (contract C2).

    Parameters
    ----------
    ds : xarray.Dataset
        As returned by :func:`open_store`.
    size : int or None
        Expected pixels per side, or None to accept any square size.
    name : str
        Name of the store for error messages (its path).

    Raises
    ------
    ValueError
        Naming the first violation found and what was expected.
    """
    where = f"radar store {name}: " if name else "radar store: "
    for var in ("reflectivity", "mask"):
        if var not in ds:
            raise ValueError(f"{where}missing variable {var!r}; have {sorted(ds.variables)}")
        if ds[var].dims != ("time", "y", "x"):
            raise ValueError(f"{where}{var} has dims {ds[var].dims}, expected ('time', 'y', 'x')")
    if ds["reflectivity"].dtype != np.float32:
        raise ValueError(
            f"{where}reflectivity decodes to {ds['reflectivity'].dtype}, expected float32"
        )
    if ds["mask"].dtype != bool:
        raise ValueError(f"{where}mask has dtype {ds['mask'].dtype}, expected bool")
    if "crs" not in ds.variables or ds["crs"].attrs.get("grid_mapping_name") is None:
        raise ValueError(f"{where}missing the 'crs' grid-mapping variable")
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    if ny != nx or (size is not None and ny != size):
        raise ValueError(
            f"{where}frames are {ny} x {nx}, expected {size} x {size}"
            if size is not None
            else f"{where}frames are {ny} x {nx}, expected a square grid"
        )
    for c in ("lat", "lon"):
        if c not in ds.coords or ds[c].dims != ("y", "x"):
            raise ValueError(f"{where}missing 2-D coordinate {c!r} (y, x)")
    t = ds["time"].values
    if t.dtype.kind != "M":
        raise ValueError(f"{where}time has dtype {t.dtype}, expected datetime64")
    if t.size > 1 and not (np.diff(t.astype("datetime64[ns]").astype(np.int64)) > 0).all():
        raise ValueError(f"{where}time is not strictly increasing (sorted and unique)")
    y, x = ds["y"].values, ds["x"].values
    if y.size > 1 and not (np.diff(y) < 0).all():
        raise ValueError(f"{where}y must decrease with the row index (row 0 is north)")
    if x.size > 1 and not (np.diff(x) > 0).all():
        raise ValueError(f"{where}x must increase with the column index")
