"""Ingest of an HKO-7 archive into the versioned Zarr store (pipeline.ingest)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline import hko7
from pipeline.ingest import ingest_archive
from pipeline.store import (
    TIME_CHUNK,
    create_store,
    open_repo,
    open_store,
    store_log,
    validate_store,
)
from pipeline.units import pixel_to_dbz

DAYS = ("2015-06-01", "2015-06-02", "2015-06-03")
PER_DAY = 20  # not a multiple of TIME_CHUNK: days straddle chunks
OFF_GRID = pd.Timestamp("2015-06-02 15:19")  # HKO-7 has a few of these
NO_MASK = pd.Timestamp("2015-06-03 00:12")


def _frame(t: pd.Timestamp) -> np.ndarray:
    """Deterministic pixels: a ramp through all 256 values plus a blob moving with time."""
    k = int((t - pd.Timestamp(DAYS[0])) / pd.Timedelta("1min"))
    ramp = (np.arange(480 * 480) % 256).astype(np.uint8).reshape(480, 480)
    out = ramp.copy()
    c = 40 + (k // 6) % 400
    out[200:260, c : c + 40] = (k * 7) % 256
    return out


def _frame_mask(t: pd.Timestamp) -> np.ndarray:
    m = np.ones((480, 480), dtype=bool)
    k = int((t - pd.Timestamp(DAYS[0])) / pd.Timedelta("6min"))
    m[k % 480, :] = False
    return m


OUTLIER = np.zeros((480, 480), dtype=np.uint8)
OUTLIER[100:110, 300:310] = 1
BOUNDARY = np.zeros((480, 480), dtype=np.uint8)
BOUNDARY[:, :3] = 1


def _times() -> list[pd.Timestamp]:
    out = []
    for d in DAYS:
        out += [pd.Timestamp(d) + i * pd.Timedelta("6min") for i in range(PER_DAY)]
    out.append(OFF_GRID)
    return list(pd.DatetimeIndex(sorted(out)).astype("datetime64[ns]"))


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hko7")
    for t in _times():
        hko7.write_frame(hko7.frame_path(root, t), _frame(t))
        if t != NO_MASK:
            hko7.write_mask(hko7.mask_path(root, t), _frame_mask(t))
    hko7.write_static_masks(root, OUTLIER, BOUNDARY)
    return root


@pytest.fixture(scope="module")
def clean_store(archive, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("clean") / "radar"
    report = ingest_archive(archive, store, progress=False)
    assert report.frames_written == len(_times())
    return store


def _keys_and_bytes(zstore) -> dict[str, bytes]:
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    async def run():
        out = {}
        async for key in zstore.list():
            out[key] = (await zstore.get(key, default_buffer_prototype())).to_bytes()
        return out

    return sync(run())


def _tree(store: Path) -> dict[str, bytes]:
    """Every Zarr key of the latest snapshot (metadata and chunks) with its bytes."""
    return _keys_and_bytes(open_repo(store).readonly_session(branch="main").store)


def _assert_same_store(a: Path, b: Path) -> None:
    xr.testing.assert_identical(open_store(a).load(), open_store(b).load())
    ta, tb = _tree(a), _tree(b)
    assert sorted(ta) == sorted(tb)
    differing = [k for k in ta if ta[k] != tb[k]]
    assert differing == []


def test_ingest_times_values_masks_and_attributes(clean_store):
    ds = open_store(clean_store)
    validate_store(ds, name=str(clean_store))
    expected = pd.DatetimeIndex(_times(), name="time").astype("datetime64[ns]")
    pd.testing.assert_index_equal(ds.indexes["time"], expected)
    assert ds["time"].dtype == np.dtype("datetime64[ns]")
    refl = ds["reflectivity"].values
    mask = ds["mask"].values
    assert refl.dtype == np.float32
    exclude = (OUTLIER | BOUNDARY).astype(bool)
    for i, t in enumerate(expected):
        np.testing.assert_array_equal(refl[i], pixel_to_dbz(_frame(t)).astype(np.float32))
        want_mask = (np.ones((480, 480), bool) if t == NO_MASK else _frame_mask(t)) & ~exclude
        np.testing.assert_array_equal(mask[i], want_mask)
    # Exact CF decoding of every pixel value: 0 -> -10 dBZ, 255 -> 60 dBZ.
    assert refl[0].min() == np.float32(-10.0)
    assert refl[0].max() == np.float32(60.0)
    enc = ds["reflectivity"].encoding
    assert enc["dtype"] == np.uint8
    assert enc["scale_factor"] == 70 / 255
    assert enc["add_offset"] == -10.0
    attrs = ds["reflectivity"].attrs
    assert attrs["units"] == "dBZ"
    assert attrs["standard_name"] == "equivalent_reflectivity_factor"
    assert enc["grid_mapping"] == "crs"  # decode_coords="all" moves it to the encoding
    assert ds.attrs["Conventions"] == "CF-1.10"
    assert ds["crs"].attrs["grid_mapping_name"] == "azimuthal_equidistant"
    assert "crs" in ds.coords and "lat" in ds.coords
    assert ds["mask"].encoding["chunks"][0] == TIME_CHUNK


def test_reingest_writes_nothing_and_leaves_every_file_unchanged(archive, clean_store, tmp_path):
    store = tmp_path / "again"
    shutil.copytree(clean_store, store)
    before, history = _tree(store), store_log(store)
    report = ingest_archive(archive, store, progress=False)
    assert (report.frames_written, report.skipped_existing) == (0, len(_times()))
    assert report.batches == 0
    assert _tree(store) == before
    assert store_log(store) == history  # no commit
    _assert_same_store(store, clean_store)


def test_days_out_of_order_give_the_same_store_as_in_order(archive, clean_store, tmp_path):
    store = tmp_path / "shuffled"
    written = 0
    for day in (DAYS[2], DAYS[0], DAYS[1]):
        end = pd.Timestamp(day) + pd.Timedelta("23:59:59")
        written += ingest_archive(archive, store, start=day, end=end, progress=False).frames_written
    assert written == len(_times())
    _assert_same_store(store, clean_store)


def test_small_batches_inserted_mid_chunk_give_the_same_store(archive, clean_store, tmp_path):
    store = tmp_path / "batches"
    ingest_archive(archive, store, start="2015-06-02 12:00", progress=False, batch_size=7)
    ingest_archive(archive, store, end="2015-06-01 01:00", progress=False, batch_size=5)
    report = ingest_archive(archive, store, progress=False, batch_size=16)
    assert report.skipped_existing > 0
    _assert_same_store(store, clean_store)


T_BAD_PNG, T_BAD_MASK = pd.Timestamp("2015-06-01 00:30"), pd.Timestamp("2015-06-02 01:00")


@pytest.fixture(scope="module")
def bad_archive(archive, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad") / "archive"
    shutil.copytree(archive, root)
    png = hko7.frame_path(root, T_BAD_PNG)
    png.write_bytes(png.read_bytes()[:500])  # truncated
    hko7.mask_path(root, T_BAD_MASK).write_bytes(b"not zlib at all")
    return root


@pytest.fixture(scope="module")
def bad_store(bad_archive, tmp_path_factory) -> tuple[Path, object]:
    store = tmp_path_factory.mktemp("badstore") / "store"
    return store, ingest_archive(bad_archive, store, progress=False, batch_size=16)


def test_corrupt_frame_and_mask_are_reported_and_skipped(bad_archive, bad_store, clean_store):
    store, report = bad_store
    png = str(hko7.frame_path(bad_archive, T_BAD_PNG))
    msk = str(hko7.mask_path(bad_archive, T_BAD_MASK))
    bad = dict(report.corrupt)
    assert sorted(bad) == sorted([png, msk])
    assert "truncated" in bad[png] or "corrupt" in bad[png]
    assert "zlib" in bad[msk]
    assert report.frames_written == len(_times()) - 2
    ds = open_store(store)
    times = ds.indexes["time"]
    assert T_BAD_PNG not in times and T_BAD_MASK not in times
    assert len(times) == len(_times()) - 2
    # every other frame is in its sorted place with its pixels and mask
    expected = open_store(clean_store).drop_sel(time=[T_BAD_PNG, T_BAD_MASK])
    xr.testing.assert_identical(ds.load(), expected.load())


def test_bad_arguments_raise_value_errors(archive, tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        ingest_archive(archive, tmp_path / "s", batch_size=0)
    with pytest.raises(ValueError, match="workers"):
        ingest_archive(archive, tmp_path / "s", workers=0)
    with pytest.raises(ValueError, match="radarPNG"):
        ingest_archive(tmp_path, tmp_path / "s")
    not_a_store = tmp_path / "occupied"
    not_a_store.mkdir()
    (not_a_store / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="occupied"):
        ingest_archive(archive, not_a_store)
    small = create_store(tmp_path / "small", size=32)
    with pytest.raises(ValueError, match="32 x 32"):
        ingest_archive(archive, small)


_KILLABLE = """
import sys, time
import pipeline.ingest as ing
_orig = ing._write_chunk
def _slow(*args, **kwargs):
    n = _orig(*args, **kwargs)
    time.sleep(0.15)
    return n
