"""The ``nowcast`` command: one CLI with a subcommand per step of the pipeline.

Each area of the project registers its subcommands from its own private module
(``flows._cli_*``) so the command modules stay small and heavy imports (torch,
prefect, cartopy) happen only inside the command that needs them. User errors are
answered in one line with exit code 2 (:mod:`flows._cli_errors`); ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import inspect
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
    help="Precipitation nowcasting pipeline for weather radar archives: HKO-7, ODIM_H5, "
    "KNMI, BoM Rainfields, MeteoSwiss and FMI files (nowcast ingest --source).",
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
    """Precipitation nowcasting pipeline for weather radar archives (six sources)."""


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


def reflow(text: str | None) -> str | None:
    """*text* (a docstring) with the line breaks inside each paragraph made spaces.

    Typer prints the paragraphs after a command's first line with their source line
    breaks, which the terminal then wraps again (lines cut mid-sentence); reflowed, each
    paragraph wraps at the terminal's width. Paragraphs starting with ``\b`` and lines
    starting with ``-`` or indented (lists, examples) keep their breaks.
    """
    if not text:
        return text
    out = []
    for para in inspect.cleandoc(text).split("\n\n"):
        lines = para.split("\n")
        if para.startswith("\b") or any(ln[:1] in ("-", " ") for ln in lines[1:]):
            out.append(para)
        else:
            out.append(" ".join(ln.strip() for ln in lines))
    return "\n\n".join(out)


def _reflow_help(typer_app: typer.Typer) -> None:
    """Reflow the help of every command and group of *typer_app*, recursively."""
    for info in typer_app.registered_commands:
        info.help = reflow(info.help or getattr(info.callback, "__doc__", None))
    for group in typer_app.registered_groups:
        _reflow_help(group.typer_instance)


_reflow_help(app)


def main() -> None:
    """Entry point of the ``nowcast`` console script."""
    app(args=_cli_evaluate.legacy_args(sys.argv[1:]))


if __name__ == "__main__":
    main()
