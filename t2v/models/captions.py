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
    """For each row i, a random index j whose key differs from key i ("wrong" captions for a matching-aware D).

    Starts from a random derangement (every row is someone's wrong caption once), then gives each row paired with
    one that says the same thing a random row that says something else, or, where every other row says the same
    thing, a random other row (nothing better exists). The random numbers come from the CPU ``generator`` and the
    fix is vectorised, so it never waits for the GPU: it runs on every training step.
    """
    b = keys.shape[0]
    device = keys.device
    if b < 2:
        return torch.zeros(b, dtype=torch.long, device=device)
    order = torch.randperm(b, generator=generator)
    shift = int(torch.randint(1, b, (1,), generator=generator))
    choice = torch.empty_like(order)
    choice[order] = order.roll(-shift)  # a derangement: nobody is paired with themselves
    choice = choice.to(device)
    differs = ~same_meaning(keys.reshape(b, -1))
    clash = ~differs[torch.arange(b, device=device), choice]
    # The largest of independent uniforms picks uniformly; a row that differs always beats one that does not.
    score = torch.rand(b, b, generator=generator).to(device) + 2 * differs
    return torch.where(clash, score.fill_diagonal_(-1).argmax(dim=1), choice)


def without_other_matches(logits: Tensor, keys: Tensor) -> Tensor:
    """(B, B) pair logits with every off-diagonal pair whose captions say the same thing masked out of the
    softmax: another row that says the same thing is not a negative."""
    eye = torch.eye(len(keys), dtype=torch.bool, device=keys.device)
    return logits.masked_fill(same_meaning(keys) & ~eye, -1e4)
