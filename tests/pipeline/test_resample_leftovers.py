"""A killed resample's temporary store is removed by the next run or ``nowcast store clean``
(issue 25, case 11)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.resample import resample_store
from pipeline.store import open_store
from pipeline.store_engine import remove_stale_siblings
from tests.flows.test_schedule import _small_store

REPO = Path(__file__).resolve().parents[2]

_KILLED_RESAMPLE = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import pipeline.store_engine as E

def die(*args, **kwargs):  # everything written, the commit not made: then a kill
    os.kill(os.getpid(), signal.SIGKILL)

E.commit_session = die
from pipeline.resample import resample_store
resample_store({src!r}, {dst!r}, size=20, progress=False, motion="lk")
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return _small_store(tmp_path_factory.mktemp("leftovers") / "s.zarr")


def _killed_resample(source, dst) -> Path:
    script = _KILLED_RESAMPLE.format(repo=str(REPO), src=str(source), dst=str(dst))
    proc = subprocess.run([sys.executable, "-c", script], timeout=300, check=False)
    assert proc.returncode == -signal.SIGKILL
    (tmp,) = dst.parent.glob(f".{dst.name}.tmp-*")
    assert any(tmp.iterdir())  # the Icechunk repository of the killed run, never committed
    return tmp


def test_the_next_resample_removes_the_killed_ones_store(tmp_path, source):
    dst = tmp_path / "R20.zarr"
    tmp = _killed_resample(source, dst)
    assert not dst.exists()
    resample_store(source, dst, size=20, progress=False)
    assert not tmp.exists() and not list(tmp_path.glob(".R20.zarr.tmp-*"))
    assert open_store(dst).sizes["y"] == 20


def test_store_clean_removes_it_and_keeps_a_live_writers(tmp_path, source):
    from flows.cli import app

    dst = tmp_path / "R20.zarr"
    tmp = _killed_resample(source, dst)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = tmp_path / f".R20.zarr.tmp-{live.pid}"
        busy.mkdir()
        res = CliRunner().invoke(app, ["store", "clean", str(dst)])
        assert res.exit_code == 0, res.output
        assert res.output.splitlines() == [f"{dst}: removed {tmp.name}"]
        assert not tmp.exists() and busy.exists()
    finally:
        live.kill()
        live.wait()
    res = CliRunner().invoke(app, ["store", "clean", str(dst)])  # now its writer is dead too
    assert res.output.splitlines() == [f"{dst}: removed {busy.name}"]
    res = CliRunner().invoke(app, ["store", "clean", str(dst)])
    assert res.output.splitlines() == [f"{dst}: nothing left behind by killed writers"]


def test_a_store_swapped_out_half_way_is_moved_back(tmp_path, source):
    dst = tmp_path / "R20.zarr"
    resample_store(source, dst, size=20, progress=False)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    old = tmp_path / f".R20.zarr.old-{int(dead.stdout)}"
    dst.rename(old)  # killed between place_store's two renames
    assert remove_stale_siblings(dst) == [f"restored {old.name}"]
    assert not old.exists() and open_store(dst).sizes["x"] == 20
