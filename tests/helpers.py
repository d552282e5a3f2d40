"""Helpers shared by the tests (importable because pyproject puts tests/ on pytest's pythonpath)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Small networks and data so a whole stage trains in seconds on 2 CPU cores.
TINY_VAE = ["model.hidden_dims=[64]", "model.latent_dim=16", "text.max_words=12", "text.dim=32"]


def run_entry(script: str, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run an entry point (train.py, ...) the way a user does, from `cwd`."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
