"""Sweeps and cluster launches as composed (no cluster needed): the Optuna presets search settings their stage has
and optimise in the stage's direction, and the SLURM launcher sizes its jobs from the trainer."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict

from t2v.sweeps import OptimiseMonitor

from helpers import CONF

SEARCH_PRESETS = sorted(p.stem for p in (CONF / "hydra" / "sweeper").glob("*_search.yaml"))


def compose_with_hydra(*overrides: str) -> DictConfig:
    """conf/train.yaml with its ``hydra`` node, as a multirun composes it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    GlobalHydra.instance().clear()
    return cfg


@pytest.mark.parametrize("preset", SEARCH_PRESETS)
def test_each_search_preset_searches_settings_its_stage_has(compose_train, preset: str) -> None:
    stage = preset.removesuffix("_search")
    cfg = compose_with_hydra(f"hydra/sweeper={preset}", f"stage={stage}")
    params = cfg.hydra.sweeper.params
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and len(params) >= 2
    # The pipeline's model.* settings go to the stages that have them (both GANs for these).
    stages = ["stage1", "videogan"] if stage == "pipeline" else [stage]
    for name in stages:
        composed = compose_train(f"stage={name}", "experiment=quickstart")
        for key in params:
            assert OmegaConf.select(composed, key) is not None, f"{preset}: stage {name} has no {key}"


DIRECTIONS = [("vae", "minimize"), ("stage1", "maximize"), ("videogan", "maximize")]


@pytest.mark.parametrize(("stage", "direction"), DIRECTIONS)
def test_optuna_optimises_the_monitor_in_the_stages_direction_and_tolerates_failed_trials(
    stage: str, direction: str
) -> None:
    cfg = compose_with_hydra("hydra/sweeper=optuna", f"stage={stage}")
    OptimiseMonitor().on_multirun_start(config=cfg)
    assert cfg.hydra.sweeper.direction == direction and cfg.hydra.sweeper.max_failure_rate == 1.0


def test_a_direction_on_the_command_line_is_kept() -> None:
    cfg = compose_with_hydra("hydra/sweeper=optuna", "stage=stage1", "hydra.sweeper.direction=minimize")
    with open_dict(cfg):  # what Hydra records of the command line's hydra.* overrides
        cfg.hydra.overrides.hydra = ["hydra/sweeper=optuna", "hydra.sweeper.direction=minimize"]
    OptimiseMonitor().on_multirun_start(config=cfg)
    assert cfg.hydra.sweeper.direction == "minimize"


def test_the_basic_sweeper_is_left_alone() -> None:
    cfg = compose_with_hydra("stage=stage1")
    OptimiseMonitor().on_multirun_start(config=cfg)
    assert "direction" not in cfg.hydra.sweeper


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """submitit's SLURM executor only checks that ``srun`` exists; nothing is submitted."""
    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\nexit 1\n")
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{srun.parent}{os.pathsep}{os.environ['PATH']}")


def test_the_slurm_launcher_takes_nodes_tasks_and_gpus_from_the_trainer(fake_slurm, tmp_path: Path) -> None:
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from submitit.slurm.slurm import _make_sbatch_string

    cfg = compose_with_hydra("hydra/launcher=submitit_slurm", "trainer=multinode", "trainer.num_nodes=2",
                             "trainer.devices=4", "stage=videogan")  # fmt: skip
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 4, 4)
    # The sbatch script the plugin would submit, with the plugin's mapping of its keys onto submitit's.
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    skip = {"_target_", "submitit_folder", "max_num_timeout"}
    executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in launcher.items() if k not in skip})
    script = _make_sbatch_string(command="python train.py", folder=tmp_path, **executor._executor.parameters)
    for line in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--time=1440", "--signal=USR2@300"):
        assert f"#SBATCH {line}" in script, script
    assert launcher["max_num_timeout"] == 3  # requeued after a timeout or preemption


