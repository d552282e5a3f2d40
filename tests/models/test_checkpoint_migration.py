"""Checkpoints written before the GAN options became named parts load, generate the same images and clips, and
resume training (the fixture: tests/fixtures/checkpoints_v0, made by t2v at commit 875d81b)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from t2v.models.stage import FORMAT_KEY
from t2v.models.stage1 import Stage1GAN
from t2v.models.videogan import VideoGAN

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints_v0"
EXPECTED = torch.load(FIXTURES / "expected.pt", weights_only=True)
STAGE1 = sorted(name for name in EXPECTED if name.startswith("stage1_"))
VIDEOGAN = sorted(name for name in EXPECTED if name.startswith("videogan_"))

# The frozen text encoder stays in eval mode on purpose; Lightning warns about that at fit start.
pytestmark = pytest.mark.filterwarnings(r"ignore:.*module\(s\) in eval mode.*")


def test_the_fixture_covers_every_older_option() -> None:
    flat = {}
    for name in STAGE1 + VIDEOGAN:
        flat |= torch.load(FIXTURES / f"{name}.ckpt", weights_only=True)["hyper_parameters"]
    older = {"text_code", "text_parts", "match_weight", "warp", "rigid_flow", "flow_stride", "input_blur",
             "text_conditioning", "d_head", "read_weight", "ema_decay", "gan_loss", "recon_weight"}  # fmt: skip
    assert older <= set(flat)


def assert_same_pixels(actual: torch.Tensor, expected: torch.Tensor, what: str = "images") -> None:
    """The same pixels up to float rounding: another CPU's kernels (AVX-512 or not, Intel or AMD) round sums in
    another order (about 1e-6 apart here), while a wrong weight mapping moves pixels by far more than 1e-4."""
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4, msg=lambda message: f"{what}: {message}")


@pytest.mark.parametrize("name", STAGE1)
def test_an_older_stage1_checkpoint_draws_the_same_images(name: str) -> None:
    model = Stage1GAN.load_from_checkpoint(FIXTURES / f"{name}.ckpt").eval()
    expected = EXPECTED[name]
    assert_same_pixels(model.generate(EXPECTED["text"], expected["z"]), expected["images"])


@pytest.mark.parametrize("name", VIDEOGAN)
def test_an_older_videogan_checkpoint_makes_the_same_clips(name: str) -> None:
    model = VideoGAN.load_from_checkpoint(FIXTURES / f"{name}.ckpt").eval()
    expected = EXPECTED[name]
    clips = model.generate(EXPECTED["first"], EXPECTED["text"], expected["z"])
    assert sorted(clips) == sorted(key for key in expected if key != "z")
    for key, value in clips.items():
        assert_same_pixels(value, expected[key], key)


def test_older_options_map_to_their_named_parts() -> None:
    rigid = VideoGAN.load_from_checkpoint(FIXTURES / "videogan_rigid_ema.ckpt").hparams
    assert rigid["generator"] == {"noise_dim": 4, "skips": True, "background": "translation", "flow_stride": 2}
    assert rigid["text"]["parts"] == ["embedding"] and rigid["ema"] == {"decay": 0.5, "start": 0}
    coded = VideoGAN.load_from_checkpoint(FIXTURES / "videogan_flow_code.ckpt").hparams
    assert coded["generator"]["background"] == "flow" and coded["losses"]["clip_l1"] == 100.0
    assert coded["text"] == {"parts": ["embedding", "vae_code", "word_mean"], "balance": True, "cond_dim": 8}
    published = VideoGAN.load_from_checkpoint(FIXTURES / "videogan_published.ckpt")
    assert published.hparams["text"]["parts"] == [] and published.text_encoder is None
    assert published.hparams["losses"] == {"gan": "bce", "recon_l1": 10.0, "clip_l1": 0.0, "mask_l1": 0.0}

    stage1 = Stage1GAN.load_from_checkpoint(FIXTURES / "stage1_code_projection.ckpt").hparams
    assert stage1["text"] == {"parts": ["embedding", "vae_code", "word_mean"], "balance": True}
    assert stage1["discriminator"] == {"head": "projection", "spectral_norm": False}
    assert stage1["losses"] == {"gan": "bce", "kl": 1.0, "read": 3.0, "mode_seeking": 0.0, "interpolation": 0.0}
    hinge = Stage1GAN.load_from_checkpoint(FIXTURES / "stage1_spectral_hinge.ckpt").hparams
    assert hinge["optim"]["d_steps"] == 2 and hinge["optim"]["clip_grad_norm"] == 1.0
    assert hinge["losses"]["gan"] == "hinge" and hinge["discriminator"]["spectral_norm"] is True


def test_the_matching_terms_image_encoder_is_dropped_and_nothing_else() -> None:
    old = torch.load(FIXTURES / "stage1_word_mean_match_ema.ckpt", weights_only=True)
    model = Stage1GAN.load_from_checkpoint(FIXTURES / "stage1_word_mean_match_ema.ckpt")
    kept = {key for key in old["state_dict"] if not key.startswith("image_encoder.")}
    assert kept == set(model.state_dict()) and len(kept) < len(old["state_dict"])
    assert "match_weight" not in model.hparams and model.hparams["text"]["parts"] == ["word_mean"]


@pytest.mark.parametrize(("cls", "name"), [(Stage1GAN, "stage1_word_mean_match_ema"), (VideoGAN, "videogan_flow_code")])
def test_an_upgraded_checkpoint_saves_in_todays_layout(tmp_path: Path, cls: type, name: str) -> None:
    model = cls.load_from_checkpoint(FIXTURES / f"{name}.ckpt")
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "today.ckpt")
    saved = torch.load(tmp_path / "today.ckpt", weights_only=True)
    assert saved[FORMAT_KEY] == cls.hparams_format == 1
    assert "optim" in saved["hyper_parameters"] and "lr_g" not in saved["hyper_parameters"]
    again = cls.load_from_checkpoint(tmp_path / "today.ckpt")
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


class Clips(Dataset):
    """Tiny coloured clips of the fixture's geometry (8 frames of 16 x 16, captions of 4 words of 8 dims)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict[str, Any]:
        video = torch.full((3, 8, 16, 16), -0.8)
        video[i % 3, :, 4:8, 4:8] = 1.0
        text = torch.zeros(32)
        text[i % 4] = 1.0
        return {"video": video, "text": text, "caption": f"clip {i % 4}", "labels": {"colour": torch.tensor(i % 4)}}


