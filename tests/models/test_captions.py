"""Caption matching: which rows of a batch are "wrong" captions for each other."""

from __future__ import annotations

import torch

from t2v.models.captions import mismatched_indices, same_meaning


def test_mismatched_indices_pick_a_caption_that_differs() -> None:
    keys = torch.tensor([[0], [0], [1], [2], [2], [3]])
    generator = torch.Generator().manual_seed(0)
    picks = torch.stack([mismatched_indices(keys, generator) for _ in range(2000)])  # (draws, B)
    assert not same_meaning(keys)[torch.arange(len(keys)), picks].any()
    # Row 0 (key 0) picks each of rows 2..5 alike.
    share = torch.bincount(picks[:, 0], minlength=len(keys)).float() / len(picks)
    assert share[:2].sum() == 0 and torch.allclose(share[2:], torch.full((4,), 0.25), atol=0.04)


def test_distinct_captions_are_each_someones_wrong_caption_once() -> None:
    keys = torch.arange(8)[:, None]
    for seed in range(20):
        picks = mismatched_indices(keys, torch.Generator().manual_seed(seed))
        assert sorted(picks.tolist()) == list(range(8)) and (picks != torch.arange(8)).all()


def test_where_every_caption_says_the_same_thing_another_row_is_picked() -> None:
    keys = torch.zeros(4, 2, dtype=torch.long)
    picks = torch.stack([mismatched_indices(keys, torch.Generator().manual_seed(s)) for s in range(200)])
    assert (picks != torch.arange(4)).all()
    assert set(picks.flatten().tolist()) == {0, 1, 2, 3}
    assert mismatched_indices(keys[:1]).tolist() == [0]  # a batch of one has no other row
