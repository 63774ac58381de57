"""The ``nowcast`` command: one CLI with a subcommand per step of the pipeline.

Each area of the project registers its subcommands from its own private module
(``flows._cli_*``) so the command modules stay small and heavy imports (torch,
prefect, cartopy) happen only inside the command that needs them. User errors are
answered in one line with exit code 2 (:mod:`flows._cli_errors`); ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import sys

import typer

from flows import (
    _cli_archive,
    _cli_dashboard,
    _cli_evaluate,
    _cli_ingest,
    _cli_models,
    _cli_ops,
    _cli_resample,
    _cli_train,
)
from flows._cli_errors import UserErrorGroup

app = typer.Typer(
    name="nowcast",
    help="Precipitation nowcasting pipeline for HKO-7 style radar archives.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=UserErrorGroup,
)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show the traceback of an error (may also follow the command)."
    ),
) -> None:
    """Precipitation nowcasting pipeline for HKO-7 style radar archives."""


for _module in (
    _cli_archive,
    _cli_ingest,
    _cli_resample,
    _cli_models,
    _cli_train,
    _cli_evaluate,
    _cli_ops,
    _cli_dashboard,
):
    _module.register(app)


def main() -> None:
    """Entry point of the ``nowcast`` console script."""
    app(args=_cli_evaluate.legacy_args(sys.argv[1:]))


if __name__ == "__main__":
    main()
