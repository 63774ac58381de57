"""The published HKO-7 archive layout: paths, frame and mask encodings, catalogues.

Layout (docs/facts.md section 1)::

    <root>/radarPNG/YYYY/MM/DD/RAD{yy}{mm}{dd}{HH}{MM}00.png        480 x 480 uint8 PNG
    <root>/radarPNG_mask/YYYY/MM/DD/RAD{yy}{mm}{dd}{HH}{MM}00.mask  zlib(raw numpy bool bytes)
    <root>/mask_dat.npz        outlier_mask, exclude_mask, out_boundary_mask (uint8, 1 = bad)
    <root>/hko7_rainy_{train,valid,test}_days.txt    lines ``YYYYMMDD, <daily rainfall>``

Pixels encode reflectivity (``dBZ = p / 255 * 70 - 10``, see :mod:`pipeline.units`).
Per-frame masks are True (1) where the pixel may be used. The static masks of
``mask_dat.npz`` are 1 where a pixel must be *excluded* (HKO-7's code multiplies frames
by ``1 - exclude_mask``), and ``exclude_mask == outlier_mask | out_boundary_mask``.

The catalogues (the project's CSV / Parquet tables and the published pickles) are read and
written by :mod:`pipeline.hko7_catalogue`.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

FRAME_SHAPE: tuple[int, int] = (480, 480)
"""Shape (rows, columns) of every HKO-7 frame and mask."""
CADENCE: pd.Timedelta = pd.Timedelta("6min")
"""Nominal time between frames."""
FRAME_DIR = "radarPNG"
MASK_DIR = "radarPNG_mask"
STATIC_MASK_FILE = "mask_dat.npz"
STATIC_MASK_KEYS: tuple[str, ...] = ("outlier_mask", "exclude_mask", "out_boundary_mask")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
CATALOGUE_COLUMNS: tuple[str, ...] = ("time", "frame_path", "has_mask")

_NAME_LEN = len("RAD150601000000")
_FRAME_NAME_RE = re.compile(r"RAD\d{10}00\.png")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

__all__ = [
    "CADENCE",
    "FRAME_SHAPE",
    "FrameReadError",
    "day_list_path",
    "discover_frames",
    "frame_path",
    "mask_path",
    "parse_frame_time",
    "read_day_list",
    "read_frame",
    "read_mask",
    "read_static_masks",
    "write_day_list",
    "write_frame",
    "write_mask",
    "write_static_masks",
]


class FrameReadError(ValueError):
    """A frame or mask file that cannot be used (missing, truncated, corrupt, wrong shape).

    Attributes
    ----------
    path : pathlib.Path
        The file that failed.
    reason : str
        What was wrong with it.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read HKO-7 file {self.path}: {reason}")


# --------------------------------------------------------------------------- paths


def _file_name(ts: pd.Timestamp, ext: str) -> str:
    if not 2000 <= ts.year <= 2099:
        raise ValueError(f"HKO-7 file names hold years 2000-2099 only, got timestamp {ts}")
    if ts.second or ts.microsecond or ts.nanosecond:
        raise ValueError(f"HKO-7 frame times are whole minutes, got timestamp {ts}")
    return f"RAD{ts:%y%m%d%H%M}00{ext}"


def _day_rel(ts: pd.Timestamp) -> str:
    return f"{ts:%Y}/{ts:%m}/{ts:%d}"


def frame_path(root: str | os.PathLike, ts: object) -> Path:
    """Path of the frame PNG for time *ts*.

    Parameters
    ----------
    root : path
        Archive root.
    ts : timestamp-like
        Frame time (anything :class:`pandas.Timestamp` accepts), whole minutes.

    Returns
    -------
    pathlib.Path
        ``<root>/radarPNG/YYYY/MM/DD/RAD{yy}{mm}{dd}{HH}{MM}00.png``.
    """
    t = pd.Timestamp(ts)
    return Path(root) / FRAME_DIR / _day_rel(t) / _file_name(t, ".png")


def mask_path(root: str | os.PathLike, ts: object) -> Path:
    """Path of the per-frame mask for time *ts* (``radarPNG_mask/...``, extension ``.mask``)."""
    t = pd.Timestamp(ts)
    return Path(root) / MASK_DIR / _day_rel(t) / _file_name(t, ".mask")


