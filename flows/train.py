"""Prefect flow: train one model on a resampled store (thin over :func:`nowcast.training.train`).

Training is compute: no retries (a failed run is resumed explicitly with ``resume=True``).
"""

from __future__ import annotations

from flows._prefect_env import configure

configure()

from prefect import flow, get_run_logger, task  # noqa: E402

__all__ = ["train_flow", "train_task"]


@task(name="train-model")
def train_task(
    model: str,
    config: str,
    data: str,
    out: str,
    scheme: str = "regular",
    epochs: int | None = None,
    iters_per_epoch: int | None = None,
    batch_size: int | None = None,
    time_budget_minutes: float | None = None,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train *model* with *config* on *data* into the run directory *out*."""
    from nowcast.training import TrainOptions, train

    options = TrainOptions(
        epochs=epochs,
        iters_per_epoch=iters_per_epoch,
        batch_size=batch_size,
        time_budget_minutes=time_budget_minutes,
        seed=seed,
        resume=resume,
        progress=progress,
    )
    result = train(model, config, data, out, scheme=scheme, options=options)
    return {
        "run_dir": str(result.run_dir),
        "epochs_completed": result.epochs_completed,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "stopped_reason": result.stopped_reason,
    }


@flow(name="train")
def train_flow(
    model: str,
    config: str,
    data: str,
    out: str,
    scheme: str = "regular",
    epochs: int | None = None,
    iters_per_epoch: int | None = None,
    batch_size: int | None = None,
    time_budget_minutes: float | None = None,
    seed: int = 0,
    resume: bool = False,
) -> dict:
    """Train one model; returns the run summary (run_dir, epochs, best val loss, reason)."""
    summary = train_task(
        model,
        config,
        data,
        out,
        scheme=scheme,
        epochs=epochs,
        iters_per_epoch=iters_per_epoch,
        batch_size=batch_size,
        time_budget_minutes=time_budget_minutes,
        seed=seed,
        resume=resume,
    )
    get_run_logger().info("trained %s: %s", model, summary)
    return summary
