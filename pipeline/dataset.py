"""A torch ``Dataset`` of radar sequences over a resampled store.

An item (docs/contracts.md, Sample schema) is the tuple::

    inputs       (T_in, 1, H, W)  float32, normalised pixel scale p/255 in [0, 1]
    targets      (T_out, 1, H, W) float32, same scale
    t_in         (T_in,)          float32 minutes relative to the last input frame (t_in[-1] == 0)
    t_out        (T_out,)         float32 minutes, > 0
    input_mask   (T_in, 1, H, W)  float32, 1.0 = valid pixel
    target_mask  (T_out, 1, H, W) float32, 1.0 = valid pixel

and, with ``with_motion=True``, a 7th element::

    motion       (2, H, W)        float32, the store's ``motion`` at the last input slot
                                  (pixels per cadence step; channel 0 = x, + right; channel
                                  1 = y, + down), zeros where ``motion_fallback`` > 0

(stores made with ``resample_store(..., motion="lk")``, :mod:`pipeline.motion_store`).

Images are ``(dBZ + 10) / 70`` (= pixel / 255 of HKO-7, :func:`pipeline.units.dbz_to_normalized`);
NaN reflectivity (no valid fine pixel, or an unobserved slot) becomes 0. A frame whose slot is
unobserved, or lies on a day outside the dataset's days, is all zeros with mask 0; otherwise
the mask is the store's ``mask``. Pixels with mask 0 may still carry a value.

Which windows exist: the slots that are observed *and* on one of the dataset's days form the
"catalogue" of the HKO-7 rules (:mod:`pipeline.sampling`); windows of ``scheme.span`` slots
are taken with those rules (``sequent`` with ``stride``, or ``random``). A window may run up to
``max_consecutive_missing`` slots into a day of another split, exactly as the HKO-7 benchmark
does with its per-split catalogues, but those frames count as missing: they are never read
(zeros, mask 0), so no data crosses a split boundary.

Splits: :func:`split_days` cuts the store's days into train / valid / test either
chronologically by fractions (contiguous blocks, train first, so validation and test lie
after the training period) or from HKO-7 day-list files; a day in two splits is an error.

Reading: each item reads the contiguous slot range it needs once, straight from the Zarr
arrays (time chunks of 32 slots, so a <= 30-slot window touches at most two chunks). The
store is opened lazily in each process: a ``DataLoader`` with ``num_workers > 0`` pickles
the dataset without any open handle.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from pipeline.sampling import SamplingScheme, get_scheme, scheme_windows
from pipeline.units import DBZ_MIN, DBZ_RANGE

__all__ = ["RadarSequenceDataset", "split_days", "store_days"]

SPLIT_NAMES = ("train", "valid", "test")


def _as_days(days: Iterable[object]) -> pd.DatetimeIndex:
    try:
        idx = pd.DatetimeIndex([pd.Timestamp(str(d)) if isinstance(d, int) else d for d in days])
    except (TypeError, ValueError) as err:
        raise ValueError(f"could not read days from {days!r}: {err}") from err
    return idx.normalize().unique().sort_values()


def split_days(
    days: Iterable[object],
    fractions: Sequence[float] | None = (0.8, 0.1, 0.1),
    day_files: Mapping[str, str | os.PathLike | Iterable[object]] | None = None,
) -> dict[str, pd.DatetimeIndex]:
    """Split days into train / valid / test with no day in two splits.

    Parameters
    ----------
    days : iterable of date-likes
        The days available (e.g. :func:`store_days`).
    fractions : sequence of 3 floats, optional
        Train, valid, test fractions (summing to 1). Days are sorted and cut into
        contiguous chronological blocks, train first. Ignored when ``day_files`` is given.
    day_files : mapping, optional
        ``{"train": path_or_days, "valid": ..., "test": ...}``: HKO-7 day-list files
        (lines ``YYYYMMDD, <rainfall>``, read with :func:`pipeline.hko7.read_day_list`) or
        iterables of days. Only days also in ``days`` are kept.

    Returns
    -------
    dict of str to pandas.DatetimeIndex
        Sorted days (midnight timestamps) of each split.
    """
    available = _as_days(days)
    if day_files is not None:
        from pipeline.hko7 import read_day_list

        out: dict[str, pd.DatetimeIndex] = {}
        owner: dict[pd.Timestamp, str] = {}
        for name, spec in day_files.items():
            if isinstance(spec, str | os.PathLike):
                listed = _as_days(read_day_list(spec).index)
            else:
                listed = _as_days(spec)
            for d in listed:
                if d in owner:
                    raise ValueError(
                        f"day {d:%Y-%m-%d} is in both split {owner[d]!r} and split {name!r}"
                    )
                owner[d] = name
            out[str(name)] = listed.intersection(available)
        return out
    if fractions is None or len(fractions) != 3:
        raise ValueError(f"fractions must be 3 numbers (train, valid, test), got {fractions!r}")
    f = np.asarray(fractions, dtype=float)
    if (f < 0).any() or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {list(fractions)}")
    n = len(available)
    n_train = int(round(f[0] * n))
    n_valid = int(round((f[0] + f[1]) * n)) - n_train
    cuts = [0, n_train, n_train + n_valid, n]
    return {name: available[cuts[i] : cuts[i + 1]] for i, name in enumerate(SPLIT_NAMES)}


def store_days(store_path: str | os.PathLike) -> pd.DatetimeIndex:
    """Days with at least one observed slot in a resampled store."""
    times, observed, _ = _read_index(store_path)
    return pd.DatetimeIndex(times[observed]).normalize().unique().sort_values()


def _read_index(store_path: str | os.PathLike) -> tuple[pd.DatetimeIndex, np.ndarray, float]:
    from pipeline.store import as_location, is_url, open_store

    path = as_location(store_path)  # a directory or an s3:// URL
    if not is_url(path) and not path.exists():
        raise ValueError(f"store {path} does not exist")
    ds = open_store(path)
    try:
        if "observed" not in ds:
            raise ValueError(
                f"store {path} has no 'observed' variable: expected a resampled store "
                "(pipeline.resample.resample_store), not an ingest store"
            )
        times = pd.DatetimeIndex(ds.indexes["time"]).as_unit("ns")
        observed = np.asarray(ds["observed"].to_numpy(), dtype=bool)
        cadence = ds.attrs.get("cadence_minutes")
        if cadence is None:
            if len(times) < 2:
                raise ValueError(f"store {path}: no cadence_minutes attribute")
            cadence = (times[1] - times[0]) / pd.Timedelta("1min")
    finally:
        ds.close()
    return times, observed, float(cadence)


def _read_interpolated(store_path, n: int) -> np.ndarray:
    """The store's ``interpolated`` flag ``(n,)`` (all False when it has none)."""
    from pipeline.store import open_store

    ds = open_store(store_path)
    try:
        if "interpolated" not in ds:
            return np.zeros(n, bool)
        return np.asarray(ds["interpolated"].to_numpy(), dtype=bool)
    finally:
        ds.close()


