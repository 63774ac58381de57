"""NetCDF and HDF5 files are read safely from several threads (issue 25, case 12).

netCDF4 and h5py are not thread-safe; the readers of the ``bom``, ``odim`` and ``knmi``
sources run under one process-wide lock (:mod:`pipeline.sources._hdf5`), and a file
declaring a frame over the pixel limit is named and skipped before it is read.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from pipeline.guards import MAX_FRAME_PIXELS
from pipeline.ingest import ingest_archive
from pipeline.sources import get_source
from pipeline.store import open_store
from tests.pipeline import radar_formats as rf

TIMES = pd.date_range("2018-06-16 00:00", periods=40, freq="6min")


def _bom_archive(root, times=TIMES):
    for k, t in enumerate(times):
        values = np.zeros((24, 32), np.float32)
        values[4:10, k % 20 : k % 20 + 6] = 1.5
        rf.write_bom(
            root / f"2_{t:%Y%m%d_%H%M%S}.prcp-cscn.nc", values, t.strftime("%Y-%m-%dT%H:%M:%S")
        )
    return root


def _odim_archive(root, times=TIMES):
    for k, t in enumerate(times):
        raw = np.zeros((20, 30), np.uint8)
        raw[8:12, k % 20 : k % 20 + 6] = 150
        rf.write_odim(root / f"c{k:03d}.h5", raw, t.strftime("%Y%m%d%H%M%S"))
    return root


@pytest.mark.parametrize(("source", "make"), [("bom", _bom_archive), ("odim", _odim_archive)])
def test_many_files_ingest_with_several_threads(tmp_path, source, make):
    root = make(tmp_path / source)
    report = ingest_archive(
        root, tmp_path / "s.zarr", workers=4, progress=False, batch_size=8, source=source
    )
    assert report.frames_written == len(TIMES) and report.corrupt == []
    ds = open_store(tmp_path / "s.zarr")
    assert pd.DatetimeIndex(ds["time"].values).equals(pd.DatetimeIndex(TIMES))
    assert int(ds["reflectivity"].isel(time=3).values.max()) > 0


def test_bom_reads_never_overlap_across_threads(tmp_path, monkeypatch):
    """Eight threads reading 40 files: the library is entered by one thread at a time."""
    import pysteps.io.importers as importers

    root = _bom_archive(tmp_path / "bom")
    real = importers.import_bom_rf3
    active, peak, guard = [0], [0], threading.Lock()

    def probe(path, **kwargs):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.005)  # long enough for another thread to come in if it could
            return real(path, **kwargs)
        finally:
            with guard:
                active[0] -= 1

    monkeypatch.setattr(importers, "import_bom_rf3", probe)
    src = get_source("bom")
    paths = sorted(str(p) for p in root.iterdir())
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda part=paths[i::8]: results.extend(src.read(p) for p in part))
        for i in range(8)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == len(paths) and peak[0] == 1


def test_hdf5_frame_declaring_too_many_pixels_is_skipped(tmp_path):
    import h5py

    root = _odim_archive(tmp_path / "odim", TIMES[:4])
    bomb = root / "c001.h5"
    side = int(MAX_FRAME_PIXELS**0.5) + 1
    with h5py.File(bomb, "a") as f:  # a huge declared dataset, no chunk written: a few kB
        del f["dataset1/data1/data"]
        f["dataset1/data1"].create_dataset(
            "data", shape=(side, side), dtype="u1", chunks=(256, 256), compression="gzip"
        )
    report = ingest_archive(root, tmp_path / "s.zarr", workers=2, progress=False, source="odim")
    assert report.frames_written == 3
    ((path, reason),) = report.corrupt
    assert path == str(bomb)
    assert reason == (
        f"dataset /dataset1/data1/data declares {side} x {side} = {side * side} pixels, more "
        f"than the limit of {MAX_FRAME_PIXELS} pixels of one frame"
    )
