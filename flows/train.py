"""Prefect flow: train one model on a resampled store (thin over :func:`nowcast.training.train`).

The flow and its task take the job's arguments and one
:class:`nowcast.options.TrainOptions`, handed unchanged to the library (``nowcast train``
and ``nowcast flow train`` build it from the same flags). Training is compute: no retries
(a failed run is resumed explicitly with ``TrainOptions(resume=True)``).
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from nowcast.options import TrainOptions

__all__ = ["train_flow", "train_task"]


@task(name="train-model")
def train_task(
    model: str,
    config: str,
    data: str | list[str],
    out: str,
    scheme: str = "regular",
    options: TrainOptions | None = None,
) -> dict:
    """Train *model* with *config* on *data* (one store or several) into the run directory *out*.

    Returns :meth:`nowcast.training.TrainResult.summary` (run_dir, epochs, best epoch and
    validation loss, stop reason).
    """
    from nowcast.training import train

    return train(model, config, data, out, scheme=scheme, options=options).summary()


@flow(name="train")
def train_flow(
    model: str,
    config: str,
    data: str | list[str],
    out: str,
    scheme: str = "regular",
    options: TrainOptions | None = None,
) -> dict:
    """Train one model; returns the run summary (run_dir, epochs, best val loss, reason)."""
    summary = train_task(model, config, data, out, scheme=scheme, options=options)
    get_run_logger().info("trained %s: %s", model, summary)
    return summary
