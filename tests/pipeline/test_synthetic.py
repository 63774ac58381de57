"""The synthetic HKO-7 archive: layout, planted irregularities, determinism and realism."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from pipeline import hko7
from pipeline.radarstats import (
    orientation_coherence,
    radial_spectrum_slope,
    rainy_hours,
    weather_statistics,
)
from pipeline.synthetic import generate_archive, iter_day, static_masks


def _tree_digest(root):
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_gives_byte_identical_archive(tmp_path):
    kw = dict(start="2015-07-01", days=2, seed=5, hours=3, progress=False)
    generate_archive(tmp_path / "a", **kw)
    generate_archive(tmp_path / "b", **kw, workers=2)  # parallel days: same bytes
    generate_archive(tmp_path / "c", **{**kw, "seed": 6, "days": 1})
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert _tree_digest(tmp_path / "a") != _tree_digest(tmp_path / "c")


def test_refuses_a_non_empty_output_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        generate_archive(tmp_path, days=1, hours=3, progress=False)


def test_frames_read_back_as_generated(tiny_archive, tiny_archive_info):
    day = tiny_archive_info.days[1]
    frames = {f.time: f for f in iter_day(day, seed=0, hours=5, first_hour=8)}
    written = tiny_archive_info.readable_times
    checked = 0
    for t, f in frames.items():
        if t in written:
            np.testing.assert_array_equal(
                hko7.read_frame(hko7.frame_path(tiny_archive, t)), f.pixels
            )
            if t not in tiny_archive_info.no_mask_times:
                np.testing.assert_array_equal(
                    hko7.read_mask(hko7.mask_path(tiny_archive, t)), f.mask
                )
            checked += 1
    assert checked == len(written[written.normalize() == day]) - 1  # minus the off-grid frame


def test_planted_irregularities(tiny_archive_info):
    info = tiny_archive_info
    assert len(info.grid_times) == 3 * 50
    assert len(info.days) == 3 and len(info.corrupt_times) == 1 and len(info.no_mask_times) == 1
    assert len(info.offgrid_times) == 3
    assert all(t.minute % 6 == 1 for t in info.offgrid_times)
    assert len(info.missing_runs) == 3
    for first, last in info.missing_runs:
        run = pd.date_range(first, last, freq="6min")
        assert len(run) >= 3 and run.isin(info.missing_times).all()
    # every grid slot is either written on the grid or missing
    on_grid = info.times.difference(info.offgrid_times)
    assert on_grid.union(info.missing_times).equals(info.grid_times)
    assert len(on_grid.intersection(info.missing_times)) == 0


def test_day_lists_and_the_empty_day(tiny_archive, tiny_archive_info):
    lists = {s: hko7.read_day_list(hko7.day_list_path(tiny_archive, s)) for s in hko7.SPLITS}
    assert list(lists["train"].index) == [pd.Timestamp("2015-05-31"), pd.Timestamp("2015-06-01")]
    assert list(lists["valid"].index) == [pd.Timestamp("2015-06-02")]
    assert list(lists["test"].index) == [pd.Timestamp("2015-06-03")]
    assert lists["train"].iloc[0] == 0.0 and (lists["test"] > 0).all()
    assert not (tiny_archive / "radarPNG" / "2015" / "05").exists()
    assert tiny_archive_info.empty_days == [pd.Timestamp("2015-05-31")]


def test_static_masks_mark_corners_and_clutter(tiny_archive):
    got = hko7.read_static_masks(tiny_archive)
    for k, v in static_masks(0).items():
        np.testing.assert_array_equal(got[k], v)
    boundary = got["out_boundary_mask"].astype(bool)
    assert boundary[0, 0] and boundary[479, 479] and not boundary[240, 240]
    assert not boundary[240, 0]  # the 256 km disc touches the edges
    # corners: 480^2 - pi 240^2, within the pixelisation of the circle
    assert abs(boundary.sum() - (480**2 - np.pi * 240**2)) < 1500
    clutter = got["outlier_mask"].astype(bool)
    assert 10 <= clutter.sum() <= 150 and not (clutter & boundary).any()


def test_frames_respect_the_masks(tiny_archive, tiny_archive_info):
    statics = hko7.read_static_masks(tiny_archive)
    boundary = statics["out_boundary_mask"].astype(bool)
    clutter = statics["outlier_mask"].astype(bool)
    clutter_high = 0
    for t in tiny_archive_info.readable_times[:20]:
        px = hko7.read_frame(hko7.frame_path(tiny_archive, t))
        assert (px[boundary] == 0).all()
        clutter_high += int((px[clutter] >= 200).sum())  # >= 45 dBZ
        if t not in tiny_archive_info.no_mask_times:
            m = hko7.read_mask(hko7.mask_path(tiny_archive, t))
            assert not (m & (boundary | clutter)).any()
    assert clutter_high > 0.5 * 20 * clutter.sum()


def test_spectrum_slope_of_a_known_power_law_field():
    n = 320
    rng = np.random.default_rng(1)
    k = np.fft.fftfreq(n)
    kr = np.hypot(k[:, None], k[None, :])
    kr[0, 0] = 1.0
    amp = kr ** (-3.0 / 2.0)
    field = np.fft.ifft2(amp * np.fft.fft2(rng.standard_normal((n, n)))).real
    assert radial_spectrum_slope(field) == pytest.approx(-3.0, abs=0.12)


def test_statistics_of_a_field_moving_at_a_known_speed():
    # a rainy blob pattern translated by 4 pixels (right) per frame, never changing
    rng = np.random.default_rng(2)
    base = np.zeros((560, 560), np.uint8)
    for _ in range(60):
        y, x = rng.integers(0, 560, 2)
        base[max(y - 12, 0) : y + 12, max(x - 12, 0) : x + 12] = 120  # 22.9 dBZ, > 0.5 mm/h
    frames = np.stack([base[40:520, 40 - 4 * i : 520 - 4 * i] for i in range(11)])
    stats = weather_statistics(frames)
    assert stats.motion_px == pytest.approx(4.0, abs=0.25)
    assert stats.dbz_p50 == pytest.approx(120 / 255 * 70 - 10)
    hits = np.count_nonzero((frames[0] >= 84) & (frames[1] >= 84))
    union = np.count_nonzero((frames[0] >= 84) | (frames[1] >= 84))
    lag1 = [
        np.count_nonzero((frames[i] >= 84) & (frames[i + 1] >= 84))
        / np.count_nonzero((frames[i] >= 84) | (frames[i + 1] >= 84))
        for i in range(10)
    ]
    assert hits / union == pytest.approx(lag1[0])
    assert stats.csi_6 == pytest.approx(
        sum(np.count_nonzero((frames[i] >= 84) & (frames[i + 1] >= 84)) for i in range(10))
        / sum(np.count_nonzero((frames[i] >= 84) | (frames[i + 1] >= 84)) for i in range(10))
    )


def _dbz_pixels(dbz):
    return np.clip(np.rint((dbz + 10.0) / 70.0 * 255.0), 0, 255).astype(np.uint8)


def test_orientation_coherence_of_known_textures():
    yy, xx = np.mgrid[0:480, 0:480].astype(float)
    # parallel streaks (wavelength 12 px, at 30 degrees): every gradient along one direction
    u = xx * np.cos(np.pi / 6) + yy * np.sin(np.pi / 6)
    streaks = _dbz_pixels(25.0 + 8.0 * np.sin(2 * np.pi * u / 12.0))
    assert orientation_coherence(streaks) == pytest.approx(1.0, abs=0.01)
    # a checkerboard of the same waves along x and y: Jxx = Jyy, Jxy = 0, no orientation
    checks = _dbz_pixels(
        25.0 + 4.0 * np.sin(2 * np.pi * xx / 12) + 4.0 * np.sin(2 * np.pi * yy / 12)
    )
    assert orientation_coherence(checks) == pytest.approx(0.0, abs=0.02)
    # waves along x twice as strong as along y: Jxx = 4 Jyy, coherence (4 - 1) / (4 + 1)
    mixed = _dbz_pixels(
        25.0 + 8.0 * np.sin(2 * np.pi * xx / 12) + 4.0 * np.sin(2 * np.pi * yy / 12)
    )
    assert orientation_coherence(mixed) == pytest.approx(0.6, abs=0.03)
    # too little rain (a 60 x 60 square is 1.6 % of the frame): not measured
    small = np.zeros((480, 480), np.uint8)
    small[100:160, 100:160] = streaks[100:160, 100:160]
    assert np.isnan(orientation_coherence(small))


@pytest.mark.slow
def test_rainy_hours_look_like_real_radar():
    """Real-radar ranges (docs/synthetic.md) on the rainy hours of one generated day."""
    frames = list(iter_day("2015-06-03", seed=0))
    pixels = np.stack([f.pixels for f in frames])
    masks = np.stack([f.mask for f in frames])
    times = pd.DatetimeIndex([f.time for f in frames])
    use = rainy_hours(pixels, masks, times, min_fraction=0.1)
    assert use.sum() >= 60  # at least 6 rainy hours
    s = weather_statistics(pixels, masks, use)
    assert 0.16 <= s.frac_0_5 <= 0.33
    assert 0.004 <= s.frac_5 <= 0.047
    assert 0.0 < s.frac_30 <= 0.0006  # a few convective cores, not zero
    assert 18 <= s.dbz_p50 <= 22
    assert 25 <= s.dbz_p90 <= 29
    assert 30 <= s.dbz_p99 <= 38
    assert -3.4 <= s.spectrum_slope <= -3.0
    assert 0.66 <= s.csi_6 <= 0.72
    assert 0.34 <= s.csi_30 <= 0.51
    assert 0.24 <= s.csi_60 <= 0.47
    assert 3.0 <= s.motion_px <= 8.0
    # orientation: real p90 0.27-0.62, max 0.31-0.69 (no edge-to-edge streaks)
    assert 0.15 <= s.coherence_p50 <= 0.5
    assert s.coherence_p90 <= 0.6
    assert s.coherence_max <= 0.7


def test_cli_synth_writes_an_archive(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    out = tmp_path / "cli_archive"
    result = CliRunner().invoke(
        app, ["synth", str(out), "--days", "1", "--hours", "3", "--seed", "2", "--no-corrupt"]
    )
    assert result.exit_code == 0, result.output
    frames = hko7.discover_frames(out)
    # 30 grid slots - a run of 3-5 missing - one single missing (the off-grid frame is kept)
    assert 24 <= len(frames) <= 26
    assert f"wrote {len(frames)} frames" in result.output
    assert "corrupt 0" in result.output
    for path in frames["frame_path"]:
        assert hko7.read_frame(path).shape == (480, 480)  # --no-corrupt: every frame reads


def test_every_tiny_archive_day_has_a_30_frame_clip(tiny_archive_info):
    """Other areas rely on it: per day, 30 grid slots with no run of more than 2 missing."""
    info = tiny_archive_info
    for day in info.days:
        slots = info.grid_times[info.grid_times.normalize() == day]
        in_run = np.zeros(len(slots), bool)
        for first, last in info.missing_runs:
            in_run |= (slots >= first) & (slots <= last)
        longest = best = 0
        for r in in_run:
            longest = 0 if r else longest + 1
            best = max(best, longest)
        assert best >= 30, day
