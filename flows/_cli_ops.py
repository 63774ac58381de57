"""Operations subcommands of the ``nowcast`` CLI (see :mod:`flows.cli`).

``demo``, ``serve``, ``replay``, ``forecast``, ``publish``, and ``flow <name>`` to run a
step of the pipeline as a Prefect flow (``ingest``, ``resample``, ``train``,
``evaluate``, ``forecast``, ``publish``). Every command applies the offline Prefect
settings (:mod:`flows._prefect_env`) with ``PREFECT_HOME`` inside the directory it was
given (work directory, site, or output) before Prefect is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows._cli_evaluate import flow_evaluate_command
from flows._cli_ingest import End, SchedulerAddress, Source, Start, Threads
from flows._cli_time import check_start_end, parse_time
from flows._cli_train import flow_train_command

_LEADS_HELP = (
    "Comma-separated lead times in minutes (default: every step of the store's cadence, "
    "or of the run's with --run, to 60 min)."
)
_WORKDIR_HELP = (
    "Directory for Prefect's home (.prefect: database, server log) and caches; "
    "default: the current directory. Kept out of the site, which is published."
)


def _parse_leads(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        leads = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise typer.BadParameter(f"--leads must be integers like 6,12,18; got {text!r}") from err
    if not leads or min(leads) <= 0:
        raise typer.BadParameter(f"--leads must be positive minutes like 6,12,18; got {text!r}")
    return leads


_parse_time = parse_time  # ISO 8601 only (flows._cli_time)


_STORE_HELP = "Radar store: a directory or an s3://bucket/prefix URL (AWS_* variables)."
_ARCHIVE_HELP = (
    "Forecast archive (Icechunk): relative to --site, an absolute directory, or an "
    "s3://bucket/prefix URL (the site itself stays a local directory)."
)


def _require(what: str, path: str | Path | None, *, is_dir: bool = True) -> None:
    """Refuse a missing input before Prefect's server is started (tens of seconds).

    An ``s3://`` URL is not checked here: its store is opened (and refused) by the step.
    """
    from pipeline.store_engine import is_url

    if path is None or is_url(path):
        return
    path = Path(path)
    ok = path.is_dir() if is_dir else path.is_file()
    if not ok:
        kind = "directory" if is_dir else "file"
        raise FileNotFoundError(f"{what} {path} does not exist (expected an existing {kind})")


Members = Annotated[
    int | None,
    typer.Option(
        "--members",
        help="Ensemble members: N members of the model or baseline (steps: its own) and "
        "their exceedance probabilities (default: one deterministic forecast).",
    ),
]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the ensemble members.")]
Calibration = Annotated[
    Path | None,
    typer.Option(
        "--calibration",
        help="With --members: calibrated probabilities from this file (nowcast calibrate).",
    ),
]


def _calibration_file(calibration: Path | None, members: int | None) -> str | None:
    """The calibration path as a string, refused without --members or a file."""
    if calibration is None:
        return None
    if members is None:
        raise typer.BadParameter("--calibration needs --members N (the fitted member count)")
    if not calibration.is_file():
        raise typer.BadParameter(f"--calibration: no file {calibration}")
    return str(calibration.resolve())


def _check_ensemble_flags(
    members: int | None, percentiles: str | None = None, keep_members: bool = False
) -> tuple[float, ...] | None:
    """Refuse ensemble flags without --members or a bad count; the percentiles parsed."""
    if members is None:
        if percentiles is not None or keep_members:
            raise typer.BadParameter("--percentiles and --keep-members need --members N")
        return None
    if members < 1:
        raise typer.BadParameter(f"--members must be >= 1, got {members}")
    from nowcast.ensemble_forecast import parse_percentiles

    try:
        return parse_percentiles(percentiles)
    except ValueError as err:
        raise typer.BadParameter(f"--percentiles: {err}") from err


def _local_parent(location: str) -> Path:
    """The directory for Prefect's home next to a store: its parent (created), or the
    current directory for an ``s3://`` store."""
    from pipeline.store_engine import is_url

    if is_url(location):
        return Path(".")
    parent = Path(location).absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def _check_one_predictor(run: Path | None, baseline: str | None) -> None:
    if (run is None) == (baseline is None):
        raise typer.BadParameter("give exactly one of --run RUN_DIR and --baseline NAME")


