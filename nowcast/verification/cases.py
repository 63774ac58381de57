"""Cases of an evaluation: several stores (events) scored as one dataset, labelled per sample.

:func:`open_cases` opens one :class:`pipeline.dataset.RadarSequenceDataset` per store,
checks that they can be scored together (same cadence and frame size), leaves out (and
names) a store without a single window, chains
them and labels every sample with its case: the store (``cases="store"``: its file name
without ``.zarr``) or the store and day (``cases="day"``). Each case's block length for
the moving-block bootstrap comes from its windows' start slots
(:func:`nowcast.verification.bootstrap.block_length`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from nowcast.verification.bootstrap import block_length

__all__ = ["CASE_KINDS", "Cases", "open_cases", "store_pixel_km"]

CASE_KINDS = ("store", "day")
"""Valid values of :attr:`nowcast.options.EvaluateOptions.cases`."""


@dataclass
class Cases:
    """Chained datasets and the case of each sample.

    Attributes
    ----------
    dataset : torch.utils.data.Dataset
        The stores' samples, store after store (a ``ConcatDataset`` for several).
    datasets : list of RadarSequenceDataset
        One per store.
    labels : numpy.ndarray
        Case of each sample (object array of str).
    times : numpy.ndarray
        Time of each sample's last input frame (datetime64[ns]).
    blocks : dict of str to int
        Moving-block length of each case.
    cadence_minutes : float
        The stores' cadence.
    pixel_km : numpy.ndarray or None
        Pixel size (km) of every sample's store (None when a store has no x coordinate).
    names : list of str
        Each store's case name.
    store_pixel_km : list of float or None
        Each store's pixel size (km).
    skipped : list of str
        Stores left out, each with the reason (no window in the split).
    """

    dataset: Any
    datasets: list
    labels: np.ndarray
    times: np.ndarray
    blocks: dict[str, int]
    cadence_minutes: float
    pixel_km: np.ndarray | None
    names: list[str]
    store_pixel_km: list
    skipped: list[str]


def store_pixel_km(location: str | os.PathLike) -> float | None:
    """Pixel size (km) of a store from its ``x`` coordinate (units km or m); None if absent."""
    return _grid(location)[0]


def _grid(location: str | os.PathLike) -> tuple[float | None, tuple[int, int]]:
    """``(pixel_km or None, (H, W))`` of a store."""
    from pipeline.store import open_store

    ds = open_store(location)
    shape = (int(ds.sizes.get("y", 0)), int(ds.sizes.get("x", 0)))
    if "x" not in ds.coords or ds.sizes.get("x", 0) < 2:
        return None, shape
    x = ds["x"].to_numpy()
    units = str(ds["x"].attrs.get("units", "km")).lower()
    scale = 1e-3 if units in ("m", "metre", "meter", "metres", "meters") else 1.0
    return float(abs(x[1] - x[0]) * scale), shape


def _store_name(location: str | os.PathLike) -> str:
    name = PurePosixPath(str(location).rstrip("/")).name
    return name[: -len(".zarr")] if name.endswith(".zarr") else name


def open_cases(
    data: str | os.PathLike | Sequence[str | os.PathLike],
    split: str,
    scheme: str,
    ds_kwargs: Mapping[str, Any],
    cases: str = "store",
    block: int | None = None,
) -> Cases:
    """Open every store and label its samples.

    Parameters
    ----------
    data : path or sequence of paths
        Resampled stores.
    split, scheme : str
        Passed to :class:`pipeline.dataset.RadarSequenceDataset`, with ``ds_kwargs``.
    ds_kwargs : mapping
        Further dataset arguments (``n_in``, ``n_out``, ``stride``, ...).
    cases : str
        ``"store"`` or ``"day"`` (:data:`CASE_KINDS`).
    block : int, optional
        Block length for every case (default: from the windows' overlap).

    Returns
    -------
    Cases
    """
    from torch.utils.data import ConcatDataset

    from pipeline.dataset import RadarSequenceDataset

    if cases not in CASE_KINDS:
        raise ValueError(f"unknown case kind {cases!r}; valid names: {', '.join(CASE_KINDS)}")
    paths = [data] if isinstance(data, str | os.PathLike) else list(data)
    if not paths:
        raise ValueError("no store given")
    names: list[str] = []
    for p in paths:
        name = _store_name(p)
        names.append(name if name not in names else f"{name}#{len(names) + 1}")
    sets = [RadarSequenceDataset(p, split=split, scheme=scheme, **ds_kwargs) for p in paths]
    grids = [_grid(p) for p in paths]
    skipped = [
        f"{n}: no window of {d.scheme.span} frames in its {split} split"
        for n, d in zip(names, sets, strict=True)
        if len(d) == 0
    ]
    if len(skipped) == len(sets):
        raise ValueError("nothing to score: " + "; ".join(skipped))
    keep = [i for i, d in enumerate(sets) if len(d) > 0]
    names, sets, grids = [names[i] for i in keep], [sets[i] for i in keep], [grids[i] for i in keep]
    cadences = {float(d.cadence_minutes) for d in sets}
    if len(cadences) > 1:
        desc = ", ".join(f"{n} {d.cadence_minutes:g} min" for n, d in zip(names, sets, strict=True))
        raise ValueError(f"stores of different cadences cannot be scored together: {desc}")
    if len({g[1] for g in grids}) > 1:
        desc = ", ".join(f"{n} {g[1][0]} x {g[1][1]}" for n, g in zip(names, grids, strict=True))
        raise ValueError(f"stores of different frame sizes cannot be scored together: {desc}")
    pixels = [g[0] for g in grids]
    pixel_km = None
    if None not in pixels:
        pixel_km = np.concatenate([np.full(len(d), v) for d, v in zip(sets, pixels, strict=True)])
    cadence = cadences.pop()
    labels, times, blocks = [], [], {}
    for name, d in zip(names, sets, strict=True):
        t = np.array([d.item_time(i).to_datetime64() for i in range(len(d))], dtype="M8[ns]")
        lab = np.array(
            [name if cases == "store" else f"{name} {str(v)[:10]}" for v in t], dtype=object
        )
        span = int(d.scheme.span)
        step = np.timedelta64(int(round(cadence * 60e9)), "ns")
        slots = ((t - t.min()) // step).astype(np.int64) if len(t) else np.zeros(0, np.int64)
        for c in dict.fromkeys(lab):
            sel = lab == c
            blocks[c] = int(block) if block is not None else block_length(slots[sel], span)
        labels.append(lab)
        times.append(t)
    dataset = sets[0] if len(sets) == 1 else ConcatDataset(sets)
    return Cases(
        dataset=dataset,
        datasets=sets,
        labels=np.concatenate(labels) if labels else np.zeros(0, dtype=object),
        times=np.concatenate(times) if times else np.zeros(0, dtype="M8[ns]"),
        blocks=blocks,
        cadence_minutes=float(cadence),
        pixel_km=pixel_km,
        names=names,
        store_pixel_km=pixels,
        skipped=skipped,
    )
