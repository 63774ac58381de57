"""The colour scales of exceedance probabilities 0..1 and of rain amounts in mm (maps, layers).

Shared by :class:`products.maps.MapRenderer` (``scale="probability"``) and
:mod:`products.prob_maps`; matplotlib is imported only when a colour map is asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["AMOUNT_LEVELS_MM", "PROBABILITY_LEVELS", "amount_colormap", "probability_colormap"]

PROBABILITY_LEVELS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Lower bounds of the probability classes (the last class is 0.9..1; below 0.1: none)."""


def probability_colormap() -> tuple[Any, Any]:
    """Discrete colour map and norm of probabilities 0..1 (light to dark, ``magma_r``).

    Returns
    -------
    cmap : matplotlib.colors.ListedColormap
        One colour per class of :data:`PROBABILITY_LEVELS` (the last one, 0.9..1, is also
        the "over" colour), transparent "under"/"bad".
    norm : matplotlib.colors.BoundaryNorm
        Boundaries ``PROBABILITY_LEVELS + (1.0,)``.
    """
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    n = len(PROBABILITY_LEVELS)
    colours = colormaps["magma_r"](np.linspace(0.08, 0.85, n))
    cmap = ListedColormap(colours, name="probability")
    cmap = cmap.with_extremes(over=colours[-1], under=(0, 0, 0, 0), bad=(0, 0, 0, 0))
    return cmap, BoundaryNorm([*PROBABILITY_LEVELS, 1.0], ncolors=n, clip=False)


AMOUNT_LEVELS_MM: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0)
"""Class edges of the rain-amount colour scale, mm."""

_AMOUNT_COLORS: tuple[str, ...] = (
    "#d4ecf7",  # 0.1 - 0.5 mm
    "#9ccbe8",  # 0.5 - 1
    "#5aa2d6",  # 1 - 2
    "#2a6fbf",  # 2 - 5
    "#3aa655",  # 5 - 10
    "#c9d62f",  # 10 - 20
    "#f29b26",  # 20 - 30
    "#d7301f",  # 30 - 50
)
_AMOUNT_OVER = "#7a0177"  # > 50 mm


def amount_colormap():
    """Discrete colour map and norm of rain amounts in mm (:data:`AMOUNT_LEVELS_MM`).

    Returns
    -------
    cmap : matplotlib.colors.ListedColormap
        One colour per class between consecutive levels (light blue to red), a purple
        "over" colour above 50 mm, transparent "under"/"bad".
    norm : matplotlib.colors.BoundaryNorm
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap

    cmap = ListedColormap(list(_AMOUNT_COLORS), name="rain_amount_mm")
    cmap = cmap.with_extremes(over=_AMOUNT_OVER, under=(0, 0, 0, 0), bad=(0, 0, 0, 0))
    return cmap, BoundaryNorm(list(AMOUNT_LEVELS_MM), ncolors=len(_AMOUNT_COLORS), clip=False)
