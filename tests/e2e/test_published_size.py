"""The published size end to end on real footage: ``experiment=paper`` (32 frames of 64 x 64, the published network
widths) through all four stages on a folder of real video files written here, generate.py on a sentence with words
the captions never used, and evaluate.py's text-video judge. A handful of batches of two clips (debug=limit): the
path a user takes, not a trained model."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import pytest
from movie_fixtures import moving_square, write_avi

from helpers import call_entry, paths_in, run_entry

pytestmark = pytest.mark.slow

COLOURS = ["red", "blue", "green", "white"]
PAPER = (32, 64, 64, 3)  # frames, height, width, channels of a written clip


def footage(root: Path, clips: int = 12) -> Path:
    """``clips`` real videos (MPEG-4 in AVI, through PyAV) in three folders, 40 frames of 72 x 96 each, larger than
    the 64 x 64 they are cut to, with a captions.csv that gives each its split."""
    rows = ["path,caption,split"]
    for i in range(clips):
        write_avi(root / f"reel{i % 3}" / f"shot{i}.avi", moving_square(40, 72, 96, seed=i), fps=25)
        split = "train" if i < clips - 4 else ("val" if i < clips - 2 else "test")
        rows.append(f"reel{i % 3}/shot{i}.avi,a {COLOURS[i % 4]} square glides to the right over a gradient,{split}")
    (root / "captions.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def test_the_published_size_trains_end_to_end_on_real_footage(tmp_path: Path) -> None:
    root = footage(tmp_path / "clips")
    run = tmp_path / "run"
    result = run_entry("train.py", "experiment=paper", "stage=pipeline", "data=folder", f"data.root={root}",
                       "debug=limit", "data.batch_size=2", "trainer.max_epochs=1", "logger=csv", *paths_in(tmp_path),
                       "stage.samples=[a red square glides to the right over a gradient]", "stage.num_samples=1",
                       f"hydra.run.dir={run}", cwd=tmp_path, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((run / "metrics.json").read_text())
    assert list(summary["stages"]) == ["vae", "siamese", "stage1", "videogan"]
    (sample,) = summary["samples"]
    assert iio.imread(sample["gif"]).shape == PAPER

    out = tmp_path / "generated"
    sentence = "a crimson square drifts slowly over the gradient"
    # generate.py and evaluate.py in this process: the same apps, without importing torch twice more.
    result = call_entry("generate.py", f"paths.artifacts_dir={tmp_path / 'artifacts'}", f"text={sentence}",
                       "num_samples=1", f"out_dir={out}", f"hydra.run.dir={tmp_path / 'g'}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    (written,) = json.loads((out / "samples.json").read_text())
    assert iio.imread(written["gif"]).shape == PAPER
    assert {"crimson", "drifts", "slowly"} <= set(written["new_words"])
    assert "never used" in result.stdout and "crimson" in result.stdout

    result = call_entry("evaluate.py", f"paths.artifacts_dir={tmp_path / 'artifacts'}", "debug=limit",
                       "data_from=artifacts", "num_samples=2", "logger=csv", f"hydra.run.dir={tmp_path / 'e'}",
                       cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    evaluation = json.loads((tmp_path / "e" / "metrics.json").read_text())
    metrics = evaluation["metrics"]
    # The GAN stages trained the judge for their validation metric; evaluate.py finds it cached.
    assert evaluation["test_captions"] == 2 and evaluation["judge"]["cached"]
    assert metrics["judge/r_precision/chance"] == 0.5  # each test clip against the 2 test captions
    for key in ("judge/r_precision/generated", "judge/r_precision/real"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["judge/fd"] >= 0 and metrics["judge/fd_real"] >= 0
    assert metrics["quality/temporal_change/real"] > 0 and metrics["diversity/video/pixel/generated"] >= 0
    assert "R-precision" in (tmp_path / "e" / "metrics.md").read_text()
