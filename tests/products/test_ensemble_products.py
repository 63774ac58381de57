"""Ensemble products: CF NetCDF of known probabilities, `nowcast forecast --members`, publishing."""

from __future__ import annotations

import json

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app
from nowcast.probability import debiased_probability
from pipeline.units import dbz_to_normalized, rainrate_to_dbz, rainrate_to_normalized
from products.archive import append_forecast_zarr, open_forecast_zarr
from products.cf import check_cf, open_forecast_netcdf, to_cf, write_forecast_netcdf
from products.prob_maps import PROBABILITY_NAME, probability_colormap
from products.site import publish_run
from tests.products.conftest import (
    HAND_RAIN_MMH,
    build_ensemble_forecast,
    build_forecast,
    build_observations,
)
from tests.products.test_cycle import T0, _small_store

BAND_P = np.array([0.0, 1 / 3, 2 / 3, 1.0])
"""P(>= 0.5) and P(>= 2 mm/h) in the 4 column bands of the hand-built ensemble."""


def _bands(field: np.ndarray) -> np.ndarray:
    """``(..., 4)`` values of a ``(..., H, 80)`` field in the 4 column bands (checked uniform)."""
    parts = np.split(field, 4, axis=-1)
    for part in parts:
        assert np.ptp(part, axis=(-2, -1)).max() == 0.0
    return np.stack([p[..., 0, 0] for p in parts], axis=-1)


def test_hand_built_ensemble_round_trips_with_known_probabilities(tmp_path):
    fc = build_ensemble_forecast(keep_members=True)
    path = write_forecast_netcdf(fc, tmp_path / "ens.nc")
    assert check_cf(path) == []
    back = open_forecast_netcdf(path)
    xr.testing.assert_identical(back, to_cf(fc))
    prob = back[PROBABILITY_NAME]
    assert prob.dims == ("lead_time", "threshold", "y", "x")
    assert back["threshold"].values.tolist() == [0.5, 2.0, 5.0, 10.0, 30.0]
    bands = _bands(prob.values)  # (lead, threshold, band)
    for k, thr in enumerate(back["threshold"].values):
        expected = BAND_P if thr <= HAND_RAIN_MMH else np.zeros(4)
        np.testing.assert_allclose(bands[:, k], np.broadcast_to(expected, (3, 4)), atol=1e-6)
    # median of (wet, dry, dry) is dry, of (wet, wet, dry) wet
    med = _bands(back["reflectivity_percentile"].sel(percentile=50.0).values)
    wet_dbz = float(rainrate_to_dbz(HAND_RAIN_MMH))
    np.testing.assert_allclose(med[0], [-10.0, -10.0, wet_dbz, wet_dbz], atol=1e-3)
    # the deterministic field is the ensemble mean: k/3 of the wet value in p/255
    mean_p = _bands(dbz_to_normalized(back["reflectivity"].values))
    wet_p = float(rainrate_to_normalized(HAND_RAIN_MMH))
    np.testing.assert_allclose(mean_p[0], BAND_P * wet_p, atol=1e-5)
    assert back["reflectivity"].attrs["cell_methods"] == "realization: mean"
    assert back["reflectivity_members"].dims == ("realization", "lead_time", "y", "x")
    assert back.attrs["ensemble_members"] == 3


def test_cf_attributes_of_the_ensemble_variables(tmp_path):
    path = write_forecast_netcdf(build_ensemble_forecast(keep_members=True), tmp_path / "e.nc")
    with netCDF4.Dataset(path) as nc:
        prob = nc[PROBABILITY_NAME]
        assert prob.units == "1"
        assert prob.grid_mapping == "crs"
        assert set(prob.coordinates.split()) == {"lat", "lon", "valid_time", "issue_time"}
        thr = nc["threshold"]
        assert (thr.standard_name, thr.units) == ("rainfall_rate", "mm h-1")
        assert thr.spp__relative_to_threshold == "greater_than_or_equal_to"
        real = nc["realization"]
        assert (real.standard_name, real.units) == ("realization", "1")
        assert nc["percentile"].units == "%"


