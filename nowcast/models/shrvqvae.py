"""S-HR-VQVAE: HR-VQVAE frame codes, ST-PixelCNN in time, an ensemble by construction.

Each frame is encoded (strided convolutions) to a latent ``(D, h, w)``, quantised by the
hierarchical residual quantiser (:class:`nowcast.modules.HierarchicalQuantizer`) into ``n``
layers of codes, and decoded (transposed convolutions) back to a frame. The ST-PixelCNN
(:class:`nowcast.modules.STPixelCNN`) models the codes of the future frames given those of
the inputs; sampling it frame by frame, position by position (raster order), layer by layer
gives one future per draw, so the model is an *ensemble predictor* (``ensemble = True``)::

    members = model(x, t_in, t_out, input_mask, n_members=N, seed=s)  # (B, N, T_out, 1, H, W)
    y = model(x, t_in, t_out, input_mask)  # (B, T_out, 1, H, W): mean of the default members

Member ``m`` draws its uniforms from ``torch.Generator`` seeded with
``numpy.random.SeedSequence([seed, m])``, so it does not depend on ``N`` and a seed repeats
the same members. Times must be regular (one frame per cadence step), as for ConvGRU.

Training (``model(x, t_in, t_out, input_mask, target=y, target_mask=m)`` returns the
objective, :meth:`SHRVQVAE.objective`):

- ``disjoint``: eq. 4 (reconstruction + quantisation terms) for HR-VQVAE on every frame,
  plus eq. 7 (cross-entropy of the future codes, summed over layers) for the ST-PixelCNN on
  the detached codes; no gradient passes between the two parts;
- ``joint`` (eq. 9): eq. 4 on the input frames, plus ``L_p + lambda ||x - D(e)||^2`` on the
  future frames, ``e`` the expected combined codeword under the ST-PixelCNN's teacher-forced
  probabilities (so the decoder learns from predicted codes and the gradient reaches the
  ST-PixelCNN).

docs/models.md ("S-HR-VQVAE") lists what the paper fixes and what we chose.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nowcast.configs import ModelConfig
from nowcast.models._validation import check_regular, prepare_inputs
from nowcast.modules.hrvq import HierarchicalQuantizer
from nowcast.modules.st_pixelcnn import STPixelCNN

__all__ = ["SHRVQVAE", "check_shrvqvae_config"]

TRAINING_MODES = ("disjoint", "joint")
_MAX_CODEWORDS = 2**20


def check_shrvqvae_config(cfg: ModelConfig) -> None:
    """Raise ValueError (one line naming the values) when *cfg* cannot build the model."""
    stride = 2 ** len(cfg.vq_channels)
    if not cfg.vq_channels:
        raise ValueError("shrvqvae: vq_channels is empty; give one channel count per 2x down")
    if cfg.image_size % stride:
        raise ValueError(
            f"shrvqvae: image_size {cfg.image_size} is not a multiple of the encoder stride "
            f"{stride} (2 ** len(vq_channels) = 2 ** {len(cfg.vq_channels)}): no latent grid"
        )
    if cfg.vq_layers < 1 or cfg.vq_codebook_size < 2:
        raise ValueError(
            f"shrvqvae: vq_layers {cfg.vq_layers} and vq_codebook_size {cfg.vq_codebook_size} "
            "must be >= 1 and >= 2"
        )
    total = cfg.vq_codebook_size**cfg.vq_layers
    if total > _MAX_CODEWORDS:
        raise ValueError(
            f"shrvqvae: vq_codebook_size {cfg.vq_codebook_size} ** vq_layers {cfg.vq_layers} "
            f"= {total} codewords in the last layer, more than {_MAX_CODEWORDS}"
        )
    if len(cfg.vq_betas) != cfg.vq_layers + 1:
        raise ValueError(
            f"shrvqvae: vq_betas has {len(cfg.vq_betas)} values; vq_layers {cfg.vq_layers} "
            f"needs {cfg.vq_layers + 1} (beta_0, beta_1, ...)"
        )
    if cfg.shrvqvae_training not in TRAINING_MODES:
        raise ValueError(
            f"shrvqvae: unknown shrvqvae_training {cfg.shrvqvae_training!r}; valid names: "
            f"{', '.join(TRAINING_MODES)}"
        )
    if cfg.ensemble_members < 1:
        raise ValueError(f"shrvqvae: ensemble_members must be >= 1; got {cfg.ensemble_members}")


def _down(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2))


def _up(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2))


class SHRVQVAE(nn.Module):
    """S-HR-VQVAE nowcaster (see the module docstring).

    Parameters
    ----------
    config : ModelConfig
        Uses ``image_size``, ``cadence_minutes``, the ``vq_*``, ``pixelcnn_*``,
        ``shrvqvae_training``, ``joint_lambda``, ``ensemble_members`` and
        ``sample_temperature`` settings.
    """

    ensemble = True
    continuous_time = False
    trains_itself = True
    sampled_members = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        check_shrvqvae_config(config)
        self.config = config
        self.model_name = "shrvqvae"
        self.stride = 2 ** len(config.vq_channels)
        self.n_members = int(config.ensemble_members)
        ch = list(config.vq_channels)
        d = int(config.vq_latent_dim)
        enc: list[nn.Module] = [
            _down(c_in, c_out) for c_in, c_out in zip([1, *ch], ch, strict=False)
        ]
        enc.append(nn.Conv2d(ch[-1], d, 3, padding=1))
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(d, ch[-1], 3, padding=1), nn.LeakyReLU(0.2)]
        rev = ch[::-1]
        dec += [_up(c_in, c_out) for c_in, c_out in zip(rev, [*rev[1:], rev[-1]], strict=True)]
        dec.append(nn.Conv2d(rev[-1], 1, 3, padding=1))
        self.decoder = nn.Sequential(*dec)
        self.quantizer = HierarchicalQuantizer(
            d, config.vq_layers, config.vq_codebook_size, config.vq_betas
        )
        self.prior = STPixelCNN(
            config.vq_layers,
            config.vq_codebook_size,
            config.pixelcnn_channels,
            config.pixelcnn_blocks,
            config.pixelcnn_kernel,
            config.pixelcnn_heads,
            config.pixelcnn_context,
        )

    # ------------------------------------------------------------------ pieces
    def encode(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Quantise frames ``(N, 1, H, W)`` (see :meth:`HierarchicalQuantizer.forward`)."""
        return self.quantizer(self.encoder(frames))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Frames ``(N, 1, H, W)`` p/255 (unclipped) from latents ``(N, D, h, w)``."""
        return self.decoder(latent)

    def decode_paths(self, paths: torch.Tensor) -> torch.Tensor:
        """Frames ``(N, 1, H, W)`` from code paths ``(N, n, h, w)``, clipped to 0..1."""
        return self.decode(self.quantizer.lookup(paths)).clamp(0.0, 1.0)

    def _paths(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        q = self.encode(x.reshape(b * t, *x.shape[2:]))
        return q["paths"].reshape(b, t, *q["paths"].shape[1:])

    # ------------------------------------------------------------------ contract
    def forward(
        self,
        x: torch.Tensor,
        t_in: torch.Tensor,
        t_out: torch.Tensor,
        input_mask: torch.Tensor | None = None,
        n_members: int | None = None,
        seed: int | None = None,
        target: torch.Tensor | None = None,
        target_mask: torch.Tensor | None = None,
        **_: object,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Members, their mean, or the training objective (see the module docstring).

        Parameters
        ----------
        x : Tensor, shape (B, T_in, 1, H, W)
            Inputs p/255; H, W multiples of ``2 ** len(vq_channels)``.
        t_in, t_out : Tensor, shape (B, T_in), (B, T_out)
            Minutes; regular (one cadence step apart).
        input_mask : Tensor, shape (B, T_in, 1, H, W), optional
            1 = valid; masked pixels enter as 0.
        n_members, seed : int, optional
            Either given: return the members ``(B, N, T_out, 1, H, W)``; N defaults to
            ``ensemble_members``, the seed to 0. Neither: the mean of the default members.
        target, target_mask : Tensor, shape (B, T_out, 1, H, W), optional
            Given: return :meth:`objective` instead.
        """
        x, tin, tout = prepare_inputs(
            x, t_in, t_out, input_mask, self.stride, self.config.cadence_minutes
        )
        check_regular(tin, tout, "S-HR-VQVAE")
        if target is not None:
            return self.objective(x, target, input_mask, target_mask)
        n = self.n_members if n_members is None else int(n_members)
        members = self.sample(x, tout.shape[1], n, 0 if seed is None else int(seed))
        if n_members is None and seed is None:
            return members.mean(dim=1)
        return members

    def deterministic(
        self,
        x: torch.Tensor,
        t_in: torch.Tensor,
        t_out: torch.Tensor,
        input_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The mean ``(B, T_out, 1, H, W)`` of the default members (seed 0)."""
        return self(x, t_in, t_out, input_mask)

    # ------------------------------------------------------------------ training
    def objective(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        input_mask: torch.Tensor | None = None,
        target_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Training loss of one batch (``shrvqvae_training`` selects disjoint or joint).

        Returns
        -------
        dict
            ``loss`` (scalar), ``prediction`` ``(B, T_out, 1, H, W)`` (the decoded most likely
            code of each position given the true earlier codes: teacher-forced, not a
            forecast), ``usage`` (list of per-layer codeword counts over the batch), and
            the parts ``recon``, ``vq``, ``prior``.
        """
        b, t_in = x.shape[:2]
        t_out = y.shape[1]
        shape = x.shape[2:]
        w_in = torch.ones_like(x) if input_mask is None else input_mask.to(x.dtype)
        w_out = torch.ones_like(y) if target_mask is None else target_mask.to(y.dtype)
        joint = self.config.shrvqvae_training == "joint"
        if joint:
            # eq. 9: HR-VQVAE encodes the inputs; the future codes are only the targets of L_p
            q = self.encode(x.reshape(b * t_in, *shape))
            with torch.no_grad():
                q_out = self.encode(y.reshape(b * t_out, *shape))
            all_paths = torch.cat((q["paths"].reshape(b, t_in, -1, *q["paths"].shape[-2:]),
                                   q_out["paths"].reshape(b, t_out, -1, *q["paths"].shape[-2:])), 1)  # fmt: skip
            recon_loss = _wmse(self.decode(q["quantized"]), x.reshape(-1, *shape),
                               w_in.reshape(-1, *shape))  # fmt: skip
        else:
            frames = torch.cat((x, y), dim=1).reshape(-1, *shape)
            q = self.encode(frames)
            all_paths = q["paths"].reshape(b, t_in + t_out, *q["paths"].shape[1:])
            weights = torch.cat((w_in, w_out), dim=1).reshape(-1, *shape)
            recon_loss = _wmse(self.decode(q["quantized"]), frames, weights)
        paths = all_paths.detach()
        logits = self.prior(paths, first=t_in)  # (B, T_out, n, M, h, w)
        local = paths[:, t_in:] % self.config.vq_codebook_size
        ce = nn.functional.cross_entropy(
            logits.permute(0, 3, 1, 2, 4, 5), local, reduction="none"
        )  # (B, T_out, n, h, w)
        prior_loss = ce.mean(dim=(0, 1, 3, 4)).sum()
        loss = recon_loss + q["loss"] + prior_loss
        if joint:
            soft = self._expected_latent(logits, paths[:, t_in:])
            fut = self.decode(soft.reshape(b * t_out, *soft.shape[2:]))
            fut_loss = _wmse(fut, y.reshape_as(fut), w_out.reshape_as(fut))
            loss = loss + self.config.joint_lambda * fut_loss
        with torch.no_grad():
            best = self._teacher_forced_paths(logits, paths[:, t_in:])
            pred = self.decode_paths(best.reshape(b * t_out, *best.shape[2:]))
        return {
            "loss": loss,
            "prediction": pred.reshape(y.shape),
            "usage": self.quantizer.usage(paths.flatten(0, 1)),
            "recon": recon_loss.detach(),
            "vq": q["loss"].detach(),
            "prior": prior_loss.detach(),
        }

    def _expected_latent(self, logits: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
        """``sum_i E[e^i]`` under softmax(logits), parents teacher-forced: (B, T, D, h, w)."""
        out = None
        for i in range(self.config.vq_layers):
            parent = paths[:, :, i - 1] if i > 0 else torch.zeros_like(paths[:, :, 0])
            cand = self.quantizer.candidates(i, parent)  # (B, T, h, w, M, D)
            p = logits[:, :, i].softmax(dim=2).permute(0, 1, 3, 4, 2)  # (B, T, h, w, M)
            e = (p.unsqueeze(-1) * cand).sum(-2).permute(0, 1, 4, 2, 3)
            out = e if out is None else out + e
        assert out is not None
        return out

    def _teacher_forced_paths(self, logits: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
        m = self.config.vq_codebook_size
        best = logits.argmax(dim=3)  # (B, T, n, h, w)
        parents = torch.cat((torch.zeros_like(paths[:, :, :1]), paths[:, :, :-1]), dim=2)
        return parents * m + best

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, x: torch.Tensor, steps: int, n_members: int, seed: int) -> torch.Tensor:
        """``n_members`` sampled futures ``(B, N, steps, 1, H, W)`` of inputs ``x`` (p/255)."""
        fut = self.sample_paths(x, steps, n_members, seed)
        b, n_l, (h, w) = x.shape[0], fut.shape[3], fut.shape[-2:]
        frames = self.decode_paths(fut.reshape(-1, n_l, h, w))
        return frames.reshape(b, n_members, steps, 1, *frames.shape[-2:])

    @torch.no_grad()
    def sample_paths(self, x: torch.Tensor, steps: int, n_members: int, seed: int) -> torch.Tensor:
        """Sampled code paths ``(B, N, steps, n, h, w)`` of the future frames of ``x``."""
        if n_members < 1:
            raise ValueError(f"n_members must be >= 1; got {n_members}")
        b, t_in = x.shape[:2]
        m, n_l, k = self.config.vq_codebook_size, self.config.vq_layers, self.prior.context
        gens = []
        for j in range(n_members):
            g = torch.Generator(device=x.device)
            g.manual_seed(int(np.random.SeedSequence([seed, j]).generate_state(1)[0]))
            gens.append(g)
        past = self._paths(x)  # (B, T_in, n, h, w)
        h, w = past.shape[-2:]
        seq = past.unsqueeze(1).expand(-1, n_members, -1, -1, -1, -1)
        seq = seq.reshape(b * n_members, t_in, n_l, h, w)
        temp = float(self.config.sample_temperature)
        for _ in range(steps):
            past_ctx, kv = self.prior.frame_context(seq[:, -k:])
            frame = seq.new_zeros(b * n_members, 1, n_l, h, w)
            for pos in range(h * w):
                r, c = divmod(pos, w)
                feat = self.prior.position_features(frame, past_ctx, kv, pos)
                for i in range(n_l):
                    here = frame[:, :, :, r : r + 1, c : c + 1]
                    logit = self.prior.layer_logits(feat, here, i)[:, 0, :, 0, 0]  # (BN, M)
                    prob = (logit / temp).softmax(dim=-1).reshape(b, n_members, m)
                    u = torch.stack([torch.rand(b, generator=g, device=x.device) for g in gens], 1)
                    cdf = prob.cumsum(-1)
                    code = (cdf < u.unsqueeze(-1)).sum(-1).clamp(max=m - 1).reshape(-1)
                    parent = frame[:, 0, i - 1, r, c] if i > 0 else torch.zeros_like(code)
                    frame[:, 0, i, r, c] = parent * m + code
            seq = torch.cat((seq, frame), dim=1)
        return seq[:, t_in:].reshape(b, n_members, steps, n_l, h, w)


def _wmse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the valid pixels (weight 1)."""
    return ((pred - target).pow(2) * weight).sum() / weight.sum().clamp(min=1.0)
