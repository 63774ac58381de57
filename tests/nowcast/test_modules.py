"""Building blocks: warp, cells, latent ODE, attention, zigzag (known answers)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nowcast.modules import (
    ConvGRUCell,
    MotionAttention,
    ODEFunc,
    TrajGRUCell,
    TrajGRUODECell,
    ZigzagShortcut,
    solve_latent,
    warp,
)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize(("dx", "dy"), [(1, 0), (0, 2), (-2, 1), (3, -3)])
def test_warp_moves_one_hot_by_integer_flow(dx, dy):
    state = torch.zeros(1, 2, 9, 9)
    state[0, 0, 4, 4] = 1.0
    state[0, 1, 2, 6] = 5.0
    flow = torch.zeros(1, 2, 9, 9)
    flow[:, 0] = dx
    flow[:, 1] = dy
    out = warp(state, flow)
    expected = torch.zeros_like(state)
    expected[0, 0, 4 + dy, 4 + dx] = 1.0
    if 0 <= 2 + dy < 9 and 0 <= 6 + dx < 9:
        expected[0, 1, 2 + dy, 6 + dx] = 5.0
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_warp_reads_zero_outside_the_frame():
    state = torch.ones(1, 1, 5, 5)
    flow = torch.zeros(1, 2, 5, 5)
    flow[:, 0] = 2.0  # content moves right by 2: the two left columns come from outside
    out = warp(state, flow)
    assert torch.equal(out[0, 0, :, :2], torch.zeros(5, 2))
    assert torch.equal(out[0, 0, :, 2:], torch.ones(5, 3))


def test_convgru_cell_known_answer_with_zero_weights():
    cell = ConvGRUCell(2, 3)
    with torch.no_grad():
        for conv in (cell.wx, cell.wh):
            conv.weight.zero_()
            conv.bias.zero_()
        cell.wx.bias[6:9] = 2.0  # candidate bias -> LeakyReLU(2) = 2
    x = torch.randn(2, 2, 4, 4)
    h = torch.randn(2, 3, 4, 4)
    out = cell(x, h)  # z = sigmoid(0) = 0.5
    torch.testing.assert_close(out, 0.5 * h + 0.5 * 2.0)


def test_trajgru_cell_starts_with_zero_flows_and_matches_hand_gru():
    cell = TrajGRUCell(2, 3, links=1)
    assert torch.count_nonzero(cell.flows.weight) == 0
    x = torch.randn(2, 2, 6, 6)
    h = torch.randn(2, 3, 6, 6)
    flows = cell.flow_fields(x, h)
    assert flows.shape == (2, 1, 2, 6, 6)
    assert torch.count_nonzero(flows) == 0
    # zero flow and L = 1: warp is the identity, so this is a GRU with a 1x1 state conv
    xz, xr, xh = cell.wx(x).chunk(3, dim=1)
    hz, hr, hh = cell.wh(h).chunk(3, dim=1)
    z, r = torch.sigmoid(xz + hz), torch.sigmoid(xr + hr)
    expected = z * h + (1 - z) * nn.functional.leaky_relu(xh + r * hh, 0.2)
    torch.testing.assert_close(cell(x, h), expected)


def test_trajgru_cell_parameter_recipe():
    cell = TrajGRUCell(96, 96, links=11)
    # Wx 3x3 96->288, flow net 3 x (3x3) 96->96, 96->96, 96->22, Wh 1x1 1056->288 (all bias)
    expected = (
        (96 * 288 * 9 + 288) + 2 * (96 * 96 * 9 + 96) + (96 * 22 * 9 + 22) + (1056 * 288 + 288)
    )
    assert sum(p.numel() for p in cell.parameters()) == expected == 738646


def test_solve_latent_matches_euler_of_linear_ode():
    func = ODEFunc(1, 1, layers=1)
    a = -0.5
    with torch.no_grad():
        func.convs[0].weight.zero_()
        func.convs[0].weight[0, 0, 1, 1] = a
        func.convs[0].bias.zero_()
    h0 = torch.full((1, 1, 3, 3), 2.0)
    step = 0.5
    times = torch.tensor([[0.0, 1.0, 1.25, 3.0]])
    out = solve_latent(func, h0, times, step)
    assert out.shape == (4, 1, 1, 3, 3)
    g = 1 + a * step  # one Euler step multiplies by g
    expected = [2.0, 2.0 * g**2, 2.0 * g**2 * (1 + a * 0.25), 2.0 * g**6]
    torch.testing.assert_close(out[:, 0, 0, 1, 1], torch.tensor(expected))
    # the value at a time does not depend on the other requested times
    alone = solve_latent(func, h0, torch.tensor([[1.25]]), step)
    torch.testing.assert_close(alone[0], out[2])


def test_solve_latent_rejects_negative_times():
    func = ODEFunc(1, 1, layers=1)
    with pytest.raises(ValueError, match="times must be >= 0"):
        solve_latent(func, torch.zeros(1, 1, 2, 2), torch.tensor([[-1.0]]), 0.5)


def test_ode_cell_with_zero_ode_function_is_plain_extended_gate_update():
    cell = TrajGRUODECell(2, 3, links=2)
    func = ODEFunc(3, 4, layers=4)
    for p in func.parameters():
        nn.init.zeros_(p)
    x = torch.randn(2, 2, 5, 5)
    h = torch.randn(2, 3, 5, 5)
    h0 = torch.randn(2, 3, 5, 5)
    lat = solve_latent(func, h0, torch.tensor([[0.0, 1.7]] * 2), 0.5)
    torch.testing.assert_close(lat[0], h0)
    torch.testing.assert_close(lat[1], h0)  # zero ODE function: the latent state stays put
    out = cell(x, h, lat[0], lat[1])
    # hand-written eq. 4.3-4.4 with D = W_comb * [h0, h0]
    d = cell.combine(torch.cat((h0, h0), dim=1))
    h_traj = cell.traj(x, h)
    hz, hr, hh = cell.w_hode(h_traj).chunk(3, dim=1)
    dz, dr, dh = cell.w_dode(d).chunk(3, dim=1)
    z, r = torch.sigmoid(hz + dz), torch.sigmoid(hr + dr)
    expected = z * h_traj + (1 - z) * torch.tanh(hh + r * dh)
    torch.testing.assert_close(out, expected)


def test_ode_cell_depends_on_the_gap():
    cell = TrajGRUODECell(2, 3, links=2)
    func = ODEFunc(3, 4, layers=4)
    x, h, h0 = torch.randn(1, 2, 5, 5), torch.randn(1, 3, 5, 5), torch.randn(1, 3, 5, 5)
    lat = solve_latent(func, h0, torch.tensor([[0.0, 1.0, 2.0]]), 0.25)
    short = cell(x, h, lat[0], lat[1])
    long = cell(x, h, lat[0], lat[2])
    assert (short - long).abs().max() > 1e-4


def test_attention_weights_sum_to_one_over_the_window():
    att = MotionAttention(4)
    states = torch.randn(5, 2, 4, 6, 6)
    times = torch.tensor([-4.0, -3.0, -2.0, -1.0, 0.0])[:, None].expand(5, 2)
    w = att.weights(states, times)
    assert w.shape == (5, 2, 4)
    torch.testing.assert_close(w.sum(dim=0), torch.ones(2, 4))
    new, w2 = att(states, times)
    assert new.shape == (2, 4, 6, 6)
    torch.testing.assert_close(w2, w)


def test_attention_uses_the_real_gaps():
    att = MotionAttention(4)
    states = torch.randn(4, 1, 4, 6, 6)
    regular = torch.tensor([[-3.0], [-2.0], [-1.0], [0.0]])
    irregular = torch.tensor([[-7.0], [-2.5], [-2.0], [0.0]])
    assert (att.weights(states, regular) - att.weights(states, irregular)).abs().max() > 1e-4


def test_attention_single_state_returns_weight_one():
    att = MotionAttention(3)
    w = att.weights(torch.randn(1, 2, 3, 4, 4), torch.zeros(1, 2))
    torch.testing.assert_close(w, torch.ones(1, 2, 3))


def test_attention_rejects_times_of_the_wrong_shape():
    att = MotionAttention(3)
    with pytest.raises(ValueError, match=r"times must have shape \(2, 1\), got \(3, 1\)"):
        att.weights(torch.randn(2, 1, 3, 4, 4), torch.zeros(3, 1))


def test_zigzag_known_answer_with_zero_gate_convs():
    zz = ZigzagShortcut(6, 3, kernel_size=4, stride=4, upsample=True)
    with torch.no_grad():
        for conv in (zz.w_h, zz.w_zz):
            conv.weight.zero_()
            conv.bias.zero_()
    src = torch.randn(2, 6, 2, 2)
    dst = torch.randn(2, 3, 8, 8)
    hzz = nn.functional.leaky_relu(zz.resample(src), 0.2)
    torch.testing.assert_close(zz(src, dst), dst + 0.5 * hzz)
    down = ZigzagShortcut(3, 6, kernel_size=4, stride=4, upsample=False)
    assert down(dst, src).shape == src.shape


def test_zigzag_rejects_mismatched_resolution():
    zz = ZigzagShortcut(6, 3, kernel_size=4, stride=4, upsample=True)
    with pytest.raises(ValueError, match=r"shape \(1, 3, 8, 8\).*shape \(1, 3, 6, 6\)"):
        zz(torch.randn(1, 6, 2, 2), torch.randn(1, 3, 6, 6))