def parse_frame_time(path_or_name: str | os.PathLike) -> pd.Timestamp:
    """Frame time encoded in an HKO-7 file name.

    Parameters
    ----------
    path_or_name : str or path
        ``RADyymmddHHMM00.png`` / ``.mask``, bare or with directories.

    Returns
    -------
    pandas.Timestamp

    Raises
    ------
    ValueError
        If the name does not follow the pattern.
    """
    name = Path(path_or_name).name
    stem = name.split(".", 1)[0]
    digits = stem[3:]
    if (
        len(stem) != _NAME_LEN
        or not stem.startswith("RAD")
        or not digits.isdigit()
        or not digits.endswith("00")
    ):
        raise ValueError(
            f"not an HKO-7 frame name: {str(path_or_name)!r} (expected RADyymmddHHMM00.png)"
        )
    try:
        return pd.Timestamp(
            year=2000 + int(digits[0:2]),
            month=int(digits[2:4]),
            day=int(digits[4:6]),
            hour=int(digits[6:8]),
            minute=int(digits[8:10]),
        )
    except ValueError as err:
        raise ValueError(
            f"not an HKO-7 frame name: {str(path_or_name)!r} (invalid date/time: {err})"
        ) from None


# --------------------------------------------------------------------------- frames and masks


_MAX_FRAME_FILE_BYTES = 16 * 2**20
"""Largest frame PNG read (an 8-bit 480 x 480 PNG is at most about 232 kB)."""


