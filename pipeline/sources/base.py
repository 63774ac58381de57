"""The contract of every radar source (:class:`RadarSource`) and what it reads.

A source knows three things about the files a radar service publishes (docs/sources.md):

1. **where they are and when they are valid**: :meth:`RadarSource.discover` walks an
   archive root and lists each file with its valid time (from the file name, or from
   inside the file where the name carries none), without decoding any pixel;
2. **how to read one**: :meth:`RadarSource.read` gives a :class:`SourceFrame`: the values
   in the file's own unit, a validity mask, the grid (:class:`pipeline.geo.Grid`:
   projection, extent, pixel size, shape) and metadata;
3. **how to get the store's dBZ**: :meth:`SourceFrame.to_dbz` converts with the source's
   own unit and Z-R relation (``Z = a R^b``; Marshall-Palmer ``a = 200, b = 1.6`` unless
   the file or the service says otherwise).

No-data and undetect (docs/sources.md): *undetect* ("the radar looked and saw no echo")
is a valid no-rain pixel: 0 mm/h, or the lowest dBZ, and ``valid`` True; *nodata* ("no
measurement here") is invalid: ``values`` NaN and ``valid`` False. In the store both end
up as pixel 0 (-10 dBZ, the HKO-7 floor), told apart by the mask.

A file that is not what its source expects raises :class:`SourceFileError` (a
ValueError naming the file and the reason); ingest lists it and skips it.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import units
from pipeline.geo import Grid

MARSHALL_PALMER: tuple[float, float] = (200.0, 1.6)
"""Z-R coefficients ``(a, b)`` used unless a file or its service gives others."""
UNITS: tuple[str, ...] = ("dBZ", "mm/h", "mm")
"""Units a source may give: reflectivity, rain rate, rain depth per accumulation interval."""


class SourceFileError(ValueError):
    """A file that its source cannot use (not the format, truncated, wrong grid...).

    Attributes
    ----------
    path : pathlib.Path
        The file.
    reason : str
        What was wrong with it.
    """

    def __init__(self, path: str | os.PathLike, reason: str, source: str = "") -> None:
        self.path = Path(path)
        self.reason = reason
        what = f"{source} file" if source else "radar file"
        super().__init__(f"cannot read {what} {self.path}: {reason}")


@dataclass
class SourceFrame:
    """One radar file as read by its source.

    Attributes
    ----------
    values : np.ndarray
        ``(H, W)`` float64 in *unit*; NaN where no data; undetect pixels hold the no-rain
        value (0 mm/h, 0 mm, or a dBZ at or below the store's floor).
    valid : np.ndarray
        ``(H, W)`` bool, True where the pixel is a measurement (undetect included).
    grid : pipeline.geo.Grid
        Projection and pixel-centre coordinates (row 0 north).
    time : pandas.Timestamp
        Valid time (UTC, naive): the end of the accumulation interval for ``mm``.
    unit : {"dBZ", "mm/h", "mm"}
        Unit of *values*.
    accutime : float or None
        Accumulation interval in minutes (needed for ``mm``).
    zr_a, zr_b : float
        Z-R relation ``Z = a R^b`` of the source (Marshall-Palmer by default).
    metadata : dict
        Anything else the file says (quantity, product, institution, source string...).
    """

    values: np.ndarray
    valid: np.ndarray
    grid: Grid
    time: pd.Timestamp
    unit: str
    accutime: float | None = None
    zr_a: float = MARSHALL_PALMER[0]
    zr_b: float = MARSHALL_PALMER[1]
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")
        if self.values.shape != self.grid.shape or self.valid.shape != self.grid.shape:
            raise ValueError(
                f"values {self.values.shape} and valid {self.valid.shape} must have the "
                f"grid's shape {self.grid.shape}"
            )
        if self.unit == "mm" and not (self.accutime and self.accutime > 0):
            raise ValueError(f"a rain depth (mm) needs a positive accutime, got {self.accutime}")

    def rain_rate(self) -> np.ndarray:
        """``(H, W)`` rain rate in mm/h (NaN where invalid); from dBZ with ``Z = a R^b``."""
        v = np.where(self.valid, self.values, np.nan)
        if self.unit == "mm/h":
            return v
        if self.unit == "mm":
            return v * (60.0 / float(self.accutime))
        return units.dbz_to_rainrate(v, self.zr_a, self.zr_b)

    def to_dbz(self) -> tuple[np.ndarray, np.ndarray]:
        """The store's reflectivity and mask.

        Returns
        -------
        dbz : np.ndarray
            ``(H, W)`` float32 dBZ, at least ``units.DBZ_MIN`` (-10, pixel 0) where valid
            (undetect and weak echoes sit on that floor), NaN where invalid.
        valid : np.ndarray
            ``(H, W)`` bool (a copy of :attr:`valid`, False also where a value is not finite).
        """
        valid = self.valid & np.isfinite(self.values)
        if self.unit == "dBZ":
            dbz = np.where(valid, self.values, np.nan)
        else:
            rate = np.where(valid, self.rain_rate(), np.nan)
            with np.errstate(divide="ignore", invalid="ignore"):
                dbz = units.rainrate_to_dbz(np.maximum(rate, 0.0), self.zr_a, self.zr_b)
        dbz = np.where(valid, np.maximum(dbz, units.DBZ_MIN), np.nan)
        return dbz.astype(np.float32), valid

    def to_pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """``(H, W)`` uint8 store pixels (``dBZ = p / 255 * 70 - 10``, 0 where invalid) and mask."""
        dbz, valid = self.to_dbz()
        return units.dbz_to_pixel(dbz), valid


def _parse_bound(value: object, name: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name}={value!r} is not a date/time ({err})") from None


class RadarSource(ABC):
    """A radar product family: discover its files, read one, convert it (module docstring).

    Subclasses set :attr:`name`, :attr:`description`, :attr:`suffixes` (file endings that
    belong to the source; others are ignored without a word) and :attr:`pattern` (a
    regular expression the whole file name must match, shown in messages as
    :attr:`expected`), and implement :meth:`file_time` and :meth:`read`.
    """

    name: str = ""
    description: str = ""
    suffixes: tuple[str, ...] = ()
    pattern: re.Pattern | None = None
    expected: str = ""
    cadence: pd.Timedelta | None = None
    """Nominal time between files; an ingest records it in the store
    (``nominal_cadence_minutes``, read by :func:`pipeline.window.store_cadence`)."""
    uses_hdf5: bool = False
    """Files read with netCDF4 / h5py: the readers then run under one process-wide lock
    (:mod:`pipeline.sources._hdf5`; those libraries are not thread-safe)."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.uses_hdf5:
            from pipeline.sources._hdf5 import READER_METHODS, locked

            for name in READER_METHODS:
                method = getattr(cls, name, None)
                if method is not None:
                    setattr(cls, name, locked(method))

    def __repr__(self) -> str:
        return f"<radar source {self.name!r}: {self.description}>"

    # ------------------------------------------------------------------ discovery

    time_format: str = ""
    """``strftime`` format of the digits :meth:`time_digits` takes from a matching name."""

    def time_digits(self, match: re.Match) -> str:
        """The time digits of a name matching :attr:`pattern` (default: its first group)."""
        return match.group(1)

    def file_time(self, path: str) -> pd.Timestamp:
        """Valid time of the file at *path* from its name (:attr:`pattern`, :attr:`time_format`).

        Raises
        ------
        SourceFileError
            The name does not match, or its digits are not a time.
        """
        m = None if self.pattern is None else self.pattern.fullmatch(os.path.basename(path))
        if m is None:
            article = "an" if self.name[:1] in "aefhilmnorsx" else "a"
            raise SourceFileError(
                path, f"not {article} {self.name} file name (expected {self.expected})", self.name
            )
        return time_from_digits(self.time_digits(m), self.time_format, path, self.name)

    def is_candidate(self, name: str) -> bool:
        """Whether a file name belongs to this source (by its ending)."""
        return name.lower().endswith(tuple(s.lower() for s in self.suffixes))

    def discover(
        self,
        root: str | os.PathLike,
        start: object = None,
        end: object = None,
        *,
        skipped: list[tuple[str, str]] | None = None,
        follow_links: bool = False,
    ) -> pd.DataFrame:
        """List the source's files under *root* with their valid times (no pixel is decoded).

        Parameters
        ----------
        root : path
            Archive root, walked recursively in sorted order.
        start, end : timestamp-like, optional
            Inclusive bounds on the valid time.
        skipped : list, optional
            ``(path, reason)`` is appended for each file with the source's ending whose
            name (or, for ODIM, header) gives no valid time, and each symbolic link leading
            outside *root* (unless *follow_links*).
        follow_links : bool
            Follow symbolic links leading outside *root*.

        Returns
        -------
        pandas.DataFrame
            Index ``time`` (sorted, unique; the first file wins a tie); columns
            ``frame_path`` (str) and ``mask_path`` (str, ``""``: no companion mask file).

        Raises
        ------
        ValueError
            If *root* is not a directory, a bound is not a date or *start* is after *end*.
        """
        root = Path(root)
        t0, t1 = _parse_bound(start, "start"), _parse_bound(end, "end")
        if t0 is not None and t1 is not None and t0 > t1:
            raise ValueError(f"start={start!r} is after end={end!r}: no frame can lie between them")
        if not root.is_dir():
            raise ValueError(f"{root} is not a {self.name} archive: not a directory")
        skipped = [] if skipped is None else skipped
        real_root = os.path.realpath(root)
        times, paths = [], []
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            dirnames.sort()
            keep_dirs = []
            for d in dirnames:
                full = os.path.join(dirpath, d)
                if not follow_links and _outside(full, real_root):
                    skipped.append((full, _link_reason(full, real_root)))
                else:
                    keep_dirs.append(d)
            dirnames[:] = keep_dirs
            for f in sorted(filenames):
                if not self.is_candidate(f):
                    continue
                full = os.path.join(dirpath, f)
                if not follow_links and _outside(full, real_root):
                    skipped.append((full, _link_reason(full, real_root)))
                    continue
                if self.pattern is not None and not self.pattern.fullmatch(f):
                    skipped.append(
                        (full, f"not named like a {self.name} file (expected {self.expected})")
                    )
                    continue
                try:
                    t = self.file_time(full)
                except ValueError as err:
                    skipped.append((full, getattr(err, "reason", None) or str(err)))
                    continue
                if (t0 is not None and t < t0) or (t1 is not None and t > t1):
                    continue
                times.append(t)
                paths.append(full)
        index = pd.DatetimeIndex(times, name="time").astype("datetime64[ns]")
        df = pd.DataFrame(
            {
                "frame_path": np.asarray(paths, dtype=object),
                "mask_path": np.asarray([""] * len(paths), dtype=object),
            },
            index=index,
        ).sort_index(kind="stable")
        return df[~df.index.duplicated(keep="first")]

    # ------------------------------------------------------------------ reading

    @abstractmethod
    def read(self, path: str | os.PathLike, mask_path: str = "") -> SourceFrame:
        """Read one file (*mask_path*: a companion mask file, HKO-7 only).

        Raises
        ------
        SourceFileError
            If the file is not what the source expects.
        """

    def grid_of(self, path: str | os.PathLike) -> Grid:
        """The grid of the file at *path* (by default: read it)."""
        return self.read(path).grid

    def store_attrs(self) -> dict[str, str]:
        """Global attributes of a store made from this source (title, source, history)."""
        return {
            "title": f"Radar reflectivity from {self.description} (Zarr)",
            "source": f"{self.description}, read by pipeline.sources ({self.name!r})",
            "history": f"pipeline.ingest --source {self.name}: values converted to dBZ "
            "(docs/sources.md) and stored as 8-bit pixels p (dBZ = p / 255 * 70 - 10); "
            "mask = valid pixel (undetect valid, nodata invalid)",
        }

    def precheck(self, sources: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """``(path, reason)`` of files found unusable before decoding (none by default)."""
        return []

    def decode_into(
        self,
        frame_path: str,
        mask_path: str,
        pixels_out: np.ndarray,
        mask_out: np.ndarray,
        valid_static: np.ndarray | None,
        grid: Grid | None = None,
    ) -> tuple[str, str] | None:
        """Decode one file into store pixels and mask views; ``(path, reason)`` on failure.

        Parameters
        ----------
        pixels_out, mask_out : np.ndarray
            ``(H, W)`` uint8 / bool views of the chunk buffers.
        valid_static : np.ndarray or None
            ``(H, W)`` bool ANDed into the mask.
        grid : Grid, optional
            The store's grid: a file on another grid is refused.
        """
        try:
            frame = self.read(frame_path, mask_path)
        except SourceFileError as err:
            return (str(frame_path), err.reason)
        if grid is not None and not same_grid(frame.grid, grid):
            return (
                str(frame_path),
                f"grid {frame.grid.shape[0]} x {frame.grid.shape[1]} extent "
                f"{_fmt_extent(frame.grid)} km differs from the store's "
                f"{grid.shape[0]} x {grid.shape[1]} extent {_fmt_extent(grid)} km",
            )
        pixels, valid = frame.to_pixels()
        pixels_out[...] = pixels
        mask_out[...] = valid if valid_static is None else valid & valid_static
        return None


def _fmt_extent(grid: Grid) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in grid.extent_km) + ")"


def same_grid(a: Grid, b: Grid, tol_km: float = 1e-3) -> bool:
    """Whether two grids have the same shape and pixel centres (within *tol_km*)."""
    return (
        a.shape == b.shape
        and bool(np.allclose(a.x, b.x, atol=tol_km))
        and bool(np.allclose(a.y, b.y, atol=tol_km))
    )


def _outside(path: str, real_root: str) -> bool:
    if not os.path.islink(path):
        return False
    target = os.path.realpath(path)
    return not (target == real_root or target.startswith(real_root.rstrip(os.sep) + os.sep))


def _link_reason(path: str, real_root: str) -> str:
    return (
        f"symbolic link to {os.path.realpath(path)}, outside the archive root {real_root} "
        "(not followed; --follow-links to follow)"
    )


def time_from_digits(digits: str, fmt: str, path: str, source: str) -> pd.Timestamp:
    """Parse *digits* with strftime *fmt*; SourceFileError naming *path* when impossible."""
    try:
        return pd.Timestamp(pd.to_datetime(digits, format=fmt))
    except (ValueError, TypeError):
        raise SourceFileError(
            path, f"impossible date or time {digits!r} in the file name ({fmt})", source
        ) from None
