"""Judges of a GAN stage's validation samples: how well generated images or clips match their captions, and how
far their distribution lies from the real one. The GAN stages' validation metric (``val/fidelity``, ``val/fd``)
comes from here (``t2v/callbacks/validation.py`` feeds the batches).

- :class:`ProbeJudge`, on labelled data (the shapes): the attribute probe (``t2v/eval/probe.py``, the evaluation's
  own judge) reads every sample; ``fidelity`` is the accuracy balanced over the values each attribute takes in the
  batch captions, averaged over the attributes a sample shows (shape, colour, size for an image; also direction and
  speed for a clip). ``fd`` is the Fréchet distance in the probe's feature space.
- :class:`TextClipJudge`, on movie data (no labels): the text-video judge of ``evaluate.py``, trained on the real
  training clips only (never the pipeline's siamese stage, whose space the generators are trained to please).
  ``fidelity`` is the agreement of a sample with its caption, the cosine of their embeddings mapped to [0, 1]
  (0.5: unrelated); ``fd`` the Fréchet distance in the judge's video features.

Both count with torchmetrics, whose states are summed over the processes under DDP, so every rank computes the
same value and makes the same checkpoint and stopping decisions.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassConfusionMatrix
from torchmetrics.image.fid import FrechetInceptionDistance

from t2v.eval.judge import JudgeFeatures, TextVideoJudge
from t2v.eval.metrics import ProbeFeatures
from t2v.eval.probe import AttributeProbe


def balanced_accuracy(confusion: Tensor) -> Tensor:
    """Recall per true value, averaged over the values that occur (rows: truth, columns: prediction)."""
    support = confusion.sum(dim=1)
    recall = confusion.diagonal() / support.clamp_min(1)
    return recall[support > 0].mean()


def frechet(features: nn.Module) -> FrechetInceptionDistance:
    """torchmetrics' FD over ``features`` (a module with ``num_features``): nothing is downloaded."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Metric `FrechetInceptionDistance`.*")
        return FrechetInceptionDistance(feature=features, reset_real_features=True)


def kind_of(samples: Tensor) -> str:
    """``image`` for (B, 3, H, W), ``video`` for (B, 3, T, H, W)."""
    return "video" if samples.dim() == 5 else "image"


class Judge:
    """What the validation callback needs of a judge: feed batches, then read the scores and start over."""

    def update(self, generated: Tensor, real: Tensor, batch: dict) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, Tensor]:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def to(self, device: torch.device) -> Judge:
        raise NotImplementedError


class ProbeJudge(Judge):
    """Caption fidelity and FD of labelled samples, read by the attribute probe."""

    def __init__(self, probe: AttributeProbe) -> None:
        self.probe = probe.eval()
        self.features = {kind: ProbeFeatures(probe, kind) for kind in ("image", "video")}
        self.fd = {kind: frechet(features) for kind, features in self.features.items()}
        self.confusion = {
            kind: {a: MulticlassConfusionMatrix(len(probe.vocab[a])) for a in probe.attributes(kind)}
            for kind in ("image", "video")
        }
        self.kind: str | None = None

    def update(self, generated: Tensor, real: Tensor, batch: dict) -> None:
        self.kind = kind = kind_of(generated)
        self.fd[kind].update(real, real=True)
        self.fd[kind].update(generated, real=False)  # read last, so last_logits are the generated samples'
        predicted = self.features[kind].last_logits
        for a, confusion in self.confusion[kind].items():
            confusion.update(predicted[a].argmax(-1), batch["labels"][a].to(generated.device))

    def compute(self) -> dict[str, Tensor]:
        kind = self.kind
        if kind is None:
            return {}
        per_attribute = {a: balanced_accuracy(c.compute()) for a, c in self.confusion[kind].items()}
        scores = {f"fidelity/{a}": value for a, value in per_attribute.items()}
        scores["fidelity"] = torch.stack(list(per_attribute.values())).mean()
        scores["fd"] = self.fd[kind].compute().clamp_min(0)
        return scores

    def reset(self) -> None:
        for kind in ("image", "video"):
            self.fd[kind].reset()
            for confusion in self.confusion[kind].values():
                confusion.reset()
        self.kind = None

    def to(self, device: torch.device) -> ProbeJudge:
        self.probe.to(device)
        for kind in ("image", "video"):
            self.fd[kind].to(device)
            for confusion in self.confusion[kind].values():
                confusion.to(device)
        return self


class TextClipJudge(Judge):
    """Caption agreement and FD of unlabelled samples, read by the text-video judge (``t2v/eval/judge.py``).

    An image (stage-I) is read as a still clip of the judge's frame count, the real frames alike, so both GAN stages
    are scored in the same space."""

    def __init__(self, judge: TextVideoJudge) -> None:
        self.judge = judge.eval()
        self.frames, self.size = int(judge.hparams.frames), int(judge.hparams.size)
        self.features = JudgeFeatures(judge)
        self.fd = frechet(self.features)
        self.agreement = MeanMetric()

    def as_clip(self, samples: Tensor) -> Tensor:
        """(B, 3, T, H, W) at the judge's size: an image becomes a still clip, another size is resized."""
        if samples.dim() == 4:
            samples = samples.unsqueeze(2).expand(-1, -1, self.frames, -1, -1)
        if samples.shape[-3:] != (self.frames, self.size, self.size):
            samples = F.interpolate(samples.float(), size=(self.frames, self.size, self.size), mode="trilinear")
        return samples.float()

    @torch.no_grad()
    def update(self, generated: Tensor, real: Tensor, batch: dict) -> None:
        self.fd.update(self.as_clip(real), real=True)
        self.fd.update(self.as_clip(generated), real=False)  # read last: features.last holds the generated clips'
        video = F.normalize(self.judge.video_projection(self.features.last), dim=-1)
        text = self.judge.embed_text(batch["text"].float().to(video.device))
        self.agreement.update(((text * video).sum(-1) + 1) / 2)

    def compute(self) -> dict[str, Tensor]:
        if self.agreement.update_count == 0:
            return {}
        return {"fidelity": self.agreement.compute(), "fd": self.fd.compute().clamp_min(0)}

    def reset(self) -> None:
        self.fd.reset()
        self.agreement.reset()

    def to(self, device: torch.device) -> TextClipJudge:
        for part in (self.judge, self.fd, self.agreement):
            part.to(device)
        return self
