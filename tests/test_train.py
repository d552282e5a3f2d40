"""train_stage(cfg) in-process: reproducibility, resuming, metrics.json, artifacts and the error paths."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from t2v.errors import T2VError
from t2v.pipeline import artifacts
from t2v.pipeline.stage import train_stage

from helpers import TINY_VAE

FAST = ["debug=limit", "logger=csv", "callbacks=none", "trainer=cpu", *TINY_VAE]


def csv_column(run_dir: Path, column: str) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return [float(row[column]) for row in csv.DictReader(f) if row.get(column)]


def test_same_seed_same_losses(compose_train, tmp_path: Path) -> None:
    losses = []
    for name in ("a", "b"):
        train_stage(compose_train(*FAST, "seed=7", run_dir=name))
        losses.append(csv_column(tmp_path / name, "train/loss"))
    assert len(losses[0]) >= 4
    assert losses[0] == losses[1]
    train_stage(compose_train(*FAST, "seed=8", run_dir="c"))
    assert csv_column(tmp_path / "c", "train/loss") != losses[0]


def test_metrics_json_and_artifact(compose_train, tmp_path: Path) -> None:
    summary = train_stage(compose_train(*FAST))
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["stage"] == "vae" and written["seed"] == 42 and written["run_time_s"] > 0
    assert written["best"]["val/elbo"] == min(row["val/elbo"] for row in written["history"])
    assert "train/loss" in written["final"] and "val/active_units" in written["final"]
    assert Path(written["checkpoints"]["best"]).name == "best.ckpt"
    assert Path(written["checkpoints"]["last"]).name == "last.ckpt"
    folder = artifacts.latest(tmp_path / "artifacts", "vae")
    assert folder is not None and str(folder) == summary["artifact"]
    manifest = artifacts.read_manifest(folder)
    assert manifest["dims"] == {"input": 12 * 32, "latent": 16}
    assert manifest["data_fingerprint"] and manifest["config"]["model"]["latent_dim"] == 16
    assert "${" not in (tmp_path / "run" / "config.yaml").read_text()  # the resolved config


def test_resume_from_checkpoint(compose_train, tmp_path: Path) -> None:
    first = train_stage(compose_train(*FAST, run_dir="first"))
    assert first["epochs"] == 2
    resumed = train_stage(
        compose_train(*FAST, "trainer.max_epochs=3", f"ckpt_path={first['checkpoints']['last']}", run_dir="resumed")
    )
    assert resumed["epochs"] == 3
    assert resumed["global_step"] == first["global_step"] * 3 // 2  # continued, not restarted


def test_missing_checkpoint_is_a_clear_error(compose_train) -> None:
    with pytest.raises(T2VError, match=r"ckpt_path=/nope/last.ckpt does not exist"):
        train_stage(compose_train(*FAST, "ckpt_path=/nope/last.ckpt"))


def test_a_held_out_split_of_movie_data_is_a_clear_error(compose_train) -> None:
    with pytest.raises(T2VError, match=r"held_out splits the shapes dataset .* drop the held_out override"):
        train_stage(compose_train(*FAST, "data=folder", "data.root=/nope", "held_out=three"))


def test_runs_with_no_logger_and_default_callbacks(compose_train, tmp_path: Path) -> None:
    summary = train_stage(compose_train("debug=limit", "logger=none", "callbacks=default", *TINY_VAE))
    assert summary["wandb_run"] is None and (tmp_path / "run" / "metrics.json").is_file()


def test_progress_bar_can_be_switched_off(compose_train, tmp_path: Path) -> None:
    # callbacks=default has a RichProgressBar, which Lightning refuses beside enable_progress_bar=false.
    no_bar = "trainer.enable_progress_bar=false"
    train_stage(compose_train("debug=limit", "logger=none", "callbacks=default", no_bar, *TINY_VAE))
    assert (tmp_path / "run" / "metrics.json").is_file()
