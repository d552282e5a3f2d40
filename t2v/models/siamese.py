"""Stage `siamese`: a joint text/image embedding (the original's Keras "Joint-Multimodal-Embedding").

Text branch: the frozen VAE encoder's mean (500-d) -> Dense 500 ReLU -> Dropout -> Dense 512.
Optionally (``word_mean``, off as published) the mean of the caption's word vectors sits beside the VAE
code, in the head's input and in the code that later stages may read: unlike the VAE code, it composes
(a linear reader finds "circle" in it for "red circle" even when no red circle was ever trained on).
Image branch: a small CNN on one frame of the clip -> Dense 500 ReLU -> Dropout -> Dense 512 (the
original used an ImageNet Xception, which cannot be downloaded here and is far too big for CPU).
Matching pairs are pulled together and mismatched pairs pushed apart with the original's Euclidean
contrastive loss (margin 1); in-batch InfoNCE and a triplet loss are alternatives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.retrieval import RetrievalHitRate

from t2v.errors import T2VError
from t2v.models.captions import caption_keys, mismatched_indices, same_meaning, without_other_matches
from t2v.models.stage import Manifests, StageModule, adam
from t2v.models.upstream import freeze, load_submodule
from t2v.models.vae import TextVAE

FRAME_CHOICES = ("first", "middle", "random", "original")
SIAMESE_LOSSES = ("contrastive", "infonce", "triplet")
RECALL_AT = (1, 5, 10)
# What a later stage may read of the text: the siamese embedding, the VAE code, the mean word vector.
TEXT_PARTS = ("embedding", "vae_code", "word_mean")


@dataclass
class TextInput:
    """A GAN's ``model.text``: which parts of the text it reads (``TEXT_PARTS``, in that order of your choosing),
    and whether each part is rescaled to unit RMS per caption (``balance``): as they come, the word mean is ~40x
    smaller than the VAE code, and a layer reading them starts out nearly deaf to it."""

    parts: list[str] = field(default_factory=lambda: ["embedding"])
    balance: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.parts, list | tuple):
            example = self.parts if isinstance(self.parts, str) else "word_mean"
            raise T2VError(f"model.text.parts={self.parts!r} must be a list, e.g. model.text.parts=[{example}]")
        self.parts = list(self.parts)
        for name in self.parts:
            if name not in TEXT_PARTS:
                raise T2VError(f"model.text.parts: {name!r} is unknown; pick from {list(TEXT_PARTS)}")
        if len(set(self.parts)) < len(self.parts):
            raise T2VError(f"model.text.parts={self.parts} names a part twice; name each once")


def head(in_dim: int, hidden_dim: int, embed_dim: int, dropout: float, final_relu: bool) -> nn.Sequential:
    """Dense hidden ReLU -> Dropout -> Dense embed (-> ReLU, as in the original)."""
    layers: list[nn.Module] = [
        nn.Linear(in_dim, hidden_dim),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden_dim, embed_dim),
    ]
    if final_relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def word_mean(features: Tensor, word_dim: int) -> Tensor:
    """(B, word_dim) mean of each caption's word vectors; the all-zero padding slots don't count."""
    words = features.view(len(features), -1, word_dim)
    real = (words != 0).any(-1, keepdim=True).to(words.dtype)
    return (words * real).sum(1) / real.sum(1).clamp_min(1)


def unit_rms(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Each row rescaled to a root-mean-square of 1 (its direction kept)."""
    return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps).to(x.dtype)


