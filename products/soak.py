"""Fault-injection soak of the scheduled forecast cycle on a replayed archive.

:func:`run_soak` replays a clean synthetic HKO-7 archive into a *live* archive one frame per
6-minute tick and, at every tick, ingests the live archive into a radar store and runs one
forecast cycle (:func:`products.cycle.forecast_cycle`, simulated clock) into a site. Faults
are injected at random from a seed (or from an explicit schedule):

``missing``
    the tick's frame never arrives;
``gap``
    3 to 5 frames in a row never arrive (longer than the HKO-7 rule's 2);
``corrupt`` / ``truncated``
    the frame arrives as random bytes / as the first 40 % of its PNG;
``frozen``
    the frame arrives as a copy of the previous frame (a frozen radar);
``kill_cycle``
    the cycle runs in a child process killed with SIGKILL at a named point
    (:data:`CYCLE_KILL_POINTS`: inside the forecast, the verification or the publish);
``kill_ingest``
    the tick's ingest runs in a child process killed with SIGKILL while writing chunks or
    at the commit (:data:`INGEST_KILL_POINTS`); the next tick's ingest catches up;
``disk_full``
    the tick's ingest fails with ``OSError(ENOSPC)`` writing the store's chunks (the next
    tick's ingest catches up), and every atomic write of the site raises it during the cycle.

With the store on object storage (:mod:`products.soak_s3`: a moto server on 127.0.0.1
behind a fault proxy, :class:`pipeline.objectstore.faultproxy.FaultProxy`) three more
kinds (:data:`OBJECT_STORAGE_FAULTS`) hit the endpoint during the tick's ingest and cycle:

``outage``
    the endpoint is down for :data:`OUTAGE_SECONDS` from the start of the tick (open
    connections cut, new ones reset);
``slow``
    every request waits :data:`SLOW_SECONDS` in the proxy during the tick;
``rival``
    a second ingest process writes the same frames into the store at the same time (a
    concurrent writer: both finish, each frame is stored once).

Afterwards every cycle is accounted for as ``ok``, ``skipped`` (with its reason) or
``failed`` (with its error); a cycle is *blocked* when it did not end as expected from the
frames in the store at its time (``ok`` when the input window passes the HKO-7 rule,
``skipped`` otherwise) although no fault hit that cycle itself; every frame that arrived
readable must be in the store (*frames lost*); and the store and the site must open and
agree (latest run, dashboard data, status log, forecast archive; *mismatches*).
``benchmarks/soak.py`` runs the one-day version and prints :meth:`SoakReport.summary`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "CYCLE_KILL_POINTS",
    "FAULT_KINDS",
    "INGEST_KILL_POINTS",
    "OBJECT_STORAGE_FAULTS",
    "SoakReport",
    "fault_schedule",
    "run_soak",
]

FAULT_KINDS: tuple[str, ...] = (
    "missing",
    "gap",
    "corrupt",
    "truncated",
    "frozen",
    "kill_cycle",
    "kill_ingest",
    "disk_full",
)
"""Faults :func:`run_soak` injects (see the module docstring)."""

CYCLE_KILL_POINTS: tuple[str, ...] = (
    "forecast",
    "verify",
    "publish:file:forecast.nc",
    "publish:renamed",
    "publish:latest",
)
"""Where a ``kill_cycle`` fault kills the cycle: after the model ran, when an earlier
forecast is verified, and at three stages of the publish (:func:`products.site._hook`)."""

OBJECT_STORAGE_FAULTS: tuple[str, ...] = ("outage", "slow", "rival")
"""Faults of a store on object storage (see the module docstring)."""
OUTAGE_SECONDS: float = 2.0
"""Length of an ``outage`` of the endpoint."""
SLOW_SECONDS: float = 0.05
"""Delay the proxy adds to each piece of a request during a ``slow`` tick."""

INGEST_KILL_POINTS: tuple[str, ...] = ("write", "commit")
"""Where a ``kill_ingest`` fault kills the ingest: writing a chunk, committing the version."""

_CADENCE = pd.Timedelta("6min")
_REPO = str(Path(__file__).resolve().parents[1])

_CYCLE_CHILD = """
import json, os, signal, sys
sys.path.insert(0, {repo!r})
point, settings, now = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
import products.cycle as F, products.site as P, products.verify as V
import nowcast.forecast as NF

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if point == "forecast":
    run = NF._run
    NF._run = lambda *a, **k: (run(*a, **k), die())[0]
