"""The evaluation loop: generate clips for every test caption, and score them against the real clips.

For each chunk of test captions, the real clips are rendered and the generator (``TextToVideo``, the code
path of generate.py, or any callable with its signature) makes ``num_samples`` clips per caption. The
attribute probe reads both; FD/KID, temporal change, diversity and the siamese retrieval are accumulated
on the way, so memory stays bounded by one chunk.

Every accuracy is reported on three subsets of the test split: ``test`` (all of it), ``held_out`` (the
attribute combinations never shown in training, ``data.held_out``) and ``seen`` (the rest). The generated
samples' accuracy is also broken down by the value their caption names (recall per value), and averaged over
the values (balanced accuracy): a generator that draws one shape for every caption scores that shape's share
of the test split as accuracy, but only 1 / the number of shapes balanced. The same on the held-out
combinations alone (``held_out_balanced``) is the headline, with every attribute right averaged over the
held-out combinations, each clip's combination known from all five of its attributes.

With ``animate`` (the video GAN alone), the video GAN is also scored from each test clip's **real** first frame, as
the kind ``animated``: what the video GAN loses of the caption and of realism by itself, apart from stage-I's images.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch import Tensor, nn

from t2v.data.shapes import ATTRIBUTES, CaptionedShapes
from t2v.eval.metrics import FeatureDistances, ProbeFeatures, pairwise_mean, temporal_change
from t2v.eval.probe import STATIC_ATTRIBUTES, AttributeProbe, extended, labels_of, to_tensor
from t2v.models.siamese import RECALL_AT, retrieval_recall

KINDS = ("video", "image")
# The video GAN from the real first frame: a clip, read by the video probe.
ANIMATED = "animated"
PROBE_KIND = {"video": "video", "image": "image", ANIMATED: "video"}
ALL_KINDS = (*KINDS, ANIMATED)
SUBSETS = ("test", "held_out", "seen")

# (captions, num_samples, seed) -> {"images": (B*n, 3, H, W), "video": (B*n, 3, T, H, W)} in [-1, 1]
Generator = Callable[[list[str], int, int], dict[str, Any]]
# (first frames (B, 3, H, W), captions, num_samples, seed) -> clips (B*n, 3, T, H, W) in [-1, 1]
Animator = Callable[[Tensor, list[str], int, int], Tensor]


def attributes_of(kind: str) -> tuple[str, ...]:
    return STATIC_ATTRIBUTES if kind == "image" else ATTRIBUTES


def chance_levels(vocab: dict[str, list[str]]) -> dict[str, float]:
    """1 / the number of values of each attribute, and for all attributes of a kind right at once."""
    levels = {f"chance/{a}": 1.0 / len(vocab[a]) for a in ATTRIBUTES}
    for kind in ALL_KINDS:
        levels[f"chance/{kind}/all"] = math.prod(1.0 / len(vocab[a]) for a in attributes_of(kind))
    return levels


@dataclass
class Hits:
    """Whether each scored row (a clip or an image) got each attribute right, with its subset."""

    predicted: dict[str, list[Tensor]] = field(default_factory=dict)
    truth: dict[str, list[Tensor]] = field(default_factory=dict)
    held_out: list[Tensor] = field(default_factory=list)
    combination: list[Tensor] = field(default_factory=list)

    def add(
        self,
        predictions: dict[str, Tensor],
        labels: dict[str, Tensor],
        held_out: Tensor,
        combination: Tensor | None = None,
    ) -> None:
        """``combination``: which held-out combination (``data.held_out`` index) each row's caption is, -1 if none."""
        for a, pred in predictions.items():
            self.predicted.setdefault(a, []).append(pred.cpu())
            self.truth.setdefault(a, []).append(labels[a].cpu())
        self.held_out.append(held_out)
        self.combination.append(combination if combination is not None else torch.full(held_out.shape, -1))

    def per_value(self, prefix: str, vocab: dict[str, list[str]]) -> dict[str, float]:
        """On the whole test split: ``<prefix>/value/<attribute>/<value>``, the accuracy on the rows whose caption
        names that value (its recall; values absent from the split are left out), and ``<prefix>/balanced/
        <attribute>``, their mean. The same on the held-out combinations alone, as ``held_out_value`` and
        ``held_out_balanced``."""
        held = torch.cat(self.held_out)
        out = {}
        for subset, mask in (("", torch.ones_like(held)), ("held_out_", held)):
            if not mask.any():
                continue
            for a in self.predicted:
                recall = self.recall_per_value(a, mask, len(vocab[a]))
                present = {k: v for k, v in recall.items() if v is not None}
                out |= {f"{prefix}/{subset}value/{a}/{vocab[a][k]}": v for k, v in present.items()}
                out[f"{prefix}/{subset}balanced/{a}"] = sum(present.values()) / len(present)
        return out

    def recall_per_value(self, attribute: str, rows: Tensor, num_values: int) -> dict[int, float | None]:
        """For each value of ``attribute``: the accuracy on the ``rows`` whose caption names it (None: no such row)."""
        from torchmetrics.functional.classification import multiclass_recall

        pred, truth = torch.cat(self.predicted[attribute])[rows], torch.cat(self.truth[attribute])[rows]
        recall = multiclass_recall(pred, truth, num_classes=num_values, average="none")
        present = torch.bincount(truth, minlength=num_values) > 0
        return {k: float(recall[k]) if present[k] else None for k in range(num_values)}

    def held_out_all(self, prefix: str) -> dict[str, float]:
        """``<prefix>/held_out_balanced/all``: the rate of samples with every attribute right, on each held-out
        combination (``data.held_out``) in turn, averaged: a split whose held-out captions are mostly one
        combination counts each combination once."""
        if not self.combination:
            return {}
        combination = torch.cat(self.combination)
        correct = torch.stack([torch.cat(self.predicted[a]) == torch.cat(self.truth[a]) for a in self.predicted]).all(0)
        rates = [float(correct[combination == k].float().mean()) for k in combination.unique().tolist() if k >= 0]
        return {f"{prefix}/held_out_balanced/all": sum(rates) / len(rates)} if rates else {}

    def accuracy(self, prefix: str) -> dict[str, float]:
        """``<prefix>/<subset>/<attribute>`` and ``<prefix>/<subset>/all`` for each non-empty subset."""
        if not self.held_out:
            return {}
        correct = {a: torch.cat(rows) == torch.cat(self.truth[a]) for a, rows in self.predicted.items()}
        correct["all"] = torch.stack(list(correct.values())).all(0)
        held = torch.cat(self.held_out)
        out = {}
        for subset, mask in (("test", torch.ones_like(held)), ("held_out", held), ("seen", ~held)):
            if mask.any():
                out |= {f"{prefix}/{subset}/{a}": float(c[mask].float().mean()) for a, c in correct.items()}
        return out


