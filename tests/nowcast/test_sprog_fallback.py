"""S-PROG on fields it cannot model falls back to extrapolation, logged and in the product."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from nowcast.baselines import get_baseline

T_IN = torch.tensor([[-24.0, -18.0, -12.0, -6.0, 0.0]])
T_OUT = torch.tensor([[6.0, 12.0, 18.0]])


def _sprog(frames):
    """Run S-PROG on ``frames (5, 80, 80)`` p/255; returns (baseline, forecast (3, 80, 80))."""
    sp = get_baseline("sprog", cadence_minutes=6)
    x = torch.tensor(np.stack(frames).astype(np.float32))[None, :, None]
    y = sp(x, T_IN, T_OUT)
    assert tuple(y.shape) == (1, 3, 1, 80, 80)
    assert torch.isfinite(y).all()
    return sp, y[0, :, 0].numpy()


def _cell(rng) -> np.ndarray:
    f = np.zeros((80, 80), np.float32)
    f[20:50, 30:60] = 0.5 + 0.1 * rng.random((30, 30))
    return f


def test_frozen_field_is_extrapolated_unchanged(caplog):
    f = _cell(np.random.default_rng(0))
    with caplog.at_level(logging.WARNING, logger="nowcast.baselines"):
        sp, y = _sprog([f] * 5)
    expected = "sprog fell back to extrapolation: sample 0: frozen field"
    assert sp.last_fallback.startswith(expected)
    assert any(expected in r.getMessage() for r in caplog.records)
    for lead in range(3):  # no motion: the last frame at every lead
        np.testing.assert_allclose(y[lead], f, atol=1e-3)


def test_single_pixel_echo_is_extrapolated():
    p = np.zeros((80, 80), np.float32)
    p[40, 40] = 0.6
    sp, y = _sprog([p] * 5)
    assert sp.last_fallback.startswith("sprog fell back to extrapolation: sample 0:")
    np.testing.assert_allclose(y, np.broadcast_to(p, y.shape), atol=1e-6)


def test_moving_single_pixel_falls_back_instead_of_index_error():
    frames = []
    for k in range(5):
        p = np.zeros((80, 80), np.float32)
        p[40, 30 + k] = 0.6
        frames.append(p)
    sp, y = _sprog(frames)
    reason = "sample 0: 1 rain pixel(s) in the last frame, fewer than 2"
    assert sp.last_fallback == f"sprog fell back to extrapolation: {reason}"
    assert y.max() == pytest.approx(0.6, abs=1e-6)


def test_uniform_field_stays_uniform():
    u = np.full((80, 80), 0.5, np.float32)
    frames = [u * (1 + 0.01 * k) for k in range(5)]
    sp, y = _sprog(frames)
    reason = "sample 0: uniform field (an input frame has no variation)"
    assert sp.last_fallback == f"sprog fell back to extrapolation: {reason}"
    np.testing.assert_allclose(y, 0.52, atol=1e-6)


def test_moving_field_still_runs_sprog_and_clears_the_fallback():
    rng = np.random.default_rng(0)
    f = _cell(rng)
    sp, _ = _sprog([f] * 5)
    assert sp.last_fallback is not None
    x = torch.tensor(np.stack([np.roll(f, 2 * k, 1) for k in range(5)]))[None, :, None]
    sp(x, T_IN, T_OUT)  # the same baseline object, a moving field: S-PROG proper
    assert sp.last_fallback is None


def test_forecast_product_records_the_fallback(tmp_path):
    from nowcast.forecast import baseline_predictor, make_forecast
    from products.cf import open_forecast_netcdf, write_forecast_netcdf
    from tests.nowcast.test_forecast import _blob, _store

    issue = pd.Timestamp("2015-06-01 12:00")
    times = pd.date_range(end=issue, periods=5, freq="6min")
    store = _store(np.stack([_blob(80, 40.0, 40.0)] * 5), times)  # a frozen frame repeated
    fc = make_forecast(baseline_predictor("sprog"), store, issue, [6, 12])
    assert fc.attrs["fallback"].startswith(
        "sprog fell back to extrapolation: sample 0: frozen field"
    )
    assert float(fc["reflectivity"].max()) == pytest.approx(45.0, abs=0.5)
    write_forecast_netcdf(fc, tmp_path / "fc.nc")
    assert open_forecast_netcdf(tmp_path / "fc.nc").attrs["fallback"] == fc.attrs["fallback"]


def test_cycle_publishes_the_fallback_as_the_run_status_reason(tmp_path):
    import json

    from products.cycle import ForecastSettings, forecast_cycle
    from tests.nowcast.test_forecast import _blob, _store

    issue = pd.Timestamp("2015-06-01 12:00")
    times = pd.date_range(end=issue, periods=5, freq="6min")
    path = tmp_path / "frozen.zarr"
    _store(np.stack([_blob(40, 20.0, 20.0)] * 5), times).to_zarr(path, consolidated=False)
    settings = ForecastSettings(
        str(path),
        str(tmp_path / "site"),
        baseline="sprog",
        lead_minutes=(6, 12),
        n_obs_frames=1,
        coastline_resolution="110m",
    )
    assert forecast_cycle(settings, now=issue).status == "ok"
    (run,) = json.loads((tmp_path / "site" / "status.json").read_text())["runs"]
    assert run["status"] == "ok"
    assert run["reason"].startswith("sprog fell back to extrapolation: sample 0: frozen field")


def test_missing_frame_among_the_last_three_is_extrapolated_not_refused():
    rng = np.random.default_rng(1)
    f = _cell(rng)
    frames = [np.roll(f, 2 * k, 1) for k in range(5)]  # 2 px per step to the east
    x = torch.tensor(np.stack(frames))[None, :, None]
    mask = torch.ones_like(x)
    mask[0, 3] = 0  # the frame at -6 min is missing
    sp = get_baseline("sprog", cadence_minutes=6)
    y = sp(x, T_IN, T_OUT, input_mask=mask)[0, :, 0].numpy()
    assert sp.last_fallback == (
        "sprog fell back to extrapolation: sample 0: the last 3 input frames are not all "
        "observed one cadence apart (observed [1, 1, 1, 0, 1])"
    )
    cols = np.flatnonzero(y[0].max(axis=0) > 0.3)  # the cell moved 2 px east per lead
    assert (cols.min(), cols.max()) == (30 + 10, 59 + 10)
    assert np.isfinite(y).all()


def test_sprog_still_refuses_lead_times_off_the_cadence():
    x = torch.tensor(np.stack([_cell(np.random.default_rng(2))] * 5))[None, :, None]
    with pytest.raises(ValueError, match=r"sprog needs t_out on positive whole multiples of 6"):
        get_baseline("sprog", cadence_minutes=6)(x, T_IN, torch.tensor([[7.0]]))