@pytest.mark.parametrize(("cls", "name"), [(Stage1GAN, "stage1_word_mean_match_ema"), (VideoGAN, "videogan_rigid_ema")])
def test_training_resumes_from_an_older_full_checkpoint(tmp_path: Path, cls: type, name: str) -> None:
    path = FIXTURES / f"{name}.ckpt"
    model = cls.load_from_checkpoint(path)  # today's model for the older run's settings
    steps_per_batch = model.optimizer_steps_per_batch
    trainer = pl.Trainer(max_steps=4 * steps_per_batch, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, DataLoader(Clips(), batch_size=4), ckpt_path=path)
    assert int(model.gan_step) == 4  # three GAN steps in the fixture, one more here
    assert trainer.global_step == 4 * steps_per_batch


def test_a_published_artifact_keeps_the_layout_of_its_checkpoint(tmp_path: Path) -> None:
    from t2v.pipeline.artifacts import slim_checkpoint

    model = VideoGAN.load_from_checkpoint(FIXTURES / "videogan_rigid_ema.ckpt")
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "best.ckpt")
    slim_checkpoint(tmp_path / "best.ckpt", tmp_path / "model.ckpt")
    published = VideoGAN.load_from_checkpoint(tmp_path / "model.ckpt")
    assert published.hparams == model.hparams  # read as today's layout, not mapped again as an older one


def test_a_checkpoint_loads_from_a_file_object_too() -> None:
    import io

    older = io.BytesIO((FIXTURES / "videogan_published.ckpt").read_bytes())
    assert VideoGAN.load_from_checkpoint(older).hparams["generator"]["background"] == "generated"
    today = io.BytesIO()
    torch.save(VideoGAN.upgraded(torch.load(FIXTURES / "videogan_published.ckpt", weights_only=True)), today)
    today.seek(0)
    assert VideoGAN.load_from_checkpoint(today).hparams["text"]["parts"] == []  # today's layout, read as it is