def logits_to_predictions(logits: dict[str, Tensor]) -> dict[str, Tensor]:
    return {a: x.argmax(-1).cpu() for a, x in logits.items()}


class Retrieval:
    """The siamese embedding's text -> image recall@K on the real test clips (as its validation measures it)
    and on the generated stage-I images (the first sample of each caption)."""

    def __init__(self, siamese: nn.Module, featurize: Callable[[list[str]], Tensor]) -> None:
        from torchmetrics.retrieval import RetrievalHitRate

        self.siamese, self.featurize = siamese.eval(), featurize
        self.recall = nn.ModuleDict({f"r{k}": RetrievalHitRate(top_k=k) for k in RECALL_AT})
        self.rows: dict[str, list[tuple[Tensor, Tensor, Tensor]]] = {"real": [], "generated": []}

    @torch.no_grad()
    def add(self, captions: list[str], labels: dict[str, Tensor], real_video: Tensor, generated: Tensor) -> None:
        keys = torch.stack([labels[name] for name in sorted(labels)], dim=1)
        text = self.siamese.text_encoder(self.featurize(captions))
        images, rows = self.siamese.pick_frames(real_video)
        self.rows["real"].append((text[rows], self.siamese.image_encoder(images), keys[rows]))
        self.rows["generated"].append((text, self.siamese.image_encoder(generated), keys))

    def compute(self) -> dict[str, float]:
        out = {}
        for which, parts in self.rows.items():
            if not parts:
                continue
            text, image, keys = (torch.cat(p) for p in zip(*parts, strict=True))
            for k, value in retrieval_recall(text, image, keys, self.recall).items():
                out[f"retrieval/{which}/recall@{k}"] = float(value)
        return out


