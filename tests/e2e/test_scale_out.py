"""Scale-out through the entry points: an Optuna sweep over a GAN stage (a diverged trial recorded as failed), a
sweep of local submitit jobs, and the whole pipeline under 2-process DDP with the same weights on both ranks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from helpers import ROOT, TINY, TINY_VAE, VIDEOGAN_STEPS, call_entry, paths_in, run_entry

pytestmark = pytest.mark.slow


def test_optuna_maximises_a_gans_fidelity_and_records_a_diverged_trial_as_failed(chain: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    # With this seed the sampler tries both values; 1e30 makes the losses non-finite at once.
    result = run_entry("train.py", "-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler.seed=0", "stage=stage1", *TINY,
                       "model.optim.lr_d=choice(1e30, 2e-4)", "hydra.sweeper.n_trials=2", "publish=false",
                       f"hydra.sweep.dir={sweep_dir}", *paths_in(chain), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    log = result.stdout + result.stderr
    assert "Directions: ['maximize']" in log  # stage1 monitors val/fidelity, mode max
    assert "Failed experiment: stage stage1 failed: nonfinite" in log
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["best_params"] == {"model.optim.lr_d": 2e-4}
    assert math.isfinite(results["best_value"]) and 0.0 <= results["best_value"] <= 1.0


def test_submitit_local_runs_each_job_of_a_sweep_as_its_own_process(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_entry("train.py", "-m", "hydra/launcher=submitit_local", "stage=vae", *TINY, *TINY_VAE,
                       "model.lr=1e-3,3e-3", f"hydra.sweep.dir={sweep_dir}", *paths_in(tmp_path), cwd=tmp_path,
                       timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = [json.loads((sweep_dir / job / "metrics.json").read_text()) for job in ("0", "1")]
    assert [yaml.safe_load((sweep_dir / job / "config.yaml").read_text())["model"]["lr"] for job in ("0", "1")] == [
        1e-3,
        3e-3,
    ]
    assert all(math.isfinite(m["best"]["val/elbo"]) for m in metrics)
    # One submitit folder per job, named after its process id (beside submitit's own "%j" folder of pickles).
    assert len([p for p in (sweep_dir / ".submitit").iterdir() if p.name.isdigit()]) == 2


def test_the_pipeline_trains_every_stage_under_ddp_with_the_same_weights_on_both_ranks(tmp_path: Path) -> None:
    run_dir, states = tmp_path / "run", tmp_path / "states"
    result = run_entry("train.py", "stage=pipeline", "trainer=ddp_cpu", *TINY, f"hydra.run.dir={run_dir}",
                       *paths_in(tmp_path), VIDEOGAN_STEPS,
                       "model.optim.lr_g=1e-4",  # both GANs have it, the vae and siamese do not
                       "+callbacks.rank_state._target_=helpers.RankState", f"+callbacks.rank_state.dirpath={states}",
                       cwd=tmp_path, timeout=900, env={"PYTHONPATH": str(ROOT / "tests")})  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert list(summary["stages"]) == ["vae", "siamese", "stage1", "videogan"]
    assert summary["monitor"] == "val/fidelity" and math.isfinite(summary["best"]["val/fidelity"])
    assert len(list((run_dir / "samples").glob("*.gif"))) == 8  # written once, by rank 0
    for stage in summary["stages"]:
        assert len(list((tmp_path / "artifacts" / stage).glob("2*"))) == 1  # published once, by rank 0
    for stage, gan_steps in (("stage1", 8), ("videogan", 4)):
        assert yaml.safe_load((run_dir / stage / "config.yaml").read_text())["model"]["optim"]["lr_g"] == 1e-4
        metrics = json.loads((run_dir / stage / "metrics.json").read_text())
        assert metrics["global_step"] == 2 * gan_steps  # each GAN step is two optimizer steps (D, then G)
        assert (run_dir / stage / "checkpoints" / "last.ckpt").is_file()
    for module in ("TextVAE", "SiameseEmbedding", "Stage1GAN", "VideoGAN"):
        rank0, rank1 = (torch.load(states / f"{module}_rank{r}.pt") for r in (0, 1))
        assert rank0.keys() == rank1.keys()
        assert any("running_mean" in key for key in rank0) or module == "TextVAE"
        different = [key for key in rank0 if not torch.equal(rank0[key], rank1[key])]
        assert not different, f"{module}: ranks differ in {different[:5]}"


def test_a_model_setting_no_stage_has_is_refused_before_training(tmp_path: Path) -> None:
    result = run_entry("train.py", "stage=pipeline", *TINY, "model.optim.lr_x=1", f"hydra.run.dir={tmp_path / 'run'}",
                       *paths_in(tmp_path), cwd=tmp_path)  # fmt: skip
    assert result.returncode != 0 and "Could not override 'model.optim.lr_x'" in result.stderr
    assert not (tmp_path / "artifacts").exists()


def test_a_gan_monitoring_fidelity_needs_the_validation_callback(chain: Path, tmp_path: Path) -> None:
    result = call_entry("train.py", "stage=stage1", *TINY, "callbacks.gan_validation=null",
                        f"hydra.run.dir={tmp_path / 'run'}", *paths_in(chain), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "callbacks.gan_validation, which is switched off" in result.stderr
