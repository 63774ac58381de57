"""Classical baselines: persistence exactness, pysteps advection at a known speed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.baselines import BASELINE_NAMES, get_baseline

SIZE = 64
SPEED = 2.0  # pixels per 6-minute step, towards +x


def _field(shift: float) -> np.ndarray:
    """A textured rain cell (p/255) centred at x = 16 + shift, y = 30."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    f = 0.55 * np.exp(-((xx - 16 - shift) ** 2 + (yy - 30) ** 2) / (2 * 5.0**2))
    f += 0.25 * np.exp(-((xx - 20 - shift) ** 2 + (yy - 26) ** 2) / (2 * 2.0**2))
    f += 0.15 * np.exp(-((xx - 12 - shift) ** 2 + (yy - 35) ** 2) / (2 * 1.5**2))
    return np.clip(f, 0, 1)


def _inputs(n_in: int = 4):
    frames = np.stack([_field(SPEED * k) for k in range(n_in)])
    x = torch.tensor(frames, dtype=torch.float32)[None, :, None]
    t_in = torch.tensor([[-6.0 * (n_in - 1 - k) for k in range(n_in)]])
    return x, t_in


def _centroid_x(frame: np.ndarray) -> float:
    w = np.where(frame > 0.05, frame, 0.0)
    return float((w.sum(0) * np.arange(frame.shape[1])).sum() / w.sum())


def test_registry_lists_names():
    with pytest.raises(ValueError, match="persistence, pysteps"):
        get_baseline("rover")


@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_every_baseline_keeps_the_contract(name):
    x, t_in = _inputs()
    t_out = torch.tensor([[6.0, 12.0, 18.0]])
    baseline = get_baseline(name)
    # an ensemble baseline (steps): its deterministic reduction keeps the contract
    y = (baseline.deterministic if getattr(baseline, "ensemble", False) else baseline)(
        x, t_in, t_out
    )
    assert y.shape == (1, 3, 1, SIZE, SIZE) and y.dtype == torch.float32
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    # the cell moved (or, for persistence, stayed) by the expected amount at the first lead
    expected = _centroid_x(_field(SPEED * 3)) + (0.0 if name == "persistence" else SPEED)
    assert _centroid_x(y[0, 0, 0].numpy()) == pytest.approx(expected, abs=1.0)


def test_persistence_returns_last_frame_exactly():
    x, t_in = _inputs()
    y = get_baseline("persistence")(x, t_in, torch.tensor([[6.0, 12.0]]))
    assert torch.equal(y[0, 0], x[0, -1]) and torch.equal(y[0, 1], x[0, -1])


def test_persistence_uses_latest_observed_when_last_missing():
    x, t_in = _inputs()
    mask = torch.ones_like(x)
    mask[0, -1] = 0
    y = get_baseline("persistence")(x, t_in, torch.tensor([[6.0]]), input_mask=mask)
    assert torch.equal(y[0, 0], x[0, -2])


def test_pysteps_moves_cell_at_known_speed_without_nan_edges():
    x, t_in = _inputs()
    t_out = torch.tensor([[6.0, 12.0, 18.0, 30.0]])
    y = get_baseline("pysteps")(x, t_in, t_out)[0, :, 0].numpy()
    assert np.isfinite(y).all()
    last = _centroid_x(x[0, -1, 0].numpy())
    for k, lead in enumerate([1, 2, 3, 5]):
        assert _centroid_x(y[k]) == pytest.approx(last + SPEED * lead, abs=1.0)
    # the upwind edge is filled with "no echo" (0), not pysteps' default NaN
    assert np.all(y[:, :, 0] == 0.0)


def test_pysteps_fractional_leads_and_missing_input_frame():
    x, t_in = _inputs(5)
    mask = torch.ones_like(x)
    mask[0, 2] = 0  # a missing frame in the middle: motion uses the 12-minute gap correctly
    x[0, 2] = 0.0
    t_out = torch.tensor([[9.0, 15.0]])  # 1.5 and 2.5 steps
    y = get_baseline("pysteps")(x, t_in, t_out, input_mask=mask)[0, :, 0].numpy()
    last = _centroid_x(x[0, -1, 0].numpy())
    assert _centroid_x(y[0]) == pytest.approx(last + SPEED * 1.5, abs=1.0)
    assert _centroid_x(y[1]) == pytest.approx(last + SPEED * 2.5, abs=1.0)


def test_pysteps_no_rain_field_gives_zeros():
    x = torch.zeros(2, 4, 1, 32, 32)
    t_in = torch.tensor([[-18.0, -12.0, -6.0, 0.0]] * 2)
    y = get_baseline("pysteps")(x, t_in, torch.tensor([[6.0, 12.0]] * 2))
    assert torch.equal(y, torch.zeros(2, 2, 1, 32, 32))


def test_baseline_rejects_sample_without_observed_frame():
    x, t_in = _inputs()
    with pytest.raises(ValueError, match="no observed input frame"):
        get_baseline("persistence")(x, t_in, torch.tensor([[6.0]]), input_mask=torch.zeros_like(x))


def test_baseline_rejects_bad_shape():
    x, t_in = _inputs()
    with pytest.raises(ValueError, match=r"\(B, T_in, 1, H, W\)"):
        get_baseline("pysteps")(x[:, :, 0], t_in, torch.tensor([[6.0]]))


def test_pysteps_coarse_motion_grid_keeps_speed():
    x, t_in = _inputs()
    # 64 px frames, motion estimated on 4 x 4 blocks (pipeline.motion) and upsampled
    pysteps = get_baseline("pysteps", motion_grid=16)
    y = pysteps(x, t_in, torch.tensor([[6.0, 18.0]]))[0, :, 0].numpy()
    last = _centroid_x(x[0, -1, 0].numpy())
    assert _centroid_x(y[0]) == pytest.approx(last + SPEED, abs=1.0)
    assert _centroid_x(y[1]) == pytest.approx(last + 3 * SPEED, abs=1.0)