class TextEncoder(nn.Module):
    """Caption features -> embedding: the frozen VAE encoder's mean (and, with ``word_mean``, the mean
    word vector beside it), then a trainable head.

    The later stages rebuild it from ``text_encoder_hparams`` (in the siamese manifest) and load its
    weights from the siamese checkpoint (keys under ``text_encoder.``).
    """

    def __init__(self, vae: dict[str, Any], embed_dim: int = 512, hidden_dim: int = 500,
                 dropout: float = 0.5, final_relu: bool = True, word_mean: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.vae = freeze(TextVAE(**vae))
        self.word_mean = word_mean
        self.embed_dim = embed_dim
        self.code_dim = sum(list(self.part_dims().values())[1:])
        self.head = head(self.code_dim, hidden_dim, embed_dim, dropout, final_relu)

    def part_dims(self) -> dict[str, int]:
        """Each part of the text a later stage may read, in order, with its width: the embedding, then the code it
        is computed from (the VAE code, then the mean word vector when ``word_mean`` is on)."""
        vae = self.vae.hparams
        return {"embedding": self.embed_dim, "vae_code": vae.latent_dim} | (
            {"word_mean": vae.word_dim} if self.word_mean else {}
        )

    def code_parts(self, features: Tensor, names: Sequence[str] = ("embedding",)) -> dict[str, Tensor]:
        """The code parts by name, in the head's input order, each computed only when ``names`` asks for it or
        for the embedding (which reads them all): reading the word mean alone needs no VAE pass."""
        every_part = "embedding" in names
        code = {}
        with torch.no_grad():
            if every_part or "vae_code" in names:
                code["vae_code"] = self.vae.encode(features)[0]
            if self.word_mean and (every_part or "word_mean" in names):
                code["word_mean"] = word_mean(features, self.vae.hparams.word_dim)
        return code

    def forward(self, features: Tensor, parts: Sequence[str] = ("embedding",), balanced: bool = False) -> Tensor:
        """The named ``parts`` of the text (of ``TEXT_PARTS``), side by side; the embedding alone by default.

        With ``balanced``, each part is rescaled to unit RMS per caption. Their scales differ ~40x (word mean
        ~0.02, VAE code ~0.7), and a layer reading them as they are starts out nearly deaf to the small ones.
        """
        code = self.code_parts(features, parts)
        chosen = [self.head(torch.cat(list(code.values()), dim=-1)) if n == "embedding" else code[n] for n in parts]
        if balanced:
            chosen = [unit_rms(part) for part in chosen]
        return torch.cat(chosen, dim=-1)

    def check_parts(self, parts: Sequence[str]) -> None:
        """A clear one-line error for a part (``model.text.parts``) this encoder cannot give."""
        if "word_mean" in parts and not self.word_mean:
            raise T2VError(
                "model.text.parts: 'word_mean' needs a siamese stage trained with model.word_mean=true; "
                "retrain it (python train.py stage=siamese model.word_mean=true) or drop the part"
            )

    def out_dim(self, parts: Sequence[str] = ("embedding",)) -> int:
        dims = self.part_dims()
        return sum(dims[name] for name in parts)


class ImageEncoder(nn.Module):
    """A small CNN on one frame: stride-2 convs, global average pool, then the embedding head."""

    def __init__(self, widths: list[int], hidden_dim: int, embed_dim: int, dropout: float, final_relu: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in widths:
            layers += [nn.Conv2d(channels, width, 4, 2, 1), nn.BatchNorm2d(width), nn.LeakyReLU(0.2)]
            channels = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = head(channels, hidden_dim, embed_dim, dropout, final_relu)

    def forward(self, image: Tensor) -> Tensor:
        return self.head(self.features(image))


def frame_indices(choice: str, frames: int, training: bool) -> list[int] | None:
    """Which frames of a clip pair with its caption. None means one random frame per clip."""
    if choice == "first":
        return [0]
    if choice == "middle":
        return [frames // 2]
    if choice == "original":  # first, last and 10th-from-last, as the 2017 batches did
        return sorted({0, frames - 1, max(frames - 10, 0)})
    if choice == "random":
        return None if training else [frames // 2]
    raise ValueError(f"model.image_frame={choice!r} is unknown; use one of {FRAME_CHOICES}")


def contrastive_loss(distance: Tensor, match: Tensor, margin: float) -> Tensor:
    """The original: mean(y d^2 + (1 - y) max(margin - d, 0)^2), y = 1 for a matching pair."""
    return (match * distance.pow(2) + (1 - match) * F.relu(margin - distance).pow(2)).mean()


def euclidean(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise distance sqrt(max(sum (a - b)^2, eps)), as in the original (no NaN gradient at 0)."""
    return (a - b).pow(2).sum(-1).clamp_min(1e-7).sqrt()


def embedding_loss(kind: str, text: Tensor, image: Tensor, keys: Tensor, margin: float, temperature: float) -> Tensor:
    """The siamese objective ``kind`` (one of SIAMESE_LOSSES) on row-aligned matching (text, image) pairs.

    ``keys`` say what each caption means, so rows that say the same thing are never used as negatives.
    """
    if kind == "infonce":
        logits = without_other_matches(-torch.cdist(text, image).pow(2) / temperature, keys)
        target = torch.arange(len(text), device=text.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    wrong = mismatched_indices(keys)
    positive, negative = euclidean(text, image), euclidean(text, image[wrong])
    if kind == "triplet":
        return F.relu(positive - negative + margin).mean()
    distance = torch.cat([positive, negative])
    match = torch.cat([torch.ones_like(positive), torch.zeros_like(negative)])
    return contrastive_loss(distance, match, margin)


class SiameseEmbedding(StageModule):
    """Learns text and image encoders whose outputs are close for matching caption/frame pairs."""

    def __init__(
        self,
        vae: dict[str, Any],
        embed_dim: int = 512,
        hidden_dim: int = 500,
        dropout: float = 0.5,
        final_relu: bool = True,
        image_widths: tuple[int, ...] = (32, 64, 128, 256),
        image_frame: str = "first",
        loss: str = "contrastive",
        margin: float = 1.0,
        temperature: float = 0.1,
        optimizer: str = "adam",
        lr: float = 1e-4,
        word_mean: bool = False,
    ) -> None:
        super().__init__()
        if loss not in SIAMESE_LOSSES:
            raise ValueError(f"model.loss={loss!r} is unknown; use one of {SIAMESE_LOSSES}")
        frame_indices(image_frame, 16, True)  # reject an unknown frame choice now
        self.save_hyperparameters()
        self.text_encoder = TextEncoder(vae, embed_dim, hidden_dim, dropout, final_relu, word_mean)
        self.image_encoder = ImageEncoder(list(image_widths), hidden_dim, embed_dim, dropout, final_relu)
        self.recall = nn.ModuleDict({f"r{k}": RetrievalHitRate(top_k=k) for k in RECALL_AT})

    # -- upstream / artifact ----------------------------------------------------------------------
    @classmethod
    def upstream_kwargs(cls, manifests: Manifests) -> dict[str, Any]:
        return {"vae": manifests["vae"]["hparams"]}

    def load_upstream(self, manifests: Manifests) -> None:
        load_submodule(self.text_encoder.vae, manifests["vae"]["checkpoint"])

    def text_encoder_hparams(self) -> dict[str, Any]:
        p = self.hparams
        return {"vae": p.vae, "embed_dim": p.embed_dim, "hidden_dim": p.hidden_dim, "dropout": p.dropout,
                "final_relu": p.final_relu, "word_mean": p.word_mean}  # fmt: skip

    def export_artifact(self, directory: Path, datamodule: pl.LightningDataModule) -> dict[str, Any]:
        return {"text_encoder": self.text_encoder_hparams(), "dims": {"embedding": self.hparams.embed_dim}}

    # -- the model ------------------------------------------------------------------------------
    def pick_frames(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """(images (B*F, C, H, W), clip row of each image (B*F,)) for the configured frame choice."""
        b, _, t = video.shape[:3]
        idx = frame_indices(self.hparams.image_frame, t, self.training)
        if idx is None:
            pick = torch.randint(t, (b,), device=video.device)
            return video[torch.arange(b, device=video.device), :, pick], torch.arange(b, device=video.device)
        images = video[:, :, idx].permute(0, 2, 1, 3, 4).reshape(b * len(idx), *video.shape[1:2], *video.shape[3:])
        return images, torch.arange(b, device=video.device).repeat_interleave(len(idx))

    def loss(self, text: Tensor, image: Tensor, keys: Tensor) -> Tensor:
        """``text`` and ``image`` are row-aligned matching pairs; ``keys`` say what each caption means."""
        p = self.hparams
        return embedding_loss(p.loss, text, image, keys, margin=p.margin, temperature=p.temperature)

    def embed(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        """(text embeddings, image embeddings, caption keys), row-aligned."""
        images, rows = self.pick_frames(batch["video"])
        text = self.text_encoder(batch["text"])[rows]
        return text, self.image_encoder(images), caption_keys(batch)[rows]

    # -- Lightning hooks ------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        text, image, keys = self.embed(batch)
        loss = self.loss(text, image, keys)
        self.log("train/loss", loss, batch_size=len(text))
        self.show({"loss": loss})
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val: list[tuple[Tensor, Tensor, Tensor]] = []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        text, image, keys = self.embed(batch)
        self.log("val/loss", self.loss(text, image, keys), batch_size=len(text), sync_dist=True)
        self._val.append((text, image, keys))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        text, image, keys = (torch.cat(parts) for parts in zip(*self._val, strict=True))
        for k, value in retrieval_recall(text, image, keys, self.recall).items():
            self.log(f"val/recall@{k}", value, prog_bar=k == 1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        if self.hparams.optimizer == "rmsprop":  # the original's choice (with lr 1e-5)
            return torch.optim.RMSprop(params, lr=self.hparams.lr)
        return adam(params, lr=self.hparams.lr)


def retrieval_recall(text: Tensor, image: Tensor, keys: Tensor, metrics: nn.ModuleDict) -> dict[int, Tensor]:
    """Text -> image recall@K as cross-modal retrieval papers define it: the share of captions with a
    relevant image among their K nearest. With one relevant image per caption this is torchmetrics'
    recall; here every image whose caption means the same thing (same attributes, or the same
    features when the data has no labels) is relevant, so it is the hit rate."""
    n = len(text)
    # A similarity in (0, 1]: torchmetrics' retrieval recall mis-ranks all-negative scores (seen with -distance).
    scores = 1.0 / (1.0 + torch.cdist(text.float(), image.float()))
    relevant = same_meaning(keys)
    queries = torch.arange(n, device=text.device)[:, None].expand(n, n)
    out = {}
    for k in RECALL_AT:
        metric = metrics[f"r{k}"]
        metric.reset()
        out[k] = metric(scores.flatten(), relevant.flatten(), indexes=queries.flatten())
    return out