def demo(
    workdir: Path = typer.Option(
        ..., "--workdir", help="Directory for everything the demo writes."
    ),
    days: int = typer.Option(8, help="Days of synthetic radar (8: 6 train, 1 valid, 1 test)."),
    seed: int = typer.Option(0, help="Seed of the synthetic archive."),
    model: str = typer.Option("trajgru_ode", help="Model to train (nowcast.models.MODEL_NAMES)."),
    config: str = typer.Option(
        "small_lagrangian", help="Model configuration (small_lagrangian: the Lagrangian mode)."
    ),
    train_minutes: float = typer.Option(5.0, help="Training time budget in minutes."),
    eval_samples: int = typer.Option(96, help="Test sequences per predictor (0 = all)."),
) -> None:
    """Run the whole pipeline on a synthetic archive and build the dashboard."""
    from flows._prefect_env import configure

    workdir.mkdir(parents=True, exist_ok=True)
    configure(workdir)
    from flows.demo import demo_flow

    summary = demo_flow(
        str(workdir.resolve()),
        days=days,
        seed=seed,
        model=model,
        config=config,
        train_minutes=train_minutes,
        eval_samples=eval_samples or None,
    )
    table = Path(summary["results_table"])
    typer.echo("")
    if table.is_file():
        typer.echo(table.read_text(encoding="utf-8"))
    for issue, status, reason in summary["cycles"]:
        typer.echo(f"forecast {issue}: {status}{' (' + reason + ')' if reason else ''}")
    typer.echo(f"timings (s): {summary['timings_s']}")
    typer.echo(f"results table: {summary['results_table']}")
    typer.echo(f"dashboard:     {summary['dashboard']}")
    typer.echo(f"  (view it with: nowcast dashboard {summary['site']} --serve)")


def serve(
    store: str = typer.Option(..., "--store", help=_STORE_HELP),
    site: Path = typer.Option(..., "--site", help="Site directory to publish into."),
    run: Path | None = typer.Option(None, "--run", help="Trained run directory."),
    baseline: str | None = typer.Option(None, "--baseline", help="Baseline name, e.g. pysteps."),
    interval: float = typer.Option(6.0, "--interval", help="Minutes between runs."),
    leads: str | None = typer.Option(None, "--leads", help=_LEADS_HELP),
    clock: str = typer.Option("store", help="Issue time from the newest 'store' frame or 'wall'."),
    max_missing: int = typer.Option(2, help="Most consecutive missing input frames accepted."),
    workdir: Path = typer.Option(Path("."), "--workdir", help=_WORKDIR_HELP),
    members: Members = None,
    seed: Seed = 0,
    archive: str = typer.Option("forecasts.zarr", "--archive", help=_ARCHIVE_HELP),
    calibration: Calibration = None,
) -> None:
    """Forecast on a schedule with Prefect's flow.serve (Ctrl-C to stop).

    Starts a local Prefect server (scheduler on, UI off) unless PREFECT_API_URL is set.
    """
    _check_one_predictor(run, baseline)
    _check_ensemble_flags(members)
    cal = _calibration_file(calibration, members)
    _require("--store", store)
    _require("--run", run)
    lead_minutes = _parse_leads(leads)
    from flows._prefect_env import configure

    workdir.mkdir(parents=True, exist_ok=True)
    configure(workdir)
    from flows.serve import serve_forecasts

    serve_forecasts(
        store,
        site,
        run=run,
        baseline=baseline,
        interval_minutes=interval,
        lead_minutes=lead_minutes,
        clock=clock,
        max_consecutive_missing=max_missing,
        members=members,
        seed=seed if members is not None else None,
        archive=archive,
        calibration=cal,
    )


