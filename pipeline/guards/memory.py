"""Memory estimates of forecast jobs, checked against the machine before allocation.

A forecast holds its frames (``steps x H x W`` float32: every step a regular-only
predictor makes up to the longest lead, not only the leads asked for); an ensemble adds,
per member streamed, nothing but one member and the running counts, unless the members
are kept (percentiles, ``keep_members``, or a predictor that makes all members at once
such as STEPS): then ``members x steps x H x W`` float32, copied once more to stack them.
The debiased probability estimator (:mod:`nowcast.probability`) builds a binomial table
of ``(members + 1) x 201`` float64. :func:`ensemble_bytes` adds these up;
:func:`check_fits` compares an estimate with :func:`available_memory_bytes` and raises
:class:`SizeLimitError` (a ``ValueError``) naming both, before anything is allocated.
"""

from __future__ import annotations

__all__ = [
    "SizeLimitError",
    "available_memory_bytes",
    "check_fits",
    "ensemble_bytes",
    "format_bytes",
]

USABLE_FRACTION = 0.8
"""Share of the available memory a job may plan to use (the rest: Python, libraries)."""

_PROBABILITY_GRID = 201  # p grid of nowcast.probability's binomial table


class SizeLimitError(ValueError):
    """A job whose estimated memory exceeds what the machine has (message: both sizes)."""


def format_bytes(n: float) -> str:
    """``n`` bytes as a short decimal size, e.g. ``"3.2 TB"``, ``"184 MB"``."""
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 100 else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"  # pragma: no cover


def available_memory_bytes() -> int | None:
    """Memory available to a new allocation now, in bytes (None when unknown).

    ``psutil.virtual_memory().available`` when psutil is installed, else
    ``MemAvailable`` of ``/proc/meminfo``; the smaller of that and a cgroup limit
    (``/sys/fs/cgroup/memory.max``) when one is set.
    """
    avail: int | None = None
    try:
        import psutil

        avail = int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a dependency of dask
        try:
            with open("/proc/meminfo") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        avail = int(line.split()[1]) * 1024
                        break
        except OSError:
            avail = None
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            text = fh.read().strip()
        if text.isdigit():
            with open("/sys/fs/cgroup/memory.current") as fh:
                room = int(text) - int(fh.read().strip())
            avail = room if avail is None else min(avail, room)
    except (OSError, ValueError):
        pass
    return avail


def ensemble_bytes(
    *,
    members: int | None,
    steps: int,
    height: int,
    width: int,
    n_thresholds: int = 0,
    n_percentiles: int = 0,
    keep_members: bool = False,
    all_at_once: bool = False,
    debiased: bool = False,
) -> int:
    """Estimated peak memory (bytes) of one forecast or ensemble forecast.

    Parameters
    ----------
    members : int or None
        Ensemble members (None: a deterministic forecast).
    steps : int
        Frames the predictor makes (``len(t_out)`` of :func:`nowcast.forecast.call_times`).
    height, width : int
        Grid of the forecast (pixels).
    n_thresholds : int
        Rain thresholds of the exceedance probabilities.
    n_percentiles : int
        Percentiles asked for (they keep every member).
    keep_members : bool
        Members written to the output (kept, stacked, converted to dBZ).
    all_at_once : bool
        The predictor returns every member in one array (an ensemble predictor).
    debiased : bool
        The debiased estimator's ``(members + 1) x 201`` binomial table.

    Returns
    -------
    int
        Bytes.
    """
    field = int(steps) * int(height) * int(width)  # one member, every step
    if members is None:
        return field * 4 * 4  # prediction, dBZ, rain rate, the dataset's copy
    n = int(members)
    k = int(n_thresholds)
    total = field * (4 + 4 + 4 * k + 4 * k + 8 * k)  # member, sum, hits, counts, probability
    copies = 0
    if n_percentiles or keep_members:
        copies += 2  # the list of kept members and its stack
    if keep_members:
        copies += 1  # in dBZ for the output
    if all_at_once:
        copies += 1
    total += copies * n * field * 4
    total += int(n_percentiles) * field * 4
    if debiased:
        total += 2 * (n + 1) * _PROBABILITY_GRID * 8
    return total


def check_fits(what: str, nbytes: int, available: int | None = None) -> None:
    """Refuse a job whose estimate *nbytes* exceeds the usable memory.

    Parameters
    ----------
    what : str
        The job, as the message names it (e.g. ``"an ensemble of 1000000000 members,
        6 steps on 480 x 480"``).
    nbytes : int
        Estimated peak memory in bytes.
    available : int, optional
        Available memory in bytes (default :func:`available_memory_bytes`; no check when
        that is unknown).

    Raises
    ------
    SizeLimitError
        When ``nbytes > USABLE_FRACTION * available``.
    """
    if available is None:
        available = available_memory_bytes()
    if available is None:
        return
    usable = int(USABLE_FRACTION * available)
    if nbytes > usable:
        raise SizeLimitError(
            f"{what} needs about {format_bytes(nbytes)} of memory (estimate), more than the "
            f"{format_bytes(usable)} usable of {format_bytes(available)} available on this "
            "machine; use fewer members, lead times or percentiles, or a smaller grid"
        )
