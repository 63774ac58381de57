"""Exceedance-probability maps of an ensemble forecast and their dashboard layers.

An ensemble forecast (:mod:`nowcast.ensemble_forecast`) carries
``probability_of_rainfall_rate_above_threshold`` (lead_time, threshold, y, x) in ``1``.
:func:`write_probability_maps` draws one cartopy map per threshold and lead time with
:class:`products.maps.MapRenderer` (``scale="probability"``: the same projection,
coastline and size as the rain-rate maps, probabilities on a discrete 0..1 scale of
:data:`PROBABILITY_LEVELS`, below 0.1 transparent, grey outside the radar coverage) and returns the dashboard layers that
list them (``run.json`` ``layers``; the dashboard switches between the deterministic
forecast and each threshold).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from products._common import _iso, _issue_time
from products.prob_scale import PROBABILITY_LEVELS, probability_colormap

__all__ = [
    "PROBABILITY_LEVELS",
    "PROBABILITY_NAME",
    "layer_id",
    "layer_label",
    "probability_colormap",
    "write_probability_maps",
]

PROBABILITY_NAME = "probability_of_rainfall_rate_above_threshold"
"""The exceedance-probability variable of an ensemble forecast."""


def layer_id(threshold_mmh: float) -> str:
    """Dashboard layer id of a threshold, e.g. ``p2`` or ``p0.5``."""
    return f"p{float(threshold_mmh):g}"


def layer_label(threshold_mmh: float) -> str:
    """Dashboard label of a threshold, e.g. ``P(rain ≥ 2 mm/h)``."""
    return f"P(rain \u2265 {float(threshold_mmh):g} mm/h)"


def write_probability_maps(
    forecast_ds: xr.Dataset,
    out: Path,
    *,
    map_size_px: tuple[int, int],
    coastline_resolution: str,
    coverage: np.ndarray | None = None,
    hook: Callable[[str], None] = lambda stage: None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """One probability PNG per threshold and lead time under ``out / "maps"``.

    Parameters
    ----------
    forecast_ds : xarray.Dataset
        Ensemble forecast with :data:`PROBABILITY_NAME` (lead_time, threshold, y, x) in 0..1
        and its ``threshold`` coordinate (mm/h).
    out : pathlib.Path
        Run directory being built (``maps/`` exists).
    map_size_px, coastline_resolution
        As for the rain-rate maps (:class:`products.maps.MapRenderer`).
    coverage : numpy.ndarray, optional
        ``(H, W)`` bool radar coverage (:func:`products.map_layers.coverage_mask`); pixels
        outside it are grey, as on the observed maps.
    hook : callable
        Called with ``"file:<name>"`` after each file.

    Returns
    -------
    files : list of str
        ``maps/prob_<threshold>mmh_<lead>.png`` names relative to *out*.
    layers : list of dict
        One per threshold: ``id``, ``label``, ``kind = "probability"``, ``threshold_mmh``
        and ``frames`` (``lead_time``, ``valid_time``, ``image``) in lead order.
    """
    from products.maps import MapGrid, MapRenderer

    prob = forecast_ds[PROBABILITY_NAME]
    if prob.dims != ("lead_time", "threshold", "y", "x"):
        raise ValueError(
            f"{PROBABILITY_NAME} has dims {prob.dims}; expected (lead_time, threshold, y, x)"
        )
    issue = _issue_time(forecast_ds)
    valid_times = pd.DatetimeIndex(forecast_ds["valid_time"].values)
    leads = [int(v) for v in forecast_ds["lead_time"].values]
    values = np.asarray(prob.values, dtype=np.float64)
    files: list[str] = []
    layers: list[dict[str, Any]] = []
    grid = MapGrid.from_dataset(forecast_ds)
    with MapRenderer(
        grid, size_px=map_size_px, resolution=coastline_resolution, scale="probability"
    ) as renderer:
        for k, thr in enumerate(float(t) for t in forecast_ds["threshold"].values):
            frames = []
            for j, lead in enumerate(leads):
                name = f"maps/prob_{thr:g}mmh_{lead:03d}.png"
                title = (
                    f"{layer_label(thr)}  +{lead} min  valid {valid_times[j]:%Y-%m-%d %H:%M} UTC"
                    f"  (issued {issue:%H:%M} UTC)"
                )
                renderer.render(values[j, k], out / name, valid=coverage, title=title)
                frames.append(
                    {"lead_time": lead, "valid_time": _iso(valid_times[j]), "image": name}
                )
                files.append(name)
                hook(f"file:{name}")
            layers.append(
                {
                    "id": layer_id(thr),
                    "label": layer_label(thr),
                    "kind": "probability",
                    "threshold_mmh": thr,
                    "frames": frames,
                }
            )
    return files, layers
