"""The attribute probe: small classifiers that read every attribute of a shapes clip, the judge of fidelity.

Trained on real clips only (rendered on demand, so it can see many), then run on generated ones: the
fraction of generated clips whose attribute the probe reads as the caption's is the fidelity. Its
penultimate features are the feature space of the Fréchet distance and KID (``t2v/eval/metrics.py``).

- The image probe, a 2D CNN on one frame, predicts the attributes one frame shows (shape, colour, size);
  it scores the stage-I images.
- The video probe predicts every attribute (shape, colour, size, direction, speed) from two streams: the
  image CNN on a few frames (what the shape looks like) and a motion CNN on the silhouettes of all frames
  stacked as channels (how it moves). Only 2D convolutions: a 3D CNN of the same reach took 1.5-2 times as
  long per step on a CPU.

Both train together, in 400 steps by default (about a minute on 2 CPU cores at 16 x 32 x 32). A probe
is trained once per dataset and settings and cached in the artifact registry, under
``<probe.artifacts_dir>/probe/<id>/``, with the data fingerprint and a hash of its settings in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from t2v.cluster import launched_rank, wait_for
from t2v.data.shapes import ATTRIBUTES, CaptionedShapes
from t2v.errors import T2VError
from t2v.pipeline import artifacts
from t2v.trainer import random_state_kept

# What a single frame shows; direction and speed need the clip.
STATIC_ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "size")
PROBE_STAGE = "probe"


def conv_block(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels), nn.LeakyReLU(0.2)]


def with_brightness(x: Tensor) -> Tensor:
    """Adds each pixel's brightest channel (dim 1): every shape colour has a channel above the background's,
    so this is the shape's silhouette whatever its colour, and one shape detector serves every colour."""
    return torch.cat([x, x.amax(dim=1, keepdim=True)], dim=1)


class GlobalPool(nn.Module):
    """(B, C, H, W) -> (B, 2C): the mean (how much of a pattern) and the max (whether it is there anywhere)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1)


class MotionTrunk(nn.Module):
    """(B, 3, T, H, W) in [-1, 1] -> (B, 2 * widths[-1]) features of how the shape moves.

    Early fusion over the silhouettes: the T frames' brightness and its T - 1 differences are stacked as the
    channels of one image, so the first layer already sees where the shape is in every frame (direction,
    speed) whatever its colour, and every layer is a 2D convolution, several times cheaper on a CPU than a
    3D CNN of the same reach. Each layer halves the resolution.
    """

    def __init__(self, frames: int, widths: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 2 * frames - 1
        for width in widths:
            layers += conv_block(nn.Conv2d(channels, width, 3, 2, 1), width)
            channels = width
        self.net = nn.Sequential(*layers, GlobalPool())
        self.num_features = 2 * channels

    def forward(self, video: Tensor) -> Tensor:
        brightness = video.amax(dim=1)  # (B, T, H, W)
        return self.net(torch.cat([brightness, torch.diff(brightness, dim=1)], dim=1))


class ImageTrunk(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> (B, 2 * widths[-1]) features: a full-resolution conv, then stride-2 convs."""

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 4
        for i, width in enumerate(widths):
            layers += conv_block(nn.Conv2d(channels, width, 3, 1 if i == 0 else 2, 1), width)
            channels = width
        self.net = nn.Sequential(*layers, GlobalPool())
        self.num_features = 2 * channels

    def forward(self, image: Tensor) -> Tensor:
        return self.net(with_brightness(image))


