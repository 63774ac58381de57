"""Radar store schema, versions and opening (pipeline.store)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline import geo
from pipeline.store import (
    TIME_CHUNK,
    StoreWriter,
    create_store,
    current_version,
    open_store,
    store_times,
    validate_store,
)
from pipeline.units import pixel_to_dbz

SIZE = 32  # small frames keep these tests fast; the schema is size-agnostic


def _write(store: Path, secs: np.ndarray, pixels: np.ndarray, first_chunk: int) -> None:
    """Rewrite everything from time chunk *first_chunk* (test helper, no ingest)."""
    with StoreWriter(store) as w:
        g = w.prepare(first_time_chunk=first_chunk, length=secs.size)
        s = first_chunk * TIME_CHUNK
        g["reflectivity"][s:] = pixels[s:]
        g["mask"][s:] = pixels[s:] > 0
        g["time"][:] = secs
        w.commit()


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(Path(d, f).relative_to(root)): Path(d, f).read_bytes()
        for d, _, fs in os.walk(root)
        for f in fs
    }


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


def test_a_commit_never_changes_the_files_of_the_previous_version(tmp_path):
    store = create_store(tmp_path / "s", size=SIZE)
    rng = np.random.default_rng(0)
    pix = rng.integers(0, 256, (40, SIZE, SIZE), dtype=np.uint8)
    secs = np.arange(40, dtype=np.int64) * 360
    _write(store, secs[:20], pix[:20], first_chunk=0)
    v2 = current_version(store)
    snapshot = _files(v2)
    # append (rewrites the partly filled chunk 1, shares chunk 0 as a hard link)
    _write(store, secs[:40], pix[:40], first_chunk=1)
    assert current_version(store).name == "v000003.zarr"
    assert v2.exists() and _files(v2) == snapshot
    v3 = current_version(store)
    assert (
        os.stat(v3 / "reflectivity/c.0.0.0").st_ino == os.stat(v2 / "reflectivity/c.0.0.0").st_ino
    )
    np.testing.assert_array_equal(
        open_store(store)["reflectivity"].encoding["dtype"], np.dtype("uint8")
    )
    raw = xr.open_zarr(v3, consolidated=False, mask_and_scale=False)["reflectivity"].values
    np.testing.assert_array_equal(raw, pix)
    # one more commit drops v2 (two versions are kept)
    _write(store, secs[:40], pix[:40], first_chunk=2)
    assert sorted(p.name for p in store.glob("v*.zarr")) == ["v000003.zarr", "v000004.zarr"]


def test_leftovers_of_a_killed_writer_are_ignored_then_removed(tmp_path):
    store = create_store(tmp_path / "s", size=SIZE)
    with StoreWriter(store) as w:
        w.prepare(first_time_chunk=0, length=5)
        partial = w.partial_dir
        # simulate SIGKILL: neither commit nor cleanup happens
        os.rename(partial, store / ".v000002.partial.keep")
    os.rename(store / ".v000002.partial.keep", partial)
    (store / "v000009.zarr").mkdir()  # a renamed but never committed version
    assert open_store(store).sizes["time"] == 0
    with StoreWriter(store):
        pass
    assert not partial.exists()
    assert not (store / "v000009.zarr").exists()
    assert (store / "CURRENT").read_text().strip() == "v000001.zarr"


def test_open_store_opens_a_plain_zarr_store(tmp_path):
    ds = xr.Dataset(
        {"reflectivity": (("time", "y", "x"), np.ones((2, 3, 3), np.float32))},
        coords={"time": pd.date_range("2015-06-01", periods=2, freq="6min")},
    )
    ds.to_zarr(tmp_path / "plain.zarr", consolidated=False, zarr_format=3)
    xr.testing.assert_identical(open_store(tmp_path / "plain.zarr").load(), ds)


def test_open_store_rejects_missing_and_foreign_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        open_store(tmp_path / "nope")
    with pytest.raises(ValueError, match="not a Zarr store"):
        open_store(tmp_path)
    store = create_store(tmp_path / "s", size=SIZE)
    (store / "CURRENT").write_text("../../etc\n")
    with pytest.raises(ValueError, match="etc"):
        open_store(store)


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
