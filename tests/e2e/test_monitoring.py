"""GAN monitoring through the entry point: early stopping in a real stage1 sweep (with its summary table),
and a 2-process DDP video GAN run logging to W&B (read back from its offline run file) and CSV at once."""

from __future__ import annotations

import csv
import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import pytest
from hydra.core.global_hydra import GlobalHydra

from helpers import ROOT, compose_app, run_entry

# One xdist worker runs the module, so its shared siamese is trained once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("monitoring")]

TEXT = ["featurizer.max_words=12", "featurizer.dim=32"]
TINY = ["experiment=quickstart", "debug=limit", "data.num_clips=96", "data.batch_size=8", *TEXT]
# Any two positive losses meet these: the stop comes at exactly min_steps.
STOP_EARLY = ["callbacks.gan_stopping.window=2", "callbacks.gan_stopping.tolerance=1.01",
              "callbacks.gan_stopping.epsilon=1e6"]  # fmt: skip
HEALTH = {"train/g_loss", "train/d_loss", "train/d_real", "train/d_fake", "train/gan_step",
          "train/grad_norm_g", "train/grad_norm_d", "train/diversity"}  # fmt: skip


def paths_in(root: Path) -> list[str]:
    return [f"paths.artifacts_dir={root / 'artifacts'}", f"paths.cache_dir={root / 'cache'}"]


