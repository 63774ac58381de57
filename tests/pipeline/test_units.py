"""Unit conversions against REFERENCE.md section 2."""

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