def reference_set(
    shapes: CaptionedShapes, indices: np.ndarray, copies: int, start: int
) -> tuple[CaptionedShapes, np.ndarray]:
    """Fresh real clips for FD/KID's real-vs-real reference: ``copies`` times as many as ``indices`` (the size
    of the generated set, so both carry the same finite-sample bias), with the same share of held-out
    combinations, from clip ``start`` on (past the dataset and the probe's training clips)."""
    held = shapes.is_held_out()[indices]
    want = {True: int(held.sum()) * copies, False: int((~held).sum()) * copies}
    rate = float(shapes.is_held_out().mean())
    size = int(1.3 * max(want[True] / max(rate, 1e-3), want[False] / max(1 - rate, 1e-3))) + 64
    while True:
        larger = extended(shapes, start + size)
        flags = larger.is_held_out()[start:]
        picked = {h: np.flatnonzero(flags == h)[: want[h]] for h in (True, False)}
        if all(len(picked[h]) == want[h] for h in picked):
            return larger, np.sort(np.concatenate(list(picked.values()))) + start
        size *= 2


@torch.no_grad()
def score(
    generate: Generator,
    probe: AttributeProbe,
    shapes: CaptionedShapes,
    indices: np.ndarray,
    num_samples: int = 4,
    seed: int = 0,
    batch_size: int = 32,
    real_frame: int = 0,
    retrieval: Retrieval | None = None,
    reference_start: int | None = None,
    progress: bool = True,
    animate: Animator | None = None,
) -> dict[str, float]:
    """Every metric of the evaluation for the captions of clips ``indices`` of ``shapes``.

    ``real_frame`` is the frame of a real clip that the stage-I image is compared with (stage1's
    ``model.frame``). With ``reference_start``, FD and KID are also measured between the test clips and as
    many fresh real clips (:func:`reference_set`): the score of a generator as good as the data. With
    ``animate``, the clips it makes from the real first frames are scored too (kind ``animated``).
    Returns a flat ``name -> value`` dict (see :mod:`t2v.eval.report` for the names).
    """
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) < 2:
        raise ValueError("scoring needs at least two test clips")
    held_out = torch.from_numpy(shapes.is_held_out()[indices])
    combinations = torch.from_numpy(shapes.held_out_combination()[indices])
    n_fake = len(indices) * num_samples
    scored = ALL_KINDS if animate is not None else KINDS
    # One feature module per probe kind: the animated clips share the video's, so the real clips are read once.
    shared = {kind: ProbeFeatures(probe, kind) for kind in KINDS}
    distances = {
        kind: FeatureDistances(probe, PROBE_KIND[kind], len(indices), n_fake, features=shared[PROBE_KIND[kind]])
        for kind in scored
    }
    references: dict[str, FeatureDistances] = {}
    if reference_start is not None:
        reference_shapes, reference = reference_set(shapes, indices, num_samples, reference_start)
        references = {
            kind: FeatureDistances(probe, kind, len(indices), len(reference), features=distances[kind].features)
            for kind in KINDS
        }
    real_hits = {kind: Hits() for kind in KINDS}
    fake_hits = {kind: Hits() for kind in scored}
    temporal: dict[str, list[Tensor]] = {"real": [], "generated": [], **({ANIMATED: []} if animate else {})}
    diversity: dict[str, list[Tensor]] = {}

    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("evaluating", total=len(indices))
        for chunk, start in enumerate(range(0, len(indices), batch_size)):
            part = indices[start : start + batch_size]
            held = held_out[start : start + batch_size]
            captions = [shapes.captions[i] for i in part]
            labels = labels_of(shapes, part)
            real = {"video": to_tensor(shapes.render(part))}
            real["image"] = real["video"][:, :, real_frame]
            result = generate(captions, num_samples, seed + chunk)
            fake = {"video": result["video"].float(), "image": result["images"].float()}
            if animate is not None:
                # The video GAN's input is the first frame, whichever frame stage-I was trained to draw.
                fake[ANIMATED] = animate(real["video"][:, :, 0], captions, num_samples, seed + chunk).float()
            fake_labels = {a: x.repeat_interleave(num_samples) for a, x in labels.items()}
            fake_held = held.repeat_interleave(num_samples)
            combo = combinations[start : start + batch_size]
            fake_combo = combo.repeat_interleave(num_samples)

            # Every real batch first, while each feature module still holds it (the animated kind's is the video's).
            real_logits = {kind: distances[kind].update(real[PROBE_KIND[kind]], real=True) for kind in scored}
            for kind in scored:
                if kind in real_hits:
                    real_hits[kind].add(logits_to_predictions(real_logits[kind]), labels, held, combo)
                if kind in references:
                    references[kind].update(real[kind], real=True)  # the same batch: read once
                features = distances[kind].features
                logits = distances[kind].update(fake[kind], real=False)
                fake_hits[kind].add(logits_to_predictions(logits), fake_labels, fake_held, fake_combo)
                diversity.setdefault(f"{kind}/pixel", []).append(pairwise_mean(fake[kind], len(part)))
                diversity.setdefault(f"{kind}/feature", []).append(pairwise_mean(features(fake[kind]), len(part)))
            temporal["real"].append(temporal_change(real["video"]))
            temporal["generated"].append(temporal_change(fake["video"]))
            if animate is not None:
                temporal[ANIMATED].append(temporal_change(fake[ANIMATED]))
            if retrieval is not None:
                first = torch.arange(0, len(fake["image"]), num_samples)
                retrieval.add(captions, labels, real["video"], fake["image"][first])
            bar.advance(task, len(part))
        if references:
            step = batch_size * num_samples
            task = bar.add_task("real reference", total=len(reference))
            for start in range(0, len(reference), step):
                video = to_tensor(reference_shapes.render(reference[start : start + step]))
                for kind, x in (("video", video), ("image", video[:, :, real_frame])):
                    references[kind].update(x, real=False)
                bar.advance(task, len(video))

    metrics: dict[str, float] = chance_levels(shapes.vocab)
    for kind in scored:
        if kind in real_hits:
            metrics |= real_hits[kind].accuracy(f"real/{kind}")
        metrics |= fake_hits[kind].accuracy(f"generated/{kind}")
        metrics |= fake_hits[kind].per_value(f"generated/{kind}", shapes.vocab)
        metrics |= fake_hits[kind].held_out_all(f"generated/{kind}")
        metrics |= {f"quality/{kind}/{k}": v for k, v in distances[kind].compute().items()}
        if kind in references:
            metrics |= {f"quality/{kind}/{k}_real": v for k, v in references[kind].compute().items()}
    if animate is not None:  # the animated clips are clips: the same real-vs-real reference
        video_reference = {k: v for k, v in metrics.items() if k.startswith("quality/video/") and k.endswith("_real")}
        metrics |= {k.replace("/video/", f"/{ANIMATED}/"): v for k, v in video_reference.items()}
    for which, values in temporal.items():
        metrics[f"quality/temporal_change/{which}"] = float(torch.cat(values).mean())
    for name, values in diversity.items():
        metrics[f"diversity/{name}/generated"] = float(torch.cat(values).nanmean())
    metrics |= real_diversity(probe, shapes, indices, num_samples, real_frame)
    if retrieval is not None:
        metrics |= retrieval.compute()
    return metrics


