"""Ensembles from deterministic nowcasters: perturbed motion plus correlated noise.

:class:`EnsembleNowcaster` turns any predictor with the models' call contract
``predictor(x, t_in, t_out, input_mask=None) -> (B, T_out, 1, H, W)`` (p/255) into an
*ensemble predictor* (contract of :mod:`nowcast.baselines`, "Ensemble predictors"):
``ens(x, t_in, t_out, input_mask=None, n_members=None, seed=None) -> (B, N, T_out, 1, H, W)``.

The predictor runs once; each member ``m`` is the deterministic forecast ``y(t)`` with two
perturbations and two corrections, in the spirit of STEPS (pysteps ``noise.motion`` "bps" and the noise cascade):

1. **Motion.** A spatially smooth random velocity perturbation ``dv_m`` (power-law noise of
   spectral exponent ``motion_beta``, unit standard deviation, times
   ``motion_rel * |v| + motion_abs`` pixels per step, ``|v|`` the mean speed of the model's
   motion field :attr:`~nowcast.models.lagrangian.LagrangianNowcaster.last_motion` when it
   has one), so the displacement error ``t dv_m`` grows linearly with lead (in steps). The
   member is the forecast read at the displaced points (backward semi-Lagrangian,
   :func:`nowcast.advection.sample`), a first-order version of advecting with ``v + dv_m``.
2. **Change.** Spatially correlated noise (power-law spectrum of exponent ``noise_beta``,
   unit variance) accumulated over lead steps (a random walk: standard deviation
   ``sigma_1 sqrt(t)``, fractional leads interpolated) is added to the forecast, weighted by
   the rain fraction ``clip(y / p_rain, 0, 1)`` so dry areas stay dry. ``sigma_1`` is the
   per-sample one-step Lagrangian innovation of the inputs: the standard deviation over rainy
   pixels of ``x_last - advect(x_prev, v, 1)``, times ``noise_scale``. (p/255 is linear
   in dBZ, so this is a multiplicative perturbation of the rain rate.) ``noise="cascade"``
   replaces it by a scale-dependent noise (:func:`nowcast.noise.cascade_noise`): per scale
   band the power of the last input frame and the Lagrangian correlation of the inputs,
   the unpredictable fraction ``1 - rho**(2 t)`` of the power growing with lead, small
   scales first, as in STEPS. ``noise_init`` (default 1) starts the walk from a field of
   standard deviation ``noise_init * sigma_1`` instead of zero (an uncertain analysis: the
   walk's standard deviation is ``sigma_1 sqrt(noise_init**2 + t)``, so the members
   already differ by more than one step's change at the first lead); ``motion_init``
   (default 0, off) starts the displacement from ``motion_init dv_m``.
3. **Dry pixels and rain area.** Pixels below ``dry_mmh`` (default 0.1 mm/h, the rain
   threshold of the ``steps`` and ``sprog`` baselines) are set to 0 (no echo), as STEPS
   does; with ``wet_area=True`` (default) each member frame keeps the deterministic
   forecast's number of wet pixels, its largest values (:func:`nowcast.matching.keep_wet_area`),
   so the noise's holes do not shrink the rain area with lead.
4. **Intensity distribution** (``match=True``). Each member's wet values (at or above
   ``dry_mmh``), frame by frame, are mapped rank for rank onto the distribution of the wet
   values of the last observed input frame (:func:`match_wet_distribution`: quantile
   mapping, the probability matching of STEPS restricted to the rain area). The member keeps
   its own rain area and pattern; its intensities take the observed distribution, so a
   forecast that over- or under-forecasts the heavy rain (as a model trained with a CSI
   term does at long leads) does not carry that bias into the probabilities.

The defaults (``motion_rel=0.5``, ``motion_abs=0.1``, ``noise="walk"``, ``noise_scale=1.0``,
``noise_beta=2.0``, ``noise_init=1.0``, ``dry_mmh=0.1``, ``match=True``, ``wet_area=True``)
were chosen on validation days of synthetic archives (80 x 80, 20 leads, 20 members;
docs/ensembles.md), never on test days. ``noise_scale=1`` is the
unscaled estimate: the random walk's increments have the variance of the observed one-step
Lagrangian innovation. Without the distribution matching (the earlier default
``noise_scale=0.3``, ``noise_beta=3``, ``match=False``) the ensemble was over-confident at
2 and 10 mm/h; the cascade noise lowered the CRPS slightly but was less reliable at 2 mm/h.

Members are independent draws from ``numpy.random.SeedSequence([seed, member])`` (one
generator per member, so member ``m`` does not depend on ``N``; the samples of a batch get
different fields, but two calls with the same seed repeat the same perturbations, so pass
another seed for draws independent of an earlier call) and are built one at a
time (:meth:`EnsembleNowcaster.members`): memory is one member's ``(B, T_out, 1, H, W)`` on
top of the deterministic forecast, unless the caller stacks them (``__call__``).

:func:`ensemble_products` reduces a stream of members to exceedance probabilities per rain
threshold and the ensemble mean (percentiles keep the members, as they need them);
:func:`products_dataset` writes them as a CF-style dataset (probabilities in ``1`` against a
``threshold`` coordinate of standard name ``rainfall_rate``, members on a ``realization``
dimension) and :func:`plot_probability_maps` draws them. ``docs/ensembles.md`` describes the
method and its scores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from nowcast.advection import resize_motion, sample, trajectory
from nowcast.matching import keep_wet_area, match_wet_distribution
from nowcast.noise import (
    band_autocorrelation,
    band_index,
    band_power,
    cascade_noise,
    powerlaw_noise,
)
from nowcast.probability import get_method as get_probability_method
from pipeline.units import RAIN_THRESHOLDS_MMH, rainrate_to_normalized

__all__ = [
    "EnsembleNowcaster",
    "ensemble_products",
    "plot_probability_maps",
    "NOISE_KINDS",
    "match_wet_distribution",
    "powerlaw_noise",
    "predict_members",
    "products_dataset",
]


NOISE_KINDS = ("walk", "cascade")
"""Kinds of noise on the change (``EnsembleNowcaster(noise=...)``)."""


class EnsembleNowcaster:
    """N members of a deterministic predictor (see the module docstring).

    Parameters
    ----------
    predictor : callable
        ``predictor(x, t_in, t_out, input_mask=None) -> (B, T_out, 1, H, W)`` p/255; a
        :class:`torch.nn.Module` is run under ``torch.no_grad`` in eval mode.
    n_members : int
        Default number of members.
    seed : int
        Default seed.
    cadence_minutes : float
        Lead times ``t_out`` (min) are divided by it to get steps.
    motion_rel, motion_abs : float
        Velocity perturbation standard deviation ``motion_rel * mean speed + motion_abs``
        (pixels per step).
    motion_beta : float
        Spectral exponent of the velocity perturbations (large = smooth).
    noise_scale : float
        Multiplies the estimated one-step innovation ``sigma_1`` (0 = motion perturbations
        only).
    noise_beta : float
        Spectral exponent of the additive noise.
    noise_init : float
        Initial perturbation of the walk (``noise="walk"``; the cascade ignores it): a
        field of the walk's spectrum and standard deviation ``noise_init * sigma_1`` added
        at every lead, so the walk's standard deviation is ``sigma_1 sqrt(noise_init**2 +
        t)`` instead of growing from 0. Default 1: the analysis is as uncertain as one
        step's Lagrangian change (chosen on the validation day, docs/ensembles.md); 0 gives
        the members without it (its field is drawn last).
    motion_init : float
        Initial position error, in steps of the velocity perturbation: the displacement is
        ``(t + motion_init) dv_m`` instead of ``t dv_m`` (0 = off).
    noise_growth : bool
        Let the walk's standard deviation grow as ``t**h`` instead of ``sqrt(t)``, ``h``
        estimated from the inputs (the Lagrangian innovation over the longest lag of the
        input window against one step, clipped to ``[0.5, 1]``). Off by default: on the
        validation day it did not improve the scores.
    rain_mmh : float
        Rain rate (mm/h) of full noise weight ``p_rain``.
    dry_mmh : float, optional
        Members' pixels below this rain rate (mm/h) are set to 0 (no echo), as STEPS sets
        its sub-threshold pixels; None keeps the weak echoes (and with no perturbation
        every member is then the deterministic forecast).
    match : bool
        Map each member's wet values (at or above ``dry_mmh``) onto the wet-value
        distribution of the last observed input frame (:func:`match_wet_distribution`);
        ignored when ``dry_mmh`` is None (no wet threshold).
    wet_area : bool
        Give each member frame the deterministic forecast's number of pixels at or above
        ``dry_mmh`` (:func:`nowcast.matching.keep_wet_area`), so the noise does not shrink
        the members' rain area; ignored when ``dry_mmh`` is None.
    noise : str
        Noise on the change, one of :data:`NOISE_KINDS`: ``"walk"`` (power-law fields summed
        over steps, scaled by the innovation ``sigma_1``) or ``"cascade"``
        (:func:`nowcast.noise.cascade_noise`, per-band power and correlation of the inputs).
    n_bands : int
        Scale bands of the cascade noise.
    name : str
        Name in reports.
    """

    ensemble = True
    continuous_time = True

    def __init__(
        self,
        predictor: Callable[..., torch.Tensor],
        n_members: int = 10,
        seed: int = 0,
        cadence_minutes: float = 6.0,
        motion_rel: float = 0.5,
        motion_abs: float = 0.1,
        motion_beta: float = 4.0,
        noise_scale: float = 1.0,
        noise_beta: float = 2.0,
        rain_mmh: float = 0.5,
        dry_mmh: float | None = 0.1,
        match: bool = True,
        wet_area: bool = True,
        noise: str = "walk",
        noise_growth: bool = False,
        noise_init: float = 1.0,
        motion_init: float = 0.0,
        n_bands: int = 6,
        name: str | None = None,
    ) -> None:
        if int(n_members) < 1:
            raise ValueError(f"n_members must be >= 1; got {n_members}")
        if cadence_minutes <= 0:
            raise ValueError(f"cadence_minutes must be > 0; got {cadence_minutes}")
        for key, val in (("motion_rel", motion_rel), ("motion_abs", motion_abs)):
            if val < 0:
                raise ValueError(f"{key} must be >= 0; got {val}")
        if noise_scale < 0:
            raise ValueError(f"noise_scale must be >= 0; got {noise_scale}")
        for key, val in (("noise_init", noise_init), ("motion_init", motion_init)):
            if val < 0:
                raise ValueError(f"{key} must be >= 0; got {val}")
        self.predictor = predictor
        self.n_members = int(n_members)
        self.seed = int(seed)
        self.cadence_minutes = float(cadence_minutes)
        self.motion_rel = float(motion_rel)
        self.motion_abs = float(motion_abs)
        self.motion_beta = float(motion_beta)
        self.noise_scale = float(noise_scale)
        self.noise_beta = float(noise_beta)
        self.p_rain = float(rainrate_to_normalized(rain_mmh))
        self.p_dry = None if dry_mmh is None else float(rainrate_to_normalized(dry_mmh))
        self.match = bool(match)
        self.wet_area = bool(wet_area)
        if noise not in NOISE_KINDS:
            raise ValueError(f"unknown noise {noise!r}; expected one of {list(NOISE_KINDS)}")
        self.noise = noise
        self.noise_growth = bool(noise_growth)
        self.noise_init = float(noise_init)
        self.motion_init = float(motion_init)
        self.n_bands = int(n_bands)
        if self.n_bands < 1:
            raise ValueError(f"n_bands must be >= 1; got {n_bands}")
        self.name = name or str(getattr(predictor, "model_name", type(predictor).__name__))
        self.continuous_time = bool(getattr(predictor, "continuous_time", True))

    # ------------------------------------------------------------------ contract
    def __call__(
        self,
        x: torch.Tensor,
        t_in: torch.Tensor,
        t_out: torch.Tensor,
        input_mask: torch.Tensor | None = None,
        n_members: int | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Members stacked, ``(B, N, T_out, 1, H, W)`` float32 p/255."""
        return torch.stack(list(self.members(x, t_in, t_out, input_mask, n_members, seed)), 1)

    def deterministic(self, x, t_in, t_out, input_mask=None) -> torch.Tensor:
        """Ensemble mean ``(B, T_out, 1, H, W)`` p/255 with the default members and seed."""
        total, count = None, 0
        for m in self.members(x, t_in, t_out, input_mask):
            total = m if total is None else total + m
            count += 1
        return total / count

    def members(
        self,
        x: torch.Tensor,
        t_in: torch.Tensor,
        t_out: torch.Tensor,
        input_mask: torch.Tensor | None = None,
        n_members: int | None = None,
        seed: int | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield the members one by one, each ``(B, T_out, 1, H, W)`` float32 p/255."""
        n = int(self.n_members if n_members is None else n_members)
        seed = int(self.seed if seed is None else seed)
        if n < 1:
            raise ValueError(f"n_members must be >= 1; got {n}")
        if isinstance(self.predictor, torch.nn.Module):
            self.predictor.eval()
        with torch.no_grad():
            y = self.predictor(x, t_in, t_out, input_mask=input_mask).to(torch.float32)
            b, t, _, h, w = y.shape
            motion = getattr(self.predictor, "last_motion", None)
            if not isinstance(motion, torch.Tensor) or motion.shape[0] != b:
                motion = torch.zeros(b, 2, h, w, device=y.device)
            motion = resize_motion(motion.to(y.device, torch.float32), (h, w))
            speed = motion.norm(dim=1).flatten(1).mean(1)  # (B,)
            sigma_v = (self.motion_rel * speed + self.motion_abs).cpu().numpy()
            sigma_1 = None
            if self.noise == "walk":
                sigma_1, growth = self._innovation(x, input_mask, motion)  # (B,) each
                sigma_1 = sigma_1 * self.noise_scale
            steps = (t_out.to(torch.float64) / self.cadence_minutes).cpu().numpy()  # (B, T)
            if np.any(steps <= 0):
                raise ValueError(f"t_out must be > 0 minutes; got {t_out.tolist()}")
            k_max = int(np.ceil(steps.max()))
            weight = (y / self.p_rain).clamp(0.0, 1.0)
            reference = self._last_frame(x, input_mask) if self.match and self.p_dry else None
            if self.noise == "cascade":
                rho, power = self._scale_statistics(x, input_mask, motion)  # (B, n_bands) x2
            for m in range(n):
                rng = np.random.default_rng(np.random.SeedSequence([seed, m]))
                dv = (
                    powerlaw_noise(rng, (b, 2, h, w), self.motion_beta)
                    * sigma_v[:, None, None, None]
                )
                lag = steps + self.motion_init  # displacement error at t = 0: motion_init dv
                disp = torch.from_numpy(lag[:, :, None, None, None] * dv[:, None]).to(y)
                if self.noise == "cascade":  # (B, k_max + 1, H, W), amplitude included
                    walk = np.stack(
                        [cascade_noise(rng, k_max, (h, w), rho[i], power[i]) for i in range(b)]
                    )
                    walk *= self.noise_scale
                else:
                    walk = np.cumsum(powerlaw_noise(rng, (b, k_max, h, w), self.noise_beta), axis=1)
                    walk = np.concatenate([np.zeros((b, 1, h, w), np.float32), walk], axis=1)
                    # a random walk has std sqrt(s) after s steps; s**h instead
                    s_pow = np.arange(k_max + 1.0)[None, :] ** (growth[:, None] - 0.5)
                    walk *= (sigma_1[:, None] * s_pow)[:, :, None, None].astype(np.float32)
                    if self.noise_init > 0:  # drawn last: the other fields stay the same
                        init = powerlaw_noise(rng, (b, 1, h, w), self.noise_beta)
                        walk += (self.noise_init * sigma_1)[:, None, None, None] * init
                lo = np.clip(np.floor(steps).astype(int), 0, k_max - 1)
                frac = (steps - lo)[:, :, None, None]
                ar = np.arange(b)[:, None]
                noise = walk[ar, lo] * (1 - frac) + walk[ar, lo + 1] * frac  # (B, T, H, W)
                pert = y + weight * torch.from_numpy(noise[:, :, None].astype(np.float32)).to(y)
                member = sample(pert, disp).clamp(0.0, 1.0)
                if self.wet_area and self.p_dry is not None:
                    member = keep_wet_area(member, y, self.p_dry)
                if self.p_dry is not None:
                    member = torch.where(member < self.p_dry, torch.zeros_like(member), member)
                if reference is not None:
                    member = match_wet_distribution(
                        member, reference[0], self.p_dry, reference_mask=reference[1]
                    )
                yield member

    @staticmethod
    def _last_frame(x, input_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """The last input frame with valid pixels and its mask, ``(B, H, W)`` each."""
        mask = torch.ones_like(x) if input_mask is None else (input_mask > 0.5).to(x.dtype)
        valid = mask.flatten(2).amax(-1) > 0  # (B, T_in)
        pos = torch.arange(x.shape[1], device=x.device).expand_as(valid)
        last = torch.where(valid, pos, torch.full_like(pos, -1)).amax(1).clamp(min=0)  # (B,)
        ar = torch.arange(x.shape[0], device=x.device)
        return x[ar, last, 0].float(), mask[ar, last, 0]

    def _pair(self, x, input_mask, motion, i, lag=1):
        """Sample ``i``'s last valid frame, an earlier one advected onto it, both valid, gap.

        The earlier frame is ``lag`` valid frames before the last (None: the first valid
        frame); None when there are fewer than two frames or the motion is on another grid.
        """
        mask = torch.ones_like(x[i]) if input_mask is None else (input_mask[i] > 0.5).to(x.dtype)
        idx = torch.nonzero(mask.flatten(1).amax(-1) > 0).flatten()
        if len(idx) < 2 or tuple(x.shape[-2:]) != tuple(motion.shape[-2:]):
            return None
        j = idx[0] if lag is None else idx[max(len(idx) - 1 - int(lag), 0)]
        last, prev = x[i, idx[-1]].float(), x[i, j].float()  # (1, H, W)
        gap = float(idx[-1] - j)
        moved = sample(prev[None], trajectory(motion[i : i + 1], [gap]))[0, 0]
        both = mask[idx[-1]].bool() & mask[j].bool()
        return last, moved, both, gap

    def _scale_statistics(self, x, input_mask, motion) -> tuple[np.ndarray, np.ndarray]:
        """Per sample and scale band: one-step Lagrangian correlation and observed power.

        ``rho[b, j]``: the correlation in band ``j`` of the last input frame with an earlier
        one (the first valid input), advected onto it by the motion field, per step (the
        ``gap``-th root); ``power[b, j]``: the band power of the last frame
        (p/255 squared). Invalid pixels count as 0; without two frames (or motion on
        another grid) the power is 0 (no noise).
        """
        b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        bands = band_index(h, w, self.n_bands)
        rho = np.zeros((b, self.n_bands))
        power = np.zeros((b, self.n_bands))
        for i in range(b):
            pair = self._pair(x, input_mask, motion, i, None)
            if pair is None:
                continue
            last, moved, both, gap = pair
            a = torch.where(both, last, 0.0)[0].cpu().numpy().astype(np.float64)
            c = torch.where(both, moved, 0.0)[0].cpu().numpy().astype(np.float64)
            rho[i] = band_autocorrelation(a, c, bands, self.n_bands) ** (1.0 / gap)
            power[i] = band_power(a, bands, self.n_bands)
        return np.minimum(rho, 0.999), power

    def _innovation(self, x, input_mask, motion) -> tuple[np.ndarray, np.ndarray]:
        """Per sample, ``sigma_1`` and the growth exponent ``h`` of the Lagrangian innovation.

        ``sigma_1``: std over rainy pixels of ``x_last - advect(x_prev, v, gap)`` divided by
        ``sqrt(gap)`` (p/255). ``h``: with the first valid input ``L`` steps before the last,
        ``log(sigma_L / sigma_1) / log(L)`` clipped to ``[0.5, 1]`` (0.5 = a random walk,
        1 = a persistent trend); 0.5 when ``noise_growth`` is off or with too few frames.
        """
        b = x.shape[0]
        sigma = np.zeros(b)
        growth = np.full(b, 0.5)
        for i in range(b):
            near = self._rainy_error(x, input_mask, motion, i, 1)
            if near is None:
                continue
            sigma[i] = near[0] / np.sqrt(near[1])
            far = self._rainy_error(x, input_mask, motion, i, None)
            if self.noise_growth and far is not None and far[1] > near[1] and sigma[i] > 0:
                h = np.log(far[0] / sigma[i]) / np.log(far[1])
                growth[i] = float(np.clip(h, 0.5, 1.0))
        return sigma, growth

    def _rainy_error(self, x, input_mask, motion, i, lag) -> tuple[float, float] | None:
        """``(std over rainy pixels of last - advected earlier frame, gap)`` or None."""
        pair = self._pair(x, input_mask, motion, i, lag)
        if pair is None:
            return None
        last, moved, both, gap = pair
        rainy = both & ((last > self.p_rain) | (moved > self.p_rain))
        if int(rainy.sum()) < 2:
            return None
        return float((last - moved)[rainy].std()), gap


def predict_members(
    predictor: Callable[..., torch.Tensor],
    x: torch.Tensor,
    t_in: torch.Tensor,
    t_out: torch.Tensor,
    input_mask: torch.Tensor | None = None,
    n_members: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Members ``(B, N, T_out, 1, H, W)`` of any predictor.

    An ensemble predictor (``ensemble = True``) is asked for ``n_members`` members (None:
    its default); a deterministic one gives its forecast as a single member ``N = 1``.
    """
    if getattr(predictor, "ensemble", False):
        return predictor(x, t_in, t_out, input_mask=input_mask, n_members=n_members, seed=seed)
    return predictor(x, t_in, t_out, input_mask=input_mask)[:, None]


def ensemble_products(
    members: Iterable[torch.Tensor],
    thresholds_mmh: Sequence[float] = RAIN_THRESHOLDS_MMH,
    percentiles: Sequence[float] | None = None,
    probability: str = "debiased",
    calibration=None,
    lead_minutes: Sequence[float] | np.ndarray | None = None,
) -> dict[str, np.ndarray | int]:
    """Exceedance probabilities and the ensemble mean, streamed over members.

    Parameters
    ----------
    members : iterable of Tensor
        Members ``(B, T, 1, H, W)`` p/255, e.g. :meth:`EnsembleNowcaster.members` (consumed
        one at a time: only counts and a running sum are kept).
    thresholds_mmh : sequence of float
        Rain thresholds (mm/h).
    percentiles : sequence of float, optional
        Percentiles (0..100) of the members per pixel; these need every member, so the
        members are kept only when asked.
    probability : str
        Estimator of the exceedance probability from the member counts, a name of
        :data:`nowcast.probability.METHODS`: ``"debiased"`` (default, the finite-ensemble
        correction) or ``"fraction"`` (``k / N``).
    calibration : nowcast.calibration.ProbabilityCalibration, optional
        Calibrated probabilities instead (``probability`` ignored; ``probability_method``
        is then ``"calibrated"``); needs ``lead_minutes``.
    lead_minutes : array-like, optional
        Lead time (min) of each member frame, ``(T,)`` or ``(B, T)``, for ``calibration``.

    Returns
    -------
    dict
        ``probability`` ``(B, T, K, H, W)`` float32 (from the members >= each threshold),
        ``mean`` ``(B, T, H, W)`` float32 p/255, ``n_members``; with ``percentiles`` also
        ``percentile`` ``(B, T, P, H, W)`` float32 p/255.
    """
    estimate = get_probability_method(probability)
    if calibration is not None and lead_minutes is None:
        raise ValueError("calibrated probabilities need the members' lead_minutes")
    thr = torch.tensor([float(rainrate_to_normalized(t)) for t in thresholds_mmh])
    counts = total = None
    kept = []
    n = 0
    for m in members:
        m = m[:, :, 0].float()  # (B, T, H, W)
        hit = (m[:, :, None] >= thr.to(m.device).view(1, 1, -1, 1, 1)).to(torch.int32)
        counts = hit if counts is None else counts + hit
        total = m.clone() if total is None else total + m
        if percentiles is not None:
            kept.append(m)
        n += 1
    if n == 0:
        raise ValueError("no members given")
    k = counts.cpu().numpy()
    if calibration is not None:
        leads = np.broadcast_to(np.asarray(lead_minutes, np.float64), k.shape[:2])
        prob = np.stack(
            [
                calibration.probability(k[:, :, j], n, t, leads)
                for j, t in enumerate(thresholds_mmh)
            ],
            axis=2,
        )
        probability = "calibrated"
    else:
        prob = estimate(k, n)
    out: dict[str, np.ndarray | int] = {
        "probability": prob.astype(np.float32),
        "probability_method": probability,
        "mean": (total / n).cpu().numpy(),
        "n_members": n,
    }
    if percentiles is not None:
        q = torch.tensor([float(p) / 100.0 for p in percentiles])
        if bool(((q < 0) | (q > 1)).any()):
            raise ValueError(f"percentiles must lie in 0..100; got {list(percentiles)}")
        stacked = torch.stack(kept, dim=0)  # (N, B, T, H, W)
        out["percentile"] = torch.quantile(stacked, q.to(stacked), dim=0).permute(1, 2, 0, 3, 4)
        out["percentile"] = out["percentile"].cpu().numpy()
    return out


def products_dataset(
    products: dict,
    lead_times: Sequence[float],
    thresholds_mmh: Sequence[float] = RAIN_THRESHOLDS_MMH,
    percentiles: Sequence[float] | None = None,
    members: np.ndarray | None = None,
    sample: int = 0,
) -> xr.Dataset:
    """CF-style dataset of one sample's ensemble products.

    Parameters
    ----------
    products : dict
        From :func:`ensemble_products`.
    lead_times : sequence of float
        ``(T,)`` minutes.
    thresholds_mmh, percentiles
        As given to :func:`ensemble_products`.
    members : numpy.ndarray, optional
        ``(N, T, H, W)`` p/255 members to include as ``reflectivity`` (dBZ) with a
        ``realization`` dimension.
    sample : int
        Which batch sample.

    Returns
    -------
    xarray.Dataset
        ``probability_of_rainfall_rate_above_threshold`` (lead_time, threshold, y, x), units
        ``1``, its ``threshold`` coordinate with ``standard_name = rainfall_rate`` (mm h-1)
        and ``spp__relative_to_threshold = greater_than_or_equal_to``;
        ``reflectivity_mean`` (dBZ of the mean p/255); ``reflectivity_percentile``
        (lead_time, percentile, y, x) and ``reflectivity`` (realization, lead_time, y, x)
        when given.
    """
    from pipeline.units import normalized_to_dbz

    prob = products["probability"][sample]
    leads = np.asarray(lead_times, dtype=np.float64)
    if prob.shape[0] != len(leads):
        raise ValueError(f"{prob.shape[0]} lead times in the products; got {len(leads)}")
    dbz = {"standard_name": "equivalent_reflectivity_factor", "units": "dBZ"}
    data = {
        "probability_of_rainfall_rate_above_threshold": (
            ("lead_time", "threshold", "y", "x"),
            prob.astype(np.float32),
            {"long_name": "probability of rainfall rate at or above threshold", "units": "1"},
        ),
        "reflectivity_mean": (
            ("lead_time", "y", "x"),
            normalized_to_dbz(products["mean"][sample]).astype(np.float32),
            {
                **dbz,
                "long_name": "reflectivity of the ensemble mean",
                "cell_methods": "realization: mean",
            },
        ),
    }
    coords = {
        "lead_time": ("lead_time", leads, {"standard_name": "forecast_period", "units": "minutes"}),
        "threshold": (
            "threshold",
            np.asarray(thresholds_mmh, dtype=np.float64),
            {
                "standard_name": "rainfall_rate",
                "units": "mm h-1",
                "spp__relative_to_threshold": "greater_than_or_equal_to",
            },
        ),
    }
    if "percentile" in products:
        data["reflectivity_percentile"] = (
            ("lead_time", "percentile", "y", "x"),
            normalized_to_dbz(products["percentile"][sample]).astype(np.float32),
            {**dbz, "long_name": "percentile of the members' reflectivity"},
        )
        coords["percentile"] = ("percentile", np.asarray(percentiles, np.float64), {"units": "%"})
    if members is not None:
        data["reflectivity"] = (
            ("realization", "lead_time", "y", "x"),
            normalized_to_dbz(np.asarray(members)).astype(np.float32),
            {**dbz, "long_name": "reflectivity of each ensemble member"},
        )
        coords["realization"] = (
            "realization",
            np.arange(np.asarray(members).shape[0], dtype=np.int32),
            {"standard_name": "realization", "units": "1"},
        )
    return xr.Dataset(data, coords=coords, attrs={"n_members": int(products["n_members"])})


def plot_probability_maps(
    ds: xr.Dataset, out_png, lead_times: Sequence[float] | None = None
) -> Path:
    """Exceedance-probability maps: one row per lead time, one column per threshold.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`products_dataset`.
    out_png : path
        Output PNG.
    lead_times : sequence of float, optional
        Lead times (min) to draw; default the first, middle and last.

    Returns
    -------
    pathlib.Path
        The PNG. Probabilities 0..1 on a sequential colour scale (0 white).
    """
    from matplotlib.figure import Figure

    prob = ds["probability_of_rainfall_rate_above_threshold"]
    leads = ds["lead_time"].values
    if lead_times is None:
        lead_times = sorted({float(leads[0]), float(leads[len(leads) // 2]), float(leads[-1])})
    missing = [t for t in lead_times if not np.isclose(leads, t).any()]
    if missing:
        raise ValueError(f"lead times {missing} not in the products (have {leads.tolist()})")
    thresholds = ds["threshold"].values
    fig = Figure(figsize=(2.6 * len(thresholds) + 0.8, 2.5 * len(lead_times)))
    axes = fig.subplots(len(lead_times), len(thresholds), squeeze=False)
    image = None
    for i, lead in enumerate(lead_times):
        for j, thr in enumerate(thresholds):
            ax = axes[i, j]
            field = prob.sel(lead_time=lead, method="nearest").sel(threshold=thr).values
            image = ax.imshow(field, vmin=0.0, vmax=1.0, cmap="magma_r", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"P(>= {thr:g} mm/h), +{lead:g} min", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8, label="probability")
    fig.suptitle(f"Exceedance probabilities, {int(ds.attrs.get('n_members', 0))} members")
    out = Path(out_png)
    fig.savefig(out, dpi=80)
    return out
