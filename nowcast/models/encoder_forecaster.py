"""Encoder-forecaster networks: ConvGRU, ConvLSTM, TrajGRU and the three proposed TrajGRU models.

Layout (HKO-7 benchmark style, thesis Figure 3.6 / 4.3), three recurrent levels::

    encoder:    x -> down1 -> cell1 -> down2 -> [MEA] -> cell2 -> down3 -> [MEA] -> cell3
                zigzag (4.1): state3(t_i) -> state1, carried to t_{i+1}
    forecaster: context -> cell3 -> up -> cell2 [MDA] -> up -> cell1 [MDA] -> up -> head
                zigzag (4.2): state1(t_i) -> state3, carried to the next step

- Every forecaster level starts from the final encoder state of the same level.
- The top forecaster cell receives the final top encoder state as its input at every step
  (the HKO-7 code feeds nothing there; a constant context keeps ``Wx`` of that cell in use).
- Output head: ``up[-1]`` (transposed conv to ``head_channels`` at full resolution) plus, when
  ``top_skip``, a 3x3 conv of the top forecaster state (channels[2] -> head_channels) upsampled
  bilinearly; then a 1x1 conv to one channel. Output is linear, in p/255. With
  ``ModelConfig.residual`` the head's output is added to the last observed input frame (the
  network predicts the change; off in the thesis configurations, on in ``small``).

Times. ``t_in``/``t_out`` are minutes relative to the last input frame; inside, times are in
frame units (minutes / cadence).

- ConvLSTM (Shi et al. 2015) is the ConvGRU layout with :class:`~nowcast.modules.ConvLSTMCell`
  cells; its state is ``[H, C]`` (twice the channels) and only ``H`` goes up and down the
  levels, to the output head and to the top forecaster cell as its context.
- ConvGRU / ConvLSTM / TrajGRU (``continuous_time = False``) ignore time; they check that every gap is one
  cadence step and raise ValueError otherwise, unless built with ``ignore_irregular_times``,
  in which case they simply make one step per requested output.
- TrajGRU-Attention uses the real times in its attention keys (velocity, acceleration, time),
  one recurrent step per requested output.
- The ODE models (TrajGRU-ODE, TrajGRU-Attention-ODE) run the forecaster recurrence on a fixed
  internal grid of one cadence step (t = 1, 2, ... frames); the latent ODE of each level is
  integrated by Euler steps of ``ode_step_minutes`` from the encoder state at t = 0 and read at
  any time. A frame at a requested time t is produced by one extra TrajGRU-ODE step from the
  last grid state before t (``ceil(t) - 1``) to t, with ``D`` built from the latent states at
  those two times; when t is a grid point this is exactly the grid step. The grid states depend
  only on the inputs, so the frame at a time never depends on which other times were asked
  for (t_out = [6, 12] and [6, 9, 12] give the same frames at 6 and 12), and any time after the
  last input, between or beyond the training leads, can be asked for. The decoding attention
  of TrajGRU-Attention-ODE slides over grid states the same way.

``input_mask`` (1 = valid) multiplies the inputs, so unobserved pixels enter as 0 (no echo).
"""

from __future__ import annotations

import torch
from torch import nn

from nowcast.configs import ModelConfig
from nowcast.contract import last_observed_index, observed_frames
from nowcast.models._validation import check_regular, prepare_inputs
from nowcast.modules import (
    ConvGRUCell,
    ConvLSTMCell,
    DownBlock,
    MotionAttention,
    ODEFunc,
    TrajGRUCell,
    TrajGRUODECell,
    UpBlock,
    ZigzagShortcut,
    solve_latent,
)

__all__ = ["EncoderForecaster"]


def _last_observed(x: torch.Tensor, input_mask: torch.Tensor | None) -> torch.Tensor:
    """The last input frame with any valid pixel, per sample: ``(B, 1, 1, H, W)``.

    Without a mask this is ``x[:, -1:]``. A frame whose mask is all zero (a missing frame,
    zero-filled by the data loader) is skipped, as the persistence baseline does; when every
    frame is missing the (zero) last frame is used.
    """
    if input_mask is None:
        return x[:, -1:]
    last = last_observed_index(observed_frames(input_mask, x.shape[:2]), required=False)
    idx = torch.as_tensor(last, device=x.device)
    return x[torch.arange(x.shape[0], device=x.device), idx].unsqueeze(1)


_NAMES = {
    "convgru": "ConvGRU",
    "convlstm": "ConvLSTM",
    "trajgru": "TrajGRU",
    "trajgru_attention": "TrajGRU-Attention",
    "trajgru_ode": "TrajGRU-ODE",
    "trajgru_attention_ode": "TrajGRU-Attention-ODE",
}


