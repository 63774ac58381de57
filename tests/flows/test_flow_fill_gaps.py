"""The resample flow fills gaps like ``nowcast resample --fill-gaps`` (one commit)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.store import open_store, store_log
from tests.pipeline.test_resample import make_source_store


def test_resample_flow_fill_gaps(tmp_path):
    from flows.resample import resample_flow

    day = pd.Timestamp("2015-06-01")
    slots = [s for s in range(240) if s not in (30, 31, 32, 90, 91, 92, 93)]
    times = [day + pd.Timedelta(minutes=6 * s) for s in slots]
    pixels = np.stack([np.full((48, 48), 60 + s % 100, np.uint8) for s in slots])
    src = make_source_store(tmp_path / "src", times, pixels)
    dst = tmp_path / "r.zarr"
    summary = resample_flow(str(src), str(dst), size=48, fill_gaps=3, interpolation="linear")
    assert summary["fill_gaps"]["n_slots_filled"] == 3
    ds = open_store(dst)
    assert np.flatnonzero(ds["interpolated"].values).tolist() == [30, 31, 32]
    assert not ds["observed"].values[30:33].any()
    messages = [m for _, _, m in store_log(dst)]  # the fill is in the resample's commit
    assert len(messages) == 2 and messages[0].startswith("resample src: 233 of 240 slots")
