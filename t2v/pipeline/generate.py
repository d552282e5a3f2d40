"""Text -> image -> clip with trained artifacts, and writing the results as GIF, MP4 and PNG.

Used by `python generate.py` and at the end of `python train.py stage=pipeline`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

from t2v.errors import T2VError
from t2v.pipeline import artifacts
from t2v.text.featurizer import FastTextFeaturizer

GENERATOR_STAGES = ("stage1", "videogan")


def to_uint8(x: Tensor) -> np.ndarray:
    """[-1, 1] float, channels first (..., C, H, W) -> uint8 channels last (..., H, W, C)."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


def slug(text: str, limit: int = 48) -> str:
    """A file-name-safe short form of a caption."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "caption"


@dataclass
class TextToVideo:
    """The generation chain: featurizer -> (VAE -> siamese) text encoder -> stage-I -> video GAN."""

    featurizer: FastTextFeaturizer
    stage1: torch.nn.Module
    videogan: torch.nn.Module

    @classmethod
    def from_artifacts(cls, artifacts_dir: str | Path, where: dict[str, str] | None = None) -> TextToVideo:
        """Load the stage1 and videogan artifacts ("latest" or folders) and check they fit together."""
        from t2v.models.stage1 import Stage1GAN
        from t2v.models.videogan import VideoGAN

        where = {**{name: "latest" for name in GENERATOR_STAGES}, **(where or {})}
        manifests = {}
        for name in GENERATOR_STAGES:
            folder = artifacts.find(artifacts_dir, name, where[name])
            if folder is None:
                place = Path(artifacts_dir) / name if where[name] == "latest" else where[name]
                raise T2VError(
                    f"generate needs a trained {name} artifact and there is none at {place}; make the whole "
                    "chain with: python train.py stage=pipeline (or pass paths.artifacts_dir=<folder>)"
                )
            manifests[name] = artifacts.read_manifest(folder)
        check_compatible(manifests["stage1"], manifests["videogan"])
        return cls(
            featurizer=FastTextFeaturizer.load(manifests["stage1"]["featurizer_dir"]),
            stage1=Stage1GAN.load_from_checkpoint(manifests["stage1"]["checkpoint"], map_location="cpu").eval(),
            videogan=VideoGAN.load_from_checkpoint(manifests["videogan"]["checkpoint"], map_location="cpu").eval(),
        )

    def features(self, captions: list[str]) -> Tensor:
        """Caption features, refusing captions the featurizer cannot read."""
        for caption in captions:
            if not caption.strip():
                raise T2VError("text is empty; pass a sentence, e.g. text='a red circle moves to the left'")
            if not self.featurizer.known_words(caption):
                raise T2VError(
                    f"no word of {caption!r} is in the trained vocabulary; use words from the training captions"
                )
        features, _ = self.featurizer.transform(captions)
        return torch.from_numpy(features)

    @torch.no_grad()
    def __call__(self, captions: list[str], num_samples: int = 1, seed: int = 0) -> dict[str, Any]:
        """``num_samples`` clips per caption, row i*num_samples+k being sample k of caption i."""
        torch.manual_seed(seed)
        text = self.features(captions).repeat_interleave(num_samples, dim=0)
        images = self.stage1.generate(text)
        clip = self.videogan.generate(images, text)  # the text is ignored by an unconditioned video GAN
        return {"captions": [c for c in captions for _ in range(num_samples)], "images": images, **clip}

    @torch.no_grad()
    def animate(self, first_frames: Tensor, captions: list[str], num_samples: int = 1, seed: int = 0) -> Tensor:
        """The video GAN alone: ``num_samples`` clips (B*n, 3, T, H, W) per given first frame (B, 3, H, W) and its
        caption, row i*num_samples+k being sample k of frame i."""
        torch.manual_seed(seed)
        text = self.features(captions).repeat_interleave(num_samples, dim=0)
        return self.videogan.generate(first_frames.repeat_interleave(num_samples, dim=0), text)["video"]


def check_compatible(stage1: dict[str, Any], videogan: dict[str, Any]) -> None:
    """The dimension contract between the two generators, before anything is generated."""
    size, frame_size = stage1["dims"]["image_size"], videogan["dims"]["size"]
    if size != frame_size:
        raise T2VError(
            f"stage1 makes {size}px images ({stage1['folder']}) but videogan expects {frame_size}px frames "
            f"({videogan['folder']}); train both with the same data.size"
        )
    if videogan["dims"].get("text_conditioning") and videogan.get("featurizer_dir") != stage1.get("featurizer_dir"):
        raise T2VError(
            f"stage1 ({stage1['folder']}) and videogan ({videogan['folder']}) read text through different "
            "featurizers (different vae artifacts); retrain videogan on the same chain as stage1"
        )


def write_sample(out_dir: Path, name: str, image: Tensor, video: Tensor, fps: int) -> dict[str, str]:
    """One sample as ``name.gif``, ``name.mp4`` (the clip) and ``name.png`` (the stage-I image, then
    the frames, side by side)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = to_uint8(video.transpose(0, 1))  # (C, T, H, W) -> T frames of (H, W, C)
    paths = {kind: str(out_dir / f"{name}.{kind}") for kind in ("gif", "mp4", "png")}
    iio.imwrite(paths["gif"], frames, duration=1000 / fps, loop=0)  # GIF duration is in milliseconds
    # PyAV by name: imageio would pick whichever video plugin is installed, and their options differ.
    iio.imwrite(paths["mp4"], frames, plugin="pyav", fps=fps, codec="libx264")
    iio.imwrite(paths["png"], np.concatenate([to_uint8(image), *frames], axis=1))
    return paths


def write_samples(result: dict[str, Any], out_dir: str | Path, num_samples: int, fps: int = 8) -> list[dict[str, str]]:
    """Write every generated sample; returns their paths with their captions."""
    written = []
    for row, caption in enumerate(result["captions"]):
        name = f"{row // num_samples:03d}_{slug(caption)}_{row % num_samples}"
        paths = write_sample(Path(out_dir), name, result["images"][row], result["video"][row], fps)
        written.append({"caption": caption, **paths})
    return written
