"""The stage contract: what every stage's LightningModule offers the app that trains and chains it.

The training app (``t2v/pipeline/stage.py``) builds a stage from config and calls, in order:

- ``upstream_kwargs(manifests)`` (classmethod): constructor arguments derived from the upstream artifacts'
  manifests, such as the architecture of a frozen encoder. They become hyper-parameters, so
  ``Model.load_from_checkpoint(path)`` rebuilds the same architecture with no extras;
- ``load_upstream(manifests)``: copies the upstream weights into the frozen parts before training;
- ``optimizer_steps_per_batch``: how many optimizer steps one batch makes (``trainer.max_steps`` counts batches);
- ``export_artifact(directory, datamodule)``: what the stage adds to its published artifact beside the weights.

The defaults fit a stage with no upstream parts and no extras. Checkpoints carry ``t2v_format``, the layout of
their hyper-parameters; a stage whose options changed shape maps older checkpoints in ``upgrade_checkpoint``, so
they load, generate and resume as before.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import IO, Any

import pytorch_lightning as pl
import torch
from torch import Tensor

Manifests = dict[str, dict[str, Any]]
FORMAT_KEY = "t2v_format"
# Devices with a fused (one kernel for all tensors) Adam in PyTorch.
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def adam(params: Any, **options: Any) -> torch.optim.Adam:
    """Adam, fused where PyTorch has a fused kernel for the parameters' device.

    On CPU the default Adam updates one tensor at a time in Python, which took over half of a small stage's step
    (bench/throughput.py); the fused kernel does the same update in one call. The result differs from the
    unfused one only by floating-point rounding.
    """
    params = list(params)
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    fused = all(p.device.type in FUSED_ADAM_DEVICES and p.is_floating_point() for p in tensors)
    return torch.optim.Adam(params, fused=fused or None, **options)


class StageModule(pl.LightningModule):
    """A t2v stage: a LightningModule that the training app can chain to the stages before and after it."""

    #: What the progress bar shows beside Lightning's own (see :meth:`show`).
    progress: dict[str, float] = {}

    #: The hyper-parameter layout this class writes; raise it when the options change shape.
    hparams_format: int = 0

    @classmethod
    def upstream_kwargs(cls, manifests: Manifests) -> dict[str, Any]:
        """Constructor arguments taken from the upstream manifests (none by default)."""
        return {}

    def load_upstream(self, manifests: Manifests) -> None:
        """Copy the upstream weights into the frozen parts (nothing to copy by default)."""

    def export_artifact(self, directory: Path, datamodule: pl.LightningDataModule) -> dict[str, Any]:
        """Extra manifest entries, after writing any extra files into ``directory`` (none by default)."""
        return {}

    @property
    def optimizer_steps_per_batch(self) -> int:
        return 1

    # -- the progress bar ----------------------------------------------------------------------------------
    def show(self, values: dict[str, Tensor], due: bool | None = None) -> None:
        """Put ``values`` on the progress bar (``t2v/callbacks/progress.py`` shows :attr:`progress`), read on the
        steps the loggers write only (``due``; by default, from the trainer's step count before this batch's
        optimizer steps). Lightning would copy a ``prog_bar`` value to the host after every batch, which on a GPU
        waits for the step to finish before the next can be queued."""
        if due is None:
            trainer = self._trainer
            every = trainer.log_every_n_steps if trainer is not None else 0
            due = bool(every) and (trainer.global_step // self.optimizer_steps_per_batch + 1) % every == 0
        if due:
            read = torch.stack([value.detach().float() for value in values.values()]).tolist()
            self.progress = dict(zip(values, read, strict=True))

    # -- several processes ---------------------------------------------------------------------------------
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.average_running_statistics()

    @torch.no_grad()
    def average_running_statistics(self) -> None:
        """Under DDP, average the BatchNorm running statistics over the processes after every step, so every rank
        validates, checkpoints and stops with the same network. DDP keeps the parameters equal but not the
        statistics each rank gathers from its own data between DDP's broadcasts; ``trainer.sync_batchnorm`` makes
        them equal on GPUs (then there is nothing to do here), but PyTorch's SyncBatchNorm needs a GPU."""
        trainer = self._trainer
        if trainer is None or trainer.world_size < 2:
            return
        norms = [m for m in self.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not norms or any(isinstance(m, torch.nn.SyncBatchNorm) for m in norms):
            return
        stats = [s for m in norms for s in (m.running_mean, m.running_var) if s is not None]
        flat = trainer.strategy.reduce(torch.cat([s.flatten() for s in stats]), reduce_op="mean")
        for stat, averaged in zip(stats, flat.split([s.numel() for s in stats]), strict=True):
            stat.copy_(averaged.view_as(stat))

    # -- checkpoints from older t2v ---------------------------------------------------------------------
    @classmethod
    def upgrade_checkpoint(cls, checkpoint: dict[str, Any], version: int) -> None:
        """Rewrite, in place, a checkpoint written in layout ``version`` (< ``hparams_format``) to today's layout."""

    @classmethod
    def upgraded(cls, checkpoint: dict[str, Any]) -> dict[str, Any]:
        version = checkpoint.get(FORMAT_KEY, 0)
        if version < cls.hparams_format:
            cls.upgrade_checkpoint(checkpoint, version)
            checkpoint[FORMAT_KEY] = cls.hparams_format
        return checkpoint

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[FORMAT_KEY] = self.hparams_format

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Resuming with `ckpt_path=` from an older checkpoint: its weights are renamed or dropped to fit.
        self.upgraded(checkpoint)

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls, checkpoint_path: str | Path | IO, map_location: Any = None, **kwargs: Any
    ) -> StageModule:
        """Lightning's loader, after mapping an older checkpoint's hyper-parameters to today's options. Loads with
        ``weights_only=True``: a t2v checkpoint holds tensors and plain values, never code to run."""
        kwargs.setdefault("weights_only", True)
        # A file is memory-mapped: reading its layout costs no copy of the weights.
        is_file = isinstance(checkpoint_path, str | os.PathLike)
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=is_file)
        if checkpoint.get(FORMAT_KEY, 0) >= cls.hparams_format:
            if not is_file:
                checkpoint_path.seek(0)
            return super().load_from_checkpoint(checkpoint_path, map_location=map_location, **kwargs)
        buffer = io.BytesIO()
        torch.save(cls.upgraded(checkpoint), buffer)
        buffer.seek(0)
        return super().load_from_checkpoint(buffer, map_location=map_location, **kwargs)
