"""Convolutional LSTM cell (Shi et al. 2015, eq. 3), state ``[H, C]`` in one tensor."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvLSTMCell"]


class ConvLSTMCell(nn.Module):
    """ConvLSTM cell with 3x3 input-to-state and state-to-state convolutions and peepholes.

    Gates as in Shi et al. (2015), eq. 3::

        i = sigmoid(Wxi * X + Whi * H + Wci o C + bi)
        f = sigmoid(Wxf * X + Whf * H + Wcf o C + bf)
        C' = f o C + i o tanh(Wxc * X + Whc * H + bc)
        o = sigmoid(Wxo * X + Who * H + Wco o C' + bo)
        H' = o o tanh(C')

    ``Wx`` (C_in -> 4C, bias) and ``Wh`` (C -> 4C, no bias) are single 3x3 convolutions, as
    the ConvGRU cell's. The peephole weights ``Wc*`` are one value per channel (``(C, 1, 1)``,
    not one per pixel as in the paper), so the cell runs on any grid size (docs/models.md).
    The forget-gate bias starts at 1.

    The recurrent state is ``torch.cat([H, C], 1)`` (``2C`` channels, :attr:`state_channels`)
    so the encoder-forecaster can carry it like a GRU state; :meth:`hidden` returns ``H``.

    Parameters
    ----------
    in_channels : int
        Channels of the input ``X``.
    hidden_channels : int
        Channels C of ``H`` and of ``C``.
    """

    def __init__(self, in_channels: int, hidden_channels: int) -> None:
        super().__init__()
        c = int(hidden_channels)
        self.hidden_channels = c
        self.state_channels = 2 * c
        self.wx = nn.Conv2d(in_channels, 4 * c, 3, padding=1)
        self.wh = nn.Conv2d(c, 4 * c, 3, padding=1, bias=False)
        self.peep = nn.Parameter(torch.zeros(3, c, 1, 1))
        with torch.no_grad():
            self.wx.bias[c : 2 * c].fill_(1.0)

    def hidden(self, state: torch.Tensor) -> torch.Tensor:
        """``H`` of a state ``(B, 2C, H, W)``: ``(B, C, H, W)``."""
        return state[:, : self.hidden_channels]

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """One update.

        Parameters
        ----------
        x : Tensor, shape (B, C_in, H, W)
        state : Tensor, shape (B, 2C, H, W)
            Previous ``[H, C]``.

        Returns
        -------
        Tensor, shape (B, 2C, H, W)
            New ``[H, C]``.
        """
        h, c = state.chunk(2, dim=1)
        xi, xf, xc, xo = self.wx(x).chunk(4, dim=1)
        hi, hf, hc, ho = self.wh(h).chunk(4, dim=1)
        i = torch.sigmoid(xi + hi + self.peep[0] * c)
        f = torch.sigmoid(xf + hf + self.peep[1] * c)
        c_new = f * c + i * torch.tanh(xc + hc)
        o = torch.sigmoid(xo + ho + self.peep[2] * c_new)
        return torch.cat((o * torch.tanh(c_new), c_new), dim=1)
