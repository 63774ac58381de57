"""Learning-rate schedules behind :func:`get_schedule` (see :mod:`nowcast.training`).

``plateau`` (default) multiplies the LR by ``lr_factor`` after every epoch whose validation
loss is not below the best so far (``ReduceLROnPlateau``, ``lr_patience`` epochs of
patience); ``step`` multiplies it by ``lr_factor`` every ``lr_step_epochs`` epochs;
``constant`` keeps it. A factory is called as ``make(optimizer, settings)`` with a
:class:`nowcast.training.TrainSettings`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["SCHEDULE_NAMES", "get_schedule"]


def _plateau(optimizer: torch.optim.Optimizer, s: Any):
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=s.lr_factor, patience=s.lr_patience
    )


def _step(optimizer: torch.optim.Optimizer, s: Any):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=s.lr_step_epochs, gamma=s.lr_factor)


def _constant(optimizer: torch.optim.Optimizer, s: Any):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=_one)


def _one(epoch: int) -> float:
    return 1.0


_SCHEDULES: dict[str, Callable[[torch.optim.Optimizer, Any], Any]] = {
    "plateau": _plateau,
    "step": _step,
    "constant": _constant,
}
SCHEDULE_NAMES: tuple[str, ...] = tuple(_SCHEDULES)
"""Names accepted by :func:`get_schedule`."""


def get_schedule(name: str) -> Callable[[torch.optim.Optimizer, Any], Any]:
    """Return the LR-schedule factory ``make(optimizer, settings) -> scheduler``.

    Raises
    ------
    ValueError
        If ``name`` is unknown; the message lists :data:`SCHEDULE_NAMES`.
    """
    key = str(name).lower()
    if key not in _SCHEDULES:
        raise ValueError(
            f"unknown lr_schedule {name!r}; valid names are {', '.join(SCHEDULE_NAMES)}"
        )
    return _SCHEDULES[key]


def _schedule_step(scheduler: Any, val_loss: float) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_loss)
    else:
        scheduler.step()
