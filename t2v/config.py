"""OmegaConf resolvers used in conf/ (registered when t2v is imported)."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def choose(condition: bool, if_true: Any, if_false: Any) -> Any:
    """``${t2v.if:${model.text_conditioning},latest,null}``: a value that depends on another."""
    return if_true if condition else if_false


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("t2v.if"):
        OmegaConf.register_new_resolver("t2v.if", choose)
