"""The pixel limit of one radar frame, checked against a file's declared size.

A compressed file can declare a huge image in a few hundred kilobytes (a 20000 x 20000
PNG of zeros is 389 kB; an HDF5 dataset with a huge shape and no chunks written is
smaller still). Readers compare the declared shape with :data:`MAX_FRAME_PIXELS`
before they decode anything, and a frame over it is a corrupt frame: named and skipped.
:func:`declared_image_size` reads the size from the first bytes of a PNG, GIF or PGM
(the formats Pillow decodes for the readers), so that Pillow is only given files within
the limit (below its own decompression-bomb threshold, which warns before it refuses:
no warning filter, which would not be thread-safe, is needed).
"""

from __future__ import annotations

import gzip
import math
import os
import re
from collections.abc import Sequence

__all__ = [
    "MAX_FRAME_PIXELS",
    "check_declared_image",
    "check_declared_shape",
    "declared_image_size",
]

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


_PNM = re.compile(rb"P[25]\s+(?:#[^\n]*\n\s*)*(\d+)\s+(?:#[^\n]*\n\s*)*(\d+)")


def declared_image_size(head: bytes) -> tuple[int, int] | None:
    """``(width, height)`` an image file declares in its first bytes, or None if unknown.

    Parameters
    ----------
    head : bytes
        The start of the file (PNG: 24 bytes; GIF: 10; binary PGM: its text header,
        comments included, a few kB).

    Returns
    -------
    tuple of int or None
        From the PNG ``IHDR``, the GIF logical screen, or the PGM header; None for
        anything else (the reader then refuses the file itself).
    """
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    m = _PNM.match(head)
    if m is not None:
        return int(m.group(1)), int(m.group(2))
    return None


def check_declared_image(path: str | os.PathLike, gzipped: bool = False) -> str | None:
    """Why the image file *path* is over the pixel limit by its header, or None.

    Reads at most 8 kB (of the decompressed stream when *gzipped*); an unreadable or
    unknown header returns None (the reader gives the reason).
    """
    try:
        if gzipped:
            with gzip.open(path, "rb") as fh:
                head = fh.read(8192)
        else:
            with open(path, "rb") as fh:
                head = fh.read(8192)
    except Exception:  # noqa: BLE001 - unreadable (zlib.error, EOFError...): the reader says why
        return None
    size = declared_image_size(head)
    if size is None:
        return None
    return check_declared_shape((size[1], size[0]))
