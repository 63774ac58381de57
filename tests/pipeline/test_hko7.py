"""The HKO-7 layout reader/writer (docs/facts.md section 1) on real files."""

from __future__ import annotations

import pickle
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline import hko7, hko7_catalogue
from pipeline._hko7_pickle import read_catalogue_times
from pipeline.sampling import hko7_clips


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
    path = hko7_catalogue.write_catalogue(frames, tmp_path / f"cat{suffix}", tiny_archive)
    got = hko7_catalogue.read_catalogue(path)
    pd.testing.assert_index_equal(got.index, frames.index)
    assert got["frame_path"].iloc[0] == hko7.frame_path(".", frames.index[0]).as_posix()
    np.testing.assert_array_equal(got["has_mask"], frames["mask_path"] != "")


def test_archive_catalogue_matches_the_tree(tiny_archive, tiny_archive_info):
    got = hko7_catalogue.read_catalogue(tiny_archive / "catalogue.csv")
    pd.testing.assert_index_equal(got.index, tiny_archive_info.times, check_names=False)
    assert (~got["has_mask"]).sum() == len(tiny_archive_info.no_mask_times)


def test_corrupt_archive_frame_raises_naming_the_file(tiny_archive, tiny_archive_info):
    t = tiny_archive_info.corrupt_times[0]
    with pytest.raises(hko7.FrameReadError, match=hko7.frame_path(tiny_archive, t).name):
        hko7.read_frame(hko7.frame_path(tiny_archive, t))


# ---------------------------------------------------------------- published catalogue pickles
# A pickle in the published format (protocol 2, Python 2.7, pandas 0.19), written opcode by
# opcode: old module paths, Python 2 byte strings (SHORT_BINSTRING / BINSTRING), memo reuse.


def _op_str(b: bytes) -> bytes:  # a Python 2 str
    if len(b) < 256:
        return b"U" + bytes([len(b)]) + b
    return b"T" + struct.pack("<i", len(b)) + b


def _op_int(i: int) -> bytes:
    return b"K" + bytes([i]) if 0 <= i < 256 else b"J" + struct.pack("<i", i)


def _op_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _op_dict(items: list[tuple[bytes, bytes]]) -> bytes:
    return b"}(" + b"".join(k + v for k, v in items) + b"u"


def _op_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _op_array(dtype: bytes, shape: tuple[int, ...], payload: bytes) -> bytes:
    """numpy.core.multiarray._reconstruct(ndarray, (0,), 'b') + BUILD state."""
    head = _op_global("numpy.core.multiarray", "_reconstruct")
    head += _op_tuple(_op_global("numpy", "ndarray"), _op_tuple(_op_int(0)), _op_str(b"b")) + b"R"
    shape_op = _op_tuple(*[_op_int(n) for n in shape])
    return head + _op_tuple(_op_int(1), shape_op, dtype, b"\x89", payload) + b"b"


