"""The GAN stages' validation metric: ``val/fidelity`` (do the samples match their captions) and ``val/fd``.

A GAN's losses say nothing about how good its samples are, so a GAN stage's ``validation_step`` generates samples
for the validation batch (the EMA generator when there is one, fixed noise per batch) and this callback hands them
to a judge (``t2v/eval/judges.py``): the attribute probe on the shapes, the text-video judge on movie data.
The scores are logged once per validation run; ``stage.monitor: val/fidelity`` (mode max) then picks
``best.ckpt``, the artifact later stages use, and the value a Hydra sweeper optimises.

Validation reads a fixed subset of the validation captions (``trainer.limit_val_batches`` in the GAN stages'
configs) under ``no_grad``. The probe and the text-video judge are trained once per dataset and settings and cached
in the registry, shared with ``evaluate.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from rich.console import Console

from t2v.data.datamodule import ShapesDataModule
from t2v.eval.judge import TextVideoJudge, judge_dims, obtain_judge
from t2v.eval.judges import Judge, ProbeJudge, TextClipJudge
from t2v.eval.probe import obtain_probe
from t2v.models.gan import AdversarialModule
from t2v.trainer import random_state_kept


class GanValidation(Callback):
    """Scores a GAN stage's validation samples with the data's judge and logs ``val/fidelity`` and ``val/fd``.

    ``probe``: the attribute probe's settings (``conf/probe/``), the judge on the shapes; ``judge``: the text-video
    judge's settings (``conf/judge/``), the judge on movie data.
    """

    def __init__(self, probe: Mapping[str, Any], judge: Mapping[str, Any]) -> None:
        self.probe_settings, self.judge_settings = dict(probe), dict(judge)
        self.judge: Judge | None = None
        self.active = False

    # -- before training ------------------------------------------------------------------------
    def prepare(self, model: pl.LightningModule, datamodule: pl.LightningDataModule, work_dir: Path) -> None:
        """Build the judge before ``trainer.fit``. With Lightning's own DDP launcher rank 0 gets here (and trains a
        missing probe or judge) before it starts the other ranks, which then find it cached; when a cluster launcher
        starts every rank at once, the others wait for rank 0's."""
        if isinstance(model, AdversarialModule):
            # Training a missing judge (or the data's agreement filter) seeds and draws random numbers; the stage's
            # own streams and data order must not depend on whether it was cached.
            with random_state_kept():
                self.judge = self.build_judge(datamodule, work_dir)

    def build_judge(self, datamodule: pl.LightningDataModule, work_dir: Path) -> Judge:
        datamodule.setup("fit")
        if isinstance(datamodule, ShapesDataModule):
            probe, _ = obtain_probe(self.probe_settings, datamodule.shapes, work_dir,
                                    log=Console(soft_wrap=True).print, progress=False)  # fmt: skip
            return ProbeJudge(probe)
        return TextClipJudge(self.text_video_judge(datamodule, work_dir))

    def text_video_judge(self, datamodule: pl.LightningDataModule, work_dir: Path) -> TextVideoJudge:
        """The judge ``evaluate.py`` scores this data with (the same cache entry), trained now on the real training
        clips if none is cached (by rank 0: the ranks a cluster launcher starts beside it wait for it)."""
        dims = judge_dims(datamodule.featurizer, datamodule.spec.frames, datamodule.spec.size)
        judge, _ = obtain_judge(self.judge_settings, datamodule.datasets["train"], dims, datamodule.fingerprint(),
                                datamodule.featurizer.identity(), work_dir, log=Console(soft_wrap=True).print,
                                progress=False)  # fmt: skip
        return judge

    # -- Lightning hooks ------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.active = self.judge is not None and isinstance(pl_module, AdversarialModule)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After the strategy has moved the model: the judge works where the samples are (and NCCL syncs there).
        if self.active:
            self.judge.to(pl_module.device)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.active and not trainer.sanity_checking:
            self.judge.update(outputs["generated"], outputs["real"], batch)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active:
            return
        if not trainer.sanity_checking:
            for name, value in self.judge.compute().items():
                pl_module.log(f"val/{name}", value.float(), prog_bar=name == "fidelity", sync_dist=True)
        self.judge.reset()