def replay(
    archive: Path = typer.Argument(..., help="HKO-7 archive to play."),
    store: Path = typer.Argument(..., help="Radar store fed frame by frame."),
    speed: float = typer.Option(60.0, help="Simulated seconds per second (0 = no waiting)."),
    start: str | None = typer.Option(None, help="First time to replay."),
    end: str | None = typer.Option(None, help="Last time to replay."),
    site: Path | None = typer.Option(None, "--site", help="Also forecast into this site."),
    run: Path | None = typer.Option(None, "--run", help="Trained run (with --site)."),
    baseline: str | None = typer.Option(None, "--baseline", help="Baseline (with --site)."),
    leads: str | None = typer.Option(None, "--leads", help=_LEADS_HELP),
    every: int = typer.Option(1, help="Run a forecast cycle every N ticks (6 min each)."),
    workdir: Path = typer.Option(Path("."), "--workdir", help=_WORKDIR_HELP),
) -> None:
    """Feed an archive into a store as if live; optionally forecast at each simulated time."""
    if site is not None:
        _check_one_predictor(run, baseline)
    _require("archive", archive)
    _require("--run", run)
    start, end = _parse_time("--start", start), _parse_time("--end", end)
    if every < 1:
        raise typer.BadParameter(f"--every must be >= 1, got {every}")
    from flows._prefect_env import configure

    workdir.mkdir(parents=True, exist_ok=True)
    configure(workdir)
    from flows.serve import run_forecast_cycle
    from products.replay import replay_archive

    on_tick = None
    if site is not None:
        ticks = {"n": 0}
        lead_minutes = _parse_leads(leads)

        def on_tick(now):
            ticks["n"] += 1
            if (ticks["n"] - 1) % every:
                return None
            res = run_forecast_cycle(
                store, site, run=run, baseline=baseline, now=now, lead_minutes=lead_minutes
            )
            typer.echo(f"{res['issue_time']}: {res['status']} {res['reason']}")
            return res

    report = replay_archive(archive, store, speed=speed, start=start, end=end, on_tick=on_tick)
    typer.echo(
        f"replayed {report.ticks} ticks ({report.start} .. {report.end}), "
        f"{report.frames_ingested} frames ingested, {len(report.corrupt)} corrupt skipped, "
        f"{report.seconds:.1f} s"
    )


def forecast(
    store: str = typer.Option(..., "--store", help=_STORE_HELP),
    out: Path = typer.Option(..., "--out", help="Forecast NetCDF file to write."),
    issue_time: str | None = typer.Option(None, help="Issue time (default: newest frame)."),
    run: Path | None = typer.Option(None, "--run", help="Trained run directory."),
    baseline: str | None = typer.Option(None, "--baseline", help="Baseline name."),
    leads: str | None = typer.Option(None, "--leads", help=_LEADS_HELP),
    in_frames: int | None = typer.Option(None, help="Input frames (baselines; default 5)."),
    image_size: int | None = typer.Option(None, help="Grid side (baselines; default store)."),
    members: Members = None,
    seed: Seed = 0,
    percentiles: str | None = typer.Option(
        None,
        "--percentiles",
        help="With --members: percentiles of the members, e.g. 10,50,90 (keeps every member).",
    ),
    keep_members: bool = typer.Option(
        False, "--keep-members", help="With --members: write the members (realization)."
    ),
    probability: str = typer.Option(
        "debiased",
        "--probability",
        help="With --members: probability estimator, debiased (finite-ensemble correction) "
        "or fraction (k / N).",
    ),
    calibration: Calibration = None,
    accumulations: str = typer.Option(
        "60,120",
        "--accumulations",
        help="Forecast rain-amount windows in minutes (e.g. 30,60,180; those the leads reach), "
        "or none.",
    ),
) -> None:
    """Make one forecast (no Prefect) and write it as CF NetCDF.

    The file also holds rain accumulations (mm, CF lwe_thickness_of_precipitation_amount):
    observed over the last 60 min and forecast over each --accumulations window
    (products.accumulation, advection-corrected).

    With --members N: an N-member ensemble (docs/ensembles.md, "Products"); the file then
    holds the ensemble mean, exceedance probabilities per threshold and lead, and the
    percentiles and members when asked for.
    """
    _check_one_predictor(run, baseline)
    issue_time = _parse_time("--issue-time", issue_time)
    lead_minutes = _parse_leads(leads)
    windows = _parse_windows(accumulations)
    pcts = _check_ensemble_flags(members, percentiles, keep_members)
    from nowcast.probability import METHODS

    if probability not in METHODS:
        raise typer.BadParameter(
            f"--probability must be one of {', '.join(sorted(METHODS))}; got {probability!r}"
        )
    _require("--run", run)
    cal = None
    if _calibration_file(calibration, members) is not None:
        from nowcast.calibration import ProbabilityCalibration

        cal = ProbabilityCalibration.load(calibration)
        if cal.n_members != members:
            raise typer.BadParameter(
                f"--calibration {calibration} was fitted for {cal.n_members} members; "
                f"got --members {members}"
            )
    from flows._prefect_env import configure

    configure(out.parent)
    import pandas as pd

    from nowcast.forecast import baseline_predictor, make_forecast, run_predictor
    from pipeline.window import as_dataset, store_cadence
    from products.cf import write_forecast_netcdf
    from products.cycle import default_leads, resolve_issue_time

    if run is not None:
        pred = run_predictor(run)  # its inputs at the cadence it was trained on
    else:  # an unknown name is refused before the store is opened
        pred = baseline_predictor(baseline, in_frames=in_frames or 5, image_size=image_size)
    radar = as_dataset(store)
    cadence = store_cadence(radar) / pd.Timedelta("1min")  # the store's, e.g. 5 for KNMI
    if run is None:
        pred = baseline_predictor(
            baseline, in_frames=in_frames or 5, cadence_minutes=cadence, image_size=image_size
        )
    issue = resolve_issue_time(radar, now=issue_time, cadence_minutes=cadence)
    lead_minutes = lead_minutes or list(default_leads(pred.cadence_minutes))
    if members is None:
        fc = make_forecast(pred, radar, issue, lead_minutes)
    else:
        from nowcast.ensemble_forecast import make_ensemble_forecast

        fc = make_ensemble_forecast(
            pred,
            radar,
            issue,
            lead_minutes,
            members=members,
            seed=seed,
            percentiles=pcts,
            keep_members=keep_members,
            probability=probability,
            calibration=cal,
        )
    from products.accumulation import add_accumulations

    fc = add_accumulations(fc, store, windows=windows)  # mm in the last hour, the next ones
    out.parent.mkdir(parents=True, exist_ok=True)
    write_forecast_netcdf(fc, out)
    what = pred.name if members is None else f"{pred.name}, {members} members, seed {seed}"
    typer.echo(f"forecast issued {issue} by {what} -> {out}")


