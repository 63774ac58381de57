"""Lagrangian mode: exact at initialisation, full resolution, moving frame, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from nowcast.advection import advect, resize_motion
from nowcast.configs import load_config
from nowcast.models import MODEL_NAMES, get_model
from nowcast.models.lagrangian import LagrangianNowcaster, downsize_frames

# one forecast per call; the ensemble by construction has tests/nowcast/test_shrvqvae.py
NETWORKS = tuple(n for n in MODEL_NAMES if n != "shrvqvae")


def _moving(n: int, u_per_step: float, t: int = 5, seed: int = 0) -> torch.Tensor:
    """``(1, t, 1, n, n)`` frames of one texture moving ``u_per_step`` px per step along x."""
    rng = np.random.default_rng(seed)
    f = gaussian_filter(rng.random((n, n)), n / 40)
    f = (f - f.min()) / (f.max() - f.min())
    k = np.arange(t) - (t - 1)
    frames = [np.roll(f, int(round(u_per_step * s)), axis=1) for s in k]
    return torch.from_numpy(np.stack(frames)).float()[None, :, None]


def _times(t_in: int = 5, t_out: int = 4):
    tin = ((torch.arange(t_in) - (t_in - 1)) * 6.0)[None].float()
    tout = (torch.arange(1, t_out + 1) * 6.0)[None].float()
    return tin, tout


def _uniform(n: int, u: float, v: float) -> torch.Tensor:
    m = torch.zeros(1, 2, n, n)
    m[:, 0] = u
    m[:, 1] = v
    return m


@pytest.mark.parametrize("name", NETWORKS)
def test_untrained_lagrangian_model_is_the_extrapolation_nowcast(name):
    cfg = load_config("small_lagrangian")
    model = get_model(name, cfg).eval()
    assert isinstance(model, LagrangianNowcaster)
    x = _moving(80, 1.0)
    tin, tout = _times()
    v = _uniform(80, 1.0, -0.5)
    with torch.no_grad():
        y = model(x, tin, tout, motion=v)
    want = advect(x[:, -1], v, tout[0] / 6.0)
    torch.testing.assert_close(y, want, rtol=0, atol=0)


def test_untrained_lagrangian_model_turns_a_blob_with_a_solid_body_rotation():
    """Curved motion, known answer: a blob 20 px east of the centre of a rotation of
    2 pi / 40 rad per step is 45 degrees on after 5 steps (30 min) and a quarter turn on,
    20 px south of the centre, after 10 steps (60 min)."""
    n, c, omega = 80, 40.0, 2 * np.pi / 40
    y, x = np.mgrid[:n, :n].astype(np.float64)
    motion = torch.zeros(1, 2, n, n)
    motion[0, 0] = torch.from_numpy(-omega * (y - c)).float()  # x: columns, to the east
    motion[0, 1] = torch.from_numpy(omega * (x - c)).float()  # y: rows, downwards
    blob = np.exp(-((x - 60.0) ** 2 + (y - 40.0) ** 2) / (2 * 2.5**2))
    frames = torch.from_numpy(blob).float()[None, None, None].expand(1, 5, 1, n, n)
    model = get_model("trajgru_ode", load_config("small_lagrangian")).eval()
    tin = ((torch.arange(5) - 4) * 6.0)[None].float()
    tout = torch.tensor([[30.0, 60.0]])
    with torch.no_grad():
        y_hat = model(frames, tin, tout, motion=motion)[0, :, 0].numpy()
    peaks = [np.unravel_index(f.argmax(), f.shape) for f in y_hat]  # (row, column)
    # 45 degrees: (40 + 20 cos 45, 40 + 20 sin 45) = (54.14, 54.14); 90: (40, 60)
    assert [(int(r), int(k)) for r, k in peaks] == [(54, 54), (60, 40)]
    for f in y_hat:  # the blob keeps its mass and its peak height (no smearing)
        assert abs(f.sum() - blob.sum()) / blob.sum() < 0.02
        assert f.max() > 0.85


def test_full_resolution_forecast_from_a_coarse_network():
    model = get_model("trajgru_ode", load_config("small_lagrangian")).eval()
    x = _moving(480, 6.0)
    tin, tout = _times(5, 3)
    v80 = _uniform(80, 1.0, 0.5)  # 1 px per step on the 80 grid = 6 px on 480
    with torch.no_grad():
        y = model(x, tin, tout, motion=v80)
    assert y.shape == (1, 3, 1, 480, 480)
    want = advect(x[:, -1], resize_motion(v80, (480, 480)), [1.0, 2.0, 3.0])
    torch.testing.assert_close(y, want, rtol=0, atol=1e-5)
    # the same motion given on the full grid gives the same forecast
    with torch.no_grad():
        y2 = model(x, tin, tout, motion=resize_motion(v80, (480, 480)))
    torch.testing.assert_close(y2, y, rtol=0, atol=1e-5)


def test_inputs_enter_the_network_in_the_moving_frame():
    """A field moving exactly with the motion is frozen in the network's inputs."""
    seen = {}

    class Probe(torch.nn.Module):
        continuous_time = True

        def forward(self, x, t_in, t_out, input_mask=None):
            seen["x"], seen["m"] = x.clone(), input_mask.clone()
            return x[:, -1:].expand(-1, t_out.shape[1], -1, -1, -1)

    model = LagrangianNowcaster(Probe(), grid=80)
    x = _moving(80, 2.0)
    tin, tout = _times(5, 2)
    model(x, tin, tout, motion=_uniform(80, 2.0, 0.0))
    xl, ml = seen["x"][0, :, 0], seen["m"][0, :, 0]
    for k in range(5):  # frame k was advected by 2 (4 - k) px: equal to the last one
        valid = ml[k] > 0
        assert not valid[:, : 2 * (4 - k)].any()  # came in from outside: invalid
        torch.testing.assert_close(xl[k][valid], xl[-1][valid], rtol=0, atol=1e-6)


