"""Subcommands of the ``nowcast`` CLI for the archive area (see :mod:`flows.cli`).

* ``nowcast synth OUT [--start 2015-06-01] [--days 2] [--seed 0] [--corrupt/--no-corrupt]``
* ``nowcast catalogue convert PKL OUT`` (a reader that runs no code; ``--trusted`` is obsolete)

Each command is a module-level function registered in :func:`register`; heavy imports happen
inside the command bodies. The store/ingest area adds its ``ingest`` command below the marked
line (a function plus one line in :func:`register`).
"""

from __future__ import annotations

from pathlib import Path

import typer

catalogue_app = typer.Typer(
    name="catalogue", help="HKO-7 catalogues: convert the published pickles.", no_args_is_help=True
)


def synth(
    out: Path = typer.Argument(..., help="Archive root to create (must be new or empty)."),
    start: str = typer.Option("2015-06-01", help="First day (YYYY-MM-DD)."),
    days: int = typer.Option(2, min=1, help="Number of days with frames."),
    seed: int = typer.Option(0, help="Random seed (same seed: byte-identical archive)."),
    hours: int = typer.Option(24, min=1, max=24, help="Hours generated per day."),
    first_hour: int = typer.Option(0, min=0, max=23, help="First hour generated each day."),
    irregular: bool = typer.Option(
        True, help="Plant missing frames, off-grid times and a frame without mask."
    ),
    corrupt: bool = typer.Option(True, help="Write one truncated PNG on the last day."),
    empty_day: bool = typer.Option(True, help="List a day without frames in the train list."),
    workers: int = typer.Option(1, min=1, help="Processes writing days in parallel."),
) -> None:
    """Write a realistic synthetic radar archive in the HKO-7 layout."""
    from flows._cli_time import parse_time
    from pipeline.synthetic import generate_archive

    start = parse_time("--start", start)

    try:
        report = generate_archive(
            out,
            start=start,
            days=days,
            seed=seed,
            hours=hours,
            first_hour=first_hour,
            irregular=irregular,
            corrupt=corrupt,
            empty_day=empty_day,
            workers=workers,
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    typer.echo(
        f"wrote {report.n_frames} frames for {len(report.days)} days to {report.root} "
        f"in {report.seconds:.1f} s ({report.n_frames / max(report.seconds, 1e-9):.1f} frames/s); "
        f"missing {len(report.missing_times)}, off-grid {len(report.offgrid_times)}, "
        f"corrupt {len(report.corrupt_times)}, without mask {len(report.no_mask_times)}"
    )


@catalogue_app.command("convert")
def catalogue_convert(
    pkl: Path = typer.Argument(..., help="Published HKO-7 catalogue pickle (pd/hko7_*.pkl)."),
    out: Path = typer.Argument(..., help="Catalogue to write (.csv or .parquet)."),
    trusted: bool = typer.Option(
        False,
        "--trusted",
        hidden=True,
        help="Obsolete and ignored: the converter runs no code from the pickle.",
    ),
    root: Path | None = typer.Option(
        None, help="Archive root: record whether each frame has a mask file there."
    ),
) -> None:
    """Convert a published pandas-pickle catalogue to our CSV/Parquet catalogue.

    The pickle is read by a restricted unpickler (pipeline._hko7_pickle): only the globals the
    published files reference are allowed, each replaced by a stand-in, so no code from the
    file runs; any other global is refused before unpickling starts.
    """
    from pipeline.hko7_catalogue import convert_pickle_catalogue

    try:
        cat = convert_pickle_catalogue(pkl, out, root=root)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    typer.echo(f"wrote {len(cat)} frame times to {out}")


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to *app*."""
    app.command("synth")(synth)
    app.add_typer(catalogue_app, name="catalogue")
    # --- store/ingest area: register `ingest` here, e.g. app.command("ingest")(ingest) ---


# --------------------------------------------------------------------------------------------
# store/ingest area: add the `ingest` command function below this line.
