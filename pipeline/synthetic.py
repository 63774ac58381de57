"""A realistic synthetic radar archive in the published HKO-7 layout.

The HKO-7 frames are released only under an undertaking with the Hong Kong Observatory,
so tests, demos and benchmarks run on this archive instead. :func:`generate_archive` writes
exactly the layout of :mod:`pipeline.hko7` (PNG frames, ``.mask`` files, ``mask_dat.npz``,
``hko7_rainy_{train,valid,test}_days.txt``) plus our catalogue ``catalogue.csv``.

Weather (engine in :mod:`pipeline._synth_weather`, STEPS/S-PROG-like; fixed geography,
regimes and diurnal cycle in :mod:`pipeline._synth_world`; full description, real-radar
ranges and measurements in docs/synthetic.md):

* rain fields with power-law spectral texture (latent spectrum ``|k|^-3.3`` up to the 1000 km
  scale break); the measured dBZ spectrum slope is about -3.2 to -3.3 over 4-120 km;
* growth and decay: every Fourier mode of the latent field is an AR(1) process whose lifetime
  grows with the wavelength (``35 min * (lambda / 32 km) ** 0.9``: minutes for small cells,
  hours for large areas);
* convective cells with life cycles: born (in strong rain, or over land on convective
  afternoons, from clear air too), moving with the flow, growing, peaking at mid-life and
  decaying within 30-110 min; bigger cells are stronger and live longer (size-intensity
  relation);
* a fixed synthetic geography (land to the north, ragged coast, terrain; the same for every
  seed) whose stationary forcing favours rain over the hills and their windward slopes, and
  over land and the coast on convective afternoons;
* a diurnal cycle (local time = frame time + 8 h): in convective regimes more cells, more
  coverage and more rain over land in the afternoon, less at night;
* regimes of 1-4 days sharing steering, convective character, coverage, intensity and texture
  anisotropy, so consecutive days are related; and no jump at midnight: a day that reaches
  24:00 ends exactly in the next day's first state (an exact AR(1) bridge of the latent
  modes), though every day is still generated on its own;
* motion: a smooth field (translation 45-75 km/h, i.e. 4-7 pixels per frame, plus rotation)
  that veers and speeds up or slows down over the day and continues across midnight, applied
  by one exact affine warp per frame (no numerical diffusion);
* texture anisotropy: a bounded, slowly varying stretch of the latent texture (aspect ratio at
  most 2, typically about 1.5). Rain is born isotropic and deformed only over its lifetime;
  an earlier version integrated the strain rate into the warp over the whole day, so newly
  born texture inherited a stretch of up to 4:1 and frames turned into edge-to-edge streaks
  (orientation coherence p90 0.76, max 0.97; real radar p90 0.27-0.62, max 0.31-0.69);
* dBZ distribution: rain coverage ``f(t)`` (fraction >= 0.5 mm/h, regime means 0.19-0.29,
  with up to two dry spells of 1-3 h a day, 75-minute ramps) and a long tail
  (``dBZ = 12.98 + c * excess**0.7``), weak echo just below the rain threshold, no echo
  (pixel 0) under 0 dBZ.

Measured with :func:`pipeline.radarstats.weather_statistics` on the rainy hours (hourly
fraction >= 0.5 mm/h at least 0.1) of whole days, seed 0, 2015-06-01..06 (per-day table in
docs/synthetic.md): fraction >= 0.5 mm/h 0.22-0.30, >= 5 mm/h 0.0096-0.028, >= 30 mm/h
1.3e-4-4.9e-4, rainy-pixel dBZ median / p90 / p99 19.4-21.0 / 26.0-28.4 / 31.7-34.8, spectrum
slope -3.24..-3.33, persistence CSI at 6 / 30 / 60 min 0.71-0.75 / 0.45-0.52 / 0.31-0.41,
motion 5.0-5.5 pixels per frame, orientation coherence median 0.18-0.32, p90 0.34-0.41, max
0.40-0.48. Every figure is inside the real ranges except the 6-minute persistence CSI of four
days (0.722-0.746 against 0.66-0.72; their 30-minute CSI up to 0.52 against 0.51) and one
day's coherence median (0.18 against 0.22-0.50). The realism test checks 2015-06-03.

Radar artefacts:

* out of range: pixels further than 240 pixels (256 km) from the centre (the corners) are
  pixel 0 (-10 dBZ, "no echo" in the HKO-7 encoding), 0 in every per-frame mask and 1 in
  ``out_boundary_mask``;
* ground clutter: a few fixed small clusters (about 60 pixels) of 45-58 dBZ present in most
  frames, marked in ``outlier_mask`` and 0 in the per-frame masks;
* interference spokes: in about 3 % of frames a thin radial line of spurious echo, 0 in that
  frame's mask only.

Archive irregularities (when ``irregular=True``), all listed in the :class:`SynthReport`:
per day one single missing frame, a second single missing frame (days of >= 40 frames), one
run of 3-5 consecutive missing frames, and one frame stored one minute off the 6-minute grid
(e.g. ``09:55`` instead of ``09:54``, as in the real archive); the first day has one frame
without a mask file; with ``corrupt=True`` the last day has one truncated PNG; with
``empty_day=True`` the train day list also names the day before ``start``, which has no frames.

Day lists: the generated days are split chronologically (about 60 / 10 / 30 % into train /
valid / test, test and train at least one day each when there are two days, valid one day
from three days on); the rainfall column is the daily rain depth (mm) averaged over the valid
pixels of the day's frames (0 for the empty day).

Every day uses its own random stream derived from ``(seed, day)``: the same seed gives a
byte-identical archive, and a day does not depend on which other days are generated.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import hko7
from pipeline._synth_weather import DayWeather, WeatherParams, disc_mask
from pipeline.hko7_catalogue import write_catalogue
from pipeline.radarstats import WeatherStats, rainy_hours, weather_statistics
from pipeline.units import dbz_to_pixel, pixel_to_rainrate

__all__ = [
    "SynthFrame",
    "SynthReport",
    "WeatherParams",
    "WeatherStats",
    "generate_archive",
    "iter_day",
    "static_masks",
    "weather_statistics",
    "rainy_hours",
]

FRAMES_PER_HOUR = 10
CATALOGUE_FILE = "catalogue.csv"
_SPOKE_PROB = 0.03


@dataclass(frozen=True)
class SynthFrame:
    """One simulated frame on the nominal 6-minute grid.

    Attributes
    ----------
    time : pandas.Timestamp
        Nominal frame time.
    pixels : numpy.ndarray
        ``(480, 480)`` uint8 HKO-7 pixels (clutter and spokes included).
    mask : numpy.ndarray
        ``(480, 480)`` bool per-frame mask, True = use the pixel.
    """

    time: pd.Timestamp
    pixels: np.ndarray
    mask: np.ndarray


@dataclass
class SynthReport:
    """What :func:`generate_archive` wrote (times are ``datetime64[ns]`` indexes).

    Attributes
    ----------
    root : pathlib.Path
        Archive root.
    days : list of pandas.Timestamp
        Days that have frames.
    empty_days : list of pandas.Timestamp
        Days named in a day list that have no frames.
    splits : dict
        ``{"train"|"valid"|"test": [days]}`` as written in the day lists (empty days included).
    times : pandas.DatetimeIndex
        Times of all frame files written (off-grid and corrupt ones included), sorted.
    grid_times : pandas.DatetimeIndex
        All nominal 6-minute times of the generated hours.
    missing_times : pandas.DatetimeIndex
        Nominal times without a frame file (missing frames and the grid slots of off-grid ones).
    missing_runs : list of tuple
        ``(first, last)`` nominal times of every run of 3 or more missing frames.
    offgrid_times : pandas.DatetimeIndex
        Frame times off the 6-minute grid (each one minute after its missing grid slot).
    corrupt_times : pandas.DatetimeIndex
        Frames written as truncated PNGs (their ``read_frame`` raises ``FrameReadError``).
    no_mask_times : pandas.DatetimeIndex
        Frames written without a mask file.
    daily_rainfall : dict
        Rain depth (mm) per listed day.
    n_clutter_pixels : int
        Pixels flagged in ``outlier_mask``.
    seconds : float
        Wall time of the generation.
    """

    root: Path
    days: list[pd.Timestamp]
    empty_days: list[pd.Timestamp]
    splits: dict[str, list[pd.Timestamp]]
    times: pd.DatetimeIndex
    grid_times: pd.DatetimeIndex
    missing_times: pd.DatetimeIndex
    missing_runs: list[tuple[pd.Timestamp, pd.Timestamp]]
    offgrid_times: pd.DatetimeIndex
    corrupt_times: pd.DatetimeIndex
    no_mask_times: pd.DatetimeIndex
    daily_rainfall: dict[pd.Timestamp, float] = field(default_factory=dict)
    n_clutter_pixels: int = 0
    seconds: float = 0.0

    @property
    def n_frames(self) -> int:
        """Number of frame files written."""
        return len(self.times)

    @property
    def readable_times(self) -> pd.DatetimeIndex:
        """Frame times whose PNG reads back (all written times except the corrupt ones)."""
        return self.times.difference(self.corrupt_times)


# --------------------------------------------------------------------------- static layout


def _clutter(seed: int, size: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """Clutter pixel positions ``(rows, cols)`` of the archive (fixed for a seed)."""
    rng = np.random.default_rng([seed, 7_000_001])
    rows: list[int] = []
    cols: list[int] = []
    c = (size - 1) / 2.0
    for _ in range(int(rng.integers(14, 20))):
        r = rng.uniform(8.0, 90.0)  # mostly near range (hills, buildings)
        a = rng.uniform(0.0, 2.0 * np.pi)
        y0, x0 = int(round(c + r * np.sin(a))), int(round(c + r * np.cos(a)))
        for _ in range(int(rng.integers(1, 7))):
            rows.append(int(np.clip(y0 + rng.integers(-1, 2), 0, size - 1)))
            cols.append(int(np.clip(x0 + rng.integers(-1, 2), 0, size - 1)))
    pos = np.unique(np.array([rows, cols]), axis=1)
    return pos[0], pos[1]


def static_masks(seed: int = 0) -> dict[str, np.ndarray]:
    """The static masks a synthetic archive of *seed* holds in ``mask_dat.npz``.

    Returns
    -------
    dict
        ``outlier_mask`` (clutter), ``out_boundary_mask`` (outside the 256 km disc) and
        ``exclude_mask`` (their union): ``(480, 480)`` uint8, 1 = exclude.
    """
    out_boundary = ~disc_mask(hko7.FRAME_SHAPE[0])
    outlier = np.zeros(hko7.FRAME_SHAPE, bool)
    outlier[_clutter(seed)] = True
    return {
        "outlier_mask": outlier.astype(np.uint8),
        "exclude_mask": (outlier | out_boundary).astype(np.uint8),
        "out_boundary_mask": out_boundary.astype(np.uint8),
    }


def _spoke(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (size - 1) / 2.0
    a = rng.uniform(0.0, 2.0 * np.pi)
    r = np.arange(20.0, 239.0, 0.5)
    rows = np.rint(c + r * np.sin(a)).astype(int)
    cols = np.rint(c + r * np.cos(a)).astype(int)
    return rows, cols


# --------------------------------------------------------------------------- frames


def _day_rng(seed: int, day: pd.Timestamp, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, day.toordinal(), stream])


def iter_day(
    day: object,
    seed: int = 0,
    hours: int = 24,
    first_hour: int = 0,
    params: WeatherParams | None = None,
) -> Iterator[SynthFrame]:
    """Simulate one day's frames on the nominal 6-minute grid (nothing is written).

    Parameters
    ----------
    day : date-like
        The day (its time of day is ignored).
    seed : int
        Archive seed; the day's stream is derived from ``(seed, day)``.
    hours : int
        Hours simulated (``10 * hours`` frames) from ``first_hour``.
    first_hour : int
        First hour of the day simulated.
    params : WeatherParams, optional
        Weather knobs (defaults tuned to the real-radar ranges of docs/synthetic.md).

    Yields
    ------
    SynthFrame
        ``(480, 480)`` uint8 pixels and bool mask per nominal time.
    """
    day = pd.Timestamp(day).normalize()
    if not (1 <= hours and 0 <= first_hour and first_hour + hours <= 24):
        raise ValueError(
            f"hours={hours}, first_hour={first_hour}: need 1 <= hours and first_hour + hours <= 24"
        )
    n = hours * FRAMES_PER_HOUR
    size = hko7.FRAME_SHAPE[0]
    t0 = day + pd.Timedelta(hours=first_hour)
    weather = DayWeather(
        _day_rng(seed, day, 0), n, params, dt_min=6.0, size=size, start=t0, seed=seed
    )
    art = _day_rng(seed, day, 2)
    statics = static_masks(seed)
    outside = statics["out_boundary_mask"].astype(bool)
    clutter_pos = _clutter(seed)
    n_clutter = len(clutter_pos[0])
    clutter_dbz = art.uniform(45.0, 58.0, size=n_clutter)
    base_mask = ~(outside | statics["outlier_mask"].astype(bool))
    for k, dbz in enumerate(weather):
        on = art.random(n_clutter) < 0.9
        vals = clutter_dbz + art.normal(0.0, 2.0, size=n_clutter)
        dbz[clutter_pos[0][on], clutter_pos[1][on]] = vals[on]
        mask = base_mask.copy()
        if art.random() < _SPOKE_PROB:
            rows, cols = _spoke(art, size)
            sd = art.uniform(20.0, 35.0)
            dbz[rows, cols] = np.maximum(dbz[rows, cols], sd)
            mask[rows, cols] = False
        pixels = dbz_to_pixel(dbz)
        pixels[outside] = 0
        yield SynthFrame(t0 + k * hko7.CADENCE, pixels, mask)


def _irregular_plan(
    rng: np.random.Generator, n: int, corrupt: bool, no_mask: bool
) -> dict[str, list[int]]:
    """Positions (frame indexes in the day) of the day's irregularities, non-overlapping."""
    taken = np.zeros(n + 4, bool)

    def pick(length: int) -> int:
        for _ in range(1000):
            i = int(rng.integers(2, n - length - 1))
            if not taken[i - 2 : i + length + 2].any():
                taken[i : i + length] = True
                return i
        raise ValueError(f"cannot place {length} irregular frames in a day of {n} frames")

    run_len = int(rng.integers(3, 6))
    run = pick(run_len)
    plan = {"missing": list(range(run, run + run_len)), "offgrid": [pick(1)]}
    plan["missing"].append(pick(1))
    if n >= 40:
        plan["missing"].append(pick(1))
    plan["corrupt"] = [pick(1)] if corrupt else []
    plan["no_mask"] = [pick(1)] if no_mask else []
    plan["run"] = [run, run_len]
    return plan


