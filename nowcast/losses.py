"""Training losses for nowcasting models, behind a small registry.

Every loss has the same call contract::

    loss = get_loss(name)(pred, target, mask=None)

``pred`` and ``target`` are ``(B, T, 1, H, W)`` (or any shape ending in ``(1, H, W)``)
tensors on the normalised pixel scale ``p / 255`` in [0, 1]; ``mask`` has the same shape
(or broadcasts to it) with 1.0 where the target pixel is valid (the dataset's
``target_mask``) and 0.0 where it must be ignored. The result is a scalar tensor.

Losses
------
``thesis``
    ``1 * MSE + 1 * MAE + 0.05 * (1 - SSIM)``, the thesis's equation (5.1). MSE and MAE are
    means over the *valid* pixels (sum of masked errors divided by the number of valid
    pixels), so a half-masked frame does not halve the loss. SSIM (Gaussian window 11,
    sigma 1.5, from :func:`nowcast.metrics.ssim`) is computed on ``pred * mask`` against
    ``target * mask``: masked pixels are set to 0 in both images, so they count as perfectly
    similar and give no gradient. This is an approximation near mask edges (the 11-pixel
    window straddles them); with HKO-7's masks, which cover a few percent of a frame, it is
    negligible.
``balanced``
    ``B-MSE + B-MAE`` of the HKO-7 benchmark: each pixel's squared (absolute) error is
    weighted by :func:`nowcast.metrics.balanced_weights` of the *target* rain rate (1 below
    2 mm/h, 2, 5, 10, 30 above 30 mm/h) and by the mask. The benchmark reports the SUM over
    a 480 x 480 frame; for training we divide that sum by the number of valid pixels
    instead, so the loss is a per-pixel mean independent of the image size (80 x 80 or
    480 x 480) and of the same order as the thesis loss (a dry, perfect forecast is 0, a
    uniform error e on a dry frame gives e^2 + |e|). Multiply by the number of pixels of a
    frame to get the benchmark's per-frame B-MSE / B-MAE. The weights are not renormalised:
    rainy frames weigh more, which is the purpose of the balancing.

``balanced_csi``
    ``balanced`` plus ``0.05 * (1 - soft CSI)`` at 0.5, 2, 5 and 10 mm/h (:func:`soft_csi`):
    the balanced loss alone rewards forecasts that fade with lead time, which costs CSI at
    the higher thresholds; the soft-CSI terms keep rain areas of the right extent. The
    Lagrangian ``small`` configuration trains with it (docs/results.md).

All losses are differentiable in ``pred`` and accept float16/bfloat16 input under
autocast: they compute in float32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from nowcast.metrics import balanced_weights, ssim

THESIS_WEIGHTS: dict[str, float] = {"mse": 1.0, "mae": 1.0, "ssim": 0.05}
"""Weights ``a, b, c`` of equation (5.1) of the thesis."""


def _prepare(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate shapes, cast to float32 and broadcast the mask (1.0 = valid)."""
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError(
            f"pred and target must be torch tensors, got {type(pred).__name__} and "
            f"{type(target).__name__}"
        )
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    if pred.dim() < 3:
        raise ValueError(
            f"expected images shaped (..., 1, H, W), got a tensor of shape {tuple(pred.shape)}"
        )
    pred = pred.float()
    target = target.float()
    if mask is None:
        mask = torch.ones_like(target)
    else:
        try:
            mask = torch.broadcast_to(
                mask.to(device=target.device, dtype=torch.float32), target.shape
            )
        except RuntimeError as err:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to the target shape "
                f"{tuple(target.shape)}"
            ) from err
    return pred, target, mask


def _valid_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over pixels where ``mask`` > 0 (0 when nothing is valid)."""
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def masked_mse(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error over valid pixels (p/255 units squared).

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(B, T, 1, H, W)`` in p/255.
    mask : torch.Tensor, optional
        Broadcastable to ``target``; 1.0 = valid.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    pred, target, mask = _prepare(pred, target, mask)
    return _valid_mean((pred - target) ** 2, mask)


def masked_mae(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean absolute error over valid pixels (p/255 units); see :func:`masked_mse`."""
    pred, target, mask = _prepare(pred, target, mask)
    return _valid_mean((pred - target).abs(), mask)


