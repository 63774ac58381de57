"""Input corruptions for robustness tests (noise, outliers, missing regions, missing frames).

Each corruption is a function ``corrupt(x, input_mask, level, generator) -> (x, input_mask)``
on a batch of input frames ``x`` ``(B, T_in, 1, H, W)`` in p/255 and its mask (1 = valid);
it returns new tensors and never modifies its arguments. Level 0 returns the inputs
unchanged. Randomness comes only from ``generator`` (a seeded :class:`torch.Generator`), so
an evaluation is reproducible and every predictor sees the same corrupted batch.

Registry (:func:`get_perturbation`), with the default levels in :data:`DEFAULT_LEVELS`:

``gaussian``
    Additive Gaussian noise of standard deviation ``level`` (p/255 units) on valid pixels,
    clipped to [0, 1].
``salt_pepper``
    A fraction ``level`` of the valid pixels of every frame set to 0 or 1 (equal odds).
``missing_region``
    A square of side ``level * min(H, W)`` at a random position per sample, blanked (0) in
    every input frame and marked missing (mask 0).
``drop_frames``
    ``int(level)`` randomly chosen input frames per sample dropped: zero-filled and marked
    missing (mask 0), as the HKO-7 protocol does for missing frames; at least one observed
    frame is always kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["DEFAULT_LEVELS", "PERTURBATION_NAMES", "Perturbation", "get_perturbation"]

Corruption = Callable[
    [torch.Tensor, torch.Tensor, float, torch.Generator], tuple[torch.Tensor, torch.Tensor]
]


def _gaussian(x, mask, level, generator):
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) * level
    valid = mask > 0.5
    return torch.where(valid, (x + noise.to(x.device)).clamp(0.0, 1.0), x), mask.clone()


def _salt_pepper(x, mask, level, generator):
    u = torch.rand(x.shape, generator=generator).to(x.device)
    salt = torch.rand(x.shape, generator=generator).to(x.device) < 0.5
    hit = (u < level) & (mask > 0.5)
    out = torch.where(hit, salt.to(x.dtype), x)
    return out, mask.clone()


def _missing_region(x, mask, level, generator):
    b, _, _, h, w = x.shape
    side = int(round(level * min(h, w)))
    out, m = x.clone(), mask.clone()
    if side <= 0:
        return out, m
    for i in range(b):
        y0 = int(torch.randint(0, h - side + 1, (1,), generator=generator))
        x0 = int(torch.randint(0, w - side + 1, (1,), generator=generator))
        out[i, :, :, y0 : y0 + side, x0 : x0 + side] = 0.0
        m[i, :, :, y0 : y0 + side, x0 : x0 + side] = 0.0
    return out, m


def _drop_frames(x, mask, level, generator):
    b, t = x.shape[:2]
    out, m = x.clone(), mask.clone()
    n_drop = int(level)
    if n_drop <= 0:
        return out, m
    for i in range(b):
        observed = torch.nonzero(
            (mask[i].reshape(t, -1) > 0.5).any(-1).cpu(), as_tuple=False
        ).flatten()
        k = min(n_drop, observed.numel() - 1)
        if k <= 0:
            continue
        perm = torch.randperm(observed.numel(), generator=generator)[:k]
        drop = observed[perm].to(x.device)
        out[i, drop] = 0.0
        m[i, drop] = 0.0
    return out, m


_PERTURBATIONS: dict[str, Corruption] = {
    "gaussian": _gaussian,
    "salt_pepper": _salt_pepper,
    "missing_region": _missing_region,
    "drop_frames": _drop_frames,
}
PERTURBATION_NAMES: tuple[str, ...] = tuple(_PERTURBATIONS)

DEFAULT_LEVELS: dict[str, tuple[float, ...]] = {
    "gaussian": (0.0, 0.02, 0.05, 0.1, 0.2),
    "salt_pepper": (0.0, 0.01, 0.05, 0.1, 0.2),
    "missing_region": (0.0, 0.1, 0.25, 0.4, 0.6),
    "drop_frames": (0.0, 1.0, 2.0, 3.0, 4.0),
}
"""Corruption levels per kind: noise std (p/255), pixel fraction, region side fraction,
number of dropped input frames."""


def get_perturbation(name: str) -> Corruption:
    """Corruption function by name (case-insensitive); see the module docstring.

    Raises
    ------
    ValueError
        For an unknown name, listing the valid ones.
    """
    key = str(name).lower()
    if key not in _PERTURBATIONS:
        raise ValueError(
            f"unknown perturbation {name!r}; valid names: {', '.join(PERTURBATION_NAMES)}"
        )
    return _PERTURBATIONS[key]


@dataclass(frozen=True)
class Perturbation:
    """One corruption at one level, applied reproducibly batch after batch.

    Parameters
    ----------
    name : str
        One of :data:`PERTURBATION_NAMES`.
    level : float
        Intensity (see :data:`DEFAULT_LEVELS` for the meaning per kind); must be >= 0.
    seed : int
        Seed; batch ``i`` uses ``torch.Generator().manual_seed(seed + i)``, so results do
        not depend on which predictors are evaluated or in which order.
    """

    name: str
    level: float
    seed: int = 0

    def __post_init__(self) -> None:
        get_perturbation(self.name)
        if not self.level >= 0:
            raise ValueError(f"perturbation level must be >= 0; got {self.level!r}")

    def __call__(
        self, x: torch.Tensor, input_mask: torch.Tensor | None, batch_index: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Corrupt one batch.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, T_in, 1, H, W)`` in p/255.
        input_mask : torch.Tensor or None
            Same shape, 1 = valid; None means all valid.
        batch_index : int
            Index of the batch in the evaluation (mixed into the seed).

        Returns
        -------
        tuple of torch.Tensor
            Corrupted ``x`` and ``input_mask`` (new tensors).
        """
        if x.ndim != 5 or x.shape[2] != 1:
            raise ValueError(f"x must have shape (B, T_in, 1, H, W); got {tuple(x.shape)}")
        mask = torch.ones_like(x) if input_mask is None else input_mask
        if self.level == 0:
            return x.clone(), mask.clone()
        generator = torch.Generator().manual_seed(int(self.seed) + int(batch_index))
        return get_perturbation(self.name)(x, mask, float(self.level), generator)
