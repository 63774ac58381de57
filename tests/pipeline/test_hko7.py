"""The HKO-7 layout reader/writer (contract C1) on real files."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline import hko7


@pytest.fixture
def pixels() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, hko7.FRAME_SHAPE, dtype=np.uint8)


def test_frame_and_mask_paths_follow_the_published_layout(tmp_path):
    ts = pd.Timestamp("2015-06-21 09:55")
    assert hko7.frame_path(tmp_path, ts) == (
        tmp_path / "radarPNG" / "2015" / "06" / "21" / "RAD150621095500.png"
    )
    assert hko7.mask_path(tmp_path, ts) == (
        tmp_path / "radarPNG_mask" / "2015" / "06" / "21" / "RAD150621095500.mask"
    )


def test_parse_frame_time_round_trips():
    ts = pd.Timestamp("2009-07-29 15:19")
    assert hko7.parse_frame_time(hko7.frame_path("/x", ts)) == ts
    assert hko7.parse_frame_time("RAD090729151900.mask") == ts


@pytest.mark.parametrize(
    "name",
    ["RAD0907291519.png", "IMG090729151900.png", "RAD091329151900.png", "RADab0729151900.png"],
)
def test_parse_frame_time_rejects_bad_names(name):
    with pytest.raises(ValueError, match=name.split(".")[0]):
        hko7.parse_frame_time(name)


def test_frame_round_trip_is_exact(tmp_path, pixels):
    path = hko7.frame_path(tmp_path, "2015-06-01 00:06")
    hko7.write_frame(path, pixels)
    with Image.open(path) as im:
        assert (im.format, im.mode, im.size) == ("PNG", "L", (480, 480))
    np.testing.assert_array_equal(hko7.read_frame(path), pixels)


def test_mask_bytes_are_hko7_encoding(tmp_path, pixels):
    mask = pixels > 100
    path = hko7.mask_path(tmp_path, "2015-06-01 00:06")
    hko7.write_mask(path, mask)
    # the HKO-7 reader: np.frombuffer(zlib.decompress(bytes), dtype=bool).reshape(480, 480)
    raw = np.frombuffer(zlib.decompress(path.read_bytes()), dtype=bool).reshape(480, 480)
    np.testing.assert_array_equal(raw, mask)
    np.testing.assert_array_equal(hko7.read_mask(path), mask)


def test_truncated_png_raises_frame_read_error_naming_the_file(tmp_path, pixels):
    path = tmp_path / "RAD150601000600.png"
    hko7.write_frame(path, pixels)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(hko7.FrameReadError, match="RAD150601000600.png") as info:
        hko7.read_frame(path)
    assert info.value.path == path
    assert "truncated" in info.value.reason


def test_missing_frame_raises_frame_read_error(tmp_path):
    with pytest.raises(hko7.FrameReadError, match="file not found"):
        hko7.read_frame(tmp_path / "RAD150601000600.png")


def test_wrong_size_png_is_rejected(tmp_path):
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((100, 120), np.uint8)).save(path)
    with pytest.raises(hko7.FrameReadError, match="expected 480x480"):
        hko7.read_frame(path)


def test_colour_png_is_rejected(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((480, 480, 3), np.uint8)).save(path)
    with pytest.raises(hko7.FrameReadError, match="mode 'RGB'"):
        hko7.read_frame(path)


def test_not_a_png_is_rejected(tmp_path):
    path = tmp_path / "RAD150601000600.png"
    path.write_bytes(b"this is not an image")
    with pytest.raises(hko7.FrameReadError, match="RAD150601000600.png"):
        hko7.read_frame(path)


def test_mask_of_wrong_length_is_rejected(tmp_path):
    path = tmp_path / "RAD150601000600.mask"
    path.write_bytes(zlib.compress(np.ones(1000, bool).tobytes()))
    with pytest.raises(hko7.FrameReadError, match="1000 bytes"):
        hko7.read_mask(path)


def test_mask_that_is_not_zlib_is_rejected(tmp_path):
    path = tmp_path / "RAD150601000600.mask"
    path.write_bytes(b"\x00" * 50)
    with pytest.raises(hko7.FrameReadError, match="zlib"):
        hko7.read_mask(path)


def test_static_masks_round_trip_and_union(tmp_path):
    outlier = np.zeros(hko7.FRAME_SHAPE, bool)
    outlier[10, 20] = True
    boundary = np.zeros(hko7.FRAME_SHAPE, bool)
    boundary[0, :] = True
    hko7.write_static_masks(tmp_path, outlier, boundary)
    got = hko7.read_static_masks(tmp_path)
    assert sorted(got) == ["exclude_mask", "out_boundary_mask", "outlier_mask"]
    assert all(v.dtype == np.uint8 for v in got.values())
    np.testing.assert_array_equal(got["outlier_mask"], outlier)
    np.testing.assert_array_equal(got["exclude_mask"], outlier | boundary)
    assert got["exclude_mask"].sum() == 481


def test_static_masks_missing_key_is_named(tmp_path):
    np.savez(tmp_path / "mask_dat.npz", outlier_mask=np.zeros(hko7.FRAME_SHAPE, np.uint8))
    with pytest.raises(hko7.FrameReadError, match="exclude_mask"):
        hko7.read_static_masks(tmp_path)


def test_day_list_round_trip(tmp_path):
    path = hko7.day_list_path(tmp_path, "test")
    assert path.name == "hko7_rainy_test_days.txt"
    hko7.write_day_list(path, ["2015-06-01", "2015-06-03"], [12.5, 0.25])
    assert path.read_text() == "20150601, 12.500\n20150603, 0.250\n"
    got = hko7.read_day_list(path)
    assert list(got.index) == [pd.Timestamp("2015-06-01"), pd.Timestamp("2015-06-03")]
    assert list(got) == [12.5, 0.25]


def test_day_list_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "hko7_rainy_train_days.txt"
    path.write_text("20150601, 1.0\n2015-06-02, 3\n")
    with pytest.raises(ValueError, match=r"hko7_rainy_train_days.txt line 2"):
        hko7.read_day_list(path)


def test_unknown_split_lists_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="train, valid, test"):
        hko7.day_list_path(tmp_path, "dev")


def test_discover_frames_finds_exactly_the_written_times(tiny_archive, tiny_archive_info):
    df = hko7.discover_frames(tiny_archive)
    assert df.index.name == "time"
    pd.testing.assert_index_equal(df.index, tiny_archive_info.times, check_names=False)
    assert df.index.is_monotonic_increasing and df.index.is_unique
    no_mask = df.index[df["mask_path"] == ""]
    pd.testing.assert_index_equal(no_mask, tiny_archive_info.no_mask_times, check_names=False)
    t = tiny_archive_info.times[5]
    assert df.loc[t, "frame_path"] == str(hko7.frame_path(tiny_archive, t))
    for t in tiny_archive_info.offgrid_times:
        assert t in df.index and t.minute % 6 == 1
    assert not df.index.isin(tiny_archive_info.missing_times).any()


def test_discover_frames_bounds_are_inclusive(tiny_archive, tiny_archive_info):
    times = tiny_archive_info.times
    df = hko7.discover_frames(tiny_archive, start=str(times[3]), end=times[60])
    pd.testing.assert_index_equal(df.index, times[3:61], check_names=False)


def test_discover_frames_rejects_a_non_archive(tmp_path):
    with pytest.raises(ValueError, match="no directory"):
        hko7.discover_frames(tmp_path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_catalogue_round_trip(tmp_path, tiny_archive, suffix):
    frames = hko7.discover_frames(tiny_archive)
    path = hko7.write_catalogue(frames, tmp_path / f"cat{suffix}", tiny_archive)
    got = hko7.read_catalogue(path)
    pd.testing.assert_index_equal(got.index, frames.index)
    assert got["frame_path"].iloc[0] == hko7.frame_path(".", frames.index[0]).as_posix()
    np.testing.assert_array_equal(got["has_mask"], frames["mask_path"] != "")


def test_archive_catalogue_matches_the_tree(tiny_archive, tiny_archive_info):
    got = hko7.read_catalogue(tiny_archive / "catalogue.csv")
    pd.testing.assert_index_equal(got.index, tiny_archive_info.times, check_names=False)
    assert (~got["has_mask"]).sum() == len(tiny_archive_info.no_mask_times)


def test_corrupt_archive_frame_raises_naming_the_file(tiny_archive, tiny_archive_info):
    t = tiny_archive_info.corrupt_times[0]
    with pytest.raises(hko7.FrameReadError, match=hko7.frame_path(tiny_archive, t).name):
        hko7.read_frame(hko7.frame_path(tiny_archive, t))


def _published_style_pickle(path):
    idx = pd.DatetimeIndex(["2015-06-01 00:06", "2015-06-01 00:00", "2015-06-21 09:55"])
    pd.DataFrame({"has_rainfall": [True, True, False]}, index=idx).to_pickle(path)
    return idx


def test_pickle_converter_refuses_untrusted(tmp_path):
    _published_style_pickle(tmp_path / "hko7_rainy_test.pkl")
    with pytest.raises(ValueError, match="refusing to unpickle"):
        hko7.convert_pickle_catalogue(tmp_path / "hko7_rainy_test.pkl", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_pickle_converter_keeps_the_index_when_trusted(tmp_path):
    idx = _published_style_pickle(tmp_path / "hko7_rainy_test.pkl")
    got = hko7.convert_pickle_catalogue(
        tmp_path / "hko7_rainy_test.pkl", tmp_path / "out.csv", trusted=True
    )
    pd.testing.assert_index_equal(
        got.index, idx.sort_values().astype("datetime64[ns]"), check_names=False
    )
    assert got["frame_path"].iloc[-1] == "radarPNG/2015/06/21/RAD150621095500.png"
    assert got["has_mask"].all()
