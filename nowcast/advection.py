"""Differentiable semi-Lagrangian advection in torch (backward scheme).

The scheme is pysteps' ``extrapolation.semilagrangian`` (Germann and Zawadzki 2002) written
with :func:`torch.nn.functional.grid_sample`, so that it runs on batches, on any device, at any
resolution and with gradients:

- a motion field ``(B, 2, H, W)`` gives pixels per step; channel 0 moves along x (columns,
  positive to the right), channel 1 along y (rows, positive downwards), as pysteps' ``(u, v)``
  and the TrajGRU warp (:func:`nowcast.modules.trajgru.warp`);
- the backward displacement ``D(s)`` of every target pixel after ``s`` steps is integrated
  along the motion with the midpoint rule, one inner iteration per interval (pysteps'
  default ``n_iter=1``), in intervals of at most one step (a requested ``s`` far from the
  previous one is reached by several sub-steps; pysteps takes one interval per requested
  step, so the two agree exactly when the steps are 1, 2, 3, ...), the motion being read
  bilinearly at the displaced points (values beyond the edge are the edge values,
  pysteps' ``mode="nearest"``);
- a field advected by ``s`` steps is the field sampled at ``x + D(s)``, bilinearly, with the
  sampling convention of the TrajGRU warp (``align_corners=True``: pixel ``i`` sits at
  normalised coordinate ``2 i / (n - 1) - 1``, so an integer displacement shifts by whole
  pixels exactly). Points outside the frame read 0 (no echo); their validity is 0.

Lead times may be any positive real number of steps: the intervals between requested steps
are integrated in turn, so fractional steps (continuous-time models) are exact for a uniform
motion and follow the trajectory otherwise.

Public surface: :func:`trajectory` (displacements), :func:`sample` (warp fields by
displacements), :func:`advect` (both, with an optional validity mask) and
:func:`resize_motion` (a motion field on another grid). Tests compare with exact answers
(translations by integer and fractional pixels, a solid-body rotation) and with pysteps.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["advect", "resize_motion", "sample", "trajectory"]


def _grid(displacement: torch.Tensor) -> torch.Tensor:
    """Normalised sampling grid ``(N, H, W, 2)`` for displacements ``(N, 2, H, W)``."""
    n, _, h, w = displacement.shape
    ys = torch.arange(h, dtype=displacement.dtype, device=displacement.device)
    xs = torch.arange(w, dtype=displacement.dtype, device=displacement.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    px = gx + displacement[:, 0]
    py = gy + displacement[:, 1]
    return torch.stack((2.0 * px / max(w - 1, 1) - 1.0, 2.0 * py / max(h - 1, 1) - 1.0), dim=-1)


def _read(
    field: torch.Tensor, displacement: torch.Tensor, padding: str, mode: str = "bilinear"
) -> torch.Tensor:
    return F.grid_sample(
        field, _grid(displacement), mode=mode, padding_mode=padding, align_corners=True
    )


def _as_steps(steps, batch: int, ref: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(steps, dtype=ref.dtype, device=ref.device)
    if s.ndim == 1:
        s = s.unsqueeze(0).expand(batch, -1)
    if s.ndim != 2 or s.shape[0] != batch or s.shape[1] < 1:
        raise ValueError(
            f"steps must have shape (S,) or (B, S) = ({batch}, S) with S >= 1, got {tuple(s.shape)}"
        )
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError(f"steps must be finite and >= 0, got {s.tolist()}")
    if s.shape[1] > 1 and bool((s.diff(dim=1) < 0).any()):
        raise ValueError(f"steps must not decrease, got {s.tolist()}")
    return s


def _check_motion(motion: torch.Tensor) -> None:
    if not isinstance(motion, torch.Tensor) or motion.ndim != 4 or motion.shape[1] != 2:
        got = tuple(motion.shape) if isinstance(motion, torch.Tensor) else type(motion).__name__
        raise ValueError(f"motion must have shape (B, 2, H, W), got {got}")
    if not bool(torch.isfinite(motion).all()):
        raise ValueError("motion must be finite (no NaN or inf)")


def trajectory(motion: torch.Tensor, steps) -> torch.Tensor:
    """Backward displacements of every pixel after each number of steps.

    Parameters
    ----------
    motion : Tensor, shape (B, 2, H, W)
        Pixels per step (x, y), constant in time.
    steps : sequence of float or Tensor, shape (S,) or (B, S)
        Numbers of steps, non-decreasing, >= 0 (fractions allowed).

    Returns
    -------
    Tensor, shape (B, S, 2, H, W)
        ``D`` such that the field advected by ``steps[s]`` at pixel ``p`` is the original
        field at ``p + D[:, s](p)`` (pixels; for a uniform motion ``v``, ``D = -s v``).
    """
    _check_motion(motion)
    b = motion.shape[0]
    s = _as_steps(steps, b, motion)
    disp = torch.zeros_like(motion)
    prev = torch.zeros(b, dtype=motion.dtype, device=motion.device)
    out = []
    for j in range(s.shape[1]):
        gap = s[:, j] - prev
        prev = s[:, j]
        # sub-intervals of at most one step, each by the midpoint rule with one inner
        # iteration (pysteps' n_iter=1); consecutive whole steps are pysteps' own intervals
        n_sub = max(1, int(torch.ceil(gap.max() - 1e-9).item()))
        td = (gap / n_sub).view(b, 1, 1, 1)
        for _ in range(n_sub):
            inc = _read(motion, disp, "border") * td
            inc = _read(motion, disp - inc / 2.0, "border") * td
            disp = disp - inc
        out.append(disp)
    return torch.stack(out, dim=1)


def sample(field: torch.Tensor, displacement: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Warp fields by backward displacements (bilinear, 0 outside the frame).

    Parameters
    ----------
    field : Tensor, shape (B, C, H, W) or (B, S, C, H, W)
        One field per sample (warped by every displacement) or one per displacement.
    displacement : Tensor, shape (B, S, 2, H, W)
        From :func:`trajectory` (pixels of the field's grid).
    mode : {"bilinear", "bicubic"}
        Interpolation of :func:`torch.nn.functional.grid_sample`; ``"bicubic"`` smooths a
        sub-pixel shift less (may overshoot: clip the result if it must stay in range).

    Returns
    -------
    Tensor, shape (B, S, C, H, W)
    """
    if displacement.ndim != 5 or displacement.shape[2] != 2:
        raise ValueError(
            f"displacement must have shape (B, S, 2, H, W), got {tuple(displacement.shape)}"
        )
    b, s, _, h, w = displacement.shape
    if field.ndim == 4:
        field = field.unsqueeze(1).expand(-1, s, -1, -1, -1)
    if field.ndim != 5 or field.shape[:2] != (b, s) or field.shape[-2:] != (h, w):
        raise ValueError(
            f"field must have shape (B, C, H, W) or (B, S, C, H, W) matching the "
            f"displacement {tuple(displacement.shape)}, got {tuple(field.shape)}"
        )
    c = field.shape[2]
    out = _read(
        field.reshape(b * s, c, h, w),
        displacement.reshape(b * s, 2, h, w).to(field.dtype),
        "zeros",
        mode,
    )
    return out.reshape(b, s, c, h, w)


