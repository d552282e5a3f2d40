"""Shared fixtures: offline W&B, one thread per xdist worker, and Hydra configs composed as `train.py` composes them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import t2v  # noqa: F401  (registers the config resolvers, as train.py does)

from helpers import compose_app


@pytest.fixture(autouse=True, scope="session")
def offline_wandb() -> None:
    """Tests never touch the network."""
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"


@pytest.fixture(autouse=True, scope="session")
def one_thread_per_worker() -> None:
    """Under pytest-xdist (``make test``) each worker, and every process it starts, computes on one thread.

    The workers already fill the cores; torch's default of one thread per core in every worker would
    oversubscribe them, and its threads spin while they wait, which costs more than it gains on tiny models.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)


@pytest.fixture
def compose_train(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose conf/train.yaml with overrides, with every path inside tmp_path."""

    def _compose(*overrides: str, run_dir: str = "run") -> DictConfig:
        return compose_app("train", *overrides, output_dir=tmp_path / run_dir, cwd=tmp_path)

    yield _compose
    GlobalHydra.instance().clear()