class AttributeProbe(pl.LightningModule):
    """Per-attribute classifiers for clips (every attribute) and single frames (the static ones).

    The image probe is a 2D CNN on one frame. The video probe reads a clip in two streams: the image CNN on
    ``appearance_frames`` of its frames (averaged: what the shape looks like) and the motion CNN on all of
    them (how it moves); its features are both, joined. ``vocab`` is the dataset's vocabulary (attribute ->
    value names): head ``attr`` predicts the index of the value in ``vocab[attr]``, as the dataset's labels.
    """

    def __init__(
        self,
        vocab: dict[str, list[str]],
        frames: int,
        size: int,
        video_widths: Sequence[int] = (32, 64, 128),
        image_widths: Sequence[int] = (16, 32, 64, 128),
        appearance_frames: int = 4,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        max_steps: int = 1000,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.image_trunk = ImageTrunk(image_widths)
        self.motion_trunk = MotionTrunk(frames, video_widths)
        self.video_features = self.image_trunk.num_features + self.motion_trunk.num_features
        self.video_heads = nn.ModuleDict({a: nn.Linear(self.video_features, len(vocab[a])) for a in ATTRIBUTES})
        self.image_heads = nn.ModuleDict(
            {a: nn.Linear(self.image_trunk.num_features, len(vocab[a])) for a in STATIC_ATTRIBUTES}
        )

    @property
    def vocab(self) -> dict[str, list[str]]:
        return self.hparams.vocab

    def attributes(self, kind: str) -> tuple[str, ...]:
        return ATTRIBUTES if kind == "video" else STATIC_ATTRIBUTES

    def feature_dim(self, kind: str) -> int:
        """The size of the penultimate features of clips (``"video"``) or images (``"image"``)."""
        return self.video_features if kind == "video" else self.image_trunk.num_features

    def appearance_indices(self, frames: int) -> Tensor:
        """Which frames the image stream reads: evenly spaced (first and last included); random in training,
        so the image probe learns every frame."""
        k = max(1, min(self.hparams.appearance_frames, frames))
        if self.training:
            return torch.randperm(frames, device=self.device)[:k].sort().values
        return torch.linspace(0, frames - 1, k, device=self.device).round().long()

    def video_forward(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """(clip features, image features of the appearance frames (B, K, F))."""
        b, c, _, h, w = video.shape
        picked = video[:, :, self.appearance_indices(video.shape[2])]
        k = picked.shape[2]
        per_frame = self.image_trunk(picked.transpose(1, 2).reshape(b * k, c, h, w)).reshape(b, k, -1)
        return torch.cat([per_frame.mean(1), self.motion_trunk(video)], dim=1), per_frame

    def encode(self, kind: str, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """(penultimate features, logits per attribute) of clips (``kind="video"``) or frames (``"image"``)."""
        self.check_input(kind, x)
        x = x.to(self.device, torch.float32)
        if kind == "video":
            features = self.video_forward(x)[0]
            return features, {a: head(features) for a, head in self.video_heads.items()}
        features = self.image_trunk(x)
        return features, {a: head(features) for a, head in self.image_heads.items()}

    def check_input(self, kind: str, x: Tensor) -> None:
        p = self.hparams
        expected = (3, p.frames, p.size, p.size) if kind == "video" else (3, p.size, p.size)
        if tuple(x.shape[1:]) != expected:
            raise T2VError(
                f"the attribute probe reads {kind}s of shape (B, {', '.join(map(str, expected))}) but got "
                f"{tuple(x.shape)}; evaluate with the data.frames/data.size the probe was trained at, or let "
                "evaluate.py train a probe for this data (probe.artifact=auto)"
            )

    @torch.no_grad()
    def predict(self, kind: str, x: Tensor, batch_size: int = 256) -> dict[str, Tensor]:
        """Predicted value index per attribute, in eval mode."""
        was_training = self.training
        self.eval()
        try:
            parts = [self.encode(kind, x[i : i + batch_size])[1] for i in range(0, len(x), batch_size)]
        finally:
            self.train(was_training)
        return {a: torch.cat([p[a] for p in parts]).argmax(-1).cpu() for a in self.attributes(kind)}

    # -- training -----------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        video, labels = batch["video"], batch["labels"]
        features, per_frame = self.video_forward(video)
        k = per_frame.shape[1]
        per_frame = per_frame.reshape(len(video) * k, -1)
        losses = {f"video/{a}": F.cross_entropy(head(features), labels[a]) for a, head in self.video_heads.items()}
        # The appearance frames also train the image probe's heads.
        losses |= {
            f"image/{a}": F.cross_entropy(head(per_frame), labels[a].repeat_interleave(k))
            for a, head in self.image_heads.items()
        }
        loss = sum(losses.values())
        self.log("probe/loss", loss, prog_bar=True, batch_size=len(video))
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.hparams.lr, total_steps=max(self.hparams.max_steps, 1), pct_start=0.15
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


# -- data -------------------------------------------------------------------------------------------------


def to_tensor(clips: np.ndarray) -> Tensor:
    """uint8 (n, T, H, W, 3) -> float (n, 3, T, H, W) in [-1, 1], as the datamodule serves clips."""
    return torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0)


def labels_of(shapes: CaptionedShapes, indices: np.ndarray) -> dict[str, Tensor]:
    return {a: torch.from_numpy(shapes.labels[a][indices].astype(np.int64)) for a in ATTRIBUTES}


class RandomBatches(Dataset):
    """``steps`` batches of clips drawn from ``pool`` (with replacement), rendered on demand; batch i is a
    pure function of (seed, i), so training is repeatable."""

    def __init__(self, shapes: CaptionedShapes, pool: np.ndarray, batch_size: int, steps: int, seed: int) -> None:
        self.shapes, self.pool, self.batch_size, self.steps, self.seed = shapes, pool, batch_size, steps, seed

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, i])
        indices = self.pool[rng.integers(len(self.pool), size=self.batch_size)]
        return {"video": to_tensor(self.shapes.render(indices)), "labels": labels_of(self.shapes, indices)}