@torch.no_grad()
def real_diversity(
    probe: AttributeProbe, shapes: CaptionedShapes, indices: np.ndarray, group_size: int, real_frame: int
) -> dict[str, float]:
    """The same diversity measures on real clips that share all attributes (what one caption can look
    like): up to ``group_size`` clips from each such group of the test split, at most 64 groups."""
    combos: dict[tuple[int, ...], list[int]] = {}
    for i in indices:
        combos.setdefault(tuple(int(shapes.labels[a][i]) for a in ATTRIBUTES), []).append(int(i))
    size = max(2, min(group_size, max((len(g) for g in combos.values()), default=0)))
    groups = [g[:size] for g in combos.values() if len(g) >= size][:64]
    if not groups:
        return {}
    video = to_tensor(shapes.render(np.array(groups).reshape(-1)))
    out = {}
    for kind, x in (("video", video), ("image", video[:, :, real_frame])):
        probe.eval()
        features = torch.cat([probe.encode(kind, x[i : i + 256])[0] for i in range(0, len(x), 256)])
        out[f"diversity/{kind}/pixel/real"] = float(pairwise_mean(x, len(groups)).nanmean())
        out[f"diversity/{kind}/feature/real"] = float(pairwise_mean(features, len(groups)).nanmean())
    return out
