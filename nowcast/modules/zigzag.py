"""Zigzag shortcut between the top and bottom recurrent levels (thesis eq. 4.1-4.2).

Encoder (4.1), from the top (coarse) level to the bottom (fine) level::

    H_zz   = LeakyReLU(W_up * H_top(t_i))                 (transposed conv)
    Z_zz   = sigmoid(W_h * H_bottom(t_i) + W_zz * H_zz)   (3x3 convs)
    H_bottom_new(t_i) = H_bottom(t_i) + Z_zz * H_zz

Decoder (4.2) is the mirror image with a strided conv ``W_down`` from bottom to top. Because
the encoder computes the bottom level first within a step, the updated bottom state is the one
carried to the next step: information goes top(t_i) -> bottom(t_{i+1}), the zigzag path.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ZigzagShortcut"]


class ZigzagShortcut(nn.Module):
    """Gated shortcut ``dst + sigmoid(W_h dst + W_zz H_zz) * H_zz``, ``H_zz = LReLU(resample src)``.

    Parameters
    ----------
    src_channels, dst_channels : int
        Channels of the source and destination states.
    kernel_size, stride : int
        Of the resampling (de)convolution (no padding).
    upsample : bool
        True: transposed conv (encoder, top -> bottom); False: strided conv (decoder).
    """

    def __init__(
        self,
        src_channels: int,
        dst_channels: int,
        kernel_size: int,
        stride: int,
        upsample: bool,
    ) -> None:
        super().__init__()
        if upsample:
            self.resample: nn.Module = nn.ConvTranspose2d(
                src_channels, dst_channels, kernel_size, stride
            )
        else:
            self.resample = nn.Conv2d(src_channels, dst_channels, kernel_size, stride)
        self.w_h = nn.Conv2d(dst_channels, dst_channels, 3, padding=1)
        self.w_zz = nn.Conv2d(dst_channels, dst_channels, 3, padding=1)

    def forward(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """Return the updated destination state, shape of *dst* (B, C_dst, H_dst, W_dst)."""
        hzz = nn.functional.leaky_relu(self.resample(src), 0.2)
        if hzz.shape != dst.shape:
            raise ValueError(
                f"zigzag resampling gives shape {tuple(hzz.shape)} but the destination state "
                f"has shape {tuple(dst.shape)}; adjust zigzag_kernel/zigzag_stride"
            )
        z = torch.sigmoid(self.w_h(dst) + self.w_zz(hzz))
        return dst + z * hzz