def _split_days(days: list[pd.Timestamp]) -> dict[str, list[pd.Timestamp]]:
    n = len(days)
    n_test = max(1, round(0.3 * n)) if n >= 2 else 0
    n_valid = max(1, round(0.1 * n)) if n >= 3 else 0
    n_train = n - n_test - n_valid
    return {
        "train": days[:n_train],
        "valid": days[n_train : n_train + n_valid],
        "test": days[n_train + n_valid :],
    }


@dataclass(frozen=True)
class _DayJob:
    root: Path
    day: pd.Timestamp
    seed: int
    hours: int
    first_hour: int
    params: WeatherParams | None
    irregular: bool
    corrupt: bool
    no_mask: bool
    compress_level: int


@dataclass
class _DayResult:
    day: pd.Timestamp
    written: list[pd.Timestamp] = field(default_factory=list)
    grid: list[pd.Timestamp] = field(default_factory=list)
    missing: list[pd.Timestamp] = field(default_factory=list)
    offgrid: list[pd.Timestamp] = field(default_factory=list)
    corrupt: list[pd.Timestamp] = field(default_factory=list)
    no_mask: list[pd.Timestamp] = field(default_factory=list)
    run: tuple[pd.Timestamp, pd.Timestamp] | None = None
    rainfall: float = 0.0


