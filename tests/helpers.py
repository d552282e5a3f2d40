"""Helpers shared by the tests (importable because pyproject puts tests/ on pytest's pythonpath)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Small networks and data so a whole stage trains in seconds on 2 CPU cores.
TINY_VAE = ["model.hidden_dims=[64]", "model.latent_dim=16", "featurizer.max_words=12", "featurizer.dim=32"]


def run_entry(script: str, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run an entry point (train.py, ...) the way a user does, from `cwd`."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def compose_app(config_name: str, *overrides: str, output_dir: Path, cwd: Path) -> DictConfig:
    """``conf/<config_name>.yaml`` composed as its Hydra app composes it, with the run dir and the
    working directory set, and the ``hydra`` node removed (the task function never sees it either)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(cwd)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
