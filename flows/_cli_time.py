"""Times given on the ``nowcast`` command line: ISO 8601 only, read one way.

A time option (``--start``, ``--end``, ``--issue-time``) takes ``YYYY-MM-DD``,
``YYYY-MM-DDTHH:MM`` or ``YYYY-MM-DDTHH:MM:SS`` (a space may replace the ``T``; a trailing
``Z`` or ``+00:00`` says UTC, the only zone the stores know). Anything else, ``26/08/2010``
(day-first or month-first?) or ``20100826`` included, is refused with one line naming the
flag and the form expected, so no date is ever read day-first by guesswork.
"""

from __future__ import annotations

import re

import typer

ISO_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?(Z|[+-]00:?00)?$"
)
"""What a time option accepts (see the module docstring)."""

TIME_EXAMPLE = "YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC), e.g. 2010-08-26 or 2010-08-26T07:35"


def parse_time(option: str, text: str | None) -> str | None:
    """Check that *text*, the value of *option*, is an ISO 8601 time; returns it as naive UTC.

    Parameters
    ----------
    option : str
        The flag, e.g. ``"--start"`` (named in the error).
    text : str or None
        The value given; None (the option left out) is returned as None.

    Raises
    ------
    typer.BadParameter
        *text* is not of the form :data:`ISO_TIME` or not a real date (``2010-02-30``).
    """
    if text is None:
        return None
    import pandas as pd

    if ISO_TIME.match(text.strip()) is None:
        raise typer.BadParameter(f"{option} {text!r} is not a time; expected {TIME_EXAMPLE}")
    try:
        pd.Timestamp(text.strip())
    except ValueError as err:
        raise typer.BadParameter(
            f"{option} {text!r} is not a real date/time ({err}); expected {TIME_EXAMPLE}"
        ) from None
    return re.sub(r"(Z|[+-]00:?00)$", "", text.strip())  # naive UTC, as the stores hold


def check_start_end(start: str | None, end: str | None) -> None:
    """Refuse ``--start`` after ``--end`` (both parsed by :func:`parse_time`), naming the flags."""
    if start is None or end is None:
        return
    import pandas as pd

    if pd.Timestamp(start) > pd.Timestamp(end):
        raise ValueError(f"--start {start} is after --end {end}: no frame can lie between them")
