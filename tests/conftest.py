"""Shared fixtures: offline W&B, and Hydra configs composed exactly as `train.py` would compose them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import t2v  # noqa: F401  (registers the config resolvers, as train.py does)

from helpers import CONF


@pytest.fixture(autouse=True, scope="session")
def offline_wandb() -> None:
    """Tests never touch the network."""
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"


@pytest.fixture
def compose_train(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose conf/train.yaml with overrides, with every path inside tmp_path."""

    def _compose(*overrides: str, run_dir: str = "run") -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path / run_dir)
            cfg.hydra.runtime.cwd = str(tmp_path)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]  # the task function never sees it either
        return cfg

    yield _compose
    GlobalHydra.instance().clear()
