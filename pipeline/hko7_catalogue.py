"""Catalogues of an HKO-7 archive: the project's own table and the published pickles.

Besides the published pandas-pickle catalogues (converted by :func:`convert_pickle_catalogue`
with a restricted unpickler that runs no code from the file, :mod:`pipeline._hko7_pickle`),
the project uses its own catalogue: a CSV or Parquet table with columns ``time``,
``frame_path`` (relative to the archive root, POSIX separators) and ``has_mask`` (bool).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from pipeline.hko7 import CATALOGUE_COLUMNS, frame_path, mask_path

__all__ = ["convert_pickle_catalogue", "read_catalogue", "write_catalogue"]


def _relpath(path: str, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def write_catalogue(frames: pd.DataFrame, path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """Write our catalogue of an archive as CSV (``.csv``) or Parquet (``.parquet``).

    Parameters
    ----------
    frames : pandas.DataFrame
        As returned by :func:`discover_frames`.
    path : path
        Output file; the suffix picks the format.
    root : path
        Archive root the stored paths are made relative to.
    """
    p = Path(path)
    root = Path(root)
    table = pd.DataFrame(
        {
            "time": pd.DatetimeIndex(frames.index),
            "frame_path": [_relpath(f, root) for f in frames["frame_path"]],
            "has_mask": (frames["mask_path"] != "").to_numpy(dtype=bool),
        }
    )
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix == ".csv":
        table.to_csv(p, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    elif p.suffix == ".parquet":
        table.to_parquet(p, index=False)
    else:
        raise ValueError(f"catalogue {p}: unknown suffix {p.suffix!r}, expected .csv or .parquet")
    return p


def read_catalogue(path: str | os.PathLike) -> pd.DataFrame:
    """Read a catalogue written by :func:`write_catalogue`.

    Returns
    -------
    pandas.DataFrame
        Index ``time`` (DatetimeIndex); columns ``frame_path`` (relative, str) and
        ``has_mask`` (bool).

    Raises
    ------
    ValueError
        Naming the file: an unknown suffix, missing columns, or a damaged file (whatever
        pandas or pyarrow raised, folded into one message).
    FileNotFoundError
        If the file does not exist.
    """
    p = Path(path)
    if p.suffix not in (".csv", ".parquet"):
        raise ValueError(f"catalogue {p}: unknown suffix {p.suffix!r}, expected .csv or .parquet")
    try:
        return _parse_catalogue(p)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - a damaged file: pandas/pyarrow raise many types
        if isinstance(err, ValueError) and str(p) in str(err):
            raise
        raise ValueError(f"catalogue {p} is unreadable ({type(err).__name__}: {err})") from None


def _parse_catalogue(p: Path) -> pd.DataFrame:
    if p.suffix == ".csv":
        table = pd.read_csv(p, dtype={"frame_path": str}, keep_default_na=False)
    else:
        table = pd.read_parquet(p)
    missing = [c for c in CATALOGUE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"catalogue {p} lacks columns {missing}; has {list(table.columns)}")
    has_mask = table["has_mask"]
    if has_mask.dtype != bool:
        has_mask = has_mask.astype(str).str.lower().map({"true": True, "false": False})
        if has_mask.isna().any():
            raise ValueError(f"catalogue {p}: has_mask must be True/False")
    index = pd.DatetimeIndex(pd.to_datetime(table["time"]), name="time").astype("datetime64[ns]")
    return pd.DataFrame(
        {
            "frame_path": table["frame_path"].astype(str).to_numpy(),
            "has_mask": has_mask.to_numpy(bool),
        },
        index=index,
    )


def convert_pickle_catalogue(
    pkl_path: str | os.PathLike,
    out_path: str | os.PathLike,
    trusted: bool = False,
    root: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Convert a published HKO-7 pandas-pickle catalogue to our catalogue format.

    The pickle is read by a restricted unpickler that cannot run code
    (:mod:`pipeline._hko7_pickle`): it accepts only the globals the published files reference
    (pickle protocol 2, Python 2.7, pandas 0.19), maps each to a stand-in that records its
    arguments, and takes the frame times from the raw int64 nanoseconds of the DataFrame's
    ``DatetimeIndex``; a file naming any other global is refused before anything is unpickled.
    Only the index (frame times) is used; the times are sorted and de-duplicated.

    Parameters
    ----------
    pkl_path : path
        E.g. ``pd/hko7_rainy_test.pkl``.
    out_path : path
        ``.csv`` or ``.parquet`` catalogue to write.
    trusted : bool
        Ignored (kept so that old calls and ``--trusted`` still work): the reader runs no code
        from the file, so there is nothing to vouch for.
    root : path, optional
        Archive root; when given, ``has_mask`` tells whether each mask file exists there,
        otherwise it is True (the published release has a mask for every frame).

    Returns
    -------
    pandas.DataFrame
        The catalogue written (see :func:`read_catalogue`).

    Raises
    ------
    ValueError
        If the pickle names a global outside the published files' allowlist, or does not hold
        a DataFrame with a ``datetime64[ns]`` index; nothing is written then.
    """
    from pipeline._hko7_pickle import read_catalogue_times

    del trusted  # nothing to trust: the reader cannot run code
    p = Path(pkl_path)
    ns = read_catalogue_times(p)
    times = pd.DatetimeIndex(ns.astype("datetime64[ns]"), name="time")
    times = times.sort_values().unique()
    base = Path(root) if root is not None else Path(".")
    rel = [frame_path(Path("."), t).as_posix() for t in times]
    if root is not None:
        has_mask = [mask_path(base, t).exists() for t in times]
    else:
        has_mask = [True] * len(times)
    frames = pd.DataFrame(
        {
            "frame_path": [str(base / r) for r in rel],
            "mask_path": [
                str(mask_path(base, t)) if h else "" for t, h in zip(times, has_mask, strict=True)
            ],
        },
        index=pd.DatetimeIndex(times, name="time"),
    )
    write_catalogue(frames, out_path, base)
    return read_catalogue(out_path)
