"""Input checks shared by the networks (private)."""

from __future__ import annotations

import torch

_TOL = 1e-3


def prepare_inputs(
    x: torch.Tensor,
    t_in: torch.Tensor,
    t_out: torch.Tensor,
    input_mask: torch.Tensor | None,
    stride: int,
    cadence_minutes: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate the call contract and return ``(x, tin, tout)``.

    ``x`` comes back multiplied by ``input_mask`` when given (masked pixels become 0); the
    times come back in frame units (minutes / cadence) relative to the last input frame.

    Raises
    ------
    ValueError
        Naming the shape or value received and the one expected.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 5 or x.shape[2] != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must have shape (B, T_in, 1, H, W), got {shape}")
    b, t_n, _, h, w = x.shape
    if b < 1 or t_n < 1:
        raise ValueError(f"x must have B >= 1 and T_in >= 1, got shape {tuple(x.shape)}")
    if h % stride or w % stride or h < stride or w < stride:
        raise ValueError(
            f"x has H, W = {h}, {w} (shape {tuple(x.shape)}); expected positive multiples of "
            f"{stride}, the product of the down-sampling strides"
        )
    if not isinstance(t_in, torch.Tensor) or tuple(t_in.shape) != (b, t_n):
        got = tuple(t_in.shape) if isinstance(t_in, torch.Tensor) else type(t_in).__name__
        raise ValueError(f"t_in must have shape (B, T_in) = {(b, t_n)}, got {got}")
    if not isinstance(t_out, torch.Tensor) or t_out.ndim != 2 or t_out.shape[0] != b:
        got = tuple(t_out.shape) if isinstance(t_out, torch.Tensor) else type(t_out).__name__
        raise ValueError(f"t_out must have shape (B, T_out) with B = {b}, got {got}")
    if t_out.shape[1] < 1:
        raise ValueError(f"t_out must hold at least one time, got shape {tuple(t_out.shape)}")
    if input_mask is not None:
        if not isinstance(input_mask, torch.Tensor) or input_mask.shape != x.shape:
            got = (
                tuple(input_mask.shape)
                if isinstance(input_mask, torch.Tensor)
                else type(input_mask).__name__
            )
            raise ValueError(f"input_mask must have the shape of x {tuple(x.shape)}, got {got}")
        x = x * input_mask.to(x.dtype)
    t_in = t_in.to(device=x.device, dtype=x.dtype)
    t_out = t_out.to(device=x.device, dtype=x.dtype)
    if not (torch.isfinite(t_in).all() and torch.isfinite(t_out).all()):
        raise ValueError("t_in and t_out must be finite")
    if t_n > 1 and bool((t_in.diff(dim=1) <= 0).any()):
        raise ValueError(f"t_in must increase strictly along time, got {t_in.tolist()}")
    if t_out.shape[1] > 1 and bool((t_out.diff(dim=1) <= 0).any()):
        raise ValueError(f"t_out must increase strictly along time, got {t_out.tolist()}")
    last = t_in[:, -1:]
    if bool((t_out[:, :1] <= last).any()):
        raise ValueError(
            f"t_out must lie after the last input time, got t_out[:, 0] = {t_out[:, 0].tolist()} "
            f"and t_in[:, -1] = {t_in[:, -1].tolist()}"
        )
    scale = float(cadence_minutes)
    return x, (t_in - last) / scale, (t_out - last) / scale


def check_regular(tin: torch.Tensor, tout: torch.Tensor, model: str) -> None:
    """Raise ValueError unless all gaps of ``[tin, tout]`` are one frame (frame units)."""
    times = torch.cat((tin, tout), dim=1)
    gaps = times.diff(dim=1)
    if gaps.numel() and bool(((gaps - 1.0).abs() > _TOL).any()):
        raise ValueError(
            f"{model} needs regular times (every gap one cadence step); got gaps in frames "
            f"{gaps.tolist()}. Construct it with ignore_irregular_times=True to run anyway, "
            "or use a continuous-time model"
        )
