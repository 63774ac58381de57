"""The ``bom`` source: Bureau of Meteorology Rainfields (RF3) NetCDF rainfall products.

Files ``<RADAR>_YYYYmmdd_HHMMSS.prcp-<product>.nc`` (e.g. ``2_20180101_000000.prcp-c10.nc``,
a 10-minute accumulation, or pysteps' ``prcp-cscn`` archive convention; folders do not
matter). Layout: ``precipitation (y, x)`` (``units`` ``mm`` or ``kg m-2`` for an
accumulation, ``mm h-1`` / ``mm/h`` for a rate, ``_FillValue`` = no data), coordinates
``x``/``y`` (pixel centres, ``units`` km or m), a grid mapping ``proj``
(``albers_conical_equal_area``) and the scalars ``valid_time`` / ``start_time``.

Values, projection and the accumulation interval (``valid_time - start_time``) come
from :func:`pysteps.io.importers.import_bom_rf3` (no data, the fill value, becomes NaN:
invalid; 0 mm is valid no-rain). The pixel centres are read from ``x``/``y`` with
netCDF4 (pysteps takes their minimum and maximum as the extent, half a pixel short) and
the rows turned north-up when ``y`` increases. The valid time is ``valid_time`` when the
file has one, else the time in the name. Z-R: Marshall-Palmer.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from pipeline.geo import Grid
from pipeline.sources._hdf5 import check_hdf5_shapes
from pipeline.sources.base import (
    MARSHALL_PALMER,
    RadarSource,
    SourceFileError,
    SourceFrame,
)

_NAME_RE = re.compile(r"[A-Za-z0-9]+_(\d{8})_(\d{6})\.prcp-[A-Za-z0-9]+\.nc")
_RATE_UNITS = ("mm h-1", "mm/h", "kg m-2 h-1", "mm hr-1")
_DEPTH_UNITS = ("mm", "kg m-2")


def _centres_km(var, path: str) -> np.ndarray:
    values = np.asarray(var[:], dtype=np.float64)
    unit = getattr(var, "units", "km")
    if unit in ("km", "kilometre", "kilometer"):
        return values
    if unit in ("m", "metre", "meter"):
        return values / 1000.0
    raise SourceFileError(path, f"{var.name} in {unit!r}, expected km or m", "bom")


class BoMSource(RadarSource):
    """BoM Rainfields NetCDF (``*_YYYYmmdd_HHMMSS.prcp-*.nc``)."""

    name = "bom"
    description = "BoM Rainfields NetCDF rainfall (Australian Bureau of Meteorology)"
    suffixes = (".nc",)
    pattern = _NAME_RE
    expected = "<RADAR>_YYYYmmdd_HHMMSS.prcp-<product>.nc"
    cadence = pd.Timedelta("6min")

    time_format = "%Y%m%d%H%M%S"
    uses_hdf5 = True  # netCDF4 is not thread-safe: readers run under one lock

    def time_digits(self, m: re.Match) -> str:
        return m.group(1) + m.group(2)

    def read(self, path: str | os.PathLike, mask_path: str = "") -> SourceFrame:
        """Rain depth (mm per interval) or rate (mm/h) from ``precipitation``."""
        import netCDF4
        from pysteps.io.importers import import_bom_rf3

        path = str(path)
        name_time = self.file_time(path)
        too_big = check_hdf5_shapes(path)
        if too_big is not None:
            raise SourceFileError(path, too_big, self.name)
        try:
            values, _quality, meta = import_bom_rf3(path)
            with netCDF4.Dataset(path) as nc:
                x = _centres_km(nc.variables["x"], path)
                y = _centres_km(nc.variables["y"], path)
                unit_attr = getattr(nc.variables["precipitation"], "units", "")
                valid_time = None
                if "valid_time" in nc.variables:
                    vt = nc.variables["valid_time"]
                    valid_time = pd.Timestamp(
                        str(netCDF4.num2date(vt[:], vt.units, only_use_cftime_datetimes=False))
                    )
        except SourceFileError:
            raise
        except Exception as err:  # OSError, KeyError, AttributeError from netCDF4 / pysteps
            raise SourceFileError(path, f"pysteps cannot read it ({err!r})", self.name) from None
        if values is None:
            raise SourceFileError(path, "no variable 'precipitation'", self.name)
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (y.size, x.size):
            raise SourceFileError(
                path,
                f"precipitation {values.shape} does not match y, x ({y.size}, {x.size})",
                self.name,
            )
        if y.size > 1 and y[1] > y[0]:
            y, values = y[::-1], values[::-1]
        if meta.get("projection") is None:
            raise SourceFileError(
                path, "no albers_conical_equal_area grid mapping 'proj'", self.name
            )
        if unit_attr in _RATE_UNITS:
            unit, accutime = "mm/h", None
        elif unit_attr in _DEPTH_UNITS:
            unit, accutime = "mm", meta.get("accutime")
            if not accutime:
                raise SourceFileError(
                    path, "accumulation without start_time/valid_time: unknown interval", self.name
                )
        else:
            raise SourceFileError(
                path, f"precipitation in {unit_attr!r}, expected mm, kg m-2 or mm h-1", self.name
            )
        try:
            grid = Grid(projection=meta["projection"], x=x, y=y)
        except ValueError as err:
            raise SourceFileError(path, f"unusable x/y ({err})", self.name) from None
        return SourceFrame(
            values=values,
            valid=np.isfinite(values),
            grid=grid,
            time=valid_time if valid_time is not None else name_time,
            unit=unit,
            accutime=float(accutime) if accutime else None,
            zr_a=MARSHALL_PALMER[0],
            zr_b=MARSHALL_PALMER[1],
            metadata={"institution": meta.get("institution")},
        )
