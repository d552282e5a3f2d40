"""Logger factories referenced from `conf/logger/`.

Lightning's own loggers are built straight from config; W&B needs a factory because whether it
runs offline depends on the machine (is an API key configured?), and its group on how the run was
launched (a sweep, a pipeline, an experiment), not on the config alone.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from pytorch_lightning.loggers import Logger, WandbLogger


def wandb_api_key_configured() -> bool:
    """True when W&B could log in: WANDB_API_KEY is set or `wandb login` wrote ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc_path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        hosts = netrc.netrc(netrc_path).hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in hosts)


def default_group(stage: str | None = None) -> str | None:
    """The W&B group of a run: the sweep folder for every job of a ``-m`` sweep, the pipeline's run dir
    for the stages of ``stage=pipeline``, else the experiment (``experiment=quickstart``), else the stage."""
    try:
        hydra = HydraConfig.get()
    except ValueError:  # not inside a Hydra app
        return stage
    if hydra.mode == RunMode.MULTIRUN:
        return str(hydra.sweep.dir)
    choices = hydra.runtime.choices
    if choices.get("stage") == "pipeline":
        return f"pipeline {hydra.run.dir}"
    experiment = choices.get("experiment")
    return experiment if experiment not in (None, "null") else stage


def wandb_logger(
    offline: bool | None = None, save_dir: str = ".", group: str | None = None, **kwargs: Any
) -> WandbLogger:
    """A WandbLogger writing into the run dir; offline unless an API key is configured.

    ``offline=None`` decides automatically. An explicit WANDB_MODE in the environment wins over
    both, as W&B users expect. ``group=None`` picks :func:`default_group` (with the job type, the
    stage, as its fallback).
    """
    mode = os.environ.get("WANDB_MODE")
    if mode in ("offline", "dryrun"):
        offline = True
    elif mode == "online":
        offline = False
    elif offline is None:
        offline = not wandb_api_key_configured()
    Path(save_dir).mkdir(parents=True, exist_ok=True)  # wandb would fall back to ./wandb otherwise
    if group is None:
        group = default_group(kwargs.get("job_type"))
    return WandbLogger(offline=offline, save_dir=save_dir, group=group, **kwargs)


def define_gan_metrics(loggers: list[Logger]) -> None:
    """Plot every W&B curve of a GAN stage against ``train/gan_step`` (generator updates).

    Lightning's WandbLogger defines the glob ``*`` with ``trainer/global_step`` as its x-axis; this
    redefines the same glob (W&B keeps one definition per glob, so the last one counts)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.define_metric("train/gan_step")
            logger.experiment.define_metric("*", step_metric="train/gan_step", step_sync=True)


def wandb_run_dir(loggers: list[Logger]) -> str | None:
    """The local folder of the W&B run (what `wandb sync` takes), if W&B is on."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            return str(Path(logger.experiment.dir).parent)
    return None


def close_loggers(loggers: list[Logger]) -> None:
    """Finish the W&B run, so the next job of a sweep starts a fresh one."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()
