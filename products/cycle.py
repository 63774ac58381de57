"""One forecast cycle (forecast, publish, verify earlier forecasts) as plain functions.

A cycle, for the issue time given by the clock:

1. picks the issue time: ``now`` floored to the cadence when given (the replay clock and
   tests pass it); otherwise the newest frame in the store (``clock="store"``, default:
   the cycle forecasts from the newest observations whenever they arrived) or the wall
   clock in UTC (``clock="wall"``);
2. skips cleanly when that issue time is already published (no new frame since the last
   cycle) or when the input window breaks the HKO-7 missing-frame rule (more than
   ``max_consecutive_missing`` consecutive missing frames, or none observed). A skipped
   cycle logs the reason, records it in the site's run-status log (``status.json``) and
   ends with a result whose ``status`` is ``"skipped"``: it is not a failure;
3. makes the nowcast (:func:`nowcast.forecast.make_forecast`) with a trained run or a
   baseline, or with ``members`` an ensemble and its exceedance probabilities
   (:func:`nowcast.ensemble_forecast.make_ensemble_forecast`);
4. verifies the newest earlier forecast whose lead times have all been observed since
   (and that has not been verified yet) against the observations (CSI per lead time and
   threshold, :func:`products.verify.verify_forecast`); the products layer keeps the
   rolling scores in ``scores.json``;
5. publishes the run (:func:`products.site.publish_run`: NetCDF, Zarr archive, maps, loop,
   dashboard) atomically.

A forecast that raises (a broken run directory, a model error) is recorded as ``failed``
with the error in the status log, and the flow run fails.

The steps are plain functions: :func:`forecast_cycle` runs them without Prefect, and
:func:`flows.forecast.forecast_flow` runs the same steps (:func:`run_cycle` with other
:class:`CycleSteps`) as Prefect tasks. :func:`publish_file` publishes a forecast NetCDF
file (``nowcast publish``) the same way.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import xarray as xr

from pipeline.window import grid_size

__all__ = [
    "CLOCKS",
    "DEFAULT_LEADS",
    "CycleResult",
    "CycleSteps",
    "ForecastSettings",
    "forecast_cycle",
    "publish_file",
    "default_leads",
    "resolve_issue_time",
    "run_cycle",
]

DEFAULT_LEADS: tuple[int, ...] = tuple(range(6, 61, 6))
"""Lead times (minutes) of a scheduled forecast: every 6 minutes up to an hour."""
CLOCKS: tuple[str, ...] = ("store", "wall")
"""Ways to pick the issue time when no ``now`` is given."""


@dataclass(frozen=True)
class ForecastSettings:
    """What a forecast cycle needs (one of ``run`` / ``baseline``).

    Attributes
    ----------
    store : str
        Radar store (store or resampled schema, docs/contracts.md).
    site : str
        Site directory the products are published into.
    run : str, optional
        Trained run directory (``nowcast.runs.load_run``).
    baseline : str, optional
        Baseline name (``nowcast.baselines.get_baseline``), e.g. ``pysteps``.
    lead_minutes : tuple of int or None
        Lead times in minutes; None: every step of the predictor's cadence up to an hour
        (:func:`default_leads`; a baseline's cadence is the store's, 5 min on a KNMI store).
    in_frames : int, optional
        Input frames (default: the run's configuration, 5 for baselines).
    image_size : int, optional
        Grid side to forecast on, baselines only (default: the store's grid). A run
        forecasts on its own grid: its configuration's for the thesis modes, the store's
        (480 x 480 from an ingest store) for Lagrangian runs.
    max_consecutive_missing : int
        HKO-7 rule for the input window.
    tolerance : str
        A store frame this close to a slot fills it.
    clock : str
        ``store`` or ``wall`` (see the module docstring).
    keep_runs : int
        Run directories kept in the site.
    n_obs_frames : int
        Observation frames drawn before the forecast in the products.
    coastline_resolution : str
        Natural Earth scale of map coastlines (``10m``, ``50m``, ``110m``).
    archive : str
        The forecast archive (Icechunk): relative to ``site`` (default
        ``forecasts.zarr``), an absolute directory, or an ``s3://bucket/prefix`` URL. The
        site itself is a local directory (the dashboard serves its files).
    members : int, optional
        Ensemble members (:func:`nowcast.ensemble_forecast.make_ensemble_forecast`): the
        run publishes the ensemble mean, exceedance-probability maps and their dashboard
        layers; None = one deterministic forecast.
    seed : int
        Seed of the ensemble members.
    calibration : str, optional
        With ``members``: a calibration file (``nowcast calibrate``,
        :class:`nowcast.calibration.ProbabilityCalibration`) for the exceedance
        probabilities; None = the debiased estimate.
    """

    store: str
    site: str
    run: str | None = None
    baseline: str | None = None
    lead_minutes: tuple[int, ...] | None = DEFAULT_LEADS
    in_frames: int | None = None
    image_size: int | None = None
    max_consecutive_missing: int = 2
    tolerance: str = "2min"
    clock: str = "store"
    keep_runs: int = 24
    n_obs_frames: int = 5
    coastline_resolution: str = "10m"
    archive: str = "forecasts.zarr"
    members: int | None = None
    seed: int = 0
    calibration: str | None = None

    def __post_init__(self) -> None:
        if self.members is not None and int(self.members) < 1:
            raise ValueError(f"members must be >= 1 (or None: deterministic), got {self.members}")
        if self.calibration is not None and self.members is None:
            raise ValueError("a calibration needs members (the fitted member count)")
        if (self.run is None) == (self.baseline is None):
            raise ValueError(
                f"give exactly one of run (a run directory) and baseline (a baseline name); "
                f"got run={self.run!r}, baseline={self.baseline!r}"
            )
        if self.clock not in CLOCKS:
            raise ValueError(f"unknown clock {self.clock!r}; valid clocks: {', '.join(CLOCKS)}")
        if self.max_consecutive_missing < 0:
            raise ValueError(
                f"max_consecutive_missing must be >= 0, got {self.max_consecutive_missing}"
            )


@dataclass
class CycleResult:
    """Outcome of one cycle: ``status`` is ``ok`` or ``skipped`` (with ``reason``)."""

    status: str
    issue_time: str
    reason: str = ""
    run_dir: str | None = None
    verified_issue_time: str | None = None
    lead_minutes: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain dict (the flow's return value)."""
        return asdict(self)


# --------------------------------------------------------------------------- steps


def resolve_issue_time(
    store: str | xr.Dataset,
    now: object = None,
    clock: str = "store",
    cadence_minutes: float | None = None,
) -> pd.Timestamp:
    """Issue time of a cycle: *now*, the newest store frame or the wall clock, floored.

    Parameters
    ----------
    store : path or xarray.Dataset
        Radar store.
    now : timestamp-like, optional
        Simulated or given current time (UTC, naive or aware).
    clock : str
        Used when *now* is None: ``store`` (newest frame time) or ``wall`` (UTC now).
    cadence_minutes : float, optional
        The issue time is floored to this cadence; None (default): the store's own
        (:func:`pipeline.window.store_cadence`), so the newest frame of a 5-minute store
        is its issue time.

    Raises
    ------
    ValueError
        Unknown clock, or ``clock="store"`` with an empty store.
    """
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}; valid clocks: {', '.join(CLOCKS)}")
    if now is not None:
        t = pd.Timestamp(now)
    elif clock == "wall":
        t = pd.Timestamp.now(tz="UTC")
    else:
        from pipeline.window import newest_observed_time

        t = newest_observed_time(store)
    if t.tzinfo is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    if cadence_minutes is None:
        from pipeline.window import store_cadence

        return t.floor(store_cadence(store))
    return t.floor(pd.Timedelta(minutes=cadence_minutes))


def default_leads(cadence_minutes: float) -> tuple[int, ...]:
    """Lead times (minutes) of a forecast at *cadence_minutes*: every step up to an hour.

    :data:`DEFAULT_LEADS` (every 6 minutes) for 6 minutes; ``5, 10, ..., 60`` for a
    5-minute store; :data:`DEFAULT_LEADS` for a cadence that is not whole minutes.
    """
    cad = float(cadence_minutes)
    if cad <= 0 or cad != round(cad) or cad > 60:
        return DEFAULT_LEADS
    return tuple(range(int(cad), 61, int(cad)))


@functools.lru_cache(maxsize=32)
def _store_cadence_minutes(store: str) -> float:
    """The cadence of the store at *store* in minutes (read once per process)."""
    from pipeline.window import store_cadence

    return store_cadence(store) / pd.Timedelta("1min")


@functools.lru_cache(maxsize=8)
def _cached_predictor(
    run, baseline, in_frames, image_size, cadence_minutes=6.0, _checkpoint_mtime=None
):
    from nowcast.forecast import baseline_predictor, run_predictor

    if run is not None:
        pred = run_predictor(run)
        if in_frames is not None and in_frames != pred.in_frames:
            raise ValueError(
                f"run {run} takes {pred.in_frames} input frames, got in_frames={in_frames}"
            )
        return pred
    return baseline_predictor(
        baseline, in_frames=in_frames or 5, cadence_minutes=cadence_minutes, image_size=image_size
    )


def load_predictor(settings: ForecastSettings):
    """The settings' predictor, cached per process (reloaded when ``best.pt`` changes).

    A baseline takes its input frames at the store's cadence; a run at its training's.
    """
    run = str(Path(settings.run).resolve()) if settings.run else None
    mtime = None
    if run is not None and (Path(run) / "best.pt").is_file():
        mtime = (Path(run) / "best.pt").stat().st_mtime_ns
    cadence = 6.0 if run is not None else _store_cadence_minutes(str(settings.store))
    return _cached_predictor(
        run, settings.baseline, settings.in_frames, settings.image_size, cadence, mtime
    )


def already_published(site: str | Path, issue: pd.Timestamp) -> bool:
    """True when the site already holds a run for *issue*."""
    from products.run_files import run_id

    return (Path(site) / "runs" / run_id(issue)).is_dir()


def make_cycle_forecast(settings: ForecastSettings, issue: pd.Timestamp):
    """The forecast for *issue* (xarray.Dataset) or the reason it cannot be made (str)."""
    from nowcast.forecast import InsufficientInputError, make_forecast

    pred = load_predictor(settings)
    leads = settings.lead_minutes or default_leads(pred.cadence_minutes)
    window = {
        "max_consecutive_missing": settings.max_consecutive_missing,
        "tolerance": settings.tolerance,
    }
    try:
        if settings.members is not None:
            from nowcast.calibration import ProbabilityCalibration
            from nowcast.ensemble_forecast import make_ensemble_forecast

            cal = settings.calibration
            fc = make_ensemble_forecast(
                pred,
                settings.store,
                issue,
                leads,
                members=settings.members,
                seed=settings.seed,
                calibration=None if cal is None else ProbabilityCalibration.load(cal),
                **window,
            )
        else:
            fc = make_forecast(pred, settings.store, issue, leads, **window)
    except InsufficientInputError as err:
        return err.reason
    from products.accumulation import add_accumulations

    return add_accumulations(fc, settings.store)  # rain amounts: last hour, next hour(s)


def record_skip(
    settings: ForecastSettings, issue: pd.Timestamp, reason: str, status: str = "skipped"
) -> None:
    """Add a ``skipped`` (or ``failed``) entry with *reason* to the site's run-status log."""
    from products.site import record_run

    record_run(settings.site, issue, status, reason)


def verify_earlier(settings: ForecastSettings, issue: pd.Timestamp, size: int | None):
    """Scores of the newest fully observable, not yet verified earlier forecast, or None.

    Earlier forecasts are read from the forecast archive (``settings.archive``);
    a forecast qualifies when its last valid time is at or before *issue* and it is not
    in ``scores.json`` yet.
    """
    import json

    from pipeline.store import join_location
    from pipeline.window import observations_dataset
    from products.archive import forecast_archive_exists, open_forecast_zarr
    from products.verify import verify_accumulations, verify_forecast

    site = Path(settings.site)
    archive = join_location(site, settings.archive)
    if not forecast_archive_exists(archive):
        return None
    done: set[str] = set()
    scores_file = site / "scores.json"
    if scores_file.exists():
        doc = json.loads(scores_file.read_text())
        done = {e.get("issue_time") for e in doc.get("entries", [])}
    fz = open_forecast_zarr(archive)
    try:
        issues = pd.DatetimeIndex(fz["issue_time"].values)
        last_valid = pd.DatetimeIndex(fz["valid_time"].values.max(axis=1))
        for i in range(len(issues) - 1, -1, -1):
            key = issues[i].strftime("%Y-%m-%dT%H:%M:%SZ")
            if issues[i] >= issue or last_valid[i] > issue or key in done:
                continue
            fc = fz.isel(issue_time=i).load()
            obs = observations_dataset(
                settings.store, fc["valid_time"].values, size=size, tolerance=settings.tolerance
            )
            scores = verify_forecast(fc, obs)
            acc = verify_accumulations(fc, settings.store, size=size)  # mm in 1 h, 2 h
            return dataclasses.replace(scores, accumulations=acc) if acc else scores
    finally:
        fz.close()
    return None


def publish_cycle(settings: ForecastSettings, forecast: xr.Dataset, scores) -> str:
    """Publish *forecast* with the recent observations; returns the run directory."""
    from pipeline.window import grid_size, observations_dataset, window_slots
    from products.site import publish_run

    issue = pd.Timestamp(forecast["issue_time"].values)
    n = max(int(settings.n_obs_frames), 1)
    times = window_slots(issue, n, load_predictor(settings).cadence_minutes)
    obs = observations_dataset(
        settings.store, times, size=grid_size(forecast), tolerance=settings.tolerance
    )
    result = publish_run(
        forecast,
        obs,
        settings.site,
        status="ok",
        reason=str(forecast.attrs.get("fallback", "")),  # e.g. S-PROG fell back: shown
        scores=scores,
        keep_runs=settings.keep_runs,
        n_obs_frames=n,
        zarr_store=settings.archive,
        coastline_resolution=settings.coastline_resolution,
    )
    return str(result.run_dir)


def publish_file(
    forecast_nc: str | Path,
    store: str | Path,
    site: str | Path,
    n_obs_frames: int = 5,
    keep_runs: int = 24,
    coastline_resolution: str = "10m",
    archive: str = "forecasts.zarr",
) -> str:
    """Publish the forecast in *forecast_nc* with observations from *store* into *site*.

    *archive* is the forecast archive, relative to *site* (default ``forecasts.zarr``), an
    absolute directory or an ``s3://`` URL (:attr:`ForecastSettings.archive`).

    Returns
    -------
    str
        The run directory written.

    Raises
    ------
    ValueError
        *forecast_nc* is missing or not a forecast NetCDF file, or *site* is a file.
    """
    from pipeline.window import grid_size, observations_dataset, store_cadence, window_slots
    from products.cf import open_forecast_netcdf
    from products.site import publish_run

    path = Path(forecast_nc)
    if not path.is_file():
        raise ValueError(f"forecast file {path} does not exist")
    if Path(site).exists() and not Path(site).is_dir():
        raise ValueError(f"site {site} is a file; expected a site directory (new or published)")
    try:
        fc = open_forecast_netcdf(path)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"forecast file {path} is not a NetCDF forecast (nowcast forecast --out): {err}"
        ) from err
    if "issue_time" not in fc.coords or "reflectivity" not in fc:
        raise ValueError(f"forecast file {path} has no issue_time or reflectivity: not a forecast")
    issue = pd.Timestamp(fc["issue_time"].values)
    n = max(int(n_obs_frames), 1)
    times = window_slots(issue, n, store_cadence(store))
    obs = observations_dataset(store, times, size=grid_size(fc))
    result = publish_run(
        fc,
        obs,
        site,
        keep_runs=keep_runs,
        n_obs_frames=n,
        coastline_resolution=coastline_resolution,
        zarr_store=archive,
    )
    return str(result.run_dir)


