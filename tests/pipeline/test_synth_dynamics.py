"""The synthetic weather's evolution beyond advection, each property measured.

Cell life cycles and the size-intensity relation, the diurnal cycle over land, the stationary
terrain/coast forcing, slowly changing motion and multi-day regimes (pipeline._synth_weather,
pipeline._synth_world; docs/synthetic.md).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from pipeline._synth_weather import Cell, DayWeather, WeatherParams, disc_mask
from pipeline._synth_world import diurnal, geography, regime_for_day, steering_knot
from pipeline.synthetic import _day_rng, iter_day

RAIN_DBZ = 12.98  # 0.5 mm/h


def _lone_cell(sigma: float, peak: float, life_frames: float) -> tuple[DayWeather, Cell]:
    w = DayWeather(np.random.default_rng(0), 40, start=pd.Timestamp("2015-06-03"), seed=0)
    w.cell_rate = np.zeros(w.n_steps)  # no births: only the planted cell
    cell = Cell(
        xi=w._M @ np.array([0.0, 0.0]) + w._b,  # born at the grid centre
        born=0,
        life=life_frames,
        peak=peak,
        sigma=sigma,
        row=240,
        col=240,
        over_land=True,
        initiation="land",
        texture=np.ones((2 * int(np.ceil(3 * sigma)) + 3,) * 2, np.float32),
    )
    w._alive = [cell]
    return w, cell


def _cell_history(sigma: float, peak: float, life: float) -> tuple[np.ndarray, np.ndarray]:
    """Rain area (pixels >= 0.5 mm/h) and max dBZ per frame of one cell in clear air."""
    w, _ = _lone_cell(sigma, peak, life)
    area, top = [], []
    for k in range(int(life) + 2):
        dbz = np.full((480, 480), -10.0, np.float32)
        w._add_cells(dbz, k)
        area.append(int(np.count_nonzero(dbz >= RAIN_DBZ)))
        top.append(float(dbz.max()))
    return np.array(area), np.array(top)


def test_a_cell_grows_peaks_at_mid_life_and_decays():
    area, top = _cell_history(sigma=5.0, peak=22.0, life=12.0)  # 72 minutes
    assert area[0] == 0 and area[-1] == 0  # initiation from clear air, gone after its life
    assert np.argmax(area) == 6 and np.argmax(top) == 6  # mid-life
    assert np.all(np.diff(area[:7]) >= 0) and np.all(np.diff(area[6:]) <= 0)
    # clear air floor (0.5 mm/h - 4 dB) + peak
    # the grid centre lies between pixels: the nearest pixel is (0.5, 0.5) off the cell's centre
    expected = RAIN_DBZ - 4.0 + 22.0 * np.exp(-0.5 / (2 * 5.0**2))
    assert top[6] == pytest.approx(expected, abs=0.01)
    assert area[3] < 0.8 * area[6]  # growing from 18 to 36 minutes


def test_larger_cells_are_stronger_and_live_longer():
    w = DayWeather(_day_rng(0, pd.Timestamp("2015-06-01"), 0), 120, start="2015-06-01 04:00")
    assert w.convective > 0.5
    for _ in w:
        pass
    sigma = np.array([c.sigma for c in w.cells])
    peak = np.array([c.peak for c in w.cells])
    life = np.array([c.life for c in w.cells])
    assert len(w.cells) >= 20
    assert np.corrcoef(sigma, peak)[0, 1] > 0.8
    assert np.corrcoef(sigma, life)[0, 1] > 0.6
    # measured on the rain they make: a big strong cell covers more and reaches higher
    small_area, small_top = _cell_history(sigma=3.0, peak=16.0, life=8.0)
    big_area, big_top = _cell_history(sigma=6.0, peak=25.0, life=14.0)
    assert big_area.max() > 3 * small_area.max() and big_top.max() > small_top.max() + 8


def test_diurnal_phase_peaks_at_three_pm_local():
    t = pd.DatetimeIndex(["2015-06-01 07:00", "2015-06-01 19:00", "2015-06-01 01:00"])  # UTC
    np.testing.assert_allclose(diurnal(t), [1.0, -1.0, 0.0], atol=1e-12)


@pytest.mark.slow
def test_convection_over_land_peaks_in_the_afternoon():
    # the same convective day with and without its diurnal cycle (same latent noise)
    day = pd.Timestamp("2015-06-07")
    flat = replace(
        WeatherParams(),
        land_forcing=0.0,
        coast_forcing=0.0,
        cell_diurnal=0.0,
        cell_land_share=0.0,
        coverage_diurnal=0.0,
    )
    land = geography().land & disc_mask()
    heavy, cells = {}, {}
    for name, params in (("diurnal", None), ("flat", flat)):
        w = DayWeather(_day_rng(0, day, 0), 240, params, start=day, seed=0)
        assert w.convective > 0.5
        heavy[name] = np.array([np.mean(dbz[land] >= 30.0) for dbz in w])  # ~7 mm/h and more
        cells[name] = w.cells
    local = (w.times.hour.to_numpy() + 8) % 24
    afternoon, night = (local >= 12) & (local < 18), local < 6
    gain = heavy["diurnal"] / np.maximum(heavy["flat"], 1e-4)
    assert np.median(gain[afternoon]) > 1.5 * np.median(gain[night])
    assert heavy["diurnal"][afternoon].mean() > heavy["flat"][afternoon].mean()
    assert heavy["diurnal"][night].mean() < heavy["flat"][night].mean()
    births = np.array([(local[c.born], c.initiation == "land") for c in cells["diurnal"]])
    land_births = births[births[:, 1] == 1, 0]
    assert np.sum((land_births >= 12) & (land_births < 18)) >= 10
    assert np.sum(land_births < 6) == 0


@pytest.mark.slow
def test_terrain_forcing_stays_in_place_while_the_rain_moves():
    # the same day with and without the geographic forcing (same random stream)
    day, hours = pd.Timestamp("2015-06-05"), 12
    free = replace(
        WeatherParams(),
        terrain_forcing=0.0,
        upslope_forcing=0.0,
        land_forcing=0.0,
        coast_forcing=0.0,
    )
    freq = {}
    for name, params in (("forced", None), ("free", free)):
        frames = list(iter_day(day, seed=0, hours=hours, params=params))
        freq[name] = np.mean([f.pixels >= 84 for f in frames], axis=0)
    w = DayWeather(_day_rng(0, day, 0), 10 * hours, start=day, seed=0)
    moved = np.hypot(*w.u0.T).sum() * 6.0  # pixels travelled by the rain (u0: px per minute)
    assert moved > 500  # more than the disc's radius, twice
    geo = geography()
    disc = disc_mask()
    high = (geo.terrain > 0.4) & disc
    sea = ~geo.land & (geo.coast < 0.05) & disc
    gain = freq["forced"] - freq["free"]
    # rain more often over the hills (by a third and more of its frequency there) ...
    assert gain[high].mean() > 0.03 and gain[high].mean() > 0.33 * freq["free"][high].mean()
    assert gain[sea].mean() < 0.0  # ... and less often over the open sea (coverage is fixed)
    assert np.corrcoef(gain[disc], geo.terrain[disc])[0, 1] > 0.4


def test_motion_veers_slowly_and_continues_across_midnight():
    days = pd.date_range("2015-06-01", periods=8)
    ws = [DayWeather(_day_rng(0, d, 0), 240, start=d, seed=0) for d in days]
    veer = []
    for w in ws:
        u = w.u0 * 6.0  # pixels per frame
        ang = np.unwrap(np.arctan2(u[:, 1], u[:, 0]))
        speed = np.hypot(u[:, 0], u[:, 1])
        assert np.all(np.abs(np.diff(ang[::10])) < np.deg2rad(25))  # hour to hour
        assert np.all(np.abs(np.diff(np.log(speed[::10]))) < 0.2)
        assert 3.5 <= speed.min() and speed.max() <= 9.0
        veer.append(abs(ang[-1] - ang[0]))
    assert np.rad2deg(max(veer)) > 40  # some days veer a lot ...
    for a, b in zip(ws[:-1], ws[1:], strict=True):  # ... yet midnight is continuous
        np.testing.assert_allclose(a.u0[-1] * 6, b.u0[0] * 6, atol=0.15)


def test_regimes_last_one_to_four_days_and_relate_consecutive_days():
    days = pd.date_range("2015-01-01", periods=365)
    regs = [regime_for_day(0, d) for d in days]
    lengths = {r.start: r.length for r in regs}
    assert set(lengths.values()) == {1, 2, 3, 4}
    for d, r in zip(days, regs, strict=True):
        assert r.start <= d < r.start + pd.Timedelta(days=r.length)
    assert regime_for_day(0, days[100]) == regs[100]  # a pure function of (seed, day)
    # consecutive days: same regime -> same convective character, close steering
    same, new = [], []
    for d, r0, r1 in zip(days[1:], regs[:-1], regs[1:], strict=True):
        a = steering_knot(0, d - pd.Timedelta(days=1))[0]
        b = steering_knot(0, d)[0]
        turn = abs((b - a + np.pi) % (2 * np.pi) - np.pi)
        (same if r0.start == r1.start else new).append(turn)
        if r0.start == r1.start:
            assert r0.convective == r1.convective
    assert np.mean(same) < np.deg2rad(30) < np.mean(new)


def test_regimes_change_the_cells_a_day_has():
    conv = DayWeather(np.random.default_rng(1), 240, start="2015-06-07", seed=0)
    strat = DayWeather(np.random.default_rng(1), 240, start="2015-06-05", seed=0)
    assert conv.convective > 0.5 > 0.3 > strat.convective
    assert conv.cell_rate.mean() > 1.5 * strat.cell_rate.mean()
    local = (conv.times.hour.to_numpy() + 8) % 24  # and the convective day's peak afternoon
    assert (
        conv.cell_rate[(local >= 12) & (local < 18)].mean() > 3 * conv.cell_rate[local < 6].mean()
    )


@pytest.mark.slow
def test_weather_continues_across_midnight():
    """The latent field is bridged to the next day's first state: no jump at 00:00."""
    last = list(iter_day("2015-06-01", seed=0, hours=2, first_hour=22))  # ends at 23:54 ...
    full = list(iter_day("2015-06-01", seed=0))  # ... but only a full day is bridged
    nxt = list(iter_day("2015-06-02", seed=0, hours=1))

    def csi(a, b):
        a, b = a.pixels >= 84, b.pixels >= 84
        return np.count_nonzero(a & b) / np.count_nonzero(a | b)

    within = [csi(full[k], full[k + 1]) for k in range(200, 239)]
    across = csi(full[-1], nxt[0])
    assert across > 0.6 and across >= min(within)
    other = list(iter_day("2015-06-04", seed=0, hours=1))
    assert csi(full[-1], other[0]) < 0.5  # an unrelated day's midnight frame does not match
    assert csi(last[-1], nxt[0]) > 0.6  # a partial day that reaches 24:00 is bridged too
    diff = np.abs(full[-1].pixels.astype(float) - nxt[0].pixels.astype(float)).mean()
    step = np.mean(
        [np.abs(full[k].pixels.astype(float) - full[k + 1].pixels).mean() for k in range(200, 239)]
    )
    assert diff < 1.6 * step
