"""Which captions say the same thing: the one home of caption matching for every stage.

A caption's *key* identifies what it says: its attribute labels when the data has them (the shapes), else its
features (movie captions). Two captions with equal keys are never used as each other's negatives: not as a
"wrong" caption for a matching-aware discriminator, not in the siamese loss, not in retrieval.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def caption_keys(batch: dict[str, Any]) -> Tensor:
    """(B, K): what each caption of a batch means, its attribute labels when the data has them, else its features."""
    labels = batch.get("labels")
    if labels:
        return torch.stack([labels[name] for name in sorted(labels)], dim=1)
    return batch["text"]


def same_meaning(keys: Tensor) -> Tensor:
    """(B, B) bool: whether captions i and j say the same thing (equal rows of ``keys``, which is (B, K))."""
    return (keys[:, None, :] == keys[None, :, :]).all(-1)


def mismatched_indices(keys: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """For each row i, an index j whose key differs from key i ("wrong" captions for a matching-aware D).

    Starts from a random derangement and fixes remaining clashes by trying other rows; a row whose key every
    other row shares gets a plain different row (nothing better exists).
    """
    b = keys.shape[0]
    if b < 2:
        return torch.zeros(b, dtype=torch.long, device=keys.device)
    keys = keys.reshape(b, -1)
    shift = torch.randint(1, b, (1,), generator=generator).item()
    order = torch.randperm(b, generator=generator).to(keys.device)
    choice = torch.empty(b, dtype=torch.long, device=keys.device)
    choice[order] = order.roll(-int(shift))  # a derangement: nobody is paired with themselves
    same = same_meaning(keys)
    clash = same[torch.arange(b, device=keys.device), choice]
    for i in torch.nonzero(clash).flatten().tolist():
        candidates = torch.nonzero(~same[i]).flatten()
        if len(candidates):
            choice[i] = candidates[torch.randint(len(candidates), (1,), generator=generator).item()]
    return choice


def without_other_matches(logits: Tensor, keys: Tensor) -> Tensor:
    """(B, B) pair logits with every off-diagonal pair whose captions say the same thing masked out of the
    softmax: another row that says the same thing is not a negative."""
    eye = torch.eye(len(keys), dtype=torch.bool, device=keys.device)
    return logits.masked_fill(same_meaning(keys) & ~eye, -1e4)