def test_the_local_launcher_runs_one_task_and_asks_for_no_gpus_on_a_cpu_trainer() -> None:
    cfg = compose_with_hydra("hydra/launcher=submitit_local", "trainer=ddp_cpu")
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    # One task: Lightning starts the two DDP processes itself.
    assert (launcher["tasks_per_node"], launcher["gpus_per_node"]) == (1, None)


def test_a_requeued_slurm_job_resumes_from_its_newest_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from t2v.pipeline.stage import resume_checkpoint

    cfg = OmegaConf.create({"ckpt_path": None})
    last = tmp_path / "checkpoints" / "last.ckpt"
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert resume_checkpoint(cfg, tmp_path) is None  # requeued before its first checkpoint: it starts again
    last.parent.mkdir()
    last.write_bytes(b"")
    assert resume_checkpoint(cfg, tmp_path) == str(last)
    torn = last.parent / ".last.ckpt.0badc0de.tmp"  # a write that a SIGKILL cut short
    torn.write_bytes(b"PK")
    assert resume_checkpoint(cfg, tmp_path) == str(last) and not torn.exists()
    hpc = tmp_path / "hpc_ckpt_1.ckpt"  # Lightning's own requeue handler saved one after it
    hpc.write_bytes(b"")
    os.utime(last, (1, 1))
    assert resume_checkpoint(cfg, tmp_path) == str(hpc)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")  # the first try of a job starts afresh...
    assert resume_checkpoint(cfg, tmp_path) is None
    assert resume_checkpoint(OmegaConf.create({"ckpt_path": "auto"}), tmp_path) == str(hpc)  # ...unless told


def test_a_pipeline_tried_again_skips_only_the_stages_it_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from t2v.pipeline.run import finished_before

    published = {"stop/reason": "max_steps", "artifact": "artifacts/stage1/x"}
    for name, summary in {"vae": {"artifact": "artifacts/vae/x"}, "stage1": published,
                          "preempted": {"stop/reason": "preempted"}, "diverged": {"stop/reason": "nonfinite"},
                          "unpublished": {"stop/reason": "max_steps"}}.items():  # fmt: skip
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(summary))
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "metrics.json").write_text('{"artifact": ')
    again = OmegaConf.create({"ckpt_path": "auto"})
    skipped = [n for n in ("vae", "stage1", "preempted", "diverged", "unpublished", "torn", "never")
               if finished_before(again, tmp_path / n)]  # fmt: skip
    assert skipped == ["vae", "stage1"]
    assert finished_before(OmegaConf.create({"ckpt_path": None}), tmp_path / "vae") is None  # a fresh run trains all
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert finished_before(OmegaConf.create({"ckpt_path": None}), tmp_path / "stage1") == published


def test_the_rank_a_cluster_launcher_gave_and_waiting_for_rank_0(monkeypatch: pytest.MonkeyPatch) -> None:
    from t2v.cluster import launched_rank, wait_for
    from t2v.errors import T2VError

    for name in ("RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    assert launched_rank() == 0
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert launched_rank() == 3
    answers = iter([None, None, "probe"])
    assert wait_for(lambda: next(answers), "the probe", poll_s=0.01) == "probe"
    with pytest.raises(T2VError, match="rank 3 waited 0s for rank 0 to write the probe"):
        wait_for(lambda: None, "the probe", timeout_s=0.05, poll_s=0.01)


def test_a_pipelines_model_override_goes_to_the_stages_that_have_the_setting() -> None:
    from t2v.pipeline.run import stage_overrides

    overrides = ["model.optim.clip_grad_norm=1.0", "model.latent_dim=64", "seed=3"]  # clip_grad_norm's default: null
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        routed = {name: stage_overrides(name, overrides) for name in ("vae", "stage1", "videogan")}
    GlobalHydra.instance().clear()
    assert routed["vae"] == ["model.latent_dim=64", "seed=3"]
    assert routed["stage1"] == routed["videogan"] == ["model.optim.clip_grad_norm=1.0", "seed=3"]