def masked_ssim(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """SSIM of ``pred * mask`` against ``target * mask`` (see the module docstring)."""
    pred, target, mask = _prepare(pred, target, mask)
    return ssim(pred * mask, target * mask)


def thesis_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    weights: dict[str, float] | None = None,
) -> torch.Tensor:
    """The thesis loss ``a * MSE + b * MAE + c * (1 - SSIM)`` (equation 5.1).

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(B, T, 1, H, W)`` in p/255.
    mask : torch.Tensor, optional
        Broadcastable to ``target``; 1.0 = valid.
    weights : dict, optional
        ``{"mse": a, "mae": b, "ssim": c}``; default :data:`THESIS_WEIGHTS` (1, 1, 0.05).

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    w = _check_weights(weights, THESIS_WEIGHTS)
    pred, target, mask = _prepare(pred, target, mask)
    loss = w["mse"] * _valid_mean((pred - target) ** 2, mask)
    loss = loss + w["mae"] * _valid_mean((pred - target).abs(), mask)
    if w["ssim"] != 0.0:
        loss = loss + w["ssim"] * (1.0 - ssim(pred * mask, target * mask))
    return loss


BALANCED_WEIGHTS: dict[str, float] = {"mse": 1.0, "mae": 1.0}
"""Weights of B-MSE and B-MAE in the ``balanced`` loss."""


def balanced_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    weights: dict[str, float] | None = None,
) -> torch.Tensor:
    """HKO-7 balanced loss ``B-MSE + B-MAE``, as a mean over valid pixels.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(B, T, 1, H, W)`` in p/255.
    mask : torch.Tensor, optional
        Broadcastable to ``target``; 1.0 = valid.
    weights : dict, optional
        ``{"mse": a, "mae": b}``; default 1 and 1.

    Returns
    -------
    torch.Tensor
        Scalar: ``sum(w * mask * (a * err^2 + b * |err|)) / sum(mask)`` with ``w`` the
        rain-band weight of the target pixel. Multiply by ``H * W`` for the benchmark's
        per-frame figure on a fully valid frame.
    """
    w = _check_weights(weights, BALANCED_WEIGHTS)
    pred, target, mask = _prepare(pred, target, mask)
    with torch.no_grad():
        bw = balanced_weights(target).to(torch.float32) * mask
    err = pred - target
    return _valid_mean(bw * (w["mse"] * err**2 + w["mae"] * err.abs()), mask)


def _check_weights(weights: dict[str, float] | None, default: dict[str, float]) -> dict[str, float]:
    if weights is None:
        return dict(default)
    unknown = sorted(set(weights) - set(default))
    if unknown:
        raise ValueError(f"unknown loss weight(s) {unknown}; valid keys are {sorted(default)}")
    return {**default, **{k: float(v) for k, v in weights.items()}}


CSI_THRESHOLDS_MMH: tuple[float, ...] = (0.5, 2.0, 5.0, 10.0)
"""Rain rates (mm/h) of the soft-CSI terms of the ``balanced_csi`` loss (HKO-7's thresholds
without 30 mm/h, whose events are too rare in a batch to give a stable term)."""
BALANCED_CSI_WEIGHTS: dict[str, float] = {"mse": 1.0, "mae": 1.0, "csi": 0.05, "lead_balance": 0.0}
"""Weights of B-MSE, B-MAE and of each threshold's ``1 - soft CSI`` in ``balanced_csi``;
``lead_balance`` 1 gives every lead time the same weight in relative terms (see
:func:`balanced_csi_loss`), 0 pools all leads' pixels."""
_SOFT_WIDTH = 0.02
"""Width (p/255, about 1.4 dBZ) of the sigmoid that makes the forecast's events soft."""


def soft_csi(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None,
    threshold_mmh: float,
    width: float = _SOFT_WIDTH,
    per_lead: bool = False,
) -> torch.Tensor:
    """Differentiable CSI of the event ``rain >= threshold``, pooled over the batch.

    The forecast's event is ``sigmoid((pred - thr) / width)``, the target's the hard
    indicator; hits, false alarms and misses are sums over valid pixels of every sample
    (and of every lead unless ``per_lead``), as the HKO-7 protocol pools its counts over
    sequences. Returns 1 when neither has an event.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(B, T, 1, H, W)`` p/255.
    mask : torch.Tensor or None
        1.0 = valid target pixel.
    threshold_mmh : float
        Rain rate of the event (mm/h, HKO-7 Z-R).
    width : float
        Sigmoid width in p/255.
    per_lead : bool
        Return one CSI per lead (dim 1), ``(T,)``, instead of one pooled over all leads.
    """
    from pipeline.units import rainrate_to_normalized

    thr = float(rainrate_to_normalized(threshold_mmh))
    f = torch.sigmoid((pred - thr) / width)
    o = (target >= thr).to(f.dtype)
    m = torch.ones_like(f) if mask is None else mask.to(f.dtype)
    dims = [d for d in range(f.dim()) if not (per_lead and d == 1)]
    hits = (f * o * m).sum(dims)
    false_alarms = (f * (1 - o) * m).sum(dims)
    misses = ((1 - f) * o * m).sum(dims)
    return (hits + 1e-6) / (hits + false_alarms + misses + 1e-6)


