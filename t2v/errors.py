"""The one exception type t2v raises for bad user input, and how every entry point reports it.

Entry points catch it and print its message on one line instead of a traceback, so every
message must name the offending thing and say how to fix it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class T2VError(Exception):
    """A problem with the user's input, config or files, with a one-line fix in its message."""

    # What the process exits with: 2 for bad input; a run that failed or was stopped says otherwise.
    exit_status = 2


class RunFailed(T2VError):
    """Training ran and failed (a diverged GAN, a stage of a pipeline that did): the message says what is kept."""

    exit_status = 1


def user_error(error: BaseException | None) -> T2VError | None:
    """The T2VError behind an exception, if any: Hydra's instantiate wraps what constructors raise."""
    while error is not None:
        if isinstance(error, T2VError):
            return error
        error = error.__cause__
    return None


def run_reporting_errors(task: Callable[..., T], *args: Any, exit_on_error: bool = True) -> T:
    """Run an entry point's task; a T2VError becomes one line on stderr and its ``exit_status`` (2 for bad input),
    or, with ``exit_on_error=False``, the line and the error raised again, for a caller that records failures."""
    try:
        return task(*args)
    except Exception as error:
        cause = user_error(error)
        if cause is None:
            raise
        print(f"t2v: error: {cause}", file=sys.stderr)
        if not exit_on_error:
            raise cause from None
        sys.exit(cause.exit_status)
