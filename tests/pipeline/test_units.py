"""Unit conversions against docs/facts.md section 2."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import units


def test_pixel_scale_end_points():
    assert units.pixel_to_dbz(0) == pytest.approx(-10.0)
    assert units.pixel_to_dbz(255) == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("rate", "normalised"),
    [(0.5, 0.32825), (2.0, 0.46243), (5.0, 0.55111), (10.0, 0.61820), (30.0, 0.72453)],
)
def test_rain_thresholds_in_normalised_pixels(rate, normalised):
    assert units.rainrate_to_normalized(rate) == pytest.approx(normalised, abs=5e-5)


def test_zr_relation_hand_computed():
    # 0.5 mm/h: 10 log10(58.53) + 15.6 log10(0.5) = 17.6738 - 4.6961 = 12.9777 dBZ
    assert units.rainrate_to_dbz(0.5) == pytest.approx(12.9777, abs=1e-4)
    assert units.dbz_to_rainrate(12.9777) == pytest.approx(0.5, rel=1e-4)


def test_every_pixel_round_trips_through_dbz():
    p = np.arange(256)
    np.testing.assert_array_equal(units.dbz_to_pixel(units.pixel_to_dbz(p)), p.astype(np.uint8))


def test_dbz_to_pixel_clips_and_maps_nan_to_zero():
    np.testing.assert_array_equal(
        units.dbz_to_pixel([-40.0, np.nan, 80.0]), np.array([0, 0, 255], np.uint8)
    )


def test_float32_window_and_forecast_conversions_match_float64():
    dbz = np.array([[-20.0, -10.0, 0.0], [25.5, 60.0, 75.0]], np.float32)
    dbz[0, 0] = np.nan
    valid = np.array([[True, True, True], [True, False, True]])
    x = units.dbz_to_normalized_float32(dbz, valid)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, [[0.0, 0.0, 10 / 70], [35.5 / 70, 0.0, 1.0]], atol=1e-7)
    y = np.array([[[np.nan, 0.0, 1e-5], [0.5, 1.0, 1.7]]], np.float32)
    d, r = units.normalized_to_dbz_and_rainrate_float32(y)
    assert d.dtype == r.dtype == np.float32
    np.testing.assert_allclose(d[0], [[-10.0, -10.0, -10.0 + 7e-4], [25.0, 60.0, 60.0]], atol=1e-5)
    # 0 mm/h at (or within 1e-3 dBZ of) the no-echo level, the Z-R relation elsewhere:
    # R = (10^(dBZ/10) / 58.53)^(1/1.56) = 2.94869 mm/h at 25 dBZ, 516.677 at 60 dBZ
    expected = [[0.0, 0.0, 0.0], [2.9486902, 516.67672, 516.67672]]
    np.testing.assert_allclose(r[0], expected, rtol=2e-6)
    assert (r[0, 0] == 0.0).all()


def test_lookup_pixels_gives_every_pixel_value_its_table_entry():
    from pipeline.units import lookup_pixels

    lut = (np.arange(256, dtype=np.float64) * (70 / 255) - 10).astype(np.float32)
    block = np.arange(512, dtype=np.int64).reshape(2, 16, 16).astype(np.uint8)[:, ::-1]
    out = lookup_pixels(block, lut)  # a non-contiguous (T, H, W) block: OpenCV's path
    assert out.dtype == np.float32 and out.shape == (2, 16, 16)
    np.testing.assert_array_equal(out, lut[block])
    assert out[0, 0, 0] == lut[240] and out[1, 15, 15] == lut[15]  # rows reversed
    np.testing.assert_array_equal(lookup_pixels(block[0], lut), lut[block[0]])  # (H, W)
