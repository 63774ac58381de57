"""Frames between observations: interpolation methods, gap filling, accumulations, skill.

- :mod:`~nowcast.interpolation.methods`: the registry :func:`get_interpolator` (``linear``,
  ``advection``, ``model``);
- :mod:`~nowcast.interpolation.accumulation`: :func:`accumulate`, rain amounts from rate
  frames, plain or advection-corrected;
- :mod:`~nowcast.interpolation.gapfill`: :func:`fill_gaps`, short gaps of a resampled store
  filled with frames flagged ``interpolated`` (never ``observed``);
- :mod:`~nowcast.interpolation.skill`: :func:`evaluate_interpolation`, hidden observed
  frames reconstructed and scored.

docs/interpolation.md describes the methods and their measured skill.
"""

from nowcast.interpolation.accumulation import ACCUMULATION_METHODS, accumulate
from nowcast.interpolation.gapfill import fill_gaps
from nowcast.interpolation.methods import (
    INTERPOLATOR_NAMES,
    AdvectionInterpolator,
    LinearInterpolator,
    ModelInterpolator,
    estimate_motion,
    get_interpolator,
)

__all__ = [
    "ACCUMULATION_METHODS",
    "INTERPOLATOR_NAMES",
    "AdvectionInterpolator",
    "LinearInterpolator",
    "ModelInterpolator",
    "accumulate",
    "estimate_motion",
    "fill_gaps",
    "get_interpolator",
]
