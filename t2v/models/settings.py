"""A model's options as named parts: each group of ``conf/model/<stage>.yaml`` (``generator``, ``text``,
``losses``, ``optim``, ...) becomes one small dataclass, checked once when the model is built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from t2v.errors import T2VError

S = TypeVar("S")


def settings(kind: type[S], group: str, values: Mapping[str, Any] | None) -> S:
    """``model.<group>`` as a ``kind`` dataclass; missing keys take its defaults, an unknown key is a one-line error."""
    if values is not None and not isinstance(values, Mapping):
        raise T2VError(f"model.{group}={values!r} must be a group of options, e.g. model.{group}.<key>=<value>")
    values = dict(values or {})
    known = [f.name for f in fields(kind)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise T2VError(f"model.{group}.{unknown[0]} is not an option; model.{group} takes {', '.join(known)}")
    return kind(**values)


def at_least(group: str, minimum: float, **values: float) -> None:
    """A one-line error for the first of ``values`` below ``minimum`` (weights, dims and counts)."""
    for name, value in values.items():
        if value < minimum:
            raise T2VError(f"model.{group}.{name}={value} must be {minimum} or more")


def one_of(group: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    """A one-line error for a choice that is not among ``choices``."""
    if value not in choices:
        raise T2VError(f"model.{group}.{name}={value!r} is unknown; use one of {', '.join(choices)}")
