"""Atomic publishing of forecast runs into a site, with locking, retention and logs.

:func:`publish_run` writes ``<site_dir>/runs/<YYYYmmddTHHMMZ>/`` (forecast NetCDF,
one PNG map per observation and forecast frame, an animated GIF loop, ``run.json``)
atomically: everything is built in ``<site_dir>/.tmp-<pid>-<id>/`` and moved into place
with one ``os.rename``; only then are ``latest.json``, ``status.json``, ``scores.json``
and the dashboard's ``data.js`` swapped with write-to-temp + ``os.replace``, and last
the forecast is committed to the archive (``forecasts.zarr``, Icechunk). A reader
(the dashboard) only ever follows ``latest.json``/``data.js``, so it never sees a
half-written run. The whole sequence, archive commit included, is one recoverable step
(:class:`products._site_journal.SiteJournal`): a publish that fails or is killed before
the archive step is undone (the archive untouched), one killed after it is finished by
the next change of the site (the run committed to the archive again), so the site and
the archive always name the same runs; a publish that fails commits nothing to the
archive. A corrupt ``status.json`` or ``scores.json`` (not JSON, or the wrong shape) is
set aside (renamed, logged) and started afresh, and the temporaries of dead publishers
are removed. :func:`refresh_site` (``nowcast dashboard SITE``) does the same recovery
without publishing. Publishes into one site are serialised with an exclusive ``flock``
on ``<site_dir>/.publish.lock``. Runs beyond ``keep_runs`` (oldest first) are deleted,
never the one being served. Republishing an issue time replaces its run directory; for
that one case, there is a short window (two renames) in which the old directory is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.atomic import atomic_write_json
from pipeline.schema import validate_forecast
from pipeline.store_engine import is_url, join_location
from products._common import (
    _iso,
    _issue_time,
    _json_float,
    _read_json,
    _require_same_grid,
)
from products._site_journal import SiteJournal
from products.archive import append_forecast_zarr, check_forecast_archive
from products.dashboard import render_site
from products.run_files import build_run, obs_frames, run_id
from products.verify import VerificationScores, rolling_accumulations

RUN_STATUSES: tuple[str, ...] = ("ok", "skipped", "failed")
"""Values of the ``status`` of a run in ``status.json``."""


_publish_hook: Callable[[str], None] | None = None
"""Test hook called at each publish stage, in order: ``"file:<name>"`` (each file of the
run), ``"renamed"``, ``"latest"``, ``"site"`` (every site file written), ``"archive"``
(the archive commit recorded in the journal, not made), ``"archived"`` (committed),
``"committed"`` (journal deleted); lets a test stop a publish midway. Not public API."""

PUBLISH_STAGES: tuple[str, ...] = (
    "renamed",
    "latest",
    "site",
    "archive",
    "archived",
    "committed",
)
"""The stages of :data:`_publish_hook` after the run's files."""


