"""Interpolation methods: frames at times between two observed frames.

Every method is a callable built by :func:`get_interpolator` with one contract::

    method(before, after, fractions, *, span_steps=1.0, motion=None, history=None,
           history_mask=None, cadence_minutes=6.0) -> (K, H, W) float32

``before``, ``after``
    ``(H, W)`` float, the two observed frames on the normalised pixel scale p/255 (0 = no
    echo; NaN is read as 0), ``span_steps`` cadence steps apart.
``fractions``
    ``(K,)`` positions of the wanted frames between them, each in ``(0, 1)`` (0 = ``before``).
``motion``
    ``(2, H, W)`` pixels per cadence step (channel 0 along x/columns, + right; channel 1
    along y/rows, + down; :mod:`pipeline.motion`), or None: the methods that need it estimate
    it from ``history`` (when given), ``before`` and ``after`` with the Lucas-Kanade method.

Methods (:data:`INTERPOLATOR_NAMES`):

``linear``
    Cross-fade: ``(1 - s) before + s after``. A moving cell fades out in one place and in
    at the other: two half-bright copies in the middle of the gap.
``advection``
    Motion-compensated (advection correction, as pysteps' ``advection_correction``):
    ``before`` advected forward along the motion by ``s`` of the span and ``after`` advected
    backward by ``1 - s``, blended by time, ``(1 - s) fwd + s bwd``. With zero motion it is
    ``linear``; for a block moving at the motion's speed by whole pixels it is exact.
``model``
    A continuous-time network of the model registry (a trained run, or any
    :class:`nowcast.forecast.Predictor`) queried at the missing times from the frames up to
    ``before`` (``history``); its frames replace the forward advection of ``before`` and are
    blended by time with ``after`` advected backward, so the frame after the gap is used as
    in ``advection``. It needs a run: ``get_interpolator("model")`` without one is refused.

The advection is the semi-Lagrangian scheme of :mod:`nowcast.advection` (trajectories along
the motion, 0 outside the frame), sampled bicubically (clipped at 0) so that a warp by a
fraction of a pixel does not blur the field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nowcast.advection import sample, trajectory

__all__ = [
    "INTERPOLATOR_NAMES",
    "AdvectionInterpolator",
    "LinearInterpolator",
    "ModelInterpolator",
    "estimate_motion",
    "get_interpolator",
]


def _frame(a, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be an (H, W) frame, got shape {arr.shape}")
    return np.where(np.isfinite(arr), arr, np.float32(0.0))


def _fractions(fractions) -> np.ndarray:
    s = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if s.size == 0 or not np.all((s > 0) & (s < 1)):
        raise ValueError(f"fractions must be in (0, 1), got {s.tolist()}")
    return s


def estimate_motion(
    frames: np.ndarray,
    times_minutes: np.ndarray,
    cadence_minutes: float,
    masks: np.ndarray | None = None,
    method: str = "lk",
) -> np.ndarray:
    """Motion of a few frames, ``(2, H, W)`` float32 pixels per cadence step.

    Parameters
    ----------
    frames : numpy.ndarray, shape (T, H, W)
        p/255 frames, oldest first (NaN invalid).
    times_minutes : numpy.ndarray, shape (T,)
        Their times in minutes, strictly increasing (gaps allowed).
    cadence_minutes : float
        Time unit of the result.
    masks : numpy.ndarray, shape (T, H, W), optional
        True = valid pixel.
    method : str
        A :mod:`pipeline.motion` name (zero motion where it cannot estimate one).
    """
    from pipeline.motion import get_motion, quiet_pysteps

    with quiet_pysteps():
        est = get_motion(method)(frames, masks, np.asarray(times_minutes, float), cadence_minutes)
    return np.asarray(est.field, dtype=np.float32)


def _warp(frame: np.ndarray, motion: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``frame (H, W)`` advected by ``motion (2, H, W)`` to each of ``steps (K,)``: (K, H, W).

    Bicubic, clipped at 0: a bilinear warp by a fraction of a pixel averages neighbours and
    blunts the peaks of a speckled field (the FMI event of docs/interpolation.md).
    """
    f = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32))[None, None]
    v = torch.from_numpy(np.ascontiguousarray(motion, dtype=np.float32))[None]
    order = np.argsort(steps, kind="stable")
    with torch.no_grad():
        disp = trajectory(v, torch.tensor(steps[order], dtype=torch.float32))
        out = sample(f, disp, mode="bicubic")[0, :, 0].clamp(min=0.0).numpy()
    res = np.empty_like(out)
    res[order] = out
    return res


