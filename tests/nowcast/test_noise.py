"""Perturbation fields of the ensembles: power-law and cascade-like noise, known answers."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast.noise import (
    band_autocorrelation,
    band_index,
    band_power,
    cascade_noise,
    powerlaw_noise,
)


def test_powerlaw_noise_has_the_asked_spectral_slope():
    rng = np.random.default_rng(1)
    f = powerlaw_noise(rng, (16, 64, 64), 3.0).astype(np.float64)
    spec = (np.abs(np.fft.rfft2(f)) ** 2).mean(0)
    ky = np.fft.fftfreq(64)[:, None]
    kx = np.fft.rfftfreq(64)[None, :]
    k = np.sqrt(kx**2 + ky**2)
    sel = (k > 0.03) & (k < 0.4)
    slope = np.polyfit(np.log(k[sel]), np.log(spec[sel]), 1)[0]
    assert slope == pytest.approx(-3.0, abs=0.1)


def test_band_index_splits_the_spectrum_into_geometric_rings():
    bands = band_index(80, 80, 6)
    assert bands[0, 0] == -1  # the mean belongs to no band
    assert bands[0, 1] == 0 and bands[40, 40] == 5  # lowest and highest wavenumbers
    assert set(np.unique(bands)) == {-1, 0, 1, 2, 3, 4, 5}
    with pytest.raises(ValueError, match="n_bands must be >= 1"):
        band_index(8, 8, 0)


def test_band_power_of_white_noise_is_its_variance_and_correlations_are_one_or_zero():
    rng = np.random.default_rng(2)
    bands = band_index(64, 64, 4)
    a = 0.5 * rng.standard_normal((64, 64))
    np.testing.assert_allclose(band_power(a, bands, 4), 0.25, rtol=0.2)
    np.testing.assert_allclose(band_autocorrelation(a, a, bands, 4), 0.999)  # clipped
    b = rng.standard_normal((64, 64))
    # independent fields: near 0 in the bands with many wavenumbers (the two smallest scales)
    assert np.all(np.abs(band_autocorrelation(a, b, bands, 4, floor=-1.0)[2:]) < 0.1)


def test_cascade_noise_variance_per_band_follows_the_ar1_predictability():
    rho = np.array([0.95, 0.8, 0.5, 0.0])
    power = np.array([4.0, 2.0, 1.0, 0.5])
    bands = band_index(48, 48, 4)
    got = np.zeros((4, 4))  # steps 1, 2, 4, 8 x bands
    n_draws = 40
    for seed in range(n_draws):
        f = cascade_noise(np.random.default_rng(seed), 8, (48, 48), rho, power)
        assert f.shape == (9, 48, 48) and float(np.abs(f[0]).max()) == 0.0
        for i, s in enumerate((1, 2, 4, 8)):
            got[i] += band_power(f[s].astype(np.float64), bands, 4) / n_draws
    for i, s in enumerate((1, 2, 4, 8)):
        np.testing.assert_allclose(got[i], power * (1 - rho ** (2 * s)), rtol=0.25, atol=1e-3)
    same = cascade_noise(np.random.default_rng(0), 8, (48, 48), rho, power)
    np.testing.assert_array_equal(
        same, cascade_noise(np.random.default_rng(0), 8, (48, 48), rho, power)
    )
    with pytest.raises(ValueError, match="rho must lie in"):
        cascade_noise(np.random.default_rng(0), 2, (8, 8), np.array([1.0]), np.array([1.0]))