def balanced_csi_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    weights: dict[str, float] | None = None,
) -> torch.Tensor:
    """``B-MSE + B-MAE + csi * sum_thr (1 - soft CSI_thr)``.

    The balanced loss rewards forecasts that blur and fade with lead time (the mean of what
    may happen); the soft-CSI terms (:func:`soft_csi` at :data:`CSI_THRESHOLDS_MMH`, one per
    lead, averaged over leads like the HKO-7 scores) reward rain areas of the right extent
    above each threshold, which is what the skill scores measure. Weights ``{"mse", "mae", "csi", "lead_balance"}``, default
    :data:`BALANCED_CSI_WEIGHTS`. With ``lead_balance`` 1 the balanced part is computed per
    lead time and each lead is scaled by the mean over leads divided by its own (detached)
    value: the same value, but the gradient of ``mean_t log L_t``.
    """
    w = _check_weights(weights, BALANCED_CSI_WEIGHTS)
    bw = {"mse": w["mse"], "mae": w["mae"]}
    if w["lead_balance"] and pred.dim() == 5 and pred.shape[1] > 1:
        # each lead's balanced loss scaled by the mean over leads / its own (detached)
        # value: the value is the plain mean, the gradient that of mean_t log L_t, so a 1 %
        # improvement counts the same at 6 minutes as at 2 hours (long leads' large errors
        # would otherwise drown the short leads, where extrapolation is already good)
        per_lead = torch.stack(
            [
                balanced_loss(pred[:, j], target[:, j], _lead(mask, j), bw)
                for j in range(pred.shape[1])
            ]
        )
        scale = (per_lead.mean() / per_lead.clamp_min(1e-8)).detach()
        base = (per_lead * scale).mean()
    else:
        base = balanced_loss(pred, target, mask, bw)
    if w["csi"] == 0.0:
        return base
    pred, target, mask = _prepare(pred, target, mask)
    # one CSI per lead, averaged over the leads as the HKO-7 scores are: a CSI pooled over
    # all leads would be dominated by the long leads' low scores, and its gradient would
    # then reward forecasting an event wherever its chance exceeds that low CSI's bar,
    # over-forecasting the short leads (measured: bias 1.4-2.9 at 5-10 mm/h)
    per_lead = pred.dim() == 5
    csi = sum(
        (1.0 - soft_csi(pred, target, mask, thr, per_lead=per_lead)).mean()
        for thr in CSI_THRESHOLDS_MMH
    )
    return base + w["csi"] * csi


def _lead(mask: torch.Tensor | None, j: int) -> torch.Tensor | None:
    if mask is None or mask.dim() < 5 or mask.shape[1] == 1:
        return mask
    return mask[:, j]


_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "thesis": thesis_loss,
    "balanced": balanced_loss,
    "balanced_csi": balanced_csi_loss,
}

DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "thesis": THESIS_WEIGHTS,
    "balanced": BALANCED_WEIGHTS,
    "balanced_csi": BALANCED_CSI_WEIGHTS,
}
"""Default ``weights`` of each loss (its valid weight keys)."""

LOSS_NAMES: tuple[str, ...] = tuple(_LOSSES)
"""Names accepted by :func:`get_loss`."""


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    """Return the loss function registered under ``name`` (case-insensitive).

    Parameters
    ----------
    name : str
        One of :data:`LOSS_NAMES` (``thesis``, ``balanced``, ``balanced_csi``).

    Returns
    -------
    callable
        ``loss(pred, target, mask=None, weights=None) -> scalar tensor``.

    Raises
    ------
    ValueError
        If ``name`` is not registered; the message lists the valid names.
    """
    key = str(name).lower()
    if key not in _LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names are {', '.join(LOSS_NAMES)}")
    return _LOSSES[key]
