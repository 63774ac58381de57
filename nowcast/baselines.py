"""Classical nowcasting baselines with the same call contract as the neural models.

Every baseline is a :class:`nowcast.contract.Nowcaster`, a callable
``baseline(x, t_in, t_out, input_mask=None) -> y`` (docs/contracts.md, Predictor call
contract; validated by :func:`nowcast.contract.check_inputs`):

* ``x`` ``(B, T_in, 1, H, W)`` float tensor, input frames on the normalised pixel scale
  p/255 (0..1);
* ``t_in`` ``(B, T_in)`` and ``t_out`` ``(B, T_out)`` times in minutes relative to the last
  input frame (``t_in[:, -1] == 0``, ``t_out > 0``; irregular and fractional allowed);
* ``input_mask`` ``(B, T_in, 1, H, W)``, 1 = valid pixel; a frame with no valid pixel is a
  missing frame and is never used as data;
* ``y`` ``(B, T_out, 1, H, W)`` float32 in p/255, no NaN.

Baselines are looked up by name with :func:`get_baseline` (pysteps-style registry):

``persistence``
    The last observed input frame, repeated (HKO-7's "last frame" baseline).
``pysteps``
    Lucas-Kanade motion (:func:`pysteps.motion.get_method` ``"lk"``) estimated on the
    observed input frames, then semi-Lagrangian extrapolation of the last observed frame
    (:func:`pysteps.nowcasts.get_method` ``"extrapolation"``) to the requested lead times,
    in units of the input cadence (fractional allowed). Works directly on the p/255 scale,
    which is affine in dBZ, so it is the same as extrapolating dBZ (LK rescales each image
    to 0..255 internally); pixels advected in from outside the domain get 0 (no echo) rather
    than pysteps' default NaN (docs/facts.md section 7). A field with no echo gives zero motion.
``sprog``
    pysteps' S-PROG (cascade decomposition + AR(2) per level) in dBZ with a 0.1 mm/h rain
    threshold (HKO-7 Z-R), regular lead times only (integer multiples of the cadence). Inputs
    S-PROG cannot model (a missing frame among the last three, a frozen radar frame repeated,
    an echo of a few pixels, a uniform field, any failure of its cascade or AR(2) fit) fall back
    to semi-Lagrangian extrapolation of the last frame: the fallback is logged and the reason
    kept in :attr:`SprogBaseline.last_fallback` (the forecast's ``fallback`` attribute).
``steps``
    pysteps' STEPS ensemble (S-PROG's cascade and AR(2) plus the nonparametric noise cascade
    and "bps" motion perturbations), an *ensemble* baseline: see below. S-PROG is its
    deterministic limit. The same degenerate inputs as S-PROG fall back to extrapolation of
    the last frame, identical in every member (no spread), logged in
    :attr:`StepsBaseline.last_fallback`.

Ensemble predictors
-------------------
An ensemble predictor has ``ensemble = True`` and is called
``fn(x, t_in, t_out, input_mask=None, n_members=None, seed=None) -> y`` with ``y``
``(B, N, T_out, 1, H, W)`` float32 in p/255 (``N`` members; None = the predictor's own
``n_members`` and ``seed``). Members are independent draws; the same seed gives the same
members. ``fn.deterministic(x, t_in, t_out, input_mask=None)`` is the ensemble mean
``(B, T_out, 1, H, W)``, the forecast scored by the deterministic scores.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from nowcast.contract import check_inputs, last_observed_index, observed_frames
from pipeline.units import DBZ_MIN, dbz_to_normalized, normalized_to_dbz, rainrate_to_dbz

__all__ = [
    "BASELINE_NAMES",
    "PersistenceBaseline",
    "PystepsBaseline",
    "SprogBaseline",
    "StepsBaseline",
    "get_baseline",
]

_log = logging.getLogger(__name__)


@dataclass
class PersistenceBaseline:
    """Repeat the last observed input frame for every lead time ("last frame" baseline).

    If the last input frame is missing (``input_mask`` all 0), the latest observed one is used.
    Pixels of that frame with mask 0 are returned as they are in ``x`` (0 in the datasets).
    ``cadence_minutes`` is accepted for a uniform constructor and not used. The result is a
    broadcast view of that frame (stride 0 along ``T_out``, no copy): read it, or
    ``clone()`` it before writing in place (torch refuses in-place writes to such a view).
    """

    cadence_minutes: float = 6.0
    name: str = "persistence"
    continuous_time: bool = True

    def __call__(
        self,
        x: torch.Tensor,
        t_in: torch.Tensor,
        t_out: torch.Tensor,
        input_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Forecast ``(B, T_out, 1, H, W)`` in p/255; see the module docstring."""
        check_inputs(x, t_in, t_out, input_mask)
        last = last_observed_index(observed_frames(input_mask, x.shape[:2]))
        idx = torch.as_tensor(last, device=x.device)
        frames = x[torch.arange(x.shape[0], device=x.device), idx]  # (B, 1, H, W)
        # a broadcast view (no copy of T_out frames); writing into it in place raises
        return frames[:, None].to(torch.float32).expand(-1, t_out.shape[1], -1, -1, -1)