def test_check_cf_flags_bad_probability_units_threshold_relation_and_ancillaries(tmp_path):
    path = write_forecast_netcdf(build_ensemble_forecast(percentiles=None), tmp_path / "e.nc")
    with netCDF4.Dataset(path, "a") as nc:
        nc[PROBABILITY_NAME].units = "%"
        nc[PROBABILITY_NAME].ancillary_variables = "probability_count"
        nc["threshold"].spp__relative_to_threshold = "above"
    problems = check_cf(path)
    assert f"{PROBABILITY_NAME}: a probability has units '%'; expected '1'" in problems
    assert (
        f"{PROBABILITY_NAME}: ancillary_variables names 'probability_count', "
        "which is not a variable" in problems
    )
    assert any(p.startswith("threshold: spp__relative_to_threshold 'above'") for p in problems)
    assert len(problems) == 3, problems


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """40 x 40 store of a moving 40 dBZ square, 8 frames 12:00 .. 12:42."""
    return _small_store(tmp_path_factory.mktemp("ens") / "s.zarr")


def _forecast(store, out, *extra):
    args = ["forecast", "--store", store, "--baseline", "persistence", "--leads", "6,12,18"]
    res = CliRunner().invoke(app, [str(a) for a in [*args, "--out", out, *extra]])
    assert res.exit_code == 0, res.output
    return open_forecast_netcdf(out)


def test_cli_forecast_members_gives_quarter_probabilities_reproducible_by_seed(store, tmp_path):
    a = _forecast(
        store,
        tmp_path / "a.nc",
        "--members",
        "4",
        "--seed",
        "1",
        "--keep-members",
        "--percentiles",
        "25,50",
        "--probability",
        "fraction",
    )
    b = _forecast(store, tmp_path / "b.nc", "--members", "4", "--seed", "1")
    c = _forecast(store, tmp_path / "c.nc", "--members", "4", "--seed", "2")
    assert check_cf(tmp_path / "a.nc") == []
    prob = a[PROBABILITY_NAME].values
    assert set(np.unique(prob).tolist()) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert ((prob > 0) & (prob < 1)).any()  # members differ: not 4 copies
    # the probabilities are the fraction of the written members at or above each threshold
    members = dbz_to_normalized(a["reflectivity_members"].values)  # (4, L, H, W)
    for k, thr in enumerate(a["threshold"].values):
        hits = (members >= np.float32(rainrate_to_normalized(thr))).mean(axis=0)
        np.testing.assert_array_equal(prob[:, k], hits)
    np.testing.assert_allclose(
        dbz_to_normalized(a["reflectivity"].values), members.mean(axis=0), atol=1e-5
    )
    np.testing.assert_allclose(
        a["reflectivity_percentile"].values,
        np.moveaxis(np.percentile(a["reflectivity_members"].values, [25, 50], axis=0), 0, 1),
        atol=1e-3,
    )
    # the default is the debiased estimate of the same members' counts, frame by frame
    counts = np.round(prob * 4).astype(int)  # (L, K, H, W)
    np.testing.assert_allclose(
        b[PROBABILITY_NAME].values, debiased_probability(counts, 4), atol=1e-6
    )
    assert "E[p | k]" in b[PROBABILITY_NAME].attrs["comment"]
    assert not np.array_equal(c[PROBABILITY_NAME].values, b[PROBABILITY_NAME].values)
    assert (a.attrs["ensemble_members"], a.attrs["ensemble_seed"]) == (4, 1)
    assert "reflectivity_members" not in b


def test_cli_forecast_without_members_is_unchanged(store, tmp_path):
    fc = _forecast(store, tmp_path / "d.nc")
    assert sorted(fc.data_vars) == ["rainfall_rate", "reflectivity"]
    assert "ensemble_members" not in fc.attrs and "threshold" not in fc.coords