ing._write_chunk = _slow
ing.ingest_archive(sys.argv[1], sys.argv[2], progress=False, batch_size=16, workers=1)
"""


def _n_commits(store: Path) -> int:
    try:
        return len(store_log(store))
    except Exception:  # not created yet, or caught mid-commit
        return 0


def test_sigkill_mid_ingest_leaves_an_openable_store_that_resumes(archive, clean_store, tmp_path):
    store = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(archive), str(store)])
    try:
        deadline = time.monotonic() + 90
        # "Repository initialized", the empty schema, then at least two batches committed
        while _n_commits(store) < 4:
            assert proc.poll() is None, "ingest finished before it could be killed"
            assert time.monotonic() < deadline, "ingest never committed two batches"
            time.sleep(0.02)
        time.sleep(0.1)  # inside the next batch (each chunk write takes 0.15 s more)
        assert proc.poll() is None, "ingest finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    ds = open_store(store)  # opens: the last commit is complete
    validate_store(ds)
    n = ds.sizes["time"]
    assert 0 < n < len(_times()) and n % 16 == 0
    pd.testing.assert_index_equal(
        ds.indexes["time"], pd.DatetimeIndex(_times()[:n], name="time").astype("datetime64[ns]")
    )

    report = ingest_archive(archive, store, progress=False)
    assert (report.skipped_existing, report.frames_written) == (n, len(_times()) - n)
    _assert_same_store(store, clean_store)


def test_dask_distributed_scheduler_gives_the_same_store(bad_archive, bad_store, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
    ) as cluster:
        report = ingest_archive(
            bad_archive,
            tmp_path / "dist",
            progress=False,
            scheduler_address=cluster.scheduler_address,
            batch_size=32,
        )
    assert sorted(report.corrupt) == sorted(bad_store[1].corrupt)
    assert report.frames_written == len(_times()) - 2
    _assert_same_store(tmp_path / "dist", bad_store[0])


def test_direct_chunk_encoding_is_byte_identical_to_zarr(tmp_path):
    from pipeline.ingest import _fast_codec, _put_chunk, _Sink
    from pipeline.store import StoreWriter, create_store

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (TIME_CHUNK + 5, 480, 480), dtype=np.uint8)
    pixels[:, :200] = 0
    masks = pixels > 100
    trees = []
    for how in ("direct", "zarr"):
        store = create_store(tmp_path / how)
        with StoreWriter(store) as w:
            g = w.prepare(first_time_chunk=0, length=pixels.shape[0])
            codecs = {n: _fast_codec(g[n].metadata.to_dict()) for n in ("reflectivity", "mask")}
            assert None not in codecs.values()  # the store's own layout takes the fast path
            sink = _Sink(w.session.store, codecs)
            for name, data in (("reflectivity", pixels), ("mask", masks)):
                for s in (0, TIME_CHUNK):  # a full chunk, then a partial one
                    block = data[s : s + TIME_CHUNK]
                    if how == "direct":
                        _put_chunk(sink, name, s, np.ascontiguousarray(block))
                    else:
                        g[name][s : s + len(block)] = block
            g["time"][:] = np.arange(pixels.shape[0]) * 360
            w.commit("test")
        trees.append(_tree(store))
    assert sorted(trees[0]) == sorted(trees[1])
    assert [k for k in trees[0] if trees[0][k] != trees[1][k]] == []


def test_cli_ingest_prints_a_json_report_and_rejects_a_non_archive(archive, tmp_path):

    from typer.testing import CliRunner

    from flows.cli import app

    runner = CliRunner()
    store = tmp_path / "cli"
    res = runner.invoke(
        app, ["ingest", str(archive), str(store), "--no-progress", "--end", DAYS[0]]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["frames_written"] == 1  # --end is inclusive: midnight only
    assert summary["static_mask_used"] is True
    assert open_store(store).sizes["time"] == 1
    bad = runner.invoke(app, ["ingest", str(tmp_path), str(tmp_path / "s2"), "--no-progress"])
    assert bad.exit_code == 2
    assert "radarPNG" in bad.output


_ONE_DAY = """
import sys
from pipeline.ingest import ingest_archive
ingest_archive(sys.argv[1], sys.argv[2], start=sys.argv[3], end=sys.argv[3] + " 23:59:59",
               progress=False, workers=1)
