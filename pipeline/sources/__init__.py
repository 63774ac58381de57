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


def first_grid(source: RadarSource, frames):
    """The grid of the first readable file of *frames* (``discover`` output), or None.

    Unreadable files met on the way are not reported here: ingest decodes them again and
    reports them then.
    """
    for path in frames["frame_path"]:
        try:
            return source.grid_of(path)
        except SourceFileError:
            continue
    return None


def ingest_plan(
    name: str,
    archive,
    store,
    start=None,
    end=None,
    follow_links: bool = False,
):
    """What ingest needs from a source: its files, the store's grid and static validity.

    Parameters
    ----------
    name : str
        Source name (:data:`SOURCE_NAMES`).
    archive : path
        Archive root.
    store : path or URL
        The store (only named in messages here).

    Returns
    -------
    source : RadarSource
    frames : pandas.DataFrame
        :meth:`RadarSource.discover` output.
    skipped : list of (str, str)
        Entries passed over while discovering.
    grid : pipeline.geo.Grid or None
        The grid of the files (None for ``hko7``: the store's own HKO-7 grid).
    valid_static : np.ndarray or None
        ``(H, W)`` bool, False where HKO-7's ``mask_dat.npz`` excludes a pixel.

    Raises
    ------
    ValueError
        If *name* is unknown, or no file of a non-HKO-7 source is readable (a store
        cannot be laid out without its grid).
    """
    from pathlib import Path

    from pipeline import hko7

    source = get_source(name)
    skipped: list[tuple[str, str]] = []
    frames = source.discover(
        archive, start=start, end=end, skipped=skipped, follow_links=follow_links
    )
    grid = valid_static = None
    if name == "hko7":
        if (Path(archive) / hko7.STATIC_MASK_FILE).exists():
            valid_static = hko7.read_static_masks(archive)["exclude_mask"] == 0
    else:
        grid = first_grid(source, frames)
        if grid is None:
            raise ValueError(
                f"no readable {name} file under {archive} ({len(frames)} found, "
                f"{len(skipped)} passed over): the store {store} needs the files' grid"
            )
    return source, frames, skipped, grid, valid_static
