"""Radar sources: the files of a radar service, read into the store's dBZ (docs/sources.md).

``get_source(name)`` returns a :class:`~pipeline.sources.base.RadarSource` (the one
contract: discover files and valid times, read one file into values + validity mask +
grid + metadata, convert to dBZ). Names (:data:`SOURCE_NAMES`):

- ``hko7``: the HKO-7 archive's PNG frames (:mod:`pipeline.sources.hko7`);
- ``odim``: ODIM_H5 v2.x Cartesian composites and products (:mod:`pipeline.sources.odim`);
- ``knmi``: KNMI HDF5 radar composites (:mod:`pipeline.sources.knmi`);
- ``bom``: BoM Rainfields NetCDF (:mod:`pipeline.sources.bom`);
- ``mch``: MeteoSwiss GIF composites (:mod:`pipeline.sources.mch`);
- ``fmi``: FMI PGM composites (:mod:`pipeline.sources.fmi`).

All but ``hko7`` wrap the pysteps importers (``pysteps.io.importers``).
"""

from __future__ import annotations

from pipeline.sources.base import RadarSource, SourceFileError, SourceFrame

SOURCE_NAMES: tuple[str, ...] = ("hko7", "odim", "knmi", "bom", "mch", "fmi")
"""Valid names for :func:`get_source` (``nowcast ingest --source``)."""
DEFAULT_SOURCE: str = "hko7"

__all__ = [
    "DEFAULT_SOURCE",
    "SOURCE_NAMES",
    "RadarSource",
    "SourceFileError",
    "SourceFrame",
    "get_source",
]


def get_source(name: str) -> RadarSource:
    """The radar source called *name*.

    Raises
    ------
    ValueError
        If *name* is not one of :data:`SOURCE_NAMES` (the message lists them).
    """
    if name == "hko7":
        from pipeline.sources.hko7 import HKO7Source as cls
    elif name == "odim":
        from pipeline.sources.odim import ODIMSource as cls
    elif name == "knmi":
        from pipeline.sources.knmi import KNMISource as cls
    elif name == "bom":
        from pipeline.sources.bom import BoMSource as cls
    elif name == "mch":
        from pipeline.sources.mch import MCHSource as cls
    elif name == "fmi":
        from pipeline.sources.fmi import FMISource as cls
    else:
        raise ValueError(f"unknown radar source {name!r}; valid sources: {', '.join(SOURCE_NAMES)}")
    return cls()
