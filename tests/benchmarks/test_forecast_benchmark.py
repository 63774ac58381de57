"""benchmarks/forecast.py runs end to end and prints one JSON line of the promised keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "forecast.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)


def _moving_square_store(path: Path, size: int = 64, n: int = 8) -> Path:
    """A resampled-schema store of a square moving 2 px a frame to the east."""
    from pipeline.schema import resampled_dataset

    times = pd.date_range("2015-06-01 12:00", periods=n, freq="6min")
    refl = np.full((n, size, size), -10.0, np.float32)
    for k in range(n):
        refl[k, 20:36, 8 + 2 * k : 24 + 2 * k] = 40.0
    ds = resampled_dataset(times, refl)
    ds.to_zarr(path, mode="w", consolidated=False)
    return path


def test_models_and_ratios_on_a_given_store_and_unknown_configs_skipped(tmp_path):
    store = _moving_square_store(tmp_path / "s.zarr")
    args = ["--store", str(store), "--repeat", "1", "--configs", "nosuch,small"]
    res = _run(*args, "--models", "convgru,trajgru_ode")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1, res.stdout  # nothing else on stdout (not even pysteps' banner)
    figures = json.loads(lines[0])
    assert (figures["size"], figures["leads"]) == (64, 20)
    assert figures["issue_time"] == "2015-06-01T12:42"  # the newest full window
    assert "configuration 'nosuch' skipped" in res.stderr
    listed = ["convgru", "trajgru_ode"]
    assert not any(k.startswith("vidode") for k in figures)  # not asked for
    for key in ["persistence", "pysteps"] + [f"{m}_small" for m in listed]:
        assert figures[f"{key}_s_64"] > 0, key
    for m in listed:
        ratio = figures[f"ratio_{m}_small_to_pysteps_64"]
        assert ratio == pytest.approx(figures[f"{m}_small_s_64"] / figures["pysteps_s_64"], 0.01)
    assert "ratio_persistence_to_pysteps_64" not in figures
    assert figures["peak_rss_mb"] > 0


@pytest.mark.slow
def test_quick_synthetic_run_at_480():
    res = _run("--quick", "--repeat", "1", "--configs", "nosuch_lagrangian")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1, res.stdout
    figures = json.loads(lines[0])
    assert (figures["size"], figures["leads"]) == (480, 20)
    assert figures["persistence_s_480"] > 0 and figures["pysteps_s_480"] > 0
    assert figures["persistence_s_480"] < figures["pysteps_s_480"]
    assert "configuration 'nosuch_lagrangian' skipped" in res.stderr
