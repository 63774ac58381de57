"""Tests of pipeline.sampling: HKO-7 clip rules and the thesis's sampling schemes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.sampling import SCHEME_NAMES, get_scheme, hko7_clips, scheme_windows

T0 = pd.Timestamp("2015-06-01")
STEP = pd.Timedelta("6min")


def _slots(indices):
    return pd.DatetimeIndex([T0 + i * STEP for i in indices])


# 20 slots, slots 3, 4, 5 and 10 missing (hand-counted cases below)
SMALL = _slots([i for i in range(20) if i not in (3, 4, 5, 10)])


def test_sequent_hand_count():
    starts = hko7_clips(SMALL, in_len=2, out_len=2, stride=2)
    # 0 ok -> 2 (2,3,4,5: three missing) invalid -> next existing 6 -> 6, 8, 10 (start
    # missing but only one), 12, 14, 16, 18 (19 then 20, 21 missing: run of 2) -> 20 > last
    assert list(starts) == list(_slots([0, 6, 8, 10, 12, 14, 16, 18]))


def test_sequent_accepts_observed_series():
    obs = pd.Series(np.isin(np.arange(20), [3, 4, 5, 10], invert=True), index=_slots(range(20)))
    starts = hko7_clips(obs, in_len=2, out_len=2, stride=2)
    assert list(starts) == list(_slots([0, 6, 8, 10, 12, 14, 16, 18]))


def test_random_draws_only_valid_existing_starts_and_is_reproducible():
    a = hko7_clips(SMALL, in_len=2, out_len=2, mode="random", n_samples=500, seed=3)
    b = hko7_clips(SMALL, in_len=2, out_len=2, mode="random", n_samples=500, seed=3)
    c = hko7_clips(SMALL, in_len=2, out_len=2, mode="random", n_samples=500, seed=4)
    assert a.equals(b) and not a.equals(c)
    # existing starts whose clip has no run of 3 missing: all but 2 and 19
    valid = _slots([0, 1, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18])
    assert set(a) == set(valid)  # 500 draws over 14 candidates hit every one


def test_entirely_missing_clip_rejected_even_with_large_tolerance():
    # 0: (0, 1, 2) has a frame -> valid; 1: (1, 2, 3) entirely missing -> invalid even
    # though 3 <= max_consecutive_missing -> jump to 10 -> valid -> 11 is past the last time
    starts = hko7_clips(_slots([0, 10]), in_len=1, out_len=2, stride=1, max_consecutive_missing=5)
    assert list(starts) == list(_slots([0, 10]))


def test_unknown_mode_lists_valid_modes():
    with pytest.raises(ValueError, match="sequent"):
        hko7_clips(SMALL, mode="shuffle")


def _naive_hko7_sequent(times, seq_len, stride, max_missing):
    """Direct transcription of the published rules with Timestamps and a set."""
    times = sorted(pd.DatetimeIndex(times))
    exist = set(times)

    def valid(start):
        run = 0
        for k in range(seq_len):
            if start + k * STEP in exist:
                run = 0
            else:
                run += 1
                if run > max_missing or run >= seq_len:
                    return False
        return True

    out, current = [], times[0]
    while current <= times[-1]:
        if valid(current):
            out.append(current)
            current = current + stride * STEP
        else:
            later = [t for t in times if t > current]
            if not later:
                break
            current = later[0]
    return out, valid


def _published_structure(seed):
    """Days of 240 slots with random missing runs and a few off-grid timestamps."""
    rng = np.random.default_rng(seed)
    days = pd.to_datetime(["2015-06-01", "2015-06-02", "2015-06-05", "2015-06-07", "2015-06-08"])
    times = []
    for day in days:
        present = np.ones(240, dtype=bool)
        for _ in range(rng.integers(3, 9)):
            start, length = rng.integers(0, 240), rng.integers(1, 7)
            present[start : start + length] = False
        times += [day + s * STEP for s in np.flatnonzero(present)]
    times += [pd.Timestamp("2015-06-02 15:19"), pd.Timestamp("2015-06-05 09:55")]
    return pd.DatetimeIndex(sorted(times))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hko7_counts_match_naive_implementation(seed):
    times = _published_structure(seed)
    expected, valid = _naive_hko7_sequent(times, 25, 5, 2)
    got = hko7_clips(times, in_len=5, out_len=20, stride=5)
    assert len(got) == len(expected) > 100
    assert list(got) == expected
    drawn = hko7_clips(times, in_len=5, out_len=20, mode="random", n_samples=300, seed=seed)
    assert all(valid(t) for t in drawn)
    assert set(drawn) <= set(times)


def test_schemes_table_5_3():
    table = {
        "regular": (1, (1, 10), (11, 20)),
        "irregular_input": (100, (1, 20), (21, 30)),
        "irregular_target": (100, (1, 10), (11, 30)),
        "irregular": (100, (1, 15), (16, 30)),
    }
    assert set(SCHEME_NAMES) == set(table)
    for name, (size, ins, outs) in table.items():
        s = get_scheme(name, seed=7)
        assert (s.set_size, s.input_interval, s.target_interval) == (size, ins, outs)
        c = s.collections
        assert c.shape == (size, 20)
        assert len({tuple(r) for r in c}) == size  # distinct collections
        assert (c[:, :10] >= ins[0]).all() and (c[:, :10] <= ins[1]).all()
        assert (c[:, 10:] >= outs[0]).all() and (c[:, 10:] <= outs[1]).all()
        assert (np.diff(c, axis=1) > 0).all()  # sorted, distinct within a sample
        for i in (0, 1, size + 1):
            t_in, t_out = s.times(i)
            assert t_in[-1] == 0 and (t_in <= 0).all() and (t_out > 0).all()
            assert np.array_equal(t_in, (c[i % size, :10] - c[i % size, 9]) * 6)
    reg = get_scheme("regular")
    t_in, t_out = reg.times(5)
    assert t_in.tolist() == [-54, -48, -42, -36, -30, -24, -18, -12, -6, 0]
    assert t_out.tolist() == [6, 12, 18, 24, 30, 36, 42, 48, 54, 60]
    # regular input interval is fully used: irregular_input targets are regular
    assert (get_scheme("irregular_input").collections[:, 10:] == np.arange(21, 31)).all()


def test_scheme_seed_reproducible_and_counts_configurable():
    a, b = get_scheme("irregular", seed=1), get_scheme("irregular", seed=1)
    assert np.array_equal(a.collections, b.collections)
    assert not np.array_equal(a.collections, get_scheme("irregular", seed=2).collections)
    small = get_scheme("irregular_target", n_in=3, n_out=4)
    assert small.input_interval == (1, 3) and small.target_interval == (4, 11)
    # C(3, 3) * C(8, 4) = 70 distinct collections possible: the set size is capped
    assert small.set_size == 70 and small.collections.shape == (70, 7)
    hko = get_scheme("regular", n_in=5, n_out=20)
    assert hko.span == 25 and hko.times(0)[1][-1] == 120


def test_unknown_scheme_lists_valid_names():
    with pytest.raises(ValueError, match="irregular_target"):
        get_scheme("zigzag")


def test_set_size_beyond_possible_collections_is_refused():
    with pytest.raises(ValueError, match="set_size"):
        get_scheme("regular", set_size=2)


def test_scheme_windows_follow_hko7_rules_over_the_span():
    s = get_scheme("regular", n_in=2, n_out=2)
    assert list(scheme_windows(SMALL, s, stride=2)) == list(
        hko7_clips(SMALL, in_len=2, out_len=2, stride=2)
    )