@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish_run` wrote.

    Attributes
    ----------
    run_dir : pathlib.Path
        ``<site_dir>/runs/<run id>``.
    run_id : str
        Directory name, the issue time as ``YYYYmmddTHHMMZ``.
    files : tuple of str
        Files of the run, relative to the site directory.
    removed_runs : tuple of str
        Run ids deleted by the retention rule.
    set_aside : tuple of str
        Corrupt site logs renamed before publishing (see :mod:`products._site_journal`).
    recovered : tuple of str
        Unfinished publishes of dead processes finished first (``"<journal>: rolled
        back"`` or ``"...: rolled forward"``).
    """

    run_dir: Path
    run_id: str
    files: tuple[str, ...]
    removed_runs: tuple[str, ...]
    set_aside: tuple[str, ...] = ()
    recovered: tuple[str, ...] = ()


def _hook(stage: str) -> None:
    if _publish_hook is not None:
        _publish_hook(stage)


@contextlib.contextmanager
def _site_lock(site_dir: Path) -> Iterator[None]:
    with open(site_dir / ".publish.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _record_status(
    site_dir: Path, issue_time: Any, status: str, reason: str, history_len: int
) -> None:
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r}; expected one of {RUN_STATUSES}")
    doc = _read_json(site_dir / "status.json", {"runs": []})
    runs = [r for r in doc.get("runs", []) if r.get("issue_time") != _iso(issue_time)]
    runs.insert(
        0,
        {
            "issue_time": _iso(issue_time),
            "run_id": run_id(issue_time),
            "status": status,
            "reason": reason,
            "recorded_at": _iso(pd.Timestamp.now(tz="UTC")),
        },
    )
    runs.sort(key=lambda r: r["issue_time"], reverse=True)
    atomic_write_json(site_dir / "status.json", {"runs": runs[:history_len]})


def record_scores(
    site_dir: str | os.PathLike[str], scores: VerificationScores, *, history_len: int = 48
) -> None:
    """Add one verification to the rolling scores of a site and refresh the dashboard.

    ``scores.json`` keeps the last *history_len* verified forecasts (one per issue
    time; re-verifying an issue time replaces its entry) and their mean CSI per
    threshold and lead time (NaN entries ignored), written atomically.
    """
    site = Path(site_dir)
    site.mkdir(parents=True, exist_ok=True)
    with _site_lock(site), SiteJournal(site):
        _record_scores(site, scores, history_len)
        render_site(site)


def _record_scores(site_dir: Path, scores: VerificationScores, history_len: int) -> None:
    doc = _read_json(site_dir / "scores.json", {"entries": []})
    entry = scores.to_json()
    entries = [e for e in doc.get("entries", []) if e.get("issue_time") != entry["issue_time"]]
    entries.append(entry)
    entries.sort(key=lambda e: e["issue_time"])
    entries = entries[-history_len:]
    doc = {"entries": entries, "rolling": _rolling(entries)} | rolling_accumulations(entries)
    atomic_write_json(site_dir / "scores.json", doc)


def _rolling(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean CSI over the entries sharing the newest entry's leads and thresholds."""
    if not entries:
        return {}
    last = entries[-1]
    same = [
        e
        for e in entries
        if e["lead_time"] == last["lead_time"] and e["thresholds_mmh"] == last["thresholds_mmh"]
    ]
    stack = np.array(
        [[[np.nan if v is None else v for v in row] for row in e["csi"]] for e in same],
        dtype=np.float64,
    )
    count = np.isfinite(stack).sum(axis=0)
    total = np.nansum(stack, axis=0)
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return {
        "n_forecasts": len(same),
        "first_issue_time": same[0]["issue_time"],
        "last_issue_time": last["issue_time"],
        "lead_time": last["lead_time"],
        "thresholds_mmh": last["thresholds_mmh"],
        "csi_mean": [[_json_float(v) for v in row] for row in mean],
    }


def record_run(
    site_dir: str | os.PathLike[str],
    issue_time: Any,
    status: str,
    reason: str = "",
    *,
    history_len: int = 48,
) -> None:
    """Log a run that produced no product (``skipped``/``failed``) and refresh the site.

    Parameters
    ----------
    site_dir : path-like
        Site directory (created if missing).
    issue_time : datetime-like
        Issue time the run was for.
    status : str
        One of :data:`RUN_STATUSES`.
    reason : str
        Why it was skipped or failed (shown on the dashboard).
    history_len : int
        Number of runs kept in ``status.json``.
    """
    site = Path(site_dir)
    site.mkdir(parents=True, exist_ok=True)
    with _site_lock(site), SiteJournal(site):
        _record_status(site, issue_time, status, reason, history_len)
        render_site(site)


def _apply_retention(site_dir: Path, keep_runs: int, served: str) -> list[str]:
    runs = sorted(p.name for p in (site_dir / "runs").iterdir() if not p.name.startswith("."))
    doomed = [r for r in runs[: max(len(runs) - keep_runs, 0)] if r != served]
    for r in doomed:
        shutil.rmtree(site_dir / "runs" / r, ignore_errors=True)
    return doomed


def publish_run(
    forecast_ds: xr.Dataset,
    observations_ds: xr.Dataset,
    site_dir: str | os.PathLike[str],
    *,
    status: str = "ok",
    reason: str = "",
    scores: VerificationScores | None = None,
    keep_runs: int = 24,
    history_len: int = 48,
    n_obs_frames: int = 10,
    zarr_store: str | os.PathLike[str] | None = "forecasts.zarr",
    map_size_px: tuple[int, int] = (640, 600),
    coastline_resolution: str = "10m",
    progress: bool = True,
) -> PublishResult:
    """Publish one forecast run atomically and regenerate the dashboard.

    Parameters
    ----------
    forecast_ds : xarray.Dataset
        Forecast in the forecast schema (docs/contracts.md).
    observations_ds : xarray.Dataset
        Recent observations on the same grid: ``reflectivity`` (time, y, x) dBZ,
        optional ``mask`` (time, y, x) bool and ``observed`` (time) bool. The last
        *n_obs_frames* frames at or before the issue time are drawn.
    site_dir : path-like
        Site directory (created if missing). Nothing is written outside it except
        *zarr_store* when given as an absolute path.
    status : str
        Status recorded for this run (one of :data:`RUN_STATUSES`, normally ``"ok"``).
    reason : str
        Note shown next to the status (e.g. ``"2 input frames missing"``).
    scores : VerificationScores, optional
        Verification of an earlier forecast (:func:`verify_forecast`) to add to the
        rolling scores.
    keep_runs : int
        Number of run directories kept (oldest deleted first; >= 1).
    history_len : int
        Entries kept in ``status.json`` and ``scores.json``.
    n_obs_frames : int
        Observation frames drawn before the forecast frames.
    zarr_store : path-like, str or None
        Forecast archive, relative to *site_dir* unless absolute or an ``s3://`` URL
        (object storage; the site itself stays a directory); None = no archive.
    map_size_px : tuple of int
        ``(width, height)`` of every map PNG.
    coastline_resolution : str
        Natural Earth scale of the coastline (``"10m"``, ``"50m"``, ``"110m"``).
    progress : bool
        Show a tqdm bar (maps drawn, rate) while the maps are drawn.

    Returns
    -------
    PublishResult

    Raises
    ------
    ValueError
        Bad schema, grids that differ, unknown status, ``keep_runs < 1``.
    products.archive.ArchiveMismatchError
        The site's forecast archive has other lead times, another grid or a later issue
        time (:func:`products.archive.check_forecast_archive`); raised before any map is
        drawn, the site unchanged.
    """
    validate_forecast(forecast_ds)
    _require_same_grid(forecast_ds, observations_ds)
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r}; expected one of {RUN_STATUSES}")
    if keep_runs < 1:
        raise ValueError(f"keep_runs must be >= 1, got {keep_runs}")
    site = Path(site_dir)
    site.mkdir(parents=True, exist_ok=True)
    (site / "runs").mkdir(exist_ok=True)
    issue = _issue_time(forecast_ds)
    rid = run_id(issue)
    obs = obs_frames(forecast_ds, observations_ds, n_obs_frames)
    archive = None if zarr_store is None else join_location(site, zarr_store)
    with _site_lock(site), SiteJournal(site) as journal:
        check_forecast_archive(forecast_ds, archive)  # other leads or grid: before any map
        tmp = site / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
        try:
            names = build_run(
                forecast_ds,
                obs,
                tmp,
                status=status,
                reason=reason,
                map_size_px=map_size_px,
                coastline_resolution=coastline_resolution,
                progress=progress,
                hook=_hook,
            )
            final = site / "runs" / rid
            if final.exists():
                aside = site / "runs" / f".old-{rid}-{uuid.uuid4().hex[:8]}"
                os.rename(final, aside)
                os.rename(tmp, final)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _hook("renamed")
        files = tuple(f"runs/{rid}/{n}" for n in names)
        manifest = json.loads((final / "run.json").read_text())
        atomic_write_json(
            site / "latest.json",
            {
                "run_id": rid,
                "path": f"runs/{rid}",
                "issue_time": _iso(issue),
                "files": files,
                "manifest": manifest,
            },
        )
        _hook("latest")
        _record_status(site, issue, status, reason, history_len)
        if scores is not None:
            _record_scores(site, scores, history_len)
        render_site(site)
        _hook("site")
        if archive is not None:  # last: an archive commit is redone, not undone
            where = archive if is_url(archive) else Path(archive).resolve()  # for any cwd
            journal.mark_archive(str(where), f"runs/{rid}")
            _hook("archive")
            append_forecast_zarr(forecast_ds, archive)
            journal.archived()
            _hook("archived")
        journal.commit()  # the new site and archive are complete: from here on they stay
        _hook("committed")
        removed = _apply_retention(site, keep_runs, served=rid)
    return PublishResult(
        run_dir=final,
        run_id=rid,
        files=files,
        removed_runs=tuple(removed),
        set_aside=tuple(p.name for p in journal.set_aside),
        recovered=tuple(journal.recovered),
    )


def refresh_site(site_dir: str | os.PathLike[str]) -> Path:
    """Recover a site and regenerate its dashboard (``nowcast dashboard SITE``).

    Under the publish lock: finishes an unfinished publish of a dead process (rolled
    back, or forward into the archive: :mod:`products._site_journal`), sets aside corrupt
    logs, removes dead publishers' temporaries, then writes ``data.js`` and the page.

    Returns
    -------
    pathlib.Path
        ``<site_dir>/index.html``.

    Raises
    ------
    ValueError
        If *site_dir* is not a directory.
    """
    site = Path(site_dir)
    if not site.is_dir():
        raise ValueError(f"site directory {site} does not exist; publish a run first")
    with _site_lock(site), SiteJournal(site):
        return render_site(site)


def read_latest(site_dir: str | os.PathLike[str]) -> Mapping[str, Any] | None:
    """Contents of ``<site_dir>/latest.json`` (None before the first publish)."""
    return _read_json(Path(site_dir) / "latest.json", None)
