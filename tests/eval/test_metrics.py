"""FD/KID in the probe's feature space, temporal change and diversity on inputs whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from t2v.eval.metrics import FeatureDistances, frechet_distance, pairwise_mean, temporal_change
from t2v.eval.probe import to_tensor


@pytest.fixture(scope="module")
def real_sets(easy_data):
    """Two disjoint sets of 400 real clips from the same distribution (FD's finite-sample bias needs a few
    hundred: at 100 clips, two such sets are already 18 apart)."""
    from t2v.data.shapes import CaptionedShapes

    shapes = CaptionedShapes(**{**easy_data, "num_clips": 800, "held_out": []})
    return to_tensor(shapes.render(np.arange(400))), to_tensor(shapes.render(np.arange(400, 800)))


@pytest.mark.parametrize("kind", ["video", "image"])
def test_fd_of_a_set_against_itself_is_zero_and_grows_with_shuffled_colours(trained_probe, real_sets, kind) -> None:
    probe, _ = trained_probe
    clips, other = real_sets
    if kind == "image":
        clips, other = clips[:, :, 0], other[:, :, 0]
    shuffled = clips[:, [2, 0, 1]]  # every colour (and the background tint) changed: RGB -> BRG
    itself = frechet_distance(probe, kind, clips, clips)
    same_distribution = frechet_distance(probe, kind, clips, other)
    colours_shuffled = frechet_distance(probe, kind, clips, shuffled)
    assert itself < 1e-6 * colours_shuffled
    assert colours_shuffled > 0.1
    assert colours_shuffled > 5 * same_distribution


def test_feature_distances_stream_fd_and_kid_and_hand_back_the_probe_logits(trained_probe, real_sets) -> None:
    probe, _ = trained_probe
    clips, _ = real_sets
    distances = FeatureDistances(probe, "video", n_real=len(clips), n_fake=len(clips))
    half = len(clips) // 2
    for part in (clips[:half], clips[half:]):
        for real in (True, False):
            logits = distances.update(part, real=real)
            assert set(logits) == {"shape", "colour", "size", "direction", "speed"}
            assert logits["colour"].shape == (len(part), 3)
    result = distances.compute()
    shuffled = FeatureDistances(probe, "video", n_real=len(clips), n_fake=len(clips))
    shuffled.update(clips, real=True)
    shuffled.update(clips[:, [2, 0, 1]], real=False)
    scale = shuffled.compute()
    assert result["fd"] < 1e-6 * scale["fd"]
    # KID's subsets of one set drawn twice share clips, which biases it a little below 0.
    assert abs(result["kid"]) < 0.1 * scale["kid"]


def test_temporal_change_is_the_mean_absolute_frame_difference() -> None:
    still = torch.zeros(2, 3, 4, 8, 8)
    assert temporal_change(still).tolist() == [0.0, 0.0]
    flicker = torch.zeros(1, 3, 4, 8, 8)
    flicker[:, :, 1::2] = 1.0  # -> 0 -> 1 -> 0 -> 1 in [-1, 1]: a change of 1/2 in [0, 1] pixel units
    assert temporal_change(flicker).item() == pytest.approx(0.5)


def test_diversity_is_the_mean_pairwise_distance_within_each_group() -> None:
    images = torch.stack([torch.full((3, 4, 4), v) for v in (-1.0, -1.0, 1.0, -1.0, 0.0, 1.0)])
    # two groups of three: distances (0, 1, 1) -> 2/3 and (0.5, 1, 0.5) -> 2/3, in [0, 1] units
    assert pairwise_mean(images, 2).tolist() == pytest.approx([2 / 3, 2 / 3])
    features = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [1.0, 1.0]])
    assert pairwise_mean(features, 2).tolist() == pytest.approx([5.0, 0.0])
    assert all(math.isnan(v) for v in pairwise_mean(images, 6).tolist())  # one sample per caption: undefined
