"""The GAN callbacks inside a real (tiny, in-process) Trainer: stopping, aborting on NaN, the loss plot,
samples, the health signals, and staying out of the way of non-GAN stages."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import imageio.v3 as iio
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from t2v.callbacks.equilibrium import GanEquilibriumStopping, GanTrainingAborted
from t2v.callbacks.loss_plot import GanLossPlot
from t2v.callbacks.progress import ProgressBar
from t2v.callbacks.samples import PANELS, GanSamples
from t2v.errors import T2VError
from t2v.models.gan import AdversarialModule

from helpers import HostReads

pytestmark = pytest.mark.filterwarnings(
    r"ignore:.*module\(s\) in eval mode.*",
    "ignore:.*GPU available.*",
    "ignore:.*manual optimization and every_n_train_steps.*",
)

WORD_DIM, MAX_WORDS = 8, 4
TEXT_ENCODER = {
    "vae": {"word_dim": WORD_DIM, "max_words": MAX_WORDS, "hidden_dims": [16], "latent_dim": 8},
    "embed_dim": 16,
    "hidden_dim": 16,
}


class Items(Dataset):
    """Random clips in the datamodule's item layout."""

    def __init__(self, n: int = 32, frames: int = 8, size: int = 16) -> None:
        g = torch.Generator().manual_seed(0)
        self.video = torch.rand(n, 3, frames, size, size, generator=g) * 2 - 1
        self.text = torch.randn(n, MAX_WORDS * WORD_DIM, generator=g)

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"video": self.video[i], "text": self.text[i], "caption": f"caption number {i}",
                "labels": {"colour": torch.tensor(i % 3)}}  # fmt: skip


class Data(pl.LightningDataModule):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.datasets = {"train": Items(**kwargs), "val": Items(n=6, **kwargs)}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["train"], batch_size=4, shuffle=True)


