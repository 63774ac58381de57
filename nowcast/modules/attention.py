"""Motion-based attention: MEA (encoder) and MDA (decoder), thesis eq. 4.5-4.10.

Both mechanisms share one computation (:class:`MotionAttention`) over a window of Q states
``{X(t_1) .. X(t_Q)}`` of one level (MEA: the inputs of the level seen so far; MDA: the last T
hidden states of the level, encoder states included, sliding window). With ``<.>`` the spatial
average (the thesis's average pooling):

- velocity key (4.5): ``V_1 = <X_1>``, ``V_i = f_V((<X_i> - <X_{i-1}>) / (t_i - t_{i-1}))``;
- acceleration key (4.6): ``A_1 = V_1``, ``A_i = f_A((V_i - V_{i-1}) / (t_i - t_{i-1}))``;
  ``f_V`` and ``f_A`` are a 1x1 conv and an average pool; both are linear, so pooling first
  gives the same result at a fraction of the cost;
- time key: ``t_i`` (in frame units, relative to the last input frame) repeated over channels;
- correlation key (4.7): ``C_i = <tanh(W_a1 * X_Q + W_a2 * X_i)>``, 1x1 convs;
- alignment (4.8): ``S = softmax_i(f_combine([V, A, T, C]))`` with ``f_combine`` a linear
  layer 4C -> C; the softmax runs over the window (time) for each channel, so the weights of
  every (sample, channel) sum to one;
- attention state (4.9): ``H_a = sum_i S_i * X_i`` (window includes the current state; the
  scores have Q entries, so we read 4.9's ``i < Q`` as ``i <= Q``);
- combination (4.10, and the MDA's 4.11, which the text cites but does not print): a gated
  combination of the current state and ``H_a``::

      G     = sigmoid(W_g * [X_Q, H_a]),   X~ = LeakyReLU(W_c * [X_Q, H_a])   (3x3, 2C -> C)
      X_new = (1 - G) * X_Q + G * X~

  The thesis writes a single 1x1 conv for 4.10; with it the TrajGRU-Attention model has
  7.46 M parameters instead of the 9.34 M of Table 5.2. The gated 3x3 combination (the same
  form as the zigzag gate 4.1) is our reading of the unprinted 4.11 used for both modules;
  it brings all three proposed models within 5 % of the table (see docs/models.md).

Real time gaps enter through V, A and T: a window sampled irregularly gives other keys than a
regular one with the same frames.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MotionAttention"]


class MotionAttention(nn.Module):
    """Motion-based attention over a window of states of one level.

    Parameters
    ----------
    channels : int
        Channels C of the states.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.channels = c
        self.f_v = nn.Conv2d(c, c, 1)
        self.f_a = nn.Conv2d(c, c, 1)
        self.w_a1 = nn.Conv2d(c, c, 1)
        self.w_a2 = nn.Conv2d(c, c, 1)
        self.f_combine = nn.Linear(4 * c, c)
        self.w_gate = nn.Conv2d(2 * c, c, 3, padding=1)
        self.w_cand = nn.Conv2d(2 * c, c, 3, padding=1)

    @staticmethod
    def _vec_conv(conv: nn.Conv2d, v: torch.Tensor) -> torch.Tensor:
        """Apply a 1x1 conv to channel vectors of shape (N, C)."""
        return conv(v[:, :, None, None])[:, :, 0, 0]

    def weights(self, states: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Alignment scores S (eq. 4.8).

        Parameters
        ----------
        states : Tensor, shape (Q, B, C, H, W)
            Window in time order; the last entry is the current state ``X(t_Q)``.
        times : Tensor, shape (Q, B)
            Times of the window (frame units), strictly increasing along Q.

        Returns
        -------
        Tensor, shape (Q, B, C)
            Softmax weights over the window (sum to one over Q).
        """
        q, b, c, h, w = states.shape
        if times.shape != (q, b):
            raise ValueError(f"times must have shape {(q, b)}, got {tuple(times.shape)}")
        pooled = states.mean(dim=(-2, -1))  # (Q, B, C)
        if q > 1:
            gap = (times[1:] - times[:-1]).clamp(min=1e-6)[..., None].to(states.dtype)
            diff_v = ((pooled[1:] - pooled[:-1]) / gap).reshape((q - 1) * b, c)
            vel = self._vec_conv(self.f_v, diff_v).view(q - 1, b, c)
            v_key = torch.cat((pooled[:1], vel), dim=0)
            diff_a = ((v_key[1:] - v_key[:-1]) / gap).reshape((q - 1) * b, c)
            acc = self._vec_conv(self.f_a, diff_a).view(q - 1, b, c)
            a_key = torch.cat((pooled[:1], acc), dim=0)
        else:
            v_key = pooled
            a_key = pooled
        t_key = times[:, :, None].expand(q, b, c).to(states.dtype)
        cur = self.w_a1(states[-1])  # (B, C, H, W)
        other = self.w_a2(states.reshape(q * b, c, h, w)).view(q, b, c, h, w)
        c_key = torch.tanh(cur.unsqueeze(0) + other).mean(dim=(-2, -1))
        score = self.f_combine(torch.cat((v_key, a_key, t_key, c_key), dim=-1))
        return torch.softmax(score, dim=0)

    def forward(
        self, states: torch.Tensor, times: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend over the window and combine with the current state.

        Parameters
        ----------
        states : Tensor, shape (Q, B, C, H, W)
            Window; ``states[-1]`` is the current state.
        times : Tensor, shape (Q, B)
            Times of the window, frame units.

        Returns
        -------
        new_state : Tensor, shape (B, C, H, W)
        weights : Tensor, shape (Q, B, C)
        """
        s = self.weights(states, times)
        h_att = (s[..., None, None] * states).sum(dim=0)
        cur = states[-1]
        both = torch.cat((cur, h_att), dim=1)
        gate = torch.sigmoid(self.w_gate(both))
        cand = nn.functional.leaky_relu(self.w_cand(both), 0.2)
        return (1.0 - gate) * cur + gate * cand, s