def _check_motion(path: Path) -> None:
    from pipeline.store import open_group

    group = open_group(path)
    missing = [v for v in ("motion", "motion_fallback") if v not in group]
    if missing:
        raise ValueError(
            f"store {path} has no {' / '.join(missing)} variable: with_motion=True needs a "
            "store resampled with motion (resample_store(..., motion='lk') or "
            "`nowcast resample --motion lk`)"
        )


def _frame_shape(path: Path) -> tuple[int, int]:
    from pipeline.store import open_group

    shape = open_group(path)["reflectivity"].shape
    return int(shape[1]), int(shape[2])


class _ZarrArrays:
    """Open Zarr arrays of a resampled store, read whole time chunks through an LRU cache.

    Every Zarr read costs a few milliseconds whatever its size, so items read whole time
    chunks (decoded to float32 dBZ) and keep the last ``cache_chunks`` of them: windows
    that overlap (sequent order, or a small store) are served from memory.
    """

    def __init__(self, path: Path, cache_chunks: int) -> None:
        from pipeline.store import open_group

        group = open_group(path)
        self.path = path
        self._motion = None
        self._motion_cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.refl = group["reflectivity"]
        self.mask = group["mask"]
        self.n = self.refl.shape[0]
        self.chunk = int(self.refl.chunks[0])
        attrs = dict(self.refl.attrs)
        self.scale = float(attrs.get("scale_factor", 1.0))
        self.offset = float(attrs.get("add_offset", 0.0))
        self.fill = attrs.get("_FillValue")
        self.raw_float = np.issubdtype(self.refl.dtype, np.floating)
        self.cache_chunks = max(int(cache_chunks), 2)
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def _decode(self, raw: np.ndarray) -> np.ndarray:
        if self.raw_float and self.scale == 1.0 and self.offset == 0.0:
            return raw.astype(np.float32, copy=False)
        dbz = raw.astype(np.float32) * np.float32(self.scale) + np.float32(self.offset)
        if self.fill is not None and not (isinstance(self.fill, float) and np.isnan(self.fill)):
            dbz[raw == self.fill] = np.nan
        return dbz

    def _chunk(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        hit = self._cache.get(k)
        if hit is not None:
            self._cache.move_to_end(k)
            return hit
        lo, hi = k * self.chunk, min((k + 1) * self.chunk, self.n)
        value = (self._decode(self.refl[lo:hi]), np.asarray(self.mask[lo:hi], dtype=bool))
        self._cache[k] = value
        if len(self._cache) > self.cache_chunks:
            self._cache.popitem(last=False)
        return value

    def motion(self, slot: int) -> np.ndarray:
        """Stored motion ``(2, H, W)`` float32 of ``slot``; zeros where it fell back."""
        from pipeline.store import open_group

        if self._motion is None:
            group = open_group(self.path)
            self._motion = (group["motion"], np.asarray(group["motion_fallback"][:]))
        field, fallback = self._motion
        if fallback[slot] != 0:
            return np.zeros((2,) + tuple(field.shape[2:]), dtype=np.float32)
        chunk = int(field.chunks[0])
        k = slot // chunk
        if k not in self._motion_cache:  # whole time chunks, the last few kept
            block = np.asarray(field[k * chunk : (k + 1) * chunk], dtype=np.float32)
            self._motion_cache[k] = np.where(np.isfinite(block), block, np.float32(0.0))
            if len(self._motion_cache) > 2:
                self._motion_cache.popitem(last=False)
        return self._motion_cache[k][slot - k * chunk].copy()

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """dBZ (float32, NaN = none) and mask (bool) of slots ``lo:hi``, shape (hi-lo, H, W)."""
        ks = range(lo // self.chunk, (hi - 1) // self.chunk + 1)
        parts = [self._chunk(k) for k in ks]
        base = ks[0] * self.chunk
        if len(parts) == 1:
            dbz, mask = parts[0]
        else:
            dbz = np.concatenate([p[0] for p in parts])
            mask = np.concatenate([p[1] for p in parts])
        return dbz[lo - base : hi - base], mask[lo - base : hi - base]


class RadarSequenceDataset(Dataset):
    """Sequences of radar frames from a resampled store for training and evaluation.

    Parameters
    ----------
    store_path : path
        Resampled store (:func:`pipeline.resample.resample_store`).
    days : iterable of date-likes, optional
        Days to draw from. Exactly one of ``days`` and ``split``.
    split : {"train", "valid", "test"}, optional
        Split of the store's days made by :func:`split_days` with ``fractions`` /
        ``day_files``.
    scheme : str or SamplingScheme
        Time-sampling scheme (:func:`pipeline.sampling.get_scheme`).
    n_in, n_out : int
        Input and target frames (used when ``scheme`` is a name).
    stride : int
        Slots between window starts in ``sequent`` mode.
    mode : {"sequent", "random"}
        Window selection (HKO-7 rules).
    n_samples : int, optional
        Windows drawn in ``random`` mode.
    seed : int
        Seed of the scheme's collections and of ``random`` mode.
    max_consecutive_missing : int
        HKO-7 rule: longest accepted run of missing slots in a window.
    fractions, day_files
        Passed to :func:`split_days` when ``split`` is given.
    cache_chunks : int
        Time chunks kept decoded in memory per process (LRU; 32 slots of 80 x 80 are
        about 1 MB with the mask).
    with_motion : bool
        Append the stored motion field of the last input slot to each item (see the
        module docstring); the store must have a ``motion`` variable.
    use_interpolated : bool
        Count filled gaps (slots flagged ``interpolated``, ``nowcast resample --fill-gaps``)
        as present frames; default False: they stay gaps (never read, mask 0).

    Notes
    -----
    Item ``i`` uses window ``i`` and the scheme's collection ``i % set_size``. See the
    module docstring for the item layout, scale (p/255) and masks.
    """

    def __init__(
        self,
        store_path: str | os.PathLike,
        days: Iterable[object] | None = None,
        split: str | None = None,
        scheme: str | SamplingScheme = "regular",
        *,
        n_in: int = 10,
        n_out: int = 10,
        stride: int = 5,
        mode: str = "sequent",
        n_samples: int | None = None,
        seed: int = 0,
        max_consecutive_missing: int = 2,
        fractions: Sequence[float] | None = (0.8, 0.1, 0.1),
        day_files: Mapping[str, str | os.PathLike | Iterable[object]] | None = None,
        cache_chunks: int = 64,
        with_motion: bool = False,
        use_interpolated: bool = False,
    ) -> None:
        if (days is None) == (split is None):
            raise ValueError("give exactly one of days= or split=")
        from pipeline.store import as_location

        self.store_path = as_location(store_path)  # a directory or an s3:// URL
        self.with_motion = bool(with_motion)
        if self.with_motion:
            _check_motion(self.store_path)
        self.cache_chunks = int(cache_chunks)
        self.scheme = get_scheme(scheme, n_in=n_in, n_out=n_out, seed=seed)
        times, observed, cadence = _read_index(self.store_path)
        if split is not None:
            splits = split_days(
                pd.DatetimeIndex(times[observed]), fractions=fractions, day_files=day_files
            )
            if split not in splits:
                raise ValueError(f"unknown split {split!r}; valid names: {sorted(splits)}")
            chosen = splits[split]
        else:
            chosen = _as_days(days)
        self.days = chosen
        self.split = split
        self.cadence_minutes = cadence
        self.times = times
        in_days = np.asarray(times.normalize().isin(chosen))
        self.use_interpolated = bool(use_interpolated)
        if self.use_interpolated:
            observed = observed | _read_interpolated(self.store_path, len(times))
        self._present = observed & in_days
        if len(times) > 1 and (np.diff(times.asi8) != int(cadence * 60e9)).any():
            raise ValueError(f"store {self.store_path} is not on a regular {cadence}-min grid")
        starts = scheme_windows(
            pd.Series(self._present, index=times),
            self.scheme,
            stride=stride,
            max_consecutive_missing=max_consecutive_missing,
            mode=mode,
            n_samples=n_samples,
            seed=seed,
            cadence=pd.Timedelta(minutes=cadence),
        )
        step = int(cadence * 60e9)
        self._start_slots = ((starts.asi8 - times.asi8[0]) // step).astype(np.int64)
        self._frame_shape = _frame_shape(self.store_path)
        self._arrays: _ZarrArrays | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self._start_slots)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = None
        state["_pid"] = None
        return state

    def _zarr(self) -> _ZarrArrays:
        if self._arrays is None or self._pid != os.getpid():
            self._arrays = _ZarrArrays(self.store_path, self.cache_chunks)
            self._pid = os.getpid()
        return self._arrays

    def _norm(self, index: int) -> int:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        return index % len(self)

    def _slots(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        start = int(self._start_slots[index])
        in_pos, out_pos = self.scheme.positions(index)
        return start + in_pos - 1, start + out_pos - 1

    def item_time(self, index: int) -> pd.Timestamp:
        """Time of the last input frame of item ``index``."""
        in_slots, _ = self._slots(self._norm(index))
        return pd.Timestamp(self.times[in_slots[-1]])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        index = self._norm(index)
        in_slots, out_slots = self._slots(index)
        slots = np.r_[in_slots, out_slots]
        n_slots = len(self.times)
        present = np.zeros(len(slots), dtype=bool)
        inside = slots < n_slots
        present[inside] = self._present[slots[inside]]
        h, w = self._frame_shape
        img = np.zeros((len(slots), 1, h, w), dtype=np.float32)
        msk = np.zeros((len(slots), 1, h, w), dtype=np.float32)
        if present.any():  # read only the slot range of the frames that are used
            used = slots[present]
            dbz, mask = self._zarr().read(int(used.min()), int(used.max()) + 1)
            frames = dbz[used - used.min()]
            norm = (frames - np.float32(DBZ_MIN)) / np.float32(DBZ_RANGE)
            img[present, 0] = np.where(np.isfinite(norm), norm, np.float32(0.0))
            msk[present, 0] = mask[used - used.min()]
        t_in, t_out = self.scheme.times(index, self.cadence_minutes)
        k = len(in_slots)
        item = (
            torch.from_numpy(np.ascontiguousarray(img[:k])),
            torch.from_numpy(np.ascontiguousarray(img[k:])),
            torch.from_numpy(t_in),
            torch.from_numpy(t_out),
            torch.from_numpy(np.ascontiguousarray(msk[:k])),
            torch.from_numpy(np.ascontiguousarray(msk[k:])),
        )
        if not self.with_motion:
            return item
        return item + (torch.from_numpy(self._zarr().motion(int(in_slots[-1]))),)
