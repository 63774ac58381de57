"""Progress bars that suit where they are written: a terminal or a log file.

:func:`progress_bar` takes tqdm's arguments. On a terminal it is ``tqdm.auto.tqdm``
(one bar redrawn in place); when the output is not a terminal (a file, a pipe, a
scheduler's log) it is a :class:`LineProgress`: plain lines of text, one at most every
:data:`LOG_INTERVAL_S` seconds (``NOWCAST_PROGRESS_SECONDS`` overrides it) and one when
the work ends, instead of a run of carriage-return redraws.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm import tqdm as _std_tqdm

LOG_INTERVAL_S = 10.0
"""Default seconds between two progress lines in a log (``NOWCAST_PROGRESS_SECONDS``)."""

LINE_FORMAT = (
    "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
)
"""Text of one progress line when the total is known (tqdm ``bar_format``)."""


def log_interval_s() -> float:
    """Seconds between progress lines: ``NOWCAST_PROGRESS_SECONDS`` or the default.

    Raises
    ------
    ValueError
        ``NOWCAST_PROGRESS_SECONDS`` is not a number >= 0.
    """
    text = os.environ.get("NOWCAST_PROGRESS_SECONDS", "").strip()
    if not text:
        return LOG_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(
            f"NOWCAST_PROGRESS_SECONDS={text!r} is not a number of seconds >= 0"
        ) from None
    return value


class LineProgress(_std_tqdm):
    """tqdm that writes whole lines (``\\n``), never ``\\r``: for logs and pipes.

    A line is written when the bar starts, then at most every ``mininterval`` seconds
    (default :func:`log_interval_s`), and once more when it is closed (with the overall
    rate), whatever ``leave`` says. Nested positions are ignored (each bar writes its
    own lines).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("mininterval", log_interval_s())
        kwargs.setdefault("bar_format", LINE_FORMAT)
        kwargs.setdefault("ascii", True)
        kwargs["dynamic_ncols"] = False
        self._last_line = ""
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        """Write the bar's state as one line (an empty *msg*, tqdm's "clear", writes nothing)."""
        if msg == "":
            return False
        line = (self.__str__() if msg is None else msg).strip()
        if line and line != self._last_line:
            self.fp.write(line + "\n")
            self.fp.flush()
            self._last_line = line
        return True

    def close(self) -> None:
        """Write the final line, then close (without tqdm's trailing newline or ``\\r``)."""
        if not getattr(self, "disable", True) and hasattr(self, "last_print_t"):
            with self._lock:
                self._ema_dt = lambda: None  # the overall rate, not the smoothed one
                self.display()
        self.leave = False
        super().close()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(*args: Any, **kwargs: Any) -> _std_tqdm:
    """A tqdm bar on a terminal, a :class:`LineProgress` otherwise (same arguments).

    The output is tqdm's ``file`` argument, ``sys.stderr`` by default; a disabled bar
    (``disable=True``) is a plain disabled tqdm.
    """
    stream = kwargs.get("file") if kwargs.get("file") is not None else sys.stderr
    if kwargs.get("disable") or _is_terminal(stream):
        from tqdm.auto import tqdm

        return tqdm(*args, **kwargs)
    return LineProgress(*args, **kwargs)


progress_bar.write = _std_tqdm.write  # type: ignore[attr-defined]
"""``progress_bar.write(msg)``: a message that leaves the bars intact (``tqdm.write``), so
that the modules importing ``progress_bar as tqdm`` keep tqdm's whole call surface."""
