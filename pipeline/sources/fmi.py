"""The ``fmi`` source: FMI 8-bit PGM reflectivity composites (Finnish Meteorological Institute).

Files ``YYYYmmddHHMM_fmi.radar.composite.lowest_FIN_SUOMI1.pgm[.gz]`` (pysteps' archive
convention; folders do not matter). A binary PGM (``P5``) whose header comments give the
metadata (``# obstime``, ``# metersperpixel_x/y``, ``# projection radar {`` ``# type
stereographic``, ``# centrallongitude``, ``# centrallatitude``, ``# truelatitude``,
``# bottomleft LON LAT``, ``# topright LON LAT`` ``# }``), then ``WIDTH HEIGHT`` and the
maximum value, which is also the no-data value.

Values and georeferencing come from :func:`pysteps.io.importers.import_fmi_pgm`
(``dBZ = (p - 64) / 2``; the maximum value is no data, i.e. invalid; ``p = 0`` is -32 dBZ,
valid no-rain; pysteps' polar stereographic definition with FMI's false easting and
northing). The valid time is the one in the name. Z-R: FMI's ``a = 223, b = 1.53``.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from pipeline.geo import grid_from_edges
from pipeline.guards import check_declared_image
from pipeline.sources.base import RadarSource, SourceFileError, SourceFrame

_NAME_RE = re.compile(r"(\d{12})_fmi\.radar\.composite\.lowest_FIN_SUOMI1\.pgm(\.gz)?")


class FMISource(RadarSource):
    """FMI PGM composites (``YYYYmmddHHMM_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz``)."""

    name = "fmi"
    description = "FMI PGM radar reflectivity composite (Finnish Meteorological Institute)"
    suffixes = (".pgm", ".pgm.gz")
    pattern = _NAME_RE
    expected = "YYYYmmddHHMM_fmi.radar.composite.lowest_FIN_SUOMI1.pgm[.gz]"
    cadence = pd.Timedelta("5min")

    time_format = "%Y%m%d%H%M"

    def read(self, path: str | os.PathLike, mask_path: str = "") -> SourceFrame:
        """Reflectivity in dBZ (see the module docstring)."""
        from pysteps.io.importers import import_fmi_pgm

        path = str(path)
        time = self.file_time(path)
        too_big = check_declared_image(path, gzipped=path.endswith(".gz"))
        if too_big is not None:
            raise SourceFileError(path, f"over the reader's pixel limit: {too_big}", self.name)
        try:
            values, _quality, meta = import_fmi_pgm(path, gzipped=path.endswith(".gz"))
        except Exception as err:  # OSError, ValueError, SyntaxError from PIL / gzip / pysteps
            raise SourceFileError(path, f"pysteps cannot read it ({err!r})", self.name) from None
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2:
            raise SourceFileError(path, f"image of shape {values.shape}, expected 2-D", self.name)
        if "projection" not in meta:
            raise SourceFileError(
                path, "header gives no stereographic projection (# type stereographic)", self.name
            )
        try:
            grid = grid_from_edges(
                meta["projection"], meta["x1"], meta["y1"], meta["x2"], meta["y2"], values.shape
            )
        except (KeyError, ValueError) as err:
            raise SourceFileError(path, f"unusable georeferencing ({err})", self.name) from None
        return SourceFrame(
            values=values,
            valid=np.isfinite(values),
            grid=grid,
            time=time,
            unit="dBZ",
            zr_a=float(meta.get("zr_a", 223.0)),
            zr_b=float(meta.get("zr_b", 1.53)),
            metadata={"institution": meta.get("institution")},
        )
