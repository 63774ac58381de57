"""ST-PixelCNN: an autoregressive model of HR-VQVAE code paths, causal in time and space.

The codes of a sequence ``(B, T, n, h, w)`` (paths of the ``n`` hierarchy layers on an
``h x w`` latent grid, :mod:`nowcast.modules.hrvq`) are ordered frame by frame, in raster
order (rows top to bottom, left to right) within a frame, and layer by layer (1 to n) at one
position. The logits of the code at ``(t, p, i)`` depend only on codes earlier in that order:

- the codes of the ``context`` previous frames ``t - context .. t - 1`` (a causal temporal
  convolution, kernel ``(context, 3, 3)``, and the self-attention below);
- the codes of frame ``t`` at earlier raster positions: a PixelCNN stack of masked
  convolutions (first mask type A, without the centre; then type B, with it; the single
  stack's blind spot is accepted);
- spatiotemporal self-attention from each position to the code embeddings of every earlier
  voxel of the window (previous frames: all positions; frame ``t``: earlier positions),
  plus an always-visible empty key;
- at the same position, the codes of the layers above (layer ``i``'s head adds the
  embeddings of the paths of layers ``1 .. i-1``; the path also names its codebook).

Logits are over the ``M`` local codes of a layer (the codebook chosen by the layer above).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MaskedConv2d", "STPixelCNN"]


class MaskedConv2d(nn.Conv2d):
    """PixelCNN masked convolution (odd square kernel, same padding).

    Type ``"A"`` sees the rows above and the pixels to the left in the centre row; type
    ``"B"`` also the centre pixel.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, kind: str) -> None:
        if kernel % 2 != 1:
            raise ValueError(f"masked convolutions need an odd kernel; got {kernel}")
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)
        mask = torch.ones(kernel, kernel)
        c = kernel // 2
        mask[c, c + (kind == "B") :] = 0
        mask[c + 1 :] = 0
        self.register_buffer("mask", mask[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the masked convolution."""
        return nn.functional.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class _GatedBlock(nn.Module):
    """Masked (type B) gated residual block conditioned on the temporal features."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.conv = MaskedConv2d(channels, 2 * channels, kernel, "B")
        self.cond = nn.Conv2d(channels, 2 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, h: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        a, g = (self.conv(h) + self.cond(past)).chunk(2, dim=1)
        return h + self.out(torch.tanh(a) * torch.sigmoid(g))


class STPixelCNN(nn.Module):
    """Logits of every code given the earlier ones (see the module docstring).

    Parameters
    ----------
    layers : int
        Hierarchy layers ``n``.
    size : int
        Codewords ``M`` per codebook.
    channels : int
        Feature channels ``C`` (also the code embedding width).
    blocks : int
        Gated masked residual blocks.
    kernel : int
        Odd kernel of the masked convolutions.
    heads : int
        Attention heads (divides ``channels``).
    context : int
        Previous frames seen by the temporal convolution and the attention (>= 1).
    """

    def __init__(
        self, layers: int, size: int, channels: int, blocks: int, kernel: int, heads: int,
        context: int,
    ) -> None:  # fmt: skip
        super().__init__()
        if channels % heads:
            raise ValueError(f"pixelcnn_channels {channels} is not a multiple of the {heads} heads")
        if context < 1:
            raise ValueError(f"pixelcnn_context must be >= 1; got {context}")
        self.layers, self.size, self.channels = int(layers), int(size), int(channels)
        self.heads, self.context = int(heads), int(context)
        c = self.channels
        self.embed = nn.ModuleList(nn.Embedding(size ** (i + 1), c) for i in range(layers))
        self.temporal = nn.Conv3d(c, c, (context, 3, 3), padding=(0, 1, 1))
        self.first = MaskedConv2d(c, c, kernel, "A")
        self.blocks = nn.ModuleList(_GatedBlock(c, kernel) for _ in range(blocks))
        self.norm = nn.LayerNorm(c)  # over channels, per position (a frame-wide norm would leak)
        self.q = nn.Conv2d(c, c, 1)
        self.kv = nn.Linear(c, 2 * c)
        self.sink = nn.Parameter(torch.zeros(2 * c))
        self.attn_out = nn.Conv2d(c, c, 1)
        self.same = nn.ModuleList(nn.Embedding(size ** (i + 1), c) for i in range(layers - 1))
        self.heads_out = nn.ModuleList(nn.Conv2d(c, size, 1) for _ in range(layers))

    def _embed(self, paths: torch.Tensor) -> torch.Tensor:
        """``(B, T, n, h, w)`` paths -> ``(B, T, C, h, w)`` summed layer embeddings."""
        out = None
        for i in range(self.layers):
            e = self.embed[i](paths[:, :, i]).permute(0, 1, 4, 2, 3)
            out = e if out is None else out + e
        assert out is not None
        return out

    def forward(self, paths: torch.Tensor, first: int = 0) -> torch.Tensor:
        """Logits of the codes of frames ``first .. T-1``.

        Parameters
        ----------
        paths : Tensor, shape (B, T, n, h, w), int64
            Code paths of a sequence (later codes of the frames asked for may hold anything:
            they do not enter the logits of earlier ones).
        first : int
            First frame whose logits are returned; frames before it are context only.

        Returns
        -------
        Tensor, shape (B, T - first, n, M, h, w)
            Logits over the local codes of each layer.
        """
        feat = self.features(paths, first)
        sel = paths[:, first:]
        return torch.stack([self.layer_logits(feat, sel, i) for i in range(self.layers)], 2)

    def features(self, paths: torch.Tensor, first: int = 0) -> torch.Tensor:
        """Shared features ``(B, T - first, C, h, w)`` of frames ``first..`` (no same-position
        code enters them)."""
        b, t_n, n, h, w = paths.shape
        c, k = self.channels, self.context
        emb = self._embed(paths)  # (B, T, C, h, w)
        # temporal: frame t sees frames t-k .. t-1 (zeros before the sequence)
        padded = torch.cat((emb.new_zeros(b, k, c, h, w), emb), dim=1).transpose(1, 2)
        past = self.temporal(padded[:, :, first : t_n + k - 1]).transpose(1, 2)
        tq = t_n - first
        past = past.reshape(b * tq, c, h, w)
        cur = emb[:, first:].reshape(b * tq, c, h, w)
        feat = self.first(cur) + past
        for blk in self.blocks:
            feat = blk(feat, past)
        normed = self.norm(feat.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        feat = feat + self._attend(normed, emb, first)
        return nn.functional.relu(feat).reshape(b, tq, c, h, w)

    def frame_context(self, previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the frames before a new frame give it, for sampling it position by position.

        Parameters
        ----------
        previous : Tensor, shape (B, P, n, h, w), int64
            Paths of the ``P <= context`` frames before the new one (the newest last).

        Returns
        -------
        past : Tensor, shape (B, C, h, w)
            The temporal convolution's output for the new frame.
        kv : Tensor, shape (B, 1 + P * h * w, 2C)
            Attention keys and values: the empty key, then the previous frames' voxels.
        """
        b, p_n, _, h, w = previous.shape
        c, k = self.channels, self.context
        emb = self._embed(previous[:, -k:]) if p_n else None
        pad = k - (0 if emb is None else emb.shape[1])
        parts = [previous.new_zeros((b, pad, c, h, w), dtype=self.sink.dtype)]
        if emb is not None:
            parts.append(emb)
        past = self.temporal(torch.cat(parts, 1).transpose(1, 2))[:, :, 0]
        kv = [self.sink.expand(b, 1, 2 * c)]
        if emb is not None:
            kv.append(self.kv(emb.permute(0, 1, 3, 4, 2).reshape(b, -1, c)))
        return past, torch.cat(kv, 1)

    def position_features(
        self, current: torch.Tensor, past: torch.Tensor, kv: torch.Tensor, pos: int
    ) -> torch.Tensor:
        """:meth:`features` of one position of the new frame, ``(B, 1, C, 1, 1)``.

        Parameters
        ----------
        current : Tensor, shape (B, 1, n, h, w), int64
            Paths of the new frame (positions from *pos* on may hold anything).
        past, kv : Tensor
            From :meth:`frame_context`.
        pos : int
            Raster position ``row * w + col``.
        """
        b, _, _, h, w = current.shape
        c, nh = self.channels, self.heads
        r, col = divmod(pos, w)
        cur = self._embed(current)[:, 0]
        feat = self.first(cur) + past
        for blk in self.blocks:
            feat = blk(feat, past)
        here = feat[:, :, r, col]  # (B, C)
        normed = self.norm(here)
        q = nn.functional.linear(normed, self.q.weight[:, :, 0, 0], self.q.bias)
        keys = kv
        if pos:
            flat = cur.permute(0, 2, 3, 1).reshape(b, h * w, c)[:, :pos]
            keys = torch.cat((kv, self.kv(flat)), 1)
        key, val = keys.chunk(2, dim=-1)

        def split(v: torch.Tensor) -> torch.Tensor:
            return v.reshape(b, -1, nh, c // nh).transpose(1, 2)

        att = nn.functional.scaled_dot_product_attention(split(q[:, None]), split(key), split(val))
        att = att.transpose(1, 2).reshape(b, c)
        out = nn.functional.linear(att, self.attn_out.weight[:, :, 0, 0], self.attn_out.bias)
        return nn.functional.relu(here + out).reshape(b, 1, c, 1, 1)

    def layer_logits(self, feat: torch.Tensor, paths: torch.Tensor, layer: int) -> torch.Tensor:
        """Logits ``(B, T, M, h, w)`` of one layer from :meth:`features` ``(B, T, C, h, w)``
        and the paths ``(B, T, n, h, w)`` of the same frames (layers above *layer* used)."""
        b, t, c, h, w = feat.shape
        hi = feat.reshape(b * t, c, h, w)
        if layer > 0:
            same = None
            for i in range(layer):
                e = self.same[i](paths[:, :, i]).permute(0, 1, 4, 2, 3).reshape(b * t, c, h, w)
                same = e if same is None else same + e
            hi = nn.functional.relu(hi + same)
        return self.heads_out[layer](hi).reshape(b, t, self.size, h, w)

    def _attend(self, feat: torch.Tensor, emb: torch.Tensor, first: int) -> torch.Tensor:
        """Causal spatiotemporal attention from frames ``first..`` to earlier voxels."""
        b, t_n, c, h, w = emb.shape
        tq, hw, nh = t_n - first, h * w, self.heads
        q = self.q(feat).reshape(b, tq, c, hw).permute(0, 1, 3, 2).reshape(b, tq * hw, c)
        kv = self.kv(emb.permute(0, 1, 3, 4, 2).reshape(b, t_n * hw, c))
        kv = torch.cat((self.sink.expand(b, 1, 2 * c), kv), dim=1)
        key, val = kv.chunk(2, dim=-1)
        tq_idx = torch.arange(first, t_n, device=emb.device).repeat_interleave(hw)
        pq = torch.arange(hw, device=emb.device).repeat(tq)
        tk_idx = torch.arange(t_n, device=emb.device).repeat_interleave(hw)
        pk = torch.arange(hw, device=emb.device).repeat(t_n)
        dt = tq_idx[:, None] - tk_idx[None, :]
        allowed = ((dt >= 1) & (dt <= self.context)) | ((dt == 0) & (pk[None] < pq[:, None]))
        allowed = torch.cat((allowed.new_ones(tq * hw, 1), allowed), dim=1)

        def split(v: torch.Tensor) -> torch.Tensor:
            return v.reshape(b, -1, nh, c // nh).transpose(1, 2)

        att = nn.functional.scaled_dot_product_attention(
            split(q), split(key), split(val), attn_mask=allowed
        )
        att = att.transpose(1, 2).reshape(b, tq, hw, c).permute(0, 1, 3, 2)
        return self.attn_out(att.reshape(b * tq, c, h, w))
