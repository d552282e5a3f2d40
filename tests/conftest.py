"""Shared fixtures: offline W&B, and Hydra configs composed exactly as `train.py` would compose them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import t2v  # noqa: F401  (registers the config resolvers, as train.py does)

from helpers import compose_app


@pytest.fixture(autouse=True, scope="session")
def offline_wandb() -> None:
    """Tests never touch the network."""
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"


@pytest.fixture
def compose_train(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose conf/train.yaml with overrides, with every path inside tmp_path."""

    def _compose(*overrides: str, run_dir: str = "run") -> DictConfig:
        return compose_app("train", *overrides, output_dir=tmp_path / run_dir, cwd=tmp_path)

    yield _compose
    GlobalHydra.instance().clear()
