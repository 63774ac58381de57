"""Panels of maps for the notebooks: ``map_axes``, ``draw_rain``, ``rain_colorbar``."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from pipeline import geo
from products import maps

YELLOW = "#f2e22c"  # class 10 - 20 mm/h


@pytest.fixture
def grid() -> maps.MapGrid:
    g = geo.grid_coords(80)
    return maps.MapGrid(x_km=g.x, y_km=g.y, projection=geo.cartopy_crs())


def _fraction(img: np.ndarray, rgb: tuple[int, int, int], tol: int = 3) -> float:
    return float((np.abs(img - np.array(rgb)).max(axis=-1) <= tol).mean())


def test_map_axes_grid_of_geoaxes_without_pyplot(grid: maps.MapGrid) -> None:
    before = plt.get_fignums()
    fig, axes = maps.map_axes(2, 3, grid, size=2.0)
    assert axes.shape == (2, 3)
    assert all(ax.projection == grid.projection for ax in axes.flat)
    assert tuple(fig.get_size_inches()) == pytest.approx((7.0, 4.4))
    assert plt.get_fignums() == before  # not registered with pyplot


def test_draw_rain_colours_masked_grey_and_dry_transparent(grid, tmp_path) -> None:
    rain = np.zeros(grid.shape)
    rain[:, 40:] = 15.0  # east half: 10 - 20 mm/h
    valid = np.ones(grid.shape, dtype=bool)
    valid[:20] = False  # northern quarter (row 0 is north) masked
    fig, axes = maps.map_axes(1, 1, grid, size=4.0)
    ax = axes[0, 0]
    im = maps.draw_rain(ax, grid, rain, valid, "case", resolution="110m")
    cbar = maps.rain_colorbar(fig, axes, im)
    assert list(cbar.get_ticks()) == list(maps.RAIN_LEVELS_MMH)
    assert ax.get_title() == "case"
    path = tmp_path / "panel.png"
    fig.savefig(path, dpi=fig.dpi)
    with Image.open(path) as png:
        img = np.asarray(png.convert("RGB")).astype(int)
    # the map's pixel box, split like the field: rows 0-19 masked, columns 40-79 wet
    x0, y0, x1, y1 = ax.get_window_extent().extents
    top, bottom = img.shape[0] - y1, img.shape[0] - y0
    rows = np.linspace(top, bottom, 81)
    cols = np.linspace(x0, x1, 81)

    def block(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:  # inset by 2 field pixels
        return img[int(rows[r0 + 2]) : int(rows[r1 - 2]), int(cols[c0 + 2]) : int(cols[c1 - 2])]

    grey = tuple(round(c * 255) for c in maps.MASKED_COLOR[:3])
    yellow = tuple(int(YELLOW[i : i + 2], 16) for i in (1, 3, 5))
    assert _fraction(block(0, 20, 0, 80), grey) > 0.9
    assert _fraction(block(20, 80, 40, 80), yellow) > 0.9
    assert _fraction(block(20, 80, 0, 40), (255, 255, 255)) > 0.9  # dry: background shows


def test_draw_rain_rejects_a_field_of_another_shape(grid: maps.MapGrid) -> None:
    fig, axes = maps.map_axes(1, 1, grid)
    with pytest.raises(ValueError, match=r"shape \(40, 40\); expected the grid's \(80, 80\)"):
        maps.draw_rain(axes[0, 0], grid, np.zeros((40, 40)))
