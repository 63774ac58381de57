"""The ``mch`` source: MeteoSwiss 8-bit GIF composites on the Swiss CCS4 grid.

Files ``<PRODUCT>yyjjjHHMM<c>_<accumulation minutes, 5 digits>.<3 digits>.gif`` (pysteps'
archive convention ``AQC%y%j%H%M?_00005.801.gif``; ``jjj`` is the day of the year;
folders do not matter). The GIF carries no georeferencing: the grid is CCS4, 710 x 640
pixels of 1 km in the Swiss LV03 projection (pysteps' ``_import_mch_geodata``).

Values come from :func:`pysteps.io.importers.import_mch_gif`: ``AQC`` and ``CPC`` are
rain depths (mm per accumulation interval, from the digital numbers; 255 = no data,
invalid; 0-1 and 251-254 = 0 mm, valid no-rain), ``RZC`` a rain rate in mm/h and
``AZC`` a depth in mm (both through pysteps' colour tables). Z-R: MeteoSwiss' ``a = 316,
b = 1.5`` (pysteps' metadata).
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from pipeline.geo import grid_from_edges
from pipeline.guards import check_declared_image
from pipeline.sources.base import RadarSource, SourceFileError, SourceFrame

_NAME_RE = re.compile(r"(AQC|CPC|RZC|AZC)(\d{2})(\d{3})(\d{4})\w_(\d{5})\.\d{3}\.gif")
_UNIT = {"AQC": "mm", "CPC": "mm", "RZC": "mm/h", "AZC": "mm"}
CCS4_SHAPE: tuple[int, int] = (640, 710)
"""(rows, columns) of the CCS4 grid."""


def _unloadable_gif(path: str) -> str | None:
    """Why Pillow cannot decode the GIF *path* (None when it can), the file closed after."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format != "GIF":
                return f"not a GIF file (format {im.format})"
            im.load()
    except Exception as err:  # noqa: BLE001 - OSError, SyntaxError, ValueError from Pillow
        return f"not a readable GIF ({type(err).__name__}: {err})"
    return None


class MCHSource(RadarSource):
    """MeteoSwiss GIF composites (``AQCyyjjjHHMM?_00005.801.gif`` and CPC, RZC, AZC)."""

    name = "mch"
    description = "MeteoSwiss GIF radar composite (CCS4 grid)"
    suffixes = (".gif",)
    pattern = _NAME_RE
    expected = "<AQC|CPC|RZC|AZC>yyjjjHHMM?_NNNNN.NNN.gif"
    cadence = pd.Timedelta("5min")

    time_format = "%y%j%H%M"

    def time_digits(self, m: re.Match) -> str:
        return "".join(m.group(2, 3, 4))

    def read(self, path: str | os.PathLike, mask_path: str = "") -> SourceFrame:
        """Rain depth (mm) or rate (mm/h) by product (see the module docstring)."""
        from pysteps.io.importers import import_mch_gif

        path = str(path)
        time = self.file_time(path)
        m = _NAME_RE.fullmatch(os.path.basename(path))
        product, accutime = m.group(1), float(int(m.group(5)))
        unit = _UNIT[product]
        too_big = check_declared_image(path)
        if too_big is not None:
            raise SourceFileError(path, f"over the reader's pixel limit: {too_big}", self.name)
        bad = _unloadable_gif(path)  # before pysteps, which leaks the file of a bad GIF
        if bad is not None:
            raise SourceFileError(path, bad, self.name)
        try:
            values, _quality, meta = import_mch_gif(path, product, unit, accutime)
        except Exception as err:  # OSError, PIL.UnidentifiedImageError, ValueError
            raise SourceFileError(path, f"pysteps cannot read it ({err!r})", self.name) from None
        values = np.asarray(values, dtype=np.float64)
        if values.shape != CCS4_SHAPE:
            raise SourceFileError(
                path,
                f"image {values.shape[1]} x {values.shape[0]}, expected the CCS4 grid "
                f"{CCS4_SHAPE[1]} x {CCS4_SHAPE[0]}",
                self.name,
            )
        if unit == "mm" and accutime <= 0:
            raise SourceFileError(path, "accumulation interval 0 in the name", self.name)
        grid = grid_from_edges(
            meta["projection"], meta["x1"], meta["y1"], meta["x2"], meta["y2"], values.shape
        )
        return SourceFrame(
            values=values,
            valid=np.isfinite(values),
            grid=grid,
            time=time,
            unit=unit,
            accutime=accutime if unit == "mm" else None,
            zr_a=float(meta.get("zr_a", 316.0)),
            zr_b=float(meta.get("zr_b", 1.5)),
            metadata={"product": product, "institution": meta.get("institution")},
        )
