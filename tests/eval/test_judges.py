"""The judges of the GAN stages' validation samples on the shapes: balanced fidelity and FD from the probe (the
judge of movie data, TextClipJudge, is tested with the text-video judge in test_judge.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2v.data.shapes import CaptionedShapes
from t2v.eval.judges import ProbeJudge, balanced_accuracy
from t2v.eval.probe import labels_of, to_tensor


def test_balanced_accuracy_averages_recall_over_the_values_that_occur() -> None:
    # truth 0 three times (2 right), truth 1 once (right), value 2 never occurs but is predicted once.
    confusion = torch.tensor([[2, 0, 1], [0, 1, 0], [0, 0, 0]])
    assert balanced_accuracy(confusion).item() == pytest.approx((2 / 3 + 1) / 2)


@pytest.fixture(scope="module")
def labelled_batches(easy_data):
    """Two batches of real clips of the easy data, with the labels a datamodule batch carries."""
    shapes = CaptionedShapes(**easy_data)
    rows = shapes.split_indices("val")[:64]
    return [(to_tensor(shapes.render(part)), {"labels": labels_of(shapes, part)}) for part in np.split(rows, 2)]


def feed(judge, batches, fake) -> dict[str, float]:
    for video, batch in batches:
        judge.update(fake(video), video, batch)
    scores = {k: float(v) for k, v in judge.compute().items()}
    judge.reset()
    return scores


def test_the_probe_judge_scores_real_clips_right_and_a_constant_generator_at_chance(
    trained_probe, labelled_batches
) -> None:
    probe, _ = trained_probe
    judge = ProbeJudge(probe)
    real = feed(judge, labelled_batches, lambda video: video)
    assert set(real) == {"fidelity", "fd", *(f"fidelity/{a}" for a in probe.attributes("video"))}
    assert real["fidelity"] > 0.9 and real["fd"] < 1e-3
    # One clip for every caption: each attribute is read as one value, so balanced accuracy = 1 / #values seen.
    one_clip = labelled_batches[0][0][:1]
    constant = feed(judge, labelled_batches, lambda video: one_clip.expand_as(video).clone())
    assert constant["fidelity/shape"] == pytest.approx(1 / 2)
    assert constant["fidelity/direction"] == pytest.approx(1 / 4)
    assert constant["fd"] > 1.0


def test_the_probe_judge_reads_images_with_the_image_probe(trained_probe, labelled_batches) -> None:
    probe, _ = trained_probe
    judge = ProbeJudge(probe)
    frames = [(video[:, :, 0], batch) for video, batch in labelled_batches]
    scores = feed(judge, frames, lambda image: image)
    assert set(scores) == {"fidelity", "fd", "fidelity/shape", "fidelity/colour", "fidelity/size"}
    assert scores["fidelity"] > 0.9
