"""``nowcast resample``: regular time grid with explicit gaps, spatial downsizing (docs/contracts.md, Resampled schema)."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``resample`` and ``evaluate-interpolation`` subcommands to *app*."""
    _evaluate_interpolation_command(app)

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
        fill_gaps: Annotated[
            int | None,
            typer.Option(
                "--fill-gaps",
                help="Fill gaps of at most N slots with interpolated frames (flag "
                "`interpolated`, never `observed`); gaps at the ends or longer stay gaps.",
            ),
        ] = None,
        interpolation: Annotated[
            str,
            typer.Option(
                "--interpolation",
                help="Gap filling method: linear, advection or model (nowcast.interpolation).",
            ),
        ] = "advection",
        fill_window: Annotated[
            int,
            typer.Option(
                "--fill-window",
                help="Input window of the gap filling, slots before a gap (motion, model "
                "inputs); --fill-gaps may not exceed it.",
            ),
        ] = 5,
        run: Annotated[
            str | None,
            typer.Option("--run", help="Trained run for --interpolation model."),
        ] = None,
    ) -> None:
        """Resample STORE onto a regular time grid (gaps kept) at SIZE x SIZE into OUT.

        Writes OUT, plus OUT's gap table (<name>.gaps.csv) and report (<name>.resample.json)
        next to it, and prints the summary as one JSON line. Refuses an existing OUT unless
        --overwrite. With --motion, OUT also holds `motion` (time, component, y, x) in
        pixels per cadence step and `motion_fallback` (pipeline.motion_store). With
        --fill-gaps N, gaps of at most N slots between two observed slots are filled by
        --interpolation and flagged in `interpolated` (docs/interpolation.md).
        """
        from pipeline.resample import resample_store

        after_write = _gap_filler(fill_gaps, interpolation, fill_window, run, out)

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
            after_write=after_write,
        )
        warning = report.rejection_warning()
        if warning is not None:
            typer.echo(f"warning: {warning}", err=True)
        typer.echo(json.dumps(report.summary()))


def _evaluate_interpolation_command(app: typer.Typer) -> None:
    @app.command("evaluate-interpolation")
    def evaluate_interpolation(
        store: Annotated[str, typer.Argument(help="Resampled store (nowcast resample).")],
        methods: Annotated[
            str, typer.Option("--methods", help="Comma-separated: linear, advection, model.")
        ] = "linear,advection",
        gaps: Annotated[
            str, typer.Option("--gaps", help="Hidden run lengths in slots, e.g. 1,2,3,4,5.")
        ] = "1,2,3,4,5",
        run: Annotated[
            str | None, typer.Option("--run", help="Trained run for the model method.")
        ] = None,
        max_cases: Annotated[
            int, typer.Option("--max-cases", help="Cases per gap length at most.")
        ] = 40,
        window: Annotated[
            int, typer.Option("--window", help="Observed slots needed before a case.")
        ] = 5,
        out: Annotated[
            str | None, typer.Option("--out", help="Also write the table as CSV here.")
        ] = None,
    ) -> None:
        """Hide observed frames of STORE, reconstruct them with each method and score them.

        CSI per threshold, B-MSE and FSS against the hidden truth per method and gap length
        (nowcast.interpolation.skill, docs/interpolation.md); prints a Markdown table.
        """
        from pathlib import Path

        from nowcast.interpolation import get_interpolator
        from nowcast.interpolation.skill import evaluate_interpolation as _evaluate
        from nowcast.interpolation.skill import skill_markdown

        names = [m.strip() for m in methods.split(",") if m.strip()]
        try:
            lengths = [int(g) for g in gaps.split(",") if g.strip()]
        except ValueError:
            raise ValueError(f"--gaps must be comma-separated whole slots, got {gaps!r}") from None
        if not lengths or min(lengths) < 1:
            raise ValueError(f"--gaps must be whole slots >= 1, got {gaps!r}")
        predictor = None
        for name in names:  # unknown name or model without a run: one line, before any work
            interp = get_interpolator(name, run=run)
            predictor = getattr(interp, "predictor", predictor)
        if not Path(store).exists() and "://" not in store:
            raise ValueError(f"store {store} does not exist")
        table = _evaluate(
            store, names, lengths, predictor=predictor, window=window, max_cases=max_cases
        )
        if out:
            table.to_csv(out, index=False)
        typer.echo(skill_markdown(table))


def _gap_filler(fill_gaps: int | None, interpolation: str, window: int, run: str | None, out):
    """The ``after_write`` step of ``--fill-gaps`` (checked before any work), or None."""
    if fill_gaps is None:
        return None
    from nowcast.interpolation import get_interpolator
    from nowcast.interpolation.gapfill import check_fill
    from nowcast.interpolation.gapfill import fill_gaps as _fill

    check_fill(fill_gaps, window)  # ValueError: one line (flows._cli_errors)
    interp = get_interpolator(interpolation, run=run)

    def _after(store) -> dict:
        return _fill(store, fill_gaps, interpolation, predictor=getattr(interp, "predictor", None),
                     window=window, label=str(out))  # fmt: skip

    return _after
