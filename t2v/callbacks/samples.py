"""GanSamples: every N GAN steps, samples on a fixed set of captions with fixed noise (``callbacks.gan_samples``).

The captions are the first ``num_captions`` clips of a data split (``split``, the validation split by
default), or the sentences in ``captions`` paired with those clips. Each caption gets
``num_per_caption`` samples, each with its own noise vector drawn once from ``seed``, so successive
samples show the same inputs as training goes on.

- ``stage1``: a grid of images, one row per caption with the caption as its title:
  ``<dirpath>/step<N>.png``, and ``samples/images`` on W&B.
- ``videogan``: a GIF (``fps`` frames per second) with one row per sample and the panels
  input frame | video | foreground | background | mask: ``<dirpath>/step<N>.gif``, and
  ``samples/video`` on W&B; plus ``<dirpath>/step<N>.png`` with every frame of each video, captioned.

What is sampled is the stage's business (``sampling_inputs`` and ``sample``, the GAN base's contract): the
callback makes the inputs once, and writes a clip grid when a sample is a ``video`` and an image grid when it is
an ``image``. Files are written whatever the logger; W&B gets ``wandb.Image``/``wandb.Video`` (only inside the
W&B path), TensorBoard the PNG as an image. Runs on rank 0 only, in eval mode with no gradients, at the end of
training too. Does nothing for non-GAN stages.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import pytorch_lightning as pl
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor
from torch.utils.data import default_collate

from t2v.errors import T2VError
from t2v.models.gan import AdversarialModule

GAP = 2  # pixels between panels and rows
PANELS = ("input", "video", "foreground", "background", "mask")


def to_uint8(x: Tensor, low: float = -1.0) -> np.ndarray:
    """Channels-first floats in [low, 1] -> channels-last uint8 (grey images become RGB)."""
    x = ((x.detach().float().cpu().clamp(low, 1) - low) / (1 - low) * 255).round().to(torch.uint8)
    if x.shape[-3] == 1:
        x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    return x.movedim(-3, -1).numpy()


def held(image: Tensor, frames: int) -> np.ndarray:
    """An image (C, H, W) shown for every frame of a clip: (T, H, W, 3) uint8."""
    return np.repeat(to_uint8(image)[None], frames, axis=0)


def hstack(images: list[np.ndarray], gap: int = GAP) -> np.ndarray:
    """Side by side along the width axis (-2), with dark gaps; works on (H, W, C) and (T, H, W, C)."""
    spacer = np.zeros((*images[0].shape[:-2], gap, images[0].shape[-1]), dtype=np.uint8)
    parts = [p for image in images for p in (image, spacer)][:-1]
    return np.concatenate(parts, axis=-2)


def vstack(images: list[np.ndarray], gap: int = GAP) -> np.ndarray:
    """Stacked along the height axis (-3), with dark gaps."""
    spacer = np.zeros((*images[0].shape[:-3], gap, *images[0].shape[-2:]), dtype=np.uint8)
    parts = [p for image in images for p in (image, spacer)][:-1]
    return np.concatenate(parts, axis=-3)


def captioned_grid(rows: list[np.ndarray], captions: list[str], path: Path, min_width: int = 480) -> Path:
    """One image row (H, W, 3) per caption, each under its caption, as a PNG (matplotlib, no display)."""
    scale = max(1, math.ceil(min_width / max(r.shape[1] for r in rows)))
    rows = [r.repeat(scale, axis=0).repeat(scale, axis=1) for r in rows]  # small samples, nearest upscaling
    dpi, title_px = 100, 22
    width = max(r.shape[1] for r in rows)
    height = sum(r.shape[0] + title_px for r in rows)
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    top = 1.0
    for row, caption in zip(rows, captions, strict=True):
        h = (row.shape[0] + title_px) / height
        ax = fig.add_axes((0, top - h, row.shape[1] / width, row.shape[0] / height))
        ax.imshow(row, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(caption, fontsize=9, loc="left", pad=3)
        top -= h
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


class GanSamples(pl.Callback):
    """Samples of a GAN stage on fixed captions and fixed noise, every ``every_n_steps`` GAN steps."""

    def __init__(
        self,
        every_n_steps: int = 500,
        dirpath: str = "samples",
        num_captions: int = 4,
        num_per_caption: int = 3,
        captions: list[str] | None = None,
        split: str = "val",
        fps: int = 8,
        seed: int = 0,
    ) -> None:
        for name, value in (("every_n_steps", every_n_steps), ("num_captions", num_captions),
                            ("num_per_caption", num_per_caption), ("fps", fps)):  # fmt: skip
            if value < 1:
                raise T2VError(f"callbacks.gan_samples.{name}={value} must be at least 1")
        if captions is not None and not captions:
            raise T2VError("callbacks.gan_samples.captions is empty; give sentences, or null for the data's captions")
        self.every_n_steps, self.dirpath, self.fps, self.seed = every_n_steps, Path(dirpath), fps, seed
        self.num_captions = len(captions) if captions else num_captions
        self.num_per_caption, self.captions, self.split = num_per_caption, list(captions or []), split
        self.active = False
        self.inputs: dict[str, Any] | None = None
        self.last_step = -1
        self.written: list[Path] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.active = stage == "fit" and isinstance(pl_module, AdversarialModule) and not trainer.fast_dev_run

    # -- the fixed inputs -----------------------------------------------------------------------
    def fixed_inputs(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> dict[str, Any]:
        """The captions and the stage's sampling inputs (text, first frames, noise), made once for the whole run."""
        if self.inputs is not None:
            return self.inputs
        datamodule = trainer.datamodule
        datasets = getattr(datamodule, "datasets", None) or {}
        dataset = datasets.get(self.split)
        if dataset is None or len(dataset) == 0:
            dataset = datamodule.train_dataloader().dataset
        batch = default_collate([dataset[i % len(dataset)] for i in range(self.num_captions)])
        captions = list(batch["caption"])
        if self.captions:
            featurizer = datamodule.featurizer
            for caption in self.captions:
                if not any(map(featurizer.has_vector, featurizer.read_words(caption))):
                    raise T2VError(
                        f"callbacks.gan_samples.captions: no word of {caption!r} has a word vector; "
                        "use words like the training captions'"
                    )
            captions, batch["text"] = list(self.captions), torch.from_numpy(featurizer.transform(self.captions)[0])
        k = self.num_per_caption
        rows = {key: batch[key].repeat_interleave(k, dim=0) for key in ("text", "video") if key in batch}
        noise = torch.Generator().manual_seed(self.seed)
        self.inputs = {"captions": [c for c in captions for _ in range(k)], **pl_module.sampling_inputs(rows, noise)}
        return self.inputs

    # -- Lightning hooks ------------------------------------------------------------------------
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.active and pl_module.gan_steps_done % self.every_n_steps == 0:
            self.sample(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.active and pl_module.gan_steps_done != self.last_step:
            self.sample(trainer, pl_module)

    def sample(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> None:
        step = pl_module.gan_steps_done
        self.last_step = step
        if not trainer.is_global_zero:
            return
        fixed = self.fixed_inputs(trainer, pl_module)
        inputs = {k: v.to(pl_module.device) for k, v in fixed.items() if isinstance(v, Tensor)}
        with torch.no_grad():
            out = pl_module.sample(inputs)
        if "video" in out:
            self.write_video(trainer, step, fixed["captions"], out)
        else:
            self.write_images(trainer, step, fixed["captions"], out["image"])

    # -- writing --------------------------------------------------------------------------------
    def rows(self, per_sample: list[np.ndarray]) -> list[np.ndarray]:
        """Group the samples of each caption into one row."""
        k = self.num_per_caption
        return [hstack(per_sample[i : i + k]) for i in range(0, len(per_sample), k)]

    def write_images(self, trainer: pl.Trainer, step: int, captions: list[str], images: Tensor) -> None:
        titles = captions[:: self.num_per_caption]
        png = captioned_grid(self.rows(list(to_uint8(images))), titles, self.dirpath / f"step{step:06d}.png")
        self.written.append(png)
        caption = f"step {step}: one row per caption, {self.num_per_caption} noise vectors each"
        self.log_media(trainer, step, {"samples/images": ("image", png, caption)})

    def write_video(self, trainer: pl.Trainer, step: int, captions: list[str], out: dict[str, Tensor]) -> None:
        frames = out["video"].shape[2]
        clips = []
        for i in range(len(out["video"])):
            panels = {
                "input": held(out["input"][i], frames),
                "video": to_uint8(out["video"][i].transpose(0, 1)),
                "foreground": to_uint8(out["foreground"][i].transpose(0, 1)),
                "background": held(out["background"][i], frames),
                "mask": to_uint8(out["mask"][i].transpose(0, 1), low=0.0),
            }
            clips.append(hstack([panels[name] for name in PANELS]))
        self.dirpath.mkdir(parents=True, exist_ok=True)
        gif = self.dirpath / f"step{step:06d}.gif"
        iio.imwrite(gif, vstack(clips), duration=1000 / self.fps, loop=0)  # GIF duration is in milliseconds
        strips = [hstack(list(to_uint8(video.transpose(0, 1))), gap=1) for video in out["video"]]
        png = captioned_grid(strips, captions, self.dirpath / f"step{step:06d}.png")
        self.written += [gif, png]
        rows = "; ".join(f"{i + 1}: {c}" for i, c in enumerate(captions))
        caption = f"step {step}, columns {' | '.join(PANELS)}; rows {rows}"
        self.log_media(
            trainer, step, {"samples/video": ("video", gif, caption), "samples/frames": ("image", png, None)}
        )

    def log_media(self, trainer: pl.Trainer, step: int, media: dict[str, tuple[str, Path, str | None]]) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                row: dict[str, Any] = {"train/gan_step": step}
                for key, (kind, path, caption) in media.items():
                    row[key] = wandb.Video(str(path), caption=caption, format="gif") if kind == "video" else (
                        wandb.Image(str(path), caption=caption))  # fmt: skip
                logger.experiment.log(row)
            elif isinstance(logger, TensorBoardLogger):
                for key, (kind, path, _) in media.items():
                    if kind == "image":
                        logger.experiment.add_image(key, iio.imread(path)[..., :3], step, dataformats="HWC")
