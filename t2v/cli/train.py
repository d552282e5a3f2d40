"""What `python train.py` does: run the stage's task (one stage, or `stage=pipeline`'s chain) and hand the
monitored value to a Hydra sweeper."""

from __future__ import annotations

from hydra.utils import get_method
from omegaconf import DictConfig

from t2v.errors import run_reporting_errors

DEFAULT_TASK = "t2v.pipeline.stage.train_stage"


def train(cfg: DictConfig) -> float | None:
    """Train what ``cfg.stage`` names; returns its best ``stage.monitor`` value (what a sweeper optimises)."""
    # A stage may name its own task (stage=pipeline does); a plain stage is trained.
    task = get_method(cfg.stage.get("task") or DEFAULT_TASK)
    summary = run_reporting_errors(task, cfg)
    best = summary.get("best") or {}
    return best.get(summary.get("monitor"))