def extended(shapes: CaptionedShapes, num_clips: int) -> CaptionedShapes:
    """The same dataset with ``num_clips`` clips: clips are pure functions of (settings, index), so its clip i
    is clip i of ``shapes``, and the clips past the end are more of the same (fresh positions, backgrounds)."""
    return CaptionedShapes(
        num_clips=num_clips, frames=shapes.frames, size=shapes.size, shapes=shapes.vocab["shape"],
        colours=shapes.colours, sizes=shapes.sizes, directions=shapes.vocab["direction"], speeds=shapes.speeds,
        val_fraction=shapes.val_fraction, test_fraction=shapes.test_fraction, held_out=shapes.held_out,
        seed=shapes.seed,
    )  # fmt: skip


def training_pool(shapes: CaptionedShapes, extra_clips: int) -> tuple[CaptionedShapes, np.ndarray]:
    """Clips the probe may learn from: the training split, plus ``extra_clips`` more rendered past the end of
    the dataset with its settings. It never sees a val or test clip.

    The extra clips include the held-out attribute combinations: the probe is the judge, not a model under
    test, and a judge that never saw a red circle (only red squares, triangles and stars) learns that red
    things are not circles, and would misread the very clips the held-out figures are about."""
    larger = extended(shapes, shapes.num_clips + max(extra_clips, 0))
    beyond = np.arange(shapes.num_clips, larger.num_clips)
    return larger, np.concatenate([shapes.split_indices("train"), beyond])


# -- accuracy on real clips -------------------------------------------------------------------------------


@torch.no_grad()
def real_accuracy(
    probe: AttributeProbe, shapes: CaptionedShapes, indices: np.ndarray, frame: int = 0, batch_size: int = 128
) -> dict[str, dict[str, float]]:
    """The probe's accuracy per attribute on real clips ``indices`` (video) and on their frame ``frame`` (image)."""
    correct = {kind: {a: 0 for a in probe.attributes(kind)} for kind in ("video", "image")}
    for start in range(0, len(indices), batch_size):
        part = indices[start : start + batch_size]
        video = to_tensor(shapes.render(part))
        labels = labels_of(shapes, part)
        for kind, x in (("video", video), ("image", video[:, :, frame])):
            for a, pred in probe.predict(kind, x).items():
                correct[kind][a] += int((pred == labels[a]).sum())
    n = max(len(indices), 1)
    return {kind: {a: c / n for a, c in per.items()} for kind, per in correct.items()}


# -- training and caching -----------------------------------------------------------------------------------

# Probe settings that change the trained model (the cache key); anything else (threshold, where) does not.
PROBE_KEYS = (
    "video_widths",
    "image_widths",
    "appearance_frames",
    "lr",
    "weight_decay",
    "max_steps",
    "batch_size",
    "extra_clips",
    "seed",
)


def settings_key(settings: Mapping[str, Any]) -> str:
    blob = json.dumps({k: settings[k] for k in PROBE_KEYS}, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def find_cached(artifacts_dir: str | Path, fingerprint: str, key: str, stage: str = PROBE_STAGE) -> Path | None:
    """The newest artifact of ``stage`` (the probe's, or the judge's) trained on data ``fingerprint`` with settings
    ``key``, or None."""
    stage_dir = Path(artifacts_dir) / stage
    found = []
    for manifest_path in stage_dir.glob(f"*/{artifacts.MANIFEST}"):
        if manifest_path.parent.name.startswith("."):
            continue
        record = artifacts.read_manifest(manifest_path.parent)  # a damaged one is one line naming it
        if record.get("data_fingerprint") == fingerprint and record.get("settings_key") == key:
            found.append((record.get("created", ""), manifest_path.parent))
    return max(found)[1] if found else None


@random_state_kept()
def train_probe(
    shapes: CaptionedShapes,
    settings: Mapping[str, Any],
    work_dir: str | Path,
    accelerator: str = "cpu",
    progress: bool = True,
) -> tuple[AttributeProbe, dict[str, Any]]:
    """Train a probe on ``shapes`` (its training split and extra clips); returns it and a training summary."""
    started = time.time()
    pl.seed_everything(int(settings["seed"]), workers=True, verbose=False)
    larger, pool = training_pool(shapes, int(settings["extra_clips"]))
    steps = int(settings["max_steps"])
    probe = AttributeProbe(
        vocab=shapes.vocab,
        frames=shapes.frames,
        size=shapes.size,
        video_widths=list(settings["video_widths"]),
        image_widths=list(settings["image_widths"]),
        appearance_frames=int(settings["appearance_frames"]),
        lr=float(settings["lr"]),
        weight_decay=float(settings["weight_decay"]),
        max_steps=steps,
    )
    batches = RandomBatches(larger, pool, int(settings["batch_size"]), steps, int(settings["seed"]))
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        max_steps=steps,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        default_root_dir=str(work_dir),
        log_every_n_steps=max(1, min(50, steps)),
    )
    trainer.fit(probe, DataLoader(batches, batch_size=None, shuffle=False, num_workers=0))
    checkpoint = Path(work_dir) / "probe.ckpt"
    trainer.save_checkpoint(checkpoint)
    probe = probe.cpu().eval()
    summary = {"train_time_s": round(time.time() - started, 1), "train_clips": int(len(pool)), "steps": steps,
               "checkpoint": str(checkpoint)}  # fmt: skip
    return probe, summary


