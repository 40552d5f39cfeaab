"""Failures the user can fix are shown as one line on stderr and a non-zero exit, never as a
traceback; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from ..data.errors import DataError
from ..engine.errors import FDBError

__all__ = ["EXPECTED", "CliError", "one_line", "reports_errors"]

P = ParamSpec("P")
T = TypeVar("T")


class CliError(Exception):
    """A bad setting, argument or file: the message says what and where."""


#: What a command may fail with in ordinary use. MigrationError and TenancyError are DataErrors.
EXPECTED: tuple[type[BaseException], ...] = (CliError, DataError, FDBError, OSError)


def one_line(error: BaseException) -> str:
    """`error` as one line of text."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        text = f"{error.strerror}: {error.filename}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def reports_errors(command: Callable[P, T]) -> Callable[P, T]:
    """Wrap a command so that an expected failure prints `error: ...` and exits with 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return command(*args, **kwargs)
        except EXPECTED as error:
            typer.echo(f"error: {one_line(error)}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("error: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper
