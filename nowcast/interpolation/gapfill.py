"""Gap filling of a resampled store: short gaps filled with flagged, interpolated frames.

:func:`fill_gaps` finds the runs of unobserved slots of a resampled store (docs/contracts.md,
Resampled schema) that are at most ``max_gap`` slots long and have an observed slot on both
sides, and fills them with frames of an interpolation method
(:func:`nowcast.interpolation.get_interpolator`). It writes

- ``reflectivity`` and ``mask`` of the filled slots (dBZ; the mask is the valid pixels of
  both neighbours, NaN elsewhere);
- a new variable ``interpolated`` ``(time,)`` bool, True exactly at the filled slots;
  ``observed`` is left as it was, so a filled slot is never observed.

A gap at the start or the end of the record (no observed neighbour on one side) and a gap
longer than ``max_gap`` stay gaps. Motion for the ``advection`` and ``model`` methods is
estimated per gap from the observed frames of the ``window`` slots ending at the frame before
the gap and the frame after it (:mod:`pipeline.motion`, Lucas-Kanade); ``model`` also takes
those frames as its inputs. Interpolation is on the p/255 scale ``(dBZ + 10) / 70``.

Readers choose: training uses filled slots only when asked
(``RadarSequenceDataset(..., use_interpolated=True)``, ``nowcast train --use-interpolated``);
evaluation never scores against them (it reads ``observed``); a forecast whose input window
holds filled frames says so in its attributes (``interpolated_inputs``).
"""

from __future__ import annotations

import os
import time as _time

import numpy as np
import pandas as pd
import xarray as xr

from nowcast.interpolation.methods import get_interpolator
from pipeline.units import DBZ_MIN, DBZ_RANGE

__all__ = ["check_fill", "fill_gaps", "fillable_gaps"]

INTERPOLATED_ATTRS = {
    "long_name": "slot holds an interpolated frame (not observed)",
    "comment": "True where a gap was filled by nowcast.interpolation.fill_gaps; such a slot "
    "is never observed",
}


