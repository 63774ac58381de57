"""The Prefect ingest flow with ``source="odim"``: one task per day, the same store as the library."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.pipeline import radar_formats as rf


@pytest.mark.slow
def test_ingest_flow_odim_two_days_equals_library(tmp_path, prefect_server):
    from flows.ingest import archive_days, ingest_flow, make_task_runner
    from pipeline.ingest import ingest_archive
    from pipeline.store import open_store

    root = tmp_path / "odim"
    times = pd.to_datetime(["2023-06-01 23:50", "2023-06-02 00:00", "2023-06-02 00:10"])
    for k, t in enumerate(times):
        raw = np.zeros((12, 16), np.uint8)
        raw[:1] = 255
        raw[5, 3 + k] = 150
        rf.write_odim(root / f"{k}.h5", raw, t.strftime("%Y%m%d%H%M%S"))
    assert archive_days(root, source="odim") == ["2023-06-01", "2023-06-02"]
    runner = make_task_runner(n_workers=2, processes=False)
    flow_store = tmp_path / "flow.zarr"
    result = ingest_flow.with_options(task_runner=runner)(str(root), str(flow_store), source="odim")
    assert result["frames_written"] == 3 and result["corrupt"] == []
    lib_store = tmp_path / "lib.zarr"
    ingest_archive(root, lib_store, source="odim", progress=False)
    a, b = open_store(flow_store), open_store(lib_store)
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert float(a["reflectivity"][2, 5, 5]) == pytest.approx(43.0, abs=0.2)
