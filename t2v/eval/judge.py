"""The text-video judge: does a clip show its sentence, where no attribute labels say so (movie data).

Two encoders trained together with InfoNCE on real training clips and their captions, and never on generated
clips: a text encoder over the caption's fastText word vectors (each word through a shared layer, then their mean
and maximum, so it reads a sentence of any length and words in any order) and a video encoder with the attribute
probe's two streams (``t2v/eval/probe.py``): appearance, an image CNN over a few frames, and motion, a CNN over the
frames and their differences. It is deliberately not the pipeline's siamese stage, whose embedding conditions the
generators: a generator would then be graded by the space it was trained to please.

What it scores (:func:`r_precision`, :class:`JudgeFeatures`):

- R-precision: for each clip, whether its own caption ranks first, by the judge's cosine, among itself and
  ``candidates - 1`` other captions (chance: ``1 / candidates``). Real test clips give the ceiling a generator that
  made the real clips would reach.
- FD and KID in the judge's video features (its encoder before the projection), with torchmetrics.

It is trained once per data, featurizer and settings and cached in the registry as ``<artifacts_dir>/judge/<id>/``,
like the probe.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from t2v.cluster import launched_rank, wait_for
from t2v.eval.probe import ImageTrunk, MotionTrunk, find_cached
from t2v.pipeline import artifacts
from t2v.trainer import random_state_kept

JUDGE_STAGE = "judge"
# The settings that make a different judge (and so a different cache entry).
JUDGE_KEYS = ("embed_dim", "text_width", "video_widths", "image_widths", "appearance_frames", "lr", "weight_decay",
              "max_steps", "batch_size", "temperature", "seed")  # fmt: skip


class TextEncoder(nn.Module):
    """Caption features, ``max_words`` zero-padded ``word_dim`` vectors concatenated, -> (B, embed_dim).

    Each word goes through one shared layer; the words' mean (what the sentence is about) and maximum (whether a
    word is there at all) over the caption's words, padding left out, go through an MLP."""

    def __init__(self, word_dim: int, max_words: int, width: int, embed_dim: int) -> None:
        super().__init__()
        self.word_dim, self.max_words = word_dim, max_words
        self.word = nn.Sequential(nn.Linear(word_dim, width), nn.GELU())
        self.head = nn.Sequential(nn.Linear(2 * width, width), nn.GELU(), nn.Linear(width, embed_dim))

    def forward(self, text: Tensor) -> Tensor:
        words = text.reshape(len(text), self.max_words, self.word_dim)
        present = words.abs().sum(-1, keepdim=True) > 0  # (B, W, 1): padding and words without a vector are zero
        hidden = self.word(words)
        mean = (hidden * present).sum(1) / present.sum(1).clamp_min(1)
        top = hidden.masked_fill(~present, -torch.inf).amax(1)
        top = torch.where(present.any(1), top, torch.zeros_like(top))
        return self.head(torch.cat([mean, top], dim=1))


class VideoEncoder(nn.Module):
    """Clips (B, 3, T, H, W) in [-1, 1] -> features (B, num_features): the image CNN's mean over
    ``appearance_frames`` evenly spaced frames, joined with the motion CNN's features of all frames."""

    def __init__(self, frames: int, image_widths: Sequence[int], video_widths: Sequence[int], appearance: int) -> None:
        super().__init__()
        self.image = ImageTrunk(image_widths)
        self.motion = MotionTrunk(frames, video_widths)
        self.register_buffer("picked", torch.linspace(0, frames - 1, min(appearance, frames)).round().long())
        self.num_features = self.image.num_features + self.motion.num_features

    def forward(self, video: Tensor) -> Tensor:
        batch, k = len(video), len(self.picked)
        frames = video[:, :, self.picked].transpose(1, 2).flatten(0, 1)  # (B*K, 3, H, W)
        appearance = self.image(frames).reshape(batch, k, -1).mean(1)
        return torch.cat([appearance, self.motion(video)], dim=1)