def train_in_process(root: Path, name: str, *overrides: str) -> None:
    """A tiny upstream stage, in this process (no interpreter start), composed as train.py would."""
    from t2v.pipeline.stage import train_stage

    try:
        train_stage(compose_app("train", *overrides, output_dir=root / name, cwd=root))
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def siamese(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vae and siamese artifacts, as small as they come, for the stage1 runs."""
    root = tmp_path_factory.mktemp("upstream")
    short = [*TINY, "logger=csv", "callbacks=none", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
             "trainer.limit_val_batches=1", *paths_in(root)]  # fmt: skip
    train_in_process(root, "vae", "stage=vae", *short, "model.hidden_dims=[64]", "model.latent_dim=16")
    train_in_process(root, "siamese", "stage=siamese", *short, "model.embed_dim=32", "model.hidden_dim=32",
                     "model.image_widths=[8,16,32]")  # fmt: skip
    return root


def csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_stage1_sweep_stops_early_and_summarises(siamese: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_entry("train.py", "-m", "stage=stage1", *TINY, "logger=csv", *STOP_EARLY,
                       "callbacks.gan_stopping.min_steps=3,5", "trainer.max_epochs=-1", "trainer.max_steps=30",
                       "callbacks.gan_samples.every_n_steps=3", f"hydra.sweep.dir={sweep}", *paths_in(siamese),
                       cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    for job, stop_step in ((0, 3), (1, 5)):
        run_dir = sweep / str(job)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["stop/reason"] == "equilibrium" and metrics["stop/step"] == stop_step < 30
        assert metrics["global_step"] == 2 * stop_step  # one D and one G step per GAN step
        tagged = run_dir / "checkpoints" / f"stop-equilibrium-step{stop_step}.ckpt"
        assert metrics["stop/checkpoint"] == str(tagged) and tagged.is_file()
        assert iio.imread(run_dir / "loss_plot.png").ndim == 3
        assert (run_dir / "samples" / "step000003.png").is_file()
        columns = {k for row in csv_rows(run_dir) for k, v in row.items() if v}
        assert HEALTH | {"train/d_wrong", "train/kl", "stop/step"} <= columns
    assert "GAN stopped at step 3: equilibrium" in result.stdout.replace("\n", "")

    table = subprocess.run([sys.executable, "-m", "t2v.sweep_summary", str(sweep)], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if "callbacks.gan_stopping.min_steps=" in line]
    assert len(rows) == 2 and all("equilibrium" in row for row in rows)
    assert "min_steps=3" in rows[0] and " 3 " in rows[0] and "min_steps=5" in rows[1] and " 5 " in rows[1]
    assert "train/g_loss" in table.stdout and "experiment=quickstart" not in table.stdout  # only what varies


# -- the W&B offline run file -----------------------------------------------------------------------
def wandb_records(path: Path) -> Iterator[Any]:
    """The records of a .wandb file, decoded with W&B's own protobuf schema.

    The file is a W&B header (7 bytes) then LevelDB-log framed records in 32 KiB blocks: a 7-byte
    header (CRC32, length, type: 1 full, 2 first, 3 middle, 4 last) before each chunk."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, parts = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 2):
            parts = chunk
        elif kind in (3, 4):
            parts += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record


def read_wandb_run(path: Path) -> dict[str, Any]:
    run: dict[str, Any] = {"history": [], "summary": {}, "metrics": []}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["run"] = record.run
        elif kind == "history":
            run["history"].append(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            )
        elif kind == "summary":
            run["summary"].update(
                {u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in record.summary.update}
            )
        elif kind == "metric":
            run["metrics"].append((record.metric.name or record.metric.glob_name, record.metric.step_metric))
    return run


def test_videogan_ddp_run_on_wandb_and_csv(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # A video GAN without text needs no upstream stage; 8 frames of 16x16 keep it quick.
    result = run_entry("train.py", "stage=videogan", *TINY, "model.text.parts=[]", "data.frames=8",
                       "data.size=16", "model.width=0.0625", "trainer=ddp_cpu", "logger=[wandb,csv]", *STOP_EARLY,
                       "callbacks.gan_stopping.min_steps=4", "trainer.max_epochs=-1", "trainer.max_steps=20",
                       "callbacks.gan_samples.every_n_steps=2", "callbacks.gan_samples.fps=5", "tags=[monitoring]",
                       f"hydra.run.dir={run_dir}", *paths_in(tmp_path), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # Both processes stopped at GAN step 4 (a process that ran on would have hung the other one).
    assert metrics["stop/reason"] == "equilibrium" and metrics["stop/step"] == 4 and metrics["global_step"] == 8
    assert (run_dir / "checkpoints" / "stop-equilibrium-step4.ckpt").is_file()
    assert (run_dir / "loss_plot.png").is_file()
    gif = run_dir / "samples" / "step000002.gif"
    assert iio.imread(gif).shape[0] == 8 and iio.immeta(gif)["duration"] == 200

    (wandb_dir,) = (run_dir / "wandb").glob("offline-run-*")
    run = read_wandb_run(next(wandb_dir.glob("*.wandb")))
    assert run["run"].run_group == "quickstart" and run["run"].job_type == "videogan"
    assert "monitoring" in run["run"].tags
    assert ("*", "train/gan_step") in run["metrics"]  # every curve is plotted against the GAN step
    losses = [row for row in run["history"] if "train/g_loss" in row]
    assert [row["train/gan_step"] for row in losses] == [1, 2, 3, 4]
    assert all(isinstance(row["train/d_loss"], float) for row in losses)
    videos = [row for row in run["history"] if row.get("samples/video/_type") == "video-file"]
    assert [row["train/gan_step"] for row in videos] == [2, 4]
    assert (wandb_dir / "files" / videos[0]["samples/video/path"]).is_file()
    assert run["summary"]["stop/reason"] == "equilibrium" and run["summary"]["stop/step"] == 4

    # CSV got the same scalars.
    wandb_scalars = {k for row in losses for k in row if k.startswith("train/")}
    csv_scalars = {k for row in csv_rows(run_dir) for k, v in row.items() if v and k.startswith("train/")}
    assert HEALTH <= wandb_scalars == csv_scalars

    sync = subprocess.run([str(Path(sys.executable).parent / "wandb"), "sync", "--dry-run", str(wandb_dir)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert sync.returncode == 0 and "Would sync 1 run" in sync.stdout + sync.stderr
