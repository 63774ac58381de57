"""Motion fields of radar sequences: a registry of optical-flow methods with one contract.

Every method is a callable built by :func:`get_motion`::

    method(frames, masks=None, times=None, cadence_minutes=6.0) -> MotionEstimate

``frames``
    ``(T, H, W)`` float, the normalised pixel scale p/255 (0..1), oldest first. NaN counts
    as an invalid pixel.
``masks``
    ``(T, H, W)`` bool, True = valid pixel, or None (every finite pixel valid). A frame with
    no valid pixel is a missing frame and is not used.
``times``
    ``(T,)`` minutes, strictly increasing (any origin), or None for a regular cadence.
    Irregular gaps are handled pair by pair: the displacement between two consecutive
    observed frames is divided by their gap in cadence steps.
``cadence_minutes``
    The time unit of the result.

The result :class:`MotionEstimate` holds ``field``, float32 ``(2, H, W)`` in **pixels per
cadence step**: channel 0 is the x component (along columns, + to the right), channel 1 the
y component (along rows, + downwards), the layout of pysteps' ``(u, v)`` and of the TrajGRU
warp (:mod:`nowcast.modules.trajgru`). A frame advected by it moves by ``field`` pixels per
step: ``frame[t+1](y + v, x + u) ~ frame[t](y, x)``.

Estimation never raises for reasons of the data: when motion cannot be estimated the field
is zero, ``fallback`` says why (and ``status`` gives a short code, see
:data:`FALLBACK_STATUSES`), and a warning goes to the ``pipeline.motion`` logger. The
reasons: fewer than 2 observed frames, no rain (no valid pixel above zero), a uniform field
(every frame flat), frozen frames (all observed frames identical, e.g. a stuck radar
product), no trackable features, or the pysteps method raising. Bad *arguments* (shapes,
times) raise ValueError.

Coarse grid
    Motion fields are smooth, so the methods estimate them on a coarse grid: the frames are
    block-averaged (mean over the valid pixels of each ``f x f`` block; a block is valid when
    at least half of its pixels are) with ``f = ceil(max(H, W) / grid)``, motion is estimated
    there, its vectors multiplied by ``f`` (coarse pixels to fine pixels) and the field
    bilinearly interpolated back to ``(H, W)`` (coarse pixel centres at fine coordinates
    ``f * j + (f - 1) / 2``). ``grid=None`` estimates at full resolution.

Methods (:data:`MOTION_NAMES`)

``lk``
    pysteps Lucas-Kanade (:func:`pysteps.motion.lucaskanade.dense_lucaskanade` with
    ``dense=False``): Shi-Tomasi features tracked in each consecutive pair of observed
    frames, vectors divided by the pair's gap, pooled over the pairs, declustered
    (:func:`pysteps.utils.cleansing.decluster`, scale 20 full-resolution pixels) and
    interpolated by inverse-distance weighting (``idwinterp2d``). Default ``grid=128``.
    ``grid=None, idw_grid=128`` is the reference computation of
    :class:`nowcast.baselines.PystepsBaseline`. The sparse vectors of recent pairs are
    cached, so overlapping windows track each pair once.
``vet``
    pysteps VET (variational echo tracking, :func:`pysteps.motion.vet.vet`) on the coarse
    grid, default ``grid=96`` (on a 60-point grid VET underestimated sub-pixel coarse
    displacements by up to 12 %; VET pads the grid to its sector counts). VET takes two or
    three regularly spaced frames: when the latest three observed frames (or two, if only
    two) are regular they are tracked together, the older ones unused; otherwise each
    consecutive pair is tracked and the per-step fields are averaged, each pair counting
    once.
``zero``
    Zero motion (persistence), ``fallback`` None.

pysteps' DARTS is not offered: it needs regularly spaced frames (more than ``N_t + 1`` of
them) and on the test translations below it recovered about a third of the speed.

Cost and accuracy on 480 x 480 frames (``benchmarks/motion.py``; a smooth random rain
texture translated by (+3, -2) px/step, largest error over the interior): ``lk`` on the
128-point grid about 0.09 s and 0.04 px/step against 0.34 s and 0.03 px/step at full
resolution; ``vet`` about 0.5 s and 0.07 px/step (2-core machine under load).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np

__all__ = [
    "FALLBACK_STATUSES",
    "MOTION_NAMES",
    "LucasKanadeMotion",
    "MotionEstimate",
    "VETMotion",
    "ZeroMotion",
    "block_average",
    "get_motion",
    "quiet_pysteps",
    "upsample_motion",
]

logger = logging.getLogger(__name__)

FALLBACK_STATUSES: tuple[str, ...] = (
    "ok",
    "too_few_frames",
    "no_rain",
    "uniform_field",
    "frozen_field",
    "no_vectors",
    "method_failed",
)
"""``MotionEstimate.status`` values; their index is the code stored in a resampled store's
``motion_fallback`` variable (0 = estimated)."""

_FLAT = 1e-6  # p/255 range below which a frame is "uniform"


@dataclass(frozen=True)
class MotionEstimate:
    """A motion field and how it was obtained.

    Attributes
    ----------
    field : numpy.ndarray
        ``(2, H, W)`` float32 pixels per cadence step; channel 0 = x (columns, + right),
        channel 1 = y (rows, + down).
    method : str
        Registry name of the method that made it.
    fallback : str or None
        None when the motion was estimated; otherwise the reason zero motion was returned.
    status : str
        ``"ok"`` or the short code of the fallback (one of :data:`FALLBACK_STATUSES`).
    """

    field: np.ndarray
    method: str
    fallback: str | None = None
    status: str = "ok"

    @property
    def code(self) -> int:
        """Index of :attr:`status` in :data:`FALLBACK_STATUSES` (0 = estimated)."""
        return FALLBACK_STATUSES.index(self.status)


class _Fallback(Exception):
    """Raised inside a method: zero motion, with a status code and a reason."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


