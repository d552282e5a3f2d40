"""The functions behind the entry points (train.py, ...), and how they report bad input."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from t2v.errors import T2VError

T = TypeVar("T")


def user_error(error: BaseException) -> T2VError | None:
    """The T2VError behind an exception, if any: Hydra's instantiate wraps what constructors raise."""
    while error is not None:
        if isinstance(error, T2VError):
            return error
        error = error.__cause__
    return None


def run_reporting_errors(task: Callable[..., T], *args: Any) -> T:
    """Run an entry point's task; bad user input becomes one line on stderr and exit status 2."""
    try:
        return task(*args)
    except Exception as error:
        cause = user_error(error)
        if cause is None:
            raise
        print(f"t2v: error: {cause}", file=sys.stderr)
        sys.exit(2)