def fillable_gaps(observed: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """The gaps to fill: ``(first, last)`` slot indices (inclusive).

    Parameters
    ----------
    observed : numpy.ndarray, shape (S,)
        Per-slot flag.
    max_gap : int
        Longest gap filled, in slots.

    Returns
    -------
    list of (int, int)
        Runs of unobserved slots of at most *max_gap* slots with an observed slot on both
        sides (a run touching the first or last slot is left out).
    """
    obs = np.asarray(observed, dtype=bool)
    edges = np.diff(np.concatenate([[0], (~obs).astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [
        (int(a), int(b))
        for a, b in zip(starts, ends, strict=True)
        if a > 0 and b < len(obs) - 1 and b - a + 1 <= max_gap
    ]


def check_fill(max_gap: int, window: int) -> tuple[int, int]:
    """``(max_gap, window)`` as ints; ValueError unless ``1 <= max_gap <= window``."""
    max_gap, window = int(max_gap), int(window)
    if window < 1:
        raise ValueError(f"the fill input window must be >= 1 slot, got {window}")
    if max_gap < 1:
        raise ValueError(f"--fill-gaps must be >= 1 slot, got {max_gap}")
    if max_gap > window:
        raise ValueError(
            f"--fill-gaps {max_gap} is larger than the input window ({window} slots); "
            f"fill at most {window} slots or widen the window (--fill-window)"
        )
    return max_gap, window


def _norm(dbz: np.ndarray) -> np.ndarray:
    x = (np.asarray(dbz, np.float32) - np.float32(DBZ_MIN)) / np.float32(DBZ_RANGE)
    return np.where(np.isfinite(x), x, np.float32(0.0))


def fill_gaps(
    store,
    max_gap: int,
    method: str = "advection",
    *,
    run: str | os.PathLike | None = None,
    predictor: object | None = None,
    window: int = 5,
    label: str | None = None,
) -> dict:
    """Fill the short gaps of a resampled store in place (module docstring).

    Parameters
    ----------
    store : path or zarr store
        Resampled store: a path (an Icechunk store gets one commit) or a writable session's
        store (what ``nowcast resample --fill-gaps`` passes, committed by its caller).
    max_gap : int
        Longest gap filled, in slots (>= 1, at most *window*).
    method : str
        Interpolation method (:data:`nowcast.interpolation.INTERPOLATOR_NAMES`).
    run : path, optional
        Trained run directory for ``method="model"``.
    predictor : nowcast.forecast.Predictor, optional
        Instead of *run*.
    window : int
        Slots ending at the frame before a gap that feed the motion estimate (and the
        model): the input window. ``max_gap`` may not exceed it.
    label : str, optional
        Name of the store in messages.

    Returns
    -------
    dict
        ``method``, ``max_gap``, ``n_gaps_filled``, ``n_slots_filled``, ``n_gaps_left``
        (gaps still open: longer than ``max_gap`` or at an end), ``seconds``.

    Raises
    ------
    ValueError
        ``max_gap`` < 1 or larger than *window*, unknown method, ``model`` without a run.
    """
    t0 = _time.perf_counter()
    max_gap, window = check_fill(max_gap, window)
    interp = get_interpolator(method, run=run, predictor=predictor)
    import zarr

    session = None
    target = store
    name = label or str(store)
    if isinstance(store, str | os.PathLike):
        from pipeline.store import as_location, is_icechunk_store, is_url, open_repo

        path = as_location(store)
        if not is_url(path) and not path.exists():
            raise ValueError(f"store {path} does not exist")
        target = str(path)
        if is_url(path) or is_icechunk_store(path):
            session = open_repo(path).writable_session("main")
            target = session.store
    ds = xr.open_zarr(target, consolidated=False)
    try:
        for var in ("reflectivity", "mask", "observed"):
            if var not in ds:
                raise ValueError(f"store {name} has no {var!r}: not a resampled store")
        if "interpolated" in ds:
            raise ValueError(f"store {name} already has 'interpolated': its gaps were filled")
        times = pd.DatetimeIndex(ds.indexes["time"])
        observed = np.asarray(ds["observed"].to_numpy(), dtype=bool)
        cadence = float(
            ds.attrs.get("cadence_minutes", (times[1] - times[0]) / pd.Timedelta("1min"))
        )
        group_attrs = dict(ds.attrs)
    finally:
        ds.close()
    gaps = fillable_gaps(observed, max_gap)
    group = zarr.open_group(target, mode="r+")
    refl, mask = group["reflectivity"], group["mask"]
    flags = np.zeros(len(times), dtype=bool)
    for a, b in gaps:
        before, after = a - 1, b + 1
        lo = max(0, before - window + 1)
        dbz = np.asarray(refl[lo : after + 1], dtype=np.float32)
        valid = np.asarray(mask[lo : after + 1], dtype=bool) & observed[lo : after + 1, None, None]
        hist = _norm(dbz[: before - lo + 1])
        hist_mask = valid[: before - lo + 1]
        b_norm, a_norm = hist[-1], _norm(dbz[-1])
        n = b - a + 1
        fractions = np.arange(1, n + 1) / (n + 1)
        frames = interp(
            b_norm,
            a_norm,
            fractions,
            span_steps=float(n + 1),
            history=hist,
            history_mask=hist_mask,
            cadence_minutes=cadence,
        )
        ok = valid[before - lo] & valid[-1]
        out = np.clip(frames, 0.0, 1.0) * np.float32(DBZ_RANGE) + np.float32(DBZ_MIN)
        out = np.where(ok[None], out, np.float32(np.nan)).astype(np.float32)
        refl[a : b + 1] = out
        mask[a : b + 1] = np.broadcast_to(ok, out.shape)
        flags[a : b + 1] = True
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    call = (
        f"{stamp} nowcast.interpolation.fill_gaps(max_gap={max_gap}, method={method!r}, "
        f"window={window})"
    )
    history = group_attrs.get("history", "")
    group_attrs["history"] = f"{history}\n{call}" if history else call
    group_attrs.update(
        fill_gaps=max_gap, fill_interpolation=str(method).lower(), fill_window=window
    )
    new = xr.Dataset({"interpolated": (("time",), flags, INTERPOLATED_ATTRS)}, attrs=group_attrs)
    new.to_zarr(
        target,
        mode="a",
        consolidated=False,
        encoding={"interpolated": {"chunks": (max(len(times), 1),)}},
    )
    n_open = len(fillable_gaps(observed, len(times))) + int(not observed[0]) + int(not observed[-1])
    if session is not None:
        session.commit(f"fill gaps: {len(gaps)} gaps of <= {max_gap} slots, {method}")
    return {
        "method": str(method).lower(),
        "max_gap": max_gap,
        "n_gaps_filled": len(gaps),
        "n_slots_filled": int(flags.sum()),
        "n_gaps_left": n_open - len(gaps),
        "seconds": round(_time.perf_counter() - t0, 3),
    }
