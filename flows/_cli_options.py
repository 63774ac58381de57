"""Command-line flags generated from an options dataclass, defined once for every command.

A job's options (:class:`nowcast.options.TrainOptions`, :class:`nowcast.options.EvaluateOptions`)
are one object from the command line through the Prefect flow to the library. This module
turns the fields of such a dataclass into typer options (one :class:`Flag` per field: its
spelling, help and, for values typed as text, how the text is read) and builds the object
back from the parsed values (:func:`build_options`). ``nowcast X`` and ``nowcast flow X``
are made by :func:`options_command` from the same table, so their flags are the same by
construction, and a field without a flag is refused when the command is defined.

Example::

    @options_command(TrainOptions, TRAIN_FLAGS)
    def train(model: str = typer.Option(..., "--model"), *, options: TrainOptions) -> None:
        ...
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import typer

__all__ = ["Flag", "build_options", "floats", "options_command"]


@dataclass(frozen=True)
class Flag:
    """How one field of an options dataclass appears on the command line.

    Attributes
    ----------
    decls : tuple of str
        typer/click declarations, e.g. ``("--epochs",)`` or ``("--progress/--no-progress",)``.
    help : str
        Help text.
    parse : callable, optional
        ``parse(text) -> value`` for a field given as text (comma-separated lists, a
        folder that becomes a mapping); raise ``typer.BadParameter`` (or ``ValueError``)
        naming the flag on bad text. None: typer converts the value to the field's type.
    show : callable, optional
        ``show(default) -> text``: the field's default as the text the flag takes
        (with ``parse``; default ``None`` stays None).
    cli_type : type, optional
        The type typer parses; default ``str | None`` with ``parse``, else the field's type.
    """

    decls: tuple[str, ...]
    help: str
    parse: Callable[[Any], Any] | None = None
    show: Callable[[Any], Any] | None = None
    cli_type: Any = None


def floats(flag: str, count: int | None = None) -> Callable[[str | None], tuple[float, ...]]:
    """A parser of comma-separated numbers for *flag* (exactly *count* of them if given).

    Parameters
    ----------
    flag : str
        The flag's name, for the error message.
    count : int, optional
        Required number of values.

    Returns
    -------
    callable
        ``parse(text) -> tuple of float``; ``None`` or ``""`` gives ``()``.
    """

    def parse(text: str | None) -> tuple[float, ...]:
        if not text:
            return ()
        try:
            values = tuple(float(v) for v in text.split(",") if v.strip())
        except ValueError as err:
            raise typer.BadParameter(
                f"{flag} must be comma-separated numbers, got {text!r}"
            ) from err
        if count is not None and len(values) != count:
            raise typer.BadParameter(
                f"{flag} must be {count} comma-separated numbers, got {text!r}"
            )
        return values

    return parse


def _fields(options_cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(options_cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(options_cls)]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"options field {f.name!r} has no default; give it one")


def build_options(options_cls: type, flags: Mapping[str, Flag], values: Mapping[str, Any]):
    """The options object of the parsed command-line *values* (one per field, by name).

    Values of flags with a ``parse`` function are read by it; the others are taken as they
    are. This is the one builder from a parsed command line to the options object.

    Parameters
    ----------
    options_cls : type
        A dataclass (:class:`nowcast.options.TrainOptions`, ...).
    flags : mapping of str to Flag
        Field name -> its flag.
    values : mapping
        Field name -> parsed value (missing fields keep the dataclass default).

    Returns
    -------
    options_cls instance
    """
    kwargs = {}
    for f, _ in _fields(options_cls):
        if f.name not in values:
            continue
        value = values[f.name]
        parse = flags[f.name].parse
        kwargs[f.name] = parse(value) if parse is not None else value
    return options_cls(**kwargs)


def options_command(options_cls: type, flags: Mapping[str, Flag]) -> Callable:
    """Decorate a typer command taking ``options`` into one with a flag per options field.

    The decorated function keeps its own parameters (the job's arguments: store, run
    directory, ...) and gets a keyword ``options`` built by :func:`build_options` from
    one typer option per field of *options_cls*, declared as *flags* says.

    Parameters
    ----------
    options_cls : type
        The options dataclass.
    flags : mapping of str to Flag
        One :class:`Flag` per field.

    Returns
    -------
    callable
        The decorator.

    Raises
    ------
    TypeError
        A field without a flag, a flag without a field, or a flag spelling that clashes
        with one of the command's own parameters.
    """
    fields = _fields(options_cls)
    names = [f.name for f, _ in fields]
    missing = sorted(set(names) - set(flags))
    extra = sorted(set(flags) - set(names))
    if missing or extra:
        raise TypeError(
            f"flags for {options_cls.__name__}: fields without a flag {missing}, "
            f"flags without a field {extra}"
        )

    def decorate(func: Callable) -> Callable:
        own = [p for p in inspect.signature(func).parameters.values() if p.name != "options"]
        hints = typing.get_type_hints(func)
        clash = sorted({p.name for p in own} & set(names))
        if clash:
            raise TypeError(f"{func.__name__}: parameter(s) {clash} are options fields")
        params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in own]
        for f, hint in fields:
            flag = flags[f.name]
            default = _default(f)
            if flag.parse is not None:
                default = None if default is None else (flag.show or str)(default)
                annotation = flag.cli_type or (str | None)
            else:
                annotation = flag.cli_type or hint
            option = typer.Option(default, *flag.decls, help=flag.help)
            params.append(
                inspect.Parameter(
                    f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation
                )
            )

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            return func(**kwargs, options=build_options(options_cls, flags, values))

        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__
        return command

    return decorate