def test_learned_change_and_damping_move_the_forecast_off_extrapolation():
    model = get_model("trajgru_ode", load_config("small_lagrangian")).eval()
    x = _moving(80, 1.0)
    tin, tout = _times(5, 2)
    v = _uniform(80, 1.0, 0.0)
    with torch.no_grad():
        base = model(x, tin, tout, motion=v)
        model.smoothing[:, 2] = 1.0  # lead 1 and 2 fully replaced by a 2-px Gaussian
        damped = model(x, tin, tout, motion=v)
    assert float((damped - base).abs().max()) > 1e-3
    # mass is kept by the smoothing (the field is far from the inflow edge after one step)
    inner = (..., slice(10, -10), slice(10, -10))
    assert abs(float(damped[inner].mean() - base[inner].mean())) < 5e-3


def test_downsize_frames_is_a_block_mean_in_linear_z():
    x = torch.zeros(1, 1, 1, 4, 4)
    x[..., :2, :2] = torch.tensor([[0.5, 0.5], [0.5, 0.0]])
    mask = torch.ones_like(x)
    mask[..., 1, 1] = 0  # the 0.0 pixel is invalid
    xc, mc = downsize_frames(x, mask, 2)
    assert xc.shape == (1, 1, 1, 2, 2)
    # three valid pixels of 0.5 (25 dBZ): the mean in Z is 25 dBZ again
    assert abs(float(xc[0, 0, 0, 0, 0]) - 0.5) < 1e-6
    assert float(mc[0, 0, 0, 0, 0]) == 1.0
    mask[..., 0:2, 0:2] = 0
    mask[..., 0, 0] = 1  # 1 of 4 valid: below half, invalid
    _, mc = downsize_frames(x, mask, 2)
    assert float(mc[0, 0, 0, 0, 0]) == 0.0


def test_radar_outage_window_is_refused():
    model = get_model("convgru", load_config("small_lagrangian"))
    x = _moving(80, 1.0)
    tin, tout = _times(5, 2)
    with pytest.raises(ValueError, match="radar outage"):
        model(x, tin, tout, input_mask=torch.zeros_like(x), motion=_uniform(80, 0, 0))


def test_grid_that_is_not_a_multiple_is_refused():
    model = get_model("convgru", load_config("small_lagrangian"))
    x = torch.zeros(1, 5, 1, 100, 100)
    tin, tout = _times(5, 2)
    with pytest.raises(ValueError, match="multiples of 80"):
        model(x, tin, tout, motion=_uniform(100, 0, 0))


def test_thesis_modes_are_unchanged():
    cfg = load_config("small")
    model = get_model("trajgru_ode", cfg)
    assert not isinstance(model, LagrangianNowcaster)
    hk = load_config("hko7").model("trajgru")
    assert hk.lagrangian is False and hk.residual is False
    lag = load_config("hko7_lagrangian").model("trajgru")
    assert lag.lagrangian and lag.residual and lag.channels == hk.channels
    assert (
        dataclasses.replace(
            lag, lagrangian=False, residual=False, in_frames=10, out_frames=10, mda_window=10
        )
        == hk
    )


def test_lagrangian_checkpoint_round_trip(tmp_path):
    model = get_model("trajgru_attention", load_config("small_lagrangian"))
    with torch.no_grad():
        model.smoothing.fill_(0.25)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    again = get_model("trajgru_attention", load_config("small_lagrangian"))
    again.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    x = _moving(80, 1.0)
    tin, tout = _times(5, 3)
    v = _uniform(80, 1.0, 0.0)
    with torch.no_grad():
        torch.testing.assert_close(again(x, tin, tout, motion=v), model(x, tin, tout, motion=v))


def test_zero_initialised_parts_receive_gradients():
    """The change head and the damping table start at 0 but learn (training mode)."""
    model = get_model("trajgru_ode", load_config("small_lagrangian")).train()
    x = _moving(80, 1.0)
    tin, tout = _times(5, 3)
    target = torch.zeros(1, 3, 1, 80, 80)
    y = model(x, tin, tout, motion=_uniform(80, 1.0, 0.0))
    ((y - target) ** 2).mean().backward()
    assert float(model.smoothing.grad.abs().sum()) > 0
    assert float(model.net.head.weight.grad.abs().sum()) > 0
