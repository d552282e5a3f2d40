"""`python -m t2v.sweep_summary <sweep dir>` on sweep folders laid out as Hydra and train.py write them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from t2v.sweep_summary import main


def make_job(sweep: Path, num: int, overrides: list[str], metrics: dict | None) -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def gan_metrics(reason: str, step: int, g: float) -> dict:
    return {"stage": "stage1", "monitor": None, "stop/reason": reason, "stop/step": step,
            "final": {"train/g_loss": g, "train/d_loss": 1.25, "train/diversity": 0.5}}  # fmt: skip


def table_lines(capsys: pytest.CaptureFixture, *argv: str) -> list[str]:
    assert main(list(argv)) == 0
    return capsys.readouterr().out.splitlines()


def test_one_row_per_job_with_what_varies_how_it_stopped_and_final_losses(tmp_path: Path, capsys) -> None:
    shared = ["stage=stage1", "experiment=quickstart"]
    for num, lr, metrics in [(0, "1e-4", gan_metrics("equilibrium", 2400, 1.5)),
                             (1, "2e-4", gan_metrics("max_steps", 3000, 2.75)),
                             (2, "4e-4", None)]:  # fmt: skip
        make_job(tmp_path, num, [*shared, f"model.lr_g={lr}"], metrics)
    (tmp_path / "multirun.yaml").write_text("{}")
    lines = table_lines(capsys, str(tmp_path))
    header = next(line for line in lines if "stop reason" in line)
    assert "train/g_loss" in header and "train/d_loss" in header and "overrides" in header
    rows = [line for line in lines if "model.lr_g=" in line]
    assert len(rows) == 3
    assert "1e-4" in rows[0] and "equilibrium" in rows[0] and "2400" in rows[0] and "1.5" in rows[0]
    assert "2e-4" in rows[1] and "max_steps" in rows[1] and "3000" in rows[1] and "2.75" in rows[1]
    assert "4e-4" in rows[2] and "no metrics.json" in rows[2]
    assert not any("experiment=quickstart" in line for line in lines)  # shared by every job


def test_chosen_metrics_and_job_order(tmp_path: Path, capsys) -> None:
    for num in (10, 2):
        make_job(tmp_path, num, [f"seed={num}"], gan_metrics("d_wins", 700 + num, 0.25))
    lines = table_lines(capsys, str(tmp_path), "--metrics", "train/diversity")
    header = next(line for line in lines if "stop reason" in line)
    assert "train/diversity" in header and "train/g_loss" not in header
    rows = [line for line in lines if "seed=" in line]
    assert "seed=2" in rows[0] and "seed=10" in rows[1]  # numeric job order, not 10 before 2
    assert all("d_wins" in row and "0.5" in row for row in rows)


def test_non_gan_sweep_shows_the_monitored_metric(tmp_path: Path, capsys) -> None:
    for num, dim in ((0, 64), (1, 128)):
        metrics = {"stage": "vae", "monitor": "val/elbo", "final": {"val/elbo": 100.0 + dim, "train/loss": 3.0}}
        make_job(tmp_path, num, [f"model.latent_dim={dim}"], metrics)
    lines = table_lines(capsys, str(tmp_path))
    assert "val/elbo" in next(line for line in lines if "stop reason" in line)
    assert "164" in next(line for line in lines if "latent_dim=64" in line)


@pytest.mark.parametrize("make", [False, True])
def test_not_a_sweep_is_one_line_error(tmp_path: Path, capsys, make: bool) -> None:
    target = tmp_path / "sweep"
    if make:
        target.mkdir()  # an empty folder: no jobs
    assert main([str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("t2v: error:") and str(target) in err[0]