@dataclass
class LinearInterpolator:
    """Cross-fade between the two frames (see the module docstring)."""

    name: str = "linear"
    needs_motion: bool = False

    def __call__(self, before, after, fractions, **_context) -> np.ndarray:
        """``(K, H, W)`` float32: ``(1 - s) before + s after`` for each fraction ``s``."""
        b, a = _frame(before, "before"), _frame(after, "after")
        s = _fractions(fractions).astype(np.float32)[:, None, None]
        return ((1 - s) * b[None] + s * a[None]).astype(np.float32)


@dataclass
class AdvectionInterpolator:
    """Both frames advected to the wanted time along the motion, blended by time.

    Parameters
    ----------
    motion_method : str
        :mod:`pipeline.motion` method used when no motion is given.
    """

    motion_method: str = "lk"
    name: str = "advection"
    needs_motion: bool = True

    def motion_for(self, before, after, span_steps, history, history_mask, cadence_minutes):
        """The motion between the frames, ``(2, H, W)`` pixels per cadence step."""
        frames = [_frame(before, "before"), _frame(after, "after")]
        times = [0.0, float(span_steps) * cadence_minutes]
        masks = None
        if history is not None and len(history) > 1:  # the frames before ``before``, too
            hist = np.asarray(history, np.float32)[:-1]
            n = len(hist)
            frames = list(hist) + frames
            times = [(k - n) * cadence_minutes for k in range(n)] + times
            if history_mask is not None:
                hm = np.asarray(history_mask, bool)[:-1]
                masks = np.concatenate([hm, np.ones((2,) + frames[-1].shape, bool)])
        return estimate_motion(
            np.stack(frames), np.asarray(times), cadence_minutes, masks, self.motion_method
        )

    def backward(self, after, motion, span_steps, s) -> np.ndarray:
        """``after`` advected back by ``(1 - s) * span_steps`` steps: ``(K, H, W)``."""
        return _warp(_frame(after, "after"), -np.asarray(motion), (1 - s) * float(span_steps))

    def __call__(
        self,
        before,
        after,
        fractions,
        *,
        span_steps: float = 1.0,
        motion=None,
        history=None,
        history_mask=None,
        cadence_minutes: float = 6.0,
        **_context,
    ) -> np.ndarray:
        """``(K, H, W)`` float32 motion-compensated frames (see the module docstring)."""
        s = _fractions(fractions)
        if motion is None:
            motion = self.motion_for(
                before, after, span_steps, history, history_mask, cadence_minutes
            )
        fwd = _warp(_frame(before, "before"), np.asarray(motion), s * float(span_steps))
        bwd = self.backward(after, motion, span_steps, s)
        w = s.astype(np.float32)[:, None, None]
        return ((1 - w) * fwd + w * bwd).astype(np.float32)


