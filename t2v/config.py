"""Config helpers: the OmegaConf resolvers used in conf/ (registered when t2v is imported), and building a whole
config group (callbacks, loggers) from its entries' ``_target_``."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf


def choose(condition: Any, if_true: Any, if_false: Any) -> Any:
    """``${t2v.if:${model.text.parts},latest,null}``: a value that depends on another (here: a non-empty list)."""
    return if_true if condition else if_false


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("t2v.if"):
        OmegaConf.register_new_resolver("t2v.if", choose)


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Build every entry of a config group that has a ``_target_`` (null entries are switched off)."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node is not None and "_target_" in node]
