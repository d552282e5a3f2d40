"""GanEquilibriumStopping: stop a GAN stage from its own loss curves (``callbacks.gan_stopping``).

A thin Lightning layer around :class:`t2v.callbacks.stopping_rules.GanStopMonitor` (the rules and
their parameters are documented there). It keeps every GAN step's G and D losses on the device and reads them
every ``trainer.log_every_n_steps`` steps, and before any checkpoint is written, in one copy averaged over the DDP
processes (so every process sees the same curves and makes the same decision); it feeds them to the rules step
by step, so a decision names the step it was made at, and acts on it at the read. On a stop:

- saves ``<checkpoints>/stop-<reason>-step<N>.ckpt``, N the step it stops at (for ``nonfinite`` it saves
  nothing: the state is broken, and the last good checkpoint, ``last.ckpt``, is kept as it is; a checkpoint
  about to be written reads the losses first, and is not written when one is not finite);
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
from torch import Tensor

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


class StepLosses:
    """Every GAN step's values of ``keys``, kept where the model computed them and read to the host in one copy,
    averaged over the DDP processes in one collective: on a GPU a read waits for the device, so reading every step
    would stall each one. The model hands its values over in ``step_terms`` (see :class:`AdversarialModule`)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.steps: list[int] = []
        self.rows: list[Tensor] = []

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, pl_module: AdversarialModule) -> None:
        self.steps.append(pl_module.gan_steps_done)
        self.rows.append(torch.stack([pl_module.step_terms[key] for key in self.keys]))

    def read(self, trainer: pl.Trainer) -> list[tuple[int, list[float]]]:
        """The kept (step, values) pairs, oldest first, and forget them."""
        if not self.rows:
            return []
        values = torch.stack(self.rows)
        if trainer.world_size > 1:  # the same curves on every process, hence the same decisions
            values = trainer.strategy.reduce(values, reduce_op="mean")
        read = list(zip(self.steps, values.tolist(), strict=True))
        self.steps, self.rows = [], []
        return read


def check_keys(pl_module: AdversarialModule, keys: tuple[str, ...], owner: str) -> None:
    """A key the model does not log is a config error."""
    logged = pl_module.step_terms
    for key in keys:
        if key not in logged:
            raise T2VError(
                f"{owner} reads {key!r}, which the model does not log (it logs {', '.join(sorted(logged)) or 'nothing'}"
                "); set it to one of those"
            )


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
        self.losses: StepLosses | None = None
        self.fitting: tuple[pl.Trainer, AdversarialModule] | None = None
        self.decision: StopDecision | None = None
        self.checkpoint: str | None = None

    # -- Lightning hooks ------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.active = stage == "fit" and isinstance(pl_module, AdversarialModule) and not trainer.fast_dev_run
        self.fitting = (trainer, pl_module) if self.active else None

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.fitting = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.active or self.decision is not None:
            return
        if self.losses is None:
            # The losses G and D are trained on count for the NaN rule too, when g_key/d_key are only terms of them.
            check_keys(pl_module, self.keys, "callbacks.gan_stopping.g_key/d_key")
            others = tuple(k for k in TRAINED_LOSSES if k not in self.keys and k in pl_module.step_terms)
            self.losses = StepLosses((*self.keys, *others))
        self.losses.add(pl_module)
        if len(self.losses) >= max(trainer.log_every_n_steps, 1):
            self.read(trainer, pl_module)

    def read(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> None:
        """Feed the kept steps to the rules and act on a decision."""
        if self.losses is None or self.decision is not None:
            return
        others = self.losses.keys[2:]
        decision = None
        for step, values in self.losses.read(trainer):
            decision = self.monitor.update(step, values[0], values[1], dict(zip(others, values[2:], strict=True)))
            if decision is not None:
                break
        if not trainer.strategy.reduce_boolean_decision(decision is not None, all=False):
            return
        if decision is None:  # only if another process saw other numbers; stop with it all the same
            step = pl_module.gan_steps_done
            decision = StopDecision("other_process", step, "another DDP process decided to stop")
        self.stop(trainer, pl_module, decision)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active:
            return
        self.read(trainer, pl_module)
        if self.decision is not None:
            return
        step = pl_module.gan_steps_done
        steps_per_batch = pl_module.optimizer_steps_per_batch
        reason = limit_reached(trainer)
        limit = trainer.max_steps // steps_per_batch if reason == "max_steps" else trainer.max_epochs
        self.decision = StopDecision(reason, step, f"no stopping rule fired; training ran to {reason}={limit}")
        self.record(trainer, self.decision)

    # -- stopping -------------------------------------------------------------------------------
    def stop(self, trainer: pl.Trainer, pl_module: AdversarialModule, decision: StopDecision) -> None:
        self.decision = decision
        if decision.reason == "nonfinite":
            self.checkpoint = last_good_checkpoint(trainer)
        elif self.save_stop_checkpoint:
            path = checkpoint_dir(trainer) / f"stop-{decision.reason}-step{pl_module.gan_steps_done}.ckpt"
            trainer.save_checkpoint(path)  # every process calls it; rank 0 writes
            self.checkpoint = str(path)
        self.record(trainer, decision)
        if self.verbose and trainer.is_global_zero:
            where = "the last good checkpoint is" if decision.reason == "nonfinite" else "checkpoint"
            at = pl_module.gan_steps_done
            read_later = f" (its losses were read at step {at})" if at != decision.step else ""
            Console().print(
                f"[bold]t2v[/] GAN stopped at step {decision.step}{read_later}: [bold]{decision.reason}[/] - "
                f"{decision.message}" + (f"; {where} {self.checkpoint}" if self.checkpoint else ""),
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
        """Called as a checkpoint is assembled, before it is written: the kept losses are read first, so the history
        is whole, and a non-finite one aborts the run before a broken state is saved."""
        if self.fitting is not None:
            self.read(*self.fitting)
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