def _write_day(job: _DayJob, tick: Callable[[int], object] | None = None) -> _DayResult:
    """Simulate and write one day of the archive (top level: runs in worker processes)."""
    n = job.hours * FRAMES_PER_HOUR
    if job.irregular:
        plan = _irregular_plan(
            _day_rng(job.seed, job.day, 1), n, corrupt=job.corrupt, no_mask=job.no_mask
        )
    else:
        plan = {"missing": [], "offgrid": [], "corrupt": [n // 2] if job.corrupt else []}
        plan.update({"no_mask": [], "run": []})
    rate_lut = pixel_to_rainrate(np.arange(256))
    missing_idx = set(plan["missing"])
    res = _DayResult(day=job.day)
    rain_sum = 0.0
    for k, frame in enumerate(iter_day(job.day, job.seed, job.hours, job.first_hour, job.params)):
        res.grid.append(frame.time)
        rain_sum += float(rate_lut[frame.pixels[frame.mask]].mean())
        if tick is not None:
            tick(1)
        if k in missing_idx:
            res.missing.append(frame.time)
            continue
        ts = frame.time
        if k in plan["offgrid"]:
            res.missing.append(frame.time)
            ts = frame.time + pd.Timedelta(minutes=1)
            res.offgrid.append(ts)
        fpath = hko7.frame_path(job.root, ts)
        hko7.write_frame(fpath, frame.pixels, compress_level=job.compress_level)
        if k in plan["corrupt"]:
            data = fpath.read_bytes()
            fpath.write_bytes(data[: len(data) // 2])
            res.corrupt.append(ts)
        if k in plan["no_mask"]:
            res.no_mask.append(ts)
        else:
            hko7.write_mask(hko7.mask_path(job.root, ts), frame.mask)
        res.written.append(ts)
    if plan["run"]:
        first, length = plan["run"]
        t_first = job.day + pd.Timedelta(hours=job.first_hour) + first * hko7.CADENCE
        res.run = (t_first, t_first + (length - 1) * hko7.CADENCE)
    res.rainfall = rain_sum / n * 24.0
    return res


def generate_archive(
    out: str | os.PathLike,
    start: object = "2015-06-01",
    days: int = 2,
    seed: int = 0,
    hours: int = 24,
    first_hour: int = 0,
    irregular: bool = True,
    corrupt: bool = True,
    empty_day: bool = True,
    params: WeatherParams | None = None,
    compress_level: int = 1,
    progress: bool = True,
    workers: int = 1,
) -> SynthReport:
    """Write a synthetic HKO-7 archive.

    Parameters
    ----------
    out : path
        Archive root to create; must not exist or be an empty directory.
    start : date-like
        First day.
    days : int
        Number of consecutive days with frames.
    seed : int
        Random seed: the same arguments give a byte-identical archive.
    hours, first_hour : int
        Hours of each day generated (``10 * hours`` nominal frames a day); the full day by default.
    irregular : bool
        Leave out frames (singles and a run of 3-5), shift one frame a minute off the grid a day,
        and write one frame without a mask file.
    corrupt : bool
        Write one truncated PNG (last day).
    empty_day : bool
        Name the day before *start* in the train day list without writing frames for it.
    params : WeatherParams, optional
        Weather knobs.
    compress_level : int
        PNG zlib level (1 = fast).
    progress : bool
        Show a tqdm bar.
    workers : int
        Processes writing days in parallel (days are independent; the archive is the same
        for any number of workers).

    Returns
    -------
    SynthReport
        Everything written, including the planted irregularities.

    Raises
    ------
    ValueError
        If *out* exists and is not an empty directory, or an argument is out of range.
    """
    from pipeline.console.progress import progress_bar as tqdm

    t_start = time.perf_counter()
    root = Path(out)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"output directory {root} exists and is not empty; choose a new path")
    if days < 1:
        raise ValueError(f"days={days}: need at least one day")
    if workers < 1:
        raise ValueError(f"workers={workers}: need at least one process")
    day0 = pd.Timestamp(start).normalize()
    day_list = [day0 + pd.Timedelta(days=i) for i in range(days)]
    n = hours * FRAMES_PER_HOUR
    if irregular and n < 30:
        raise ValueError(f"hours={hours}: irregular archives need at least 3 hours a day")
    root.mkdir(parents=True, exist_ok=True)
    hko7.write_static_masks(
        root, static_masks(seed)["outlier_mask"], static_masks(seed)["out_boundary_mask"]
    )
    jobs = [
        _DayJob(
            root=root,
            day=day,
            seed=seed,
            hours=hours,
            first_hour=first_hour,
            params=params,
            irregular=irregular,
            corrupt=corrupt and di == days - 1,
            no_mask=irregular and di == 0,
            compress_level=compress_level,
        )
        for di, day in enumerate(day_list)
    ]
    bar = tqdm(total=days * n, unit="frame", desc="synthetic archive", disable=not progress)
    if workers > 1 and days > 1:
        from concurrent.futures import ProcessPoolExecutor

        results = []
        with ProcessPoolExecutor(max_workers=min(workers, days)) as pool:
            for res in pool.map(_write_day, jobs):  # in day order: deterministic
                results.append(res)
                bar.update(n)
    else:
        results = [_write_day(job, bar.update) for job in jobs]
    bar.close()
    written = [t for r in results for t in r.written]
    grid = [t for r in results for t in r.grid]
    missing = [t for r in results for t in r.missing]
    runs = [r.run for r in results if r.run is not None]
    offgrid = [t for r in results for t in r.offgrid]
    corrupted = [t for r in results for t in r.corrupt]
    no_mask = [t for r in results for t in r.no_mask]
    rainfall = {r.day: r.rainfall for r in results}

    empty = [day0 - pd.Timedelta(days=1)] if empty_day else []
    splits = _split_days(day_list)
    splits["train"] = empty + splits["train"]
    for d in empty:
        rainfall[d] = 0.0
    for name in hko7.SPLITS:
        hko7.write_day_list(
            hko7.day_list_path(root, name), splits[name], [rainfall[d] for d in splits[name]]
        )
    write_catalogue(hko7.discover_frames(root), root / CATALOGUE_FILE, root)

    def _idx(values: list[pd.Timestamp]) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(sorted(values), name="time").astype("datetime64[ns]")

    return SynthReport(
        root=root,
        days=day_list,
        empty_days=empty,
        splits=splits,
        times=_idx(written),
        grid_times=_idx(grid),
        missing_times=_idx(missing),
        missing_runs=runs,
        offgrid_times=_idx(offgrid),
        corrupt_times=_idx(corrupted),
        no_mask_times=_idx(no_mask),
        daily_rainfall=rainfall,
        n_clutter_pixels=int(static_masks(seed)["outlier_mask"].sum()),
        seconds=time.perf_counter() - t_start,
    )