# --------------------------------------------------------------------------- grids


def block_average(
    frames: np.ndarray, valid: np.ndarray, factor: int, min_valid_fraction: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Mask-aware block mean of ``(T, H, W)`` frames on ``factor x factor`` blocks.

    Frames whose size is not a multiple of ``factor`` are padded with invalid pixels.

    Parameters
    ----------
    frames : numpy.ndarray
        ``(T, H, W)`` values (any unit; NaN is treated as invalid).
    valid : numpy.ndarray
        ``(T, H, W)`` bool, True = valid pixel.
    factor : int
        Block size, >= 1.
    min_valid_fraction : float
        A block is valid when at least this fraction of its pixels are valid.

    Returns
    -------
    mean : numpy.ndarray
        ``(T, ceil(H / factor), ceil(W / factor))`` float64 mean over the valid pixels of
        each block, NaN where the block is not valid.
    valid_coarse : numpy.ndarray
        Same shape, bool.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    use = np.asarray(valid, dtype=bool) & np.isfinite(frames)
    if factor == 1:
        return np.where(use, frames, np.nan).astype(np.float64), use
    t, h, w = frames.shape
    hc, wc = -(-h // factor), -(-w // factor)
    vals = np.where(use, frames, 0.0)
    if (hc * factor, wc * factor) != (h, w):
        pad = ((0, 0), (0, hc * factor - h), (0, wc * factor - w))
        vals, use = np.pad(vals, pad), np.pad(use, pad)
    total = vals.reshape(t, hc, factor, wc, factor).sum(axis=(2, 4))
    count = use.reshape(t, hc, factor, wc, factor).sum(axis=(2, 4), dtype=np.int32)
    ok = count >= min_valid_fraction * factor * factor
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, total / np.maximum(count, 1), np.nan)
    return mean, ok


def upsample_motion(coarse: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear interpolation of a coarse motion field to the fine grid, scaled by ``factor``.

    Parameters
    ----------
    coarse : numpy.ndarray
        ``(2, h, w)`` in coarse pixels per step, coarse pixel ``j`` covering fine pixels
        ``f*j .. f*j + f - 1`` (see :func:`block_average`).
    factor : int
        Block size ``f``.
    shape : tuple of int
        Fine ``(H, W)``.

    Returns
    -------
    numpy.ndarray
        ``(2, H, W)`` float32 in fine pixels per step (values beyond the outer coarse
        centres are held constant).
    """
    coarse = np.asarray(coarse, dtype=np.float64) * factor
    h, w = shape
    if factor == 1:
        return coarse[:, :h, :w].astype(np.float32)

    def _weights(n_fine: int, n_coarse: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(n_fine) - (factor - 1) / 2) / factor, 0, n_coarse - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, n_coarse - 1)
        return lo, hi, pos - lo

    y0, y1, wy = _weights(h, coarse.shape[1])
    x0, x1, wx = _weights(w, coarse.shape[2])
    rows = coarse[:, y0] * (1 - wy)[None, :, None] + coarse[:, y1] * wy[None, :, None]
    out = rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx
    return out.astype(np.float32)


# --------------------------------------------------------------------------- contract


def _check(frames, masks, times, cadence_minutes):
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 3:
        raise ValueError(f"frames must be (T, H, W) on the p/255 scale; got shape {frames.shape}")
    if masks is None:
        masks = np.isfinite(frames)
    else:
        masks = np.asarray(masks)
        if masks.shape != frames.shape:
            raise ValueError(
                f"masks must have the shape of frames {frames.shape}; got {masks.shape}"
            )
        masks = masks.astype(bool) & np.isfinite(frames)
    if not (np.isfinite(cadence_minutes) and cadence_minutes > 0):
        raise ValueError(f"cadence_minutes must be a positive number, got {cadence_minutes}")
    t = frames.shape[0]
    if times is None:
        times = np.arange(t, dtype=np.float64) * cadence_minutes
    else:
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        if times.shape != (t,):
            raise ValueError(f"times must have shape (T,) = ({t},); got {times.shape}")
        if not np.isfinite(times).all() or (t > 1 and (np.diff(times) <= 0).any()):
            raise ValueError(f"times must be finite and strictly increasing minutes; got {times}")
    return frames, masks, times


def _screen(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Indices of the observed frames; raises :class:`_Fallback` when motion is undefined."""
    observed = np.flatnonzero(masks.reshape(masks.shape[0], -1).any(axis=1))
    if len(observed) < 2:
        raise _Fallback(
            "too_few_frames", f"fewer than 2 observed frames ({len(observed)} of {len(frames)})"
        )
    vals = [frames[k][masks[k]] for k in observed]
    if max(float(v.max()) for v in vals) <= 0.0:
        raise _Fallback("no_rain", "no rain: no valid pixel above zero in any observed frame")
    if all(float(v.max() - v.min()) < _FLAT for v in vals):
        raise _Fallback("uniform_field", "uniform field: every observed frame is flat")
    first = np.where(masks[observed[0]], frames[observed[0]], 0.0)
    if all(
        np.array_equal(masks[k], masks[observed[0]])
        and np.abs(np.where(masks[k], frames[k], 0.0) - first).max() < _FLAT
        for k in observed[1:]
    ):
        raise _Fallback("frozen_field", "frozen field: all observed frames are identical")
    return observed


@contextlib.contextmanager
def quiet_pysteps():
    """Silence pysteps' expected warnings while motion is estimated.

    pysteps' outlier detection warns (singular covariance, dof <= 0) when a pair yields
    only a few vectors; they are then kept, as intended. :func:`warnings.catch_warnings`
    swaps process-wide state, so it is only entered from the main thread; code running
    methods in worker threads (:func:`pipeline.motion_store.write_motion`) enters it once
    around them instead.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message="Singular matrix")
        yield


@dataclass
class _GridMethod:
    """Shared driver: checks, screening, coarse grid, upsampling and fallbacks."""

    grid: int | None = None
    name: str = ""

    def _estimate(
        self, frames: np.ndarray, masks: np.ndarray, steps: np.ndarray, factor: int
    ) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def factor(self, shape: tuple[int, int]) -> int:
        """Block size used for frames of ``shape`` ``(H, W)``."""
        if self.grid is None:
            return 1
        return max(1, math.ceil(max(shape) / int(self.grid)))

    def __call__(
        self,
        frames: np.ndarray,
        masks: np.ndarray | None = None,
        times: np.ndarray | None = None,
        cadence_minutes: float = 6.0,
    ) -> MotionEstimate:
        """Motion of ``frames``; see the module docstring for the contract."""
        frames, masks, times = _check(frames, masks, times, cadence_minutes)
        shape = frames.shape[-2:]
        try:
            observed = _screen(frames, masks)
            f = self.factor(shape)
            coarse, cvalid = block_average(frames[observed], masks[observed], f)
            steps = np.diff(times[observed]) / cadence_minutes
            try:
                with quiet_pysteps():
                    uv = self._estimate(coarse, cvalid, steps, f)
            except _Fallback:
                raise
            except Exception as err:  # noqa: BLE001 - any pysteps failure means "no motion"
                raise _Fallback(
                    "method_failed", f"pysteps {self.name} raised {type(err).__name__}: {err}"
                ) from err
            if not np.isfinite(uv).all():
                raise _Fallback("method_failed", f"{self.name} returned non-finite motion")
            return MotionEstimate(upsample_motion(uv, f, shape), self.name)
        except _Fallback as fb:
            logger.warning("motion %s: zero motion used: %s", self.name, fb.reason)
            return MotionEstimate(
                np.zeros((2,) + shape, dtype=np.float32), self.name, fb.reason, fb.status
            )


@dataclass
class LucasKanadeMotion(_GridMethod):
    """pysteps Lucas-Kanade motion on a coarse grid (see the module docstring).

    Parameters
    ----------
    grid : int or None
        About this many coarse points per side (block factor ``ceil(max(H, W) / grid)``);
        None = full resolution.
    lk_kwargs : dict, optional
        Extra keyword arguments of :func:`pysteps.motion.lucaskanade.dense_lucaskanade`
        (``dense`` is always False here; lengths are in coarse pixels).
    decluster_scale : float
        Decluster scale in full-resolution pixels (divided by the block factor, at least 1).
    idw_grid : int
        The inverse-distance interpolation is computed every ``ceil(n / idw_grid)`` pixels
        of an ``n``-pixel side and bilinearly upsampled (the field is smooth).
    cache_pairs : int
        Sparse vectors of this many recent frame pairs are kept (per thread, keyed by the
        pairs' bytes): overlapping windows (consecutive slots of a store, sequent samples)
        track each pair once. 0 disables the cache.
    """

    grid: int | None = 128
    lk_kwargs: dict | None = None
    decluster_scale: float = 20.0
    idw_grid: int = 64
    cache_pairs: int = 16
    name: str = "lk"

    def __post_init__(self) -> None:
        self._local = threading.local()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _pair_vectors(self, lk, pair: np.ndarray, kwargs: dict) -> tuple[np.ndarray, np.ndarray]:
        """Sparse ``(xy, uv)`` of one ``(2, h, w)`` pair (NaN = invalid), cached."""
        if self.cache_pairs <= 0:
            return lk(pair, **kwargs)
        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = OrderedDict()
        key = hashlib.blake2b(pair.tobytes() + repr(pair.shape).encode(), digest_size=16).digest()
        hit = cache.get(key)
        if hit is not None:
            cache.move_to_end(key)
            return hit
        value = lk(pair, **kwargs)
        cache[key] = value
        if len(cache) > self.cache_pairs:
            cache.popitem(last=False)
        return value

    def _estimate(self, frames, masks, steps, factor):
        from pysteps import motion, utils
        from pysteps.utils.cleansing import decluster

        h, w = frames.shape[-2:]
        lk = motion.get_method("lk")
        kwargs = {**(self.lk_kwargs or {}), "dense": False}
        xy_all, uv_all = [], []
        for k in range(frames.shape[0] - 1):
            pair = np.where(masks[k : k + 2], frames[k : k + 2], np.nan)
            if np.nanmax(pair) - np.nanmin(pair) < _FLAT:
                continue  # no echo in this pair: nothing to track
            xy, uv = self._pair_vectors(lk, pair, kwargs)
            if xy.shape[0] == 0:
                continue
            xy_all.append(xy)
            uv_all.append(uv / steps[k])
        if not xy_all:
            raise _Fallback("no_vectors", "Lucas-Kanade found no trackable features")
        xy, uv = decluster(
            np.concatenate(xy_all),
            np.concatenate(uv_all),
            max(1.0, self.decluster_scale / factor),
            1,
            False,
        )
        if xy.shape[0] == 0:
            raise _Fallback("no_vectors", "no Lucas-Kanade vectors left after declustering")
        interp = utils.get_method("idwinterp2d")
        step = max(1, math.ceil(max(h, w) / self.idw_grid))
        if step == 1:
            return interp(xy, uv, np.arange(w), np.arange(h))
        # idw costs grid points x vectors: sample it every `step` pixels, then bilinearly
        # upsample (the scheme of PystepsBaseline before this module existed)
        from scipy.ndimage import map_coordinates

        coarse = interp(xy, uv, np.arange(0, w, step), np.arange(0, h, step))
        yy, xx = np.mgrid[:h, :w] / step
        return np.stack([map_coordinates(c, [yy, xx], order=1, mode="nearest") for c in coarse])


@contextlib.contextmanager
def _openmp_threads(n: int | None):
    """Limit OpenMP (libgomp) threads of parallel regions started by this thread."""
    if n is None:
        yield
        return
    import ctypes

    try:
        gomp = ctypes.CDLL("libgomp.so.1")
        before = int(gomp.omp_get_max_threads())
    except (OSError, AttributeError):
        yield  # no libgomp: nothing to limit
        return
    gomp.omp_set_num_threads(int(n))
    try:
        yield
    finally:
        gomp.omp_set_num_threads(before)


@dataclass
class VETMotion(_GridMethod):
    """pysteps VET motion on a coarse grid (see the module docstring).

    Parameters
    ----------
    grid : int or None
        About this many coarse points per side (VET's cost grows with it: 0.3-0.6 s at
        96 on this machine for 480 x 480 frames).
    sectors : tuple
        VET's scaling sectors (:func:`pysteps.motion.vet.vet`); three levels instead of
        pysteps' four (32 sectors on a 96-point grid are 3-point sectors).
    smooth_gain : float
        VET's smoothness penalty.
    maxiter : int
        Iterations of the minimiser per scaling level, a bound on the cost of hard cases
        (the test translations converge before it).
    scale : float
        The p/255 frames are multiplied by this before VET (255: pixel values), which sets
        the balance between the image cost and ``smooth_gain``.
    vet_kwargs : dict, optional
        Other keyword arguments of :func:`pysteps.motion.vet.vet`.
    threads : int or None
        OpenMP threads of VET's compiled cost function (None: OpenMP's default). On a
        coarse grid the work per parallel region is tiny, and on a busy 2-core machine
        OpenMP's default threads made one 480 x 480 estimate take 15-25 s instead of
        0.3 s, hence 1.
    """

    grid: int | None = 96
    sectors: tuple = ((16, 4, 2), (16, 4, 2))
    smooth_gain: float = 1e6
    maxiter: int = 20
    scale: float = 255.0
    vet_kwargs: dict | None = None
    threads: int | None = 1
    name: str = "vet"

    def _vet(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        from pysteps.motion.vet import vet

        data = np.ma.MaskedArray(np.where(masks, frames, 0.0) * self.scale, mask=~masks)
        kwargs = {
            "sectors": self.sectors,
            "smooth_gain": self.smooth_gain,
            "verbose": False,
            "options": {"maxiter": int(self.maxiter)},
        }
        with _openmp_threads(self.threads):
            out = vet(data, **{**kwargs, **(self.vet_kwargs or {})})
        return np.asarray(out[0] if isinstance(out, tuple) else out)

    def _estimate(self, frames, masks, steps, factor):
        if np.allclose(steps[-2:], steps[-1]):
            # VET takes 2 or 3 regular frames: the latest ones
            return self._vet(frames[-3:], masks[-3:]) / steps[-1]
        fields = [
            self._vet(frames[k : k + 2], masks[k : k + 2]) / steps[k]
            for k in range(frames.shape[0] - 1)
        ]
        return np.mean(fields, axis=0)


@dataclass
class ZeroMotion:
    """Zero motion: the field of persistence (same call contract)."""

    name: str = "zero"
    grid: int | None = dc_field(default=None, repr=False)

    def __call__(self, frames, masks=None, times=None, cadence_minutes=6.0) -> MotionEstimate:
        """Zeros ``(2, H, W)``; arguments are validated as for the other methods."""
        frames, _, _ = _check(frames, masks, times, cadence_minutes)
        return MotionEstimate(np.zeros((2,) + frames.shape[-2:], dtype=np.float32), self.name)


_METHODS: dict[str, Callable[..., Callable[..., MotionEstimate]]] = {
    "lk": LucasKanadeMotion,
    "vet": VETMotion,
    "zero": ZeroMotion,
}
MOTION_NAMES: tuple[str, ...] = tuple(_METHODS)


def get_motion(name: str, **kwargs) -> Callable[..., MotionEstimate]:
    """Build a motion method by name.

    Parameters
    ----------
    name : str
        One of :data:`MOTION_NAMES` (case-insensitive).
    **kwargs
        Passed to the method's constructor (e.g. ``grid=96``).

    Returns
    -------
    callable
        ``method(frames, masks=None, times=None, cadence_minutes=6.0) -> MotionEstimate``.
    """
    key = str(name).lower()
    if key not in _METHODS:
        raise ValueError(f"unknown motion method {name!r}; valid names: {', '.join(MOTION_NAMES)}")
    return _METHODS[key](**kwargs)