def load_probe(folder: str | Path) -> tuple[AttributeProbe, dict[str, Any]]:
    manifest = artifacts.read_manifest(folder)
    return artifacts.load_model(AttributeProbe, manifest), manifest


# -- the probe the evaluation uses ---------------------------------------------------------------------------
def cached_record(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """What an evaluation records about a probe it loaded (its training clips end where ``extra_clips`` says)."""
    extra = (manifest.get("settings") or {}).get("extra_clips", 0)
    return {"artifact": str(folder), "cached": True, "extra_clips": extra, **(manifest.get("training") or {})}


def pinned_probe(settings: Mapping[str, Any], shapes: CaptionedShapes) -> tuple[AttributeProbe, dict[str, Any]]:
    """The probe ``probe.artifact`` names, refused when it was trained on other data than ``shapes``."""
    where = settings["artifact"]
    folder = artifacts.find(settings["artifacts_dir"], PROBE_STAGE, where)
    if folder is None or artifacts.read_manifest(folder).get("stage") != PROBE_STAGE:
        raise T2VError(f"probe.artifact={where} is not a probe artifact; pass a probe folder or probe.artifact=auto")
    probe, manifest = load_probe(folder)
    dims = manifest.get("dims") or {}
    fingerprint = shapes.fingerprint()
    if manifest.get("data_fingerprint") != fingerprint or (dims.get("frames"), dims.get("size")) != (
        shapes.frames,
        shapes.size,
    ):
        raise T2VError(
            f"the probe {folder} was trained on other data (fingerprint {manifest.get('data_fingerprint')}, "
            f"{dims.get('frames')} frames of {dims.get('size')}px) than the generators' (fingerprint "
            f"{fingerprint}, {shapes.frames} frames of {shapes.size}px); use probe.artifact=auto to train one"
        )
    return probe, cached_record(folder, manifest)


def obtain_probe(
    settings: Mapping[str, Any], shapes: CaptionedShapes, work_dir: Path, log: Any = print, progress: bool = True
) -> tuple[AttributeProbe, dict[str, Any]]:
    """The probe for ``shapes``: the pinned one (``probe.artifact``), the cached one for this data and these
    settings, or one trained now and published to the registry as ``<probe.artifacts_dir>/probe/<id>/``. A rank
    that srun or torchrun started beside rank 0 waits for rank 0's probe instead of training its own."""
    if settings["artifact"] not in (None, "auto"):
        return pinned_probe(settings, shapes)
    fingerprint, key = shapes.fingerprint(), settings_key(settings)

    def cached() -> Path | None:
        return find_cached(settings["artifacts_dir"], fingerprint, key)

    if launched_rank() != 0:
        wait_for(cached, "the attribute probe")
    folder = cached()
    if folder is not None:
        probe, manifest = load_probe(folder)
        log(f"  probe        cached: {folder}")
        return probe, cached_record(folder, manifest)

    log(f"  probe        none cached for data {fingerprint}; training one ({settings['max_steps']} steps)")
    probe, training = train_probe(
        shapes, settings, work_dir / "probe", accelerator=settings["accelerator"], progress=progress
    )
    manifest = {
        "run_dir": str(work_dir),
        "data_fingerprint": fingerprint,
        "data": shapes.settings(),
        "settings_key": key,
        "settings": dict(settings),
        "dims": {"frames": shapes.frames, "size": shapes.size},
        "vocab": shapes.vocab,
        "training": training,
    }
    folder = artifacts.publish(settings["artifacts_dir"], PROBE_STAGE, training["checkpoint"], manifest)
    log(f"  probe        trained in {training['train_time_s']:.0f}s, cached as {folder}")
    return probe, {"artifact": str(folder), "cached": False, "extra_clips": settings["extra_clips"], **training}
