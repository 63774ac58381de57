"""Subcommands of the ``nowcast`` CLI for this area (see :mod:`flows.cli`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to *app*."""
