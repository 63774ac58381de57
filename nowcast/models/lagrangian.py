"""Lagrangian mode: a network that learns what advection cannot explain.

Any network of :mod:`nowcast.models` can run in a frame of reference that moves with the
rain (``ModelConfig.lagrangian``), the approach of L-CNN (Ritvanen et al. 2023) and of the
evolution operator of NowcastNet (Zhang et al. 2023); ``docs/models.md`` gives the reasons
for each choice. For inputs ``x (B, T_in, 1, H, W)`` on the store's full grid:

1. **Motion.** A motion field ``(B, 2, H, W)`` in pixels per cadence step, passed in
   (``motion=``, e.g. the resampled store's per-slot field) or estimated from the observed
   input frames with ``pipeline.motion.get_motion(config.lagrangian_motion)``. An estimate
   that fails (no rain, a frozen or uniform field) is zero motion; the reason is kept in
   :attr:`LagrangianNowcaster.last_motion_fallback` for the product's metadata.
2. **Inputs in the moving frame.** The frames are block-averaged (linear Z over valid
   pixels, as ``pipeline.resample.downsize``) onto the network's grid
   (``config.image_size``; ``H`` must be a multiple of it), and every past frame is
   advected forward to the issue time (:mod:`nowcast.advection`). Pixels that come in from
   outside the radar domain are invalid in the advected masks.
3. **The learned change.** The network, run on these frames, forecasts frames in the moving
   frame; the change ``delta(t)`` it predicts is its forecast minus the last observed
   (advected) input. For the encoder-forecaster models with ``residual`` the head is
   zero-initialised, so ``delta = 0`` before training; Vid-ODE's output is multiplied by a
   learned gate that starts at 0, for the same reason.
4. **Loss of the small scales.** Small scales of rain lose their predictability first
   (the idea behind S-PROG's cascade). A learned, zero-initialised table of weights per lead
   mixes the last frame with smoothed versions of itself (the network-grid block mean, then
   Gaussians of 1, 2 and 4 network pixels), so the forecast can damp what it cannot
   predict: ``delta(t) += sum_k w_k(t) (S_k(last) - last)``.
5. **Forecast.** ``y(t) = advect(last + upsample(delta(t)), t)``: the last observed frame
   at full resolution plus the change, bilinearly upsampled from the network's grid, moved
   to each lead time by backward semi-Lagrangian advection. The trajectories are integrated
   on the network's grid and upsampled (motion fields are smooth), so the cost at 480 x 480
   is that of one bilinear warp per lead.

An untrained Lagrangian model is therefore exactly the extrapolation nowcast of the last
observed frame with the same motion (tested), and training can only learn departures from
it: growth, decay, and corrections of the motion.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nowcast.advection import resize_motion, sample, trajectory
from nowcast.contract import last_observed_index, observed_frames
from nowcast.models._validation import prepare_inputs

__all__ = ["LagrangianNowcaster", "downsize_frames", "match_distribution"]

_LOG = logging.getLogger(__name__)
_MOTION_FRAMES = 4
"""Motion is estimated from at most this many of the latest observed input frames (as the
``pysteps`` baseline and the resampled store's per-slot fields)."""


def downsize_frames(
    x: torch.Tensor, mask: torch.Tensor | None, factor: int, min_valid_fraction: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Block mean in linear Z over valid pixels, on the p/255 scale.

    Parameters
    ----------
    x : Tensor, shape (B, T, 1, H, W)
        Frames, p/255 (0 = -10 dBZ, 1 = 60 dBZ).
    mask : Tensor or None, same shape
        1 = valid pixel.
    factor : int
        Block side; must divide H and W.
    min_valid_fraction : float
        A coarse pixel is valid when at least this fraction of its block is.

    Returns
    -------
    (Tensor, Tensor)
        ``(B, T, 1, H / factor, W / factor)`` frames (p/255, 0 where invalid) and masks
        (float, 1 = valid). ``factor == 1`` returns the inputs (mask of ones when None).
    """
    m = torch.ones_like(x) if mask is None else mask.to(x.dtype)
    if factor == 1:
        return x * m, m
    b, t, c, h, w = x.shape
    flat = x.reshape(b * t * c, 1, h, w).to(torch.float32)
    mf = m.reshape(b * t * c, 1, h, w).to(torch.float32)
    z = torch.pow(10.0, (flat * 70.0 - 10.0) / 10.0) * mf
    zs = F.avg_pool2d(z, factor)
    ms = F.avg_pool2d(mf, factor)
    dbz = 10.0 * torch.log10(zs.clamp_min(1e-10) / ms.clamp_min(1e-10))
    p = ((dbz + 10.0) / 70.0).clamp(0.0, 1.0)
    valid = (ms >= min_valid_fraction - 1e-6).to(x.dtype)
    p = torch.where(valid > 0, p, torch.zeros_like(p)).to(x.dtype)
    size = (h // factor, w // factor)
    return p.reshape(b, t, c, *size), valid.reshape(b, t, c, *size)


def _last_observed_index(mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` index of the last input frame with any valid pixel (:mod:`nowcast.contract`)."""
    last = last_observed_index(observed_frames(mask, mask.shape[:2]), required=False)
    return torch.as_tensor(last, device=mask.device)


class LagrangianNowcaster(nn.Module):
    """A network of :mod:`nowcast.models` run in the frame moving with the rain.

    Parameters
    ----------
    net : torch.nn.Module
        Network with the models' call contract on the ``grid x grid`` network grid.
    grid : int
        Side of the network's grid (``ModelConfig.image_size``).
    cadence_minutes : float
        Input cadence; motion is in pixels per cadence step.
    motion_method : str
        Name for ``pipeline.motion.get_motion`` when no motion is passed in.
    gate : bool
        Multiply the network's change by a learned scalar initialised to 0 (for networks
        whose own output cannot start at "no change", e.g. Vid-ODE).
    smoothing_leads : int
        Lead steps with their own learned scale-damping weights (the training horizon);
        later leads use the last row, fractional leads interpolate linearly.
    change_scale : float
        Multiplier of the network's change (:attr:`change_scale`, settable); 0: the network
        is not run, the forecast is the extrapolation with the learned damping.
    damping_scales : tuple of float, optional
        Scales of the damping terms in network pixels: 0 (the block mean) then Gaussian
        widths; default :data:`_SCALES` ``(0, 1, 2, 4)``.
    prob_match : bool
        In evaluation mode, give every lead the value distribution of the last observed
        frame (:func:`match_distribution`, :attr:`prob_match`); training is unchanged (the
        rank assignment has no useful gradient).

    Notes
    -----
    Call contract as every model (``x (B, T_in, 1, H, W)`` p/255, ``t_in``, ``t_out`` in
    minutes, ``input_mask``) plus ``motion (B, 2, h, w)`` in pixels per cadence step of
    an ``h x w`` grid covering the frame (any grid: it is resampled). ``H`` and ``W``
    must be multiples of ``grid``. Returns ``(B, T_out, 1, H, W)`` p/255. A ``motion``
    given at another cadence (a store's) is rescaled when :attr:`motion_cadence_minutes`
    says which (:func:`nowcast.training.rungrid.adapt_model`).
    """

    full_resolution = True

    def __init__(
        self,
        net: nn.Module,
        grid: int,
        cadence_minutes: float = 6.0,
        motion_method: str = "lk",
        gate: bool = False,
        smoothing_leads: int = 20,
        change_scale: float = 1.0,
        prob_match: bool = False,
        damping_scales: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        if grid < 1:
            raise ValueError(f"grid must be a positive number of pixels, got {grid}")
        self.net = net
        self.grid = int(grid)
        self.cadence_minutes = float(cadence_minutes)
        # cadence of the motion fields passed in (a store's: pixels per store step); None:
        # the model's own. Set by nowcast.training.rungrid.adapt_model for another cadence
        self.motion_cadence_minutes: float | None = None
        # multiplier of the network's learned change (not a weight: 0 gives the
        # extrapolation nowcast plus the damping, 1 the trained model)
        self.change_scale = float(change_scale)
        # in evaluation: every lead's values replaced rank for rank by the last observed
        # frame's (S-PROG's "cdf" probability matching, :func:`match_distribution`)
        self.prob_match = bool(prob_match)
        self.motion_method = str(motion_method)
        self.gate = nn.Parameter(torch.zeros(1)) if gate else None
        if smoothing_leads < 1:
            raise ValueError(f"smoothing_leads must be >= 1, got {smoothing_leads}")
        # per-lead weights of the scale-damping terms (one row per whole lead step 1..N;
        # row 0, the issue time, is fixed at 0), zero at initialisation
        self.scales = tuple(
            float(v) for v in (_SCALES if damping_scales is None else damping_scales)
        )
        if not self.scales or self.scales[0] != 0.0 or any(v <= 0 for v in self.scales[1:]):
            raise ValueError(
                f"damping_scales must start with 0 (the block mean) followed by positive "
                f"Gaussian widths in network pixels, got {damping_scales!r}"
            )
        self.smoothing = nn.Parameter(torch.zeros(int(smoothing_leads), len(self.scales)))
        self.continuous_time = bool(getattr(net, "continuous_time", False))
        self.model_name = getattr(net, "model_name", type(net).__name__)
        self.config = getattr(net, "config", None)
        self.last_motion_fallback: list[str | None] = []
        self.last_motion: torch.Tensor | None = None
        self.last_fallback: str | None = None  # read by nowcast.forecast (product metadata)
        self._motion = None

    # ---------------------------------------------------------------- motion
    def estimate_motion(self, x: torch.Tensor, mask: torch.Tensor, tin: torch.Tensor):
        """Motion ``(B, 2, H, W)`` (pixels per cadence step) from the observed inputs."""
        if self._motion is None:  # one instance: LK caches the vectors of frame pairs
            from pipeline.motion import get_motion

            self._motion = get_motion(self.motion_method)
        method = self._motion
        frames = x.detach().cpu().to(torch.float32).numpy()[:, :, 0]
        masks = mask.detach().cpu().numpy()[:, :, 0] > 0.5
        times = tin.detach().cpu().to(torch.float64).numpy() * self.cadence_minutes
        fields, reasons = [], []
        for b in range(frames.shape[0]):
            obs = np.flatnonzero(masks[b].reshape(masks.shape[1], -1).any(axis=1))
            obs = obs[-_MOTION_FRAMES:]
            est = method(
                frames[b, obs],
                masks[b, obs],
                times[b, obs],
                cadence_minutes=self.cadence_minutes,
            )
            fields.append(np.asarray(est.field, dtype=np.float32))
            reasons.append(est.fallback)
            if est.fallback:
                _LOG.warning("motion of sample %d: zero motion (%s)", b, est.fallback)
        self.last_motion_fallback = reasons
        failed = sorted({r for r in reasons if r})
        self.last_fallback = f"zero motion ({'; '.join(failed)})" if failed else None
        return torch.from_numpy(np.stack(fields)).to(device=x.device, dtype=x.dtype)

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        x: torch.Tensor,
        t_in: torch.Tensor,
        t_out: torch.Tensor,
        input_mask: torch.Tensor | None = None,
        motion: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Forecast ``(B, T_out, 1, H, W)`` in p/255 (see the class and module docs).

        Raises
        ------
        ValueError
            On the models' contract violations, a grid that is not a multiple of the
            network's, a window with no valid input pixel (a radar outage), or a motion
            field of the wrong shape.
        """
        b, t_n, _, h, w = x.shape if x.ndim == 5 else (0, 0, 0, 0, 0)
        if h % self.grid or w % self.grid or h < self.grid or w < self.grid:
            raise ValueError(
                f"x has H, W = {h}, {w} (shape {tuple(x.shape)}); a Lagrangian model with a "
                f"{self.grid} x {self.grid} network grid needs multiples of {self.grid}"
            )
        xm, tin, tout = prepare_inputs(x, t_in, t_out, input_mask, 1, self.cadence_minutes)
        mask = torch.ones_like(x) if input_mask is None else (input_mask > 0.5).to(x.dtype)
        outage = mask.flatten(1).sum(-1) == 0
        if bool(outage.any()):
            raise ValueError(
                f"samples {torch.nonzero(outage).flatten().tolist()} have no valid input pixel "
                "in any frame (a radar outage): refusing to forecast from an empty window"
            )
        factor = h // self.grid
        if motion is None:
            motion = self.estimate_motion(xm, mask, tin)
        else:
            if motion.ndim != 4 or motion.shape[:2] != (b, 2):
                raise ValueError(
                    f"motion must have shape (B, 2, h, w) = ({b}, 2, h, w), got "
                    f"{tuple(motion.shape)}"
                )
            self.last_motion_fallback = [None] * b
            self.last_fallback = None
            if self.motion_cadence_minutes not in (None, self.cadence_minutes):
                # pixels per store step -> pixels per step of the model's cadence
                motion = motion * (self.cadence_minutes / self.motion_cadence_minutes)
        motion = motion.to(device=x.device, dtype=torch.float32)
        v_net = resize_motion(motion, (self.grid, self.grid))
        self.last_motion = resize_motion(motion, (h, w)).detach()

        # inputs in the frame moving with the rain, on the network grid
        xc, mc = downsize_frames(xm, mask, factor)
        back = (-tin).flip(1).clamp_min(0.0)  # steps from each input to the issue time
        d_in = trajectory(v_net, back).flip(1)  # (B, T_in, 2, g, g)
        xl = sample(xc, d_in)
        ml = (sample(mc, d_in) >= 0.5 - 1e-6).to(x.dtype)
        xl = xl * ml
        ar = torch.arange(b, device=x.device)
        last = _last_observed_index(mask)
        if self.change_scale == 0.0:  # extrapolation plus damping: the network is not run
            delta = xl.new_zeros((b, tout.shape[1], 1, self.grid, self.grid))
        else:
            y_net = self.net(xl, t_in, t_out, input_mask=ml)  # (B, T_out, 1, g, g)
            delta = y_net - xl[ar, last].unsqueeze(1)
            if self.gate is not None:
                delta = self.gate * delta
            if self.change_scale != 1.0:
                delta = self.change_scale * delta

        # forecast: last observed frame (full grid) + the change, advected to each lead
        base = xm[ar, last].unsqueeze(1)  # (B, 1, 1, H, W)
        lag = (-tin[ar, last]).clamp_min(0.0)  # steps from the last observed frame
        if bool((lag > 0).any()):
            d_last = resize_motion(trajectory(v_net, lag.unsqueeze(1)), (h, w)) * (lag > 0).view(
                b, 1, 1, 1, 1
            )
            base = sample(base[:, 0], d_last)
        damp = self._damping(base[:, 0], xl[ar, last], tout, (h, w))
        if factor > 1:
            delta = F.interpolate(
                delta.flatten(0, 1), size=(h, w), mode="bilinear", align_corners=False
            ).unflatten(0, delta.shape[:2])
        if damp is not None:
            delta = delta + damp
        d_out = resize_motion(trajectory(v_net, tout), (h, w))  # (B, T_out, 2, H, W)
        y = sample(base + delta, d_out)
        if self.prob_match and not self.training:
            y = match_distribution(y, xm[ar, last], mask[ar, last])
        return y

    def _damping(
        self, last_full: torch.Tensor, last_net: torch.Tensor, tout: torch.Tensor, size
    ) -> torch.Tensor | None:
        """Learned loss of the small scales with lead time, ``(B, T_out, 1, H, W)``.

        ``sum_k w_k(t) (S_k(last) - last)`` with ``S_k`` the last frame smoothed at the
        scales of :attr:`scales` (default :data:`_SCALES`: the network-grid block mean, then Gaussians of 1, 2, 4
        network pixels), computed on the network grid and upsampled. ``w(t)`` is a learned
        table over whole lead steps, interpolated linearly, 0 at the issue time and before
        training (in evaluation mode ``None`` is returned then; in training mode the zero weights
        give an exact zero term and receive their gradient).
        """
        if not self.training and not bool((self.smoothing != 0).any()):
            return None  # exact (and free) before training; in training the zero weights
            # must stay in the graph to get their gradient
        smooth = [last_net]
        for sigma in self.scales[1:]:
            smooth.append(_gaussian(last_net, sigma))
        stack = torch.cat(smooth, dim=1)  # (B, K, g, g)
        if stack.shape[-2:] != tuple(size):
            stack = F.interpolate(stack, size=size, mode="bilinear", align_corners=False)
        terms = stack - last_full  # (B, K, H, W)
        n = self.smoothing.shape[0]
        table = torch.cat((self.smoothing.new_zeros(1, self.smoothing.shape[1]), self.smoothing))
        t = tout.clamp(0.0, float(n))  # (B, T_out), lead steps
        lo = t.floor().long().clamp(max=n - 1)
        frac = (t - lo.to(t.dtype)).unsqueeze(-1)
        w = table[lo] * (1 - frac) + table[lo + 1] * frac  # (B, T_out, K)
        return torch.einsum("bsk,bkhw->bshw", w.to(terms.dtype), terms).unsqueeze(2)


def match_distribution(y: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Probability matching: each forecast frame takes the reference frame's values by rank.

    Parameters
    ----------
    y : torch.Tensor
        ``(B, T, 1, H, W)`` forecast, p/255.
    ref : torch.Tensor
        ``(B, 1, H, W)`` the last observed frame, p/255.
    mask : torch.Tensor
        ``(B, 1, H, W)`` its valid pixels (1.0); only these pixels of every lead are matched
        (to the sorted valid values of *ref*, quantiles interpolated linearly), the others
        are left as they are.

    Returns
    -------
    torch.Tensor
        ``(B, T, 1, H, W)``: within the valid pixels, the same order as *y* and the
        distribution of *ref* (the empirical CDF matching of pysteps' ``cdf`` method).
    """
    out = y.clone()
    for b in range(y.shape[0]):
        valid = mask[b, 0].flatten() > 0.5
        m = int(valid.sum())
        if m < 2:
            continue
        target = torch.sort(ref[b, 0].flatten()[valid]).values
        frames = y[b, :, 0].flatten(1)[:, valid]  # (T, m)
        order = torch.argsort(frames, dim=1)
        matched = torch.empty_like(frames)
        matched.scatter_(1, order, target.expand_as(frames))
        flat = out[b, :, 0].flatten(1)
        flat[:, valid] = matched
        out[b, :, 0] = flat.view(y.shape[1], *y.shape[-2:])
    return out


_SCALES = (0.0, 1.0, 2.0, 4.0)
"""Scales of the damping terms in network pixels (0 = the block mean alone)."""


def _gaussian(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, 1, H, W)`` with reflecting edges."""
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.arange(-r, r + 1, dtype=field.dtype, device=field.device)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    k = k / k.sum()
    pad = min(r, field.shape[-1] - 1, field.shape[-2] - 1)
    if pad < r:  # tiny grids: truncate the kernel to what reflection can pad
        k = k[r - pad : r + pad + 1] / k[r - pad : r + pad + 1].sum()
        r = pad
    out = F.conv2d(F.pad(field, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
