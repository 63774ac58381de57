"""Input preparation shared by the networks (private); the checks are :mod:`nowcast.contract`."""

from __future__ import annotations

import torch

from nowcast.contract import check_inputs

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

    The checks are :func:`nowcast.contract.check_inputs` with the network's ``stride``.
    ``x`` comes back multiplied by ``input_mask`` when given (masked pixels become 0); the
    times come back in frame units (minutes / cadence) relative to the last input frame.

    Raises
    ------
    ValueError
        Naming the shape or value received and the one expected.
    """
    check_inputs(x, t_in, t_out, input_mask, stride=stride)
    if input_mask is not None:
        x = x * input_mask.to(x.dtype)
    t_in = t_in.to(device=x.device, dtype=x.dtype)
    t_out = t_out.to(device=x.device, dtype=x.dtype)
    last = t_in[:, -1:]
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
