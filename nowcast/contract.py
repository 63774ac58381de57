"""The predictor call contract: one protocol, one input validator, one missing-frame rule.

Every network (:mod:`nowcast.models`) and every baseline (:mod:`nowcast.baselines`) is a
:class:`Nowcaster` (docs/contracts.md, Predictor call contract)::

    y = predictor(x, t_in, t_out, input_mask=None)

- ``x`` ``(B, T_in, 1, H, W)`` float tensor on the normalised pixel scale p/255 (0..1);
- ``t_in`` ``(B, T_in)`` and ``t_out`` ``(B, T_out)`` in minutes, strictly increasing, the lead
  times after the last input time (``t_in[:, -1] == 0`` for the datasets and forecasts);
- ``input_mask`` ``(B, T_in, 1, H, W)`` or None, 1 = valid pixel; a frame with no valid pixel
  is a missing frame;
- ``y`` ``(B, T_out, 1, H, W)`` float32 in p/255.

:func:`check_inputs` validates a call (networks add the multiple-of-stride condition with
``stride``); :func:`observed_frames` and :func:`last_observed_index` apply the missing-frame
rule (which input frame is the last one observed).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch

__all__ = ["Nowcaster", "check_inputs", "last_observed_index", "observed_frames"]


@runtime_checkable
class Nowcaster(Protocol):
    """A callable with the predictor call contract (see the module docstring).

    Implementations may carry ``continuous_time`` (bool: any positive lead accepted),
    ``last_fallback`` (str or None) and ``last_motion`` (``(B, 2, H, W)``) attributes.
    """

    def __call__(
        self,
        x: torch.Tensor,
        t_in: torch.Tensor,
        t_out: torch.Tensor,
        input_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Forecast ``(B, T_out, 1, H, W)`` in p/255 at the lead times ``t_out``."""
        ...


def _shape(value: object) -> object:
    """The shape of a tensor or array as a tuple, else the type name (for messages)."""
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else type(value).__name__


def check_inputs(
    x: torch.Tensor,
    t_in: torch.Tensor,
    t_out: torch.Tensor,
    input_mask: torch.Tensor | None = None,
    *,
    stride: int = 1,
) -> None:
    """Validate one call of the predictor call contract.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, T_in, 1, H, W)`` input frames, p/255, ``B >= 1``, ``T_in >= 1``.
    t_in : torch.Tensor
        ``(B, T_in)`` input times in minutes, finite, strictly increasing.
    t_out : torch.Tensor
        ``(B, T_out)`` lead times in minutes, ``T_out >= 1``, finite, strictly increasing,
        all after the last input time.
    input_mask : torch.Tensor, optional
        ``(B, T_in, 1, H, W)``, 1 = valid pixel.
    stride : int
        ``H`` and ``W`` must be positive multiples of it (a network's total down-sampling
        stride; 1 for the baselines).

    Raises
    ------
    ValueError
        Naming the shape or value received and the one expected.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 5 or x.shape[2] != 1:
        raise ValueError(f"x must have shape (B, T_in, 1, H, W), got {_shape(x)}")
    b, t_n, _, h, w = x.shape
    if b < 1 or t_n < 1:
        raise ValueError(f"x must have B >= 1 and T_in >= 1, got shape {tuple(x.shape)}")
    if h % stride or w % stride or h < stride or w < stride:
        raise ValueError(
            f"x has H, W = {h}, {w} (shape {tuple(x.shape)}); expected positive multiples of "
            f"{stride}, the product of the down-sampling strides"
        )
    if not isinstance(t_in, torch.Tensor) or tuple(t_in.shape) != (b, t_n):
        raise ValueError(f"t_in must have shape (B, T_in) = {(b, t_n)}, got {_shape(t_in)}")
    if not isinstance(t_out, torch.Tensor) or t_out.ndim != 2 or t_out.shape[0] != b:
        raise ValueError(f"t_out must have shape (B, T_out) with B = {b}, got {_shape(t_out)}")
    if t_out.shape[1] < 1:
        raise ValueError(f"t_out must hold at least one time, got shape {tuple(t_out.shape)}")
    if input_mask is not None and (
        not isinstance(input_mask, torch.Tensor) or input_mask.shape != x.shape
    ):
        raise ValueError(
            f"input_mask must have the shape of x {tuple(x.shape)}, got {_shape(input_mask)}"
        )
    if not (torch.isfinite(t_in).all() and torch.isfinite(t_out).all()):
        raise ValueError(f"t_in and t_out must be finite, got {t_in.tolist()}, {t_out.tolist()}")
    if t_n > 1 and bool((t_in.diff(dim=1) <= 0).any()):
        raise ValueError(f"t_in must increase strictly along time, got {t_in.tolist()}")
    if t_out.shape[1] > 1 and bool((t_out.diff(dim=1) <= 0).any()):
        raise ValueError(f"t_out must increase strictly along time, got {t_out.tolist()}")
    if bool((t_out[:, :1] <= t_in[:, -1:].to(t_out)).any()):
        raise ValueError(
            f"t_out must lie after the last input time, got t_out[:, 0] = {t_out[:, 0].tolist()} "
            f"and t_in[:, -1] = {t_in[:, -1].tolist()}"
        )


def observed_frames(input_mask: torch.Tensor | None, batch: tuple[int, int]) -> np.ndarray:
    """Which input frames are observed: ``(B, T_in)`` bool, True = any pixel with mask > 0.5.

    Parameters
    ----------
    input_mask : torch.Tensor or None
        ``(B, T_in, 1, H, W)``; None = every frame observed.
    batch : tuple of int
        ``(B, T_in)``, the leading shape of ``x``.
    """
    if input_mask is None:
        return np.ones(tuple(batch), dtype=bool)
    # numpy, not torch: a reduction over 5 x 480 x 480 values costs 0.1 ms single-threaded and
    # up to 30 ms through torch's thread pool on a busy 2-core machine
    flat = input_mask.detach().cpu().reshape(batch[0], batch[1], -1).numpy()
    return flat.max(axis=-1) > 0.5 if flat.shape[-1] else np.zeros(tuple(batch), dtype=bool)


def last_observed_index(observed: np.ndarray, *, required: bool = True) -> np.ndarray:
    """Index of the last observed input frame per sample, ``(B,)`` int64.

    Parameters
    ----------
    observed : numpy.ndarray
        ``(B, T_in)`` bool, as :func:`observed_frames` returns.
    required : bool
        True: a sample with no observed frame raises ValueError (a baseline has nothing to
        forecast from). False: such a sample gets the last frame, ``T_in - 1``.

    Examples
    --------
    >>> last_observed_index(np.array([[True, True, False], [True, False, False]])).tolist()
    [1, 0]
    """
    observed = np.asarray(observed, dtype=bool)
    none = ~observed.any(axis=1)
    if required and none.any():
        raise ValueError(
            f"samples {np.flatnonzero(none).tolist()} have no observed input frame "
            "(input_mask is 0 everywhere); a forecast needs at least one"
        )
    return (observed.shape[1] - 1 - np.argmax(observed[:, ::-1], axis=1)).astype(np.int64)
