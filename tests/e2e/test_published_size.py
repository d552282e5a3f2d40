"""The published size end to end on real footage: ``experiment=paper`` (32 frames of 64 x 64, the published network
widths) through all four stages on real video files written here, as a folder (data=folder) and as MPII-MD lays them
out (data=mpii); generate.py on a sentence with words the captions never used, and evaluate.py's text-video judge.
A handful of batches of two clips (debug=limit): the path a user takes, not a trained model."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import pytest
from movie_fixtures import clip_id, moving_square, write_avi

from helpers import call_entry, paths_in, run_entry

pytestmark = pytest.mark.slow

COLOURS = ["red", "blue", "green", "white"]
PAPER = (32, 64, 64, 3)  # frames, height, width, channels of a written clip


MPII_MOVIES = {"train": "0001_Train_Reel", "val": "0002_Val_Reel", "test": "0003_Test_Reel"}


def footage(root: Path, layout: str, clips: int = 12) -> Path:
    """``clips`` real videos (MPEG-4 in AVI, through PyAV), 40 frames of 72 x 96 each, larger than the 64 x 64 they
    are cut to: with ``layout="folder"`` in three folders with a captions.csv that gives each its split, with
    ``layout="mpii"`` as MPII-MD lays them out (a movie per split, annotations-someone.csv, dataSplit.txt)."""
    rows, annotations = ["path,caption,split"], []
    for i in range(clips):
        split = "train" if i < clips - 4 else ("val" if i < clips - 2 else "test")
        caption = f"a {COLOURS[i % 4]} square glides to the right over a gradient"
        video = moving_square(40, 72, 96, seed=i)
        if layout == "folder":
            write_avi(root / f"reel{i % 3}" / f"shot{i}.avi", video, fps=25)
            rows.append(f"reel{i % 3}/shot{i}.avi,{caption},{split}")
        else:
            movie = MPII_MOVIES[split]
            clip = clip_id(movie, f"00.00.{i:02d}.000", f"00.00.{i:02d}.900")
            write_avi(root / movie / f"{clip}.avi", video, fps=25)
            annotations.append(f"{clip}\t{caption}")
    if layout == "folder":
        (root / "captions.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    else:
        (root / "annotations-someone.csv").write_text("\n".join(annotations) + "\n", encoding="utf-8")
        splits = {"train": "training", "val": "validation", "test": "test"}
        (root / "dataSplit.txt").write_text("".join(f"{m}\t{splits[s]}\n" for s, m in MPII_MOVIES.items()))
    return root


def train_published_size(tmp_path: Path, layout: str) -> None:
    """All four stages of experiment=paper on ``layout`` footage, checked down to their 32-frame 64 x 64 GIFs."""
    root = footage(tmp_path / "clips", layout)
    run = tmp_path / "run"
    result = run_entry("train.py", "experiment=paper", "stage=pipeline", f"data={layout}", f"data.root={root}",
                       "debug=limit", "data.batch_size=2", "trainer.max_epochs=1", "logger=csv", *paths_in(tmp_path),
                       "stage.samples=[a red square glides to the right over a gradient]", "stage.num_samples=1",
                       f"hydra.run.dir={run}", cwd=tmp_path, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((run / "metrics.json").read_text())
    assert list(summary["stages"]) == ["vae", "siamese", "stage1", "videogan"]
    (sample,) = summary["samples"]
    assert iio.imread(sample["gif"]).shape == PAPER
    for gan in ("stage1", "videogan"):  # validated by the text-video judge: movie clips have no labels
        assert 0.0 <= json.loads((run / gan / "metrics.json").read_text())["best"]["val/fidelity"] <= 1.0
    (judge,) = (tmp_path / "artifacts" / "judge").glob("*/manifest.json")  # one judge, trained once for both
    assert json.loads(judge.read_text())["dims"] == {"word_dim": 300, "max_words": 25, "frames": 32, "size": 64}


def test_the_published_size_trains_on_an_mpii_md_copy(tmp_path: Path) -> None:
    train_published_size(tmp_path, "mpii")


def test_the_published_size_trains_end_to_end_on_real_footage(tmp_path: Path) -> None:
    """A folder of footage, then generate.py and evaluate.py on the chain (the same for data=mpii)."""
    train_published_size(tmp_path, "folder")
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
