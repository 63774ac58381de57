"""Per-epoch reporting of a run: ``metrics.csv``, ``metrics.json`` and ``loss_curve.png``
(file names and layout: :mod:`nowcast.training.rundir`)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from nowcast.training.rundir import LOSS_CURVE, METRICS_CSV, METRICS_JSON, _atomic_write_text
from pipeline.atomic import atomic_write

_CSV_FIELDS = (
    "epoch",
    "steps",
    "samples",
    "train_loss",
    "val_loss",
    "val_mse",
    "val_mae",
    "lr",
    "train_seconds",
    "samples_per_s",
    "best",
    "truncated",
    "dead_codes",
)


def _write_metrics(
    out_dir: Path,
    history: list[dict[str, Any]],
    run_info: dict[str, Any],
    best_epoch: int | None,
    best_val: float,
    stopped_reason: str,
    plot: bool,
) -> None:
    """metrics.csv, metrics.json and (``plot``) loss_curve.png, each replaced atomically."""
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow(row)
    _atomic_write_text(buf.getvalue(), out_dir / METRICS_CSV)
    doc = {
        **run_info,
        "best_epoch": best_epoch,
        "best_val_loss": best_val if math.isfinite(best_val) else None,
        "stopped_reason": stopped_reason or "running",
        "epochs": history,
    }
    _atomic_write_text(json.dumps(doc, indent=2) + "\n", out_dir / METRICS_JSON)
    if plot:
        _plot_loss_curve(history, best_epoch, run_info, out_dir / LOSS_CURVE)


def _plot_loss_curve(
    history: list[dict[str, Any]], best_epoch: int | None, run_info: dict[str, Any], path: Path
) -> None:
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="training loss")
    ax.plot(epochs, [r["val_loss"] for r in history], "s-", label="validation loss")
    if best_epoch is not None:
        best = next(r for r in history if r["epoch"] == best_epoch)
        ax.plot([best_epoch], [best["val_loss"]], "*", ms=14, color="gold", mec="k", label="best")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{run_info['settings']['loss']} loss")
    ax.set_title(f"{run_info['model_name']} ({run_info['config_name']}, {run_info['scheme']})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, fig.savefig)
