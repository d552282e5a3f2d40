"""What `python train.py` does: run the stage's task (one stage, or `stage=pipeline`'s chain) and hand the
monitored value to a Hydra sweeper."""

from __future__ import annotations

import sys

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_method
from omegaconf import DictConfig

from t2v.errors import run_reporting_errors
from t2v.pipeline.stage import Preempted

DEFAULT_TASK = "t2v.pipeline.stage.train_stage"


def in_sweep() -> bool:
    """Whether this run is one job of a ``-m`` sweep."""
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # not inside a Hydra app
        return False


def train(cfg: DictConfig) -> float | None:
    """Train what ``cfg.stage`` names; returns its best ``stage.monitor`` value (what a sweeper optimises)."""
    # A stage may name its own task (stage=pipeline does); a plain stage is trained.
    task = get_method(cfg.stage.get("task") or DEFAULT_TASK)
    # In a sweep a job's failure (bad input, a diverged GAN) is the sweeper's to record: Optuna counts a failed
    # trial and goes on; the basic sweeper runs the other jobs and fails at the end.
    try:
        summary = run_reporting_errors(task, cfg, exit_on_error=not in_sweep())
    except Preempted as stopped:  # the scheduler is about to kill this process: no next job of the sweep here
        sys.exit(stopped.exit_status)
    value = (summary.get("best") or {}).get(summary.get("monitor"))
    return None if value is None else float(value)
