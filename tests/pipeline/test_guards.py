"""Sizes bounded before memory is (issue 25, cases 6 and 10): estimates and frame limits."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pandas as pd
import pytest

from pipeline import hko7
from pipeline.guards import (
    MAX_FRAME_PIXELS,
    SizeLimitError,
    check_declared_shape,
    check_fits,
    ensemble_bytes,
    format_bytes,
)
from pipeline.ingest import ingest_archive
from pipeline.store import open_store


def test_ensemble_estimate_adds_up_members_leads_and_percentiles():
    # field 2 x 4 x 5 = 40; streamed 40 * (4 + 4 + 3 * (4 + 4 + 8)) = 2240; kept members
    # 2 copies * 10 * 40 * 4 = 3200; 2 percentiles 320; binomial table 2 * 11 * 201 * 8
    got = ensemble_bytes(
        members=10, steps=2, height=4, width=5, n_thresholds=3, n_percentiles=2, debiased=True
    )
    assert got == 2240 + 3200 + 320 + 35376
    assert ensemble_bytes(members=None, steps=3, height=10, width=10) == 3 * 100 * 16


def test_check_fits_names_the_estimate_and_the_memory():
    check_fits("a job", 800, available=1000)  # 80 % of 1000 is usable
    with pytest.raises(SizeLimitError, match=r"^a job needs about 801 B of memory \(estimate\), "):
        check_fits("a job", 801, available=1000)
    assert format_bytes(3.216e12) == "3.22 TB" and format_bytes(184e6) == "184 MB"


def test_declared_shape_limit():
    assert check_declared_shape((480, 480)) is None
    assert check_declared_shape((20000, 20000)) == (
        f"declares 20000 x 20000 = 400000000 pixels, more than the limit of "
        f"{MAX_FRAME_PIXELS} pixels of one frame"
    )


def _bomb_png(path, side=20000):
    """An 8-bit greyscale PNG of side x side zeros (about 400 kB on disk)."""

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_frame_is_skipped_and_the_rest_ingested(tmp_path):
    times = pd.date_range("2015-06-01 12:00", periods=6, freq="6min")
    root = tmp_path / "A"
    for k, t in enumerate(times):
        path = hko7.frame_path(root, t)
        path.parent.mkdir(parents=True, exist_ok=True)
        hko7.write_frame(path, np.full((480, 480), 10 * k, np.uint8))
    bomb = hko7.frame_path(root, times[2])
    _bomb_png(bomb)
    with pytest.raises(hko7.FrameReadError, match="over the reader's pixel limit"):
        hko7.read_frame(bomb)
    report = ingest_archive(root, tmp_path / "s.zarr", workers=2, progress=False)
    assert report.frames_written == 5
    ((path, reason),) = report.corrupt
    assert path == str(bomb) and reason == (
        "over the reader's pixel limit: declares 20000 x 20000 = 400000000 pixels, more than "
        f"the limit of {MAX_FRAME_PIXELS} pixels of one frame"
    )
    stored = pd.DatetimeIndex(open_store(tmp_path / "s.zarr")["time"].values)
    assert stored.equals(times.delete(2))


def test_zlib_mask_bomb_is_refused_without_inflating_it(tmp_path):
    path = tmp_path / "m.mask"
    path.write_bytes(zlib.compress(b"\x01" * (50 * 480 * 480), 9))  # 50 masks' worth
    with pytest.raises(hko7.FrameReadError, match="mask holds more than 230400 bytes"):
        hko7.read_mask(path)