elif point == "verify":
    V.verify_forecast = die
else:
    stage = point.split(":", 1)[1]
    P._publish_hook = lambda s: die() if s == stage else None
settings["lead_minutes"] = tuple(settings["lead_minutes"])
res = F.forecast_cycle(F.ForecastSettings(**settings), now=now)
print(json.dumps(res.to_dict()))
"""

_INGEST_CHILD = """
import os, signal, sys
sys.path.insert(0, {repo!r})
point, archive, store, end = sys.argv[1:5]
import pipeline.ingest as I
import pipeline.store as S

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if point == "write":
    I._write_chunk = die
else:
    S.StoreWriter.commit = die
I.ingest_archive(archive, store, end=end, workers=1, progress=False)
"""

_RIVAL_CHILD = """
import sys
sys.path.insert(0, {repo!r})
import pipeline.ingest as I
I.ingest_archive(sys.argv[1], sys.argv[2], end=sys.argv[3], workers=1, progress=False)
"""


@dataclass
class SoakCycle:
    """One cycle: tick, simulated time, fault injected at this tick, outcome and time."""

    tick: int
    now: str
    fault: str | None
    status: str
    reason: str
    expected: str
    seconds: float


@dataclass
class SoakReport:
    """Everything :func:`run_soak` saw; :meth:`summary` is the benchmark's JSON line."""

    cycles: list[SoakCycle] = field(default_factory=list)
    faults: Counter = field(default_factory=Counter)
    frames_arrived: int = 0
    frames_lost: list[str] = field(default_factory=list)
    frames_duplicated: int = 0
    mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS

    @property
    def blocked(self) -> list[SoakCycle]:
        """Cycles that did not end as expected although no fault hit them."""
        hit = ("kill_cycle", "disk_full")
        return [c for c in self.cycles if c.fault not in hit and c.status != c.expected]

    def summary(self) -> dict:
        """Counts and times as a flat dict (JSON-ready)."""
        secs = np.array([c.seconds for c in self.cycles]) if self.cycles else np.zeros(1)
        status = Counter(c.status for c in self.cycles)
        return {
            "cycles": len(self.cycles),
            "faults": {k: int(self.faults.get(k, 0)) for k in self.kinds},
            "cycles_ok": status.get("ok", 0),
            "cycles_skipped": status.get("skipped", 0),
            "cycles_failed": status.get("failed", 0),
            "blocked_after_fault": len(self.blocked),
            "frames_arrived": self.frames_arrived,
            "frames_lost": len(self.frames_lost),
            "frames_duplicated": self.frames_duplicated,
            "site_store_mismatches": len(self.mismatches),
            "cycle_seconds_median": round(float(np.median(secs)), 3),
            "cycle_seconds_worst": round(float(secs.max()), 3),
            "seconds": round(self.seconds, 1),
        }


def fault_schedule(
    n_cycles: int, seed: int = 0, rate: float = 0.15, kinds: tuple[str, ...] = FAULT_KINDS
) -> dict[int, str]:
    """Random faults ``{tick: kind}`` over *n_cycles* ticks (a ``gap`` fills 3-5 ticks).

    A fault starts at a tick with probability *rate*; the kinds come in shuffled rounds of
    all *kinds* (default :data:`FAULT_KINDS`), so every kind is injected once there are
    enough faults. The first 5 ticks (the first input window) stay clean.
    """
    all_kinds = kinds
    rng = np.random.default_rng(seed)
    out: dict[int, str] = {}
    kinds: list[str] = []
    k = 5
    while k < n_cycles:
        if rng.random() < rate:
            if not kinds:
                kinds = [str(v) for v in rng.permutation(all_kinds)]
            kind = kinds.pop()
            n = int(rng.integers(3, 6)) if kind == "gap" else 1
            for j in range(k, min(k + n, n_cycles)):
                out[j] = kind
            k += n
        else:
            k += 1
    return out


