"""The text-video judge (t2v/eval/judge.py): R-precision itself, a judge trained on real clips of the easy shapes
that ranks real pairs far above chance and shuffled pairs at it, its features for FD, its cache, and its scores as
the GAN stages' validation judge on movie data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from t2v.data.shapes import CaptionedShapes
from t2v.eval.judge import JudgeFeatures, obtain_judge, r_precision, train_judge
from t2v.eval.judges import TextClipJudge
from t2v.eval.metrics import FeatureDistances
from t2v.eval.probe import to_tensor
from t2v.text import FastTextFeaturizer

SETTINGS: dict[str, Any] = {
    "embed_dim": 32,
    "text_width": 64,
    "video_widths": [16, 32],
    "image_widths": [8, 16, 32],
    "appearance_frames": 2,
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "max_steps": 60,
    "batch_size": 32,
    "temperature": 0.1,
    "seed": 0,
    "accelerator": "cpu",
}


class Pairs(Dataset):
    """Real clips of a split with their caption features, the items a datamodule serves."""

    def __init__(self, shapes: CaptionedShapes, featurizer: FastTextFeaturizer, split: str) -> None:
        rows = shapes.split_indices(split)
        self.video = to_tensor(shapes.render(rows))
        self.text = torch.from_numpy(featurizer.transform([shapes.captions[i] for i in rows])[0])

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"text": self.text[i], "video": self.video[i]}


@pytest.fixture(scope="module")
def data(easy_data, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    shapes = CaptionedShapes(**easy_data)
    cache = tmp_path_factory.mktemp("fasttext")
    train_captions = [shapes.captions[i] for i in shapes.split_indices("train")]
    featurizer = FastTextFeaturizer(dim=16, bucket=500, max_words=12, cache_dir=str(cache)).fit(train_captions)
    dims = {"word_dim": 16, "max_words": 12, "frames": shapes.frames, "size": shapes.size}
    return {"train": Pairs(shapes, featurizer, "train"), "test": Pairs(shapes, featurizer, "test"), "dims": dims,
            "fingerprint": shapes.fingerprint()}  # fmt: skip


@pytest.fixture(scope="module")
def judge(data, tmp_path_factory: pytest.TempPathFactory):
    return train_judge(data["train"], data["dims"], SETTINGS, tmp_path_factory.mktemp("judge"), progress=False)[0]


def test_r_precision_counts_the_clips_whose_caption_ranks_first() -> None:
    unit = torch.eye(8)
    assert r_precision(unit, unit, candidates=4) == 1.0
    assert r_precision(unit, unit.roll(1, dims=0), candidates=8) == 0.0  # every clip closest to another caption
    same = F.normalize(torch.ones(8, 3), dim=-1)
    assert r_precision(same, same, candidates=4) == 0.0  # a tie is a miss
    text = F.normalize(torch.randn(2000, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    video = F.normalize(torch.randn(2000, 16, generator=torch.Generator().manual_seed(1)), dim=-1)
    assert r_precision(text, video, candidates=10) == pytest.approx(0.1, abs=0.03)  # unrelated: chance
    with pytest.raises(ValueError, match="at least 2 pairs"):
        r_precision(unit[:1], unit[:1])


def test_the_judge_ranks_real_pairs_far_above_chance_and_shuffled_ones_at_it(judge, data) -> None:
    with torch.no_grad():
        text, video = judge.embed_text(data["test"].text), judge.embed_video(data["test"].video)
    real = r_precision(text, video, candidates=10)
    shuffled = np.mean([r_precision(text[torch.randperm(len(text))], video, candidates=10, seed=s) for s in range(5)])
    assert real > 0.4, real
    assert shuffled < 0.2, shuffled


def test_its_features_give_real_clips_no_distance_from_themselves(judge, data) -> None:
    clips = data["test"].video
    distances = FeatureDistances(None, "video", len(clips), len(clips), features=JudgeFeatures(judge))
    for real in (True, False):
        distances.update(clips, real=real)
    scores = distances.compute()
    assert scores["fd"] < 1e-2
    noise = FeatureDistances(None, "video", len(clips), len(clips), features=JudgeFeatures(judge))
    noise.update(clips, real=True)
    noise.update(torch.rand_like(clips) * 2 - 1, real=False)
    far = noise.compute()
    assert far["fd"] > 1.0 and far["kid"] > scores["kid"] + 0.1


def test_as_the_validation_judge_it_agrees_more_with_each_clip_s_own_caption_than_with_another(judge, data) -> None:
    """val/fidelity on movie data (TextClipJudge): real clips score higher with their own captions than with the
    captions shuffled; an image (stage-I) is read as a still clip, real and generated alike."""
    scorer, clips, text = TextClipJudge(judge), data["test"].video, data["test"].text
    shuffled = text[torch.randperm(len(text), generator=torch.Generator().manual_seed(0))]

    def score(samples: torch.Tensor, captions: torch.Tensor) -> dict[str, float]:
        scorer.update(samples, samples, {"text": captions})
        scores = {k: float(v) for k, v in scorer.compute().items()}
        scorer.reset()
        return scores

    own, other = score(clips, text), score(clips, shuffled)
    assert set(own) == {"fidelity", "fd"} and own["fd"] < 1e-2
    assert 0.5 < own["fidelity"] <= 1.0 and 0.0 <= other["fidelity"] < own["fidelity"] - 0.1, (own, other)
    stills = score(clips[:, :, 0], text)
    assert stills["fd"] < 1e-2 and 0.0 <= stills["fidelity"] <= 1.0
    scorer.update(torch.zeros_like(clips[:, :, 0]), clips[:, :, 0], {"text": text})
    assert float(scorer.compute()["fd"]) > 1.0


def test_a_judge_is_trained_once_per_data_featurizer_and_settings(data, tmp_path: Path) -> None:
    settings = {**SETTINGS, "max_steps": 5, "artifacts_dir": str(tmp_path / "artifacts")}
    args = (data["train"], data["dims"], data["fingerprint"])
    first, record = obtain_judge(settings, *args, "featurizer-a", tmp_path / "run1", log=lambda _: None, progress=False)
    again, cached = obtain_judge(settings, *args, "featurizer-a", tmp_path / "run2", log=lambda _: None, progress=False)
    assert not record["cached"] and cached["cached"] and cached["artifact"] == record["artifact"]
    clips = data["test"].video[:4]
    with torch.no_grad():
        torch.testing.assert_close(again.embed_video(clips), first.embed_video(clips))
    other, fresh = obtain_judge(settings, *args, "featurizer-b", tmp_path / "run3", log=lambda _: None, progress=False)
    assert not fresh["cached"] and fresh["artifact"] != record["artifact"]


def test_training_a_judge_leaves_the_callers_random_state_alone(data, tmp_path: Path) -> None:
    """A judge trained on the side (for a GAN stage's validation, or the agreement filter) must not move the stage's
    random streams, nor the seed Lightning's data loaders read."""
    import os

    import pytorch_lightning as pl

    pl.seed_everything(7, workers=True, verbose=False)
    expected = torch.rand(3)
    pl.seed_everything(7, workers=True, verbose=False)
    train_judge(data["train"], data["dims"], {**SETTINGS, "max_steps": 2}, tmp_path, progress=False)
    assert torch.equal(torch.rand(3), expected) and os.environ["PL_GLOBAL_SEED"] == "7"
