"""Radar sources: files written in each published format, ingested with ``nowcast ingest --source``.

Every test writes its own files (tests/pipeline/radar_formats.py), ingests them through
the real CLI into a real store and checks values known in advance: a pixel's dBZ and
mask (no data invalid, undetect valid at the floor), the grid's corner coordinates and
the times. A file that is not what its source expects is named and skipped.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline import units
from pipeline.sources import SOURCE_NAMES, get_source
from pipeline.store import open_store, validate_store
from tests.pipeline import radar_formats as rf

MP_A, MP_B = 200.0, 1.6


def _ingest(root, store, name):
    from flows.cli import app

    res = CliRunner().invoke(
        app, ["ingest", str(root), str(store), "--source", name, "--no-progress", "--threads", "1"]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    skipped = [line for line in res.output.splitlines() if line.startswith("skipped ")]
    return report, skipped


def _px_dbz(dbz: float) -> float:
    """The dBZ the store holds for *dbz* (its 8-bit pixel)."""
    return float(np.float32(units.pixel_to_dbz(units.dbz_to_pixel(dbz))))


def test_get_source_names_and_unknown():
    assert [get_source(n).name for n in SOURCE_NAMES] == list(SOURCE_NAMES)
    with pytest.raises(ValueError, match="valid sources: hko7, odim, knmi, bom, mch, fmi"):
        get_source("nexrad")


def test_odim_ingest_values_mask_grid_times(tmp_path):
    root = tmp_path / "odim"
    raw = np.zeros((20, 30), np.uint8)  # undetect everywhere ...
    raw[:3] = 255  # ... no data on the three northern rows
    raw[10:12, 5:8] = 150  # 150 * 0.5 - 32 = 43 dBZ
    rf.write_odim(root / "2023" / "comp_a.h5", raw, "20230601120000")
    rate = np.zeros((20, 30), np.uint16)
    rate[:, :2] = 65535
    rate[15, 20] = 1000  # 1000 * 0.01 = 10 mm/h
    rf.write_odim(
        root / "2023" / "comp_b.h5", rate, "20230601121500", quantity="RATE",
        gain=0.01, offset=0.0, nodata=65535, undetect=0,
    )  # fmt: skip
    rf.write_odim(root / "polar.h5", raw, "20230601123000", obj="PVOL")
    (root / "broken.h5").write_bytes(b"not an hdf5 file")
    report, skipped = _ingest(root, tmp_path / "radar.zarr", "odim")
    assert report["frames_written"] == 2
    assert sorted(s.split(":")[0] for s in skipped) == [
        f"skipped {root / 'broken.h5'}",
        f"skipped {root / 'polar.h5'}",
    ]
    ds = open_store(tmp_path / "radar.zarr")
    validate_store(ds, size=None)
    assert list(ds.indexes["time"]) == list(
        pd.to_datetime(["2023-06-01 12:00", "2023-06-01 12:15"])
    )
    assert ds.sizes == {"time": 2, "y": 20, "x": 30}
    refl, mask = ds["reflectivity"].values, ds["mask"].values
    assert refl[0, 10, 5] == _px_dbz(43.0) and mask[0, 10, 5]
    assert refl[0, 5, 5] == np.float32(-10.0) and mask[0, 5, 5]  # undetect: valid floor
    assert not mask[0, :3].any()  # no data: invalid
    expected = 10 * np.log10(MP_A) + 10 * MP_B * np.log10(10.0)  # 39.01 dBZ
    assert refl[1, 15, 20] == _px_dbz(expected) and mask[1, 15, 20]
    assert not mask[1, :, :2].any() and mask[1, :, 2:].all()
    # corners: x from 1000 km, 2 km pixels; y from -1000 km down; CF mapping of the source
    assert ds["x"].values[0] == pytest.approx(1001.0) and ds["x"].values[-1] == pytest.approx(
        1059.0
    )
    assert ds["y"].values[0] == pytest.approx(-1001.0) and ds["y"].values[-1] == pytest.approx(
        -1039.0
    )
    assert ds["crs"].attrs["grid_mapping_name"] == "lambert_azimuthal_equal_area"
    import pyproj

    lon, lat = pyproj.Transformer.from_crs(
        pyproj.CRS.from_proj4(rf.ODIM_PROJ), "EPSG:4326", always_xy=True
    ).transform(1001e3, -1001e3)
    assert float(ds["lat"][0, 0]) == pytest.approx(lat, abs=1e-6)
    assert float(ds["lon"][0, 0]) == pytest.approx(lon, abs=1e-6)
    # a second run writes nothing
    again, _ = _ingest(root, tmp_path / "radar.zarr", "odim")
    assert again["frames_written"] == 0 and again["skipped_existing"] == 2


def test_odim_acrr_and_zr_from_how(tmp_path):
    raw = np.zeros((8, 8), np.uint16)
    raw[4, 4] = 200  # 2.00 mm in 15 min = 8 mm/h
    path = rf.write_odim(
        tmp_path / "acc.h5", raw, "20230601120000", quantity="ACRR", gain=0.01, offset=0.0,
        nodata=65535, undetect=0, accumulation=("20230601114500", "20230601120000"),
        zr=(300.0, 1.5),
    )  # fmt: skip
    frame = get_source("odim").read(path)
    assert frame.unit == "mm" and frame.accutime == 15.0
    dbz, valid = frame.to_dbz()
    assert dbz[4, 4] == pytest.approx(10 * np.log10(300.0) + 15 * np.log10(8.0), abs=1e-4)
    assert dbz[0, 0] == -10.0 and valid.all()


def test_knmi_ingest(tmp_path):
    root = tmp_path / "knmi"
    k = np.zeros((765, 700), np.uint16)
    k[:5] = 65535
    k[100, 100] = 100  # 1.00 mm in 5 min = 12 mm/h
    rf.write_knmi(root / "2019" / "01" / "RAD_NL25_RAC_MFBS_EM_5min_201901010005_NL.h5", k)
    rf.write_knmi(root / "2019" / "01" / "RAD_NL25_RAP_5min_201901010010.h5", k)
    (root / "RAD_NL25_RAC_5min_201913010000_NL.h5").write_bytes(b"x")  # month 13
    report, skipped = _ingest(root, tmp_path / "radar.zarr", "knmi")
    assert report["frames_written"] == 2 and len(skipped) == 1 and "201913010000" in skipped[0]
    ds = open_store(tmp_path / "radar.zarr")
    assert list(ds.indexes["time"]) == list(
        pd.to_datetime(["2019-01-01 00:05", "2019-01-01 00:10"])
    )
    expected = 10 * np.log10(MP_A) + 10 * MP_B * np.log10(12.0)
    assert float(ds["reflectivity"][0, 100, 100]) == _px_dbz(expected)
    assert not ds["mask"][0, :5].values.any() and bool(ds["mask"][0, 5, 0])
    assert ds["x"].values[0] == pytest.approx(0.5) and ds["y"].values[0] == pytest.approx(
        -3650.48, abs=1e-2
    )
    # the NL grid's south-west corner pixel lies near 49.37 N, 0.0 E
    assert float(ds["lat"][-1, 0]) == pytest.approx(49.37, abs=0.02)
    assert float(ds["lon"][-1, 0]) == pytest.approx(0.0, abs=0.03)


def test_bom_ingest(tmp_path):
    root = tmp_path / "bom"
    b = np.zeros((50, 60))
    b[:2] = np.nan
    b[20, 30] = 2.0  # 2 mm in 10 min = 12 mm/h
    rf.write_bom(root / "2_20180101_001000.prcp-c10.nc", b, "2018-01-01T00:10:00")
    (root / "2_20180101_002000.prcp-c10.nc").write_text("not netcdf")
    report, skipped = _ingest(root, tmp_path / "radar.zarr", "bom")
    assert report["frames_written"] == 1 and len(skipped) == 1 and "002000" in skipped[0]
    ds = open_store(tmp_path / "radar.zarr")
    assert ds.indexes["time"][0] == pd.Timestamp("2018-01-01 00:10")
    expected = 10 * np.log10(MP_A) + 10 * MP_B * np.log10(12.0)
    assert float(ds["reflectivity"][0, 20, 30]) == _px_dbz(expected)  # north-up after the flip
    assert not ds["mask"][0, :2].values.any() and bool(ds["mask"][0, 5, 5])
    assert ds["x"].values[0] == pytest.approx(-99.0) and ds["y"].values[0] == pytest.approx(99.0)
    assert ds["crs"].attrs["grid_mapping_name"] == "albers_conical_equal_area"


def test_mch_ingest(tmp_path):
    root = tmp_path / "mch"
    dn = np.zeros((640, 710), np.uint8)
    dn[:4] = 255
    dn[300, 300] = 100
    rf.write_mch_gif(root / "AQC231521200V_00005.801.gif", dn)  # 2023, day 152 = 1 June
    report, skipped = _ingest(root, tmp_path / "radar.zarr", "mch")
    assert report["frames_written"] == 1 and not skipped
    ds = open_store(tmp_path / "radar.zarr")
    assert ds.indexes["time"][0] == pd.Timestamp("2023-06-01 12:00")
    depth = (10.0 ** ((100 - 71.5) / 20.0) / 316.0) ** (1 / 1.5)  # pysteps' DN table, mm / 5 min
    expected = 10 * np.log10(316.0) + 15 * np.log10(depth * 12.0)
    assert float(ds["reflectivity"][0, 300, 300]) == _px_dbz(expected)
    assert not ds["mask"][0, :4].values.any() and bool(ds["mask"][0, 4, 0])
    assert ds["x"].values[0] == pytest.approx(255.5) and ds["y"].values[0] == pytest.approx(479.5)


def test_fmi_ingest(tmp_path):
    root = tmp_path / "fmi"
    p = np.zeros((40, 30), np.uint8)
    p[:2] = 255
    p[20, 10] = 150  # (150 - 64) / 2 = 43 dBZ
    name = "202306011200_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"
    rf.write_fmi(root / "20230601" / name, p, "202306011200", 100_000.0, 200_000.0)
    (root / "fmi_composite.pgm.gz").write_bytes(b"")
    report, skipped = _ingest(root, tmp_path / "radar.zarr", "fmi")
    assert report["frames_written"] == 1
    assert skipped == [f"skipped {root / 'fmi_composite.pgm.gz'}: not named like a fmi file "
                       f"(expected {get_source('fmi').expected})"]  # fmt: skip
    ds = open_store(tmp_path / "radar.zarr")
    assert float(ds["reflectivity"][0, 20, 10]) == _px_dbz(43.0)
    assert float(ds["reflectivity"][0, 5, 5]) == -10.0 and bool(ds["mask"][0, 5, 5])  # -32 dBZ
    assert not ds["mask"][0, :2].values.any()
    assert ds["x"].values[0] == pytest.approx(100.5, abs=1e-3)
    assert ds["y"].values[0] == pytest.approx(239.5, abs=1e-3)


def test_file_on_another_grid_is_skipped(tmp_path):
    root = tmp_path / "odim"
    rf.write_odim(root / "a.h5", np.zeros((20, 30), np.uint8), "20230601120000")
    rf.write_odim(root / "b.h5", np.zeros((20, 30), np.uint8), "20230601121500", x0_m=0.0)
    report, skipped = _ingest(root, tmp_path / "radar.zarr", "odim")
    assert report["frames_written"] == 1
    assert len(skipped) == 1 and "b.h5" in skipped[0] and "differs from the store's" in skipped[0]


@pytest.mark.parametrize(
    ("name", "filename", "time"),
    [
        ("knmi", "RAD_NL25_RAC_MFBS_EM_5min_202306011215_NL.h5", "2023-06-01 12:15"),
        ("bom", "2_20230601_121000.prcp-c10.nc", "2023-06-01 12:10"),
        ("mch", "AQC231521215V_00005.801.gif", "2023-06-01 12:15"),
        ("fmi", "202306011215_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz", "2023-06-01 12:15"),
    ],
)
def test_valid_time_from_the_file_name(name, filename, time):
    from pipeline.sources import get_source

    assert get_source(name).file_time(f"/archive/{filename}") == pd.Timestamp(time)


@pytest.mark.parametrize(("name", "article"), [("knmi", "a"), ("bom", "a"), ("mch", "an")])
def test_a_name_the_source_does_not_use_is_named_in_the_error(name, article):
    from pipeline.sources import get_source
    from pipeline.sources.base import SourceFileError

    with pytest.raises(SourceFileError, match=f"not {article} {name} file name"):
        get_source(name).file_time("/archive/radar.dat")
