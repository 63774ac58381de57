"""Radar store schema, Icechunk snapshots, opening and migration (pipeline.store)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline import geo
from pipeline.schema import store_dataset
from pipeline.store import (
    TIME_CHUNK,
    StoreWriter,
    create_store,
    open_repo,
    open_store,
    store_log,
    store_times,
    validate_store,
)
from pipeline.units import pixel_to_dbz

SIZE = 32  # small frames keep these tests fast; the schema is size-agnostic


def _write(store: Path, secs: np.ndarray, pixels: np.ndarray, first_chunk: int) -> str:
    """Rewrite everything from time chunk *first_chunk* (test helper, no ingest)."""
    with StoreWriter(store) as w:
        g = w.prepare(first_time_chunk=first_chunk, length=secs.size)
        s = first_chunk * TIME_CHUNK
        g["reflectivity"][s:] = pixels[s:]
        g["mask"][s:] = pixels[s:] > 0
        g["time"][:] = secs
        return w.commit(f"test: {secs.size} frames")


def test_empty_store_opens_with_schema_and_coordinates(tmp_path):
    store = create_store(tmp_path / "s", size=SIZE)
    ds = open_store(store)
    validate_store(ds, size=SIZE)
    assert dict(ds.sizes) == {"time": 0, "y": SIZE, "x": SIZE}
    grid = geo.grid_coords(SIZE)
    np.testing.assert_array_equal(ds["x"].values, grid.x)
    np.testing.assert_array_equal(ds["y"].values, grid.y)
    np.testing.assert_array_equal(ds["lat"].values, grid.lat)
    assert ds["x"].attrs["units"] == "km"
    assert ds["crs"].attrs["grid_mapping_name"] == "azimuthal_equidistant"
    assert ds["crs"].attrs["latitude_of_projection_origin"] == geo.RADAR_LAT
    assert "crs_wkt" in ds["crs"].attrs
    assert ds.attrs["Conventions"] == "CF-1.10"
    assert create_store(store, size=SIZE) == store  # existing store is left alone


def test_every_pixel_value_decodes_to_exact_float32_dbz(tmp_path):
    store = create_store(tmp_path / "s", size=SIZE)
    pixels = np.arange(256, dtype=np.uint8).repeat(4).reshape(1, SIZE, SIZE)
    _write(store, np.array([1_433_116_800]), pixels, first_chunk=0)
    ds = open_store(store)
    got = ds["reflectivity"].values[0]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, pixel_to_dbz(pixels[0]).astype(np.float32))
    assert ds["time"].values[0] == np.datetime64("2015-06-01T00:00:00", "ns")
    assert store_times(store)[0] == pd.Timestamp("2015-06-01")


def test_a_reader_keeps_its_snapshot_while_writers_commit(tmp_path):
    """The blank-data case: a dataset opened before two commits that rewrite its chunks
    still reads its own values (not -10 dBZ and an all-False mask)."""
    store = create_store(tmp_path / "s", size=SIZE)
    rng = np.random.default_rng(0)
    pix = rng.integers(1, 256, (40, SIZE, SIZE), dtype=np.uint8)
    secs = np.arange(40, dtype=np.int64) * 360
    first = _write(store, secs[:20], pix[:20], first_chunk=0)
    reader = open_store(store)
    before = reader["reflectivity"].values.copy()
    np.testing.assert_array_equal(before, pixel_to_dbz(pix[:20]).astype(np.float32))
    _write(store, secs[:40], pix[:40], first_chunk=1)  # rewrites the partly filled chunk 1
    _write(store, secs[:40], 255 - pix[:40], first_chunk=0)  # rewrites every chunk
    np.testing.assert_array_equal(reader["reflectivity"].values, before)
    assert reader["mask"].values.all()  # pixels > 0 everywhere
    # the latest snapshot has the new values, the first one opens by its id
    latest = open_store(store)
    np.testing.assert_array_equal(
        latest["reflectivity"].values, pixel_to_dbz(255 - pix).astype(np.float32)
    )
    xr.testing.assert_identical(open_store(store, snapshot=first).load(), reader.load())
    messages = [m for _, _, m in store_log(store)]
    assert messages[:3] == ["test: 40 frames", "test: 40 frames", "test: 20 frames"]
    assert messages[3] == f"create an empty radar store ({SIZE} x {SIZE} frames)"


def test_plain_xarray_opens_the_store_through_icechunk(tmp_path):
    store = create_store(tmp_path / "s", size=SIZE)
    pix = np.arange(3 * SIZE * SIZE, dtype=np.int64).reshape(3, SIZE, SIZE).astype(np.uint8)
    _write(store, np.arange(3, dtype=np.int64) * 360, pix, first_chunk=0)
    session = open_repo(store).readonly_session("main")
    ds = xr.open_zarr(session.store, consolidated=False)
    np.testing.assert_allclose(ds["reflectivity"].values, pixel_to_dbz(pix), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(
        ds["time"].values, pd.date_range("1970-01-01", periods=3, freq="6min").values
    )


def _old_layout_store(path: Path, pix: np.ndarray, secs: np.ndarray) -> None:
    """A store as written before the Icechunk engine: vNNNNNN.zarr groups and CURRENT."""
    import zarr

    from pipeline.store import _write_schema

    vdir = path / "v000002.zarr"
    path.mkdir()
    _write_schema(str(vdir), SIZE)
    g = zarr.open_group(str(vdir), mode="r+")
    for name, data in (("reflectivity", pix), ("mask", pix > 0)):
        g[name].resize(data.shape)
        g[name][:] = data
    g["time"].resize(secs.shape)
    g["time"][:] = secs
    (path / "CURRENT").write_text("v000002.zarr\n")


def test_an_old_layout_store_is_refused_naming_migrate_and_migrates(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app
    from pipeline.store_migrate import migrate_store

    old = tmp_path / "old"
    rng = np.random.default_rng(4)
    pix = rng.integers(0, 256, (21, SIZE, SIZE), dtype=np.uint8)
    secs = np.arange(21, dtype=np.int64) * 360
    _old_layout_store(old, pix, secs)
    with pytest.raises(ValueError, match=f"nowcast store migrate {old} NEW"):
        open_store(old)
    with pytest.raises(ValueError, match="nowcast store migrate"):
        StoreWriter(old).__enter__()
    assert migrate_store(old, tmp_path / "new") == 21
    ds = open_store(tmp_path / "new")
    validate_store(ds, size=SIZE)
    np.testing.assert_array_equal(ds["reflectivity"].values, pixel_to_dbz(pix).astype(np.float32))
    np.testing.assert_array_equal(ds["mask"].values, pix > 0)
    res = CliRunner().invoke(app, ["store", "log", str(tmp_path / "new")])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert "migrate 21 frames from the old-layout store" in lines[0]
    assert len(lines) == 3  # migration, empty schema, "Repository initialized"


def test_open_store_opens_a_plain_zarr_store(tmp_path):
    pix = np.arange(2 * SIZE * SIZE, dtype=np.int64).reshape(2, SIZE, SIZE) % 256
    times = pd.date_range("2015-06-01", periods=2, freq="6min")
    ds = store_dataset(times, pixel_to_dbz(pix), pix > 3)
    ds.to_zarr(tmp_path / "plain.zarr", consolidated=False, zarr_format=3)
    back = open_store(tmp_path / "plain.zarr").load()
    xr.testing.assert_identical(back, ds)
    validate_store(back, size=SIZE)


def test_open_store_rejects_missing_and_foreign_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        open_store(tmp_path / "nope")
    with pytest.raises(ValueError, match="not a Zarr store"):
        open_store(tmp_path)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "CURRENT").write_text("../../etc\n")
    with pytest.raises(ValueError, match="old layout"):
        open_store(tmp_path / "odd")


def test_create_store_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(ValueError, match="not an empty directory"):
        create_store(tmp_path)


def test_validate_store_names_the_violation(tmp_path):
    store = create_store(tmp_path / "s", size=SIZE)
    pix = np.zeros((3, SIZE, SIZE), np.uint8)
    _write(store, np.array([0, 720, 360]), pix, first_chunk=0)  # unsorted on purpose
    ds = open_store(store)
    with pytest.raises(ValueError, match="strictly increasing"):
        validate_store(ds, size=SIZE, name="s")
    with pytest.raises(ValueError, match="expected 480 x 480"):
        validate_store(ds.isel(time=[0, 2]), name="s")
    with pytest.raises(ValueError, match="missing variable 'mask'"):
        validate_store(ds.drop_vars("mask"), size=SIZE)


def test_save_and_reopen_round_trip_keeps_values_attrs_and_uint8_encoding(tmp_path):
    store = create_store(tmp_path / "s", size=SIZE)
    rng = np.random.default_rng(1)
    pix = rng.integers(0, 256, (20, SIZE, SIZE), dtype=np.uint8)
    _write(store, np.arange(20, dtype=np.int64) * 360, pix, first_chunk=0)
    ds = open_store(store)
    with warnings.catch_warnings():  # uint8 pixels have no NaN to encode, by design
        warnings.filterwarnings("ignore", "saving variable", xr.SerializationWarning)
        ds.to_zarr(tmp_path / "copy.zarr", consolidated=False, zarr_format=3)
    back = open_store(tmp_path / "copy.zarr")
    xr.testing.assert_identical(back.load(), ds.load())
    raw = xr.open_zarr(tmp_path / "copy.zarr", consolidated=False, mask_and_scale=False)
    assert raw["reflectivity"].dtype == np.uint8
    np.testing.assert_array_equal(raw["reflectivity"].values, pix)


def test_open_store_refuses_chunks_none(tmp_path):
    store = create_store(tmp_path / "s", size=SIZE)
    with pytest.raises(ValueError, match="chunks"):
        open_store(store, chunks=None)
