"""Archive entries passed over by ingest are reported: impossible names, day folders, links."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline import hko7
from pipeline.ingest import ingest_archive
from pipeline.units import pixel_to_dbz

GOOD = pd.DatetimeIndex(["2015-06-01 00:00", "2015-06-01 00:06", "2015-06-01 00:12"]).as_unit("ns")
LINKED_FILE = pd.Timestamp("2015-06-01 00:18")  # -> a file outside the archive
INSIDE_LINK = pd.Timestamp("2015-06-01 00:24")  # -> a file inside the archive
LINKED_DAY = pd.Timestamp("2015-06-02 00:00")  # its day folder -> outside the archive
OUTSIDE = "symbolic link to {target}, outside the archive root {root}"
NOT_FOLLOWED = " (not followed; --follow-links to follow)"


def _pixels(k: int) -> np.ndarray:
    px = np.zeros(hko7.FRAME_SHAPE, np.uint8)
    px[100:200, 50 + 10 * k : 150 + 10 * k] = 120
    return px


@pytest.fixture
def odd_archive(tmp_path):
    """Three good frames; an hour-25 name; a 2015/06/31 folder; links in and out of the root."""
    root = tmp_path / "archive"
    for k, t in enumerate(GOOD):
        hko7.write_frame(hko7.frame_path(root, t), _pixels(k))
    day1 = hko7.frame_path(root, GOOD[0]).parent
    hour25 = day1 / "RAD150601250000.png"
    hko7.write_frame(hour25, _pixels(5))
    day31 = day1.parent / "31"
    hko7.write_frame(day31 / "RAD150631000000.png", _pixels(6))
    outside = tmp_path / "outside"
    hko7.write_frame(outside / "frame.png", _pixels(7))
    hko7.write_frame(outside / "day" / "RAD150602000000.png", _pixels(8))
    link_file = hko7.frame_path(root, LINKED_FILE)
    os.symlink(outside / "frame.png", link_file)
    spare = root / "spare" / "frame.png"
    hko7.write_frame(spare, _pixels(9))
    os.symlink(spare, hko7.frame_path(root, INSIDE_LINK))
    link_day = day1.parent / "02"
    os.symlink(outside / "day", link_day)
    real = os.path.realpath(root)
    return {
        "root": root,
        "skipped": sorted(
            [
                (str(hour25), "impossible date or time in the frame name (RADyymmddHHMM00.png)"),
                (str(day31), "day folder 2015/06/31 is not a date (expected YYYY/MM/DD)"),
                (
                    str(link_file),
                    OUTSIDE.format(target=os.path.realpath(outside / "frame.png"), root=real)
                    + NOT_FOLLOWED,
                ),
                (
                    str(link_day),
                    OUTSIDE.format(target=os.path.realpath(outside / "day"), root=real)
                    + NOT_FOLLOWED,
                ),
            ]
        ),
    }


def test_discover_reports_what_it_passes_over(odd_archive):
    skipped: list = []
    df = hko7.discover_frames(odd_archive["root"], skipped=skipped)
    pd.testing.assert_index_equal(
        df.index, GOOD.append(pd.DatetimeIndex([INSIDE_LINK]).as_unit("ns")), check_names=False
    )
    assert sorted(skipped) == odd_archive["skipped"]


def test_follow_links_takes_the_linked_frames(odd_archive):
    skipped: list = []
    df = hko7.discover_frames(odd_archive["root"], skipped=skipped, follow_links=True)
    expected = GOOD.append(pd.DatetimeIndex([LINKED_FILE, INSIDE_LINK, LINKED_DAY]).as_unit("ns"))
    pd.testing.assert_index_equal(df.index, expected, check_names=False)
    assert [reason for _, reason in skipped if "symbolic link" in reason] == []
    assert len(skipped) == 2


def test_start_after_end_is_refused(odd_archive):
    message = "start='2015-06-03' is after end='2015-06-01': no frame can lie between them"
    with pytest.raises(ValueError, match=re.escape(message)):
        hko7.discover_frames(odd_archive["root"], start="2015-06-03", end="2015-06-01")


def test_ingest_lists_the_skipped_entries_and_keeps_every_good_frame(odd_archive, tmp_path):
    from pipeline.store import open_store

    report = ingest_archive(odd_archive["root"], tmp_path / "s.zarr", progress=False)
    assert report.frames_written == 4
    assert sorted(report.corrupt) == odd_archive["skipped"]
    ds = open_store(tmp_path / "s.zarr")
    times = pd.DatetimeIndex(ds["time"].values)
    pd.testing.assert_index_equal(times, GOOD.append(pd.DatetimeIndex([INSIDE_LINK]).as_unit("ns")))
    refl = ds["reflectivity"].isel(time=1).values
    np.testing.assert_array_equal(refl, pixel_to_dbz(_pixels(1)).astype(np.float32))


def test_cli_refuses_start_after_end_without_creating_a_store(odd_archive, tmp_path):
    from flows.cli import app

    store = tmp_path / "e.zarr"
    args = ["ingest", str(odd_archive["root"]), str(store), "--no-progress"]
    res = CliRunner().invoke(app, [*args, "--start", "2015-06-03", "--end", "2015-06-01"])
    assert res.exit_code == 2
    assert res.output.strip() == (
        "error: --start 2015-06-03 is after --end 2015-06-01: no frame can lie between them"
    )
    assert not store.exists()


def test_cli_prints_each_skipped_entry(odd_archive, tmp_path):
    from flows.cli import app

    store = tmp_path / "s.zarr"
    res = CliRunner().invoke(app, ["ingest", str(odd_archive["root"]), str(store), "--no-progress"])
    assert res.exit_code == 0, res.output
    lines = set(res.output.splitlines())
    for path, reason in odd_archive["skipped"]:
        assert f"skipped {path}: {reason}" in lines
    linked = CliRunner().invoke(
        app,
        ["ingest", str(odd_archive["root"]), str(tmp_path / "l.zarr"), "--no-progress"]
        + ["--follow-links"],
    )
    assert linked.exit_code == 0, linked.output
    assert '"frames_written": 6' in linked.output
