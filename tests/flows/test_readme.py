"""The README's ``nowcast`` command block, run as written, in order, then ``make notebooks``.

The block under "The `nowcast` command" in README.md is read from the file (so a command
changed there is the command tested) and each line starting with ``nowcast`` is run with the
installed ``nowcast`` script in one work directory, where its placeholder paths (``ARCHIVE``,
``STORE.zarr``, ``OUT.zarr``, ``RUN``, ``SITE``, ...) are plain relative paths; the only
changes are optional parts in brackets (left out) and flags appended to keep the run small
(:data:`SMALL`: 8 synthetic days of 4 hours, one training step, two scored sequences, a
replay of 25 minutes at full speed). Commands that do not end (servers) or that are a
pattern rather than a command are listed in :data:`NOT_RUN` with the reason; any other
command of the block is run, so a README command that stops working fails here.

The work directory is then laid out as ``make demo``'s (``demo-run/radar.zarr``,
``radar80.zarr``, ``run``) beside a copy of the four notebooks, and the Makefile's
``notebooks`` recipe renders all four to HTML, as the README says to do after ``make demo``.
"""

from __future__ import annotations

import html
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.prefix) / "bin"

SMALL: dict[str, list[str]] = {
    "synth": ["--hours", "4", "--first-hour", "8"],
    "ingest": ["--no-progress"],
    "resample": ["--no-progress"],
    "train": ["--epochs", "1", "--iters-per-epoch", "1", "--batch-size", "2"]
    + ["--val-samples", "1", "--no-progress"],
    "evaluate": ["--max-samples", "2", "--no-progress"],
    "replay": ["--speed", "0", "--start", "2015-06-08T11:30", "--end", "2015-06-08T11:54"]
    + ["--every", "4"],
}
"""Flags appended to a README command of that name (sizes only; click keeps the last value)."""

NOT_RUN: dict[str, str] = {
    "dashboard": "--serve starts a server that runs until stopped; the files it serves are "
    "checked after publish",
    "serve": "scheduled forecasts run until stopped (tests/flows/test_schedule.py)",
    "flow": "a pattern (ingest|resample|...), not one command (tests/flows/test_flows.py)",
    "demo": "the whole pipeline for about 7 minutes (benchmarks/demo.py)",
}
"""README commands not run here, and why."""


