"""experiment=seed_2017 is the published design and experiment=t2v the quickstart's, on the same data; the
evaluation app composes the same data as the training app."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from helpers import CONF

STAGES = ("vae", "siamese", "stage1", "videogan")


def test_seed_2017_is_the_published_design_at_the_quickstart_size(compose_train) -> None:
    siamese = compose_train("experiment=seed_2017", "stage=siamese")
    assert siamese.model.loss == "contrastive" and siamese.model.final_relu is True and siamese.model.margin == 1.0
    assert siamese.model.word_mean is False  # the text reaches the embedding through the VAE alone
    assert siamese.model.dropout == 0.5  # the original heads' dropout
    stage1 = compose_train("experiment=seed_2017", "stage=stage1").model
    # D alone judges the match, as published.
    assert stage1.losses == {"gan": "bce", "kl": 1.0, "read": 0.0, "mode_seeking": 0.0, "interpolation": 0.0}
    assert stage1.discriminator == {"head": "concat", "spectral_norm": False}
    assert stage1.text == {"parts": ["embedding"], "balance": False}  # the siamese embedding, as it comes
    assert list(compose_train("experiment=seed_2017", "stage=stage1").data.contrast) == []  # random wrong captions
    videogan = compose_train("experiment=seed_2017", "stage=videogan")
    m = videogan.model
    assert m.generator == {"noise_dim": 0, "skips": False, "background": "generated", "flow_stride": 1}
    assert list(m.text.parts) == [] and (m.losses.clip_l1, m.losses.recon_l1, m.losses.mask_l1) == (0.0, 10.0, 0.0)
    assert videogan.stage.upstream.siamese is None  # its D sees no text, so it needs no text encoder
    quickstart = compose_train("experiment=quickstart", "stage=videogan")
    assert (videogan.data.frames, videogan.data.size, videogan.data.num_clips) == (16, 32, 4000)
    assert m.width == quickstart.model.width  # the same networks' size as experiment=t2v


def test_mpii_2017_is_the_published_design_at_the_published_size_on_mpii(compose_train) -> None:
    published = {stage: compose_train("experiment=mpii_2017", f"stage={stage}") for stage in STAGES}
    seed = {stage: compose_train("experiment=seed_2017", f"stage={stage}") for stage in STAGES}
    for cfg in published.values():
        assert cfg.data._target_.endswith("MPIIDataModule") and (cfg.data.frames, cfg.data.size) == (32, 64)
        assert len(cfg.data.movies) == 9 and "1015_27_Dresses" in cfg.data.movies  # "9 romantic comedies"
    assert list(published["vae"].model.hidden_dims) == [1200] and published["vae"].model.latent_dim == 500
    assert published["siamese"].model.embed_dim == 512 and list(published["siamese"].model.image_widths) == [
        32,
        64,
        128,
        256,
    ]
    for stage in ("siamese", "stage1", "videogan"):  # the published losses and designs, seed_2017's, at full width
        ours, theirs = OmegaConf.to_container(published[stage].model), OmegaConf.to_container(seed[stage].model)
        for key in ("losses", "loss", "final_relu", "margin", "text", "discriminator", "generator"):
            assert ours.get(key) == theirs.get(key), (stage, key)
    assert published["stage1"].model.width == 1.0 and published["videogan"].model.width == 1.0
    on_a_gpu = compose_train("experiment=mpii_2017", "stage=stage1", "trainer=gpu")
    assert on_a_gpu.callbacks.gan_validation.judge.accelerator == "gpu"  # its validation judge trains there too


def test_the_quickstart_stage1_reads_the_word_mean_its_siamese_stage_gives(compose_train) -> None:
    stage1 = compose_train("experiment=quickstart", "stage=stage1")
    siamese = compose_train("experiment=quickstart", "stage=siamese")
    assert list(stage1.model.text.parts) == ["word_mean"]
    assert siamese.model.word_mean is True
    assert stage1.model.losses.interpolation == 1.0  # GAN-INT: G is also trained between the captions


@pytest.mark.parametrize("stage", STAGES)
def test_t2v_reuses_the_quickstart_settings_with_longer_training(compose_train, stage: str) -> None:
    t2v = compose_train("experiment=t2v", f"stage={stage}")
    quickstart = compose_train("experiment=quickstart", f"stage={stage}")
    if stage == "videogan":  # both move their input frame whole, which keeps the shape it was given
        assert t2v.model.generator.background == quickstart.model.generator.background == "translation"
    assert t2v.model == quickstart.model and t2v.data == quickstart.data
    if stage in ("stage1", "videogan"):
        assert t2v.trainer.max_steps == 2 * quickstart.trainer.max_steps
    elif stage == "siamese":
        assert t2v.trainer.max_epochs == 2 * quickstart.trainer.max_epochs
    else:
        assert t2v.trainer == quickstart.trainer
    assert list(t2v.tags) == ["t2v"]


@pytest.mark.parametrize("experiment", ["seed_2017", "t2v", "quickstart"])
def test_evaluation_composes_the_data_training_does(compose_train, experiment: str) -> None:
    trained = compose_train(f"experiment={experiment}", "debug=limit", "stage=videogan")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        evaluation = compose("evaluate", overrides=[f"experiment={experiment}", "debug=limit"])
    GlobalHydra.instance().clear()
    keep = ("num_clips", "frames", "size", "held_out", "seed", "val_fraction", "test_fraction", "vocabulary")
    assert {k: OmegaConf.to_container(evaluation.data)[k] for k in keep} == {
        k: OmegaConf.to_container(trained.data)[k] for k in keep
    }
    assert evaluation.probe.threshold == 0.98 and evaluation.stage.name == "evaluate"
