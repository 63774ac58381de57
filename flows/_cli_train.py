"""``nowcast train`` and ``nowcast flow train``: train a model on a resampled store.

Both commands take the same flags, generated from :class:`nowcast.options.TrainOptions`
(:data:`TRAIN_FLAGS`, :mod:`flows._cli_options`), and hand the same options object to
:func:`nowcast.training.train`: directly, or through the Prefect flow
:func:`flows.train.train_flow`. See :mod:`nowcast.training` for what a run does.

Multi-process training on CPU (gloo) or GPUs (nccl)::

    torchrun --nproc_per_node 2 -m flows.cli train --model trajgru_ode --config small ...
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import typer

from flows._cli_options import Flag, floats, options_command
from nowcast.options import TrainOptions

TRAIN_FLAGS: dict[str, Flag] = {
    "epochs": Flag(("--epochs",), "Max epochs (config default)."),
    "iters_per_epoch": Flag(("--iters-per-epoch",), "Optimiser steps per epoch (config default)."),
    "batch_size": Flag(("--batch-size",), "GLOBAL batch size, split across processes."),
    "loss": Flag(("--loss",), "thesis, balanced or balanced_csi (config default)."),
    "lr": Flag(("--lr",), "Learning rate (config default)."),
    "val_samples": Flag(("--val-samples",), "Validation samples per epoch (default: all)."),
    "seed": Flag(("--seed",), "Seed of initialisation, data order, RNGs."),
    "resume": Flag(("--resume",), "Continue from RUN_DIR/last.pt."),
    "time_budget_minutes": Flag(
        ("--time-budget-minutes",), "Stop (after validating) when this time is used."
    ),
    "device": Flag(("--device",), "cpu or cuda."),
    "amp": Flag(("--amp",), "Mixed precision (CUDA only)."),
    "train_split": Flag(("--train-split",), "Dataset split to train on."),
    "val_split": Flag(("--val-split",), "Dataset split to validate on."),
    "split_fractions": Flag(
        ("--split-fractions",),
        "Chronological train,valid,test fractions of the store's days.",
        parse=floats("--split-fractions", 3),
        show=lambda v: ",".join(f"{x:g}" for x in v),
        cli_type=str,
    ),
    "stride": Flag(("--stride",), "Slots between consecutive sample windows."),
    "progress": Flag(("--progress/--no-progress",), "Show a progress bar."),
    "init": Flag(("--init",), "Start from this trained run's weights (its best.pt)."),
    "train_only": Flag(
        ("--train-only",),
        "Train only parameters whose names start with these comma-separated prefixes.",
        parse=lambda text: tuple(v.strip() for v in (text or "").split(",") if v.strip()),
        show=lambda v: ",".join(v),
    ),
    "crop": Flag(("--crop",), "Train on random SIZE x SIZE-pixel crops of each window."),
    "allow_other_grid": Flag(
        ("--allow-other-grid",),
        "Accept stores (or an --init run) of different pixel sizes (recorded in the run).",
    ),
    "use_interpolated": Flag(
        ("--use-interpolated",), "Train on filled gaps too (slots flagged `interpolated`)."
    ),
}
"""The flag of every :class:`~nowcast.options.TrainOptions` field (both train commands)."""


def _train_command(run: Callable[..., dict], doc: str) -> Callable:
    """A train command calling ``run(model, config, data, out, scheme, options)``."""

    @options_command(TrainOptions, TRAIN_FLAGS)
    def command(
        model: str = typer.Option(..., "--model", help="Model name, e.g. trajgru_ode."),
        config: str = typer.Option(
            "small", "--config", help="Config name (small, hko7, mnist) or YAML."
        ),
        data: list[Path] = typer.Option(  # noqa: B008
            ..., "--data", help="Resampled Zarr store (nowcast resample); repeat for several."
        ),
        scheme: str = typer.Option(
            "regular",
            "--scheme",
            help="Sampling scheme: regular, irregular_input, irregular_target, irregular.",
        ),
        out: Path = typer.Option(..., "--out", help="Run directory (checkpoints, metrics, plots)."),
        *,
        options: TrainOptions,
    ) -> None:
        from nowcast.training import TrainingDivergedError

        try:
            summary = run(model, config, data, out, scheme, options)
        except TrainingDivergedError as err:  # not a user error: exit 1 (user errors: 2)
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=1) from err
        if os.environ.get("RANK", "0") != "0":
            return
        best = (
            f"best epoch {summary['best_epoch']} (validation loss {summary['best_val_loss']:.5g})"
            if summary["best_epoch"] is not None
            else "no epoch completed"
        )
        typer.echo(
            f"{model}: {summary['epochs_completed']} epoch(s), stopped by "
            f"{summary['stopped_reason']}; {best}; run directory {summary['run_dir']}"
        )

    command.__doc__ = doc
    return command


def _run_library(
    model: str, config: str, data: list[Path], out: Path, scheme: str, options: TrainOptions
) -> dict:
    from nowcast.training import train

    return train(model, config, data, out, scheme=scheme, options=options).summary()


def _run_flow(
    model: str, config: str, data: list[Path], out: Path, scheme: str, options: TrainOptions
) -> dict:
    from flows._prefect_env import configure

    out.mkdir(parents=True, exist_ok=True)
    configure(out)
    from flows.train import train_flow

    stores = [str(d) for d in data]
    return train_flow(model, config, stores, str(out), scheme=scheme, options=options)


train_command = _train_command(
    _run_library,
    "Train MODEL with the CONFIG's thesis settings; writes last.pt, best.pt, metrics, plot.",
)
flow_train_command = _train_command(
    _run_flow, "Train a model as a Prefect flow (the flags of nowcast train)."
)


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to *app*."""
    app.command("train")(train_command)