def _old_catalogue_pickle(times: pd.DatetimeIndex) -> bytes:
    """A pandas 0.19 DataFrame (one bool column has_rainfall) indexed by *times*."""
    n = len(times)
    dt_m8 = (
        _op_global("numpy", "dtype")
        + _op_tuple(_op_str(b"M8"), _op_int(0), _op_int(1))
        + b"R"
        + _op_tuple(
            _op_int(4),
            _op_str(b"<"),
            b"N",
            b"N",
            b"N",
            b"J\xff\xff\xff\xff",
            b"J\xff\xff\xff\xff",
            _op_int(0),
            _op_tuple(b"N", _op_tuple(_op_str(b"ns"), _op_int(1), _op_int(1), _op_int(1))),
        )
        + b"b"
    )
    dt_obj = (
        _op_global("numpy", "dtype")
        + _op_tuple(_op_str(b"O8"), _op_int(0), _op_int(1))
        + b"R"
        + _op_tuple(
            _op_int(3),
            _op_str(b"|"),
            b"N",
            b"N",
            b"N",
            b"J\xff\xff\xff\xff",
            b"J\xff\xff\xff\xff",
            _op_int(63),
        )
        + b"b"
    )
    dt_bool = (
        _op_global("numpy", "dtype")
        + _op_tuple(_op_str(b"b1"), _op_int(0), _op_int(1))
        + b"R"
        + _op_tuple(
            _op_int(3),
            _op_str(b"|"),
            b"N",
            b"N",
            b"N",
            b"J\xff\xff\xff\xff",
            b"J\xff\xff\xff\xff",
            _op_int(0),
        )
        + b"b"
    )
    columns = (
        _op_global("pandas.indexes.base", "_new_Index")
        + _op_tuple(
            _op_global("pandas.indexes.base", "Index"),
            _op_dict(
                [
                    (
                        _op_str(b"data"),
                        _op_array(dt_obj, (1,), b"](" + _op_str(b"has_rainfall") + b"e"),
                    ),
                    (_op_str(b"name"), b"N"),
                ]
            ),
        )
        + b"R"
        + b"q\x01"  # BINPUT 1: the columns, reused in block_items
    )
    minute = (
        _op_global("pandas.tseries.offsets", "Minute")
        + b")\x81"
        + _op_dict(
            [
                (_op_str(b"n"), _op_int(6)),
                (_op_str(b"normalize"), b"\x89"),
                (_op_str(b"kwds"), b"}"),
                (
                    _op_str(b"_offset"),
                    _op_global("datetime", "timedelta")
                    + _op_tuple(_op_int(1), _op_int(0), _op_int(0))
                    + b"R",
                ),
                (_op_str(b"_use_relativedelta"), b"\x89"),
            ]
        )
        + b"b"
    )
    raw = times.astype("datetime64[ns]").asi8.astype("<i8").tobytes()
    index = (
        _op_global("pandas.tseries.index", "_new_DatetimeIndex")
        + _op_tuple(
            _op_global("pandas.tseries.index", "DatetimeIndex"),
            _op_dict(
                [
                    (_op_str(b"data"), _op_array(dt_m8, (n,), _op_str(raw))),
                    (_op_str(b"name"), b"N"),
                    (_op_str(b"freq"), minute),
                    (_op_str(b"tz"), b"N"),
                ]
            ),
        )
        + b"R"
    )
    values = _op_array(dt_bool, (1, n), _op_str(b"\x01" * n)) + b"q\x02"
    axes = b"](" + columns + index + b"eq\x03"
    locs = _op_global("__builtin__", "slice") + _op_tuple(_op_int(0), _op_int(1), _op_int(1)) + b"R"
    extra = _op_dict(
        [
            (
                _op_str(b"0.14.1"),
                _op_dict(
                    [
                        (_op_str(b"axes"), b"h\x03"),
                        (
                            _op_str(b"blocks"),
                            b"]("
                            + _op_dict(
                                [(_op_str(b"values"), b"h\x02"), (_op_str(b"mgr_locs"), locs)]
                            )
                            + b"e",
                        ),
                    ]
                ),
            )
        ]
    )
    manager = (
        _op_global("pandas.core.internals", "BlockManager")
        + b")\x81"
        + _op_tuple(axes, b"](" + values + b"e", b"](h\x01e", extra)
        + b"b"
    )
    frame = (
        _op_global("pandas.core.frame", "DataFrame")
        + b")\x81"
        + _op_dict(
            [
                (_op_str(b"_data"), manager),
                (_op_str(b"_typ"), _op_str(b"dataframe")),
                (_op_str(b"_metadata"), b"]"),
            ]
        )
        + b"b"
    )
    return b"\x80\x02" + frame + b"."


# 6-minute steps with a gap (00:18 and 00:24 absent), one off-grid time, out of order
_OLD_TIMES = pd.DatetimeIndex(
    [
        "2015-06-01 00:00",
        "2015-06-01 00:06",
        "2015-06-01 00:12",
        "2015-06-01 00:30",
        "2015-06-21 09:55",
        "2015-06-01 00:36",
    ]
)


def test_old_format_pickle_converts_to_its_times(tmp_path):
    data = _old_catalogue_pickle(_OLD_TIMES)
    ns = _OLD_TIMES.astype("datetime64[ns]").asi8
    assert any(b >= 0x80 for b in ns.astype("<i8").tobytes())  # latin-1 matters
    pkl = tmp_path / "hko7_rainy_test.pkl"
    pkl.write_bytes(data)
    got = hko7_catalogue.convert_pickle_catalogue(pkl, tmp_path / "out.csv")
    expected = pd.DatetimeIndex(
        [
            "2015-06-01 00:00",
            "2015-06-01 00:06",
            "2015-06-01 00:12",
            "2015-06-01 00:30",
            "2015-06-01 00:36",
            "2015-06-21 09:55",
        ]
    ).astype("datetime64[ns]")
    pd.testing.assert_index_equal(got.index, expected, check_names=False)
    assert got["frame_path"].iloc[-1] == "radarPNG/2015/06/21/RAD150621095500.png"
    assert got["has_mask"].all()
    # the reader itself: file order, int64 nanoseconds
    np.testing.assert_array_equal(read_catalogue_times(pkl), ns)


