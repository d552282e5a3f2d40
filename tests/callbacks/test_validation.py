"""The GAN validation callback: which judge it builds, and that building it does not disturb the stage (the judge
of movie data, built by rank 0 and loaded by the others: tests/data/test_movies.py)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from t2v.callbacks.validation import GanValidation
from t2v.models.gan import AdversarialModule


def test_preparing_the_judge_leaves_the_stages_random_numbers_alone(tmp_path: Path, monkeypatch) -> None:
    def train_a_probe(datamodule, work_dir):  # what a missing probe's training does to the random state
        pl.seed_everything(0, verbose=False)
        torch.rand(3), np.random.rand(), random.random()
        return "judge"

    callback = GanValidation(probe={}, judge={})
    monkeypatch.setattr(callback, "build_judge", train_a_probe)
    states = []
    for prepare in (False, True):
        pl.seed_everything(42, workers=True, verbose=False)
        if prepare:
            callback.prepare(AdversarialModule(), datamodule=None, work_dir=tmp_path)
        states.append((torch.rand(2), np.random.rand(), random.random()))
    assert callback.judge == "judge"
    assert torch.equal(states[0][0], states[1][0]) and states[0][1:] == states[1][1:]
    # The seed the data loaders and DistributedSampler read, which seed_everything also sets.
    assert os.environ["PL_GLOBAL_SEED"] == "42" and os.environ["PL_SEED_WORKERS"] == "1"


def test_only_a_gan_gets_a_judge(tmp_path: Path) -> None:
    callback = GanValidation(probe={}, judge={})
    callback.prepare(pl.LightningModule(), datamodule=None, work_dir=tmp_path)
    assert callback.judge is None
