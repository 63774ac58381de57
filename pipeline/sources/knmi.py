"""The ``knmi`` source: KNMI HDF5 radar composites (KNMI Data Centre format).

Files ``RAD_NL25_<PRODUCT>_<...>_YYYYmmddHHMM[_NL].h5`` (pysteps' archive convention
``RAD_NL25_RAP_5min_%Y%m%d%H%M.h5``; the KNMI Data Platform names them e.g.
``RAD_NL25_RAC_MFBS_EM_5min_201901010000_NL.h5``). The valid time is the one in the
name. Layout: ``image1/image_data`` (row 0 north) and ``geographic`` (attributes
``geo_number_columns/rows``, ``geo_pixel_size_x/y``, ``geo_column_offset``,
``geo_row_offset``, ``geo_dim_pixel``; ``geographic/map_projection`` attribute
``projection_proj4_params``).

Values and georeferencing come from :func:`pysteps.io.importers.import_knmi_hdf5`:
accumulations (``RAC``/``RAP``... products, ``qty="ACRR"``) are stored in 0.01 mm with
65535 = no data; reflectivity (``PCP`` products, ``qty="DBZH"``) as
``dBZ = 0.5 p - 32`` with 255 = no data. No-data becomes invalid; a zero accumulation is
valid no-rain. The accumulation interval comes from the name (``_5min_``, ``_60min_``;
5 min otherwise), the Z-R relation is pysteps' for KNMI (Marshall-Palmer). KNMI's PROJ
string gives the ellipsoid in km (``+a=6378.137``): it is rescaled to metres here.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from pipeline.geo import grid_from_edges
from pipeline.sources._hdf5 import check_hdf5_shapes
from pipeline.sources.base import RadarSource, SourceFileError, SourceFrame

_NAME_RE = re.compile(r"RAD_NL\d+_([A-Z0-9]+)_(?:[A-Za-z0-9]+_)*?(\d{12})(?:_NL)?\.h5")
_MINUTES_RE = re.compile(r"_(\d+)min_")
_AXIS_RE = re.compile(r"\+([ab])=([0-9.]+)")


def _metres_ellipsoid(proj: str) -> str:
    """KNMI writes ``+a``/``+b`` in km; PROJ wants metres."""

    def fix(m: re.Match) -> str:
        v = float(m.group(2))
        return f"+{m.group(1)}={v * 1000.0 if v < 10_000 else v:g}"

    return _AXIS_RE.sub(fix, proj)


class KNMISource(RadarSource):
    """KNMI HDF5 composites (``RAD_NL25_*_YYYYmmddHHMM*.h5``)."""

    name = "knmi"
    description = "KNMI HDF5 radar composite (Royal Netherlands Meteorological Institute)"
    suffixes = (".h5",)
    pattern = _NAME_RE
    expected = "RAD_NL25_<PRODUCT>_..._YYYYmmddHHMM[_NL].h5"
    cadence = pd.Timedelta("5min")

    time_format = "%Y%m%d%H%M"
    uses_hdf5 = True  # h5py is not thread-safe: readers run under one lock

    def time_digits(self, m: re.Match) -> str:
        return m.group(2)

    def read(self, path: str | os.PathLike, mask_path: str = "") -> SourceFrame:
        """Accumulation (mm) or reflectivity (dBZ) by the product code of the name."""
        from pysteps.io.importers import import_knmi_hdf5

        path = str(path)
        name = os.path.basename(path)
        m = _NAME_RE.fullmatch(name)
        if m is None:
            raise SourceFileError(
                path, f"not a knmi file name (expected {self.expected})", self.name
            )
        product = m.group(1)
        qty = "DBZH" if product.startswith("PCP") else "ACRR"
        minutes = _MINUTES_RE.search(name)
        accutime = float(minutes.group(1)) if minutes else 5.0
        too_big = check_hdf5_shapes(path)
        if too_big is not None:
            raise SourceFileError(path, too_big, self.name)
        try:
            values, _quality, meta = import_knmi_hdf5(path, qty=qty, accutime=accutime)
        except Exception as err:  # OSError, KeyError from h5py and pysteps
            raise SourceFileError(path, f"pysteps cannot read it ({err!r})", self.name) from None
        values = np.asarray(values, dtype=np.float64)
        if meta.get("yorigin") == "lower":  # row 0 south: flip to the store's row 0 north
            values = values[::-1]
        unit = meta.get("cartesian_unit", "km")
        if unit not in ("m", "km"):
            raise SourceFileError(path, f"grid in {unit!r}, expected km or m", self.name)
        try:
            grid = grid_from_edges(
                _metres_ellipsoid(meta["projection"]),
                meta["x1"],
                meta["y1"],
                meta["x2"],
                meta["y2"],
                values.shape,
                unit=unit,
            )
        except (KeyError, ValueError) as err:
            raise SourceFileError(path, f"unusable georeferencing ({err})", self.name) from None
        return SourceFrame(
            values=values,
            valid=np.isfinite(values),
            grid=grid,
            time=self.file_time(path),
            unit="dBZ" if qty == "DBZH" else "mm",
            accutime=None if qty == "DBZH" else accutime,
            zr_a=float(meta.get("zr_a", 200.0)),
            zr_b=float(meta.get("zr_b", 1.6)),
            metadata={"product": product, "quantity": qty, "institution": meta.get("institution")},
        )
