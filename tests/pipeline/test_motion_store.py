"""Tests of per-slot motion in resampled stores (pipeline.motion_store via resample_store)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from pipeline.motion import FALLBACK_STATUSES
from pipeline.motion_store import write_motion
from pipeline.resample import resample_store
from pipeline.store import open_store
from tests.pipeline.test_motion import translated
from tests.pipeline.test_resample import make_source_store

DAY = pd.Timestamp("2015-06-01")
N_FRAMES = 30
MISSING = [10, 20, 21, 22]  # slots without a frame
U, V = 2.0, -1.0  # source px per 6-min step on 48 x 48; 1.0, -0.5 on the 24 x 24 output


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion_store")
    slots = [s for s in range(N_FRAMES) if s not in MISSING]
    frames = translated(48, U, V, times_steps=slots, corr=3.0)
    pixels = np.round(frames * 255).astype(np.uint8)
    times = [DAY + pd.Timedelta(minutes=6 * s) for s in slots]
    src = make_source_store(root / "src", times, pixels)
    with_motion = root / "motion.zarr"
    report = resample_store(src, with_motion, size=24, progress=False, motion="lk")
    plain = root / "plain.zarr"
    resample_store(src, plain, size=24, progress=False)
    return {"src": src, "motion": with_motion, "plain": plain, "report": report}


def test_motion_is_the_known_speed_at_the_right_slots(stores):
    ds = open_store(stores["motion"])
    motion = ds["motion"].to_numpy()
    status = ds["motion_fallback"].to_numpy()
    assert motion.shape == (240, 2, 24, 24) and motion.dtype == np.float32
    assert list(ds["component"].values) == ["x", "y"]
    # estimated where the 4-slot window t-3..t holds >= 2 observed frames: not slot 0
    # (one frame), not 23 (20..22 missing), estimated at 10 and 11 across the missing 10,
    # and at 30..32 from the last frames (the slot itself need not be observed)
    estimated = np.flatnonzero(status == 0)
    expected = [s for s in range(1, 33) if sum(1 for k in range(s - 3, s + 1)
                if 0 <= k < N_FRAMES and k not in MISSING) >= 2]  # fmt: skip
    assert estimated.tolist() == expected
    too_few = FALLBACK_STATUSES.index("too_few_frames")
    assert (status[[0, 23, 33, 100, 239]] == too_few).all()
    assert not motion[status != 0].any()
    inner = motion[estimated][:, :, 3:-3, 3:-3]
    np.testing.assert_allclose(inner[:, 0].mean(axis=(1, 2)), U / 2, atol=0.1)
    np.testing.assert_allclose(inner[:, 1].mean(axis=(1, 2)), V / 2, atol=0.1)
    assert np.abs(inner[:, 0] - U / 2).max() < 0.25 and np.abs(inner[:, 1] - V / 2).max() < 0.25
    assert stores["report"].summary()["motion"]["n_estimated"] == len(expected)


@pytest.fixture(scope="module")
def turning(tmp_path_factory):
    """A store whose motion turns: east (2, 0) source px per step in slots 0..9, then
    south (0, 2) in slots 10..19; (1, 0) and (0, 1) px per step on the 24 x 24 output."""
    root = tmp_path_factory.mktemp("turning")
    east = translated(48, 2.0, 0.0, times_steps=range(10), corr=3.0)
    south = translated(48, 0.0, 2.0, times_steps=range(10, 20), seed=1, corr=3.0)
    pixels = np.round(np.concatenate([east, south]) * 255).astype(np.uint8)
    times = [DAY + pd.Timedelta(minutes=6 * s) for s in range(20)]
    src = make_source_store(root / "src", times, pixels)
    out = root / "motion.zarr"
    resample_store(src, out, size=24, progress=False, motion="lk")
    return out


@pytest.mark.parametrize(
    ("slot", "expected"),
    [(6, (1.0, 0.0)), (9, (1.0, 0.0)), (13, (0.0, 1.0)), (19, (0.0, 1.0))],
)
def test_stored_motion_is_the_motion_of_its_own_window(turning, slot, expected):
    """Slot t holds the motion of slots t-3..t: east up to slot 9, south from slot 13 on.

    A window shifted by one slot either way (t-4..t-1 or t-2..t+1) would straddle the
    turn at slots 9 or 13 and miss these known speeds.
    """
    ds = open_store(turning)
    assert int(ds["motion_fallback"][slot]) == 0
    inner = ds["motion"][slot].to_numpy()[:, 3:-3, 3:-3]
    np.testing.assert_allclose(inner.mean(axis=(1, 2)), expected, atol=0.1)
    assert np.abs(inner[0] - expected[0]).max() < 0.25
    assert np.abs(inner[1] - expected[1]).max() < 0.25


def test_motion_attributes(stores):
    m = open_store(stores["motion"])["motion"]
    assert m.attrs["units"] == "pixel per cadence step"
    assert m.attrs["cadence_minutes"] == 6.0 and m.attrs["motion_window"] == 4
    assert m.attrs["motion_method"] == "lk"
    # the 48-px test source spans 512 km (pipeline.geo): 24 output pixels of 21.33 km
    assert m.attrs["pixel_km"] == pytest.approx(512 / 24)
    assert m.attrs["km_per_h_per_unit"] == pytest.approx(m.attrs["pixel_km"] * 10.0)
    flags = open_store(stores["motion"])["motion_fallback"].attrs
    assert flags["flag_meanings"].split() == list(FALLBACK_STATUSES)


def test_motion_off_store_is_unchanged(stores):
    plain = open_store(stores["plain"])
    moved = open_store(stores["motion"])
    assert set(plain.data_vars) == {"reflectivity", "mask", "observed"}
    assert "component" not in plain.coords
    assert not any("motion" in k for k in plain.attrs)
    keep = moved.drop_vars(["motion", "motion_fallback", "component"])
    xr.testing.assert_equal(plain, keep)
    # the group attributes survive the motion pass (only the motion settings are added)
    extra = {"resample_motion": "lk", "resample_motion_window": 4}
    same = {k: v for k, v in moved.attrs.items() if k not in extra and k != "history"}
    assert same == {k: v for k, v in plain.attrs.items() if k != "history"}
    assert {k: moved.attrs[k] for k in extra} == extra
    assert "pipeline.motion_store.write_motion(method='lk', window=4)" in moved.attrs["history"]


def test_write_motion_refuses_existing_then_overwrites(stores, tmp_path):
    with pytest.raises(ValueError, match="already has"):
        write_motion(stores["motion"])
    with pytest.raises(ValueError, match="valid names: lk, vet, zero"):
        write_motion(stores["plain"], method="nope")
    with pytest.raises(ValueError, match="window"):
        write_motion(stores["plain"], window=1)


def test_write_motion_zero_on_a_copy(stores, tmp_path):
    import shutil

    dst = tmp_path / "copy.zarr"
    shutil.copytree(stores["motion"], dst)
    summary = write_motion(dst, method="zero", overwrite=True)
    ds = open_store(dst)
    assert not ds["motion"].to_numpy().any()
    assert ds["motion"].attrs["motion_method"] == "zero"
    assert summary["n_estimated"] == int((ds["motion_fallback"] == 0).sum())


def test_dataset_items_carry_the_motion_of_the_last_input_slot(stores):
    from pipeline.dataset import RadarSequenceDataset

    kw = {"days": ["2015-06-01"], "scheme": "regular", "n_in": 4, "n_out": 2, "stride": 1}
    kw["max_consecutive_missing"] = 3  # so a window may end on slot 23 (20..22 missing)
    plain = RadarSequenceDataset(stores["motion"], **kw)
    ds = RadarSequenceDataset(stores["motion"], with_motion=True, **kw)
    assert len(ds) == len(plain) > 0
    stored = open_store(stores["motion"])["motion"].to_numpy()
    assert len(plain[0]) == 6
    for i in (0, 5, 9):
        item = ds[i]
        assert len(item) == 7
        for a, b in zip(item[:6], plain[i], strict=True):
            assert torch.equal(a, b)
        last = int((ds.item_time(i) - DAY) / pd.Timedelta("6min"))
        assert item[6].shape == (2, 24, 24) and item[6].dtype == torch.float32
        np.testing.assert_array_equal(item[6].numpy(), stored[last])
        assert abs(float(item[6][0, 3:-3, 3:-3].mean()) - U / 2) < 0.1
    # a window ending on a slot whose motion fell back gets zeros
    with_zero = [i for i in range(len(ds)) if ds.item_time(i) == DAY + pd.Timedelta("138min")]
    assert with_zero and not ds[with_zero[0]][6].any()  # slot 23: too few frames


def test_dataset_with_motion_needs_the_variable(stores):
    from pipeline.dataset import RadarSequenceDataset

    with pytest.raises(ValueError, match="no motion / motion_fallback variable"):
        RadarSequenceDataset(stores["plain"], days=["2015-06-01"], with_motion=True)


def test_cli_resample_with_motion(stores, tmp_path):
    import json

    from typer.testing import CliRunner

    from flows.cli import app

    out = tmp_path / "cli.zarr"
    args = ["resample", str(stores["src"]), str(out), "--size", "24", "--no-progress"]
    res = CliRunner().invoke(app, [*args, "--motion", "lk"])
    assert res.exit_code == 0, res.output
    # the summary is the JSON line (log records of other loggers may share the output)
    summary = json.loads([ln for ln in res.output.splitlines() if ln.startswith("{")][-1])
    assert summary["motion"]["method"] == "lk" and summary["motion"]["window"] == 4
    for var in ("motion", "motion_fallback"):
        xr.testing.assert_identical(open_store(out)[var], open_store(stores["motion"])[var])
    args[2] = str(tmp_path / "bad.zarr")
    bad = CliRunner().invoke(app, [*args, "--motion", "nope"])
    assert bad.exit_code == 2 and "valid names: lk, vet, zero" in bad.output
    assert not (tmp_path / "bad.zarr").exists()


def test_resample_flow_task_passes_motion(stores, tmp_path):
    from flows.resample import resample_task

    out = tmp_path / "flow.zarr"
    summary = resample_task.fn(str(stores["src"]), str(out), size=24, motion="zero")
    assert summary["motion"]["method"] == "zero"
    ds = open_store(out)
    assert ds["motion"].attrs["motion_method"] == "zero" and not ds["motion"].to_numpy().any()
    assert ds.attrs["resample_motion"] == "zero" and ds.attrs["resample_motion_window"] == 4


def test_small_blocks_give_the_same_motion(stores, tmp_path):
    """Blocks of 8 slots (windows reach 3 slots into the previous block) change nothing."""
    out = tmp_path / "small.zarr"
    resample_store(
        stores["src"], out, size=24, progress=False, motion="lk", time_chunk=4, block_chunks=2
    )
    small, ref = open_store(out), open_store(stores["motion"])
    np.testing.assert_array_equal(small["motion"].to_numpy(), ref["motion"].to_numpy())
    np.testing.assert_array_equal(
        small["motion_fallback"].to_numpy(), ref["motion_fallback"].to_numpy()
    )
