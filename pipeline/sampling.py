"""Sample indices: the HKO-7 benchmark clip rules and the thesis's four time-sampling schemes.

HKO-7 clips (:func:`hko7_clips`, docs/facts.md section 3)
    A frame is *missing* when its timestamp is absent from the catalogue (here: the set
    of existing timestamps passed in). A clip of ``in_len + out_len`` frames every
    ``cadence`` is rejected when it has more than ``max_consecutive_missing`` (2)
    consecutive missing frames or is entirely missing.

    ``sequent``: start at the first existing timestamp; after a valid clip advance by
    ``stride x cadence`` (the new start may itself be missing: it is simply tested); on an
    invalid clip jump to the next existing timestamp strictly after the current start;
    stop once the start is past the last existing timestamp.
    ``random``: starts drawn uniformly among existing timestamps, retried until valid.
    Retrying until valid is the same distribution as drawing uniformly among the
    existing timestamps that start a valid clip, which is what is done here (with
    replacement, reproducible from ``seed``).

    Missing frames inside an accepted clip are zero-filled with mask 0 by the Dataset.
    Times are handled as integers (ns), so off-grid timestamps behave as in the HKO-7
    code: a clip starting at 15:19 looks for 15:25, 15:31, ...

Thesis schemes (:func:`get_scheme`, thesis Table 5.3)
    =================  ========  ==============  ===============
    name               set size  input interval  target interval
    =================  ========  ==============  ===============
    regular            1         [1, 10]         [11, 20]
    irregular_input    100       [1, 20]         [21, 30]
    irregular_target   100       [1, 10]         [11, 30]
    irregular          100       [1, 15]         [16, 30]
    =================  ========  ==============  ===============

    Positions are in frame units (1 = first frame of a window of ``span`` slots). A
    *collection* is ``n_in`` sorted distinct input positions drawn from the input
    interval and ``n_out`` target positions drawn from the target interval; the *set
    size* is the number of distinct collections, drawn once from ``seed``. Sample ``i``
    uses collection ``i % set_size``. Times are minutes relative to the last input frame
    (``t_in[-1] == 0``, ``t_out > 0``). With other ``n_in``/``n_out`` the intervals scale:
    regular ``[1, n_in]``/``[n_in+1, n_in+n_out]``; irregular_input doubles the input
    interval; irregular_target doubles the target interval; irregular takes
    ``ceil(1.5 n_in)`` and ``ceil(1.5 n_out)`` slots. ``get_scheme("regular", n_in=5,
    n_out=20)`` is the HKO-7 benchmark setting. Windows of ``span`` slots follow the
    HKO-7 missing rules (:func:`scheme_windows`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "SCHEME_NAMES",
    "SamplingScheme",
    "existing_times",
    "get_scheme",
    "hko7_clips",
    "scheme_windows",
    "valid_clip_starts",
]

_MODES = ("sequent", "random")


def existing_times(times_or_observed: pd.Series | pd.DatetimeIndex | Iterable) -> np.ndarray:
    """Sorted unique int64 (ns since epoch) times of the frames that exist.

    Parameters
    ----------
    times_or_observed : pandas.DatetimeIndex, sequence of datetimes, or pandas.Series of bool
        Either the existing timestamps, or a per-slot ``observed`` flag indexed by time
        (e.g. ``ds["observed"].to_series()`` of a resampled store).

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
    """
    if isinstance(times_or_observed, pd.Series):
        if times_or_observed.dtype != bool:
            raise ValueError(
                "a Series passed as times_or_observed must be a bool 'observed' flag indexed "
                f"by time, got dtype {times_or_observed.dtype}"
            )
        idx = pd.DatetimeIndex(times_or_observed.index[times_or_observed.to_numpy()])
    else:
        try:
            idx = pd.DatetimeIndex(times_or_observed)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"times_or_observed must be datetimes or a bool Series, got {type(times_or_observed)}"
            ) from err
    if idx.hasnans:
        raise ValueError("existing times contain NaT")
    return np.unique(idx.as_unit("ns").asi8)


def valid_clip_starts(
    existing: np.ndarray,
    starts: np.ndarray,
    seq_len: int,
    step_ns: int,
    max_consecutive_missing: int = 2,
) -> np.ndarray:
    """Whether the clips beginning at ``starts`` pass the HKO-7 missing rules.

    Parameters
    ----------
    existing : numpy.ndarray of int64, shape (N,)
        Sorted existing times (ns).
    starts : numpy.ndarray of int64, shape (M,)
        Candidate clip starts (ns).
    seq_len : int
        Frames per clip.
    step_ns : int
        Cadence in ns.
    max_consecutive_missing : int
        Longest accepted run of missing frames.

    Returns
    -------
    numpy.ndarray of bool, shape (M,)
    """
    starts = np.asarray(starts, dtype=np.int64)
    run = np.zeros(starts.shape, dtype=np.int64)
    n_missing = np.zeros(starts.shape, dtype=np.int64)
    ok = np.ones(starts.shape, dtype=bool)
    for k in range(seq_len):
        t = starts + k * step_ns
        pos = np.searchsorted(existing, t)
        present = (pos < len(existing)) & (existing[np.minimum(pos, len(existing) - 1)] == t)
        run = np.where(present, 0, run + 1)
        n_missing += ~present
        ok &= run <= max_consecutive_missing
    ok &= n_missing < seq_len
    return ok


def _check_lengths(seq_len: int, stride: int, max_consecutive_missing: int) -> None:
    if seq_len < 1:
        raise ValueError(f"clip length must be >= 1 frame, got {seq_len}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if max_consecutive_missing < 0:
        raise ValueError(f"max_consecutive_missing must be >= 0, got {max_consecutive_missing}")


def _clip_starts(
    existing: np.ndarray,
    seq_len: int,
    stride: int,
    max_consecutive_missing: int,
    mode: str,
    step_ns: int,
    n_samples: int | None,
    seed: int | None,
) -> np.ndarray:
    if mode not in _MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {list(_MODES)}")
    _check_lengths(seq_len, stride, max_consecutive_missing)
    if len(existing) == 0:
        return np.empty(0, dtype=np.int64)
    if mode == "random":
        if n_samples is None or n_samples < 0:
            raise ValueError(f"random mode needs n_samples >= 0, got {n_samples!r}")
        ok = valid_clip_starts(existing, existing, seq_len, step_ns, max_consecutive_missing)
        candidates = existing[ok]
        if len(candidates) == 0:
            raise ValueError("no existing timestamp starts a valid clip; cannot draw random clips")
        rng = np.random.default_rng(seed)
        return candidates[rng.integers(0, len(candidates), size=n_samples)]

    # sequent: the published iterator, on integer times. Validity of every existing
    # start is precomputed; starts reached by striding are tested on the fly.
    exist_set = set(existing.tolist())
    last = int(existing[-1])
    current = int(existing[0])
    out: list[int] = []
    while current <= last:
        run = 0
        missing = 0
        valid = True
        for k in range(seq_len):
            if current + k * step_ns in exist_set:
                run = 0
            else:
                run += 1
                missing += 1
                if run > max_consecutive_missing:
                    valid = False
                    break
        if valid and missing < seq_len:
            out.append(current)
            current += stride * step_ns
        else:
            pos = int(np.searchsorted(existing, current, side="right"))
            if pos >= len(existing):
                break
            current = int(existing[pos])
    return np.asarray(out, dtype=np.int64)


def hko7_clips(
    times_or_observed: pd.Series | pd.DatetimeIndex | Iterable,
    in_len: int = 5,
    out_len: int = 20,
    stride: int = 5,
    max_consecutive_missing: int = 2,
    mode: str = "sequent",
    *,
    n_samples: int | None = None,
    seed: int | None = None,
    cadence: str | pd.Timedelta = "6min",
) -> pd.DatetimeIndex:
    """Clip start times following the HKO-7 benchmark sampling rules.

    Parameters
    ----------
    times_or_observed : pandas.DatetimeIndex, sequence of datetimes, or pandas.Series of bool
        Existing timestamps, or a per-slot ``observed`` flag indexed by time.
    in_len, out_len : int
        Input and output frames; a clip is ``in_len + out_len`` frames.
    stride : int
        Frames to advance after a valid clip (``sequent`` mode).
    max_consecutive_missing : int
        A clip with a longer run of missing frames (or with every frame missing) is rejected.
    mode : {"sequent", "random"}
        Iteration mode of the HKO-7 iterator.
    n_samples : int, optional
        Number of clips to draw in ``random`` mode (required there).
    seed : int, optional
        Seed of ``random`` mode.
    cadence : str or pandas.Timedelta
        Spacing of the frames of a clip.

    Returns
    -------
    pandas.DatetimeIndex, shape (n_clips,)
        Time of the first frame of each clip (``sequent``: in order; ``random``: in draw
        order, possibly repeated). The clip is ``start + k * cadence``,
        ``k = 0 .. in_len + out_len - 1``.
    """
    step = pd.Timedelta(cadence)
    if step <= pd.Timedelta(0):
        raise ValueError(f"cadence must be positive, got {cadence!r}")
    if in_len < 0 or out_len < 0:
        raise ValueError(f"in_len and out_len must be >= 0, got {in_len}, {out_len}")
    existing = existing_times(times_or_observed)
    starts = _clip_starts(
        existing,
        in_len + out_len,
        stride,
        max_consecutive_missing,
        mode,
        step.value,
        n_samples,
        seed,
    )
    return pd.DatetimeIndex(starts.astype("datetime64[ns]"), name="clip_start")


# --------------------------------------------------------------------------- schemes


def _n_possible(ins: tuple[int, int], outs: tuple[int, int], n_in: int, n_out: int) -> int:
    return math.comb(ins[1] - ins[0] + 1, n_in) * math.comb(outs[1] - outs[0] + 1, n_out)


@dataclass(frozen=True)
class SamplingScheme:
    """A time-sampling scheme: which frames of a window are inputs and targets.

    Parameters
    ----------
    name : str
        Scheme name.
    set_size : int
        Number of distinct timestamp collections.
    input_interval, target_interval : tuple of int
        Inclusive 1-based frame positions ``(first, last)`` inputs / targets are drawn from.
    n_in, n_out : int
        Input and target frames per sample.
    seed : int
        Seed of the collection draw.

    Attributes
    ----------
    collections : numpy.ndarray of int64, shape (set_size, n_in + n_out)
        Sorted 1-based positions, inputs then targets; distinct rows.
    """

    name: str
    set_size: int
    input_interval: tuple[int, int]
    target_interval: tuple[int, int]
    n_in: int = 10
    n_out: int = 10
    seed: int = 0
    collections: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        (a0, a1), (b0, b1) = self.input_interval, self.target_interval
        if not 1 <= a0 <= a1 < b0 <= b1:
            raise ValueError(
                f"scheme {self.name!r}: intervals must satisfy 1 <= in_first <= in_last < "
                f"target_first <= target_last, got {self.input_interval}, {self.target_interval}"
            )
        if self.n_in < 1 or self.n_out < 1:
            raise ValueError(f"scheme {self.name!r}: n_in and n_out must be >= 1")
        if self.n_in > a1 - a0 + 1 or self.n_out > b1 - b0 + 1:
            raise ValueError(
                f"scheme {self.name!r}: cannot draw {self.n_in} inputs from {self.input_interval}"
                f" and {self.n_out} targets from {self.target_interval}"
            )
        possible = _n_possible(self.input_interval, self.target_interval, self.n_in, self.n_out)
        if not 1 <= self.set_size <= possible:
            raise ValueError(
                f"scheme {self.name!r}: set_size must be in [1, {possible}] (distinct "
                f"collections possible), got {self.set_size}"
            )
        object.__setattr__(self, "collections", self._draw())

    def _draw(self) -> np.ndarray:
        (a0, a1), (b0, b1) = self.input_interval, self.target_interval
        n_a, n_b = a1 - a0 + 1, b1 - b0 + 1
        if n_a == self.n_in and n_b == self.n_out:
            row = np.r_[np.arange(a0, a1 + 1), np.arange(b0, b1 + 1)]
            return row[None, :].astype(np.int64)
        rng = np.random.default_rng(self.seed)
        rows: list[tuple[int, ...]] = []
        seen: set[tuple[int, ...]] = set()
        while len(rows) < self.set_size:
            ins = np.sort(rng.choice(np.arange(a0, a1 + 1), self.n_in, replace=False))
            outs = np.sort(rng.choice(np.arange(b0, b1 + 1), self.n_out, replace=False))
            row = tuple(int(v) for v in np.r_[ins, outs])
            if row not in seen:
                seen.add(row)
                rows.append(row)
        return np.asarray(rows, dtype=np.int64)

    @property
    def span(self) -> int:
        """Slots of the window a sample is taken from (last target position)."""
        return int(self.target_interval[1])

    def positions(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """1-based frame positions of sample ``index``.

        Returns
        -------
        in_pos : numpy.ndarray of int64, shape (n_in,)
        out_pos : numpy.ndarray of int64, shape (n_out,)
        """
        row = self.collections[int(index) % self.set_size]
        return row[: self.n_in], row[self.n_in :]

    def times(self, index: int, cadence_minutes: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
        """Times of sample ``index`` in minutes relative to its last input frame.

        Returns
        -------
        t_in : numpy.ndarray of float32, shape (n_in,)
            ``<= 0``, ``t_in[-1] == 0``.
        t_out : numpy.ndarray of float32, shape (n_out,)
            ``> 0``.
        """
        in_pos, out_pos = self.positions(index)
        ref = in_pos[-1]
        return (
            ((in_pos - ref) * cadence_minutes).astype(np.float32),
            ((out_pos - ref) * cadence_minutes).astype(np.float32),
        )


def _regular(n_in: int, n_out: int) -> tuple[int, tuple[int, int], tuple[int, int]]:
    return 1, (1, n_in), (n_in + 1, n_in + n_out)


def _irregular_input(n_in: int, n_out: int) -> tuple[int, tuple[int, int], tuple[int, int]]:
    return 100, (1, 2 * n_in), (2 * n_in + 1, 2 * n_in + n_out)


def _irregular_target(n_in: int, n_out: int) -> tuple[int, tuple[int, int], tuple[int, int]]:
    return 100, (1, n_in), (n_in + 1, n_in + 2 * n_out)


def _irregular(n_in: int, n_out: int) -> tuple[int, tuple[int, int], tuple[int, int]]:
    a, b = math.ceil(1.5 * n_in), math.ceil(1.5 * n_out)
    return 100, (1, a), (a + 1, a + b)


_SCHEMES = {
    "regular": _regular,
    "irregular_input": _irregular_input,
    "irregular_target": _irregular_target,
    "irregular": _irregular,
}
SCHEME_NAMES: tuple[str, ...] = tuple(_SCHEMES)
"""Names accepted by :func:`get_scheme`."""


def get_scheme(
    name: str | SamplingScheme,
    n_in: int = 10,
    n_out: int = 10,
    seed: int = 0,
    set_size: int | None = None,
) -> SamplingScheme:
    """One of the thesis's time-sampling schemes (Table 5.3).

    Parameters
    ----------
    name : str or SamplingScheme
        ``regular``, ``irregular_input``, ``irregular_target`` or ``irregular``
        (case-insensitive); a :class:`SamplingScheme` is returned unchanged.
    n_in, n_out : int
        Input and target frames (10 and 10 in the thesis); intervals scale with them.
    seed : int
        Seed of the collection draw (same seed, same collections).
    set_size : int, optional
        Override the table's set size (1 or 100). By default the table's, capped at the
        number of distinct collections the intervals allow (small ``n_in``/``n_out``).

    Returns
    -------
    SamplingScheme
    """
    if isinstance(name, SamplingScheme):
        return name
    key = str(name).lower()
    if key not in _SCHEMES:
        raise ValueError(f"unknown sampling scheme {name!r}; valid names: {list(SCHEME_NAMES)}")
    size, ins, outs = _SCHEMES[key](int(n_in), int(n_out))
    if set_size is not None:
        size = int(set_size)
    else:  # small n_in/n_out may allow fewer than 100 distinct collections
        size = min(size, _n_possible(ins, outs, int(n_in), int(n_out)))
    return SamplingScheme(key, size, ins, outs, int(n_in), int(n_out), int(seed))


def scheme_windows(
    times_or_observed: pd.Series | pd.DatetimeIndex | Iterable,
    scheme: SamplingScheme,
    stride: int = 5,
    max_consecutive_missing: int = 2,
    mode: str = "sequent",
    *,
    n_samples: int | None = None,
    seed: int | None = None,
    cadence: str | pd.Timedelta = "6min",
) -> pd.DatetimeIndex:
    """Start times of the ``scheme.span``-slot windows that pass the HKO-7 rules.

    Same rules and modes as :func:`hko7_clips` applied to the whole window, so no
    window has more than ``max_consecutive_missing`` missing slots in a row; the missing
    slots a sample does use come back zero-filled with mask 0 from the Dataset.
    """
    return hko7_clips(
        times_or_observed,
        in_len=scheme.span,
        out_len=0,
        stride=stride,
        max_consecutive_missing=max_consecutive_missing,
        mode=mode,
        n_samples=n_samples,
        seed=seed,
        cadence=cadence,
    )
