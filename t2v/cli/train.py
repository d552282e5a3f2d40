"""What `python train.py` does: run the stage's task (one stage, or `stage=pipeline`'s chain) and hand the
monitored value to a Hydra sweeper."""

from __future__ import annotations

from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_method
from omegaconf import DictConfig

from t2v.errors import run_reporting_errors

DEFAULT_TASK = "t2v.pipeline.stage.train_stage"


def in_optimising_sweep() -> bool:
    """Whether this run is one trial of a sweeper that optimises (Optuna: it has a ``direction``), which records a
    failed trial and goes on. The basic sweeper runs every job and reports each as a plain run does."""
    try:
        hydra = HydraConfig.get()
    except ValueError:  # not inside a Hydra app
        return False
    return hydra.mode == RunMode.MULTIRUN and "direction" in hydra.sweeper


class TrialFailed(RuntimeError):
    """A trial whose training failed (a non-finite loss): the sweeper records it as failed."""


def train(cfg: DictConfig) -> float | None:
    """Train what ``cfg.stage`` names; returns its best ``stage.monitor`` value (what a sweeper optimises)."""
    # A stage may name its own task (stage=pipeline does); a plain stage is trained.
    task = get_method(cfg.stage.get("task") or DEFAULT_TASK)
    sweep = in_optimising_sweep()
    # In an Optuna sweep, a trial's failure is the sweeper's to record (a failed trial, and the sweep goes on).
    summary = run_reporting_errors(task, cfg, exit_on_error=not sweep)
    diverged = [name for name, reason in stop_reasons(summary).items() if reason == "nonfinite"]
    if sweep and diverged:
        raise TrialFailed(f"{' and '.join(diverged)} stopped on a non-finite loss; this job has no result")
    value = (summary.get("best") or {}).get(summary.get("monitor"))
    return None if value is None else float(value)


def stop_reasons(summary: dict[str, Any]) -> dict[str, str]:
    """How each GAN stage of a run ended (``stop/reason``): the stage's own, or each stage's of a pipeline."""
    stages = summary.get("stages") or {summary.get("stage"): summary}
    return {name: s["stop/reason"] for name, s in stages.items() if s.get("stop/reason")}
