"""Sizes the machine cannot hold are refused in one line before allocation (issue 25, case 6)."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.flows.test_schedule import _small_store


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """40 x 40 store, 8 frames every 6 min from 2015-06-01 12:00."""
    return _small_store(tmp_path_factory.mktemp("cli_bounds") / "s.zarr")


def test_a_billion_members_are_refused_at_once(tmp_path, small_store):
    args = ["forecast", "--store", small_store, "--baseline", "persistence"]
    args += ["--members", "1000000000", "--leads", "6", "--out", tmp_path / "e.nc"]
    t0 = time.monotonic()
    res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    assert time.monotonic() - t0 < 30
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output
    assert lines[0].startswith(
        "error: an ensemble of 1000000000 members, 1 step on 40 x 40 pixels by persistence "
        "needs about 3.22 TB of memory (estimate), more than the "
    )
    assert not (tmp_path / "e.nc").exists()


def test_evaluate_refuses_members_that_cannot_fit(tmp_path, small_store):
    args = ["evaluate", "--baselines", "persistence", "--data", small_store]
    args += ["--members", "1000000000", "--out", tmp_path / "e"]
    res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output
    assert lines[0].startswith("error: evaluating ensembles of 1000000000 members, ")
    assert "pixels, batches of " in lines[0] and "of memory (estimate)" in lines[0]