def test_cycle_with_members_publishes_probabilities(store, tmp_path):
    from products.cycle import ForecastSettings, forecast_cycle

    settings = ForecastSettings(
        store=str(store),
        site=str(tmp_path / "site"),
        baseline="persistence",
        lead_minutes=(6, 12),
        members=2,
        seed=5,
        coastline_resolution="110m",
    )
    first = forecast_cycle(settings, now=T0 + pd.Timedelta("30min"))
    assert first.status == "ok", first
    res = forecast_cycle(settings, now=T0 + pd.Timedelta("42min"))
    assert res.status == "ok", res
    assert res.verified_issue_time == "2015-06-01T12:30:00Z"  # read back from the archive
    manifest = json.loads((tmp_path / "site" / "runs" / "20150601T1242Z" / "run.json").read_text())
    assert manifest["ensemble"]["members"] == 2 and manifest["ensemble"]["seed"] == 5
    fz = open_forecast_zarr(tmp_path / "site" / "forecasts.zarr")
    prob = fz[PROBABILITY_NAME]  # (debiased) probabilities of 0, 1 or 2 of 2 members
    assert prob.dims[-2:] == ("y", "x")
    assert float(prob.min()) == 0.0 and float(prob.max()) <= 1.0
    frame = prob.values.reshape(-1, *prob.shape[-2:])[-1]
    assert len(np.unique(frame)) <= 3  # one value per count in a frame
    fz.close()
    with pytest.raises(ValueError, match="members must be >= 1"):
        ForecastSettings(store="s", site="t", baseline="persistence", members=0)


def test_cycle_with_a_calibration_publishes_its_probabilities(store, tmp_path):
    from nowcast.calibration import ProbabilityCalibration
    from pipeline.units import RAIN_THRESHOLDS_MMH
    from products.cycle import ForecastSettings, forecast_cycle

    k = len(RAIN_THRESHOLDS_MMH)
    cal = ProbabilityCalibration(
        thresholds_mmh=tuple(RAIN_THRESHOLDS_MMH),
        n_members=2,
        lead_range=(6.0, 12.0),
        coefficients=np.tile([-0.3, 0.7, 0.0, -0.5, 0.0, 0.0, 0.0, 0.0, 0.0], (k, 1)),
    )
    path = cal.save(tmp_path / "calibration.nc")
    common = dict(store=str(store), baseline="persistence", lead_minutes=(6, 12), members=2)
    settings = ForecastSettings(
        site=str(tmp_path / "site"), calibration=str(path), coastline_resolution="110m", **common
    )
    assert forecast_cycle(settings, now=T0 + pd.Timedelta("30min")).status == "ok"
    fz = open_forecast_zarr(tmp_path / "site" / "forecasts.zarr")
    prob = fz[PROBABILITY_NAME].load()
    fz.close()
    for j, lead in enumerate((6, 12)):
        for i, t in enumerate(RAIN_THRESHOLDS_MMH):
            values = np.unique(prob.values.reshape(-1, 2, k, *prob.shape[-2:])[-1, j, i])
            table = cal.table(t, lead).astype(np.float32)  # k = 0, 1, 2 members
            assert np.all(np.isin(values, table)), (lead, t, values, table)
    with pytest.raises(ValueError, match="a calibration needs members"):
        ForecastSettings(site="t", calibration=str(path), **{**common, "members": None})


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    site = tmp_path_factory.mktemp("ens_site")
    publish_run(
        build_ensemble_forecast(leads=(6, 12)),
        build_observations("2026-06-01T12:00", n=2),
        site,
        n_obs_frames=2,
        coastline_resolution="110m",
        map_size_px=(320, 300),
    )
    return site


