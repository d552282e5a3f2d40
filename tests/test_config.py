"""Every option of every config group composes, and resolves, as train.py would see it."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers import CONF

GROUPS = ("stage", "model", "data", "featurizer", "trainer", "logger", "callbacks", "paths", "probe", "experiment",
          "debug")  # fmt: skip
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_resolves(compose_train, group: str, option: str) -> None:
    cfg = compose_train(f"{group}={option}")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["stage"]["name"]
    assert resolved["paths"]["output_dir"].endswith("run")


PRESETS = sorted((p.parent.name, p.stem) for p in (CONF / "stage_preset").glob("*/*.yaml"))


@pytest.mark.parametrize(("experiment", "stage"), PRESETS, ids=[f"{e}/{s}" for e, s in PRESETS])
def test_experiment_presets_apply_per_stage(compose_train, experiment: str, stage: str) -> None:
    preset = OmegaConf.load(CONF / "stage_preset" / experiment / f"{stage}.yaml")
    cfg = compose_train(f"experiment={experiment}", f"stage={stage}")
    set_here = OmegaConf.to_container(preset.get("model") or OmegaConf.create())
    assert OmegaConf.merge(cfg.model, set_here) == cfg.model  # every model key the preset sets is in force
    # Another stage does not see it.
    other = compose_train(f"experiment={experiment}", "stage=pipeline")
    assert other.stage.name == "pipeline"


def test_videogan_needs_siamese_only_when_text_conditioned(compose_train) -> None:
    assert compose_train("stage=videogan", "model.text.parts=[embedding]").stage.upstream.siamese == "latest"
    assert compose_train("stage=videogan", "model.text.parts=[]").stage.upstream.siamese is None


@pytest.mark.parametrize("option", ["csv", "tensorboard", "none", "wandb"])
def test_logger_options_instantiate(compose_train, option: str, tmp_path) -> None:
    from t2v.config import instantiate_group

    cfg = compose_train(f"logger={option}")
    loggers = instantiate_group(cfg.logger)
    assert len(loggers) == (0 if option == "none" else 1)
    for logger in loggers:
        assert str(tmp_path) in str(logger.save_dir)


@pytest.mark.parametrize("option", ["default", "cpu", "ddp_cpu"])
def test_cpu_trainers_instantiate(compose_train, option: str) -> None:
    cfg = compose_train(f"trainer={option}", "logger=none")
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer.num_devices == (2 if option == "ddp_cpu" else 1)


def test_stage_sets_data_after_data_group(compose_train) -> None:
    # The VAE reads captions only; the stage must win over the data group's default.
    assert compose_train("stage=vae").data.with_video is False


def test_debug_comes_last(compose_train) -> None:
    cfg = compose_train("debug=limit", "experiment=quickstart")
    assert cfg.trainer.max_epochs == 2 and cfg.data.num_clips == 256


def test_wandb_offline_without_key(monkeypatch, tmp_path) -> None:
    from t2v.loggers import wandb_api_key_configured, wandb_logger

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert not wandb_api_key_configured()
    assert wandb_logger(save_dir=str(tmp_path))._offline is True
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_api_key_configured()
