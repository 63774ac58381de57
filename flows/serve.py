"""Scheduled forecast runs (``flow.serve``) and replay of an archive as a live feed.

Scheduled runs
--------------
:func:`serve_forecasts` deploys :func:`flows.forecast.forecast_flow` on an interval
(6 minutes, the radar cadence) with Prefect's ``flow.serve``: a long-running process that
creates a flow run at every tick and runs it. Schedules need a Prefect server with its
scheduler service: Prefect's temporary in-process server does not schedule ("Cannot
schedule flows on an ephemeral server"). A watchdog child (:mod:`flows._serve_reaper`)
stops the Prefect server and flow runs when ``serve`` dies, even by ``kill -9``. Unless ``PREFECT_API_URL`` names a server,
:func:`local_prefect_server` starts ``prefect server start`` (127.0.0.1, a free port, no
UI, database under ``PREFECT_HOME``) for the lifetime of the command and stops it after
``serve`` has stopped. Each run forecasts from the newest frames
of the store, skips cleanly when the input window has too many missing frames or no new
frame arrived, publishes the products and verifies earlier forecasts (see
:mod:`products.cycle`). Stop it with Ctrl-C / SIGTERM.

Replay
------
:func:`products.replay.replay_archive` plays an archive into the store as a live feed;
:func:`run_forecast_cycle` is its ``on_tick`` when ``nowcast replay`` runs the forecast flow
at simulated issue times.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

__all__ = ["local_prefect_server", "run_forecast_cycle", "serve_forecasts"]


def _flow_parameters(
    store: str | Path,
    site: str | Path,
    run: str | Path | None,
    baseline: str | None,
    lead_minutes: Sequence[int] | None,
    **extra: object,
) -> dict:
    from pipeline.store_engine import is_url
    from products.cycle import ForecastSettings

    # validate early (exactly one of run / baseline, clock name, ...)
    ForecastSettings(
        store=str(store),
        site=str(site),
        run=None if run is None else str(run),
        baseline=baseline,
        **{
            k: v
            for k, v in extra.items()
            if k in ("clock", "max_consecutive_missing", "members", "calibration") and v is not None
        },
    )
    params = {
        "store": str(store) if is_url(store) else str(Path(store).resolve()),
        "site": str(Path(site).resolve()),
        "run": None if run is None else str(Path(run).resolve()),
        "baseline": baseline,
        "lead_minutes": [int(v) for v in lead_minutes] if lead_minutes else None,
    }
    params.update({k: v for k, v in extra.items() if v is not None})
    return params


def run_forecast_cycle(
    store: str | Path,
    site: str | Path,
    *,
    run: str | Path | None = None,
    baseline: str | None = None,
    now: object = None,
    lead_minutes: Sequence[int] | None = None,
    **options: object,
) -> dict:
    """Run the Prefect forecast flow once, at simulated time *now* (the replay clock).

    Parameters
    ----------
    store, site : path
        Radar store and site directory.
    run, baseline :
        Exactly one: a trained run directory or a baseline name.
    now : timestamp-like, optional
        Simulated current time; ``None`` = the flow's clock (newest store frame).
    lead_minutes : sequence of int, optional
        Lead times (default: every step of the predictor's cadence to an hour,
        :func:`products.cycle.default_leads`).
    **options
        Other parameters of :func:`flows.forecast.forecast_flow` (``in_frames``,
        ``image_size``, ``max_consecutive_missing``, ``n_obs_frames``, ...).

    Returns
    -------
    dict
        The flow's result: ``status`` ``ok`` or ``skipped``, ``reason``, ``run_dir``...
    """
    from flows.forecast import forecast_flow

    params = _flow_parameters(store, site, run, baseline, lead_minutes, **options)
    if now is not None:
        params["now"] = pd.Timestamp(now).isoformat()
    return forecast_flow(**params)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def local_prefect_server(startup_timeout: float = 120.0) -> Iterator[str]:
    """A Prefect server with its scheduler for the duration of the block; yields the API URL.

    When ``PREFECT_API_URL`` is set, that server is used and nothing is started.
    Otherwise ``python -m prefect server start --host 127.0.0.1 --port <free> --no-ui``
    runs as a child process (its log in ``$PREFECT_HOME/server.log``) and is terminated
    when the block exits.

    Raises
    ------
    RuntimeError
        The server exited or did not answer ``/api/health`` within *startup_timeout* s.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    home = Path(os.environ.get("PREFECT_HOME", Path.cwd() / ".prefect"))
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "server.log"
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--no-ui", "--analytics-off"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the Prefect server exited with code {proc.returncode}; see {log_path}"
                )
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Prefect server did not start within {startup_timeout:g} s; see {log_path}"
                )
            time.sleep(0.5)
        os.environ["PREFECT_API_URL"] = url  # for flow-run subprocesses
        try:
            with temporary_settings(updates={PREFECT_API_URL: url}):
                yield url
        finally:
            os.environ.pop("PREFECT_API_URL", None)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_forecasts(
    store: str | Path,
    site: str | Path,
    *,
    run: str | Path | None = None,
    baseline: str | None = None,
    interval_minutes: float = 6.0,
    lead_minutes: Sequence[int] | None = None,
    name: str = "scheduled-forecast",
    **options: object,
) -> None:
    """Serve the forecast flow on a fixed interval until interrupted (blocking).

    Parameters
    ----------
    store, site : path
        Radar store and site directory.
    run, baseline :
        Exactly one: a trained run directory or a baseline name.
    interval_minutes : float
        Minutes between scheduled runs (6 = the radar cadence).
    lead_minutes : sequence of int, optional
        Lead times of each forecast.
    name : str
        Deployment name.
    **options
        Other parameters of :func:`flows.forecast.forecast_flow` (``clock``, ...).
    """
    from flows.forecast import forecast_flow

    if not interval_minutes > 0:
        raise ValueError(f"interval_minutes must be > 0, got {interval_minutes!r}")
    from flows._serve_reaper import start_reaper

    params = _flow_parameters(store, site, run, baseline, lead_minutes, **options)
    external = bool(os.environ.get("PREFECT_API_URL"))
    start_reaper()  # a kill -9 of this process takes the server and the flow runs with it
    with local_prefect_server():
        forecast_flow.serve(
            name=name,
            # Pausing the schedule on shutdown matters only on a server that outlives
            # us; with our own temporary server it is pointless, and Prefect 3.8's
            # shutdown then hangs about a minute on the pause request.
            pause_on_shutdown=external,
            limit=1,  # one cycle at a time: a slow cycle delays the next, never overlaps
            interval=dt.timedelta(minutes=interval_minutes),
            parameters=params,
            description=f"nowcast every {interval_minutes:g} min from {params['store']}",
        )
