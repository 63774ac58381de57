"""Execute the analyst notebooks on a tiny synthetic run and check what they show.

The notebooks are jupytext percent-format scripts (``notebooks/0*.py``, the only stored
form). Each is read with jupytext into a notebook, run with nbclient in a kernel of this
interpreter (the ``python3`` kernelspec, whose ``python`` jupyter_client resolves to
``sys.executable``), its ``parameters`` cell replaced by the tiny run's paths, and one cell
appended that writes its ``summary`` dict to JSON. The test then compares those figures
with values computed here independently from the stores, the run files or the synthetic
archive's report.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jupytext
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
from tests.notebooks.conftest import SPLIT_FRACTIONS, NotebookRun, NotebookStores, sequent_starts

NB_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = (
    "01_archive_tour.py",
    "02_sampling_schemes.py",
    "03_model_comparison.py",
    "04_continuous_time.py",
)
CELL_TIMEOUT_S = 240


def _parameter_cells(nb: nbformat.NotebookNode) -> list:
    return [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]


def _execute(name: str, params: dict, out_dir: Path) -> tuple[dict, nbformat.NotebookNode]:
    """Run notebook *name* with *params* in place of its parameter cell.

    Returns its ``summary`` dict and the executed notebook.
    """
    nb = jupytext.read(NB_DIR / name)
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
    return summary, nb


def _map_figures_shown(nb: nbformat.NotebookNode) -> int:
    """PNG images shown by the cells that draw with ``products.maps.draw_rain``."""
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code" and "draw_rain(" in cell.source
        for out in cell.outputs
    )


# --------------------------------------------------------------------------- stored sources
def _unversioned(text: str) -> str:
    return re.sub(r"(?m)^#\s+jupytext_version: .*\n", "", text)


def test_the_notebooks_are_the_percent_scripts_only() -> None:
    assert sorted(p.name for p in NB_DIR.glob("0*.py")) == list(NOTEBOOKS)
    assert not (NB_DIR / "make_notebooks.py").exists()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_source_is_a_percent_script_with_one_parameter_cell(name: str) -> None:
    text = (NB_DIR / name).read_text(encoding="utf-8")
    nb = jupytext.reads(text, fmt="py:percent")
    nbformat.validate(nb)
    assert nb.metadata["jupytext"]["text_representation"]["format_name"] == "percent"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert [c.cell_type for c in nb.cells[:2]] == ["markdown", "code"]
    assert nb.cells[0].source.startswith("# 0")  # the title
    (params,) = _parameter_cells(nb)
    assert nb.cells.index(params) == 1  # right after the title
    assert "../demo-run/" in params.source  # defaults: what `make demo` writes
    # saving the notebook from Jupyter (jupytext) writes back exactly this file (up to the
    # jupytext version recorded in the header)
    assert _unversioned(jupytext.writes(nb, fmt="py:percent")) == _unversioned(text)


# --------------------------------------------------------------------------- executed
@pytest.mark.slow
def test_archive_tour(notebook_stores: NotebookStores, tiny_archive_info, tmp_path: Path) -> None:
    s, nb = _execute(
        NOTEBOOKS[0],
        {
            "STORE": str(notebook_stores.store),
            "CADENCE": "6min",
            "TOLERANCE": "2min",
            "SAMPLE_FRAMES": 12,
            "MAP_FRAMES": 2,
            "COASTLINE_RESOLUTION": "110m",
        },
        tmp_path,
    )
    assert _map_figures_shown(nb) == 1  # one figure of the MAP_FRAMES rainiest frames
    # frames per day: every readable frame the synthetic archive wrote
    readable = pd.DatetimeIndex(tiny_archive_info.readable_times)
    expected_days = readable.normalize().value_counts().sort_index()
    assert s["frames_per_day"] == {f"{d:%Y-%m-%d}": int(n) for d, n in expected_days.items()}
    assert s["n_frames"] == len(readable)
    # gaps: those of the resampled store's `observed` flags (a separate path: Zarr write/read)
    resampled = open_store(notebook_stores.resampled)
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
    frames = open_store(notebook_stores.store).sel(time=pd.DatetimeIndex(s["sample_times"])).load()
    dbz = frames["reflectivity"].to_numpy()
    valid = frames["mask"].to_numpy() & np.isfinite(dbz)
    expected = float((dbz[valid] >= rainrate_to_dbz(0.5)).mean())
    assert s["exceedance"]["0.5"] == pytest.approx(expected, rel=1e-9)
    assert 0.0 < expected < 1.0


@pytest.mark.slow
def test_sampling_schemes(notebook_stores: NotebookStores, tmp_path: Path) -> None:
    s, _ = _execute(
        NOTEBOOKS[1],
        {
            "STORE": str(notebook_stores.resampled),
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
    observed = open_store(notebook_stores.resampled)["observed"].to_series()
    expected = sequent_starts(observed, seq_len=25, stride=5)
    assert s["hko7_clip_starts"] == [str(t) for t in expected]
    per_day = pd.DatetimeIndex(expected).normalize().value_counts()
    days = observed.index.normalize().unique()
    assert s["clips_per_day"] == {f"{d:%Y-%m-%d}": int(per_day.get(d, 0)) for d in days}
    assert len(expected) > 0


@pytest.mark.slow
def test_model_comparison(notebook_run: NotebookRun, tmp_path: Path) -> None:
    s, nb = _execute(
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
    assert _map_figures_shown(nb) == 1  # one figure: observation and forecasts by lead time
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
    s, nb = _execute(
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
    assert _map_figures_shown(nb) == 2  # off-grid leads, and the filled gap
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
