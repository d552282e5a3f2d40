"""GanEquilibriumStopping: stop a GAN stage from its own loss curves (``callbacks.gan_stopping``).

A thin Lightning layer around :class:`t2v.callbacks.stopping_rules.GanStopMonitor` (the rules and
their parameters are documented there). Every GAN step it reads the G and D losses the module logged
(``trainer.callback_metrics``), averages them over DDP processes so every process sees the same
curves and makes the same decision, and on a stop:

- saves ``<checkpoints>/stop-<reason>-step<N>.ckpt`` (for ``nonfinite`` it saves nothing: the state
  is broken, and the last good checkpoint, ``last.ckpt``, is kept as it is);
- writes ``stop/reason`` and ``stop/step`` to the logger summary (W&B) or as a metric (other loggers);
- prints one line saying why;
- sets ``trainer.should_stop`` on every process together; a non-finite loss instead raises
  :class:`GanTrainingAborted`, so Lightning writes no further checkpoint over the last good one
  (``t2v.pipeline.stage.train_stage`` catches it and records the stop in ``metrics.json``).

When no rule fires, the end of training is recorded the same way, with reason ``max_steps`` (or
``max_epochs``), so every GAN run's ``metrics.json`` says how it ended. Only GAN stages (an
:class:`~t2v.models.gan.AdversarialModule`) are watched; for other stages the callback does nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from rich.console import Console

from t2v.callbacks.stopping_rules import GanStopMonitor, StopDecision
from t2v.errors import T2VError
from t2v.models.gan import AdversarialModule

# What the G and D optimizers minimise (AdversarialModule logs them under these names).
TRAINED_LOSSES = ("train/g_loss", "train/d_loss")


class GanTrainingAborted(Exception):
    """Raised inside ``trainer.fit`` when the run must end without another checkpoint (a non-finite loss)."""

    def __init__(self, decision: StopDecision) -> None:
        super().__init__(decision.message)
        self.decision = decision


def read_losses(trainer: pl.Trainer, keys: tuple[str, ...], owner: str) -> list[float]:
    """This step's values of ``keys`` from what the module logged; a missing key is a config error."""
    metrics = trainer.callback_metrics
    values = []
    for key in keys:
        if key not in metrics:
            logged = ", ".join(sorted(k for k in metrics if k.startswith("train/"))) or "nothing"
            raise T2VError(
                f"{owner} reads {key!r}, which the model does not log (it logs {logged}); set it to one of those"
            )
        values.append(float(metrics[key]))
    return values


def checkpoint_dir(trainer: pl.Trainer) -> Path:
    """Where the run's checkpoints go: the ModelCheckpoint's folder, else <default_root_dir>/checkpoints."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.dirpath:
        return Path(callback.dirpath)
    return Path(trainer.default_root_dir) / "checkpoints"


def last_good_checkpoint(trainer: pl.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint):
        return callback.last_model_path or callback.best_model_path or None
    return None


def limit_reached(trainer: pl.Trainer) -> str:
    """Which of the trainer's limits ended a run that no rule stopped: ``max_steps`` or ``max_epochs``."""
    return "max_steps" if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps else "max_epochs"


