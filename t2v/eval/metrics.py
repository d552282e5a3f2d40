"""Distribution and sample metrics in the attribute probe's feature space: Fréchet distance, KID, temporal
change and diversity.

FD and KID are torchmetrics' ``FrechetInceptionDistance`` and ``KernelInceptionDistance`` with the probe's
penultimate layer as the ``feature`` module, so nothing is downloaded: FD over the video probe's features is
an FVD for this dataset, over the image probe's an FID.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from t2v.eval.probe import AttributeProbe


class ProbeFeatures(nn.Module):
    """The probe's penultimate features of clips (``kind="video"``) or images, as a torchmetrics feature module.

    It remembers its last batch: FD and KID both call it on the same tensor, and the caller reads the
    attribute logits of that batch from :attr:`last_logits`, so each batch goes through the probe once.
    """

    def __init__(self, probe: AttributeProbe, kind: str) -> None:
        super().__init__()
        self.probe, self.kind = probe, kind
        self.num_features = probe.feature_dim(kind)  # torchmetrics then skips its dummy 299x299 forward pass
        self._last: tuple[Tensor, Tensor] | None = None
        self.last_logits: dict[str, Tensor] = {}

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        if self._last is not None and self._last[0] is x:
            return self._last[1]
        was_training = self.probe.training
        self.probe.eval()
        try:
            features, logits = self.probe.encode(self.kind, x)
        finally:
            self.probe.train(was_training)
        self._last = (x, features)
        self.last_logits = logits
        return features


class FeatureDistances:
    """FD and KID between a real and a generated set, fed batch by batch, in one feature space (the probe's)."""

    def __init__(
        self,
        probe: AttributeProbe | None,
        kind: str,
        n_real: int,
        n_fake: int,
        kid_subsets: int = 50,
        features: nn.Module | None = None,
    ) -> None:
        # Sharing ``features`` between several of these reads each batch through the probe once; another feature
        # module (``num_features`` set, e.g. the text-video judge's) measures in its own space.
        self.features = features if features is not None else ProbeFeatures(probe, kind)
        self.fd = FrechetInceptionDistance(feature=self.features, reset_real_features=True)
        # KID's subsets are drawn without replacement, so a subset cannot be larger than either set.
        self.kid_subset = max(2, min(1000, n_real, n_fake))
        with warnings.catch_warnings():  # "KID keeps every feature in memory": a few thousand small vectors here
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            self.kid = KernelInceptionDistance(feature=self.features, subsets=kid_subsets, subset_size=self.kid_subset)

    def update(self, x: Tensor, real: bool) -> dict[str, Tensor]:
        """Add a batch; returns the probe's attribute logits for it (none from a feature space without them)."""
        self.fd.update(x, real=real)
        self.kid.update(x, real=real)
        return getattr(self.features, "last_logits", {})

    def compute(self) -> dict[str, float]:
        fd = float(self.fd.compute())
        kid_mean, kid_std = self.kid.compute()
        return {"fd": max(fd, 0.0), "kid": float(kid_mean), "kid_std": float(kid_std)}


def frechet_distance(probe: AttributeProbe, kind: str, real: Tensor, fake: Tensor, batch_size: int = 256) -> float:
    """FD between two whole sets (tests and one-off checks; the evaluation streams through FeatureDistances)."""
    fd = FrechetInceptionDistance(feature=ProbeFeatures(probe, kind), reset_real_features=True)
    for x, is_real in ((real, True), (fake, False)):
        for i in range(0, len(x), batch_size):
            fd.update(x[i : i + batch_size], real=is_real)
    return max(float(fd.compute()), 0.0)


def temporal_change(video: Tensor) -> Tensor:
    """Per clip, the mean absolute change between consecutive frames, in [0, 1] pixel units (clips in [-1, 1])."""
    return (video[:, :, 1:] - video[:, :, :-1]).abs().mean(dim=(1, 2, 3, 4)) / 2


def pairwise_mean(x: Tensor, groups: int) -> Tensor:
    """For ``x`` of ``groups`` consecutive groups of rows, each group's mean distance between its rows:
    the per-pixel mean absolute difference in [0, 1] units for images and clips (in [-1, 1]), the
    Euclidean distance for feature vectors. (groups,), NaN for groups of one row."""
    rows = x.reshape(groups, -1, *x.shape[1:]).flatten(2).float()
    n = rows.shape[1]
    if n < 2:
        return torch.full((groups,), math.nan)
    total = torch.zeros(groups)
    for i in range(n):
        for j in range(i + 1, n):
            diff = rows[:, i] - rows[:, j]
            total += diff.norm(dim=-1).cpu() if x.dim() == 2 else diff.abs().mean(-1).cpu() / 2
    return total / (n * (n - 1) / 2)
