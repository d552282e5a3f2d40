"""The image-to-video GAN: geometry checks, the two-stream composition, conditioning, training and reload."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from t2v.errors import T2VError
from t2v.models.stage import StageModule
from t2v.models.videogan import VideoGAN, VideoGenerator, border_colour, warp_frames

# The frozen text encoder stays in eval mode on purpose; Lightning warns about that at fit start.
pytestmark = pytest.mark.filterwarnings(r"ignore:.*module\(s\) in eval mode.*")

WORD_DIM, MAX_WORDS = 8, 4
TEXT_ENCODER = {
    "vae": {"word_dim": WORD_DIM, "max_words": MAX_WORDS, "hidden_dims": [16], "latent_dim": 8},
    "embed_dim": 16,
    "hidden_dim": 16,
}
TINY = {"frames": 8, "size": 16, "width": 0.0625}
# G and D read the siamese embedding (the old text_conditioning=true).
EMBEDDING = {"text_encoder": TEXT_ENCODER, "text": {"parts": ["embedding"]}}
COLOURS = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])


class Clips(Dataset):
    """A coloured square sliding right over a dark background; the caption names its colour."""

    def __init__(self, n: int = 16, frames: int = 8, size: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.colour = torch.arange(n) % len(COLOURS)
        self.start = torch.randint(0, size // 2, (n, 2), generator=g)
        words = torch.randn(len(COLOURS), MAX_WORDS * WORD_DIM, generator=g)
        self.text = words[self.colour]
        self.frames, self.size = frames, size

    def __len__(self) -> int:
        return len(self.colour)

    def __getitem__(self, i: int) -> dict[str, Any]:
        video = torch.full((3, self.frames, self.size, self.size), -0.8)
        side = self.size // 4
        y, x = self.start[i].tolist()
        for t in range(self.frames):
            left = min(x + t // 2, self.size - side)
            video[:, t, y : y + side, left : left + side] = COLOURS[self.colour[i]][:, None, None]
        return {
            "video": video,
            "text": self.text[i],
            "caption": f"a square of colour {int(self.colour[i])}",
            "labels": {"colour": self.colour[i]},
        }


def batch_of(n: int = 4, **kwargs: int) -> dict[str, Any]:
    return next(iter(DataLoader(Clips(n, **kwargs), batch_size=n)))


def trainer(tmp_path: Path, steps: int, callbacks: list[pl.Callback] | None = None, **kwargs: Any) -> pl.Trainer:
    return pl.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, callbacks=callbacks or [], **kwargs,
    )  # fmt: skip


class Record(pl.Callback):
    """Every logged value after each batch, and whether the frozen text encoder stayed in eval mode."""

    def __init__(self) -> None:
        self.metrics: list[dict[str, float]] = []
        self.text_encoder_training: list[bool] = []

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        self.metrics.append({k: float(v) for k, v in trainer.callback_metrics.items()})
        if module.text_encoder is not None:
            self.text_encoder_training.append(any(m.training for m in module.text_encoder.modules()))


@pytest.mark.parametrize(("frames", "size", "width"), [(16, 32, 0.125), (32, 64, 0.0625)])
def test_output_shapes(frames: int, size: int, width: float) -> None:
    model = VideoGAN(frames=frames, size=size, width=width)
    out = model.generate(torch.rand(2, 3, size, size) * 2 - 1)
    assert out["video"].shape == (2, 3, frames, size, size)
    assert out["foreground"].shape == (2, 3, frames, size, size)
    assert out["background"].shape == (2, 3, size, size)
    assert out["mask"].shape == (2, 1, frames, size, size)
    assert out["video"].abs().max() <= 1 and 0 <= out["mask"].min() and out["mask"].max() <= 1
    assert model.discriminator(out["video"]).shape == (2,)


def test_published_widths() -> None:
    model = VideoGAN()  # width 1.0, 32 x 64 x 64: the encoder ends at 1024 x 4 x 4 (§1.3)
    code = torch.zeros(1, 3, 64, 64)
    for level in model.generator.encoder:
        code = level(code)
    assert code.shape == (1, 1024, 4, 4)
    assert round(sum(p.numel() for p in model.generator.parameters()) / 1e6, 1) == 68.2
    assert round(sum(p.numel() for p in model.discriminator.parameters()) / 1e6, 1) == 44.1


def test_bad_settings_fail_at_construction() -> None:
    with pytest.raises(T2VError, match=r"model.frames=20 .* 4 stride-2 levels at size 64.*multiple of 16"):
        VideoGAN(frames=20, size=64)
    with pytest.raises(T2VError, match="model.frames=8 "):
        VideoGAN(frames=8, size=64)  # fewer frames than the time axis can halve
    with pytest.raises(T2VError, match="model.size=48 must be a power of 2"):
        VideoGAN(frames=32, size=48)
    with pytest.raises(T2VError, match="model.size=8 "):
        VideoGAN(frames=32, size=8)
    with pytest.raises(T2VError, match=r"model.text.parts=\['embedding'\] needs the siamese .*stage=siamese"):
        VideoGAN(**TINY, text={"parts": ["embedding"]})
    with pytest.raises(T2VError, match="model.width"):
        VideoGAN(**{**TINY, "width": 0.0})
    with pytest.raises(T2VError, match="model.losses.clip_l1=-1 must be 0 or more"):
        VideoGAN(**TINY, losses={"clip_l1": -1})
    with pytest.raises(T2VError, match="model.generator.noise_dim=-1 must be 0 or more"):
        VideoGAN(**TINY, generator={"noise_dim": -1})
    VideoGAN(frames=16, size=64, width=0.0625)  # the smallest clip that fits 64 x 64


@pytest.mark.parametrize(
    ("group", "key", "takes"),
    [
        ("generator", "warp", "noise_dim, skips, background, flow_stride"),
        ("text", "text_code", "parts, balance, cond_dim"),
        ("losses", "recon_weight", "gan, recon_l1, clip_l1, mask_l1"),
        ("optim", "ema_decay", "lr_g, lr_d, betas, d_steps, clip_grad_norm"),
        ("ema", "ema_start", "decay, start"),
    ],
)
def test_an_unknown_option_names_its_group_and_what_it_takes(group: str, key: str, takes: str) -> None:
    with pytest.raises(T2VError, match=rf"^model.{group}.{key} is not an option; model.{group} takes {takes}$"):
        VideoGAN(**TINY, **{group: {key: 1}})


def test_video_is_mask_times_foreground_plus_background() -> None:
    torch.manual_seed(0)
    model = VideoGAN(frames=16, size=32, width=0.125)
    out = model.generator(torch.rand(3, 3, 32, 32) * 2 - 1)  # train mode: BN on batch statistics
    m, fg, bg = out["mask"], out["foreground"], out["background"]
    assert torch.equal(out["video"], m * fg + (1 - m) * bg[:, :, None])
    # The streams are really different, so the test above checks something.
    assert (fg - bg[:, :, None]).abs().max() > 1e-4 and 0.01 < m.mean() < 0.99


def test_noise_gives_different_videos() -> None:
    torch.manual_seed(0)
    model = VideoGAN(**TINY, generator={"noise_dim": 4})
    image = (torch.rand(1, 3, 16, 16) * 2 - 1).expand(2, -1, -1, -1)
    z = torch.randn(2, 4)
    out = model.generate(image, z=z)["video"]
    assert (out[0] - out[1]).abs().max() > 1e-4
    assert torch.equal(model.generate(image, z=z)["video"], out)  # same z, same clip
    deterministic = VideoGAN(**TINY).generate(image)["video"]  # the published G: no noise
    assert torch.equal(deterministic[0], deterministic[1])


def test_text_conditioning_changes_video_and_logit() -> None:
    torch.manual_seed(0)
    model = VideoGAN(**TINY, **EMBEDDING)
    batch = batch_of(2)
    image = batch["video"][:1, :, 0].expand(2, -1, -1, -1)
    out = model.generate(image, batch["text"])["video"]
    assert batch["labels"]["colour"].tolist() == [0, 1]
    assert (out[0] - out[1]).abs().max() > 1e-4
    with pytest.raises(T2VError, match="text features"):
        model.generate(image)
    model.eval()
    embedding = model.embed(batch["text"])
    clip = batch["video"][:1].expand(2, -1, -1, -1, -1)
    logits = model.discriminator(clip, embedding)
    assert (logits[0] - logits[1]).abs() > 1e-6


def test_training_updates_gan_but_not_text_encoder(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = VideoGAN(**TINY, **EMBEDDING, generator={"noise_dim": 2})
    before = copy.deepcopy(model.state_dict())
    record = Record()
    batches = 3
    fit = trainer(tmp_path, steps=2 * batches, callbacks=[record])
    fit.fit(model, DataLoader(Clips(24), batch_size=8, shuffle=True))
    after = model.state_dict()

    def changed(prefix: str) -> bool:
        return any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))

    assert changed("generator.encoder.") and changed("generator.condition.") and changed("generator.to_mask.")
    assert (
        changed("discriminator.features.") and changed("discriminator.condition.") and changed("discriminator.logit.")
    )
    text_keys = [k for k in before if k.startswith("text_encoder.")]
    assert text_keys and all(torch.equal(before[k], after[k]) for k in text_keys)
    assert record.text_encoder_training == [False] * batches
    assert int(model.gan_step) == batches and fit.global_step == 2 * batches
    logged = record.metrics[-1]
    for name in ("d_loss", "d_real", "d_fake", "d_wrong", "g_loss", "recon_l1", "mask_l1"):
        assert math.isfinite(logged[f"train/{name}"]), name
    assert 0 < logged["train/mask_l1"] < 1 and 0 < logged["train/d_wrong"] < 1


def test_first_frame_is_learnt_unconditionally(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = VideoGAN(**TINY, optim={"lr_g": 1e-3})
    record = Record()
    trainer(tmp_path, steps=2 * 30, callbacks=[record]).fit(model, DataLoader(Clips(16), batch_size=8, shuffle=True))
    recon = [m["train/recon_l1"] for m in record.metrics]
    assert len(recon) == 30
    assert sum(recon[-5:]) / 5 < 0.6 * sum(recon[:5]) / 5, recon
    assert all("train/d_wrong" not in m for m in record.metrics)
    assert {"train/d_loss", "train/d_real", "train/d_fake", "train/g_loss", "train/mask_l1"} <= set(record.metrics[-1])


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = VideoGAN(**TINY, **EMBEDDING, generator={"noise_dim": 2}, ema={"decay": 0.9})
    fit = trainer(tmp_path, steps=4)
    fit.fit(model, DataLoader(Clips(16), batch_size=8))
    path = tmp_path / "videogan.ckpt"
    fit.save_checkpoint(path)
    # The EMA copy carries the trained BN statistics, not its initial ones.
    ema_bn = model.generator_ema.module.background[0][1].running_mean
    assert torch.equal(ema_bn, model.generator.background[0][1].running_mean) and ema_bn.abs().sum() > 0

    # Every group is saved with its defaults filled in, so the checkpoint alone rebuilds the model.
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["t2v_format"] == VideoGAN.hparams_format == 1
    assert checkpoint["hyper_parameters"] == {
        "text_encoder": TEXT_ENCODER, "frames": 8, "size": 16, "width": 0.0625,
        "generator": {"noise_dim": 2, "skips": False, "background": "generated", "flow_stride": 1},
        "text": {"parts": ["embedding"], "balance": False, "cond_dim": 128},
        "losses": {"gan": "bce", "recon_l1": 10.0, "clip_l1": 0.0, "mask_l1": 0.0},
        "optim": {"lr_g": 2e-4, "lr_d": 2e-4, "betas": [0.5, 0.999], "d_steps": 1, "clip_grad_norm": None},
        "ema": {"decay": 0.9, "start": 0},
        "compile": False,
    }  # fmt: skip

    loaded = VideoGAN.load_from_checkpoint(path)
    assert loaded.noise_dim == 2 and loaded.text_input.parts == ["embedding"] and loaded.losses.recon_l1 == 10.0
    assert loaded.optim.betas == (0.5, 0.999) and loaded.ema.decay == 0.9 and loaded.generator_ema is not None
    batch = batch_of(4)
    z = torch.randn(4, 2)
    a = model.generate(batch["video"][:, :, 0], batch["text"], z)
    b = loaded.generate(batch["video"][:, :, 0], batch["text"], z)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert int(loaded.gan_step) == 2


def test_sampling_inputs_are_fixed_by_the_noise_seed_and_sample_shows_the_panels() -> None:
    torch.manual_seed(0)
    model = VideoGAN(**TINY, **EMBEDDING, generator={"noise_dim": 2})
    assert isinstance(model, StageModule)
    batch = batch_of(2)
    inputs = model.sampling_inputs(batch, torch.Generator().manual_seed(3))
    again = model.sampling_inputs(batch, torch.Generator().manual_seed(3))
    assert inputs.keys() == again.keys() == {"first", "text", "z"}
    assert all(torch.equal(inputs[k], again[k]) for k in inputs)
    assert torch.equal(inputs["first"], batch["video"][:, :, 0]) and inputs["z"].shape == (2, 2)
    out = model.sample(inputs)
    assert out.keys() == {"input", "video", "foreground", "background", "mask"}
    assert torch.equal(out["input"], inputs["first"]) and out["video"].shape == (2, 3, 8, 16, 16)
    twice = model.sample(again)
    assert all(torch.equal(out[k], twice[k]) for k in out)  # the same clips every time they are drawn

    # Unconditioned, without noise: no z, and the text is ignored.
    plain = VideoGAN(**TINY, generator={"background": "flow"})
    inputs = plain.sampling_inputs(batch, torch.Generator().manual_seed(3))
    assert inputs.keys() == {"first", "text"}
    out = plain.sample(inputs)
    assert out.keys() == {"input", "video", "foreground", "background", "mask", "flow"}
    assert torch.equal(out["video"], plain.generate(inputs["first"])["video"])


def test_bf16_mixed_step_is_finite(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = VideoGAN(**TINY, **EMBEDDING)
    record = Record()
    trainer(tmp_path, steps=2, callbacks=[record], precision="bf16-mixed").fit(
        model, DataLoader(Clips(8), batch_size=8)
    )
    logged = record.metrics[-1]
    assert all(math.isfinite(logged[f"train/{k}"]) for k in ("d_loss", "g_loss", "recon_l1", "d_wrong"))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_upstream_hooks_and_artifact(tmp_path: Path) -> None:
    assert VideoGAN.upstream_kwargs({}) == {}
    manifests = {"siamese": {"text_encoder": TEXT_ENCODER, "checkpoint": str(tmp_path / "siamese.ckpt")}}
    assert VideoGAN.upstream_kwargs(manifests) == {"text_encoder": TEXT_ENCODER}

    source = VideoGAN(**TINY, **EMBEDDING)
    torch.nn.init.normal_(source.text_encoder.head[0].weight)  # weights the target cannot have by chance
    state = {f"text_encoder.{k}": v for k, v in source.text_encoder.state_dict().items()}
    torch.save({"state_dict": {**state, "image_encoder.x": torch.zeros(1)}}, tmp_path / "siamese.ckpt")
    target = VideoGAN(**TINY, **VideoGAN.upstream_kwargs(manifests), text={"parts": ["embedding"]})
    target.load_upstream(manifests)
    with pytest.raises(T2VError, match="stage.upstream.siamese"):
        target.load_upstream({})
    assert torch.equal(target.text_encoder.head[0].weight, source.text_encoder.head[0].weight)

    dims = target.export_artifact(tmp_path, None)["dims"]
    assert dims == {"frames": 8, "size": 16, "text_conditioning": True, "embedding": 16}
    # Without text parts the upstream text encoder is neither built nor saved, and the manifest says so.
    unconditioned = VideoGAN(**TINY, **VideoGAN.upstream_kwargs(manifests))
    assert unconditioned.text_encoder is None and unconditioned.hparams.text_encoder is None
    unconditioned.load_upstream({})  # nothing to load
    dims = unconditioned.export_artifact(tmp_path, None)["dims"]
    assert dims["text_conditioning"] is False and dims["embedding"] is None


def test_mismatched_inputs_are_reported() -> None:
    model = VideoGAN(**TINY)
    with pytest.raises(T2VError, match=r"model.frames/model.size"):
        model.discriminator_terms(batch_of(2, frames=16))
    with pytest.raises(T2VError, match="data.with_video=true"):
        model.generator_terms({"text": torch.zeros(2, 4)})
    with pytest.raises(T2VError, match="resize the frames to 16x16"):
        model.generate(torch.zeros(2, 3, 32, 32))


def test_the_vae_code_part_joins_the_vae_code_to_the_embedding() -> None:
    torch.manual_seed(0)
    model = VideoGAN(**TINY, text_encoder=TEXT_ENCODER, text={"parts": ["embedding", "vae_code"]})
    batch = batch_of(2)
    embedding = model.embed(batch["text"])
    latent = TEXT_ENCODER["vae"]["latent_dim"]
    assert embedding.shape == (2, TEXT_ENCODER["embed_dim"] + latent)
    mu, _ = model.text_encoder.vae.encode(batch["text"])
    assert torch.equal(embedding[:, -latent:], mu)
    image = batch["video"][:1, :, 0].expand(2, -1, -1, -1)
    assert model.generate(image, batch["text"])["video"].shape == (2, 3, TINY["frames"], TINY["size"], TINY["size"])

    balanced = VideoGAN(**TINY, text_encoder=TEXT_ENCODER, text={"parts": ["embedding", "vae_code"], "balance": True})
    balanced.load_state_dict(model.state_dict())
    code = balanced.embed(batch["text"])[:, -latent:]
    torch.testing.assert_close(code, mu * torch.rsqrt(mu.pow(2).mean(1, keepdim=True)))


def test_clip_l1_is_the_whole_clip_against_the_real_one() -> None:
    torch.manual_seed(0)
    batch = batch_of(4)
    off, on = VideoGAN(**TINY), VideoGAN(**TINY, losses={"clip_l1": 3.0})
    on.load_state_dict(off.state_dict())
    assert "clip_l1" not in off.generator_terms(batch)
    torch.manual_seed(1)
    terms_off = off.generator_terms(batch)
    torch.manual_seed(1)
    terms = on.generator_terms(batch)
    fake = on.generator(batch["video"][:, :, 0])["video"]
    assert terms["clip_l1"].item() == pytest.approx((fake - batch["video"]).abs().mean().item(), rel=1e-5)
    assert terms["g_loss"].item() == pytest.approx(terms_off["g_loss"].item() + 3.0 * terms["clip_l1"].item(), rel=1e-5)


def test_skips_feed_the_encoder_features_to_both_decoders() -> None:
    torch.manual_seed(0)
    plain = VideoGAN(**TINY, generator={"noise_dim": 2})
    skipped = VideoGAN(**TINY, generator={"noise_dim": 2, "skips": True})
    count = lambda m: sum(p.numel() for p in m.generator.parameters())  # noqa: E731
    assert count(skipped) > count(plain)
    image, z = torch.rand(2, 3, 16, 16) * 2 - 1, torch.randn(2, 2)
    out = skipped.generator(image, None, z)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        k: tuple(v.shape) for k, v in plain.generator(image, None, z).items()
    }
    # The first encoder level reaches the pixels directly: its gradient flows from the last decoder layer.
    out["video"].sum().backward()
    assert skipped.generator.encoder[0][0].weight.grad.abs().sum() > 0
    first_layer_in = skipped.generator.to_mask[0].in_channels
    assert (
        first_layer_in
        == skipped.generator.foreground[-1][0].out_channels + skipped.generator.encoder[0][0].out_channels
    )


def test_warp_frames_moves_the_pixels_by_the_flow() -> None:
    image = torch.rand(2, 3, 8, 8)
    still = torch.zeros(2, 2, 4, 8, 8)
    assert torch.allclose(warp_frames(image, still), image[:, :, None].expand(-1, -1, 4, -1, -1), atol=1e-6)
    one_pixel = still.clone()
    one_pixel[:, 0] = 2 / 7  # x, in [-1, 1] units over 8 pixels: frame t at column j is the image at column j + 1
    assert torch.allclose(warp_frames(image, one_pixel)[:, :, :, :, :-1], image[:, :, None, :, 1:], atol=1e-5)


@pytest.mark.parametrize("flow_stride", [1, 2, 4])
def test_a_flow_background_moves_the_input_frame_instead_of_drawing_one(tmp_path: Path, flow_stride: int) -> None:
    pl.seed_everything(0)
    generator = {"background": "flow", "skips": True, "flow_stride": flow_stride}
    model = VideoGAN(**TINY, generator=generator, losses={"clip_l1": 10.0})
    assert not hasattr(model.generator, "background")  # no 2D stream to train
    image = batch_of(2)["video"][:, :, 0]
    out = model.generator(image)
    assert out["flow"].shape == (2, 2, TINY["frames"], TINY["size"], TINY["size"]) and out["flow"].abs().max() == 0
    m, fg = out["mask"], out["foreground"]
    assert torch.equal(out["background"], image)
    assert torch.allclose(out["video"], m * fg + (1 - m) * image[:, :, None], atol=1e-6)  # zero flow: still
    record = Record()
    trainer(tmp_path, steps=2 * 5, callbacks=[record], precision="bf16-mixed").fit(
        model, DataLoader(Clips(16), batch_size=8)
    )
    assert all(math.isfinite(record.metrics[-1][f"train/{k}"]) for k in ("d_loss", "g_loss", "clip_l1"))
    assert model.generator(image)["flow"].abs().max() > 0  # the flow learns from the sliding squares


def test_a_coarse_flow_is_upsampled_and_bad_strides_are_refused() -> None:
    torch.manual_seed(0)
    # 16 px frames: the flow is made at 4 x 4
    model = VideoGAN(**TINY, generator={"background": "flow", "flow_stride": 4})
    nn.init.normal_(model.generator.to_flow.weight)
    flow = model.generator(torch.rand(2, 3, 16, 16) * 2 - 1)["flow"]
    assert flow.shape == (2, 2, TINY["frames"], 16, 16) and flow.abs().max() > 0
    # Trilinear upsampling of a 4 x 4 field: neighbouring pixels barely differ.
    assert (flow[..., 1:] - flow[..., :-1]).abs().max() < 0.5 * flow.abs().max()
    with pytest.raises(T2VError, match=r"model.generator.flow_stride=3 must be one of \[1, 2, 4\] at size 16"):
        VideoGAN(**TINY, generator={"background": "translation", "flow_stride": 3})


def test_a_translation_moves_the_whole_frame_alike() -> None:
    torch.manual_seed(0)
    model = VideoGAN(**TINY, generator={"background": "translation", "flow_stride": 2})
    nn.init.normal_(model.generator.to_flow.weight)
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    flow = model.generator(image)["flow"]
    assert flow.shape == (2, 2, TINY["frames"], 16, 16) and flow.abs().max() > 0
    # One displacement per clip and frame: every pixel of a frame moves alike, but the frames differ.
    assert torch.equal(flow, flow[..., :1, :1].expand_as(flow))
    assert (flow[:, :, 1:] - flow[:, :, :-1]).abs().max() > 0
    # The frame's border colour comes in from outside, not the border pixels' replicas.
    out = model.generator(image)
    filled = warp_frames(image, out["flow"], border_colour(image))
    assert not torch.allclose(filled, warp_frames(image, out["flow"]), atol=1e-3)  # the flow reaches outside
    torch.testing.assert_close(out["video"], out["mask"] * out["foreground"] + (1 - out["mask"]) * filled)


def test_an_unknown_background_is_refused() -> None:
    unknown = r"^model.generator.background='x' is unknown; use one of generated, flow, translation$"
    with pytest.raises(T2VError, match=unknown):
        VideoGAN(**TINY, generator={"background": "x"})
    with pytest.raises(T2VError, match=unknown):
        VideoGenerator(8, 16, 0.0625, noise_dim=0, embed_dim=0, cond_dim=0, background="x")


def test_a_warp_with_a_fill_colour_brings_that_colour_in_from_outside() -> None:
    image = torch.full((1, 3, 8, 8), -0.8)
    image[:, :, 2:5, 0:3] = 1.0  # an object touching the left edge
    assert torch.allclose(border_colour(image), torch.full((1, 3), -0.8))
    flow = torch.zeros(1, 2, 2, 8, 8)
    flow[:, 0, 1] = -4 / 7  # frame 1: everything moves 2 pixels right
    fill = border_colour(image)
    moved = warp_frames(image, flow, fill)[:, :, 1]
    assert torch.allclose(moved[..., 2:5, 2:5], torch.ones(1, 3, 3, 3), atol=1e-5)  # the object, whole
    assert torch.allclose(moved[..., :, :2], torch.full((1, 3, 8, 2), -0.8), atol=1e-5)  # background came in
    streaked = warp_frames(image, flow)[:, :, 1]  # the nearest border pixel instead: the object smears
    assert torch.allclose(streaked[..., 2:5, :2], torch.ones(1, 3, 3, 2), atol=1e-5)
