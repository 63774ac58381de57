"""ConvLSTM cell (Shi et al. 2015, eq. 3) against the equations computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from nowcast.models.encoder_forecaster import EncoderForecaster
from nowcast.modules import ConvLSTMCell
from tests.nowcast.test_models import TINY


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_gates_peepholes_and_state_follow_the_equations():
    cell = ConvLSTMCell(1, 1)
    with torch.no_grad():
        cell.wx.weight.zero_()
        cell.wh.weight.zero_()
        cell.wx.bias.copy_(torch.tensor([0.5, -1.0, 2.0, 0.25]))  # i, f, candidate, o
        cell.peep.copy_(torch.tensor([0.3, 2.0, -0.5]).reshape(3, 1, 1, 1))
    c0 = 0.4
    state = torch.cat((torch.full((1, 1, 2, 2), 0.7), torch.full((1, 1, 2, 2), c0)), 1)
    out = cell(torch.zeros(1, 1, 2, 2), state)
    i, f = _sig(0.5 + 0.3 * c0), _sig(-1.0 + 2.0 * c0)
    c1 = f * c0 + i * math.tanh(2.0)
    h1 = _sig(0.25 - 0.5 * c1) * math.tanh(c1)
    assert out.shape == (1, 2, 2, 2) and cell.state_channels == 2
    torch.testing.assert_close(out[:, 1], torch.full((1, 2, 2), c1), rtol=0, atol=1e-6)
    torch.testing.assert_close(cell.hidden(out)[:, 0], torch.full((1, 2, 2), h1), rtol=0, atol=1e-6)


def test_a_fresh_cell_starts_with_forget_bias_one():
    cell = ConvLSTMCell(3, 4)
    assert cell.wx.bias[4:8].tolist() == [1.0] * 4 and cell.wh.bias is None


def test_convlstm_has_no_zigzag_attention_or_ode():
    with pytest.raises(
        ValueError, match="ConvLSTM encoder-forecaster has no zigzag, attention or ODE"
    ):
        EncoderForecaster(TINY, cell="convlstm", zigzag=True)
