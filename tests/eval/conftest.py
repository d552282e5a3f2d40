"""A small, easy shapes dataset and an attribute probe trained on it once per test session (a few seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

# 4 frames of 16x16 with fewer, well-separated values: a probe learns it in a few seconds of CPU.
EASY_DATA: dict[str, Any] = {
    "num_clips": 600,
    "frames": 4,
    "size": 16,
    "shapes": ["circle", "triangle"],
    "colours": {"red": [220, 40, 40], "blue": [50, 100, 240], "yellow": [235, 215, 40]},
    "sizes": {"small": 0.2, "large": 0.32},
    "directions": ["left", "right", "up", "down"],
    "speeds": {"slowly": 0.02, "quickly": 0.04},
    "val_fraction": 0.2,
    "test_fraction": 0.2,
    "held_out": [{"shape": "circle", "colour": "red"}],
    "seed": 0,
}
EASY_PROBE: dict[str, Any] = {
    "video_widths": [16, 32],
    "image_widths": [8, 16, 32],
    "appearance_frames": 2,
    "lr": 5e-3,
    "weight_decay": 1e-4,
    "max_steps": 200,
    "batch_size": 32,
    "extra_clips": 3000,
    "seed": 0,
}


@pytest.fixture(scope="session")
def easy_data() -> dict[str, Any]:
    return dict(EASY_DATA)


@pytest.fixture(scope="session")
def easy_probe_settings() -> dict[str, Any]:
    return dict(EASY_PROBE)


@pytest.fixture(scope="session")
def easy_shapes():
    from t2v.data.shapes import CaptionedShapes

    return CaptionedShapes(**EASY_DATA)


@pytest.fixture(scope="session")
def trained_probe(easy_shapes, tmp_path_factory: pytest.TempPathFactory):
    """(probe, training summary), trained on the easy dataset's training split and extra clips."""
    from t2v.eval.probe import train_probe

    work_dir: Path = tmp_path_factory.mktemp("probe")
    return train_probe(easy_shapes, EASY_PROBE, work_dir, progress=False)
