"""`python train.py ...` as a user runs it: a real subprocess through Hydra's entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import TINY_VAE, call_entry, run_entry

pytestmark = pytest.mark.slow


def paths_in(tmp_path: Path) -> list[str]:
    return [f"paths.artifacts_dir={tmp_path / 'artifacts'}", f"paths.cache_dir={tmp_path / 'cache'}"]


def test_limit_run_writes_checkpoints_metrics_and_wandb(tmp_path: Path) -> None:
    run_dir = tmp_path / "some" / "dir"
    result = run_entry(
        "train.py", "stage=vae", "debug=limit", f"hydra.run.dir={run_dir}", *TINY_VAE, *paths_in(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["stage"] == "vae" and metrics["best"]["val/elbo"] > 0
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1 and list(offline_runs[0].glob("*.wandb"))
    assert metrics["wandb_run"] == str(offline_runs[0])
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["latent_dim"] == 16
    assert str(run_dir / "metrics.json") in result.stdout.replace("\n", "")
    assert not (tmp_path / "wandb").exists()  # nothing written outside the run dir

    from t2v.models.vae import TextVAE

    assert TextVAE.load_from_checkpoint(run_dir / "checkpoints" / "best.ckpt").hparams.latent_dim == 16


def test_sweep_runs_two_jobs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_entry(
        "train.py",
        "-m",
        "stage=vae",
        "model.latent_dim=8,12",
        "debug=limit",
        "logger=csv",
        f"hydra.sweep.dir={sweep}",
        *TINY_VAE[:1],
        *TINY_VAE[2:],
        *paths_in(tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    dims = [yaml.safe_load((sweep / str(job) / "config.yaml").read_text())["model"]["latent_dim"] for job in (0, 1)]
    assert dims == [8, 12]
    assert all((sweep / str(job) / "metrics.json").is_file() for job in (0, 1))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.latnt_dim=3", "Could not override 'model.latnt_dim'"),
        ("stage=nope", "Could not find 'stage/nope'"),
        ("trainer=tpu9", "Could not find 'trainer/tpu9'"),
    ],
)
def test_bad_override_is_hydras_clear_error(tmp_path: Path, override: str, message: str) -> None:
    result = run_entry("train.py", override, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_input_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    result = call_entry(
        "train.py",
        "debug=limit",
        "featurizer.vectors=/nope/wiki.en.vec",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
        *paths_in(tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("t2v: error:")]
    assert len(error_lines) == 1 and "/nope/wiki.en.vec" in error_lines[0]


def test_print_job_config(tmp_path: Path) -> None:
    result = run_entry("train.py", "--cfg", "job", "stage=vae", "model.latent_dim=64", cwd=tmp_path)
    assert result.returncode == 0
    assert yaml.safe_load(result.stdout)["model"]["latent_dim"] == 64
