"""The pixel limit of one radar frame, checked against a file's declared size.

A compressed file can declare a huge image in a few hundred kilobytes (a 20000 x 20000
PNG of zeros is 389 kB; an HDF5 dataset with a huge shape and no chunks written is
smaller still). Readers compare the declared shape with :data:`MAX_FRAME_PIXELS`
before they decode anything, and a frame over it is a corrupt frame: named and skipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["MAX_FRAME_PIXELS", "check_declared_shape"]

MAX_FRAME_PIXELS: int = 4096 * 4096
"""Most pixels one frame may declare (16.8 million: the largest national composites,
e.g. the 1536 x 1536 European OPERA grid or BoM's 2050 x 2050 mosaic, are far below).
The HKO-7 reader also refuses anything that is not 480 x 480."""


def check_declared_shape(shape: Sequence[int], limit: int = MAX_FRAME_PIXELS) -> str | None:
    """Why a declared array shape cannot be a frame, or None when it can.

    Parameters
    ----------
    shape : sequence of int
        Shape a file declares for its frame, e.g. ``(H, W)`` or ``(1, H, W)``.
    limit : int
        Most pixels allowed (product of the sizes).

    Returns
    -------
    str or None
        A reason such as ``"declares 20000 x 20000 = 400000000 pixels, more than the
        limit of 16777216"``; None when the shape is within the limit.
    """
    dims = [int(s) for s in shape]
    if any(d < 0 for d in dims):
        return f"declares a negative size {tuple(dims)}"
    n = math.prod(dims)
    if n > limit:
        return (
            f"declares {' x '.join(str(d) for d in dims)} = {n} pixels, more than the "
            f"limit of {limit} pixels of one frame"
        )
    return None
