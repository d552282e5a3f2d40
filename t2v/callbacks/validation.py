"""The GAN stages' validation metric: ``val/fidelity`` (do the samples match their captions) and ``val/fd``.

A GAN's losses say nothing about how good its samples are, so a GAN stage's ``validation_step`` generates samples
for the validation batch (the EMA generator when there is one, fixed noise per batch) and this callback hands them
to a judge (``t2v/eval/judges.py``): the attribute probe on the shapes, the siamese stage's encoders on movie data.
The scores are logged once per validation run; ``stage.monitor: val/fidelity`` (mode max) then picks
``best.ckpt``, the artifact later stages use, and the value a Hydra sweeper optimises.

Validation reads a fixed subset of the validation captions (``trainer.limit_val_batches`` in the GAN stages'
configs) under ``no_grad``. The probe is trained once per dataset and settings and cached in the registry, shared
with ``evaluate.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.seed import isolate_rng
from rich.console import Console

from t2v.cluster import launched_rank, wait_for
from t2v.data.datamodule import ShapesDataModule
from t2v.errors import T2VError
from t2v.eval.judges import Judge, ProbeJudge, SiameseJudge
from t2v.eval.probe import find_cached, obtain_probe, settings_key
from t2v.models.gan import AdversarialModule
from t2v.models.siamese import SiameseEmbedding
from t2v.pipeline import artifacts


class GanValidation(Callback):
    """Scores a GAN stage's validation samples with the data's judge and logs ``val/fidelity`` and ``val/fd``.

    ``probe``: the attribute probe's settings (``conf/probe/``); ``siamese``: the siamese artifact that judges movie
    samples ("latest" in ``artifacts_dir``, or a folder); ``frames``: how many frames of a clip the siamese reads.
    """

    def __init__(
        self, probe: Mapping[str, Any], artifacts_dir: str, siamese: str | None = "latest", frames: int = 4
    ) -> None:
        self.probe_settings, self.artifacts_dir = dict(probe), artifacts_dir
        self.siamese, self.frames = siamese or "latest", frames
        self.judge: Judge | None = None
        self.active = False

    # -- before training ------------------------------------------------------------------------
    def prepare(self, model: pl.LightningModule, datamodule: pl.LightningDataModule, work_dir: Path) -> None:
        """Build the judge before ``trainer.fit``. With Lightning's own DDP launcher rank 0 gets here (and trains a
        missing probe) before it starts the other ranks, which then find the probe cached; when a cluster launcher
        starts every rank at once, the others wait for rank 0's probe."""
        if isinstance(model, AdversarialModule):
            # Training a missing probe seeds and draws random numbers; the stage's own stream must not depend on
            # whether the probe was cached.
            with isolate_rng():
                self.judge = self.build_judge(datamodule, work_dir)

    def build_judge(self, datamodule: pl.LightningDataModule, work_dir: Path) -> Judge:
        if isinstance(datamodule, ShapesDataModule):
            datamodule.setup("fit")
            shapes, log = datamodule.shapes, Console(soft_wrap=True).print
            if launched_rank() != 0 and self.probe_settings["artifact"] in (None, "auto"):
                # srun or torchrun start every rank at once: rank 0 trains a missing probe, the others load it.
                key = settings_key(self.probe_settings)
                artifacts_dir = self.probe_settings["artifacts_dir"]
                wait_for(lambda: find_cached(artifacts_dir, shapes.fingerprint(), key), "the attribute probe")
            probe, _ = obtain_probe(self.probe_settings, shapes, work_dir, log=log, progress=False)
            return ProbeJudge(probe)
        folder = artifacts.find(self.artifacts_dir, "siamese", self.siamese)
        if folder is None:
            raise T2VError(
                f"the validation metric of a GAN stage on movie data needs a trained siamese artifact "
                f"({self.siamese} in {self.artifacts_dir}); train it first with python train.py stage=siamese, or "
                "switch validation off with callbacks.gan_validation=null stage.monitor=null"
            )
        return SiameseJudge(artifacts.load_model(SiameseEmbedding, artifacts.read_manifest(folder)), self.frames)

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
