"""Tests of pipeline.resample: time snapping, gaps, spatial downsizing, store output."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline import geo, units
from pipeline.resample import downsize, gap_table, resample_store, sidecar_paths, snap_to_grid
from pipeline.store import StoreWriter, create_store, open_group, open_store, store_log

SIZE = 48  # small source frames keep the tests fast


def make_source_store(path, times, pixels, mask=None, size=SIZE):
    """Write a real ingest store (docs/contracts.md, Store schema) holding the given frames.

    Parameters
    ----------
    times : sequence of timestamps, shape (N,), sorted
    pixels : uint8 array (N, size, size), HKO-7 pixel values
    mask : bool array (N, size, size), default all valid
    """
    times = pd.DatetimeIndex(times).as_unit("ns")
    pixels = np.asarray(pixels, dtype=np.uint8)
    if mask is None:
        mask = np.ones(pixels.shape, dtype=bool)
    create_store(path, size=size)
    with StoreWriter(path) as w:
        g = w.prepare(first_time_chunk=0, length=len(times))
        g["reflectivity"][:] = pixels
        g["mask"][:] = mask
        g["time"][:] = (times.asi8 // 10**9).astype(np.int64)
        w.commit()
    return path


def test_snap_two_minutes_off_snaps_three_is_rejected_and_collisions_reported():
    day = pd.Timestamp("2015-06-21")
    times = day + pd.to_timedelta([0, 6, 14, 21, 40, 41, 55], unit="min")
    slots, src, details = snap_to_grid(times, "6min", "2min")
    assert len(slots) == 240 and slots[0] == day and slots[-1] == day + pd.Timedelta("23h54min")
    # 00:14 -> slot 2 (00:12); 00:21 is 3 min from 00:18 and 00:24 -> rejected
    # 00:40 and 00:41 both snap to 00:42 (slot 7): the nearer 00:41 wins
    # 00:55 -> 00:54 (slot 9)
    expected = np.full(240, -1)
    expected[[0, 1, 2, 7, 9]] = [0, 1, 2, 5, 6]
    np.testing.assert_array_equal(src, expected)
    assert list(details["rejected"]["frame_time"]) == [day + pd.Timedelta("21min")]
    assert list(details["snapped"]["frame_time"]) == list(times[[2, 4, 5, 6]])
    assert details["snapped"]["offset_s"].tolist() == [120.0, -120.0, -60.0, 60.0]
    coll = details["collisions"]
    assert len(coll) == 1
    assert coll.iloc[0]["kept_time"] == day + pd.Timedelta("41min")
    assert coll.iloc[0]["dropped_time"] == day + pd.Timedelta("40min")


def test_snap_refuses_tolerance_of_half_the_cadence():
    with pytest.raises(ValueError, match="tolerance"):
        snap_to_grid(pd.DatetimeIndex(["2015-01-01"]), "6min", "3min")


def test_gap_table_runs():
    idx = pd.date_range("2015-01-01", periods=10, freq="6min")
    obs = pd.Series([0, 0, 1, 1, 0, 1, 0, 0, 0, 1], index=idx, dtype=bool)
    gaps = gap_table(obs)
    assert gaps["start"].tolist() == [idx[0], idx[4], idx[6]]
    assert gaps["end"].tolist() == [idx[1], idx[4], idx[8]]
    assert gaps["length"].tolist() == [2, 1, 3]


def test_downsize_constant_rain_rate_is_kept():
    dbz = np.full((2, 12, 12), float(units.rainrate_to_dbz(5.0)))
    valid = np.ones(dbz.shape, dtype=bool)
    for average in ("z", "rainrate"):
        out, ok = downsize(dbz, valid, 6, average=average)
        assert out.shape == (2, 2, 2) and ok.all()
        np.testing.assert_allclose(out, 28.577717, atol=1e-5)  # 5 mm/h (Z = 58.53 R^1.56)


def test_downsize_half_half_is_linear_z_mean_not_dbz_mean():
    dbz = np.zeros((1, 6, 6))
    dbz[..., :3] = 10.0
    dbz[..., 3:] = 40.0
    out, _ = downsize(dbz, np.ones(dbz.shape, dtype=bool), 6)
    expected = 10 * np.log10((10.0 + 10_000.0) / 2)  # 37.0035 dBZ, not 25
    np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-6)
    # rain-rate averaging: mean of the two rain rates
    out_r, _ = downsize(dbz, np.ones(dbz.shape, dtype=bool), 6, average="rainrate")
    # (0.322174 + 26.987808) / 2 = 13.654991 mm/h = 35.384331 dBZ (Z = 58.53 R^1.56)
    np.testing.assert_allclose(out_r[0, 0, 0], 35.384331, atol=1e-5)


def test_downsize_valid_fraction_and_invalid_pixels_ignored():
    dbz = np.full((1, 6, 12), 30.0)
    valid = np.zeros(dbz.shape, dtype=bool)
    valid[0, :3, :6] = True  # block 0: 18 of 36 valid -> valid
    valid[0, :3, 6:11] = True  # block 1: 15 of 36 -> invalid, value still the valid mean
    dbz[0, 3:, :] = 60.0  # invalid pixels must not enter the mean
    out, ok = downsize(dbz, valid, 6)
    assert ok.tolist() == [[[True, False]]]
    np.testing.assert_allclose(out[0, 0], [30.0, 30.0], rtol=1e-6)
    out_none, ok_none = downsize(dbz, np.zeros(dbz.shape, dtype=bool), 6)
    assert np.isnan(out_none).all() and not ok_none.any()


def test_downsize_rejects_unknown_average():
    with pytest.raises(ValueError, match="valid names"):
        downsize(np.zeros((1, 6, 6)), np.ones((1, 6, 6), dtype=bool), 6, average="dbz")


@pytest.fixture(scope="module")
def gappy_store(tmp_path_factory):
    """Two days 2015-06-01 and 2015-06-03 (06-02 empty) with known gaps and oddities."""
    root = tmp_path_factory.mktemp("resample")
    d1, d3 = pd.Timestamp("2015-06-01"), pd.Timestamp("2015-06-03")
    slots1 = [s for s in range(240) if not (10 <= s < 15 or s == 100)]  # gaps 5 + 1
    slots3 = list(range(0, 120))  # second half of day 3 missing
    times = [d1 + pd.Timedelta(minutes=6 * s) for s in slots1]
    times[20] += pd.Timedelta("2min")  # slot 25, 2 min late: snaps
    times.append(d1 + pd.Timedelta("23h57min"))  # 3 min off: rejected (last slot 23:54)
    times += [d3 + pd.Timedelta(minutes=6 * s) for s in slots3]
    times = pd.DatetimeIndex(times).sort_values()
    n = len(times)
    pixels = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
    # frame k: left half of every 6x6 block pixel 0 (-10 dBZ), right half 200 + k % 50
    for k in range(n):
        pixels[k] = np.where(np.arange(SIZE) % 6 < 3, 0, 200 + k % 50)[None, :]
    mask = np.ones(pixels.shape, dtype=bool)
    mask[:, :6, :6] = False  # top-left coarse pixel fully invalid
    mask[:, 6:12, :2] = False  # next block down: 24/36 valid -> valid
    src = make_source_store(root / "src", times, pixels, mask)
    dst = root / "out.zarr"
    report = resample_store(src, dst, size=8, progress=False)
    return {"src": src, "dst": dst, "report": report, "times": times, "pixels": pixels}


def test_resample_observed_flags_and_gap_table(gappy_store):
    report = gappy_store["report"]
    ds = open_store(gappy_store["dst"])
    assert ds.sizes == {"time": 3 * 240, "y": 8, "x": 8}
    assert ds["time"][0].item() == pd.Timestamp("2015-06-01").value
    assert pd.Timestamp(ds["time"].values[-1]) == pd.Timestamp("2015-06-03 23:54")
    expected = np.zeros(720, dtype=bool)
    expected[[s for s in range(240) if not (10 <= s < 15 or s == 100)]] = True
    expected[480:600] = True
    np.testing.assert_array_equal(ds["observed"].values, expected)
    gaps = report.gaps
    assert gaps["length"].tolist() == [5, 1, 240, 120]
    assert gaps["start"].tolist() == [
        pd.Timestamp("2015-06-01 01:00"),
        pd.Timestamp("2015-06-01 10:00"),
        pd.Timestamp("2015-06-02 00:00"),
        pd.Timestamp("2015-06-03 12:00"),
    ]
    assert gaps["end"].tolist()[2] == pd.Timestamp("2015-06-02 23:54")
    summary = report.summary()
    assert summary["n_slots"] == 720 and summary["n_observed"] == 234 + 120
    assert summary["n_gaps"] == 4 and summary["longest_gap_slots"] == 240
    assert summary["n_snapped"] == 1 and summary["n_rejected"] == 1
    assert report.rejected["frame_time"].tolist() == [pd.Timestamp("2015-06-01 23:57")]
    # sidecars next to the store
    gaps_csv, report_json = sidecar_paths(gappy_store["dst"])
    assert gaps_csv.name == "out.gaps.csv" and report_json.name == "out.resample.json"
    on_disk = pd.read_csv(gaps_csv, parse_dates=["start", "end"])
    pd.testing.assert_frame_equal(on_disk, gaps, check_dtype=False)
    assert json.loads(report_json.read_text())["n_rejected"] == 1


def test_resample_values_masks_and_gaps(gappy_store):
    ds = open_store(gappy_store["dst"])
    refl = ds["reflectivity"]
    assert refl.dtype == np.float32 and ds["mask"].dtype == bool
    # slot 25 holds the 2-min-late frame: source frame index 20 (slots 0..9, 15..24, 25)
    k = 20
    fine_hi = units.pixel_to_dbz(200 + k % 50)
    expected = 10 * np.log10((10 ** (-10 / 10) + 10 ** (fine_hi / 10)) / 2)
    frame = refl.isel(time=25).values
    np.testing.assert_allclose(frame[2:, :], expected, rtol=1e-5)
    assert np.isnan(frame[0, 0])  # no valid fine pixel
    msk = ds["mask"].isel(time=25).values
    assert not msk[0, 0] and msk[1, 0] and msk[2:].all()
    # block (1, 0): 24 valid pixels, 6 rows x (1 low col + 3 high cols) -> Z mean of 6 low, 18 high
    z = (6 * 10 ** (-10 / 10) + 18 * 10 ** (fine_hi / 10)) / 24
    np.testing.assert_allclose(frame[1, 0], 10 * np.log10(z), rtol=1e-5)
    # gaps: NaN and mask False
    gap = refl.isel(time=slice(10, 15)).values
    assert np.isnan(gap).all() and not ds["mask"].isel(time=slice(10, 15)).values.any()
    assert np.isnan(refl.isel(time=slice(240, 480)).values).all()


def test_resample_coordinates_and_metadata(gappy_store):
    ds = open_store(gappy_store["dst"])
    grid = geo.grid_coords(8)
    np.testing.assert_allclose(ds["x"].values, grid.x)
    np.testing.assert_allclose(ds["y"].values, grid.y)
    np.testing.assert_allclose(ds["lat"].values, grid.lat)
    np.testing.assert_allclose(ds["lon"].values, grid.lon)
    src = open_store(gappy_store["src"])
    # coarse pixel centres are the means of the 6 x 6 fine centres
    np.testing.assert_allclose(ds["x"].values, src["x"].values.reshape(8, 6).mean(axis=1))
    assert ds["crs"].attrs["grid_mapping_name"] == "azimuthal_equidistant"
    assert ds.attrs["cadence_minutes"] == 6.0
    assert ds["reflectivity"].attrs["units"] == "dBZ"
    assert ds["reflectivity"].encoding["grid_mapping"] == "crs"
    on_disk = open_group(gappy_store["dst"])["reflectivity"].attrs
    assert on_disk["grid_mapping"] == "crs" and on_disk["standard_name"] == (
        "equivalent_reflectivity_factor"
    )
    assert "valid_max" not in ds["reflectivity"].attrs
    assert "linear Z" in ds["reflectivity"].attrs["cell_methods"]


def test_resample_refuses_existing_output_then_overwrites(gappy_store, tmp_path):
    with pytest.raises(FileExistsError, match="overwrite"):
        resample_store(gappy_store["src"], gappy_store["dst"], size=8, progress=False)
    dst = tmp_path / "again.zarr"
    resample_store(gappy_store["src"], dst, size=16, progress=False)
    reader = open_store(dst)
    before = reader["reflectivity"].values
    resample_store(gappy_store["src"], dst, size=8, progress=False, overwrite=True)
    assert open_store(dst).sizes["x"] == 8
    # one commit per resample; a reader opened before the overwrite keeps its snapshot
    messages = [m for _, _, m in store_log(dst)]
    assert len(messages) == 3 and messages[2] == "Repository initialized"
    assert messages[0] == "resample src: 354 of 720 slots observed, 8 x 8, cadence 6 min"
    assert ", 16 x 16, " in messages[1]
    np.testing.assert_array_equal(reader["reflectivity"].values, before)
    assert reader.sizes["x"] == 16
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_resample_rejects_size_not_dividing(gappy_store, tmp_path):
    with pytest.raises(ValueError, match="does not divide"):
        resample_store(gappy_store["src"], tmp_path / "x.zarr", size=7, progress=False)


def test_cli_resample_writes_store_and_prints_summary(gappy_store, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    out = tmp_path / "cli.zarr"
    args = ["resample", str(gappy_store["src"]), str(out), "--size", "8", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["n_observed"] == 354 and summary["n_rejected"] == 1
    assert open_store(out)["observed"].values.sum() == 354
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "already exists" in again.output


def test_hko7_clip_count_on_the_resampled_store(gappy_store):
    from pipeline.sampling import hko7_clips

    observed = open_store(gappy_store["dst"])["observed"].to_series()
    starts = hko7_clips(observed, in_len=5, out_len=20, stride=5)
    # day 1: every start before slot 15 meets the 5-slot gap (10..14); 15, 20, .., 215
    # (41 clips; the single gap at slot 100 is allowed); 220.. run into the empty day 2.
    # day 3 (slots 0..119 observed): 00:00, 00:30, .., slot 95 (20 clips).
    assert len(starts) == 41 + 20
    assert starts[0] == pd.Timestamp("2015-06-01 01:30")
    assert starts[40] == pd.Timestamp("2015-06-01 21:30")
    assert starts[41] == pd.Timestamp("2015-06-03 00:00")
    assert starts[-1] == pd.Timestamp("2015-06-03 09:30")


def test_end_to_end_synthetic_archive_ingest_resample_dataset(
    tiny_archive, tiny_archive_info, tmp_path
):
    """Real archive -> ingest store -> resampled store -> Dataset; gaps where the archive has them."""
    from pipeline.dataset import RadarSequenceDataset
    from pipeline.ingest import ingest_archive

    info = tiny_archive_info
    ingest_archive(tiny_archive, tmp_path / "ingest", progress=False, workers=2)
    report = resample_store(tmp_path / "ingest", tmp_path / "r.zarr", size=80, progress=False)
    ds = open_store(tmp_path / "r.zarr")
    readable = info.times.difference(info.corrupt_times)
    # frames 1 min off the grid snap to their slot; the corrupt frame leaves a gap
    expected = set(readable.round("6min"))
    got = set(pd.DatetimeIndex(ds["time"].values[ds["observed"].values]))
    assert got == expected
    assert set(report.snapped["frame_time"]) == set(info.offgrid_times)
    assert len(report.rejected) == 0 and len(report.collisions) == 0
    assert ds.sizes["time"] == 240 * len(info.days) and ds.sizes["x"] == 80
    first = next(iter(info.missing_runs))
    assert not ds["observed"].sel(time=slice(first[0], first[1])).values.any()
    data = RadarSequenceDataset(tmp_path / "r.zarr", days=info.days, n_in=5, n_out=5)
    x, y, *_, m_in, m_out = data[0]
    assert x.shape == (5, 1, 80, 80) and float(x.max()) <= 1.0 and float(m_in.mean()) > 0.5
    # the archive's own day lists split the store; the listed day without frames drops out
    from pipeline.dataset import split_days, store_days
    from pipeline.hko7 import day_list_path

    files = {s: day_list_path(tiny_archive, s) for s in ("train", "valid", "test")}
    splits = split_days(store_days(tmp_path / "r.zarr"), day_files=files)
    assert {k: list(v) for k, v in splits.items()} == {
        k: [d for d in v if d not in info.empty_days] for k, v in info.splits.items()
    }
    test = RadarSequenceDataset(tmp_path / "r.zarr", split="test", day_files=files, n_in=5, n_out=5)
    assert {test.item_time(i).normalize() for i in range(len(test))} == set(info.splits["test"])
