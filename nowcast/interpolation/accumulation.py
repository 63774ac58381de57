"""Rain accumulations from rain-rate frames, plain or advection-corrected.

:func:`accumulate` integrates rain rates ``R(t)`` (mm/h) over time with the trapezoidal
rule on sub-steps: ``A = dt * (sum_i R(t_i) - (R(t_0) + R(t_M)) / 2)`` in mm, ``t_i`` the
frame times and, between two frames ``k`` and ``k + 1``, ``n_k = ceil(gap / substep)``
equal sub-steps. The rate at a sub-step is

``method="advection"`` (advection correction)
    frame ``k`` advected forward along the motion by the sub-step's share ``s`` of the
    interval and frame ``k + 1`` advected backward by ``1 - s``, blended by time (as
    :class:`~nowcast.interpolation.methods.AdvectionInterpolator`, but sampled bilinearly:
    amounts are sums, bilinear weights are positive and keep the total, and the frames of
    many intervals can be warped at once), so a moving cell paints a continuous swath;
``method="sum"``
    no sub-steps: the frames alone, each standing for its share of time. A cell moving
    farther than its size between frames leaves the well-known stripes.

With one motion field for all intervals (the usual case: a forecast's motion, or one
estimate for the hour) the warps are linear in the field, so the frames of every interval
of the same length are summed first and each sub-step is two warps of the sums: an hour of
6-min frames at 1-min sub-steps is 10 warps whatever the frame count (benchmarks/).
With a motion field per interval each interval is warped on its own. The trajectories
(backward displacements along the motion) are integrated on a grid of about
:data:`TRAJECTORY_PIXELS` points per side and resampled to the frames' grid: motion fields
are smooth, a uniform motion is kept exactly, and the hour's accumulation at 480 x 480 then
costs about half of what a full-resolution integration does.

Pixels where any frame is NaN (outside the radar's coverage) are NaN in the result.
"""

from __future__ import annotations

import numpy as np
import torch

from nowcast.advection import resize_motion, sample, trajectory

__all__ = ["ACCUMULATION_METHODS", "accumulate"]

ACCUMULATION_METHODS: tuple[str, ...] = ("advection", "sum")


TRAJECTORY_PIXELS = 120
"""Trajectories are integrated on a grid of about this many points per side (module docstring)."""


