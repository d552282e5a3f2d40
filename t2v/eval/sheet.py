"""The sheet a person looks at: real and generated clips for the same captions, held-out captions first.

``sheet.gif`` plays one row per caption: the real test clip, then ``num_samples`` generated clips of its caption.
``sheet.png`` is the same rows as still frames (first, middle and last of each clip), each under its caption,
marked ``[held-out]`` when training never saw that combination. The figures say how often; the sheet shows how.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

from t2v.callbacks.samples import captioned_grid, hstack, to_uint8, vstack
from t2v.data.shapes import ATTRIBUTES, CaptionedShapes
from t2v.eval.probe import to_tensor


def pick_captions(shapes: CaptionedShapes, indices: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` test clips, each of another attribute combination: first the held-out ones, taken in turn
    from each held-out combination (``data.held_out``), then seen ones, which keep a quarter of the rows."""
    held_out = shapes.held_out_combination()

    def combination(i: int) -> tuple[int, ...]:
        return tuple(int(shapes.labels[a][i]) for a in ATTRIBUTES)

    buckets = [[int(i) for i in indices if held_out[i] == k] for k in range(len(shapes.held_out))]
    seen_rows = [int(i) for i in indices if held_out[i] < 0]
    quota = count - (count // 4 if seen_rows else 0)
    picked: list[int] = []
    taken: set[tuple[int, ...]] = set()

    def take(candidates: list[int], limit: int) -> bool:
        """Move the first row of a combination not shown yet into the sheet; False when there is none."""
        for n, i in enumerate(candidates):
            if len(picked) < limit and combination(i) not in taken:
                picked.append(i)
                taken.add(combination(i))
                del candidates[: n + 1]
                return True
        return False

    while len(picked) < quota and any([take(bucket, quota) for bucket in buckets]):
        pass
    while len(picked) < count and take(seen_rows, count):
        pass
    return np.array(picked, dtype=np.int64)


def stills(clip: Tensor) -> np.ndarray:
    """A clip (3, T, H, W) as its first, middle and last frames side by side, (H, 3W + gaps, 3) uint8."""
    frames = clip.shape[1]
    return hstack([to_uint8(clip[:, t]) for t in (0, frames // 2, frames - 1)], gap=1)


def write_sheet(
    out_dir: Path,
    generate: Callable[[list[str], int, int], dict[str, Any]],
    shapes: CaptionedShapes,
    indices: np.ndarray,
    num_samples: int,
    seed: int = 0,
    count: int = 8,
    fps: int = 8,
    batch_size: int = 32,
) -> dict[str, str]:
    """Write ``sheet.gif`` and ``sheet.png`` for up to ``count`` test captions; returns their paths."""
    picked = pick_captions(shapes, indices, count)
    if not len(picked):
        return {}
    captions = [shapes.captions[i] for i in picked]
    real = to_tensor(shapes.render(picked))
    with torch.no_grad():  # in batches of captions, as the scoring loop does, so memory stays bounded
        fake = torch.cat([
            generate(captions[start : start + batch_size], num_samples, seed + start)["video"].float()
            for start in range(0, len(captions), batch_size)
        ])  # fmt: skip
    rows_gif, rows_png = [], []
    for row in range(len(picked)):
        clips = [real[row], *fake[row * num_samples : (row + 1) * num_samples]]
        rows_gif.append(hstack([to_uint8(clip.transpose(0, 1)) for clip in clips], gap=4))
        rows_png.append(hstack([stills(clip) for clip in clips], gap=6))
    out_dir.mkdir(parents=True, exist_ok=True)
    gif, png = out_dir / "sheet.gif", out_dir / "sheet.png"
    iio.imwrite(gif, vstack(rows_gif, gap=4), duration=1000 / fps, loop=0)  # GIF duration is in milliseconds
    held = shapes.is_held_out()
    titles = [f"{'[held-out] ' if held[i] else ''}{caption}" for i, caption in zip(picked, captions, strict=True)]
    titles[0] = f"real, then {num_samples} generated: {titles[0]}"
    captioned_grid(rows_png, titles, png, min_width=1200)  # upscaled, so a person sees the pixels
    return {"sheet_gif": str(gif), "sheet_png": str(png)}