def _parse_windows(text: str) -> tuple[int, ...]:
    """``--accumulations``: positive whole minutes, comma-separated, or ``none``."""
    if text.strip().lower() == "none":
        return ()
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise ValueError(
            f"--accumulations must be comma-separated whole minutes >= 1 (or none), got {text!r}"
        )
    return values


def publish(
    forecast_nc: Path = typer.Argument(..., help="Forecast NetCDF (nowcast forecast --out)."),
    store: str = typer.Option(..., "--store", help=_STORE_HELP),
    site: Path = typer.Option(..., "--site", help="Site directory."),
    keep_runs: int = typer.Option(24, help="Runs kept in the site."),
    archive: str = typer.Option("forecasts.zarr", "--archive", help=_ARCHIVE_HELP),
) -> None:
    """Publish a forecast file (maps, loop, NetCDF, dashboard) into a site (no Prefect).

    A forecast whose lead times or grid differ from the site's forecast archive is refused
    before any map is drawn, saying what differs and what to do (--leads, --archive).
    """
    from flows._prefect_env import configure

    configure(Path("."))
    from products.cycle import publish_file

    typer.echo(publish_file(forecast_nc, store, site, keep_runs=keep_runs, archive=archive))


# --------------------------------------------------------------------------- nowcast flow ...

flow_app = typer.Typer(
    help="Run a pipeline step as a Prefect flow (local temporary server).",
    no_args_is_help=True,
)


@flow_app.command("ingest")
def flow_ingest(
    archive: Annotated[Path, typer.Argument(help="Archive root (HKO-7: holds radarPNG/).")],
    store: Annotated[
        str, typer.Argument(help="Radar store (created when missing): path or s3:// URL.")
    ],
    start: Start = None,
    end: End = None,
    threads: Threads = None,
    scheduler_address: SchedulerAddress = None,
    dask_workers: Annotated[
        int,
        typer.Option(
            "--dask-workers", help="Workers of the local dask cluster (no --scheduler-address)."
        ),
    ] = 2,
    source: Source = "hko7",
) -> None:
    """Ingest an archive, one dask task per day (the flags of nowcast ingest, and the cluster's).

    With --scheduler-address the cluster's workers write the chunks instead (each into a
    fork of the batch's Icechunk session), one commit per batch.
    """
    _require("archive", archive)
    start, end = _parse_time("--start", start), _parse_time("--end", end)
    check_start_end(start, end)
    from flows._prefect_env import configure

    configure(_local_parent(store))
    from flows.ingest import ingest_flow, make_task_runner

    if scheduler_address:  # the chunks are written on that cluster, one commit per batch
        res = ingest_flow(
            str(archive), store, start, end, threads=threads, source=source,
            scheduler_address=scheduler_address,
        )  # fmt: skip
    else:
        runner = make_task_runner(n_workers=dask_workers)
        res = ingest_flow.with_options(task_runner=runner)(
            str(archive), store, start, end, threads=threads, source=source
        )
    typer.echo(f"{res['frames_written']} frames written, {len(res['corrupt'])} corrupt skipped")


