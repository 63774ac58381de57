"""A tiny synthetic run shaped like ``make demo``'s work directory, for the notebook tests.

Built once per session from the shared ``tiny_archive`` (3 days of 5 hours, see
``tests/conftest.py``)::

    WORKDIR/
      radar.zarr          ingest store, 480 x 480 (pipeline.ingest.ingest_archive)
      radar80.zarr        resampled store, 80 x 80, 6-minute grid (pipeline.resample)
      run/                trajgru_ode, ``small`` config, trained for one step (nowcast.training)
      run/eval/test_regular/results.nc      model + persistence + pysteps (nowcast.evaluate)
      run_trajgru/        trajgru, same recipe
      run_trajgru/eval/test_regular/results.nc   model only

The three days are split one per split (train / valid / test) with ``SPLIT_FRACTIONS``;
the notebooks are given the same fractions through their parameter cell.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pytest

SPLIT_FRACTIONS = (0.34, 0.33, 0.33)
"""Train / valid / test fractions of the store's days: one day each for the tiny archive."""

EVAL_SAMPLES = 4
"""Test sequences scored per predictor in the fixture's evaluations."""


def sequent_starts(observed: pd.Series, seq_len: int, stride: int) -> list[pd.Timestamp]:
    """HKO-7 `sequent` iteration written out plainly (docs/facts.md section 3)."""
    step = pd.Timedelta("6min")
    existing = pd.DatetimeIndex(observed.index[observed.to_numpy()])
    present = set(existing)
    starts, t = [], existing[0]
    while t <= existing[-1]:
        flags = [t + k * step in present for k in range(seq_len)]
        run = longest = 0
        for f in flags:
            run = 0 if f else run + 1
            longest = max(longest, run)
        if longest <= 2 and any(flags):
            starts.append(t)
            t = t + stride * step
        else:
            t = existing[existing > t][0] if (existing > t).any() else existing[-1] + step
    return starts


@dataclass(frozen=True)
class NotebookRun:
    """Paths of the tiny run the notebooks are executed on."""

    workdir: Path
    archive: Path
    store: Path
    resampled: Path
    ode_run: Path
    trajgru_run: Path

    @property
    def run_dirs(self) -> list[Path]:
        """Both run directories, ODE first."""
        return [self.ode_run, self.trajgru_run]


def _train(model: str, data: Path, out: Path) -> Path:
    from nowcast.training import TrainOptions, train

    options = TrainOptions(
        epochs=1,
        iters_per_epoch=1,
        batch_size=2,
        val_samples=1,
        seed=0,
        split_fractions=SPLIT_FRACTIONS,
        progress=False,
    )
    train(model, "small", data, out, options=options)
    return out


@dataclass(frozen=True)
class NotebookStores:
    """The ingest and resampled stores of the tiny archive (no runs)."""

    workdir: Path
    archive: Path
    store: Path
    resampled: Path


@pytest.fixture(scope="session")
def notebook_stores(tiny_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> NotebookStores:
    """Ingest and resample the tiny archive (a few seconds of CPU)."""
    from pipeline.ingest import ingest_archive
    from pipeline.resample import resample_store

    workdir = tmp_path_factory.mktemp("notebook_run")
    store = workdir / "radar.zarr"
    resampled = workdir / "radar80.zarr"
    ingest_archive(tiny_archive, store, workers=1, progress=False)
    resample_store(store, resampled, size=80, progress=False)
    return NotebookStores(workdir, Path(tiny_archive), store, resampled)


@pytest.fixture(scope="session")
def notebook_run(notebook_stores: NotebookStores) -> NotebookRun:
    """Train two tiny models on the stores and evaluate them (about 30 s of CPU)."""
    from nowcast.evaluate import EvaluateOptions, evaluate_run

    workdir, resampled = notebook_stores.workdir, notebook_stores.resampled
    ode_run = _train("trajgru_ode", resampled, workdir / "run")
    trajgru_run = _train("trajgru", resampled, workdir / "run_trajgru")
    options = EvaluateOptions(
        split="test",
        scheme="regular",
        split_fractions=SPLIT_FRACTIONS,
        max_samples=EVAL_SAMPLES,
        progress=False,
    )
    evaluate_run(ode_run, resampled, replace(options, baselines=("persistence", "pysteps")))
    evaluate_run(trajgru_run, resampled, options)
    return NotebookRun(
        workdir=workdir,
        archive=notebook_stores.archive,
        store=notebook_stores.store,
        resampled=resampled,
        ode_run=ode_run,
        trajgru_run=trajgru_run,
    )