@dataclass
class ModelInterpolator:
    """A continuous-time predictor queried at the missing times, blended with ``after``.

    Parameters
    ----------
    predictor : nowcast.forecast.Predictor
        The network (``run_predictor(run)``) or any predictor of the same contract.
    motion_method : str
        Motion for the backward advection of ``after``.
    """

    predictor: object
    motion_method: str = "lk"
    name: str = "model"
    needs_motion: bool = True
    _adv: AdvectionInterpolator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._adv = AdvectionInterpolator(self.motion_method)

    def query(self, history, history_mask, leads_minutes) -> np.ndarray:
        """The predictor's frames ``(K, H, W)`` at *leads_minutes* after the last history frame."""
        p = self.predictor
        t = int(p.in_frames)
        cad = float(p.cadence_minutes)
        hist = np.where(np.isfinite(history), history, 0).astype(np.float32)[-t:]
        size = getattr(p, "image_size", None)
        if size is not None and tuple(hist.shape[-2:]) != (int(size), int(size)):
            raise ValueError(
                f"interpolation 'model': the run takes {size} x {size} frames, the store has "
                f"{hist.shape[-2]} x {hist.shape[-1]}; resample the store to {size} or use "
                "another method"
            )
        mask = (
            np.ones(hist.shape, np.float32)
            if history_mask is None
            else np.asarray(history_mask, np.float32)[-t:]
        )
        if len(hist) < t:  # pad the oldest frames as missing
            pad = t - len(hist)
            hist = np.concatenate([np.zeros((pad,) + hist.shape[1:], np.float32), hist])
            mask = np.concatenate([np.zeros((pad,) + mask.shape[1:], np.float32), mask])
        t_in = (np.arange(t, dtype=np.float32) - (t - 1)) * cad
        leads = np.asarray(leads_minutes, np.float32)
        if not p.continuous_time:
            steps = np.arange(1, int(np.ceil(leads.max() / cad - 1e-6)) + 1) * cad
            call = steps.astype(np.float32)
        else:
            call = leads
        with torch.no_grad():
            y = p.fn(
                torch.from_numpy(hist[None, :, None]),
                torch.from_numpy(t_in[None]),
                torch.from_numpy(call[None]),
                input_mask=torch.from_numpy(mask[None, :, None]),
            )
        y = y.detach().cpu().numpy()[0, :, 0]
        if p.continuous_time:
            return y.astype(np.float32)
        # a regular-step predictor: linear in time between its steps (0 = the last frame)
        grid = np.concatenate([[0.0], call])
        frames = np.concatenate([hist[-1:], y])
        out = []
        for lead in leads:
            k = min(int(np.searchsorted(grid, lead)) - 1, len(grid) - 2)
            w = (lead - grid[k]) / (grid[k + 1] - grid[k])
            out.append((1 - w) * frames[k] + w * frames[k + 1])
        return np.stack(out).astype(np.float32)

    def __call__(
        self,
        before,
        after,
        fractions,
        *,
        span_steps: float = 1.0,
        motion=None,
        history=None,
        history_mask=None,
        cadence_minutes: float = 6.0,
        **_context,
    ) -> np.ndarray:
        """``(K, H, W)`` float32: ``(1 - s) model(t_s) + s after advected back``."""
        s = _fractions(fractions)
        hist = _frame(before, "before")[None] if history is None else np.asarray(history)
        if motion is None:
            motion = self._adv.motion_for(
                before, after, span_steps, history, history_mask, cadence_minutes
            )
        fwd = self.query(hist, history_mask, s * float(span_steps) * cadence_minutes)
        bwd = self._adv.backward(after, motion, span_steps, s)
        w = s.astype(np.float32)[:, None, None]
        return ((1 - w) * fwd + w * bwd).astype(np.float32)


def _model(run: str | Path | None = None, predictor: object | None = None, **kwargs):
    if predictor is None:
        if run is None:
            raise ValueError(
                "interpolation method 'model' needs a trained run (--run RUN_DIR); "
                "use 'linear' or 'advection' without one"
            )
        from nowcast.forecast import run_predictor

        if not Path(run).is_dir():
            raise ValueError(f"run directory {run} does not exist (interpolation 'model')")
        predictor = run_predictor(run)
    return ModelInterpolator(predictor, **kwargs)


_METHODS: dict[str, Callable[..., Callable[..., np.ndarray]]] = {
    "linear": lambda run=None, predictor=None, **kw: LinearInterpolator(**kw),
    "advection": lambda run=None, predictor=None, **kw: AdvectionInterpolator(**kw),
    "model": _model,
}
INTERPOLATOR_NAMES: tuple[str, ...] = tuple(_METHODS)


def get_interpolator(name: str, **kwargs) -> Callable[..., np.ndarray]:
    """Build an interpolation method by name.

    Parameters
    ----------
    name : str
        One of :data:`INTERPOLATOR_NAMES` (case-insensitive).
    **kwargs
        ``run`` (a trained run directory) or ``predictor`` for ``model``; ``motion_method``
        for ``advection`` and ``model``.

    Returns
    -------
    callable
        ``method(before, after, fractions, **context) -> (K, H, W)`` (module docstring).

    Raises
    ------
    ValueError
        Unknown name (``unknown interpolator 'foo'; valid names: ...``), or ``model``
        without a run.
    """
    key = str(name).lower()
    if key not in _METHODS:
        raise ValueError(
            f"unknown interpolator {name!r}; valid names: {', '.join(INTERPOLATOR_NAMES)}"
        )
    return _METHODS[key](**kwargs)