@dataclass
class PystepsBaseline:
    """Lucas-Kanade advection (pysteps) of the last observed input frame.

    Parameters
    ----------
    cadence_minutes : float
        The time unit of the motion field (pixels per ``cadence_minutes``); lead times are
        converted to ``t / cadence_minutes`` extrapolation steps, fractional allowed.
    max_motion_frames : int
        Motion is estimated from at most this many of the latest observed input frames.
    lk_kwargs : dict, optional
        Extra keyword arguments of :func:`pysteps.motion.lucaskanade.dense_lucaskanade`.
    motion_grid : int, optional
        Estimate the motion on a coarse grid of about this many points per side
        (:mod:`pipeline.motion`); None (default) = full resolution.
    """

    cadence_minutes: float = 6.0
    max_motion_frames: int = 4
    lk_kwargs: dict | None = None
    motion_grid: int | None = None
    name: str = "pysteps"
    continuous_time: bool = True

    def __call__(
        self,
        x: torch.Tensor,
        t_in: torch.Tensor,
        t_out: torch.Tensor,
        input_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Forecast ``(B, T_out, 1, H, W)`` in p/255; see the module docstring."""
        check_inputs(x, t_in, t_out, input_mask)
        observed = observed_frames(input_mask, x.shape[:2])
        last_observed_index(observed)  # validates every sample has a frame
        xs = x.detach().cpu().to(torch.float64).numpy()[:, :, 0]
        ms = (
            np.ones(xs.shape, dtype=bool)
            if input_mask is None
            else input_mask.detach().cpu().numpy()[:, :, 0] > 0.5
        )
        tin = t_in.detach().cpu().to(torch.float64).numpy()
        tout = t_out.detach().cpu().to(torch.float64).numpy()
        out = np.stack(
            [
                self._forecast_one(xs[b], ms[b], observed[b], tin[b], tout[b])
                for b in range(xs.shape[0])
            ]
        )
        return torch.from_numpy(out[:, :, None].astype(np.float32)).to(x.device)

    def motion(self, frames: np.ndarray, masks: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Motion field ``(2, H, W)`` in pixels per cadence step from observed frames.

        Parameters
        ----------
        frames : numpy.ndarray
            ``(T, H, W)`` observed frames in p/255, oldest first.
        masks : numpy.ndarray
            ``(T, H, W)`` bool, True = valid pixel.
        times : numpy.ndarray
            ``(T,)`` minutes. Each consecutive pair is tracked separately and its vectors
            divided by the pair's gap in cadence steps, so irregular inputs are handled.

        Notes
        -----
        This is :class:`pipeline.motion.LucasKanadeMotion` with ``grid=motion_grid``
        (default None: full resolution, the reference computation). A field that cannot be
        estimated (no echo, fewer than 2 frames, ...) is zero, with a warning in the log.
        """
        from pipeline.motion import get_motion

        method = get_motion("lk", grid=self.motion_grid, lk_kwargs=self.lk_kwargs, idw_grid=128)
        est = method(frames, masks, times, cadence_minutes=self.cadence_minutes)
        return est.field.astype(np.float64)

    def _forecast_one(self, frames, masks, observed, t_in, t_out) -> np.ndarray:
        from pysteps import nowcasts

        idx = np.flatnonzero(observed)[-self.max_motion_frames :]
        last = np.where(masks[idx[-1]], frames[idx[-1]], 0.0)
        steps = (t_out - t_in[idx[-1]]) / self.cadence_minutes
        if np.any(steps <= 0):
            raise ValueError(f"t_out must lie after the last observed input time; got {t_out}")
        uniq, inverse = np.unique(steps, return_inverse=True)
        if not np.any(last > 0):  # nothing to move: no motion estimate (nor its log line)
            return np.zeros((len(steps),) + last.shape)
        velocity = self.motion(frames[idx], masks[idx], t_in[idx])
        extrapolate = nowcasts.get_method("extrapolation")
        fc = extrapolate(last, velocity, [float(s) for s in uniq], extrap_kwargs={"outval": 0.0})
        fc = np.nan_to_num(np.asarray(fc), nan=0.0)
        return np.clip(fc[inverse], 0.0, 1.0)


@dataclass
class SprogBaseline:
    """pysteps S-PROG nowcast in dBZ, regular lead times only.

    dBZ is affine in dBR (HKO-7 Z-R), so the cascade and AR(2) model are the same as on dBR;
    pixels below 0.1 mm/h are "no rain" (threshold minus 5 dB inside S-PROG, pixel 0 out).

    Parameters
    ----------
    cadence_minutes : float
        Input cadence; every ``t_out`` must be a whole multiple of it. The AR(2) model needs
        the last three inputs observed one cadence apart; otherwise (a missing frame) the
        sample falls back to extrapolation like the other degenerate cases below.
    n_cascade_levels : int
        Number of cascade levels.

    Attributes
    ----------
    last_fallback : str or None
        After a call: why some samples were extrapolated instead of run through S-PROG
        (``"sprog fell back to extrapolation: <reason>"``), None when none were. A frozen
        field (the last three frames identical), fewer than :data:`_SPROG_MIN_RAIN_PIXELS`
        rain pixels, a field without variation, or an error inside S-PROG (singular AR(2)
        fit, non-finite cascade) all fall back to semi-Lagrangian extrapolation of the last
        frame with the same motion field and rain threshold.
    """

    cadence_minutes: float = 6.0
    n_cascade_levels: int = 6
    name: str = "sprog"
    continuous_time: bool = False
    last_fallback: str | None = field(default=None, compare=False)

    def __call__(
        self,
        x: torch.Tensor,
        t_in: torch.Tensor,
        t_out: torch.Tensor,
        input_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Forecast ``(B, T_out, 1, H, W)`` in p/255; see the module docstring."""
        from pysteps import nowcasts

        check_inputs(x, t_in, t_out, input_mask)
        observed = observed_frames(input_mask, x.shape[:2])
        xs = x.detach().cpu().to(torch.float64).numpy()[:, :, 0]
        tout = t_out.detach().cpu().to(torch.float64).numpy()
        tin = t_in.detach().cpu().to(torch.float64).numpy()
        mover = PystepsBaseline(cadence_minutes=self.cadence_minutes)
        outs = []
        fallbacks: list[str] = []
        last_observed_index(observed)  # validates every sample has a frame
        ms = (
            np.ones(xs.shape, dtype=bool)
            if input_mask is None
            else input_mask.detach().cpu().numpy()[:, :, 0] > 0.5
        )
        for b in range(xs.shape[0]):
            steps = tout[b] / self.cadence_minutes
            if not np.allclose(steps, np.round(steps)) or np.any(steps <= 0):
                raise ValueError(
                    f"sprog needs t_out on positive whole multiples of {self.cadence_minutes} "
                    f"min; got t_out={tout[b].tolist()} (use 'pysteps' for other lead times)"
                )
            thr = float(rainrate_to_dbz(_SPROG_RAIN_MMH))
            regular = np.allclose(np.diff(tin[b, -3:]), self.cadence_minutes)
            if not observed[b, -3:].all() or not regular or len(tin[b]) < 3:
                # a missing frame among the last three: no AR(2) fit; extrapolate instead
                last = xs[b, np.flatnonzero(observed[b])[-1]]
                if not np.any(normalized_to_dbz(last) >= thr):  # no rain: nothing to say
                    outs.append(np.zeros((len(steps),) + xs.shape[-2:]))
                    continue
                fallbacks.append(
                    f"sample {b}: the last 3 input frames are not all observed one cadence "
                    f"apart (observed {observed[b].astype(int).tolist()})"
                )
                fc = mover._forecast_one(xs[b], ms[b], observed[b], tin[b], tout[b])
                dry = normalized_to_dbz(fc) < thr
                outs.append(np.where(dry, 0.0, fc))
                continue
            dbz = normalized_to_dbz(xs[b, -3:])
            zero = thr - 5.0  # pysteps convention: "no rain" a little below the threshold
            rain_db = np.where(dbz >= thr, dbz, zero)
            if not np.any(dbz >= thr):
                outs.append(np.zeros((len(steps),) + xs.shape[-2:]))
                continue
            velocity = mover.motion(xs[b, -3:], np.ones(xs[b, -3:].shape, bool), tin[b, -3:])
            n_steps = int(np.round(steps.max()))
            reason = _sprog_unfit(rain_db, thr)
            fc = None
            if reason is None:
                try:
                    with contextlib.redirect_stdout(io.StringIO()):  # sprog prints a report
                        fc = nowcasts.get_method("sprog")(
                            rain_db,
                            velocity,
                            n_steps,
                            n_cascade_levels=self.n_cascade_levels,
                            precip_thr=thr,
                        )
                except (np.linalg.LinAlgError, ValueError, IndexError, FloatingPointError) as err:
                    reason = f"S-PROG failed ({type(err).__name__}: {err})"
            if fc is None:
                fallbacks.append(f"sample {b}: {reason}")
                fc = _extrapolate(rain_db[-1], velocity, n_steps, zero)
            fc = np.nan_to_num(np.asarray(fc), nan=zero)
            fc = np.where(fc >= thr, fc, DBZ_MIN)
            sel = np.round(steps).astype(int) - 1
            outs.append(np.clip(dbz_to_normalized(fc[sel]), 0.0, 1.0))
        self.last_fallback = None
        if fallbacks:
            self.last_fallback = "sprog fell back to extrapolation: " + "; ".join(fallbacks)
            _log.warning("%s", self.last_fallback)
        return torch.from_numpy(np.stack(outs)[:, :, None].astype(np.float32)).to(x.device)


def _sprog_unfit(rain_db: np.ndarray, thr: float) -> str | None:
    """Why S-PROG cannot model ``rain_db (3, H, W)`` (dBZ, dry = ``thr - 5``), or None."""
    if np.array_equal(rain_db[0], rain_db[1]) or np.array_equal(rain_db[1], rain_db[2]):
        return "frozen field (consecutive input frames are identical)"
    n_rain = int((rain_db[-1] >= thr).sum())
    if n_rain < _SPROG_MIN_RAIN_PIXELS:
        return f"{n_rain} rain pixel(s) in the last frame, fewer than {_SPROG_MIN_RAIN_PIXELS}"
    if any(float(np.ptp(f)) < 1e-6 for f in rain_db):
        return "uniform field (an input frame has no variation)"
    return None


def _extrapolate(frame: np.ndarray, velocity: np.ndarray, n_steps: int, outval: float):
    """``(n_steps, H, W)``: *frame* advected by *velocity* (pixels per step) 1..n_steps."""
    from pysteps import nowcasts

    extrapolate = nowcasts.get_method("extrapolation")
    return np.asarray(extrapolate(frame, velocity, n_steps, extrap_kwargs={"outval": outval}))


@dataclass
class StepsBaseline:
    """pysteps STEPS ensemble nowcast in dBZ, regular lead times only.

    Inputs are handled as in :class:`SprogBaseline` (dBZ, 0.1 mm/h rain threshold, the last
    three frames one cadence apart); each sample is one pysteps STEPS run with
    ``n_members`` members, seeded from ``(seed, sample index in the batch)``.

    Parameters
    ----------
    cadence_minutes : float
        Input cadence (min); every ``t_out`` must be a whole multiple of it.
    n_members : int
        Default number of members.
    seed : int
        Default seed.
    n_cascade_levels : int
        Cascade levels.
    km_per_pixel : float, optional
        Pixel size for the motion perturbations ("bps", whose parameters are in km and
        minutes); default the HKO-7 domain (512 km) divided by the frame width.

    Attributes
    ----------
    last_fallback : str or None
        After a call: why some samples were extrapolated (every member the same) instead of
        run through STEPS; None when none were. See :class:`SprogBaseline`.
    """

    cadence_minutes: float = 6.0
    n_members: int = 10
    seed: int = 0
    n_cascade_levels: int = 6
    km_per_pixel: float | None = None
    name: str = "steps"
    continuous_time: bool = False
    ensemble: bool = True
    last_fallback: str | None = field(default=None, compare=False)

    def deterministic(self, x, t_in, t_out, input_mask=None) -> torch.Tensor:
        """Ensemble mean ``(B, T_out, 1, H, W)`` p/255 of a call with the defaults."""
        return self(x, t_in, t_out, input_mask).mean(dim=1)

    def __call__(
        self,
        x: torch.Tensor,
        t_in: torch.Tensor,
        t_out: torch.Tensor,
        input_mask: torch.Tensor | None = None,
        n_members: int | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Members ``(B, N, T_out, 1, H, W)`` in p/255; see the module docstring."""
        from pysteps import nowcasts

        from pipeline.geo import EXTENT_KM

        n = int(self.n_members if n_members is None else n_members)
        seed = int(self.seed if seed is None else seed)
        if n < 1:
            raise ValueError(f"n_members must be >= 1; got {n}")
        check_inputs(x, t_in, t_out, input_mask)
        observed = observed_frames(input_mask, x.shape[:2])
        last_observed_index(observed)
        xs = x.detach().cpu().to(torch.float64).numpy()[:, :, 0]
        tout = t_out.detach().cpu().to(torch.float64).numpy()
        tin = t_in.detach().cpu().to(torch.float64).numpy()
        ms = (
            np.ones(xs.shape, dtype=bool)
            if input_mask is None
            else input_mask.detach().cpu().numpy()[:, :, 0] > 0.5
        )
        km = float(self.km_per_pixel or EXTENT_KM / xs.shape[-1])
        mover = PystepsBaseline(cadence_minutes=self.cadence_minutes)
        thr = float(rainrate_to_dbz(_SPROG_RAIN_MMH))
        zero = thr - 5.0
        outs, fallbacks = [], []
        for b in range(xs.shape[0]):
            steps = tout[b] / self.cadence_minutes
            if not np.allclose(steps, np.round(steps)) or np.any(steps <= 0):
                raise ValueError(
                    f"steps needs t_out on positive whole multiples of {self.cadence_minutes} "
                    f"min; got t_out={tout[b].tolist()} (use 'pysteps' for other lead times)"
                )
            sel = np.round(steps).astype(int) - 1
            n_steps = int(sel.max()) + 1
            regular = len(tin[b]) >= 3 and np.allclose(np.diff(tin[b, -3:]), self.cadence_minutes)
            last = xs[b, np.flatnonzero(observed[b])[-1]]
            if not np.any(normalized_to_dbz(last) >= thr):  # no rain: nothing to say
                outs.append(np.zeros((n, len(sel)) + xs.shape[-2:]))
                continue
            if not observed[b, -3:].all() or not regular:
                fallbacks.append(
                    f"sample {b}: the last 3 input frames are not all observed one cadence "
                    f"apart (observed {observed[b].astype(int).tolist()})"
                )
                fc = mover._forecast_one(xs[b], ms[b], observed[b], tin[b], tout[b])
                fc = np.where(normalized_to_dbz(fc) < thr, 0.0, fc)
                outs.append(np.broadcast_to(fc, (n,) + fc.shape))
                continue
            dbz = normalized_to_dbz(xs[b, -3:])
            rain_db = np.where(dbz >= thr, dbz, zero)
            velocity = mover.motion(xs[b, -3:], np.ones(xs[b, -3:].shape, bool), tin[b, -3:])
            reason = _sprog_unfit(rain_db, thr)
            fc = None
            if reason is None:
                try:
                    with contextlib.redirect_stdout(io.StringIO()):  # steps prints a report
                        fc = nowcasts.get_method("steps")(
                            rain_db,
                            velocity,
                            n_steps,
                            n_ens_members=n,
                            n_cascade_levels=self.n_cascade_levels,
                            precip_thr=thr,
                            kmperpixel=km,
                            timestep=self.cadence_minutes,
                            mask_method="incremental",
                            probmatching_method="cdf",
                            seed=int(np.random.SeedSequence([seed, b]).generate_state(1)[0]),
                        )
                    fc = np.asarray(fc)[:, sel]
                except (np.linalg.LinAlgError, ValueError, IndexError, FloatingPointError) as err:
                    reason = f"STEPS failed ({type(err).__name__}: {err})"
                    fc = None
            if fc is None:
                fallbacks.append(f"sample {b}: {reason}")
                fc = _extrapolate(rain_db[-1], velocity, n_steps, zero)[sel]
                fc = np.broadcast_to(fc, (n,) + fc.shape)
            fc = np.nan_to_num(np.asarray(fc, dtype=np.float64), nan=zero)
            fc = np.where(fc >= thr, fc, DBZ_MIN)
            outs.append(np.clip(dbz_to_normalized(fc), 0.0, 1.0))
        self.last_fallback = None
        if fallbacks:
            self.last_fallback = "steps fell back to extrapolation: " + "; ".join(fallbacks)
            _log.warning("%s", self.last_fallback)
        out = np.stack(outs)[:, :, :, None].astype(np.float32)
        return torch.from_numpy(out).to(x.device)


_SPROG_MIN_RAIN_PIXELS = 2
"""Fewer rain pixels than this in the last frame: S-PROG falls back to extrapolation."""

_SPROG_RAIN_MMH = 0.1
"""Rain rate (mm/h) below which S-PROG treats a pixel as dry."""

_BASELINES: dict[str, Callable[..., Callable]] = {
    "persistence": PersistenceBaseline,
    "pysteps": PystepsBaseline,
    "sprog": SprogBaseline,
    "steps": StepsBaseline,
}
BASELINE_NAMES: tuple[str, ...] = tuple(_BASELINES)


def get_baseline(name: str, **kwargs) -> Callable:
    """Build a baseline by name.

    Parameters
    ----------
    name : str
        One of :data:`BASELINE_NAMES` (case-insensitive).
    **kwargs
        Passed to the baseline's constructor (e.g. ``cadence_minutes=6``).

    Returns
    -------
    callable
        ``baseline(x, t_in, t_out, input_mask=None) -> y``, see the module docstring.
    """
    key = str(name).lower()
    if key not in _BASELINES:
        raise ValueError(f"unknown baseline {name!r}; valid names: {', '.join(BASELINE_NAMES)}")
    return _BASELINES[key](**kwargs)