class GanEquilibriumStopping(pl.Callback):
    """Stops a GAN when its losses reach equilibrium or their second minimum, or when training fails."""

    def __init__(
        self,
        g_key: str = "train/g_loss",
        d_key: str = "train/d_loss",
        save_checkpoint: bool = True,
        verbose: bool = True,
        **rules: Any,
    ) -> None:
        """``rules`` are :class:`GanStopMonitor`'s settings (mode, smoothing, window, tolerance, ...)."""
        self.rules = rules
        self.monitor = GanStopMonitor(**self.rules)  # checks the settings now, before any training
        self.keys = (g_key, d_key)
        self.save_stop_checkpoint, self.verbose = save_checkpoint, verbose
        self.active = False
        self.decision: StopDecision | None = None
        self.checkpoint: str | None = None

    # -- Lightning hooks ------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.active = stage == "fit" and isinstance(pl_module, AdversarialModule) and not trainer.fast_dev_run

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.active or self.decision is not None:
            return
        # The losses G and D are trained on count for the NaN rule too, when g_key/d_key are only terms of them.
        others = [k for k in TRAINED_LOSSES if k not in self.keys and k in trainer.callback_metrics]
        values = read_losses(trainer, (*self.keys, *others), "callbacks.gan_stopping.g_key/d_key")
        if trainer.world_size > 1:  # the same curves on every process, hence the same decision
            mean = trainer.strategy.reduce(torch.tensor(values, device=pl_module.device), reduce_op="mean")
            values = [float(v) for v in mean]
        step = int(pl_module.gan_step)
        decision = self.monitor.update(step, values[0], values[1], dict(zip(others, values[2:], strict=True)))
        if not trainer.strategy.reduce_boolean_decision(decision is not None, all=False):
            return
        if decision is None:  # only if another process saw other numbers; stop with it all the same
            decision = StopDecision("other_process", step, "another DDP process decided to stop")
        self.stop(trainer, pl_module, decision)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active or self.decision is not None:
            return
        step = int(pl_module.gan_step)
        steps_per_batch = pl_module.optimizer_steps_per_batch
        reason = limit_reached(trainer)
        limit = trainer.max_steps // steps_per_batch if reason == "max_steps" else trainer.max_epochs
        self.decision = StopDecision(reason, step, f"no stopping rule fired; training ran to {reason}={limit}")
        self.record(trainer, self.decision)

    # -- stopping -------------------------------------------------------------------------------
    def stop(self, trainer: pl.Trainer, pl_module: pl.LightningModule, decision: StopDecision) -> None:
        self.decision = decision
        if decision.reason == "nonfinite":
            self.checkpoint = last_good_checkpoint(trainer)
        elif self.save_stop_checkpoint:
            path = checkpoint_dir(trainer) / f"stop-{decision.reason}-step{decision.step}.ckpt"
            trainer.save_checkpoint(path)  # every process calls it; rank 0 writes
            self.checkpoint = str(path)
        self.record(trainer, decision)
        if self.verbose and trainer.is_global_zero:
            where = "the last good checkpoint is" if decision.reason == "nonfinite" else "checkpoint"
            Console().print(
                f"[bold]t2v[/] GAN stopped at step {decision.step}: [bold]{decision.reason}[/] - {decision.message}"
                + (f"; {where} {self.checkpoint}" if self.checkpoint else ""),
                soft_wrap=True,
            )
        if decision.reason == "nonfinite":
            raise GanTrainingAborted(decision)
        trainer.should_stop = True

    def summary(self) -> dict[str, Any]:
        """The ``stop/*`` fields for metrics.json (empty when the callback watched nothing)."""
        if self.decision is None:
            return {}
        fields = {
            "stop/reason": self.decision.reason,
            "stop/step": self.decision.step,
            "stop/message": self.decision.message,
            "stop/checkpoint": self.checkpoint,
        }
        fields.update({f"stop/{k}": v for k, v in self.decision.details.items()})
        return fields

    def record(self, trainer: pl.Trainer, decision: StopDecision) -> None:
        """stop/reason and stop/step: W&B's run summary; for the other loggers, stop/step as a metric."""
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                if trainer.is_global_zero:
                    logger.experiment.summary.update({k: v for k, v in self.summary().items() if v is not None})
                continue
            logger.log_metrics({"stop/step": float(decision.step)}, step=decision.step)
            if isinstance(logger, TensorBoardLogger) and trainer.is_global_zero:
                logger.experiment.add_text("stop/reason", f"{decision.reason}: {decision.message}", decision.step)

    # -- resuming -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        history = self.monitor.history
        return {"step": list(history["step"]), "g": list(history["g"]), "d": list(history["d"])}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Replay the saved loss history, so the smoothing and the windows continue where they were.
        A decision the replay reproduces is dropped: the resumed run checks the rules afresh."""
        self.monitor = GanStopMonitor(**self.rules)
        for step, g, d in zip(
            state_dict.get("step", []), state_dict.get("g", []), state_dict.get("d", []), strict=True
        ):
            self.monitor.update(int(step), g, d)
            self.monitor.decision = None
