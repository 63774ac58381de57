"""``nowcast ingest`` (radar archive -> radar store, incremental and idempotent;
docs/contracts.md, Store schema; ``--source`` picks the format, docs/sources.md) and
``nowcast store log STORE`` / ``nowcast store migrate OLD NEW`` / ``nowcast store clean STORE``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

store_app = typer.Typer(
    name="store", help="Radar stores: history and conversion.", no_args_is_help=True
)


@store_app.command("log")
def log(
    store: Annotated[str, typer.Argument(help="Store directory or s3:// URL.")],
) -> None:
    """List STORE's commits, newest first: snapshot id, time (UTC), message."""
    from pipeline.store import store_log

    for snap, when, message in store_log(store):
        typer.echo(f"{snap}  {when:%Y-%m-%d %H:%M:%S}  {message}")


@store_app.command("clean")
def clean(
    store: Annotated[str, typer.Argument(help="Store directory (an s3:// URL has nothing).")],
) -> None:
    """Remove what killed writers left beside STORE (a resample's .NAME.tmp-PID store).

    A leftover of a process still running is kept; a store swapped out half-way
    (.NAME.old-PID with STORE missing) is moved back.
    """
    from pipeline.store_engine import remove_stale_siblings

    done = remove_stale_siblings(store)
    for line in done:
        typer.echo(f"{store}: {line}")
    if not done:
        typer.echo(f"{store}: nothing left behind by killed writers")


@store_app.command("migrate")
def migrate(
    old: Annotated[Path, typer.Argument(help="Store of the old layout (CURRENT + vNNNNNN.zarr).")],
    new: Annotated[str, typer.Argument(help="New store to create (directory or s3:// URL).")],
) -> None:
    """Copy the store OLD (old version-folder layout) into the new store NEW (one commit)."""
    from pipeline.store_migrate import migrate_store

    n = migrate_store(old, new)
    typer.echo(json.dumps({"store": new, "frames": n}))


Start = Annotated[
    str | None,
    typer.Option("--start", help="First frame time, inclusive (ISO 8601: 2010-08-26T07:35, UTC)."),
]
End = Annotated[
    str | None,
    typer.Option("--end", help="Last frame time, inclusive (ISO 8601: 2010-08-26 is 00:00)."),
]
Threads = Annotated[
    int | None,
    typer.Option(
        "--threads",
        help="Threads decoding frames (default: CPUs; with flow ingest: per day task).",
    ),
]
SchedulerAddress = Annotated[
    str | None,
    typer.Option(
        "--scheduler-address", help="An existing dask.distributed scheduler, tcp://host:8786."
    ),
]
Source = Annotated[
    str,
    typer.Option(
        "--source", help="Radar source: hko7, odim, knmi, bom, mch, fmi (docs/sources.md)."
    ),
]
"""The flags ``nowcast ingest`` and ``nowcast flow ingest`` share, defined once."""


def ingest(
    archive: Annotated[
        Path, typer.Argument(help="Archive root (HKO-7: holds radarPNG/; else any folder).")
    ],
    store: Annotated[
        str, typer.Argument(help="Radar store to create or extend (directory or s3:// URL).")
    ],
    start: Start = None,
    end: End = None,
    threads: Threads = None,
    scheduler_address: SchedulerAddress = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            help="Minimum frames per committed store version (batches grow with the store).",
        ),
    ] = 512,
    progress: Annotated[
        bool,
        typer.Option(
            "--progress/--no-progress",
            help="Show a progress bar (frames done, frames per second) on standard error.",
        ),
    ] = True,
    follow_links: Annotated[
        bool,
        typer.Option(
            "--follow-links",
            help="Follow symbolic links leading outside ARCHIVE (default: list, skip).",
        ),
    ] = False,
    source: Source = "hko7",
) -> None:
    """Add ARCHIVE's frames (between --start and --end) to STORE.

    Frames already in STORE are skipped, so re-running is safe and resumes an
    interrupted ingest. Corrupt frames, impossible frame names and day folders, and
    symbolic links leading outside ARCHIVE are listed and skipped. --start after --end is
    refused. Prints the report as one JSON line.
    """
    from flows._cli_time import check_start_end, parse_time
    from pipeline.ingest import ingest_archive

    start, end = parse_time("--start", start), parse_time("--end", end)
    check_start_end(start, end)
    report = ingest_archive(
        archive,
        store,
        start=start,
        end=end,
        workers=threads,
        progress=progress,
        scheduler_address=scheduler_address,
        batch_size=batch_size,
        follow_links=follow_links,
        source=source,
    )
    for path, reason in report.corrupt:
        typer.echo(f"skipped {path}: {reason}", err=True)
    typer.echo(
        json.dumps(
            {
                "store": str(report.store),
                "frames_found": report.frames_found,
                "frames_written": report.frames_written,
                "skipped_existing": report.skipped_existing,
                "corrupt": len(report.corrupt),
                "seconds": round(report.seconds, 3),
                "frames_per_second": round(report.frames_per_second, 1),
                "commits": report.batches,
                "static_mask_used": report.static_mask_used,
            }
        )
    )


def register(app: typer.Typer) -> None:
    """Add the ``ingest`` and ``store`` subcommands to *app*."""
    app.add_typer(store_app)
    app.command("ingest")(ingest)
