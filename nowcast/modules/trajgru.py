"""TrajGRU cell and the flow warp (thesis eq. 3.3; Shi et al. 2017).

Recipe (reproduces the thesis's parameter counts exactly, see ``docs/models.md``):

- ``Wx``: 3x3 conv C_in -> 3C (update, reset, candidate parts);
- flow net gamma: ``i2f`` (C_in -> C) and ``h2f`` (C -> C) convolutions of ``flow_kernel``,
  summed, LeakyReLU(0.2), then ``flows`` (C -> 2L), zero-initialised so that the cell starts
  as L identical copies of the un-warped state;
- each of the L flows warps the state by bilinear sampling (:func:`warp`); the L warped states
  are concatenated and ``Wh`` (1x1 conv L*C -> 3C) maps them to the three gate parts;
- ``z, r`` sigmoids, candidate LeakyReLU(0.2) as in the original code (the thesis writes tanh),
  ``h' = z * h + (1 - z) * h~``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TrajGRUCell", "warp"]


def warp(state: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Warp *state* by *flow* with bilinear sampling: ``out(p) = state(p - flow(p))``.

    Parameters
    ----------
    state : Tensor, shape (B, C, H, W)
    flow : Tensor, shape (B, 2, H, W)
        Displacement in pixels; channel 0 is along x (columns), channel 1 along y (rows).
        A positive x flow moves content to the right.

    Returns
    -------
    Tensor, shape (B, C, H, W)
        Samples outside the frame read zero (``padding_mode="zeros"``). Uses
        ``grid_sample(align_corners=True)`` so that integer flows shift by whole pixels exactly.
    """
    b, _, h, w = state.shape
    ys = torch.arange(h, dtype=state.dtype, device=state.device)
    xs = torch.arange(w, dtype=state.dtype, device=state.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    src_x = gx.unsqueeze(0) - flow[:, 0]
    src_y = gy.unsqueeze(0) - flow[:, 1]
    norm_x = 2.0 * src_x / max(w - 1, 1) - 1.0
    norm_y = 2.0 * src_y / max(h - 1, 1) - 1.0
    grid = torch.stack((norm_x, norm_y), dim=-1)
    return nn.functional.grid_sample(
        state, grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )


class TrajGRUCell(nn.Module):
    """Trajectory GRU cell.

    Parameters
    ----------
    in_channels : int
        Channels of the input ``x``.
    hidden_channels : int
        Channels C of the state.
    links : int
        Number L of warped copies of the state (flows).
    flow_kernel : int
        Kernel size of the three flow-net convolutions (odd).
    """

    def __init__(
        self, in_channels: int, hidden_channels: int, links: int, flow_kernel: int = 3
    ) -> None:
        super().__init__()
        if links < 1:
            raise ValueError(f"links must be >= 1, got {links}")
        if flow_kernel % 2 != 1:
            raise ValueError(f"flow_kernel must be odd, got {flow_kernel}")
        c = hidden_channels
        pad = flow_kernel // 2
        self.hidden_channels = c
        self.links = links
        self.wx = nn.Conv2d(in_channels, 3 * c, 3, padding=1)
        self.i2f = nn.Conv2d(in_channels, c, flow_kernel, padding=pad)
        self.h2f = nn.Conv2d(c, c, flow_kernel, padding=pad)
        self.flows = nn.Conv2d(c, 2 * links, flow_kernel, padding=pad)
        nn.init.zeros_(self.flows.weight)
        nn.init.zeros_(self.flows.bias)
        self.wh = nn.Conv2d(links * c, 3 * c, 1)

    def flow_fields(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Flow fields gamma(x, h), shape (B, L, 2, H, W) in pixels."""
        f = nn.functional.leaky_relu(self.i2f(x) + self.h2f(h), 0.2)
        flows = self.flows(f)
        b, _, hh, ww = flows.shape
        return flows.view(b, self.links, 2, hh, ww)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One update.

        Parameters
        ----------
        x : Tensor, shape (B, C_in, H, W)
        h : Tensor, shape (B, C, H, W)

        Returns
        -------
        Tensor, shape (B, C, H, W)
        """
        flows = self.flow_fields(x, h)
        b, l_, _, hh, ww = flows.shape
        c = h.shape[1]
        # warp all L copies in one grid_sample call: (B*L, C, H, W)
        rep = h.unsqueeze(1).expand(b, l_, c, hh, ww).reshape(b * l_, c, hh, ww)
        warped = warp(rep, flows.reshape(b * l_, 2, hh, ww)).view(b, l_ * c, hh, ww)
        xz, xr, xh = self.wx(x).chunk(3, dim=1)
        hz, hr, hh_ = self.wh(warped).chunk(3, dim=1)
        z = torch.sigmoid(xz + hz)
        r = torch.sigmoid(xr + hr)
        cand = nn.functional.leaky_relu(xh + r * hh_, 0.2)
        return z * h + (1.0 - z) * cand