def _deliver(src: Path, live: Path, t: pd.Timestamp, fault: str | None, prev, rng) -> bool:
    """Copy the frame at *t* (and its mask) into *live* as *fault* says; True if readable."""
    from pipeline import hko7

    if fault in ("missing", "gap"):
        return False
    s_png, d_png = hko7.frame_path(src, t), hko7.frame_path(live, t)
    d_png.parent.mkdir(parents=True, exist_ok=True)
    s_mask = hko7.mask_path(src, t)
    if s_mask.is_file():
        hko7.mask_path(live, t).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(s_mask, hko7.mask_path(live, t))
    data = s_png.read_bytes()
    if fault == "corrupt":
        data = rng.integers(0, 256, len(data) // 4, dtype=np.uint8).tobytes()
    elif fault == "truncated":
        data = data[: int(len(data) * 0.4)]
    elif fault == "frozen" and prev is not None:
        data = hko7.frame_path(src, prev).read_bytes()
    tmp = d_png.with_name(f".{d_png.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, d_png)  # frames arrive whole (or corrupt on purpose)
    return fault not in ("corrupt", "truncated")


def _child(script: str, args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=_REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-c", script.format(repo=_REPO), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@contextlib.contextmanager
def _disk_full(module: str, name: str):
    """Make ``module.name`` raise ``OSError(ENOSPC)`` (a full disk) inside the block."""
    import importlib

    mod = importlib.import_module(module)
    real = getattr(mod, name)
    setattr(mod, name, _full)
    try:
        yield
    finally:
        setattr(mod, name, real)


def _store_times(store: Path | str) -> pd.DatetimeIndex:
    from pipeline.store import holds_group, open_store

    if not holds_group(store):
        return pd.DatetimeIndex([])
    return pd.DatetimeIndex(open_store(store)["time"].values)


def _expected(store_times: pd.DatetimeIndex, now: pd.Timestamp, in_frames: int) -> str:
    from pipeline.window import check_window, window_slots

    slots = window_slots(now, in_frames, _CADENCE)
    return "ok" if check_window([s in store_times for s in slots]) is None else "skipped"


def run_soak(
    workdir: str | os.PathLike,
    *,
    cycles: int = 240,
    seed: int = 0,
    faults: dict[int, str] | None = None,
    rate: float = 0.15,
    baseline: str = "persistence",
    image_size: int = 80,
    lead_minutes: tuple[int, ...] = (6, 12),
    start: str = "2015-06-01",
    progress: bool = False,
    store: str | None = None,
    proxy=None,
) -> SoakReport:
    """Run *cycles* forecast cycles with faults injected (see the module docstring).

    Parameters
    ----------
    workdir : path
        New or empty directory for the archives, the store and the site.
    cycles : int
        Ticks of 6 minutes (240: one day).
    seed : int
        Seed of the archive, of the fault schedule and of the corrupt bytes.
    faults : dict, optional
        ``{tick: kind}`` instead of :func:`fault_schedule` (kinds: :data:`FAULT_KINDS`).
    rate : float
        Probability of a fault starting at a tick (random schedule only).
    baseline : str
        Predictor of the cycles (``nowcast.baselines``).
    image_size : int
        Grid side the forecasts are made and published on.
    lead_minutes : tuple of int
        Lead times of each forecast.
    start : str
        First day of the replayed archive.
    progress : bool
        Print one line per cycle to standard error.
    store : str, optional
        An ``s3://`` store instead of ``WORKDIR/radar.zarr`` (the site stays in *workdir*).
    proxy : pipeline.objectstore.faultproxy.FaultProxy, optional
        The proxy in front of the store's endpoint: enables :data:`OBJECT_STORAGE_FAULTS`.

    Returns
    -------
    SoakReport
    """
    from pipeline.ingest import ingest_archive
    from pipeline.synthetic import generate_archive
    from products.cycle import ForecastSettings, forecast_cycle

    if cycles < 1:
        raise ValueError(f"cycles must be >= 1, got {cycles}")
    kinds = FAULT_KINDS + (OBJECT_STORAGE_FAULTS if proxy is not None else ())
    schedule = fault_schedule(cycles, seed, rate, kinds) if faults is None else dict(faults)
    unknown = sorted(set(schedule.values()) - set(kinds))
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; valid kinds: {', '.join(kinds)}")
    t_wall = time.perf_counter()
    work = Path(workdir)
    src, live, site = work / "source", work / "live", work / "site"
    store = work / "radar.zarr" if store is None else store
    hours = -(-cycles // 10)
    info = generate_archive(
        src, start=start, days=1 + (hours - 1) // 24, seed=seed, hours=min(hours, 24),
        irregular=False, corrupt=False, empty_day=False, progress=False,
    )  # fmt: skip
    (live / "radarPNG").mkdir(parents=True)
    for extra in src.glob("*.npz"):
        shutil.copyfile(extra, live / extra.name)
    times = pd.DatetimeIndex(info.times)[:cycles]
    settings = ForecastSettings(
        str(store),
        str(site),
        baseline=baseline,
        lead_minutes=tuple(lead_minutes),
        image_size=image_size,
        n_obs_frames=1,
        coastline_resolution="110m",
    )
    child_settings = json.dumps({k: v for k, v in asdict(settings).items()})
    rng = np.random.default_rng(seed + 1)
    report = SoakReport(kinds=kinds)
    arrived: list[pd.Timestamp] = []
    kill_cycle_points = iter(np.resize(np.array(CYCLE_KILL_POINTS), cycles))
    kill_ingest_points = iter(np.resize(np.array(INGEST_KILL_POINTS), cycles))
    gap_started = False
    for k, now in enumerate(times):
        fault = schedule.get(k)
        if fault is not None and not (fault == "gap" and gap_started):
            report.faults[fault] += 1
        gap_started = fault == "gap"
        if _deliver(src, live, now, fault, times[k - 1] if k else None, rng):
            arrived.append(now)
        rival = _endpoint_fault(proxy, fault, [str(live), str(store), str(now)])
        if fault == "kill_ingest":
            point = str(next(kill_ingest_points))
            proc = _child(_INGEST_CHILD, [point, str(live), str(store), str(now)])
            if proc.returncode != -signal.SIGKILL:
                report.mismatches.append(f"tick {k}: ingest not killed at {point}: {proc.stderr}")
        elif fault == "disk_full":
            try:
                with _disk_full("pipeline.ingest", "_write_chunk"):
                    ingest_archive(live, store, end=now, workers=1, progress=False)
                report.mismatches.append(f"tick {k}: ingest did not fail on a full disk")
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
        else:
            ingest_archive(live, store, end=now, workers=1, progress=False)
        expected = _expected(_store_times(store), now, 5)
        iso = now.isoformat()
        t0 = time.perf_counter()
        status, reason = "failed", ""
        try:
            if fault == "kill_cycle":
                point = str(next(kill_cycle_points))
                proc = _child(_CYCLE_CHILD, [point, child_settings, iso])
                if proc.returncode == -signal.SIGKILL:
                    reason = f"killed by SIGKILL at {point}"
                elif proc.returncode == 0:
                    res = json.loads(proc.stdout.strip().splitlines()[-1])
                    status, reason = res["status"], res["reason"]
                else:
                    reason = f"child exited {proc.returncode}: {proc.stderr.strip()[-300:]}"
            else:
                guard = contextlib.nullcontext()
                if fault == "disk_full":
                    guard = _disk_full("pipeline.atomic", "atomic_write")
                with guard:
                    res = forecast_cycle(settings, now=now)
                status, reason = res.status, res.reason
        except Exception as err:  # accounted for as failed with its error
            reason = f"{type(err).__name__}: {err}"
        if proxy is not None:
            proxy.restore()
        if rival is not None:
            _, err = rival.communicate(timeout=600)
            if rival.returncode != 0:
                report.mismatches.append(f"tick {k}: the rival ingest failed: {err[-300:]}")
        cyc = SoakCycle(k, iso, fault, status, reason, expected, time.perf_counter() - t0)
        report.cycles.append(cyc)
        if progress:
            print(f"{iso} {fault or '-'}: {status} {reason}", file=sys.stderr)
    ingest_archive(live, store, workers=1, progress=False)  # a last catch-up run
    in_store = _store_times(store)
    report.frames_duplicated = int(in_store.duplicated().sum())
    report.frames_arrived = len(arrived)
    report.frames_lost = [t.isoformat() for t in arrived if t not in in_store]
    report.mismatches.extend(_site_mismatches(site, report.cycles))
    report.seconds = time.perf_counter() - t_wall
    return report


def _endpoint_fault(proxy, fault: str | None, rival_args: list[str]):
    """Start the tick's object-storage fault; the rival ingest process for ``rival``."""
    if proxy is None or fault not in OBJECT_STORAGE_FAULTS:
        return None
    if fault == "outage":
        proxy.outage(seconds=OUTAGE_SECONDS)
    elif fault == "slow":
        proxy.slow(SLOW_SECONDS)
    else:
        env = dict(os.environ, PYTHONPATH=_REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cmd = [sys.executable, "-c", _RIVAL_CHILD.format(repo=_REPO), *rival_args]
        return subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    return None


def _site_mismatches(site: Path, cycles: list[SoakCycle]) -> list[str]:
    """What in *site* disagrees with the cycles' outcomes (empty when all agree)."""
    from products.archive import forecast_archive_exists, open_forecast_zarr
    from products.run_files import run_id

    out: list[str] = []
    ok = [pd.Timestamp(c.now) for c in cycles if c.status == "ok"]
    failed = {pd.Timestamp(c.now) for c in cycles if c.status == "failed"}
    try:
        latest = json.loads((site / "latest.json").read_text())
        data_js = (site / "data.js").read_text()
        data = json.loads(data_js.removeprefix("window.NOWCAST_DATA = ").rstrip().rstrip(";"))
        status = json.loads((site / "status.json").read_text())["runs"]
    except (OSError, ValueError, KeyError) as err:
        return [f"site does not open: {type(err).__name__}: {err}"]
    if ok and latest.get("run_id") != run_id(ok[-1]):
        out.append(f"latest.json serves {latest.get('run_id')}, the last ok cycle {run_id(ok[-1])}")
    if data.get("latest") != latest:
        out.append("data.js and latest.json disagree")
    for rel in latest.get("files", []):
        if not (site / rel).is_file():
            out.append(f"latest run file missing: {rel}")
    by_issue = {c.now: c for c in cycles}
    for entry in status:
        cyc = by_issue.get(pd.Timestamp(entry["issue_time"]).tz_localize(None).isoformat())
        if cyc is not None and cyc.status != entry["status"] and cyc.status != "failed":
            out.append(f"status.json says {entry['status']} for {cyc.now}, cycle was {cyc.status}")
    if list(site.glob(".journal-*")) or list(site.glob(".tmp-*")):
        out.append("unfinished site changes left behind")
    archive = site / "forecasts.zarr"
    issues = set()
    if forecast_archive_exists(archive):
        fz = open_forecast_zarr(archive)
        issues = set(pd.DatetimeIndex(fz["issue_time"].values))
        fz.close()
    for t in ok:
        if t not in issues:
            out.append(f"ok cycle {t} missing from forecasts.zarr")
    for t in sorted(issues - set(ok) - failed):
        out.append(f"forecasts.zarr holds {t}, not an ok or failed cycle")
    return out
