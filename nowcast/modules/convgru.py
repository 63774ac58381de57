"""Convolutional GRU cell (thesis eq. 3.2)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvGRUCell"]


class ConvGRUCell(nn.Module):
    """ConvGRU cell with 3x3 input-to-state and state-to-state convolutions.

    ``Wx`` (C_in -> 3C) and ``Wh`` (C -> 3C) are single 3x3 convolutions with bias holding the
    update, reset and candidate parts (Table A.2: ``(96 x 288 x 3 x 3)``). As in the HKO-7
    benchmark code the candidate uses LeakyReLU(0.2) (the thesis's "activation"), and
    ``h' = z * h + (1 - z) * h~``.

    Parameters
    ----------
    in_channels : int
        Channels of the input ``x``.
    hidden_channels : int
        Channels C of the state.
    """

    def __init__(self, in_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.wx = nn.Conv2d(in_channels, 3 * hidden_channels, 3, padding=1)
        self.wh = nn.Conv2d(hidden_channels, 3 * hidden_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One update.

        Parameters
        ----------
        x : Tensor, shape (B, C_in, H, W)
        h : Tensor, shape (B, C, H, W)
            Previous state.

        Returns
        -------
        Tensor, shape (B, C, H, W)
        """
        xz, xr, xh = self.wx(x).chunk(3, dim=1)
        hz, hr, hh = self.wh(h).chunk(3, dim=1)
        z = torch.sigmoid(xz + hz)
        r = torch.sigmoid(xr + hr)
        cand = nn.functional.leaky_relu(xh + r * hh, 0.2)
        return z * h + (1.0 - z) * cand