class EncoderForecaster(nn.Module):
    """Three-level encoder-forecaster (see the module docstring).

    Parameters
    ----------
    config : ModelConfig
        Channels, kernels and options.
    cell : {"convgru", "convlstm", "trajgru"}
        Recurrent cell of the encoder (and forecaster unless ``ode``).
    zigzag : bool
        Use the zigzag shortcuts (4.1-4.2).
    mea : bool
        Motion-based encoding attention at ``config.mea_levels``.
    mda : bool
        Motion-based decoding attention at ``config.mda_levels``.
    ode : bool
        TrajGRU-ODE cells in the forecaster.
    ignore_irregular_times : bool
        Regular-only models: run on irregular times instead of raising.
    """

    def __init__(
        self,
        config: ModelConfig,
        cell: str = "trajgru",
        zigzag: bool = False,
        mea: bool = False,
        mda: bool = False,
        ode: bool = False,
        ignore_irregular_times: bool = False,
    ) -> None:
        super().__init__()
        _check_layout(config)
        if cell not in ("convgru", "convlstm", "trajgru"):
            raise ValueError(f"cell must be 'convgru', 'convlstm' or 'trajgru', got {cell!r}")
        if cell == "convlstm" and (zigzag or mea or mda or ode):
            raise ValueError("the ConvLSTM encoder-forecaster has no zigzag, attention or ODE")
        if ode and cell != "trajgru":
            raise ValueError("ODE forecaster cells are TrajGRU-ODE cells: use cell='trajgru'")
        self.config = config
        self.model_name = config.name
        self.ode = ode
        self.continuous_time = bool(mea or mda or ode)
        self.ignore_irregular_times = ignore_irregular_times
        ch = list(config.channels)
        self.lstm = cell == "convlstm"
        # ConvLSTM states are [H, C]: twice the channels, H the first half
        self.state_channels = [2 * c if self.lstm else c for c in ch]
        self.down = nn.ModuleList(DownBlock(*spec) for spec in config.down)
        self.up = nn.ModuleList(UpBlock(*spec) for spec in config.up)
        dec_in = [config.up[1][1], config.up[0][1], ch[2]]

        def make_cell(c_in: int, lvl: int, use_ode: bool) -> nn.Module:
            if use_ode:
                return TrajGRUODECell(c_in, ch[lvl], config.links[lvl], config.flow_kernel)
            if cell == "convgru":
                return ConvGRUCell(c_in, ch[lvl])
            if cell == "convlstm":
                return ConvLSTMCell(c_in, ch[lvl])
            return TrajGRUCell(c_in, ch[lvl], config.links[lvl], config.flow_kernel)

        self.enc_cells = nn.ModuleList(make_cell(config.down[i][1], i, False) for i in range(3))
        self.dec_cells = nn.ModuleList(make_cell(dec_in[i], i, ode) for i in range(3))
        self.head = nn.Conv2d(config.head_channels, 1, 1)
        if config.residual:
            # Zero change at initialisation: the untrained residual model is persistence.
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self.skip = (
            nn.Conv2d(ch[2], config.head_channels, 3, padding=1) if config.top_skip else None
        )
        self.mea_levels = tuple(sorted(lv - 1 for lv in config.mea_levels)) if mea else ()
        self.mda_levels = tuple(sorted(lv - 1 for lv in config.mda_levels)) if mda else ()
        self.mea = nn.ModuleDict(
            {str(lv): MotionAttention(config.down[lv][1]) for lv in self.mea_levels}
        )
        self.mda = nn.ModuleDict({str(lv): MotionAttention(ch[lv]) for lv in self.mda_levels})
        if zigzag:
            k, s = config.zigzag_kernel, config.zigzag_stride
            self.zz_enc: ZigzagShortcut | None = ZigzagShortcut(ch[2], ch[0], k, s, upsample=True)
            self.zz_dec: ZigzagShortcut | None = ZigzagShortcut(ch[0], ch[2], k, s, upsample=False)
        else:
            self.zz_enc = None
            self.zz_dec = None
        if ode:
            self.ode_funcs = nn.ModuleList(
                ODEFunc(ch[i], config.ode_hidden[i], config.ode_layers) for i in range(3)
            )
        else:
            self.ode_funcs = None

    def _hid(self, lv: int, state: torch.Tensor) -> torch.Tensor:
        """The output ``H`` of a level's state (the state itself for GRU cells)."""
        return state[:, : self.config.channels[lv]] if self.lstm else state

    # ------------------------------------------------------------------ public
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
            Input frames, p/255 (0..1). H and W multiples of the total down-sampling stride.
        t_in : Tensor, shape (B, T_in)
            Input times, minutes (relative to the last input frame; any offset is removed).
        t_out : Tensor, shape (B, T_out)
            Output times, minutes, after the last input frame, strictly increasing.
        input_mask : Tensor, shape (B, T_in, 1, H, W), optional
            1 = valid pixel; masked input pixels are set to 0.

        Returns
        -------
        Tensor, shape (B, T_out, 1, H, W)
            Forecast frames, p/255.
        """
        x, tin, tout = prepare_inputs(
            x, t_in, t_out, input_mask, self.config.total_stride, self.config.cadence_minutes
        )
        if not self.continuous_time and not self.ignore_irregular_times:
            check_regular(tin, tout, _NAMES[self.model_name])
        enc_h, hist = self._encode(x, tin)
        if self.ode:
            frames = self._forecast_ode(enc_h, hist, tout, tin.shape[1])
        else:
            frames = self._forecast(enc_h, hist, tout)
        y = torch.stack(frames, dim=1)
        if self.config.residual:
            # Change from the last observed input frame: the untrained network is persistence.
            y = y + _last_observed(x, input_mask)
        return y

    # ------------------------------------------------------------------ encoder
    def _encode(
        self, x: torch.Tensor, tin: torch.Tensor
    ) -> tuple[list[torch.Tensor], dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]]]:
        b, t_n = x.shape[:2]
        h: list[torch.Tensor | None] = [None, None, None]
        mea_inputs: dict[int, list[torch.Tensor]] = {lv: [] for lv in self.mea_levels}
        hist: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {
            lv: ([], []) for lv in self.mda_levels
        }
        for i in range(t_n):
            inp = x[:, i]
            for lv in range(3):
                inp = self.down[lv](inp)
                if h[lv] is None:
                    h[lv] = inp.new_zeros(b, self.state_channels[lv], *inp.shape[-2:])
                if lv in self.mea_levels:
                    mea_inputs[lv].append(inp)
                    inp, _ = self.mea[str(lv)](torch.stack(mea_inputs[lv]), tin[:, : i + 1].T)
                h[lv] = self.enc_cells[lv](inp, h[lv])
                inp = self._hid(lv, h[lv])
            if self.zz_enc is not None:
                h[0] = self.zz_enc(h[2], h[0])
            for lv in self.mda_levels:
                hist[lv][0].append(h[lv])
                hist[lv][1].append(tin[:, i])
        return [s for s in h if s is not None], hist

    # ------------------------------------------------------------------ forecaster
    def _window(self, t_in_len: int) -> int:
        """Number of past states in the decoding-attention window (T - 1)."""
        return max(0, min(self.config.mda_window, t_in_len) - 1)

    def _step(
        self,
        h_prev: list[torch.Tensor],
        context: torch.Tensor,
        t_now: torch.Tensor,
        windows: dict[int, tuple[torch.Tensor, torch.Tensor]],
        lat_prev: list[torch.Tensor] | None = None,
        lat_now: list[torch.Tensor] | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One forecaster step; returns the new states (before zigzag) and the output frame."""
        new: list[torch.Tensor] = [h_prev[0], h_prev[1], h_prev[2]]
        inp = context
        for lv in (2, 1, 0):
            if self.ode:
                if lat_prev is None or lat_now is None:
                    raise RuntimeError("ODE forecaster step needs the latent states")
                hl = self.dec_cells[lv](inp, h_prev[lv], lat_prev[lv], lat_now[lv])
            else:
                hl = self.dec_cells[lv](inp, h_prev[lv])
            if lv in self.mda_levels:
                past_s, past_t = windows[lv]
                states = torch.cat((past_s, hl.unsqueeze(0)), dim=0)
                times = torch.cat((past_t, t_now.unsqueeze(0)), dim=0)
                hl, _ = self.mda[str(lv)](states, times)
            new[lv] = hl
            inp = self.up[2 - lv](self._hid(lv, hl))
        if self.skip is not None:
            top = self.skip(self._hid(2, new[2]))
            top = nn.functional.interpolate(
                top, size=inp.shape[-2:], mode="bilinear", align_corners=False
            )
            inp = inp + nn.functional.leaky_relu(top, 0.2)
        return new, self.head(inp)

    def _commit(self, new: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.zz_dec is None:
            return new
        return [new[0], new[1], self.zz_dec(new[0], new[2])]

    def _last_windows(
        self, hist: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]], n_past: int
    ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        out = {}
        for lv, (states, times) in hist.items():
            if n_past == 0:
                ref = states[-1]
                out[lv] = (ref.new_zeros((0, *ref.shape)), times[-1].new_zeros((0, ref.shape[0])))
            else:
                out[lv] = (torch.stack(states[-n_past:]), torch.stack(times[-n_past:]))
        return out

    def _forecast(
        self,
        enc_h: list[torch.Tensor],
        hist: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]],
        tout: torch.Tensor,
    ) -> list[torch.Tensor]:
        n_past = self._window(len(next(iter(hist.values()))[0]) if hist else 1)
        context = self._hid(2, enc_h[2])
        h = list(enc_h)
        frames = []
        for j in range(tout.shape[1]):
            t = tout[:, j]
            new, frame = self._step(h, context, t, self._last_windows(hist, n_past))
            frames.append(frame)
            for lv in self.mda_levels:
                hist[lv][0].append(new[lv])
                hist[lv][1].append(t)
            h = self._commit(new)
        return frames

    def _forecast_ode(
        self,
        enc_h: list[torch.Tensor],
        hist: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]],
        tout: torch.Tensor,
        t_in_len: int,
    ) -> list[torch.Tensor]:
        if self.ode_funcs is None:
            raise RuntimeError("_forecast_ode called on a model without ODE functions")
        b = tout.shape[0]
        n_past = self._window(t_in_len)
        eps = 1e-6
        rounded = tout.round()
        is_grid = (tout - rounded).abs() < eps
        base = (torch.ceil(tout - eps) - 1).clamp(min=0).long()  # (B, T_out)
        k_needed = int(base.max()) if base.numel() else 0
        if bool(is_grid.any()):
            k_needed = max(k_needed, int(rounded[is_grid].max()))
        grid_times = torch.arange(k_needed + 1, dtype=tout.dtype, device=tout.device)
        query = torch.cat((grid_times.expand(b, -1), tout), dim=1)
        step = self.config.ode_step_minutes / self.config.cadence_minutes
        lat_all = [solve_latent(self.ode_funcs[lv], enc_h[lv], query, step) for lv in range(3)]
        lat_grid = [lat[: k_needed + 1] for lat in lat_all]
        lat_req = [lat[k_needed + 1 :] for lat in lat_all]
        context = enc_h[2]
        committed = [list(enc_h)]
        grid_frames: list[torch.Tensor | None] = [None]
        for k in range(1, k_needed + 1):
            t = grid_times[k].expand(b)
            new, frame = self._step(
                committed[k - 1],
                context,
                t,
                self._last_windows(hist, n_past),
                [lat[k - 1] for lat in lat_grid],
                [lat[k] for lat in lat_grid],
            )
            grid_frames.append(frame)
            for lv in self.mda_levels:
                hist[lv][0].append(new[lv])
                hist[lv][1].append(t)
            committed.append(self._commit(new))
        frames = []
        arange_b = torch.arange(b, device=tout.device)
        for j in range(tout.shape[1]):
            if bool(is_grid[:, j].all()):
                idx = rounded[:, j].long() - 1
                stacked = torch.stack([f for f in grid_frames[1:] if f is not None])
                frames.append(stacked[idx, arange_b])
                continue
            bj = base[:, j]
            h_prev = [torch.stack([c[lv] for c in committed])[bj, arange_b] for lv in range(3)]
            lat_prev = [lat[bj, arange_b] for lat in lat_grid]
            lat_now = [lat[j] for lat in lat_req]
            windows = {}
            for lv, (states, times) in hist.items():
                if n_past == 0:
                    ref = states[-1]
                    windows[lv] = (ref.new_zeros((0, *ref.shape)), times[-1].new_zeros((0, b)))
                    continue
                pos = (t_in_len - 1 + bj).unsqueeze(0) + torch.arange(
                    -n_past + 1, 1, device=tout.device
                ).unsqueeze(1)  # (n_past, B)
                s_all = torch.stack(states)
                t_all = torch.stack(times)
                windows[lv] = (s_all[pos, arange_b], t_all[pos, arange_b])
            _, frame = self._step(h_prev, context, tout[:, j], windows, lat_prev, lat_now)
            frames.append(frame)
        return frames


