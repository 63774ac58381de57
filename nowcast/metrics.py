"""Verification metrics for radar nowcasts.

Two families of scores are implemented, both on frames on the normalised pixel scale
``p / 255`` in [0, 1] (see :mod:`pipeline.units`):

* the thesis's image metrics (chapter 5, eq. 2.27-2.28): MSE, MAE, SSIM and PSNR. The
  thesis prints them as ``MSE x 1e4``, ``MAE x 1e4``, ``SSIM x 1e2`` and PSNR in dB. They are
  computed per frame (mean over the valid pixels of one frame) and then averaged over
  frames; PSNR is ``10 log10(1 / MSE_frame)`` per frame, then averaged (this reading
  reproduces the thesis's tables: its PSNR is *above* ``10 log10(1 / mean MSE)``, as a mean
  of per-frame PSNRs must be by Jensen's inequality).
* the HKO-7 benchmark protocol (docs/facts.md section 4): contingency counts per rain
  threshold (0.5, 2, 5, 10, 30 mm/h; event = value >= threshold; only where mask = 1)
  summed over all sequences per lead time, giving POD, FAR, CSI and HSS; and the balanced
  B-MSE / B-MAE (per frame the SUM over the frame of ``w * err^2`` / ``w * |err|``, averaged
  over sequences, then over lead times).

:func:`ssim` and :func:`balanced_weights` are differentiable torch functions used by the
training loss as well. :class:`MetricAccumulator` streams over batches so an evaluation
never holds all predictions in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from pipeline.units import RAIN_THRESHOLDS_MMH, rainrate_to_normalized

__all__ = [
    "BALANCE_THRESHOLDS_MMH",
    "BALANCE_WEIGHTS",
    "MetricAccumulator",
    "balanced_weights",
    "categorical_scores",
    "contingency_counts",
    "psnr_per_frame",
    "ssim",
    "ssim_per_frame",
]

BALANCE_THRESHOLDS_MMH: tuple[float, ...] = (2.0, 5.0, 10.0, 30.0)
"""Rain-rate band edges (mm/h) of the HKO-7 balanced weights."""
BALANCE_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Weights below 2, in [2, 5), [5, 10), [10, 30) and at or above 30 mm/h."""

_PSNR_MSE_FLOOR = 1e-10
"""A perfect frame would have infinite PSNR; its MSE is floored here (PSNR <= 100 dB)."""