@dataclass(frozen=True)
class CycleSteps:
    """The callables one cycle runs: plain functions, or the same as Prefect tasks."""

    forecast: Callable
    record_skip: Callable
    verify: Callable
    publish: Callable
    log: Callable[[str], None]


def run_cycle(settings: ForecastSettings, now: object, steps: CycleSteps) -> CycleResult:
    """Run one cycle with *steps* (plain functions or Prefect tasks); see the module docstring."""
    issue = resolve_issue_time(settings.store, now=now, clock=settings.clock)
    iso = issue.strftime("%Y-%m-%dT%H:%M:%SZ")
    if now is None and settings.clock == "store" and already_published(settings.site, issue):
        reason = f"no new frame since the run issued at {iso}"
        steps.log(f"skipped {iso}: {reason}")
        return CycleResult("skipped", iso, reason)
    try:
        fc = steps.forecast(settings, issue)
    except Exception as err:
        # shown on the dashboard as a failed run; the flow run fails too
        steps.record_skip(settings, issue, f"{type(err).__name__}: {err}", "failed")
        raise
    if isinstance(fc, str):
        steps.log(f"skipped {iso}: {fc}")
        steps.record_skip(settings, issue, fc)
        return CycleResult("skipped", iso, fc)
    scores = steps.verify(settings, issue, grid_size(fc))
    run_dir = steps.publish(settings, fc, scores)
    verified = None
    if scores is not None:
        verified = pd.Timestamp(scores.issue_time).strftime("%Y-%m-%dT%H:%M:%SZ")
    steps.log(
        f"published {iso} ({fc.attrs.get('model')}) to {run_dir}"
        + (f"; verified the forecast issued {verified}" if verified else "")
        + (f"; {fc.attrs['fallback']}" if fc.attrs.get("fallback") else "")
    )
    return CycleResult(
        "ok",
        iso,
        run_dir=run_dir,
        verified_issue_time=verified,
        lead_minutes=[int(v) for v in fc["lead_time"].values],
    )


def forecast_cycle(settings: ForecastSettings, now: object = None) -> CycleResult:
    """Run one forecast cycle with plain function calls (no Prefect involved).

    Parameters
    ----------
    settings : ForecastSettings
    now : timestamp-like, optional
        Current (simulated) time; see :func:`resolve_issue_time`.
    """
    import logging

    log = logging.getLogger(__name__)
    steps = CycleSteps(make_cycle_forecast, record_skip, verify_earlier, publish_cycle, log.info)
    return run_cycle(settings, now, steps)
