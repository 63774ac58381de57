"""Corrections of ensemble members: their rain area and their intensity distribution.

:func:`keep_wet_area` gives each member frame the wet-pixel count of the deterministic
forecast it was made from; :func:`match_wet_distribution` maps a member's wet values onto
an observed wet-value distribution (STEPS' probability matching restricted to the rain
area). :class:`nowcast.ensemble.EnsembleNowcaster` applies both, in that order.
"""

from __future__ import annotations

import torch

__all__ = ["keep_wet_area", "match_wet_distribution"]


def keep_wet_area(fields: torch.Tensor, reference: torch.Tensor, threshold: float) -> torch.Tensor:
    """Give every frame of ``fields`` the wet-pixel count of the same frame of ``reference``.

    The ``n`` pixels with the largest values of a frame stay wet (values below
    ``threshold`` are raised to it), the others are set to 0, ``n`` being the number of
    pixels of the reference frame at or above ``threshold``. A member of an ensemble keeps
    its own pattern (which pixels are wet) but not the net loss of rain area that noise
    with a dry cut-off causes: noise that pushes interior pixels below the cut-off opens
    holes, while noise at the edges, weighted by the rain fraction, cannot grow the area
    as much (docs/ensembles.md, "Rain area"). STEPS keeps its members' rain area in the
    same spirit, from a deterministic forecast's precipitation mask.

    Parameters
    ----------
    fields : torch.Tensor
        ``(B, T, 1, H, W)`` p/255, e.g. one ensemble member.
    reference : torch.Tensor
        ``(B, T, 1, H, W)`` p/255, e.g. the deterministic forecast.
    threshold : float
        Wet threshold, p/255.

    Returns
    -------
    torch.Tensor
        ``fields``' shape and dtype: the reference's wet count per frame (ties between
        equal values of ``fields``, such as pixels clamped to 0, go to the larger
        reference value; more are kept only where both are equal).
    """
    if fields.ndim != 5 or tuple(reference.shape) != tuple(fields.shape):
        raise ValueError(
            f"fields and reference must both be (B, T, 1, H, W) of one shape; got "
            f"{tuple(fields.shape)} and {tuple(reference.shape)}"
        )
    b, t = fields.shape[:2]
    flat = fields.reshape(b, t, -1)
    ref = reference.reshape(b, t, -1).to(flat.dtype)
    n = (ref >= threshold).sum(-1)  # (B, T)
    # rank by the field, ties (e.g. pixels clamped to 0) by the reference: every pixel
    # wet in the reference has a positive key, so the n-th largest key is positive
    key = flat + 1e-3 * ref
    size = flat.shape[-1]
    keep = torch.zeros_like(flat, dtype=torch.bool)
    for i in range(b):
        for j in range(t):
            k = int(n[i, j])
            if k == 0:
                continue
            kth = torch.kthvalue(key[i, j], size - k + 1).values  # the k-th largest
            keep[i, j] = key[i, j] >= kth
    out = torch.where(keep, flat.clamp(min=threshold), torch.zeros_like(flat))
    return out.reshape(fields.shape)


def match_wet_distribution(
    fields: torch.Tensor,
    reference: torch.Tensor,
    threshold: float,
    reference_mask: torch.Tensor | None = None,
    n_quantiles: int = 1024,
    min_pixels: int = 10,
) -> torch.Tensor:
    """Map each frame's wet values onto the reference's wet-value distribution.

    Quantile mapping restricted to the rain area: in every frame of sample ``b`` the pixels
    at or above ``threshold`` keep their rank order and take the values of the same
    quantiles of the reference's pixels at or above ``threshold`` (the frame's lowest wet
    value takes the reference's lowest, its highest the reference's highest, linear in
    between); the other pixels are left as they are. (STEPS' probability matching, pysteps ``postprocessing.probmatching``
    "cdf", matches the whole field, dry area included; here the rain area stays the
    forecast's.)

    Parameters
    ----------
    fields : torch.Tensor
        ``(B, T, 1, H, W)`` p/255.
    reference : torch.Tensor
        ``(B, H', W')`` p/255, e.g. the last observed frame of each sample (any size).
    threshold : float
        Wet threshold, p/255.
    reference_mask : torch.Tensor, optional
        ``(B, H', W')``, 1 = valid reference pixel.
    n_quantiles : int
        Resolution of the reference quantile function (linear in between).
    min_pixels : int
        A sample whose reference has fewer wet pixels is left unchanged.

    Returns
    -------
    torch.Tensor
        ``fields``' shape and dtype; wet values are reference values (so still at or above
        ``threshold``), dry ones unchanged.
    """
    if fields.ndim != 5 or reference.ndim != 3 or reference.shape[0] != fields.shape[0]:
        raise ValueError(
            f"fields must be (B, T, 1, H, W) and reference (B, H, W) with the same B; got "
            f"{tuple(fields.shape)} and {tuple(reference.shape)}"
        )
    b, t, c, h, w = fields.shape
    flat = fields.reshape(b, t, c * h * w)
    out = flat.clone()
    levels = torch.linspace(0.0, 1.0, int(n_quantiles), dtype=torch.float64)
    for i in range(b):
        ref = reference[i].flatten().to(torch.float64)
        if reference_mask is not None:
            ref = ref[reference_mask[i].flatten() > 0.5]
        ref = ref[ref >= threshold]
        if ref.numel() < max(int(min_pixels), 1):
            continue
        ref_q = torch.quantile(ref, levels).to(flat.dtype)  # (Q,)
        for j in range(t):  # frame by frame: temporaries of one frame only
            out[i, j] = _match_frame(flat[i, j], ref_q, threshold)
    return out.reshape(fields.shape)


def _match_frame(frame: torch.Tensor, ref_q: torch.Tensor, threshold: float) -> torch.Tensor:
    """One flattened frame ``(P,)``: wet values onto the quantile function ``ref_q`` ``(Q,)``."""
    wet = frame >= threshold
    n = int(wet.sum())
    if n == 0:
        return frame
    out = frame.clone()
    order = torch.argsort(frame[wet], stable=True)  # ascending among the wet pixels
    level = (
        torch.arange(n, dtype=torch.float64) / max(n - 1, 1)
        if n > 1
        else torch.full((1,), 0.5, dtype=torch.float64)
    )
    where = level * (len(ref_q) - 1)
    lo = where.floor().long().clamp(max=len(ref_q) - 1)
    hi = (lo + 1).clamp(max=len(ref_q) - 1)
    frac = (where - lo).to(frame.dtype)
    values = torch.empty(n, dtype=frame.dtype)
    values[order] = ref_q[lo] * (1 - frac) + ref_q[hi] * frac
    out[wet] = values
    return out