# --------------------------------------------------------------------------- SSIM
def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def _as_frames(x: torch.Tensor, name: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Reshape ``(..., 1, H, W)`` to ``(N, 1, H, W)``; return it and the leading shape."""
    if x.ndim < 3 or x.shape[-3] != 1:
        raise ValueError(
            f"{name} must have shape (..., 1, H, W) e.g. (B, T, 1, H, W) or (N, 1, H, W); "
            f"got shape {tuple(x.shape)}"
        )
    lead = tuple(x.shape[:-3])
    return x.reshape(-1, 1, x.shape[-2], x.shape[-1]), lead


def _ssim_map(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float,
    win_size: int,
    sigma: float,
    k1: float,
    k2: float,
) -> torch.Tensor:
    """SSIM map of ``(N, 1, H, W)`` frames over the valid window positions."""
    h, w = pred.shape[-2:]
    win = min(win_size, h, w)
    if win % 2 == 0:
        win -= 1
    if win < 1:
        raise ValueError(f"frames of size {h}x{w} are too small for SSIM")
    g = _gaussian_window(win, sigma, pred.dtype, pred.device)
    gx = g.view(1, 1, 1, win)
    gy = g.view(1, 1, win, 1)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(z, gx), gy)

    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    mu_x = blur(pred)
    mu_y = blur(target)
    sxx = blur(pred * pred) - mu_x**2
    syy = blur(target * target) - mu_y**2
    sxy = blur(pred * target) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return num / den


def ssim_per_frame(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity of each frame (Wang et al. 2004, thesis eq. 2.27).

    Gaussian window ``win_size`` x ``win_size`` (standard deviation ``sigma``), constants
    ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``, ``C3 = C2 / 2`` with ``L = data_range``; the map is
    computed at the window positions that lie fully inside the frame ("valid" convolution)
    and averaged. Frames smaller than the window use the largest odd window that fits.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(..., 1, H, W)``, e.g. ``(B, T, 1, H, W)`` or ``(N, 1, H, W)``, in p/255 (0..1).
    mask : torch.Tensor, optional
        Same shape, 1 = valid pixel. When given, the SSIM map is averaged over the window
        positions whose centre pixel is valid; a frame with no valid centre gives NaN.

    Returns
    -------
    torch.Tensor
        Shape ``(...)`` (the leading dims of the input), differentiable.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    p, lead = _as_frames(pred, "pred")
    t, _ = _as_frames(target, "target")
    smap = _ssim_map(p, t, data_range, win_size, sigma, k1, k2)
    if mask is None:
        values = smap.mean(dim=(-3, -2, -1))
    else:
        if mask.shape != pred.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} != pred shape {tuple(pred.shape)}")
        m, _ = _as_frames(mask.to(smap.dtype), "mask")
        dh = (m.shape[-2] - smap.shape[-2]) // 2
        dw = (m.shape[-1] - smap.shape[-1]) // 2
        mc = m[..., dh : dh + smap.shape[-2], dw : dw + smap.shape[-1]]
        values = (smap * mc).sum(dim=(-3, -2, -1)) / mc.sum(dim=(-3, -2, -1))
    return values.reshape(lead)


def _ssim_frames_numpy(
    p: np.ndarray,
    t: np.ndarray,
    mask: np.ndarray,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> np.ndarray:
    """:func:`ssim_per_frame` of ``(N, H, W)`` frames in numpy/scipy (no gradient).

    Same window, constants, valid-region cropping and mask rule as the torch version
    (``data_range`` 1); separable scipy filters are several times faster on CPU than a
    one-channel torch convolution. Returns float64 ``(N,)``.
    """
    from scipy.ndimage import correlate1d

    h, w = p.shape[-2:]
    win = min(win_size, h, w)
    if win % 2 == 0:
        win -= 1
    coords = np.arange(win, dtype=np.float64) - (win - 1) / 2.0
    g = np.exp(-(coords**2) / (2.0 * sigma**2))
    g = (g / g.sum()).astype(p.dtype)
    r = win // 2

    def blur(z: np.ndarray) -> np.ndarray:
        z = correlate1d(z, g, axis=-1, mode="constant")[..., :, r : w - r]
        return correlate1d(z, g, axis=-2, mode="constant")[..., r : h - r, :]

    c1 = k1**2
    c2 = k2**2
    mu_x = blur(p)
    mu_y = blur(t)
    sxx = blur(p * p) - mu_x**2
    syy = blur(t * t) - mu_y**2
    sxy = blur(p * t) - mu_x * mu_y
    smap = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    mc = mask[..., r : h - r, r : w - r]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (smap * mc).sum(axis=(-2, -1), dtype=np.float64) / mc.sum(
            axis=(-2, -1), dtype=np.float64
        )


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean SSIM over all frames; differentiable (use ``1 - ssim`` as a loss term).

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(B, T, 1, H, W)`` or ``(N, 1, H, W)`` in p/255 (0..1).
    data_range, win_size, sigma, k1, k2
        See :func:`ssim_per_frame` (defaults: 1.0, 11, 1.5, 0.01, 0.03).

    Returns
    -------
    torch.Tensor
        Scalar; 1 for identical frames.
    """
    return ssim_per_frame(
        pred, target, data_range=data_range, win_size=win_size, sigma=sigma, k1=k1, k2=k2
    ).mean()


# --------------------------------------------------------------------------- weights
def _band_edges_normalized() -> list[float]:
    return [float(v) for v in rainrate_to_normalized(np.asarray(BALANCE_THRESHOLDS_MMH))]


def balanced_weights(target_norm):
    """HKO-7 balanced per-pixel weights from the ground truth (docs/facts.md section 4).

    1 below 2 mm/h, 2 in [2, 5), 5 in [5, 10), 10 in [10, 30) and 30 at or above 30 mm/h;
    band edges are :func:`pipeline.units.rainrate_to_normalized` of those rain rates.

    Parameters
    ----------
    target_norm : torch.Tensor or numpy.ndarray
        Ground truth in p/255, any shape.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        Same type, shape and (floating) dtype as the input (float32 for integer input);
        not differentiable with respect to ``target_norm`` (the weights are step functions).
        Multiply by the mask yourself.
    """
    edges = _band_edges_normalized()
    if isinstance(target_norm, torch.Tensor):
        dtype = target_norm.dtype if target_norm.is_floating_point() else torch.float32
        w = torch.full(
            target_norm.shape, BALANCE_WEIGHTS[0], dtype=dtype, device=target_norm.device
        )
        t = target_norm.detach()
        for edge, weight in zip(edges, BALANCE_WEIGHTS[1:], strict=True):
            w = torch.where(t >= edge, torch.as_tensor(weight, dtype=dtype, device=w.device), w)
        return w
    arr = np.asarray(target_norm)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float32
    w = np.full(arr.shape, BALANCE_WEIGHTS[0], dtype=dtype)
    for edge, weight in zip(edges, BALANCE_WEIGHTS[1:], strict=True):
        w[arr >= edge] = weight
    return w


# --------------------------------------------------------------------------- categorical
def contingency_counts(
    pred: np.ndarray,
    obs: np.ndarray,
    thresholds: Sequence[float],
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Contingency table entries per threshold: event = value >= threshold.

    Parameters
    ----------
    pred, obs : numpy.ndarray
        Same shape ``(..., H, W)``, in whatever unit ``thresholds`` are in.
    thresholds : sequence of float
        Event thresholds (value >= threshold is an event).
    mask : numpy.ndarray, optional
        Same shape as ``pred``; only pixels with mask true / 1 are counted. NaN in ``pred``
        or ``obs`` counts as no event.

    Returns
    -------
    numpy.ndarray
        int64 ``(..., n_thresholds, 4)``: hits, false alarms, misses, correct negatives per
        leading index (summed over the last two axes ``H, W``).
    """
    pred = np.asarray(pred)
    obs = np.asarray(obs)
    if pred.shape != obs.shape:
        raise ValueError(f"pred shape {pred.shape} != obs shape {obs.shape}")
    if pred.ndim < 2:
        raise ValueError(f"expected arrays of shape (..., H, W); got shape {pred.shape}")
    valid = np.ones(pred.shape, dtype=bool) if mask is None else np.asarray(mask).astype(bool)
    if valid.shape != pred.shape:
        raise ValueError(f"mask shape {valid.shape} != pred shape {pred.shape}")
    out = np.empty(pred.shape[:-2] + (len(thresholds), 4), dtype=np.int64)
    with np.errstate(invalid="ignore"):
        for k, thr in enumerate(thresholds):
            fo = pred >= thr
            oo = obs >= thr
            out[..., k, 0] = np.sum(fo & oo & valid, axis=(-2, -1))
            out[..., k, 1] = np.sum(fo & ~oo & valid, axis=(-2, -1))
            out[..., k, 2] = np.sum(~fo & oo & valid, axis=(-2, -1))
            out[..., k, 3] = np.sum(~fo & ~oo & valid, axis=(-2, -1))
    return out


def categorical_scores(hits, false_alarms, misses, correct_negatives) -> dict[str, np.ndarray]:
    """POD, FAR, CSI and HSS from contingency counts (docs/facts.md section 4).

    ``POD = a/(a+c)``, ``FAR = b/(a+b)``, ``CSI = a/(a+b+c)``,
    ``HSS = 2(ad - bc) / ((a+c)(c+d) + (a+b)(b+d))``; NaN where a denominator is 0.

    Parameters
    ----------
    hits, false_alarms, misses, correct_negatives : array_like
        Counts ``a, b, c, d`` (any broadcastable shape).

    Returns
    -------
    dict
        ``{"POD", "FAR", "CSI", "HSS"}`` -> float64 arrays.
    """
    a, b, c, d = (
        np.asarray(v, dtype=np.float64) for v in (hits, false_alarms, misses, correct_negatives)
    )

    def div(num, den):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    return {
        "POD": div(a, a + c),
        "FAR": div(b, a + b),
        "CSI": div(a, a + b + c),
        "HSS": div(2.0 * (a * d - b * c), (a + c) * (c + d) + (a + b) * (b + d)),
    }


# --------------------------------------------------------------------------- PSNR
def psnr_per_frame(pred, target, mask=None, data_range: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio per frame, ``10 log10(L^2 / MSE)`` (thesis eq. 2.28).

    Parameters
    ----------
    pred, target : numpy.ndarray or torch.Tensor
        ``(..., H, W)`` in p/255.
    mask : array_like, optional
        1 = valid pixel; the MSE is taken over valid pixels only (NaN with none).
    data_range : float
        ``L``, the maximum pixel value (1 on the p/255 scale).

    Returns
    -------
    numpy.ndarray
        float64 ``(...)`` in dB. A perfect frame is reported as 100 dB (MSE floored at 1e-10).
    """
    p = _to_numpy(pred)
    t = _to_numpy(target)
    if p.shape != t.shape:
        raise ValueError(f"pred shape {p.shape} != target shape {t.shape}")
    m = np.ones(p.shape) if mask is None else _to_numpy(mask).astype(np.float64)
    n = m.sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        mse = ((p - t) ** 2 * m).sum(axis=(-2, -1)) / n
        return 10.0 * np.log10(data_range**2 / np.maximum(mse, _PSNR_MSE_FLOOR))


def _to_numpy(x, dtype=np.float64) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


# --------------------------------------------------------------------------- accumulator
_CHUNK = 8
"""Frames processed at once by :meth:`MetricAccumulator.update` (bounds memory)."""

_STAT_KEYS = ("bmse", "bmae", "mse", "mae", "ssim", "psnr")
_SUM_FIELDS = (
    "n_frames",
    "n_valid_frames",
    "n_ssim_frames",
    "bmse",
    "bmae",
    "mse",
    "mae",
    "ssim",
    "psnr",
)


class MetricAccumulator:
    """Stream the HKO-7 and thesis metrics over batches, per lead time.

    Call :meth:`update` with each batch of predictions, targets, target lead times and
    target masks, then :meth:`result` for an :class:`xarray.Dataset`. Lead times are
    collected as they appear (rounded to 1e-3 minutes), so irregular target times work:
    frames are grouped by their actual lead time in minutes.

    Parameters
    ----------
    thresholds_mmh : sequence of float
        Event thresholds in mm/h (default HKO-7's 0.5, 2, 5, 10, 30).

    Notes
    -----
    Per lead time the accumulator keeps: contingency counts summed over frames (only
    mask = 1 pixels), the sums over frames of B-MSE / B-MAE (frame SUM of
    ``w * mask * err^2`` / ``w * mask * |err|``, p/255 units) and the number of frames, and
    the sums over frames with at least one valid pixel of the per-frame masked MSE, MAE,
    SSIM and PSNR. Frames with no valid pixel (missing targets) add only to ``n_frames``
    and B-MSE / B-MAE (with zero). Frames are processed in float32, a few at a time, so
    memory stays bounded for 480 x 480 batches; sums are accumulated in float64.
    """

    def __init__(self, thresholds_mmh: Sequence[float] = RAIN_THRESHOLDS_MMH) -> None:
        self.thresholds_mmh = tuple(float(t) for t in thresholds_mmh)
        self._thr_norm = [float(v) for v in rainrate_to_normalized(np.asarray(self.thresholds_mmh))]
        order = np.argsort(self._thr_norm)
        self._thr_sorted = np.asarray(self._thr_norm)[order]
        self._thr_order_inv = np.argsort(order)
        self._counts: dict[float, np.ndarray] = {}
        self._sums: dict[float, dict[str, float]] = {}

    def update(
        self,
        pred: torch.Tensor | np.ndarray,
        target: torch.Tensor | np.ndarray,
        t_out: torch.Tensor | np.ndarray,
        mask: torch.Tensor | np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Add one batch; return its per-frame statistics.

        Parameters
        ----------
        pred, target : torch.Tensor or numpy.ndarray
            ``(B, T, 1, H, W)`` in p/255.
        t_out : torch.Tensor or numpy.ndarray
            ``(B, T)`` lead times in minutes (relative to the last input frame).
        mask : torch.Tensor or numpy.ndarray, optional
            ``(B, T, 1, H, W)``, 1 = valid target pixel.

        Returns
        -------
        dict of str to numpy.ndarray
            Per frame (dims ``(B, T, ...)``): ``lead`` (min), ``counts`` (``(B, T, K, 4)``),
            ``valid``, ``ssim_valid`` (bool), :data:`_STAT_KEYS` (0 where not valid) and
            ``pred``, ``target``, ``mask`` (``(B, T, H, W)``; :mod:`nowcast.verification`).
        """
        p = _to_numpy(pred, np.float32)
        t = _to_numpy(target, np.float32)
        if p.ndim != 5 or p.shape[2] != 1:
            raise ValueError(f"pred must have shape (B, T, 1, H, W); got {p.shape}")
        if p.shape != t.shape:
            raise ValueError(f"pred shape {p.shape} != target shape {t.shape}")
        m = np.ones(p.shape, dtype=bool) if mask is None else _to_numpy(mask, np.float32) > 0.5
        if m.shape != p.shape:
            raise ValueError(f"mask shape {m.shape} != pred shape {p.shape}")
        finite = np.isfinite(t)
        m = m & finite  # an unobserved (NaN) target pixel is not valid
        t = np.where(finite, t, np.float32(0.0))
        leads = _to_numpy(t_out)
        if leads.shape != p.shape[:2]:
            raise ValueError(f"t_out must have shape (B, T) = {p.shape[:2]}; got {leads.shape}")
        if not np.all(np.isfinite(p)):
            raise ValueError("pred contains NaN or infinite values")
        p_shape = p.shape
        n_frames = p.shape[0] * p.shape[1]
        h, w = p.shape[-2:]
        p = p.reshape(n_frames, h, w)
        t = t.reshape(n_frames, h, w)
        m = m.reshape(n_frames, h, w)
        stats = [
            self._frame_stats(p[i : i + _CHUNK], t[i : i + _CHUNK], m[i : i + _CHUNK])
            for i in range(0, n_frames, _CHUNK)
        ]
        counts, bmse, bmae, nvalid, sse, sae, s = (
            np.concatenate([st[k] for st in stats]) for k in range(7)
        )
        counts = counts.reshape(p_shape[:2] + counts.shape[1:])
        bmse, bmae, nvalid, sse, sae, s = (
            v.reshape(p_shape[:2]) for v in (bmse, bmae, nvalid, sse, sae, s)
        )
        has = nvalid > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            mse = np.where(has, sse / nvalid, 0.0)
            mae = np.where(has, sae / nvalid, 0.0)
            psnr = np.where(has, 10.0 * np.log10(1.0 / np.maximum(mse, _PSNR_MSE_FLOOR)), 0.0)
        has_ssim = has & np.isfinite(s)
        s = np.where(has_ssim, s, 0.0)

        keys = np.round(leads, 3)
        for lead in np.unique(keys):
            sel = keys == lead
            lead = float(lead)
            if lead not in self._counts:
                self._counts[lead] = np.zeros((len(self._thr_norm), 4), dtype=np.int64)
                self._sums[lead] = dict.fromkeys(_SUM_FIELDS, 0.0)
            self._counts[lead] += counts[sel].sum(axis=0)
            acc = self._sums[lead]
            acc["n_frames"] += float(sel.sum())
            acc["n_valid_frames"] += float((sel & has).sum())
            acc["bmse"] += float(bmse[sel].sum())
            acc["bmae"] += float(bmae[sel].sum())
            acc["mse"] += float(mse[sel & has].sum())
            acc["mae"] += float(mae[sel & has].sum())
            acc["n_ssim_frames"] += float((sel & has_ssim).sum())
            acc["ssim"] += float(s[sel & has_ssim].sum())
            acc["psnr"] += float(psnr[sel & has].sum())
        out = dict(zip(_STAT_KEYS, (bmse, bmae, mse, mae, s, psnr), strict=True))
        fields = {"pred": p, "target": t, "mask": m}
        out.update({k: v.reshape(p_shape[:2] + (h, w)) for k, v in fields.items()})
        return {**out, "lead": keys, "counts": counts, "valid": has, "ssim_valid": has_ssim}

    def _frame_stats(self, p: np.ndarray, t: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per-frame statistics of ``(N, H, W)`` float32 frames and bool mask.

        Contingency counts come from one joint histogram of (forecast band, observed band)
        per frame, bands cut at the sorted thresholds (band >= k+1 <=> value >= thr_k).
        """
        n = p.shape[0]
        k = len(self._thr_sorted)
        nb = k + 1
        bp = np.searchsorted(self._thr_sorted, p, side="right")
        bo = np.searchsorted(self._thr_sorted, t, side="right")
        code = (np.arange(n)[:, None, None] * nb + bp) * nb + bo
        joint = np.bincount(code[m], minlength=n * nb * nb).reshape(n, nb, nb)
        # tail sums: S[i, j] = sum of joint[a >= i, b >= j]
        tail = joint[:, ::-1, ::-1].cumsum(1).cumsum(2)[:, ::-1, ::-1]
        total = tail[:, 0, 0]
        idx = np.arange(1, nb)
        hits = tail[:, idx, idx]
        f_events = tail[:, idx, 0]
        o_events = tail[:, 0, idx]
        fa = f_events - hits
        miss = o_events - hits
        cn = total[:, None] - hits - fa - miss
        counts = np.stack([hits, fa, miss, cn], axis=-1)[:, self._thr_order_inv]

        mf = m.astype(np.float32)
        err = p - t
        w = balanced_weights(t) * mf
        e2 = err * err
        ea = np.abs(err)
        bmse = (w * e2).sum(axis=(-2, -1), dtype=np.float64)
        bmae = (w * ea).sum(axis=(-2, -1), dtype=np.float64)
        nvalid = mf.sum(axis=(-2, -1), dtype=np.float64)
        sse = (e2 * mf).sum(axis=(-2, -1), dtype=np.float64)
        sae = (ea * mf).sum(axis=(-2, -1), dtype=np.float64)
        s = _ssim_frames_numpy(p, t, mf)
        return counts, bmse, bmae, nvalid, sse, sae, s

    @property
    def lead_times(self) -> list[float]:
        """Lead times (minutes) seen so far, sorted."""
        return sorted(self._counts)

    def result(self) -> xr.Dataset:
        """Scores per lead time (and per threshold for the categorical ones).

        Returns
        -------
        xarray.Dataset
            Dims ``lead_time`` (minutes, float) and ``threshold`` (mm/h). Variables:
            ``hits``, ``false_alarms``, ``misses``, ``correct_negatives`` (int64,
            lead_time x threshold), ``POD``, ``FAR``, ``CSI``, ``HSS`` (same dims),
            ``B-MSE``, ``B-MAE`` (per frame sums in p/255 units averaged over frames),
            ``MSE``, ``MAE`` (per pixel, p/255 units, NOT yet scaled by 1e4), ``SSIM``
            (0..1), ``PSNR`` (dB), ``n_frames``, ``n_valid_frames`` (lead_time).
        """
        leads = self.lead_times
        if not leads:
            raise ValueError("MetricAccumulator.result() called before any update()")
        counts = np.stack([self._counts[k] for k in leads])  # (L, K, 4)
        scores = categorical_scores(*(counts[..., i] for i in range(4)))
        sums = {f: np.array([self._sums[k][f] for k in leads]) for f in _SUM_FIELDS}
        with np.errstate(divide="ignore", invalid="ignore"):
            nf = np.where(sums["n_frames"] > 0, sums["n_frames"], np.nan)
            nv = np.where(sums["n_valid_frames"] > 0, sums["n_valid_frames"], np.nan)
            ns = np.where(sums["n_ssim_frames"] > 0, sums["n_ssim_frames"], np.nan)
        dims2 = ("lead_time", "threshold")
        data = {
            "hits": (dims2, counts[..., 0]),
            "false_alarms": (dims2, counts[..., 1]),
            "misses": (dims2, counts[..., 2]),
            "correct_negatives": (dims2, counts[..., 3]),
            **{k: (dims2, v) for k, v in scores.items()},
            "B-MSE": ("lead_time", sums["bmse"] / nf),
            "B-MAE": ("lead_time", sums["bmae"] / nf),
            "MSE": ("lead_time", sums["mse"] / nv),
            "MAE": ("lead_time", sums["mae"] / nv),
            "SSIM": ("lead_time", sums["ssim"] / ns),
            "PSNR": ("lead_time", sums["psnr"] / nv),
            "n_frames": ("lead_time", sums["n_frames"].astype(np.int64)),
            "n_valid_frames": ("lead_time", sums["n_valid_frames"].astype(np.int64)),
        }
        ds = xr.Dataset(
            data,
            coords={
                "lead_time": (
                    "lead_time",
                    np.asarray(leads, dtype=np.float64),
                    {"units": "minutes"},
                ),
                "threshold": ("threshold", np.asarray(self.thresholds_mmh), {"units": "mm/h"}),
            },
        )
        ds["B-MSE"].attrs["units"] = "sum over frame of w*err^2, p/255"
        ds["B-MAE"].attrs["units"] = "sum over frame of w*|err|, p/255"
        ds["MSE"].attrs["units"] = "p/255 squared (thesis prints x1e4)"
        ds["MAE"].attrs["units"] = "p/255 (thesis prints x1e4)"
        ds["SSIM"].attrs["units"] = "1 (thesis prints x1e2)"
        ds["PSNR"].attrs["units"] = "dB"
        return ds
