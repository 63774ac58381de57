"""``nowcast resample``: regular time grid with explicit gaps, spatial downsizing (docs/contracts.md, Resampled schema)."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``resample`` subcommand to *app*."""

    @app.command("resample")
    def resample(
        store: Annotated[
            str, typer.Argument(help="Ingest store (made by `nowcast ingest`; path or s3:// URL).")
        ],
        out: Annotated[str, typer.Argument(help="Resampled store to create (path or s3:// URL).")],
        size: Annotated[
            int, typer.Option("--size", help="Output pixels per side; must divide 480.")
        ] = 80,
        cadence: Annotated[
            str | None,
            typer.Option(
                "--cadence",
                help="Slot spacing, e.g. 6min (default: the store's own cadence, 6 min for "
                "HKO-7, 5 min for KNMI; a cadence that rejects frames is warned about).",
            ),
        ] = None,
        tolerance: Annotated[
            str,
            typer.Option("--tolerance", help="Snap frames this close to a slot (inclusive)."),
        ] = "2min",
        average: Annotated[
            str, typer.Option("--average", help="Averaging space: z (linear Z) or rainrate.")
        ] = "z",
        min_valid_fraction: Annotated[
            float,
            typer.Option("--min-valid-fraction", help="Valid fine pixels for a valid coarse one."),
        ] = 0.5,
        overwrite: Annotated[
            bool, typer.Option("--overwrite", help="Replace OUT atomically if it exists.")
        ] = False,
        progress: Annotated[
            bool,
            typer.Option(
                "--progress/--no-progress",
                help="Show a progress bar (slots done, slots per second) on standard error.",
            ),
        ] = True,
        motion: Annotated[
            str | None,
            typer.Option(
                "--motion",
                help="Also store per-slot motion fields estimated with this method "
                "(lk, vet, zero; pipeline.motion).",
            ),
        ] = None,
        motion_window: Annotated[
            int, typer.Option("--motion-window", help="Slots per motion estimate.")
        ] = 4,
        motion_grid: Annotated[
            int | None,
            typer.Option(
                "--motion-grid", help="Coarse grid of the motion estimate (points per side)."
            ),
        ] = None,
    ) -> None:
        """Resample STORE onto a regular time grid (gaps kept) at SIZE x SIZE into OUT.

        Writes OUT, plus OUT's gap table (<name>.gaps.csv) and report (<name>.resample.json)
        next to it, and prints the summary as one JSON line. Refuses an existing OUT unless
        --overwrite. With --motion, OUT also holds `motion` (time, component, y, x) in
        pixels per cadence step and `motion_fallback` (pipeline.motion_store).
        """
        from pipeline.resample import resample_store

        report = resample_store(
            store,
            out,
            size=size,
            cadence=cadence,
            tolerance=tolerance,
            average=average,
            min_valid_fraction=min_valid_fraction,
            overwrite=overwrite,
            progress=progress,
            motion=motion,
            motion_window=motion_window,
            motion_kwargs=None if motion_grid is None else {"grid": motion_grid},
        )
        warning = report.rejection_warning()
        if warning is not None:
            typer.echo(f"warning: {warning}", err=True)
        typer.echo(json.dumps(report.summary()))