def readme_commands() -> list[str]:
    """The ``nowcast`` lines of the README's command block, comments and ``[...]`` removed."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## The `nowcast` command", 1)[1]
    block = section.split("```", 2)[1]
    commands = []
    for line in block.splitlines():
        if not line.startswith("nowcast "):
            continue  # a continuation comment
        line = line.split(" #", 1)[0]
        line = re.sub(r"\s*\[[^\]]*\]", "", line)  # optional parts
        commands.append(" ".join(line.split()))
    return commands


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["COLUMNS"] = "200"
    for var, sub in (
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTER_CONFIG_DIR", "config"),
        ("IPYTHONDIR", "ipython"),
    ):
        env[var] = str(tmp / "jupyter" / sub)
    return env


def _catalogue_pickle(path: Path) -> None:
    """A published-format HKO-7 catalogue (pandas 0.19 pickle) of three frame times."""
    import pandas as pd

    from tests.pipeline.test_hko7 import _old_catalogue_pickle

    times = pd.date_range("2015-06-01 08:00", periods=3, freq="6min")
    path.write_bytes(_old_catalogue_pickle(times))


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory) -> dict:
    """Run the README's commands in one work directory; their outputs by command."""
    work = tmp_path_factory.mktemp("readme")
    _catalogue_pickle(work / "hko7_rainy_test.pkl")
    env = _env(work)
    ran, skipped, seconds = [], {}, {}
    for command in readme_commands():
        args = shlex.split(command)
        name = args[1]
        if name in NOT_RUN:
            skipped[command] = NOT_RUN[name]
            continue
        argv = [str(BIN / "nowcast"), *args[1:], *SMALL.get(name, [])]
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        seconds[command] = round(time.perf_counter() - t0, 1)
        assert proc.returncode == 0, (
            f"README command failed (exit {proc.returncode}): {command}\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
        ran.append((command, proc.stdout, proc.stderr))
    (work / "seconds.json").write_text(json.dumps(seconds, indent=1))  # where the time goes
    return {"work": work, "ran": ran, "skipped": skipped, "env": env}


@pytest.mark.slow
def test_every_readme_command_runs_in_order(walkthrough):
    commands = [c for c, _, _ in walkthrough["ran"]]
    names = [shlex.split(c)[1] for c in commands]
    # the block's chain, in order: archive -> store -> resampled store -> run -> scores ->
    # forecasts -> a site
    for before, after in [
        ("synth", "ingest"),
        ("ingest", "resample"),
        ("resample", "train"),
        ("train", "evaluate"),
        ("calibrate", "forecast"),
        ("forecast", "publish"),
        ("publish", "replay"),
    ]:
        assert names.index(before) < names.index(after), (before, after)
    assert {shlex.split(c)[1] for c in walkthrough["skipped"]} == set(NOT_RUN)
    assert len(commands) >= 15
    work = walkthrough["work"]
    rows = (work / "OUT.csv").read_text().splitlines()
    assert len(rows) == 4  # header + the three catalogue times


@pytest.mark.slow
def test_the_runs_forecast_publishes_into_a_site_with_its_dashboard(walkthrough):
    import xarray as xr

    work = walkthrough["work"]
    site = work / "SITE"
    latest = json.loads((site / "latest.json").read_text())
    run_dir = site / latest["path"]
    with xr.open_dataset(work / "forecast.nc", decode_timedelta=False) as fc:
        assert fc.attrs["model"] == "trajgru_ode"
        assert fc["lead_time"].values.tolist() == list(range(6, 61, 6))
        issue = str(fc["issue_time"].values)[:16]
    assert latest["issue_time"].startswith(issue)
    with xr.open_dataset(run_dir / "forecast.nc", decode_timedelta=False) as published:
        assert published.attrs["model"] == "trajgru_ode"
        assert "motion" in published
    assert (run_dir / "maps" / "fc_060.png").is_file()
    for name in ("index.html", "data.js"):
        assert (site / name).is_file(), name
    assert "trajgru_ode" in (site / "data.js").read_text()
    # the replay fed a new store and published its own site
    assert (work / "LIVE.zarr").is_dir()
    assert json.loads((work / "LIVE_SITE" / "latest.json").read_text())["issue_time"] == (
        "2015-06-08T11:54:00Z"
    )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_notebooks_renders_all_four_after_the_readme_commands(walkthrough, tmp_path):
    """``make notebooks`` (the Makefile's recipe) on the README's work directory."""
    work = walkthrough["work"]
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    for src in sorted((REPO / "notebooks").glob("0*.py")):
        shutil.copy(src, root / "notebooks")
    (root / "demo-run").mkdir()
    for name, target in (
        ("radar.zarr", "STORE.zarr"),
        ("radar80.zarr", "OUT.zarr"),
        ("run", "RUN"),
    ):
        (root / "demo-run" / name).symlink_to(work / target)
    proc = subprocess.run(
        ["make", "-f", str(REPO / "Makefile"), "-o", str(BIN / ".installed"), "notebooks"]
        + [f"VENV={sys.prefix}", "NOTEBOOK_HTML=html"],
        cwd=root,
        env=walkthrough["env"],
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    pages = sorted(p.name for p in (root / "html").glob("*.html"))
    assert pages == [
        "01_archive_tour.html",
        "02_sampling_schemes.html",
        "03_model_comparison.html",
        "04_continuous_time.html",
    ]
    for page in pages:  # exit 0: no notebook raised (the recipe names a failed one)
        text = html.unescape((root / "html" / page).read_text(encoding="utf-8"))
        assert "Traceback" not in text and "FAILED" not in proc.stdout, page
    ct = html.unescape((root / "html" / "04_continuous_time.html").read_text(encoding="utf-8"))
    assert "'trained': True" in ct and "'grid_tolerance': 0.00098" in ct
