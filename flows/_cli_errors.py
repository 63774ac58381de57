"""One-line answers to user errors for every ``nowcast`` command (see :mod:`flows.cli`).

An ordinary mistake (a missing file, an unknown name, a bad time or lead, an option that
does not parse) is answered with one line on standard error, ``error: <message>``, and
exit code 2, the code click uses for usage errors. The message names the value and what
was expected. ``--debug`` (anywhere on the command line) lets the exception through with
its traceback instead. So are faults of object storage (a missing bucket, refused
credentials, an endpoint that stayed unreachable for ``NOWCAST_STORE_RETRY_SECONDS``; see
:mod:`pipeline.objectstore`), also those raised in the middle of a job, and a commit lost
to another writer. Anything else (a bug, a crash inside a library) keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from pipeline.store_engine import CommitConflictError

USER_ERROR_EXIT_CODE = 2
"""Exit code of every user error (click's code for usage errors)."""

USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    CommitConflictError,
)
"""Exceptions taken as the user's mistake. ``ValueError`` covers the project's own
``InsufficientInputError`` and ``FrameReadError`` and pandas' date parse errors."""

DEBUG_FLAG = "--debug"


def describe_error(err: BaseException) -> str:
    """The one-line message of *err*.

    Operating-system errors read ``<file>: <reason>``; any other error its message with
    line breaks folded into spaces.

    Parameters
    ----------
    err : BaseException
        The error to describe.

    Returns
    -------
    str
        One line without a trailing newline.
    """
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        text = f"{err.filename}: {err.strerror}"
        if err.filename2 is not None:
            text += f" (and {err.filename2})"
    elif isinstance(err, typer.TyperException):
        text = err.format_message()
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def hoist_debug(args: Sequence[str]) -> list[str]:
    """Move every ``--debug`` before the subcommand (stops at a ``--`` separator).

    Parameters
    ----------
    args : sequence of str
        Command-line arguments without the program name.

    Returns
    -------
    list of str
        *args* with ``--debug`` first when it was given anywhere.
    """
    args = list(args)
    end = args.index("--") if "--" in args else len(args)
    head = [a for a in args[:end] if a != DEBUG_FLAG]
    if len(head) == end:
        return args
    return [DEBUG_FLAG, *head, *args[end:]]


class UserErrorGroup(TyperGroup):
    """Typer group that answers user errors with one line and exit code 2."""

    def main(self, args: Sequence[str] | None = None, *pargs: Any, **kwargs: Any) -> Any:
        """Run the command line, with ``--debug`` accepted after the subcommand too."""
        if args is None:
            args = sys.argv[1:]
        return super().main(hoist_debug(args), *pargs, **kwargs)

    def invoke(self, ctx: typer.Context) -> Any:
        """Invoke the subcommand; turn a user error into ``error: ...`` and exit 2."""
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, NoArgsIsHelpError):
            raise
        except (typer.TyperException, *USER_ERRORS) as err:
            if ctx.params.get("debug"):
                raise
            message = describe_error(err)
            if isinstance(err, UsageError) and err.ctx is not None:
                message += f" (see: {err.ctx.command_path} --help)"
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(USER_ERROR_EXIT_CODE) from err
        except Exception as err:
            from pipeline.objectstore import describe_storage_error

            message = describe_storage_error(err)
            if message is None or ctx.params.get("debug"):
                raise
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(USER_ERROR_EXIT_CODE) from err