class TextVideoJudge(pl.LightningModule):
    """The judge: text and video encoders into one ``embed_dim`` space, trained with the symmetric InfoNCE loss (each
    clip against the batch's captions and each caption against its clips) at a learnt temperature."""

    def __init__(
        self,
        word_dim: int,
        max_words: int,
        frames: int,
        size: int,
        embed_dim: int = 128,
        text_width: int = 256,
        video_widths: Sequence[int] = (32, 64, 128),
        image_widths: Sequence[int] = (16, 32, 64, 128),
        appearance_frames: int = 4,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        max_steps: int = 1000,
        temperature: float = 0.07,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.text_encoder = TextEncoder(word_dim, max_words, text_width, embed_dim)
        self.video_encoder = VideoEncoder(frames, image_widths, video_widths, appearance_frames)
        self.video_projection = nn.Linear(self.video_encoder.num_features, embed_dim)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))

    @property
    def num_features(self) -> int:
        return self.video_encoder.num_features

    def embed_text(self, text: Tensor) -> Tensor:
        return F.normalize(self.text_encoder(text), dim=-1)

    def embed_video(self, video: Tensor) -> Tensor:
        return F.normalize(self.video_projection(self.video_encoder(video)), dim=-1)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        text, video = self.embed_text(batch["text"]), self.embed_video(batch["video"])
        # A temperature below 0.01 makes the logits explode; above 1 it cannot separate anything.
        scale = self.log_temperature.clamp(math.log(0.01), 0.0).neg().exp()
        logits = scale * text @ video.T
        targets = torch.arange(len(text), device=text.device)
        loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
        self.log("judge/loss", loss, prog_bar=True, batch_size=len(text))
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=hp.lr, total_steps=max(hp.max_steps, 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class JudgeFeatures(nn.Module):
    """The judge's video features as a torchmetrics feature module (FD, KID), run in eval mode. It keeps its last
    batch's features (:attr:`last`), so a caller embeds the clips FD has just read without running the encoder
    again."""

    def __init__(self, judge: TextVideoJudge) -> None:
        super().__init__()
        self.judge = judge
        self.num_features = judge.num_features  # torchmetrics then skips its dummy 299x299 forward pass
        self.last: Tensor | None = None

    @torch.no_grad()
    def forward(self, video: Tensor) -> Tensor:
        was_training = self.judge.training
        self.judge.eval()
        try:
            self.last = self.judge.video_encoder(video)
            return self.last
        finally:
            self.judge.train(was_training)


@torch.no_grad()
def agreement(judge: TextVideoJudge, pairs: Dataset, batch_size: int = 64) -> Tensor:
    """The judge's agreement of every clip-caption pair of ``pairs`` (items with ``text`` and ``video``): the cosine
    of their embeddings, (N,), in the dataset's order."""
    judge.eval()
    scores = [
        (judge.embed_text(batch["text"]) * judge.embed_video(batch["video"])).sum(-1)
        for batch in DataLoader(pairs, batch_size=batch_size, shuffle=False, num_workers=0)
    ]
    return torch.cat(scores)


def r_precision(text: Tensor, video: Tensor, candidates: int = 100, seed: int = 0) -> float:
    """The share of clips whose own caption ranks first among itself and ``candidates - 1`` others.

    ``text`` and ``video`` are unit embeddings (N, D), row i of each the same pair; the others are drawn without
    replacement from the rest (all of them when fewer than ``candidates`` - 1 exist), with a fixed seed so two
    evaluations of the same captions draw the same candidates. A tie with another caption counts as a miss."""
    n = len(text)
    if n < 2:
        raise ValueError(f"R-precision needs at least 2 pairs, got {n}")
    others = min(candidates - 1, n - 1)
    draw = torch.Generator().manual_seed(seed)
    # For row i, `others` distinct indices != i: ranks of random keys, the row's own index pushed last.
    keys = torch.rand(n, n, generator=draw)
    keys[torch.arange(n), torch.arange(n)] = 2.0
    rivals = keys.argsort(dim=1)[:, :others]  # (N, others)
    own = (text * video).sum(-1)  # (N,)
    rival_scores = torch.einsum("nd,nkd->nk", video, text[rivals])
    return float((own[:, None] > rival_scores).all(dim=1).float().mean())


# -- training and the cache ----------------------------------------------------------------------------------
def judge_dims(featurizer: Any, frames: int, size: int) -> dict[str, int]:
    """The sizes a judge is built for: the caption features of ``featurizer`` (a fitted ``FastTextFeaturizer``)
    and clips of ``frames`` frames of ``size`` x ``size``."""
    return {"word_dim": featurizer.dim, "max_words": featurizer.max_words, "frames": int(frames), "size": int(size)}


def settings_key(settings: Mapping[str, Any], featurizer: str) -> str:
    """The judge's cache key: its settings and the featurizer whose word vectors its text encoder reads."""
    blob = json.dumps({**{k: settings[k] for k in JUDGE_KEYS}, "featurizer": featurizer}, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@random_state_kept()
def train_judge(
    train_set: Dataset,
    dims: Mapping[str, int],
    settings: Mapping[str, Any],
    work_dir: str | Path,
    accelerator: str = "cpu",
    progress: bool = True,
) -> tuple[TextVideoJudge, dict[str, Any]]:
    """Train a judge on ``train_set`` (real clips: items with ``text`` and ``video``); ``dims`` holds ``word_dim``,
    ``max_words``, ``frames`` and ``size``. Returns it and a training summary."""
    started = time.time()
    pl.seed_everything(int(settings["seed"]), workers=True, verbose=False)
    steps = int(settings["max_steps"])
    # Plain lists, not a config's: the checkpoint's hyper-parameters must load with torch's safe loader.
    architecture = {k: settings[k] for k in JUDGE_KEYS if k not in ("max_steps", "batch_size", "seed")}
    architecture = {k: list(v) if isinstance(v, Sequence) and not isinstance(v, str) else v
                    for k, v in architecture.items()}  # fmt: skip
    judge = TextVideoJudge(**{k: int(v) for k, v in dims.items()}, **architecture, max_steps=steps)
    batch_size = min(int(settings["batch_size"]), len(train_set))
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=0,
                        generator=torch.Generator().manual_seed(int(settings["seed"])))  # fmt: skip
    trainer = pl.Trainer(accelerator=accelerator, devices=1, max_steps=steps, max_epochs=-1, logger=False,
                         enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress,
                         default_root_dir=str(work_dir), log_every_n_steps=max(1, min(50, steps)))  # fmt: skip
    trainer.fit(judge, loader)
    checkpoint = Path(work_dir) / "judge.ckpt"
    trainer.save_checkpoint(checkpoint)
    summary = {"train_time_s": round(time.time() - started, 1), "train_clips": len(train_set), "steps": steps,
               "checkpoint": str(checkpoint)}  # fmt: skip
    return judge.cpu().eval(), summary


def obtain_judge(
    settings: Mapping[str, Any],
    train_set: Dataset,
    dims: Mapping[str, int],
    fingerprint: str,
    featurizer: str,
    work_dir: Path,
    log: Any = print,
    progress: bool = True,
) -> tuple[TextVideoJudge, dict[str, Any]]:
    """The cached judge for this data (``fingerprint``), featurizer (``FastTextFeaturizer.identity``) and
    settings, or one trained now on ``train_set`` and published as ``<settings.artifacts_dir>/judge/<id>/``.

    A rank that srun or torchrun started beside rank 0 waits for rank 0's judge instead of training its own (which
    could differ, on a GPU, and so filter other pairs or score on another scale)."""
    key = settings_key(settings, featurizer)

    def cached() -> Path | None:
        return find_cached(settings["artifacts_dir"], fingerprint, key, stage=JUDGE_STAGE)

    if launched_rank() != 0:
        wait_for(cached, "the text-video judge")
    folder = cached()
    if folder is not None:
        manifest = artifacts.read_manifest(folder)
        log(f"  judge        cached: {folder}")
        record = {"artifact": str(folder), "cached": True, **(manifest.get("training") or {})}
        return artifacts.load_model(TextVideoJudge, manifest).eval(), record
    log(f"  judge        none cached for data {fingerprint}; training one ({settings['max_steps']} steps)")
    judge, training = train_judge(train_set, dims, settings, work_dir / "judge", settings["accelerator"], progress)
    manifest = {
        "run_dir": str(work_dir),
        "data_fingerprint": fingerprint,
        "settings_key": key,
        "settings": dict(settings),
        "featurizer": featurizer,
        "dims": dict(dims),
        "training": training,
    }
    folder = artifacts.publish(settings["artifacts_dir"], JUDGE_STAGE, training["checkpoint"], manifest)
    log(f"  judge        trained in {training['train_time_s']:.0f}s, cached as {folder}")
    return judge, {"artifact": str(folder), "cached": False, **training}