"""


def test_concurrent_ingests_into_a_new_store_are_serialised(archive, clean_store, tmp_path):
    store = tmp_path / "shared"  # does not exist yet: both processes race to create it
    procs = [
        subprocess.Popen([sys.executable, "-c", _ONE_DAY, str(archive), str(store), day])
        for day in (DAYS[2], DAYS[0])
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert open_store(store).sizes["time"] == 2 * PER_DAY
    ingest_archive(archive, store, progress=False)
    _assert_same_store(store, clean_store)


_RANGE = """
import sys
from pipeline.ingest import ingest_archive
ingest_archive(sys.argv[1], sys.argv[2], start=sys.argv[3], end=sys.argv[4], progress=False,
               workers=1, batch_size=16)
"""


def test_two_overlapping_ingests_at_once_into_a_local_store_write_every_frame_once(
    archive, clean_store, tmp_path
):
    from pipeline.sources import get_source, new_store_attrs

    store = tmp_path / "overlap"
    create_store(store, attrs=new_store_attrs(get_source("hko7")))  # as an ingest creates it
    ranges = [(DAYS[0], f"{DAYS[1]} 23:59:59"), (DAYS[1], f"{DAYS[2]} 23:59:59")]
    procs = [
        subprocess.Popen([sys.executable, "-c", _RANGE, str(archive), str(store), a, b])
        for a, b in ranges
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    # DAYS[1] (20 frames and the off-grid one) was in both ranges: stored once
    pd.testing.assert_index_equal(
        open_store(store).indexes["time"],
        pd.DatetimeIndex(_times(), name="time").astype("datetime64[ns]"),
    )
    _assert_same_store(store, clean_store)


@pytest.mark.slow  # a 2-process dask cluster: ~15 s
def test_ingest_on_a_process_cluster_writes_in_workers_and_commits_once_per_batch(
    bad_archive, bad_store, tmp_path
):
    """Workers write the chunks into forks of the session (a later day first, then an
    earlier one inserted before it, with a corrupt PNG and mask): one commit per batch and
    the store equals a local-thread ingest."""
    from typer.testing import CliRunner

    from flows.cli import app

    distributed = pytest.importorskip("dask.distributed")
    store = tmp_path / "cluster"
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    ) as cluster:
        address = cluster.scheduler_address
        res = CliRunner().invoke(
            app,
            ["ingest", str(bad_archive), str(store), "--no-progress", "--start", DAYS[1],
             "--scheduler-address", address],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        first = json.loads(res.stdout.strip().splitlines()[-1])
        earlier = ingest_archive(
            bad_archive, store, end=f"{DAYS[0]} 23:59", progress=False, scheduler_address=address
        )
        # the workers read the parent snapshot for the chunks rewritten after the insertion
        reads = cluster.get_client().run(lambda: __import__("pipeline.ingest").ingest
                                         ._parent_arrays.cache_info().currsize)  # fmt: skip
    assert sum(reads.values()) >= 1
    assert (first["commits"], earlier.batches) == (1, 1)
    # the bad mask is found while decoding (the chunks from it are redone), the bad PNG before
    assert (first["frames_written"], first["corrupt"]) == (2 * PER_DAY, 1)
    assert earlier.corrupt == [
        (str(hko7.frame_path(bad_archive, T_BAD_PNG)), earlier.corrupt[0][1])
    ]
    assert earlier.frames_written == PER_DAY - 1
    log = store_log(store)
    assert len(log) == 4  # initialised, empty schema, one commit per ingest
    assert log[0][2] == "ingest: add 19 frames, 2015-06-01 00:00 to 2015-06-01 01:54"
    assert log[1][2] == (
        "ingest: add 40 frames, 2015-06-02 00:00 to 2015-06-03 01:54 (1 unreadable files left out)"
    )
    pd.testing.assert_index_equal(
        open_store(store).indexes["time"], open_store(bad_store[0]).indexes["time"]
    )  # every frame exactly once
    _assert_same_store(store, bad_store[0])


T_RGB, T_SMALL, T_SHORT_MASK, T_FF_MASK, T_BAD_IDAT = (
    pd.Timestamp("2015-06-01 00:06"),
    pd.Timestamp("2015-06-01 00:12"),
    pd.Timestamp("2015-06-02 00:06"),
    pd.Timestamp("2015-06-02 00:12"),
    pd.Timestamp("2015-06-03 00:06"),
)


def test_frames_and_masks_the_fast_decoders_reject_get_the_archive_checks(
    archive, clean_store, tmp_path
):
    from PIL import Image

    root = tmp_path / "odd"
    shutil.copytree(archive, root)
    Image.fromarray(np.zeros((480, 480, 3), np.uint8)).save(hko7.frame_path(root, T_RGB))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(hko7.frame_path(root, T_SMALL))
    hko7.mask_path(root, T_SHORT_MASK).write_bytes(zlib.compress(b"\x01" * 100))
    # mask bytes 255 instead of 1: "nonzero = valid" still holds
    ff = _frame_mask(T_FF_MASK).astype(np.uint8) * 255
    hko7.mask_path(root, T_FF_MASK).write_bytes(zlib.compress(ff.tobytes()))
    png = hko7.frame_path(root, T_BAD_IDAT)
    data = bytearray(png.read_bytes())  # complete file, garbage inside the image data
    data[200:4000] = bytes(3800)
    png.write_bytes(bytes(data))

    report = ingest_archive(root, tmp_path / "store", progress=False)

    bad = dict(report.corrupt)
    paths = {
        T_RGB: str(hko7.frame_path(root, T_RGB)),
        T_SMALL: str(hko7.frame_path(root, T_SMALL)),
        T_SHORT_MASK: str(hko7.mask_path(root, T_SHORT_MASK)),
        T_BAD_IDAT: str(png),
    }
    assert sorted(bad) == sorted(paths.values())
    assert bad[paths[T_RGB]] == "image mode 'RGB', expected 8-bit greyscale 'L'"
    assert bad[paths[T_SMALL]] == "size 32x32, expected 480x480"
    assert bad[paths[T_SHORT_MASK]] == "mask holds 100 bytes, expected 230400 (480 x 480 bool)"
    assert "corrupt" in bad[paths[T_BAD_IDAT]]
    expected = open_store(clean_store).drop_sel(time=list(paths))
    xr.testing.assert_identical(open_store(tmp_path / "store").load(), expected.load())


def test_batches_grow_with_the_store_so_commits_stay_rare():
    from pipeline.ingest import _batch_frames

    assert _batch_frames(512, 0) == 512
    assert _batch_frames(512, 5_000) == 512  # a tenth is less than the minimum
    assert _batch_frames(512, 20_000) == 2_000  # a tenth, a whole number of time chunks
    assert _batch_frames(512, 20_100) == 2_000  # 2,010 rounded down to chunks of 16
    assert _batch_frames(512, 240_000) == 16_384  # capped
    assert _batch_frames(20_000, 240_000) == 20_000  # a larger minimum wins


def test_grown_batches_commit_less_often_and_give_the_same_store(
    archive, clean_store, tmp_path, monkeypatch
):
    import pipeline.ingest as ingest

    monkeypatch.setattr(ingest, "BATCH_GROWTH", 1)  # batches as large as the store
    report = ingest_archive(archive, tmp_path / "grown", progress=False, batch_size=16)
    # 61 frames: 16 (store empty), 16 (store 16), then 32 >= the 29 left: three commits
    assert (report.batches, report.frames_written) == (3, len(_times()))
    _assert_same_store(tmp_path / "grown", clean_store)
