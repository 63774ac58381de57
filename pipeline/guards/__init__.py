"""Bounds checked before memory is spent: array sizes against the machine, frame sizes.

:mod:`pipeline.guards.memory` estimates what a forecast or an ensemble will hold (from
its grid, lead count, members and percentiles) and refuses a job that cannot fit in the
memory available (:class:`SizeLimitError`, a ``ValueError``: one ``error:`` line from
the CLI, exit code 2). :mod:`pipeline.guards.pixels` is the pixel limit of one frame
that every reader checks against the size a file *declares* before decoding it (see
docs/robustness.md).
"""

from pipeline.guards.memory import (
    SizeLimitError,
    available_memory_bytes,
    check_fits,
    ensemble_bytes,
    format_bytes,
)
from pipeline.guards.pixels import (
    MAX_FRAME_PIXELS,
    check_declared_image,
    check_declared_shape,
    declared_image_size,
)

__all__ = [
    "MAX_FRAME_PIXELS",
    "SizeLimitError",
    "available_memory_bytes",
    "check_declared_image",
    "check_declared_shape",
    "check_fits",
    "declared_image_size",
    "ensemble_bytes",
    "format_bytes",
]