def advect(
    field: torch.Tensor,
    motion: torch.Tensor,
    steps,
    mask: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Semi-Lagrangian extrapolation of *field* by *motion* to each number of *steps*.

    Parameters
    ----------
    field : Tensor, shape (B, C, H, W)
        Field to move (e.g. p/255 reflectivity); 0 is read outside the frame.
    motion : Tensor, shape (B, 2, H, W)
        Pixels per step, channel 0 along x (columns), 1 along y (rows).
    steps : sequence of float or Tensor, shape (S,) or (B, S)
        Non-decreasing numbers of steps (lead time / cadence), fractions allowed.
    mask : Tensor, shape (B, 1, H, W), optional
        Validity of *field* (1 = valid). When given it is advected too and returned:
        a target pixel is valid when at least half of its bilinear weight falls on valid
        source pixels inside the frame, so pixels that come in from outside the radar
        domain are invalid, not "no rain".

    Returns
    -------
    Tensor, shape (B, S, C, H, W)
        The advected fields; with *mask* also the advected validity ``(B, S, 1, H, W)``
        (bool).

    Examples
    --------
    >>> f = torch.zeros(1, 1, 5, 5); f[0, 0, 2, 1] = 1.0
    >>> v = torch.zeros(1, 2, 5, 5); v[:, 0] = 1.0  # one pixel to the right per step
    >>> advect(f, v, [2.0])[0, 0, 0, 2].tolist()
    [0.0, 0.0, 0.0, 1.0, 0.0]
    """
    if not isinstance(field, torch.Tensor) or field.ndim != 4:
        got = tuple(field.shape) if isinstance(field, torch.Tensor) else type(field).__name__
        raise ValueError(f"field must have shape (B, C, H, W), got {got}")
    if motion.shape[0] != field.shape[0] or motion.shape[-2:] != field.shape[-2:]:
        raise ValueError(
            f"motion {tuple(motion.shape)} must match the field's batch and grid "
            f"{tuple(field.shape)}"
        )
    disp = trajectory(motion.to(field.dtype), steps)
    out = sample(field, disp)
    if mask is None:
        return out
    if tuple(mask.shape) != (field.shape[0], 1, *field.shape[-2:]):
        raise ValueError(f"mask must have shape (B, 1, H, W), got {tuple(mask.shape)}")
    valid = sample(mask.to(field.dtype), disp) >= 0.5 - 1e-6
    return out, valid


def resize_motion(motion: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A motion field (or displacement) on another grid covering the same area.

    Parameters
    ----------
    motion : Tensor, shape (..., 2, h, w)
        Pixels (per step) of the ``h x w`` grid.
    size : (H, W)
        Target grid.

    Returns
    -------
    Tensor, shape (..., 2, H, W)
        Bilinearly resampled between pixel centres (``align_corners=False``: a block of
        ``H / h`` fine pixels shares one coarse pixel's centre) and scaled to pixels of the
        new grid (x by ``W / w``, y by ``H / h``).
    """
    lead = motion.shape[:-3]
    h, w = motion.shape[-2:]
    big_h, big_w = int(size[0]), int(size[1])
    if (big_h, big_w) == (h, w):
        return motion
    flat = motion.reshape(-1, 2, h, w)
    out = F.interpolate(flat, size=(big_h, big_w), mode="bilinear", align_corners=False)
    scale = torch.tensor([big_w / w, big_h / h], dtype=out.dtype, device=out.device)
    out = out * scale.view(1, 2, 1, 1)
    return out.reshape(*lead, 2, big_h, big_w)
