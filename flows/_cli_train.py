"""``nowcast train``: train a model on a resampled store (see :mod:`nowcast.training`).

Multi-process training on CPU (gloo) or GPUs (nccl)::

    torchrun --nproc_per_node 2 -m flows.cli train --model trajgru_ode --config small ...
"""

from __future__ import annotations

import os
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to *app*."""
    app.command("train")(train_command)


def train_command(
    model: str = typer.Option(..., "--model", help="Model name, e.g. trajgru_ode."),
    config: str = typer.Option(
        "small", "--config", help="Config name (small, hko7, mnist) or YAML."
    ),
    data: Path = typer.Option(..., "--data", help="Resampled Zarr store (nowcast resample)."),
    scheme: str = typer.Option(
        "regular",
        "--scheme",
        help="Sampling scheme: regular, irregular_input, irregular_target, irregular.",
    ),
    out: Path = typer.Option(..., "--out", help="Run directory (checkpoints, metrics, plots)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Max epochs (config default)."),
    iters_per_epoch: int | None = typer.Option(
        None, "--iters-per-epoch", help="Optimiser steps per epoch (config default)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="GLOBAL batch size, split across processes."
    ),
    loss: str | None = typer.Option(
        None, "--loss", help="thesis, balanced or balanced_csi (config default)."
    ),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (config default)."),
    val_samples: int | None = typer.Option(
        None, "--val-samples", help="Validation samples per epoch (default: all)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation, data order, RNGs."),
    resume: bool = typer.Option(False, "--resume", help="Continue from RUN_DIR/last.pt."),
    time_budget_minutes: float | None = typer.Option(
        None, "--time-budget-minutes", help="Stop (after validating) when this time is used."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision (CUDA only)."),
    train_split: str = typer.Option("train", "--train-split", help="Dataset split to train on."),
    val_split: str = typer.Option("valid", "--val-split", help="Dataset split to validate on."),
    split_fractions: str = typer.Option(
        "0.8,0.1,0.1",
        "--split-fractions",
        help="Chronological train,valid,test fractions of the store's days.",
    ),
    stride: int = typer.Option(5, "--stride", help="Slots between consecutive sample windows."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train MODEL with the CONFIG's thesis settings; writes last.pt, best.pt, metrics, plot."""
    from nowcast.training import TrainingDivergedError, TrainOptions, train

    try:
        fractions = tuple(float(v) for v in split_fractions.split(","))
    except ValueError as err:
        raise typer.BadParameter(
            f"--split-fractions must be three comma-separated numbers, got {split_fractions!r}"
        ) from err
    if len(fractions) != 3:
        raise typer.BadParameter(
            f"--split-fractions must be three comma-separated numbers, got {split_fractions!r}"
        )
    options = TrainOptions(
        epochs=epochs,
        iters_per_epoch=iters_per_epoch,
        batch_size=batch_size,
        loss=loss,
        lr=lr,
        val_samples=val_samples,
        seed=seed,
        resume=resume,
        time_budget_minutes=time_budget_minutes,
        device=device,
        amp=amp,
        train_split=train_split,
        val_split=val_split,
        split_fractions=fractions,
        stride=stride,
        progress=progress,
    )
    try:
        result = train(model, config, data, out, scheme=scheme, options=options)
    except TrainingDivergedError as err:  # not a user error: exit 1 (user errors: 2)
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=1) from err
    if os.environ.get("RANK", "0") != "0":
        return
    best = (
        f"best epoch {result.best_epoch} (validation loss {result.best_val_loss:.5g})"
        if result.best_epoch is not None
        else "no epoch completed"
    )
    typer.echo(
        f"{model}: {result.epochs_completed} epoch(s), stopped by {result.stopped_reason}; "
        f"{best}; run directory {result.run_dir}"
    )