@flow_app.command("resample")
def flow_resample(
    src: str = typer.Argument(..., help="Ingest store (path or s3:// URL)."),
    dst: str = typer.Argument(..., help="Resampled store to write (path or s3:// URL)."),
    size: int = typer.Option(80, help="Grid side."),
    cadence: str | None = typer.Option(
        None, help="Time grid step (default: the store's own cadence)."
    ),
    fill_gaps: int | None = typer.Option(
        None, "--fill-gaps", help="Fill gaps of at most N slots (flag `interpolated`)."
    ),
    interpolation: str = typer.Option(
        "advection", "--interpolation", help="Gap filling method: linear, advection or model."
    ),
    fill_window: int = typer.Option(5, "--fill-window", help="Input window of the filling."),
    run: str | None = typer.Option(None, "--run", help="Trained run for --interpolation model."),
) -> None:
    """Resample a store onto a regular time grid and a coarser grid (gaps filled on request)."""
    from flows._cli_resample import _gap_filler

    _gap_filler(fill_gaps, interpolation, fill_window, run, dst)  # bad input: before Prefect
    from flows._prefect_env import configure

    configure(_local_parent(dst))
    from flows.resample import resample_flow

    fill = dict(fill_gaps=fill_gaps, interpolation=interpolation, fill_window=fill_window, run=run)
    typer.echo(resample_flow(str(src), str(dst), size=size, cadence=cadence, **fill))


flow_app.command("train")(flow_train_command)
flow_app.command("evaluate")(flow_evaluate_command)


@flow_app.command("forecast")
def flow_forecast(
    store: str = typer.Option(..., "--store", help=_STORE_HELP),
    site: Path = typer.Option(..., "--site", help="Site directory."),
    run: Path | None = typer.Option(None, "--run", help="Trained run directory."),
    baseline: str | None = typer.Option(None, "--baseline", help="Baseline name."),
    now: str | None = typer.Option(
        None, "--issue-time", help="Issue at this time (default newest frame)."
    ),
    leads: str | None = typer.Option(None, "--leads", help=_LEADS_HELP),
    workdir: Path = typer.Option(Path("."), "--workdir", help=_WORKDIR_HELP),
    members: Members = None,
    seed: Seed = 0,
    archive: str = typer.Option("forecasts.zarr", "--archive", help=_ARCHIVE_HELP),
    calibration: Calibration = None,
) -> None:
    """One forecast cycle: forecast, verify earlier forecasts, publish."""
    _check_one_predictor(run, baseline)
    _check_ensemble_flags(members)
    cal = _calibration_file(calibration, members)
    _require("--store", store)
    _require("--run", run)
    now = _parse_time("--issue-time", now)
    lead_minutes = _parse_leads(leads)
    from flows._prefect_env import configure

    workdir.mkdir(parents=True, exist_ok=True)
    configure(workdir)
    from flows.serve import run_forecast_cycle

    ens = {} if members is None else {"members": members, "seed": seed, "calibration": cal}
    res = run_forecast_cycle(
        store, site, run=run, baseline=baseline, now=now, lead_minutes=lead_minutes,
        archive=archive, **ens,
    )  # fmt: skip
    typer.echo(f"{res['issue_time']}: {res['status']} {res['reason']}")


@flow_app.command("publish")
def flow_publish(
    forecast_nc: Path = typer.Argument(..., help="Forecast NetCDF."),
    store: str = typer.Option(..., "--store", help=_STORE_HELP),
    site: Path = typer.Option(..., "--site", help="Site directory."),
    workdir: Path = typer.Option(Path("."), "--workdir", help=_WORKDIR_HELP),
    archive: str = typer.Option("forecasts.zarr", "--archive", help=_ARCHIVE_HELP),
) -> None:
    """Publish a forecast file into a site."""
    _require("forecast file", forecast_nc, is_dir=False)
    _require("--store", store)
    from flows._prefect_env import configure

    workdir.mkdir(parents=True, exist_ok=True)
    configure(workdir)
    from flows.publish import publish_flow

    typer.echo(publish_flow(str(forecast_nc), str(store), str(site), archive=archive))


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to *app*."""
    app.command("demo")(demo)
    app.command("serve")(serve)
    app.command("replay")(replay)
    app.command("forecast")(forecast)
    app.command("publish")(publish)
    app.add_typer(flow_app, name="flow")
