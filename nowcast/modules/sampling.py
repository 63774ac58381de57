"""Resampling blocks between recurrent levels (thesis section 4.2.3.3).

The encoder goes down in resolution with ``conv + LeakyReLU(0.2)``; the forecaster comes back
up with ``transposed conv + LeakyReLU(0.2)``. (The thesis text swaps the two names once; the
tables make clear that the encoder's blocks are convolutions and the decoder's deconvolutions.)
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DownBlock", "UpBlock"]

_SLOPE = 0.2


class DownBlock(nn.Module):
    """Convolution + LeakyReLU(0.2): ``(B, C_in, H, W) -> (B, C_out, H', W')``.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding : int
        As for :class:`torch.nn.Conv2d` (bias on).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return nn.functional.leaky_relu(self.conv(x), _SLOPE)


class UpBlock(nn.Module):
    """Transposed convolution + LeakyReLU(0.2): ``(B, C_in, H, W) -> (B, C_out, H', W')``.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, output_padding : int
        As for :class:`torch.nn.ConvTranspose2d` (bias on).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        padding: int,
        output_padding: int = 0,
    ) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(
            in_channels, out_channels, kernel_size, stride, padding, output_padding
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return nn.functional.leaky_relu(self.deconv(x), _SLOPE)