def test_publish_writes_probability_maps_and_lists_the_layers(published):
    run = published / "runs" / "20260601T1200Z"
    manifest = json.loads((run / "run.json").read_text())
    layers = manifest["layers"]
    assert [(la["id"], la["label"]) for la in layers] == [
        ("forecast", "Forecast (ensemble mean)"),
        ("p0.5", "P(rain \u2265 0.5 mm/h)"),
        ("p2", "P(rain \u2265 2 mm/h)"),
        ("p5", "P(rain \u2265 5 mm/h)"),
        ("p10", "P(rain \u2265 10 mm/h)"),
        ("p30", "P(rain \u2265 30 mm/h)"),
    ]
    p2 = layers[2]
    assert [f["image"] for f in p2["frames"]] == [
        "maps/prob_2mmh_006.png",
        "maps/prob_2mmh_012.png",
    ]
    assert [f["lead_time"] for f in p2["frames"]] == [6, 12]
    assert manifest["ensemble"] == {"members": 3, "seed": 7, "method": "hand-built test ensemble"}
    data = (published / "data.js").read_text()
    assert "maps/prob_30mmh_012.png" in data
    # colours of the map (left of the colour bar): P = 1 in the eastern band is the darkest
    # class, P = 1/3 and 2/3 their classes; P(>= 5 mm/h) = 0 everywhere: none of them
    cmap, _ = probability_colormap()
    rgb = [tuple(int(v) for v in cmap(i, bytes=True)[:3]) for i in range(cmap.N)]
    rgb[-1] = tuple(int(round(v * 255)) for v in cmap.get_over()[:3])  # the class 0.9..1
    expected = {rgb[2], rgb[5], rgb[8]}  # classes [0.3, 0.4), [0.6, 0.7), [0.9, 1]

    def map_colours(name):
        with Image.open(run / "maps" / name) as im:
            assert im.size == (320, 300)
            pixels = np.asarray(im.convert("RGB"))[:, : int(0.8 * 320)]
        return {tuple(int(c) for c in px) for px in pixels.reshape(-1, 3)}

    assert map_colours("prob_2mmh_012.png") & set(rgb) == expected
    assert map_colours("prob_5mmh_012.png") & set(rgb) == set()
    fz = open_forecast_zarr(published / "forecasts.zarr")
    np.testing.assert_allclose(
        _bands(fz[PROBABILITY_NAME].values[0, :, 1]), [BAND_P] * 2, atol=1e-6
    )
    fz.close()


def test_deterministic_run_has_no_layers(tmp_path):
    publish_run(
        build_forecast("2026-06-01T12:00", leads=(6,)),
        build_observations("2026-06-01T12:00", n=1),
        tmp_path,
        n_obs_frames=1,
        coastline_resolution="110m",
        map_size_px=(320, 300),
    )
    manifest = json.loads((tmp_path / "runs" / "20260601T1200Z" / "run.json").read_text())
    assert "layers" not in manifest and "ensemble" not in manifest
    assert not list((tmp_path / "runs" / "20260601T1200Z" / "maps").glob("prob_*"))


def test_archive_keeps_its_kind_of_forecast(tmp_path):
    det, ens = tmp_path / "det.zarr", tmp_path / "ens.zarr"
    append_forecast_zarr(build_forecast("2026-06-01T12:00", leads=(6, 12, 18)), det)
    append_forecast_zarr(build_ensemble_forecast("2026-06-01T12:06"), det)
    with open_forecast_zarr(det) as fz:
        assert PROBABILITY_NAME not in fz and fz.sizes["issue_time"] == 2
    append_forecast_zarr(build_ensemble_forecast("2026-06-01T12:00"), ens)
    append_forecast_zarr(build_forecast("2026-06-01T12:06", leads=(6, 12, 18)), ens)
    with open_forecast_zarr(ens) as fz:
        prob = fz[PROBABILITY_NAME].values
    assert np.isnan(prob[1]).all() and np.isfinite(prob[0]).all()
    other = build_ensemble_forecast("2026-06-01T12:12").isel(threshold=[0, 1])
    with pytest.raises(
        ValueError, match=r"probability thresholds 0.5, 2 mm/h, the archive 0.5, 2, 5, 10, 30 mm/h"
    ):
        append_forecast_zarr(other, ens)


def test_flow_parameters_carry_the_members(tmp_path):
    from flows.serve import _flow_parameters

    params = _flow_parameters(tmp_path, tmp_path / "site", None, "steps", [6], members=5, seed=2)
    assert (params["members"], params["seed"], params["lead_minutes"]) == (5, 2, [6])
    assert "members" not in _flow_parameters(tmp_path, tmp_path, None, "steps", None, members=None)
    with pytest.raises(ValueError, match="members must be >= 1"):
        _flow_parameters(tmp_path, tmp_path, None, "steps", None, members=0)
