"""What every command shares: one error-to-exit decorator and the ISO time / date parameter types."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from sync.wire.errors import CheckpointError

F = TypeVar("F", bound=Callable[..., Any])

#: Errors a command reports as one line and exit status 1: ours, bad values, files that cannot be used.
REPORTED_ERRORS = (CheckpointError, ValueError, OSError)


def reports_errors(command: F) -> F:
    """Turn the project's errors (and bad values, unusable files) into ``Error: message``, exit 1.

    Goes directly above ``def``, below the click decorators, so click sees the wrapped function.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except REPORTED_ERRORS as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


#: ``--publisher-public-key FILE``: the publisher's Ed25519 public key (PEM) that signed a list
publisher_public_key_option = click.option(
    "--publisher-public-key", type=click.Path(path_type=Path, dir_okay=False), required=True,
    help="The publisher's Ed25519 public key (PEM) the file must be signed with.")


def parse_iso_time(value: str) -> datetime:
    """An ISO-8601 time (``Z`` allowed); a time without zone is taken as UTC."""
    at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class IsoTime(click.ParamType):
    """``--at 2026-03-01T08:00:00+07:00``: an aware datetime (naive means UTC)."""

    name = "ISO-TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        try:
            return parse_iso_time(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time (e.g. 2026-03-01T08:00:00+07:00)", param, ctx)


class IsoDate(click.ParamType):
    """``--last-dose 2021-09-01``: a calendar date."""

    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO date (YYYY-MM-DD)", param, ctx)


ISO_TIME = IsoTime()
ISO_DATE = IsoDate()