def read_frame(path: str | os.PathLike) -> np.ndarray:
    """Read one frame PNG.

    Parameters
    ----------
    path : path
        A ``.png`` written in the HKO-7 layout.

    Returns
    -------
    numpy.ndarray
        ``(480, 480)`` uint8 pixels (``dBZ = p / 255 * 70 - 10``).

    Raises
    ------
    FrameReadError
        If the file is missing, truncated, not a PNG, not 8-bit greyscale or not 480 x 480.
    """
    from PIL import Image, UnidentifiedImageError

    from pipeline.guards import check_declared_image

    p = Path(path)
    too_big = check_declared_image(p)  # before Pillow (which warns, then refuses, bombs)
    if too_big is not None:
        raise FrameReadError(p, f"over the reader's pixel limit: {too_big}")
    try:
        if p.stat().st_size > _MAX_FRAME_FILE_BYTES:
            raise FrameReadError(p, f"{p.stat().st_size} bytes, too large for a 480 x 480 frame")
        # from memory: Pillow reads a chunk with fp.read(declared length), which on a file
        # allocates the length first (a flipped IDAT length asked for 1.7 GB); BytesIO not
        with Image.open(io.BytesIO(p.read_bytes())) as im:
            if im.format != "PNG":
                raise FrameReadError(p, f"not a PNG file (format {im.format})")
            if im.mode != "L":
                raise FrameReadError(p, f"image mode {im.mode!r}, expected 8-bit greyscale 'L'")
            if im.size != (FRAME_SHAPE[1], FRAME_SHAPE[0]):
                raise FrameReadError(
                    p, f"size {im.size[0]}x{im.size[1]}, expected {FRAME_SHAPE[1]}x{FRAME_SHAPE[0]}"
                )
            im.load()
            arr = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise FrameReadError(p, "file not found") from None
    except UnidentifiedImageError:
        raise FrameReadError(p, "not a readable image (corrupt or not a PNG)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise FrameReadError(p, f"over the reader's pixel limit ({err})") from None
    except FrameReadError:
        raise
    except Exception as err:  # noqa: BLE001 - OSError on truncation; others on mangled chunks
        raise FrameReadError(p, f"corrupt or truncated PNG ({type(err).__name__}: {err})") from None
    return arr


def write_frame(path: str | os.PathLike, pixels: np.ndarray, compress_level: int = 1) -> None:
    """Write one frame as an 8-bit greyscale PNG (deterministic bytes).

    Parameters
    ----------
    path : path
        Destination; parent directories are created.
    pixels : numpy.ndarray
        ``(480, 480)`` uint8.
    compress_level : int
        zlib level 0-9 (1 is fast; the pixels do not depend on it).
    """
    from PIL import Image

    arr = np.asarray(pixels)
    if arr.shape != FRAME_SHAPE or arr.dtype != np.uint8:
        raise ValueError(
            f"frame for {path} has shape {arr.shape} dtype {arr.dtype}, "
            f"expected {FRAME_SHAPE} uint8"
        )
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(arr)).save(  # 2-D uint8 -> mode "L"
        p, format="PNG", compress_level=compress_level
    )


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read one per-frame mask file.

    Returns
    -------
    numpy.ndarray
        ``(480, 480)`` bool, True = use the pixel.

    Raises
    ------
    FrameReadError
        If the file is missing, not zlib data, or does not hold 480 x 480 bytes.
    """
    p = Path(path)
    n = FRAME_SHAPE[0] * FRAME_SHAPE[1]
    try:
        inflate = zlib.decompressobj()
        raw = inflate.decompress(p.read_bytes(), n + 1)  # bounded: a zlib bomb stops here
    except FileNotFoundError:
        raise FrameReadError(p, "file not found") from None
    except zlib.error as err:
        raise FrameReadError(p, f"not zlib-compressed mask data ({err})") from None
    except OSError as err:
        raise FrameReadError(p, f"unreadable ({err})") from None
    if len(raw) > n:
        raise FrameReadError(p, f"mask holds more than {n} bytes (480 x 480 bool expected)")
    if not inflate.eof:
        raise FrameReadError(p, f"truncated mask: {len(raw)} of {n} bytes and no zlib end")
    if len(raw) != n:
        raise FrameReadError(p, f"mask holds {len(raw)} bytes, expected {n} (480 x 480 bool)")
    return np.frombuffer(raw, dtype=np.uint8).reshape(FRAME_SHAPE) != 0


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write a per-frame mask like HKO-7 (``zlib.compress(mask.astype(bool).tobytes(), 2)``)."""
    arr = np.asarray(mask)
    if arr.shape != FRAME_SHAPE:
        raise ValueError(f"mask for {path} has shape {arr.shape}, expected {FRAME_SHAPE}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(zlib.compress(np.ascontiguousarray(arr, dtype=bool).tobytes(), 2))


def read_static_masks(root: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read ``<root>/mask_dat.npz``.

    Returns
    -------
    dict
        ``outlier_mask``, ``exclude_mask``, ``out_boundary_mask``: ``(480, 480)`` uint8,
        1 = exclude the pixel.

    Raises
    ------
    FrameReadError
        If the file is missing, unreadable, lacks a key or has a wrong shape.
    """
    p = Path(root) / STATIC_MASK_FILE
    try:
        with np.load(p, allow_pickle=False) as dat:
            missing = [k for k in STATIC_MASK_KEYS if k not in dat.files]
            if missing:
                raise FrameReadError(p, f"missing arrays {missing}; has {sorted(dat.files)}")
            out = {k: np.asarray(dat[k]) for k in STATIC_MASK_KEYS}
    except FileNotFoundError:
        raise FrameReadError(p, "file not found") from None
    except (OSError, ValueError) as err:
        if isinstance(err, FrameReadError):
            raise
        raise FrameReadError(p, f"not a readable npz file ({err})") from None
    for k, v in out.items():
        if v.shape != FRAME_SHAPE:
            raise FrameReadError(p, f"{k} has shape {v.shape}, expected {FRAME_SHAPE}")
        out[k] = (v != 0).astype(np.uint8)
    return out


def write_static_masks(
    root: str | os.PathLike, outlier_mask: np.ndarray, out_boundary_mask: np.ndarray
) -> Path:
    """Write ``<root>/mask_dat.npz``; ``exclude_mask`` is their union. Returns the path."""
    om = np.asarray(outlier_mask) != 0
    bm = np.asarray(out_boundary_mask) != 0
    for name, m in (("outlier_mask", om), ("out_boundary_mask", bm)):
        if m.shape != FRAME_SHAPE:
            raise ValueError(f"{name} has shape {m.shape}, expected {FRAME_SHAPE}")
    p = Path(root) / STATIC_MASK_FILE
    p.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "outlier_mask": om.astype(np.uint8),
        "exclude_mask": (om | bm).astype(np.uint8),
        "out_boundary_mask": bm.astype(np.uint8),
    }
    # Like np.savez_compressed, but with a fixed member date so the bytes are reproducible.
    with zipfile.ZipFile(p, "w") as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            zf.writestr(info, buf.getvalue())
    return p


# --------------------------------------------------------------------------- discovery


def _parse_bound(value: object, name: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name}={value!r} is not a date/time ({err})") from None


def _scan_sorted(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return []


_BAD_NAME_REASON = "not an HKO-7 frame name (expected RADyymmddHHMM00.png)"
_BAD_TIME_REASON = "impossible date or time in the frame name (RADyymmddHHMM00.png)"


def _outside_link(entry: os.DirEntry, real_root: str) -> str | None:
    """Target of *entry* when it is a symbolic link leading outside *real_root*, else None."""
    if not entry.is_symlink():
        return None
    target = os.path.realpath(entry.path)
    if target == real_root or target.startswith(real_root.rstrip(os.sep) + os.sep):
        return None
    return target


def discover_frames(
    root: str | os.PathLike,
    start: object = None,
    end: object = None,
    *,
    skipped: list[tuple[str, str]] | None = None,
    follow_links: bool = False,
) -> pd.DataFrame:
    """List the frames of an archive by walking its directory tree (no file is decoded).

    Parameters
    ----------
    root : path
        Archive root (holding ``radarPNG/``).
    start, end : timestamp-like, optional
        Inclusive bounds (anything pandas parses); day directories outside are not walked.
    skipped : list, optional
        When given, ``(path, reason)`` is appended for every entry passed over that looks
        like part of the archive: a frame name with an impossible date or time
        (``RAD150631000000.png``), a day folder that is not a date (``06/31``), and a
        symbolic link leading outside the archive root (unless *follow_links*).
    follow_links : bool
        Follow symbolic links that lead outside the archive root (links inside it are
        always followed).

    Returns
    -------
    pandas.DataFrame
        Index ``time`` (DatetimeIndex, sorted, unique); columns ``frame_path`` (str) and
        ``mask_path`` (str, ``""`` when the frame has no mask file). Files whose names do not
        start with ``RAD`` and end in ``.png`` are ignored without a word.

    Raises
    ------
    ValueError
        If *root* has no ``radarPNG`` directory, a bound is not a date or *start* is after
        *end*.
    """
    root = Path(root)
    t0 = _parse_bound(start, "start")
    t1 = _parse_bound(end, "end")
    if t0 is not None and t1 is not None and t0 > t1:
        raise ValueError(f"start={start!r} is after end={end!r}: no frame can lie between them")
    frames_root = root / FRAME_DIR
    if not frames_root.is_dir():
        raise ValueError(f"{root} is not an HKO-7 archive: no directory {frames_root}")
    skipped = [] if skipped is None else skipped
    real_root = os.path.realpath(root)

    def _linked_out(entry: os.DirEntry) -> bool:
        target = None if follow_links else _outside_link(entry, real_root)
        if target is not None:
            reason = f"symbolic link to {target}, outside the archive root {real_root}"
            skipped.append((entry.path, reason + " (not followed; --follow-links to follow)"))
        return target is not None

    d0 = t0.normalize() if t0 is not None else None
    d1 = t1.normalize() if t1 is not None else None
    stamps: list[str] = []  # "YYYYmmddHHMMSS" of each frame name
    fpaths: list[str] = []
    mpaths: list[str] = []
    for y in _scan_sorted(frames_root):
        if not (y.is_dir() and y.name.isdigit() and len(y.name) == 4):
            continue
        if (d0 is not None and int(y.name) < d0.year) or (d1 is not None and int(y.name) > d1.year):
            continue
        if _linked_out(y):
            continue
        for m in _scan_sorted(Path(y.path)):
            if not (m.is_dir() and m.name.isdigit() and len(m.name) == 2) or _linked_out(m):
                continue
            for d in _scan_sorted(Path(m.path)):
                if not (d.is_dir() and d.name.isdigit() and len(d.name) == 2):
                    continue
                try:
                    day = pd.Timestamp(year=int(y.name), month=int(m.name), day=int(d.name))
                except ValueError:
                    rel = f"{y.name}/{m.name}/{d.name}"
                    skipped.append(
                        (d.path, f"day folder {rel} is not a date (expected YYYY/MM/DD)")
                    )
                    continue
                if (d0 is not None and day < d0) or (d1 is not None and day > d1):
                    continue
                if _linked_out(d):
                    continue
                mask_dir = str(root / MASK_DIR / y.name / m.name / d.name)
                mask_names = {e.name for e in _scan_sorted(Path(mask_dir)) if not _linked_out(e)}
                for f in _scan_sorted(Path(d.path)):
                    name = f.name
                    if not _FRAME_NAME_RE.fullmatch(name):
                        if name.startswith("RAD") and name.endswith(".png"):
                            skipped.append((f.path, _BAD_NAME_REASON))
                        continue
                    if _linked_out(f):
                        continue
                    mname = name[:-4] + ".mask"
                    stamps.append("20" + name[3:15])
                    fpaths.append(f.path)
                    mpaths.append(os.path.join(mask_dir, mname) if mname in mask_names else "")
    # one vectorised parse (a year of names in ~0.1 s); impossible dates (month 13) -> NaT
    index = pd.DatetimeIndex(
        pd.to_datetime(pd.Series(stamps, dtype=object), format="%Y%m%d%H%M%S", errors="coerce"),
        name="time",
    ).astype("datetime64[ns]")
    keep = ~index.isna()
    skipped.extend((fpaths[i], _BAD_TIME_REASON) for i in np.flatnonzero(~keep))
    if t0 is not None:
        keep &= index >= t0
    if t1 is not None:
        keep &= index <= t1
    df = pd.DataFrame(
        {
            "frame_path": np.asarray(fpaths, dtype=object),
            "mask_path": np.asarray(mpaths, dtype=object),
        },
        index=index,
    )[keep]
    df = df.sort_index(kind="stable")
    return df[~df.index.duplicated(keep="first")]


# --------------------------------------------------------------------------- day lists


def day_list_path(root: str | os.PathLike, split: str) -> Path:
    """``<root>/hko7_rainy_{split}_days.txt`` for split ``train``, ``valid`` or ``test``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return Path(root) / f"hko7_rainy_{split}_days.txt"


def read_day_list(path: str | os.PathLike) -> pd.Series:
    """Read a day list (lines ``YYYYMMDD, <daily rainfall>``).

    Returns
    -------
    pandas.Series
        Daily rainfall (float, mm) indexed by the day (DatetimeIndex named ``day``), in file order.

    Raises
    ------
    ValueError
        Naming the file and line when a line does not follow the format.
    """
    p = Path(path)
    days: list[pd.Timestamp] = []
    rain: list[float] = []
    for lineno, line in enumerate(p.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = [s.strip() for s in line.split(",")]
        try:
            if len(parts) != 2 or len(parts[0]) != 8 or not parts[0].isdigit():
                raise ValueError("expected 'YYYYMMDD, <rainfall>'")
            days.append(pd.Timestamp(parts[0]))
            rain.append(float(parts[1]))
        except ValueError as err:
            raise ValueError(
                f"{p} line {lineno}: {line!r} is not 'YYYYMMDD, <rainfall>' ({err})"
            ) from None
    return pd.Series(rain, index=pd.DatetimeIndex(days, name="day"), name="rainfall", dtype=float)


def write_day_list(
    path: str | os.PathLike, days: Iterable[object], rainfall: Iterable[float]
) -> None:
    """Write a day list, one ``YYYYMMDD, <rainfall>`` line per day."""
    days = [pd.Timestamp(d) for d in days]
    rainfall = [float(r) for r in rainfall]
    if len(days) != len(rainfall):
        raise ValueError(f"{len(days)} days but {len(rainfall)} rainfall values for {path}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(f"{d:%Y%m%d}, {r:.3f}\n" for d, r in zip(days, rainfall, strict=True)))
