"""Tests of pipeline.dataset: items, masks, splits, worker safety."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from pipeline.dataset import RadarSequenceDataset, split_days, store_days
from pipeline.hko7 import write_day_list
from pipeline.resample import resample_store
from pipeline.sampling import get_scheme
from tests.pipeline.test_resample import make_source_store

DAYS = pd.to_datetime(["2015-06-01", "2015-06-02", "2015-06-03"])
MISSING = [50, 51, 100, 101, 102, 103, 104]  # day-1 slots without a frame


def _value(slot):
    """Normalised value of the frame in a slot: pixel 10 + slot-of-day."""
    return (10 + slot % 240) / 255.0


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    slots = [s for s in range(720) if s not in MISSING]
    times = pd.DatetimeIndex([DAYS[0] + pd.Timedelta(minutes=6 * s) for s in slots])
    pixels = np.empty((len(slots), 48, 48), dtype=np.uint8)
    pixels[:] = (10 + np.asarray(slots) % 240)[:, None, None]
    mask = np.ones(pixels.shape, dtype=bool)
    mask[:, 0, :] = False  # first row invalid everywhere
    src = make_source_store(root / "src", times, pixels, mask)
    dst = root / "resampled.zarr"
    resample_store(src, dst, size=48, progress=False)
    return dst


def test_item_shapes_values_and_times(store):
    ds = RadarSequenceDataset(store, days=["2015-06-01"], scheme="regular", n_in=5, n_out=5)
    # hand count: starts 0..90 every 5 (19); 95..99 hit the 5-slot gap at 100; 105..230 (26)
    assert len(ds) == 19 + 26
    x, y, t_in, t_out, m_in, m_out = ds[0]
    assert x.shape == (5, 1, 48, 48) and y.shape == (5, 1, 48, 48)
    assert m_in.shape == x.shape and m_out.shape == y.shape
    assert all(v.dtype == torch.float32 for v in (x, y, t_in, t_out, m_in, m_out))
    assert t_in.tolist() == [-24, -18, -12, -6, 0] and t_out.tolist() == [6, 12, 18, 24, 30]
    np.testing.assert_allclose(x[:, 0, 5, 5].numpy(), [_value(s) for s in range(5)], atol=1e-6)
    np.testing.assert_allclose(y[:, 0, 5, 5].numpy(), [_value(s) for s in range(5, 10)], atol=1e-6)
    assert (m_in[:, 0, 0] == 0).all() and (m_in[:, 0, 1:] == 1).all()
    assert ds.item_time(0) == pd.Timestamp("2015-06-01 00:24")
    assert ds.item_time(19) == pd.Timestamp("2015-06-01 10:54")


def test_missing_frames_zero_filled_with_mask_zero(store):
    ds = RadarSequenceDataset(store, days=["2015-06-01"], scheme="regular", n_in=5, n_out=5)
    x, y, *_, m_in, m_out = ds[9]  # window 45..54: slots 50, 51 are targets 0 and 1
    assert ds.item_time(9) == pd.Timestamp("2015-06-01 04:54")
    assert (y[:2] == 0).all() and (m_out[:2] == 0).all()
    np.testing.assert_allclose(y[2:, 0, 3, 3].numpy(), [_value(s) for s in (52, 53, 54)], atol=1e-6)
    assert (m_out[2:, 0, 1:] == 1).all()


def test_no_data_from_days_outside_the_split(store):
    ds = RadarSequenceDataset(store, days=["2015-06-02"], n_in=5, n_out=5, stride=1)
    starts = [ds.item_time(i) - pd.Timedelta("24min") for i in range(len(ds))]
    # last window starts at day-2 slot 232 and runs 2 slots into day 3 (HKO-7 rule)
    assert starts[0] == pd.Timestamp("2015-06-02") and len(ds) == 233
    assert starts[-1] == pd.Timestamp("2015-06-02 23:12")
    x, y, *_, m_out = ds[len(ds) - 1]
    assert (y[3:] == 0).all() and (m_out[3:] == 0).all()  # day-3 frames never read
    np.testing.assert_allclose(
        y[:3, 0, 9, 9].numpy(), [_value(s) for s in (237, 238, 239)], atol=1e-6
    )


def test_irregular_scheme_items_follow_collections(store):
    scheme = get_scheme("irregular", n_in=5, n_out=5, seed=3)
    ds = RadarSequenceDataset(store, days=DAYS[1:], scheme=scheme, stride=7)
    for i in (0, 1, 57):
        x, y, t_in, t_out, *_ = ds[i]
        in_pos, out_pos = scheme.positions(i)
        last = ds.item_time(i)
        start_slot = int((last - DAYS[0]) / pd.Timedelta("6min")) - (in_pos[-1] - 1)
        np.testing.assert_allclose(
            x[:, 0, 7, 7].numpy(), [_value(start_slot + p - 1) for p in in_pos], atol=1e-6
        )
        np.testing.assert_allclose(
            y[:, 0, 7, 7].numpy(), [_value(start_slot + p - 1) for p in out_pos], atol=1e-6
        )
        assert t_in[-1] == 0 and (t_out > 0).all()
        assert t_out.tolist() == ((out_pos - in_pos[-1]) * 6).tolist()


def test_dataloader_workers_give_the_same_batch(store):
    ds = RadarSequenceDataset(store, days=DAYS, scheme="irregular_input", n_in=3, n_out=3)
    first = Subset(ds, range(4))  # consumed to the end, so the workers exit cleanly
    (b0,) = list(DataLoader(first, batch_size=4, num_workers=0))
    # spawn: workers start clean, as they must in a process that already runs threads
    # (Prefect, dask); a forked worker inherits those threads' locks and atexit hooks
    (b2,) = list(DataLoader(first, batch_size=4, num_workers=2, multiprocessing_context="spawn"))
    assert b0[0].shape == (4, 3, 1, 48, 48)
    for a, b in zip(b0, b2, strict=True):
        assert torch.equal(a, b)


def test_split_by_fractions_is_chronological_and_disjoint(store):
    days = store_days(store)
    assert list(days) == list(DAYS)
    splits = split_days(days, fractions=(1 / 3, 1 / 3, 1 / 3))
    assert [list(splits[k]) for k in ("train", "valid", "test")] == [[d] for d in DAYS]
    ds = RadarSequenceDataset(
        store, split="valid", fractions=(1 / 3, 1 / 3, 1 / 3), n_in=5, n_out=5
    )
    assert list(ds.days) == [DAYS[1]]


def test_split_from_day_list_files(store, tmp_path):
    files = {}
    for name, days in (("train", DAYS[:2]), ("test", DAYS[2:])):
        files[name] = tmp_path / f"hko7_rainy_{name}_days.txt"
        write_day_list(files[name], days, [1.0] * len(days))
    splits = split_days(store_days(store), day_files=files)
    assert list(splits["train"]) == list(DAYS[:2]) and list(splits["test"]) == [DAYS[2]]
    write_day_list(tmp_path / "bad.txt", DAYS[1:2], [1.0])
    with pytest.raises(ValueError, match="2015-06-02"):
        split_days(DAYS, day_files={"train": files["train"], "valid": tmp_path / "bad.txt"})


def test_requires_exactly_one_of_days_and_split(store):
    with pytest.raises(ValueError, match="exactly one"):
        RadarSequenceDataset(store)


def test_refuses_a_store_without_observed_flags(tmp_path):
    src = make_source_store(
        tmp_path / "src", [pd.Timestamp("2015-06-01")], np.zeros((1, 48, 48), np.uint8)
    )
    with pytest.raises(ValueError, match="observed"):
        RadarSequenceDataset(src, days=["2015-06-01"])
