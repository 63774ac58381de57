"""The colour scale of exceedance probabilities 0..1 (maps and dashboard layers).

Shared by :class:`products.maps.MapRenderer` (``scale="probability"``) and
:mod:`products.prob_maps`; matplotlib is imported only when a colour map is asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PROBABILITY_LEVELS", "probability_colormap"]

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