def _check_layout(cfg: ModelConfig) -> None:
    """Raise ValueError when the channel layout of *cfg* does not chain."""
    ch = cfg.channels
    if len(ch) != 3 or len(cfg.down) != 3 or len(cfg.up) != 3 or len(cfg.links) != 3:
        raise ValueError(
            "channels, down, up and links must each have 3 entries (levels 1-3), got "
            f"{len(ch)}, {len(cfg.down)}, {len(cfg.up)}, {len(cfg.links)}"
        )
    if cfg.down[0][0] != 1:
        raise ValueError(f"down[0] must take 1 input channel, got {cfg.down[0][0]}")
    for i in (1, 2):
        if cfg.down[i][0] != cfg.channels[i - 1]:
            raise ValueError(
                f"down[{i}] takes {cfg.down[i][0]} channels but level {i} has {ch[i - 1]}"
            )
    for i, lv in enumerate((2, 1, 0)):
        if cfg.up[i][0] != ch[lv]:
            raise ValueError(
                f"up[{i}] takes {cfg.up[i][0]} channels but level {lv + 1} has {ch[lv]}"
            )
    if cfg.up[2][1] != cfg.head_channels:
        raise ValueError(
            f"up[2] gives {cfg.up[2][1]} channels, head_channels is {cfg.head_channels}"
        )
