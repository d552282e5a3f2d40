"""The sheet of real and generated clips: held-out captions first, one row per attribute combination."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from t2v.data.shapes import ATTRIBUTES, CaptionedShapes
from t2v.eval.probe import to_tensor
from t2v.eval.sheet import pick_captions, write_sheet


def test_held_out_captions_come_first_in_turn_per_combination_and_a_quarter_are_seen() -> None:
    held_out = [{"shape": "circle", "colour": "red"}, {"shape": "square", "direction": "up"}]
    shapes = CaptionedShapes(num_clips=800, frames=4, size=16, seed=0, held_out=held_out)
    test = shapes.split_indices("test")
    picked = pick_captions(shapes, test, 8)
    held = shapes.is_held_out()[picked]
    assert list(held) == [True] * 6 + [False] * 2  # held-out rows first; a quarter of the sheet is seen captions
    shape = [shapes.vocab["shape"][shapes.labels["shape"][i]] for i in picked[:4]]
    assert shape[0::2] == ["circle", "circle"] and shape[1::2] == ["square", "square"]  # each combination in turn
    assert len({tuple(int(shapes.labels[a][i]) for a in ATTRIBUTES) for i in picked}) == 8  # no combination twice


def test_a_split_without_held_out_captions_shows_seen_ones(easy_shapes) -> None:
    seen = easy_shapes.split_indices("test")[~easy_shapes.is_held_out()[easy_shapes.split_indices("test")]]
    assert len(pick_captions(easy_shapes, seen, 5)) == 5


def test_the_sheet_shows_the_real_clip_then_the_samples_of_each_caption(easy_shapes, tmp_path: Path) -> None:
    test = easy_shapes.split_indices("test")
    frames, size = easy_shapes.frames, easy_shapes.size

    def grey(captions: list[str], n: int, seed: int) -> dict[str, torch.Tensor]:
        return {"video": torch.zeros(len(captions) * n, 3, frames, size, size)}

    paths = write_sheet(tmp_path, grey, easy_shapes, test, num_samples=2, count=3, fps=4)
    sheet = iio.imread(paths["sheet_gif"])
    rows, columns, gap = 3, 3, 4
    assert sheet.shape == (frames, rows * size + (rows - 1) * gap, columns * size + (columns - 1) * gap, 3)
    first_real = to_tensor(easy_shapes.render(pick_captions(easy_shapes, test, 1)))[0, :, 0]
    assert np.abs(sheet[0, :size, :size].astype(int) - ((first_real.permute(1, 2, 0) + 1) * 127.5).numpy()).max() < 3
    assert (sheet[0, :size, size + gap : 2 * size + gap] == 128).all()  # a grey sample beside it
    assert iio.imread(paths["sheet_png"]).shape[1] >= 480