def _displacements(motion: torch.Tensor, steps: np.ndarray) -> torch.Tensor:
    """Backward displacements ``(1, S, 2, H, W)`` of ``motion (1, 2, H, W)`` after *steps*.

    Integrated by :func:`nowcast.advection.trajectory` on a grid coarser by
    ``ceil(max(H, W) / TRAJECTORY_PIXELS)`` and bilinearly resampled back (motion fields are
    smooth; a uniform motion stays exact).
    """
    h, w = motion.shape[-2:]
    f = max(1, int(np.ceil(max(h, w) / TRAJECTORY_PIXELS)))
    st = torch.tensor(np.ascontiguousarray(steps), dtype=torch.float32)
    if f == 1:
        return trajectory(motion, st)
    small = resize_motion(motion, (max(1, h // f), max(1, w // f)))
    return resize_motion(trajectory(small, st), (h, w))


def _warp_sum(fields: np.ndarray, disp: torch.Tensor) -> np.ndarray:
    """``fields (H, W)`` sampled at each displacement ``(1, S, 2, H, W)``: ``(S, H, W)``."""
    f = torch.from_numpy(np.ascontiguousarray(fields, dtype=np.float32))[None, None]
    return sample(f, disp)[0, :, 0].numpy()


def accumulate(
    rates: np.ndarray,
    times_minutes: np.ndarray,
    motion: np.ndarray | None = None,
    *,
    motion_minutes: float = 6.0,
    substep_minutes: float = 1.0,
    method: str = "advection",
) -> np.ndarray:
    """Accumulated rain between the first and the last frame, in mm.

    Parameters
    ----------
    rates : numpy.ndarray, shape (N + 1, H, W)
        Rain rates in mm/h, oldest first; NaN = not observed there.
    times_minutes : numpy.ndarray, shape (N + 1,)
        Frame times in minutes, strictly increasing (any spacing).
    motion : numpy.ndarray, shape (2, H, W) or (N, 2, H, W), optional
        Pixels per ``motion_minutes`` (channel 0 along x/columns, + right; 1 along y/rows,
        + down): one field for all intervals or one per interval. Needed by
        ``method="advection"``.
    motion_minutes : float
        Time unit of *motion* (a store's or forecast's cadence).
    substep_minutes : float
        Longest sub-step of the advection correction (default 1 min).
    method : {"advection", "sum"}
        See the module docstring.

    Returns
    -------
    numpy.ndarray, shape (H, W)
        float32 mm over ``times_minutes[0] .. times_minutes[-1]``.
    """
    r = np.asarray(rates, dtype=np.float32)
    t = np.asarray(times_minutes, dtype=np.float64).reshape(-1)
    if r.ndim != 3 or r.shape[0] != t.shape[0] or r.shape[0] < 2:
        raise ValueError(
            f"rates must be (N + 1, H, W) with N >= 1 and one time per frame; got rates "
            f"{r.shape} and {t.shape[0]} times"
        )
    if not np.isfinite(t).all() or (np.diff(t) <= 0).any():
        raise ValueError(f"times_minutes must be strictly increasing, got {t.tolist()}")
    if method not in ACCUMULATION_METHODS:
        raise ValueError(
            f"unknown accumulation method {method!r}; valid names: {', '.join(ACCUMULATION_METHODS)}"
        )
    invalid = ~np.isfinite(r).all(axis=0)
    r = np.where(np.isfinite(r), r, np.float32(0.0))
    gaps = np.diff(t)
    hours = gaps / 60.0
    # trapezoid over the frames: each interval gives half its length to each end
    total = np.zeros(r.shape[1:], np.float64)
    if method == "sum":
        for k, h in enumerate(hours):
            total += 0.5 * h * (r[k].astype(np.float64) + r[k + 1])
        return np.where(invalid, np.nan, total).astype(np.float32)
    if substep_minutes <= 0:
        raise ValueError(f"substep_minutes must be positive, got {substep_minutes}")
    if motion is None:
        raise ValueError("method 'advection' needs a motion field (2, H, W)")
    v = np.asarray(motion, dtype=np.float32)
    shared = v.ndim == 3
    if v.shape[-3:] != (2,) + r.shape[1:] or (not shared and v.shape[0] != len(gaps)):
        raise ValueError(
            f"motion must be (2, H, W) or (N, 2, H, W) with N = {len(gaps)} intervals on the "
            f"frames' grid {r.shape[1:]}; got {v.shape}"
        )
    n_sub = np.maximum(1, np.ceil(gaps / float(substep_minutes) - 1e-9)).astype(int)
    for k, h in enumerate(hours):  # the frames themselves (sub-step s = 0 and 1)
        total += 0.5 * (h / n_sub[k]) * (r[k].astype(np.float64) + r[k + 1])
    # interior sub-steps: groups of intervals sharing a length (and, if shared, the motion)
    if shared:
        keys = {}
        for k in range(len(gaps)):
            keys.setdefault((round(float(gaps[k]), 9), int(n_sub[k])), []).append(k)
        groups = [(idx, v) for idx in keys.values()]
    else:
        groups = [([k], v[k]) for k in range(len(gaps))]
    with torch.no_grad():
        for idx, vk in groups:
            n, span = int(n_sub[idx[0]]), float(gaps[idx[0]]) / float(motion_minutes)
            if n < 2:
                continue
            s = np.arange(1, n) / n
            f0 = r[idx].sum(axis=0)
            f1 = r[[k + 1 for k in idx]].sum(axis=0)
            if not vk.any():  # at rest: the warps are the identity (exactly the cross-fade)
                fwd, bwd = f0[None], f1[None]
            else:
                vt = torch.from_numpy(np.ascontiguousarray(vk))[None]
                d_fwd = _displacements(vt, s * span)
                d_bwd = _displacements(-vt, (1 - s)[::-1] * span)
                fwd = _warp_sum(f0, d_fwd)
                bwd = _warp_sum(f1, d_bwd)[::-1]
            w = s.astype(np.float32)[:, None, None]
            dt_h = float(hours[idx[0]]) / n
            total += dt_h * ((1 - w) * fwd + w * bwd).sum(axis=0, dtype=np.float64)
    return np.where(invalid, np.nan, total).astype(np.float32)
