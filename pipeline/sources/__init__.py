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

import pandas as pd

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
    "guess_sources",
    "new_store_attrs",
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


def new_store_attrs(source: RadarSource) -> dict:
    """Global attributes of a new store of *source*'s files: its own
    (:meth:`RadarSource.store_attrs`) and ``nominal_cadence_minutes``, its cadence
    (read back by :func:`pipeline.window.store_cadence`)."""
    attrs = dict(source.store_attrs())
    if source.cadence is not None:
        attrs["nominal_cadence_minutes"] = float(source.cadence / pd.Timedelta("1min"))
    return attrs


def guess_sources(archive, exclude: str = "", limit: int = 2000) -> list[tuple[str, int]]:
    """The sources whose file names the files under *archive* have, most files first.

    Looks at the names only (no file is opened), the first *limit* files of the walk;
    an HKO-7 archive is recognised by its ``radarPNG`` folder.

    Parameters
    ----------
    archive : path
        Folder of radar files.
    exclude : str
        A source not to suggest (the one that found nothing).
    limit : int
        Files looked at, at most.

    Returns
    -------
    list of (str, int)
        ``(source name, files named like it)``, only sources with at least one file.
    """
    import os
    from pathlib import Path

    root = Path(archive)
    if not root.is_dir():
        return []
    names: list[str] = []
    for _dirpath, _dirnames, filenames in os.walk(root):
        names.extend(filenames)
        if len(names) >= limit:
            break
    counts = []
    for name in SOURCE_NAMES:
        if name == exclude:
            continue
        if name == "hko7":
            n = len(names) if (root / "radarPNG").is_dir() else 0
        else:
            src = get_source(name)
            n = sum(
                1
                for f in names
                if src.is_candidate(f) and (src.pattern is None or src.pattern.fullmatch(f))
            )
        if n:
            counts.append((name, n))
    return sorted(counts, key=lambda item: -item[1])


def source_hint(archive, exclude: str) -> str:
    """``"; the files look like --source mch (12 files named like it)"`` or ``""``."""
    guesses = guess_sources(archive, exclude)
    if not guesses:
        return ""
    name, n = guesses[0]
    return f"; the files look like --source {name} ({n} file{'s' * (n != 1)} named like it)"


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
    try:
        frames = source.discover(
            archive, start=start, end=end, skipped=skipped, follow_links=follow_links
        )
    except ValueError as err:
        if name == "hko7" and not (Path(archive) / hko7.FRAME_DIR).is_dir():
            raise ValueError(f"{err}{source_hint(archive, name)}") from None
        raise
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
                + source_hint(archive, name)
            )
    return source, frames, skipped, grid, valid_static
