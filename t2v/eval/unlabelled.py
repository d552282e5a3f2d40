"""Scoring a chain on data without attribute labels (movie clips), with the text-video judge (``judge.py``).

For every test caption the chain makes ``num_samples`` clips; the judge then says how often a clip's own caption
ranks first among ``candidates`` test captions (R-precision, for the generated clips and, as the ceiling, for
the real test clips), and how far the generated clips lie from the real ones in its video features (FD, KID),
beside the distance between two real sets (the test and the validation clips). Temporal change and per-caption
diversity are measured as on the shapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from rich.progress import Progress
from torch.utils.data import DataLoader, Dataset

from t2v.eval.judge import JudgeFeatures, TextVideoJudge, r_precision
from t2v.eval.metrics import FeatureDistances, pairwise_mean, temporal_change

Generate = Callable[[list[str], int, int], dict[str, Any]]


def batches(dataset: Dataset, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


@torch.no_grad()
def score_unlabelled(
    generate: Generate,
    judge: TextVideoJudge,
    test: Dataset,
    reference: Dataset,
    num_samples: int,
    seed: int,
    batch_size: int = 32,
    candidates: int = 100,
    progress: bool = True,
) -> dict[str, float]:
    """The judge's figures for the chain ``generate`` (captions, samples per caption, seed -> ``{"video": ...}``) on
    the real ``test`` clips; ``reference``, other real clips (the validation split), gives the real-vs-real FD."""
    n_test, n_reference = len(test), len(reference)
    features = JudgeFeatures(judge)
    generated = FeatureDistances(None, "video", n_test, n_test * num_samples, features=features)
    real_vs_real = FeatureDistances(None, "video", n_reference, n_test, features=features)
    text, real, fake = [], [], []
    change = {"generated": [], "real": []}
    diversity = {"pixel": [], "feature": []}
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("judge", total=n_test)
        for batch in batches(test, batch_size):
            clips, captions = batch["video"], list(batch["caption"])
            video = generate(captions, num_samples, seed)["video"].float()
            generated.update(clips, real=True)
            real_vs_real.update(clips, real=False)
            generated.update(video, real=False)
            text.append(judge.embed_text(batch["text"]))
            real.append(judge.embed_video(clips))
            fake.append(judge.embed_video(video))
            change["generated"].append(temporal_change(video))
            change["real"].append(temporal_change(clips))
            diversity["pixel"].append(pairwise_mean(video, len(captions)))
            diversity["feature"].append(pairwise_mean(features(video), len(captions)))
            bar.advance(task, len(captions))
        for batch in batches(reference, batch_size):
            real_vs_real.update(batch["video"], real=True)
    text_emb, real_emb = torch.cat(text), torch.cat(real)
    # Sample k of every caption, one R-precision per k: each draw ranks distinct captions.
    fake_emb = torch.cat(fake).reshape(n_test, num_samples, -1)
    per_sample = [r_precision(text_emb, fake_emb[:, k], candidates, seed) for k in range(num_samples)]
    # The control: the same clips against a derangement of their captions, which a judge must rank at chance.
    shift = torch.randperm(n_test - 1, generator=torch.Generator().manual_seed(seed))[0].item() + 1
    shuffled = r_precision(text_emb.roll(shift, dims=0), fake_emb[:, 0], candidates, seed)
    ours, reference_distances = generated.compute(), real_vs_real.compute()
    metrics = {
        "judge/r_precision/generated": sum(per_sample) / num_samples,
        "judge/r_precision/real": r_precision(text_emb, real_emb, candidates, seed),
        "judge/r_precision/chance": 1 / min(candidates, n_test),
        "judge/r_precision/shuffled": shuffled,
        "judge/fd": ours["fd"],
        "judge/kid": ours["kid"],
        "judge/fd_real": reference_distances["fd"],
        "judge/kid_real": reference_distances["kid"],
        "quality/temporal_change/generated": float(torch.cat(change["generated"]).mean()),
        "quality/temporal_change/real": float(torch.cat(change["real"]).mean()),
    }
    for space, values in diversity.items():
        mean = torch.cat(values).nanmean()
        metrics[f"diversity/video/{space}/generated"] = float(mean) if not torch.isnan(mean) else math.nan
    return metrics


def judge_rows(metrics: dict[str, float]) -> list[str]:
    """The judge's figures as markdown table rows (header included), each beside its reference."""
    m = metrics
    return [
        "| figure | generated | reference |",
        "|---|---|---|",
        f"| R-precision (own caption ranked first) | {m['judge/r_precision/generated']:.1%} | real clips "
        f"{m['judge/r_precision/real']:.1%}; chance {m['judge/r_precision/chance']:.1%}, captions shuffled "
        f"{m['judge/r_precision/shuffled']:.1%} |",
        f"| FD, judge features | {m['judge/fd']:.2f} | real vs real {m['judge/fd_real']:.2f} |",
        f"| KID, judge features | {m['judge/kid']:.4f} | real vs real {m['judge/kid_real']:.4f} |",
    ]


def markdown(metrics: dict[str, float], title: str, notes: list[str]) -> str:
    """The evaluation of a chain on data without labels, as markdown."""
    m = metrics
    change = f"{m['quality/temporal_change/generated']:.4f} | real {m['quality/temporal_change/real']:.4f}"
    spread = f"{m['diversity/video/pixel/generated']:.4f} / {m['diversity/video/feature/generated']:.3f}"
    lines = [f"# {title}", "", *notes, "", *judge_rows(metrics), f"| frame-to-frame change | {change} |",
             f"| same-caption diversity, pixel / judge features | {spread} | – |"]  # fmt: skip
    return "\n".join(lines) + "\n"
