"""Vid-ODE baseline (Park et al. 2021), a faithful but compact version.

- Conv encoder to ``vidode_channels[-1]`` channels at H/4 (3x3 convs, strides 1, 2, 2).
- ODE-ConvGRU encoder run backwards in time: from the last input to the first, the state is
  carried between frames by Euler steps of a conv ODE function over the real (negative) gap,
  then updated by a ConvGRU cell with the frame's features. The state at the first input time
  is the initial value ``z0`` (deterministic: the variational part is left out).
- Decoder: ``torchdiffeq.odeint`` (dopri5, rtol/atol from the config) of a second conv ODE
  function from ``z0`` to the requested times (relative to the first input). Per-sample times
  are handled by solving the batch on the union of all requested times and reading each
  sample's own ones (the ODE is autonomous and acts on each sample separately).
- Conv decoder (two 4x4 transposed convs and a 3x3 conv) emits, at full resolution, a flow
  (2 channels, pixels), an image (1) and a composition mask (1)::

      out = sigmoid(m) * warp(last input frame, flow) + (1 - sigmoid(m)) * sigmoid(image)

  (Vid-ODE warps the previous *predicted* frame; warping the last observed frame keeps each
  output a function of its own time only. The image goes through a sigmoid because frames are
  on the 0..1 scale.)
- Training losses are the trainer's business; the adversarial term of the original
  (weight 0.003) is not part of this module.
"""

from __future__ import annotations

import torch
from torch import nn

from nowcast.configs import ModelConfig
from nowcast.models._validation import prepare_inputs
from nowcast.modules import ConvGRUCell, ODEFunc, warp

__all__ = ["VidODE"]

_ENC_SUBSTEPS = 2


class VidODE(nn.Module):
    """Vid-ODE baseline with the call contract of :mod:`nowcast.models`.

    Parameters
    ----------
    config : ModelConfig
        Uses ``vidode_channels`` (three conv-encoder widths), ``vidode_ode_hidden``,
        ``vidode_rtol``, ``vidode_atol`` and ``cadence_minutes``.
    """

    continuous_time = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if len(config.vidode_channels) != 3:
            raise ValueError(f"vidode_channels must have 3 entries, got {config.vidode_channels}")
        c0, c1, c2 = config.vidode_channels
        self.config = config
        self.model_name = "vidode"
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c0, 3, 1, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(c0, c1, 3, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(c1, c2, 3, 2, 1),
            nn.LeakyReLU(0.2),
        )
        self.enc_ode = ODEFunc(c2, config.vidode_ode_hidden, 3)
        self.enc_gru = ConvGRUCell(c2, c2)
        self.dec_ode = ODEFunc(c2, config.vidode_ode_hidden, 3)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(c1, c0, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(c0, 4, 3, 1, 1),
        )

    def forward(
        self,
        x: torch.Tensor,
        t_in: torch.Tensor,
        t_out: torch.Tensor,
        input_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Forecast frames at the requested times.

        Parameters
        ----------
        x : Tensor, shape (B, T_in, 1, H, W)
            Input frames, p/255; H and W multiples of 4.
        t_in : Tensor, shape (B, T_in)
            Input times, minutes relative to the last input frame.
        t_out : Tensor, shape (B, T_out)
            Output times, minutes, strictly increasing, after the last input.
        input_mask : Tensor, shape (B, T_in, 1, H, W), optional
            1 = valid; masked pixels enter as 0.

        Returns
        -------
        Tensor, shape (B, T_out, 1, H, W)
            Frames, p/255.
        """
        from torchdiffeq import odeint

        x, tin, tout = prepare_inputs(x, t_in, t_out, input_mask, 4, self.config.cadence_minutes)
        b, t_n, _, h, w = x.shape
        feats = self.encoder(x.reshape(b * t_n, 1, h, w))
        feats = feats.view(b, t_n, *feats.shape[1:])
        state = torch.zeros_like(feats[:, 0])
        for i in range(t_n - 1, -1, -1):
            if i < t_n - 1:
                dt = (tin[:, i] - tin[:, i + 1])[:, None, None, None] / _ENC_SUBSTEPS
                for _ in range(_ENC_SUBSTEPS):
                    state = state + dt * self.enc_ode(None, state)
            state = self.enc_gru(feats[:, i], state)
        rel = tout - tin[:, :1]  # times after the first input, (B, T_out)
        union, inverse = torch.unique(rel.detach().flatten(), sorted=True, return_inverse=True)
        grid = torch.cat((union.new_zeros(1), union))
        traj = odeint(
            self.dec_ode,
            state,
            grid,
            method="dopri5",
            rtol=self.config.vidode_rtol,
            atol=self.config.vidode_atol,
        )[1:]  # (U, B, C, h, w)
        idx = inverse.view(b, -1)
        arange_b = torch.arange(b, device=x.device).unsqueeze(1).expand_as(idx)
        z = traj[idx, arange_b]  # (B, T_out, C, h, w)
        t_o = z.shape[1]
        out = self.decoder(z.reshape(b * t_o, *z.shape[2:]))
        flow, image, mask = out[:, :2], out[:, 2:3], out[:, 3:4]
        last = x[:, -1].unsqueeze(1).expand(b, t_o, 1, h, w).reshape(b * t_o, 1, h, w)
        m = torch.sigmoid(mask)
        frames = m * warp(last, flow) + (1.0 - m) * torch.sigmoid(image)
        return frames.view(b, t_o, 1, h, w)
