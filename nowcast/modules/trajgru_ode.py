"""TrajGRU-ODE cell (thesis eq. 4.3-4.4) and its latent ODE.

A TrajGRU-ODE block has two parts:

1. a latent ODE ``dH_ode/dt = f(H_ode)`` whose function ``f`` (:class:`ODEFunc`) is a stack of
   3x3 convolutions with tanh between them (Figure 4.5: 4 convs, 3 tanh), solved with
   torchdiffeq's ``odeint`` by the Euler method (:func:`solve_latent`);
2. a TrajGRU cell extended with ODE gates (:class:`TrajGRUODECell`)::

       D(t_i)      = W_comb * [H_ode(t_{i-1}), H_ode(t_i)]                (4.3, 1x1 conv 2C -> C)
       H_traj(t_i) = TrajGRU(X(t_i), H(t_{i-1}))                          (standard gates)
       Z_ode, R_ode, part_h = W_hode * H_traj     (1x1 conv C -> 3C)
       dz, dr, dh           = W_dode * D          (3x3 conv C -> 3C)
       Z_ode = sigmoid(. + dz);  R_ode = sigmoid(. + dr)
       H~_ode = tanh(part_h + R_ode * dh)
       H(t_i) = Z_ode * H_traj + (1 - Z_ode) * H~_ode                     (4.4)

   (eq. 4.4 writes ``H_mid`` in the last line; it is the only state available there, the
   TrajGRU output, and we read it so.)

Time enters only through ``D``: the latent ODE is integrated over the real gap between
``t_{i-1}`` and ``t_i``, so a longer gap gives a larger change of the latent state.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nowcast.modules.trajgru import TrajGRUCell

__all__ = ["ODEFunc", "TrajGRUODECell", "solve_latent"]


class ODEFunc(nn.Module):
    """ODE function ``f(t, h)``: ``layers`` 3x3 convolutions with tanh after all but the last.

    Parameters
    ----------
    channels : int
        Channels C of the latent state (input and output).
    hidden : int
        Channels of the hidden convolutions.
    layers : int
        Number of convolutions (>= 1). The thesis uses 4 (3 tanh).
    """

    def __init__(self, channels: int, hidden: int, layers: int = 4) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        dims = [channels] + [hidden] * (layers - 1) + [channels]
        self.convs = nn.ModuleList(
            nn.Conv2d(dims[i], dims[i + 1], 3, padding=1) for i in range(layers)
        )
        self.nfe = 0

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Evaluate ``dh/dt`` at state *h*, shape (B, C, H, W) (autonomous: *t* unused)."""
        self.nfe += 1
        out = h
        for i, conv in enumerate(self.convs):
            out = conv(out)
            if i < len(self.convs) - 1:
                out = torch.tanh(out)
        return out


def solve_latent(
    func: nn.Module, h0: torch.Tensor, times: torch.Tensor, step: float
) -> torch.Tensor:
    """Euler solution of ``dh/dt = func(t, h)`` from ``h(0) = h0``, read at per-sample times.

    The ODE is integrated with ``torchdiffeq.odeint(method="euler")`` on the fixed grid
    ``0, step, 2 step, ...`` (shared by the batch, long enough to cover ``times.max()``), and
    each requested time is read off by linear interpolation between the two grid points around
    it, which is exactly a partial Euler step. The value at a time therefore depends only on
    the grid, never on which other times are requested.

    Parameters
    ----------
    func : nn.Module
        ODE function ``func(t, h)``.
    h0 : Tensor, shape (B, C, H, W)
        State at time 0.
    times : Tensor, shape (B, Q)
        Non-negative query times (same unit as *step*).
    step : float
        Euler step (> 0).

    Returns
    -------
    Tensor, shape (Q, B, C, H, W)
    """
    from torchdiffeq import odeint

    if step <= 0:
        raise ValueError(f"step must be > 0, got {step}")
    if times.ndim != 2 or times.shape[0] != h0.shape[0]:
        raise ValueError(
            f"times must have shape (B, Q) with B={h0.shape[0]}, got {tuple(times.shape)}"
        )
    if bool((times < -1e-6).any()):
        raise ValueError(f"times must be >= 0, got minimum {float(times.min())}")
    t_max = float(times.max()) if times.numel() else 0.0
    n = max(1, math.ceil(t_max / step - 1e-6))
    grid = torch.arange(n + 1, dtype=h0.dtype, device=h0.device) * step
    traj = odeint(func, h0, grid, method="euler")  # (n+1, B, C, H, W)
    pos = (times / step).clamp(min=0.0)
    idx = pos.floor().clamp(max=n - 1).long()  # (B, Q)
    frac = (pos - idx.to(pos.dtype)).to(h0.dtype)
    b = torch.arange(h0.shape[0], device=h0.device).unsqueeze(1).expand_as(idx)
    lo = traj[idx, b]  # (B, Q, C, H, W)
    hi = traj[idx + 1, b]
    frac = frac[..., None, None, None]
    out = lo + frac * (hi - lo)
    return out.transpose(0, 1)


class TrajGRUODECell(nn.Module):
    """TrajGRU cell with the extended ODE gates of eq. 4.4.

    Parameters
    ----------
    in_channels : int
        Channels of the input ``x``.
    hidden_channels : int
        Channels C of the state (and of the latent ODE state).
    links : int
        TrajGRU links L.
    flow_kernel : int
        Kernel of the flow-net convolutions.
    """

    def __init__(
        self, in_channels: int, hidden_channels: int, links: int, flow_kernel: int = 3
    ) -> None:
        super().__init__()
        c = hidden_channels
        self.hidden_channels = c
        self.traj = TrajGRUCell(in_channels, c, links, flow_kernel)
        self.combine = nn.Conv2d(2 * c, c, 1)
        self.w_hode = nn.Conv2d(c, 3 * c, 1)
        self.w_dode = nn.Conv2d(c, 3 * c, 3, padding=1)

    def difference(self, ode_prev: torch.Tensor, ode_now: torch.Tensor) -> torch.Tensor:
        """Difference representation D(t_i) of eq. 4.3, shape (B, C, H, W)."""
        return self.combine(torch.cat((ode_prev, ode_now), dim=1))

    def extended_update(self, h_traj: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Extended-gate update of eq. 4.4 from the TrajGRU output and D, shape (B, C, H, W)."""
        hz, hr, hh = self.w_hode(h_traj).chunk(3, dim=1)
        dz, dr, dh = self.w_dode(d).chunk(3, dim=1)
        z = torch.sigmoid(hz + dz)
        r = torch.sigmoid(hr + dr)
        cand = torch.tanh(hh + r * dh)
        return z * h_traj + (1.0 - z) * cand

    def forward(
        self,
        x: torch.Tensor,
        h: torch.Tensor,
        ode_prev: torch.Tensor,
        ode_now: torch.Tensor,
    ) -> torch.Tensor:
        """One update from ``t_{i-1}`` to ``t_i``.

        Parameters
        ----------
        x : Tensor, shape (B, C_in, H, W)
            Input at ``t_i``.
        h : Tensor, shape (B, C, H, W)
            State at ``t_{i-1}``.
        ode_prev, ode_now : Tensor, shape (B, C, H, W)
            Latent ODE states at ``t_{i-1}`` and ``t_i``.

        Returns
        -------
        Tensor, shape (B, C, H, W)
        """
        return self.extended_update(self.traj(x, h), self.difference(ode_prev, ode_now))
