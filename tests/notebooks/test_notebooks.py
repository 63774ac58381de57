"""Execute the analyst notebooks on a tiny synthetic run and check what they show.

Each notebook is run with nbclient in a kernel of this interpreter (the ``python3``
kernelspec, whose ``python`` jupyter_client resolves to ``sys.executable``), its
``parameters`` cell replaced by the tiny run's paths, and one cell appended that writes its
``summary`` dict to JSON. The test then compares those figures with values computed here
independently from the stores, the run files or the synthetic archive's report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from pipeline.resample import gap_table
from pipeline.store import open_store
from pipeline.units import rainrate_to_dbz
from tests.notebooks.conftest import SPLIT_FRACTIONS, NotebookRun

NB_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = (
    "01_archive_tour.ipynb",
    "02_sampling_schemes.ipynb",
    "03_model_comparison.ipynb",
    "04_continuous_time.ipynb",
)
CELL_TIMEOUT_S = 240


def _parameter_cells(nb: nbformat.NotebookNode) -> list:
    return [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]


def _execute(name: str, params: dict, out_dir: Path) -> dict:
    """Run notebook *name* with *params* in place of its parameter cell; return its summary."""
    nb = nbformat.read(NB_DIR / name, as_version=4)
    (cell,) = _parameter_cells(nb)
    cell.source = "\n".join(f"{key} = {value!r}" for key, value in params.items())
    out = out_dir / f"{Path(name).stem}_summary.json"
    nb.cells.append(
        new_code_cell(
            "import json as _json, sys as _sys\n"
            f"with open({str(out)!r}, 'w') as _f:\n"
            "    _json.dump({**summary, '_python': _sys.executable}, _f, default=str)"
        )
    )
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(out_dir)}},
    )
    client.execute()
    summary = json.loads(out.read_text(encoding="utf-8"))
    assert Path(summary.pop("_python")).resolve() == Path(sys.executable).resolve()
    return summary


# --------------------------------------------------------------------------- stored files
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_clean_with_one_parameter_cell(name: str) -> None:
    nb = nbformat.read(NB_DIR / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    (params,) = _parameter_cells(nb)
    assert nb.cells.index(params) == 1  # right after the title
    assert "../demo-run/" in params.source  # defaults: what `make demo` writes


def test_generator_reproduces_the_stored_notebooks(tmp_path: Path) -> None:
    sys.path.insert(0, str(NB_DIR))
    try:
        import make_notebooks
    finally:
        sys.path.remove(str(NB_DIR))
    for name in NOTEBOOKS:
        built = nbformat.writes(make_notebooks.build(name))
        assert built.rstrip("\n") == (NB_DIR / name).read_text(encoding="utf-8").rstrip("\n"), name


# --------------------------------------------------------------------------- executed
@pytest.mark.slow
def test_archive_tour(notebook_run: NotebookRun, tiny_archive_info, tmp_path: Path) -> None:
    s = _execute(
        NOTEBOOKS[0],
        {
            "STORE": str(notebook_run.store),
            "CADENCE": "6min",
            "TOLERANCE": "2min",
            "SAMPLE_FRAMES": 12,
            "MAP_FRAMES": 2,
            "COASTLINE_RESOLUTION": "110m",
        },
        tmp_path,
    )
    # frames per day: every readable frame the synthetic archive wrote
    readable = pd.DatetimeIndex(tiny_archive_info.readable_times)
    expected_days = readable.normalize().value_counts().sort_index()
    assert s["frames_per_day"] == {f"{d:%Y-%m-%d}": int(n) for d, n in expected_days.items()}
    assert s["n_frames"] == len(readable)
    # gaps: those of the resampled store's `observed` flags (a separate path: Zarr write/read)
    resampled = open_store(notebook_run.resampled)
    observed = resampled["observed"].to_series()
    expected_gaps = gap_table(observed)
    assert s["gaps"] == [
        [str(r.start), str(r.end), int(r.length)] for r in expected_gaps.itertuples()
    ]
    assert s["n_observed_slots"] == int(observed.sum())
    # every planted run of 3-5 missing frames lies inside one of the gaps shown
    spans = [(pd.Timestamp(a), pd.Timestamp(b)) for a, b, _ in s["gaps"]]
    for first, last in tiny_archive_info.missing_runs:
        assert any(a <= first and last <= b for a, b in spans), (first, last)
    # exceedance at 0.5 mm/h recomputed in dBZ on the same frames
    frames = open_store(notebook_run.store).sel(time=pd.DatetimeIndex(s["sample_times"])).load()
    dbz = frames["reflectivity"].to_numpy()
    valid = frames["mask"].to_numpy() & np.isfinite(dbz)
    expected = float((dbz[valid] >= rainrate_to_dbz(0.5)).mean())
    assert s["exceedance"]["0.5"] == pytest.approx(expected, rel=1e-9)
    assert 0.0 < expected < 1.0


def _sequent_starts(observed: pd.Series, seq_len: int, stride: int) -> list[pd.Timestamp]:
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


@pytest.mark.slow
def test_sampling_schemes(notebook_run: NotebookRun, tmp_path: Path) -> None:
    s = _execute(
        NOTEBOOKS[1],
        {
            "STORE": str(notebook_run.resampled),
            "N_IN": 10,
            "N_OUT": 10,
            "N_SHOW": 2,
            "SEED": 0,
            "STRIDE": 5,
            "HKO7_IN": 5,
            "HKO7_OUT": 20,
        },
        tmp_path,
    )
    # thesis Table 5.3 with 10 in / 10 out
    assert s["set_sizes"] == {
        "regular": 1,
        "irregular_input": 100,
        "irregular_target": 100,
        "irregular": 100,
    }
    assert s["spans"] == {
        "regular": 20,
        "irregular_input": 30,
        "irregular_target": 30,
        "irregular": 30,
    }
    t_in, t_out = s["sample_times"]["regular"][0]
    assert t_in == [float(v) for v in range(-54, 1, 6)]
    assert t_out == [float(v) for v in range(6, 61, 6)]
    observed = open_store(notebook_run.resampled)["observed"].to_series()
    expected = _sequent_starts(observed, seq_len=25, stride=5)
    assert s["hko7_clip_starts"] == [str(t) for t in expected]
    per_day = pd.DatetimeIndex(expected).normalize().value_counts()
    days = observed.index.normalize().unique()
    assert s["clips_per_day"] == {f"{d:%Y-%m-%d}": int(per_day.get(d, 0)) for d in days}
    assert len(expected) > 0


@pytest.mark.slow
def test_model_comparison(notebook_run: NotebookRun, tmp_path: Path) -> None:
    s = _execute(
        NOTEBOOKS[2],
        {
            "RUN_DIRS": [str(p) for p in notebook_run.run_dirs],
            "EVAL_NAME": "test_regular",
            "STORE": str(notebook_run.resampled),
            "SPLIT": "test",
            "SPLIT_FRACTIONS": SPLIT_FRACTIONS,
            "CASE_INDEX": None,
            "CASE_SEARCH": 3,
            "CASE_LEADS": 2,
            "COASTLINE_RESOLUTION": "110m",
        },
        tmp_path,
    )
    # both runs' models, and each baseline once
    assert s["predictors"] == ["trajgru_ode", "persistence", "pysteps", "trajgru"]
    assert s["case_forecasts"] == ["persistence", "pysteps", "trajgru", "trajgru_ode"]
    ode_file = notebook_run.ode_run / "eval" / "test_regular" / "results.nc"
    with xr.open_dataset(ode_file) as res:
        csi = res["CSI"].sel(predictor="pysteps", threshold=0.5).to_numpy()
    assert s["mean_csi"]["pysteps"]["0.5"] == pytest.approx(float(np.nanmean(csi)), rel=1e-9)
    assert s["lead_times"] == [6.0, 12.0, 18.0, 24.0, 30.0]  # `small`: 5 leads of 6 min
    # the case's observed maxima are the store's frames at issue time + lead
    store = open_store(notebook_run.resampled)
    issue = pd.Timestamp(s["case_time"])
    for lead, got in zip(s["case_leads"], s["case_obs_max_mmh"], strict=True):
        frame = store.sel(time=issue + pd.Timedelta(minutes=lead)).load()
        valid = frame["mask"].to_numpy() & np.isfinite(frame["reflectivity"].to_numpy())
        if not valid.any():
            assert got is None
            continue
        dbz_max = float(frame["reflectivity"].to_numpy()[valid].max())
        expected = 10 ** ((dbz_max - 10 * np.log10(58.53)) / (10 * 1.56))  # HKO-7 Z-R
        assert got == pytest.approx(expected, rel=1e-3)


def _p255(frame: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    dbz = frame["reflectivity"].to_numpy()
    norm = np.where(np.isfinite(dbz), (dbz + 10.0) / 70.0, 0.0)
    return norm, frame["mask"].to_numpy().astype(bool)


@pytest.mark.slow
def test_continuous_time(notebook_run: NotebookRun, tmp_path: Path) -> None:
    s = _execute(
        NOTEBOOKS[3],
        {
            "RUN_DIR": str(notebook_run.ode_run),
            "STORE": str(notebook_run.resampled),
            "SPLIT": "test",
            "SPLIT_FRACTIONS": SPLIT_FRACTIONS,
            "CASE_INDEX": None,
            "QUERY_STEP_MINUTES": 2.0,
            "GAP_FRAMES": 1,
            "COASTLINE_RESOLUTION": "110m",
        },
        tmp_path,
    )
    assert (s["model_name"], s["trained"]) == ("trajgru_ode", True)
    assert s["query_minutes"] == [float(v) for v in range(2, 31, 2)]  # off the 6-min grid
    assert s["grid_minutes"] == [6.0, 12.0, 18.0, 24.0, 30.0]
    assert s["grid_consistency_max_abs"] < 1e-5
    # linear interpolation and persistence fills recomputed from the store
    store = open_store(notebook_run.resampled)
    (gap,) = (pd.Timestamp(t) for t in s["gap_times"])
    assert gap == pd.Timestamp(s["case_time"]) + pd.Timedelta("6min")
    step = pd.Timedelta("6min")
    truth, valid = _p255(store.sel(time=gap).load())
    prev, _ = _p255(store.sel(time=gap - step).load())
    nxt, _ = _p255(store.sel(time=gap + step).load())
    assert valid.any()
    linear = float((((prev + nxt) / 2 - truth) ** 2)[valid].mean())
    persistence = float(((prev - truth) ** 2)[valid].mean())
    assert s["fill_mse"]["linear"] == pytest.approx(linear, rel=1e-4)
    assert s["fill_mse"]["persistence"] == pytest.approx(persistence, rel=1e-4)
    assert all(np.isfinite(v) for v in s["fill_mse"].values())