def test_converted_catalogue_gives_the_hand_counted_clips(tmp_path):
    # 00:00 .. 05:54 every 6 minutes without 01:00, 01:06, 01:12 (a run of 3 missing):
    # sequent clips of 25 frames, stride 5, start at 01:18 (the first 25 frames clear of the run)
    # and advance 30 minutes until a clip runs 3 frames past 05:54.
    grid = pd.date_range("2015-06-01 00:00", "2015-06-01 05:54", freq="6min")
    times = grid.delete([10, 11, 12])
    (tmp_path / "t.pkl").write_bytes(_old_catalogue_pickle(times))
    cat = hko7_catalogue.convert_pickle_catalogue(tmp_path / "t.pkl", tmp_path / "t.csv")
    starts = hko7_clips(cat.index)
    expected = pd.DatetimeIndex(
        [
            "2015-06-01 01:18",
            "2015-06-01 01:48",
            "2015-06-01 02:18",
            "2015-06-01 02:48",
            "2015-06-01 03:18",
        ]
    )
    np.testing.assert_array_equal(
        starts.astype("datetime64[ns]").asi8, expected.astype("datetime64[ns]").asi8
    )


def _refused_global(tmp_path, payload: bytes, what: str) -> None:
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(payload)
    with pytest.raises(ValueError, match=what):
        hko7_catalogue.convert_pickle_catalogue(pkl, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_pickle_naming_os_system_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    # protocol 2 and protocol 0 forms of os.system("touch <marker>")
    for head in (b"\x80\x02", b""):
        cmd = f"touch {marker}".encode()
        payload = head + _op_global("os", "system") + b"(" + _op_str(cmd) + b"tR."
        _refused_global(tmp_path, payload, "os.system")
        assert not marker.exists()
    # after an allowed global, so a scan that stopped at the first hit would miss it
    payload = (
        b"\x80\x02"
        + _op_tuple(
            _op_global("datetime", "timedelta") + _op_tuple(_op_int(1)) + b"R",
            _op_global("posix", "system") + b"(" + _op_str(f"touch {marker}".encode()) + b"tR",
        )
        + b"."
    )
    _refused_global(tmp_path, payload, "posix.system")
    assert not marker.exists()


def test_pickle_naming_builtins_eval_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').write('x')".encode()
    payload = b"\x80\x02" + _op_global("builtins", "eval") + b"(" + _op_str(code) + b"tR."
    _refused_global(tmp_path, payload, "builtins.eval")
    assert not marker.exists()

    # the same through pickle's own writer (protocol 4, STACK_GLOBAL)
    class _Evil:
        def __reduce__(self):
            return (eval, (code.decode(),))

    _refused_global(tmp_path, pickle.dumps(_Evil(), protocol=4), "protocol 4")
    assert not marker.exists()


def test_truncated_or_wrong_pickles_give_one_line(tmp_path):
    data = _old_catalogue_pickle(_OLD_TIMES)
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.pkl: not a readable"):
        hko7_catalogue.convert_pickle_catalogue(tmp_path / "cut.pkl", tmp_path / "out.csv")
    # a DataFrame whose index is not datetimes (an Index of strings, as the columns are)
    swapped = data.replace(
        b"pandas.tseries.index\n_new_DatetimeIndex", b"pandas.indexes.base\n_new_Index"
    )
    (tmp_path / "idx.pkl").write_bytes(swapped)
    with pytest.raises(ValueError, match="row index is not a DatetimeIndex"):
        hko7_catalogue.convert_pickle_catalogue(tmp_path / "idx.pkl", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_modern_pandas_pickle_is_refused_with_one_line(tmp_path):
    pkl = tmp_path / "hko7_rainy_valid.pkl"
    pd.DataFrame({"has_rainfall": [True]}, index=pd.DatetimeIndex(["2015-06-01"])).to_pickle(pkl)
    with pytest.raises(ValueError, match="published catalogues use protocol 2"):
        hko7_catalogue.convert_pickle_catalogue(pkl, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_cli_catalogue_convert_reads_the_old_format(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    pkl = tmp_path / "hko7_rainy_valid.pkl"
    pkl.write_bytes(_old_catalogue_pickle(_OLD_TIMES))
    ok = CliRunner().invoke(app, ["catalogue", "convert", str(pkl), str(tmp_path / "c.csv")])
    assert ok.exit_code == 0, ok.output
    assert "wrote 6 frame times" in ok.output
    got = hko7_catalogue.read_catalogue(tmp_path / "c.csv")
    assert got.index[0] == pd.Timestamp("2015-06-01") and len(got) == 6
    again = CliRunner().invoke(  # --trusted is still accepted (and changes nothing)
        app, ["catalogue", "convert", str(pkl), str(tmp_path / "d.csv"), "--trusted"]
    )
    assert again.exit_code == 0, again.output
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"\x80\x02" + _op_global("os", "system") + b"(" + _op_str(b"true") + b"tR.")
    refused = CliRunner().invoke(app, ["catalogue", "convert", str(evil), str(tmp_path / "e.csv")])
    assert refused.exit_code != 0 and "os.system" in refused.output
    assert not (tmp_path / "e.csv").exists()