class TinyGAN(AdversarialModule):
    """A linear G and D on 8-d vectors; ``nan_at`` makes G's loss NaN from that GAN step on."""

    def __init__(self, nan_at: int | None = None) -> None:
        super().__init__()
        self.generator, self.discriminator = nn.Linear(4, 8), nn.Linear(8, 1)
        self.nan_at = nan_at

    def real(self, batch: dict[str, Any]) -> Tensor:
        return batch["video"].flatten(1)[:, :8]

    def discriminator_terms(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        real = self.real(batch)
        with torch.no_grad():
            fake = self.generator(torch.randn(len(real), 4))
        real_logits, fake_logits = self.discriminator(real), self.discriminator(fake)
        return {"d_loss": self.gan.real(real_logits) + self.gan.fake(fake_logits),
                "d_real": torch.sigmoid(real_logits).mean(), "d_fake": torch.sigmoid(fake_logits).mean()}  # fmt: skip

    def generator_terms(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        fake = self.generator(torch.randn(len(batch["caption"]), 4))
        loss = self.gan.generator(self.discriminator(fake))
        if self.nan_at is not None and int(self.gan_step) + 1 >= self.nan_at:
            loss = loss * math.nan
        return {"g_loss": loss}


class NotAGAN(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(8, 1)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss = F.mse_loss(self.net(batch["video"].flatten(1)[:, :8]), torch.zeros(len(batch["caption"]), 1))
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(tmp_path: Path, model: pl.LightningModule, callbacks: list[pl.Callback], steps: int = 40,
        every: int = 2) -> pl.Trainer:  # fmt: skip
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", filename="best", save_last=True,
                                 every_n_train_steps=2 * 5)  # fmt: skip
    trainer = pl.Trainer(
        max_steps=2 * steps, max_epochs=-1, accelerator="cpu", logger=CSVLogger(tmp_path, name="csv", version=""),
        callbacks=[*callbacks, checkpoint], enable_progress_bar=False, enable_model_summary=False,
        log_every_n_steps=every, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, datamodule=Data())
    return trainer


def csv_rows(tmp_path: Path) -> list[dict[str, str]]:
    with open(tmp_path / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def loose_stopping(**kwargs: Any) -> GanEquilibriumStopping:
    """Settings that any two positive losses satisfy: a stop at exactly ``min_steps``."""
    settings = dict(window=3, tolerance=1.01, epsilon=1e6, min_steps=12, verbose=False)
    return GanEquilibriumStopping(**{**settings, **kwargs})


def test_stops_early_with_a_tagged_checkpoint_and_a_plot(tmp_path: Path) -> None:
    stopping, plot = loose_stopping(), GanLossPlot(path=str(tmp_path / "loss_plot.png"))
    trainer = fit(tmp_path, TinyGAN(), [stopping, plot])
    assert trainer.global_step == 2 * 12  # stopped after GAN step 12 of 40
    summary = stopping.summary()
    assert summary["stop/reason"] == "equilibrium" and summary["stop/step"] == 12
    assert Path(summary["stop/checkpoint"]) == tmp_path / "checkpoints" / "stop-equilibrium-step12.ckpt"
    saved = torch.load(summary["stop/checkpoint"], map_location="cpu", weights_only=False)
    assert int(saved["state_dict"]["gan_step"]) == 12
    assert iio.imread(tmp_path / "loss_plot.png").ndim == 3 and plot.written == tmp_path / "loss_plot.png"
    assert stopping.monitor.history["step"] == list(range(1, 13))
    stop_rows = [row for row in csv_rows(tmp_path) if row.get("stop/step")]
    assert [float(row["stop/step"]) for row in stop_rows] == [12.0]


def test_health_signals_on_the_logged_steps(tmp_path: Path) -> None:
    fit(tmp_path, TinyGAN(), [], steps=8, every=2)
    rows = [row for row in csv_rows(tmp_path) if row.get("train/g_loss")]
    assert [float(row["train/gan_step"]) for row in rows] == [2.0, 4.0, 6.0, 8.0]
    for row in rows:
        assert {"train/d_loss", "train/d_real", "train/d_fake"} <= {k for k, v in row.items() if v}
        assert float(row["train/grad_norm_g"]) > 0 and float(row["train/grad_norm_d"]) > 0
        assert float(row["train/diversity"]) > 0


def test_runs_to_the_end_and_records_why(tmp_path: Path) -> None:
    stopping = GanEquilibriumStopping(verbose=False)  # the defaults: nothing fires in 10 steps
    fit(tmp_path, TinyGAN(), [stopping], steps=10)
    assert stopping.summary()["stop/reason"] == "max_steps" and stopping.summary()["stop/step"] == 10


def test_nonfinite_loss_aborts_and_keeps_the_last_good_checkpoint(tmp_path: Path, capsys) -> None:
    stopping = GanEquilibriumStopping(min_steps=1000)
    plot = GanLossPlot(path=str(tmp_path / "loss_plot.png"))
    with pytest.raises(GanTrainingAborted, match="not finite at step 13"):
        fit(tmp_path, TinyGAN(nan_at=13), [stopping, plot])
    summary = stopping.summary()
    assert summary["stop/reason"] == "nonfinite" and summary["stop/step"] == 13
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert summary["stop/checkpoint"] == str(last)
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert int(saved["state_dict"]["gan_step"]) == 10  # the checkpoint before the NaN, not a NaN one
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
    assert not list((tmp_path / "checkpoints").glob("stop-*"))
    assert (tmp_path / "loss_plot.png").is_file()
    lines = [line for line in capsys.readouterr().out.splitlines() if "GAN stopped" in line]
    assert len(lines) == 1 and "nonfinite" in lines[0] and "last good checkpoint" in lines[0]


def test_a_nonfinite_loss_is_caught_before_a_checkpoint_of_it_is_written(tmp_path: Path) -> None:
    """The losses are read every 50 steps here, but the checkpoint due at step 15 reads them first: it finds the
    NaN of step 13 and is not written."""
    stopping = GanEquilibriumStopping(min_steps=1000, verbose=False)
    with pytest.raises(GanTrainingAborted, match="not finite at step 13"):
        fit(tmp_path, TinyGAN(nan_at=13), [stopping], every=50)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert int(saved["state_dict"]["gan_step"]) == 10


def test_a_stop_is_made_at_the_read_after_the_rule_fires(tmp_path: Path) -> None:
    """Read every 5 steps, a rule firing at step 12 stops the run at step 15; the summary names step 12, the
    checkpoint the step it holds."""
    stopping = loose_stopping()
    trainer = fit(tmp_path, TinyGAN(), [stopping], every=5)
    assert trainer.global_step == 2 * 15
    summary = stopping.summary()
    assert summary["stop/reason"] == "equilibrium" and summary["stop/step"] == 12
    assert Path(summary["stop/checkpoint"]).name == "stop-equilibrium-step15.ckpt"
    assert stopping.monitor.history["step"] == list(range(1, 13))


def test_values_leave_the_device_only_on_the_logged_steps(tmp_path: Path, monkeypatch) -> None:
    """On a GPU every copy of a value to the host waits for the step to finish. The GAN loop, its callbacks, the
    loggers and the progress bar copy only on the steps the loggers write (every 5th here); the data loading reads
    only CPU tensors."""
    reads = HostReads(monkeypatch, steps_per_batch=2)
    callbacks = [loose_stopping(min_steps=1000), GanLossPlot(path=str(tmp_path / "plot.png")), ProgressBar(), reads]
    trainer = pl.Trainer(
        max_steps=2 * 20, max_epochs=-1, accelerator="cpu", logger=CSVLogger(tmp_path, name="csv", version=""),
        callbacks=callbacks, enable_model_summary=False, enable_checkpointing=False, log_every_n_steps=5,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(TinyGAN(), datamodule=Data())
    during_training = {s for s in reads.steps if 0 < s <= 20}
    assert during_training and during_training <= {5, 10, 15, 20}
    assert {"g_loss", "d_loss"} <= set(callbacks[2].get_metrics(trainer, trainer.lightning_module))


def test_a_missing_loss_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(T2VError, match=r"callbacks.gan_stopping.g_key/d_key reads 'train/g_adv', which the model"):
        fit(tmp_path, TinyGAN(), [loose_stopping(g_key="train/g_adv")])


def test_non_gan_stages_are_left_alone(tmp_path: Path) -> None:
    callbacks = [loose_stopping(min_steps=1), GanLossPlot(path=str(tmp_path / "plot.png")),
                 GanSamples(every_n_steps=1, dirpath=str(tmp_path / "samples"))]  # fmt: skip
    trainer = fit(tmp_path, NotAGAN(), callbacks, steps=6)
    assert trainer.global_step == 2 * 6 and not callbacks[0].summary()
    assert not (tmp_path / "plot.png").exists() and not (tmp_path / "samples").exists()


def test_resume_replays_the_loss_history(tmp_path: Path) -> None:
    first = loose_stopping(smoothing="window", smoothing_steps=4)
    fit(tmp_path, TinyGAN(), [first])
    second = loose_stopping(smoothing="window", smoothing_steps=4)
    second.load_state_dict(first.state_dict())
    assert second.monitor.history == first.monitor.history
    assert second.decision is None and second.monitor.decision is None  # the resumed run decides afresh


def test_stage1_samples_are_a_captioned_grid(tmp_path: Path) -> None:
    from t2v.models.stage1 import Stage1GAN

    model = Stage1GAN(text_encoder=TEXT_ENCODER, size=16, width=0.0625, generator={"z_dim": 8, "c_dim": 8})
    samples = GanSamples(every_n_steps=2, dirpath=str(tmp_path / "samples"), num_captions=3, num_per_caption=2)
    fit(tmp_path, model, [samples], steps=3)
    assert [p.name for p in samples.written] == ["step000002.png", "step000003.png"]  # every 2, and at the end
    grid = iio.imread(samples.written[0])
    assert grid.ndim == 3 and grid.shape[1] >= 480
    # Fixed noise and captions: the same model gives the same samples.
    again = GanSamples(seed=0, num_captions=3, num_per_caption=2).fixed_inputs(
        SimpleNamespace(datamodule=Data()), model
    )
    assert torch.equal(samples.inputs["z"], again["z"]) and samples.inputs["captions"] == again["captions"]


def test_videogan_samples_are_a_gif_with_panels(tmp_path: Path) -> None:
    from t2v.models.videogan import VideoGAN

    model = VideoGAN(frames=8, size=16, width=0.0625, generator={"noise_dim": 4})
    samples = GanSamples(every_n_steps=2, dirpath=str(tmp_path / "samples"), num_captions=2, num_per_caption=2, fps=5)
    fit(tmp_path, model, [samples], steps=2)
    gif = tmp_path / "samples" / "step000002.gif"
    frames = iio.imread(gif)
    rows, gap = 4, 2
    assert frames.shape == (8, rows * 16 + (rows - 1) * gap, len(PANELS) * 16 + (len(PANELS) - 1) * gap, 3)
    assert iio.immeta(gif)["duration"] == 200  # 5 fps
    assert (tmp_path / "samples" / "step000002.png").is_file()
