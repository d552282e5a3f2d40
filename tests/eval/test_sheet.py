"""The sheet of real and generated clips: held-out captions first, one row per attribute combination."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from t2v.data.shapes import ATTRIBUTES
from t2v.eval.probe import to_tensor
from t2v.eval.sheet import pick_captions, write_sheet


def test_held_out_captions_come_first_and_no_combination_twice(easy_shapes) -> None:
    test = easy_shapes.split_indices("test")

    def combination(i: int) -> tuple[int, ...]:
        return tuple(int(easy_shapes.labels[a][i]) for a in ATTRIBUTES)

    held_out_combinations = {combination(i) for i in test if easy_shapes.is_held_out()[i]}
    picked = pick_captions(easy_shapes, test, len(held_out_combinations) + 3)
    held = easy_shapes.is_held_out()[picked]
    assert held.sum() == len(held_out_combinations) and (~held).sum() == 3
    assert list(held) == sorted(held, reverse=True)  # every held-out row before every seen one
    assert len({combination(i) for i in picked}) == len(picked)


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
