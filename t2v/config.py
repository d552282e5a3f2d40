"""Config helpers: the OmegaConf resolvers used in conf/ (registered when t2v is imported), and building a whole
config group (callbacks, loggers) from its entries' ``_target_``."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from t2v.errors import T2VError


def choose(condition: Any, if_true: Any, if_false: Any) -> Any:
    """``${t2v.if:${model.text.parts},latest,null}``: a value that depends on another (here: a non-empty list)."""
    return if_true if condition else if_false


def direction(mode: str) -> str:
    """Optuna's name for a monitor's mode: min -> minimize, max -> maximize."""
    directions = {"min": "minimize", "max": "maximize"}
    if mode not in directions:
        raise T2VError(f"stage.mode={mode!r} must be min or max")
    return directions[mode]


def gpus(accelerator: str, devices: int | str) -> int | None:
    """``${t2v.gpus:${trainer.accelerator},${trainer.devices}}``: the GPUs per node a launcher asks for, the trainer's
    devices on a GPU trainer, else none."""
    return int(devices) if str(accelerator) in ("gpu", "cuda") else None


def register_resolvers() -> None:
    for name, resolver in (("t2v.if", choose), ("t2v.gpus", gpus)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Build every entry of a config group that has a ``_target_`` (null entries are switched off)."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node is not None and "_target_" in node]
