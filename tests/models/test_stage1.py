"""StackGAN stage-I: shapes, the option groups, the matching-aware loss, the CA KL, training, EMA, bf16, sampling
and checkpoint reload."""

from __future__ import annotations

import copy
import inspect
import math
import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from t2v.errors import T2VError
from t2v.models.captions import without_other_matches
from t2v.models.gan import Ema, Optim
from t2v.models.siamese import TextInput
from t2v.models.stage import StageModule
from t2v.models.stage1 import Discriminator, Generator, Losses, Stage1GAN, kl_divergence

WORD_DIM, MAX_WORDS, EMBED_DIM = 8, 4, 16
TEXT_ENCODER = {
    "vae": {"word_dim": WORD_DIM, "max_words": MAX_WORDS, "hidden_dims": [16], "latent_dim": 8},
    "embed_dim": EMBED_DIM,
    "hidden_dim": 16,
}
FRAMES, BATCH = 3, 4


def tiny_model(**kwargs: Any) -> Stage1GAN:
    defaults = dict(text_encoder=TEXT_ENCODER, size=16, width=0.0625, generator={"z_dim": 8, "c_dim": 8})
    return Stage1GAN(**{**defaults, **kwargs})


def assert_reloads_the_same(model: Stage1GAN, text: Tensor, tmp_path: Path) -> None:
    """An untrained model saved and loaded with ``load_from_checkpoint`` alone draws the same images."""
    path = tmp_path / "m.ckpt"
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    loaded = Stage1GAN.load_from_checkpoint(path)
    z = torch.randn(len(text), model.z_dim)
    assert torch.equal(loaded.generate(text, z), model.generate(text, z))


def batch_of(n: int, size: int = 16, seed: int = 0, shape: Tensor | None = None) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    shape = torch.randint(0, 2, (n,), generator=g) if shape is None else shape
    return {
        "video": torch.rand(n, 3, FRAMES, size, size, generator=g) * 2 - 1,
        "text": torch.randn(n, MAX_WORDS * WORD_DIM, generator=g),
        "text_len": torch.full((n,), MAX_WORDS),
        "labels": {"shape": shape, "colour": torch.zeros(n, dtype=torch.long)},
        "caption": [f"caption {i}" for i in range(n)],
    }


class Clips(Dataset):
    """A few random clips with captions, in the datamodule's item layout."""

    def __init__(self, n: int, size: int = 16) -> None:
        self.items = batch_of(n, size)

    def __len__(self) -> int:
        return len(self.items["caption"])

    def __getitem__(self, i: int) -> dict[str, Any]:
        it = self.items
        return {
            "video": it["video"][i],
            "text": it["text"][i],
            "text_len": it["text_len"][i],
            "labels": {k: v[i] for k, v in it["labels"].items()},
            "caption": it["caption"][i],
        }


def fit(model: Stage1GAN, batches: int, **trainer_kwargs: Any) -> pl.Trainer:
    settings = dict(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer = pl.Trainer(**{**settings, **trainer_kwargs})
    loader = DataLoader(Clips(batches * BATCH, model.hparams.size), batch_size=BATCH, shuffle=True)
    trainer.fit(model, loader)
    return trainer


def snapshot(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, Tensor], module: nn.Module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


@pytest.mark.parametrize(("size", "width"), [(32, 0.125), (64, 0.0625)])
def test_output_shapes(size: int, width: float) -> None:
    model = tiny_model(size=size, width=width).eval()
    images = model.generate(torch.randn(5, MAX_WORDS * WORD_DIM))
    assert images.shape == (5, 3, size, size)
    assert images.abs().max() <= 1.0
    assert model.embed_text(torch.randn(5, MAX_WORDS * WORD_DIM)).shape == (5, EMBED_DIM)
    logits = model.discriminator(images, torch.randn(5, EMBED_DIM))
    assert logits.shape == (5,)
    # Published layout at 64: 4 up-blocks in G, 4 stride-2 convs in D.
    ups = len(model.generator.net.ups)
    downs = sum(isinstance(m, nn.Conv2d) for m in model.discriminator.body)
    assert (ups, downs) == ((3, 3) if size == 32 else (4, 4))


def test_published_widths() -> None:
    model = tiny_model(size=64, width=1.0, generator={"z_dim": 100, "c_dim": 128})
    assert model.generator.net.ngf == 1024
    assert model.discriminator.body[0].out_channels == 64
    assert model.generator.net.ups[-1][1].out_channels == 64


@pytest.mark.parametrize("size", [48, 8, 100])
def test_bad_size_is_a_user_error(size: int) -> None:
    with pytest.raises(T2VError, match="data.size"):
        tiny_model(size=size)


def test_frame_is_configurable_and_checked() -> None:
    batch = batch_of(2)
    assert torch.equal(tiny_model(frame=-1).real_samples(batch), batch["video"][:, :, FRAMES - 1])
    assert torch.equal(tiny_model(frame=1).real_samples(batch), batch["video"][:, :, 1])
    with pytest.raises(T2VError, match="model.frame"):
        tiny_model(frame=FRAMES).real_samples(batch)


def test_groups_fill_in_their_defaults_and_are_saved_resolved() -> None:
    model = tiny_model(optim={"lr_g": 1e-3}, losses={"gan": "hinge"}, ema={"decay": 0.5})
    assert (model.optim, model.ema) == (Optim(lr_g=1e-3), Ema(decay=0.5))
    assert model.losses == Losses(gan="hinge") and model.gan.kind == "hinge"
    assert model.text_input == TextInput() and model.z_dim == 8
    # Every key of every group is saved, so the checkpoint means the same whatever the defaults become.
    hp = model.hparams
    assert hp.generator == {"z_dim": 8, "c_dim": 8}
    assert hp.discriminator == {"head": "concat", "spectral_norm": False}
    assert hp.text == {"parts": ["embedding"], "balance": False}
    assert hp.losses == {"gan": "hinge", "kl": 1.0, "read": 0.0, "mode_seeking": 0.0, "interpolation": 0.0}
    assert hp.optim == {"lr_g": 1e-3, "lr_d": 2e-4, "betas": [0.5, 0.999], "d_steps": 1, "clip_grad_norm": None}
    assert hp.ema == {"decay": 0.5, "start": 0}
    opt_g, opt_d = model.configure_optimizers()
    assert (opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]) == (1e-3, 2e-4)
    assert opt_g.param_groups[0]["betas"] == (0.5, 0.999)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"generator": {"zdim": 8}}, "model.generator.zdim is not an option; model.generator takes z_dim, c_dim"),
        ({"discriminator": {"d_head": "concat"}},
         "model.discriminator.d_head is not an option; model.discriminator takes head, spectral_norm"),
        ({"text": {"text_code": True}}, "model.text.text_code is not an option; model.text takes parts, balance"),
        ({"losses": {"kl_weight": 2.0}}, "model.losses.kl_weight is not an option; model.losses takes gan, kl, read"),
        ({"optim": {"lr": 1e-3}},
         "model.optim.lr is not an option; model.optim takes lr_g, lr_d, betas, d_steps, clip_grad_norm"),
        ({"ema": {"ema_decay": 0.9}}, "model.ema.ema_decay is not an option; model.ema takes decay, start"),
        ({"generator": {"z_dim": 0}}, "model.generator.z_dim=0 must be 1 or more"),
        ({"losses": {"kl": -1}}, "model.losses.kl=-1 must be 0 or more"),
        ({"losses": {"gan": "wgan"}}, "model.losses.gan='wgan' is unknown; use one of bce, hinge"),
        ({"optim": {"d_steps": 0}}, "model.optim.d_steps=0 must be 1 or more"),
        ({"ema": {"decay": 1.0}}, "model.ema.decay=1.0 must be in [0, 1)"),
    ],
)  # fmt: skip
def test_bad_group_values_are_clear_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(T2VError, match=re.escape(message)):
        tiny_model(**options)


class OracleD(nn.Module):
    """A stand-in D that knows the truth: real images carry their caption's code in pixel (0, 0, 0),
    and the test's text embedding carries the code in dim 0.

    logit 2 for a real image with its own caption, -1 for a real image with another caption, 0.5 for a fake.
    """

    def features(self, image: Tensor) -> Tensor:
        return image[:, 0, 0, 0]

    def logits(self, features: Tensor, embedding: Tensor) -> Tensor:
        is_real = torch.isin(features, CODES)
        matches = (features - embedding[:, 0]).abs() < 1e-6
        return torch.where(is_real & matches, 2.0, torch.where(is_real, -1.0, 0.5))

    def forward(self, image: Tensor, embedding: Tensor) -> Tensor:
        return self.logits(self.features(image), embedding)


CODES = torch.tensor([0.25, 0.75])


def oracle_setup(n: int = 8, **options: Any) -> tuple[Stage1GAN, dict[str, Any]]:
    """Two kinds of caption in a batch of n: a plain shift or random pairing would often pick the same kind."""
    model = tiny_model(**options)
    shape = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])[:n]
    batch = batch_of(n, shape=shape)
    code = CODES[shape]
    batch["video"][:, 0, :, 0, 0] = code[:, None]
    batch["text"][:, 0] = code
    model.discriminator = OracleD()
    model.embed_text = lambda features: features[:, :EMBED_DIM]  # type: ignore[method-assign]
    return model, batch


def test_matching_aware_d_loss_uses_wrong_captions() -> None:
    model, batch = oracle_setup()
    for seed in range(10):
        torch.manual_seed(seed)
        terms = model.discriminator_terms(batch)
        assert terms["d_real"] == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
        # Every wrong caption is of the other kind: a same-kind pair would score 2, not -1.
        assert terms["d_wrong"] == pytest.approx(torch.sigmoid(torch.tensor(-1.0)).item())
        assert terms["d_fake"] == pytest.approx(torch.sigmoid(torch.tensor(0.5)).item())
        expected = F.softplus(torch.tensor(-2.0)) + 0.5 * (
            F.softplus(torch.tensor(-1.0)) + F.softplus(torch.tensor(0.5))
        )
        assert terms["d_loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_contrast_captions_take_half_of_the_wrong_caption_term() -> None:
    model, batch = oracle_setup()
    # Each image's contrast caption is its own (D says it matches: logit 2), to tell it from the random wrong one.
    batch["contrast_text"] = batch["text"].clone()
    torch.manual_seed(0)
    terms = model.discriminator_terms(batch)
    assert terms["d_contrast"] == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    assert terms["d_wrong"] == pytest.approx(torch.sigmoid(torch.tensor(-1.0)).item())
    wrong = 0.5 * (F.softplus(torch.tensor(-1.0)) + F.softplus(torch.tensor(2.0)))
    expected = F.softplus(torch.tensor(-2.0)) + 0.5 * (wrong + F.softplus(torch.tensor(0.5)))
    assert terms["d_loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_wrong_indices_pick_different_labels() -> None:
    model, batch = oracle_setup()
    keys = torch.stack([batch["labels"][k] for k in sorted(batch["labels"])], dim=1)
    for seed in range(10):
        torch.manual_seed(seed)
        wrong = model.wrong_indices(batch)
        assert (keys[wrong] != keys).any(1).all()


def test_generator_loss_adds_weighted_kl() -> None:
    for kl_weight in (1.0, 2.0):
        model, batch = oracle_setup(losses={"kl": kl_weight})
        terms = model.generator_terms(batch)
        assert terms["kl"] > 0
        assert (terms["g_loss"] - kl_weight * terms["kl"]).item() == pytest.approx(
            F.softplus(torch.tensor(-0.5)).item()
        )
        assert terms["g_adv"].item() == pytest.approx(F.softplus(torch.tensor(-0.5)).item())
        assert terms["g_loss"].requires_grad


def test_kl_matches_hand_computation() -> None:
    mu = torch.tensor([[1.0, 0.0], [0.0, -2.0]])
    log_sigma = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # 0.5 (mu^2 + sigma^2 - 1) - log sigma per dim: 0.5, 1.5 - log 2, 0, 2; then the mean of the four.
    assert kl_divergence(mu, log_sigma).item() == pytest.approx((0.5 + 1.5 - math.log(2.0) + 0 + 2.0) / 4)
    assert kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0


@pytest.mark.parametrize(("d_steps", "batches"), [(1, 3), (2, 2)])
def test_training_updates_g_and_d_but_not_the_text_encoder(d_steps: int, batches: int) -> None:
    model = tiny_model(optim={"d_steps": d_steps})
    text, gen, disc = snapshot(model.text_encoder), snapshot(model.generator), snapshot(model.discriminator)
    trainer = fit(model, batches)
    assert int(model.gan_step) == batches
    assert trainer.global_step == (d_steps + 1) * batches
    assert not changed(text, model.text_encoder)
    assert not model.text_encoder.training and model.training
    assert all(not p.requires_grad for p in model.text_encoder.parameters())
    # Every G weight (the CA network included) and every D weight moved.
    gen_weights = {k for k, _ in model.generator.named_parameters()}
    disc_weights = {k for k, _ in model.discriminator.named_parameters()}
    assert gen_weights <= changed(gen, model.generator) and "ca.fc.weight" in gen_weights
    assert disc_weights <= changed(disc, model.discriminator)
    metrics = trainer.callback_metrics
    for name in ("d_loss", "d_real", "d_fake", "d_wrong", "g_loss", "kl"):
        assert torch.isfinite(metrics[f"train/{name}"])


def test_max_steps_counts_optimizer_steps() -> None:
    model = tiny_model(optim={"d_steps": 2})
    trainer = fit(model, 4, max_steps=6, max_epochs=-1)
    assert (int(model.gan_step), trainer.global_step) == (2, 6)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = tiny_model(ema={"decay": 0.5}, frame=-1, losses={"kl": 2.0})
    trainer = fit(model, 2)
    path = tmp_path / "stage1.ckpt"
    trainer.save_checkpoint(path)
    loaded = Stage1GAN.load_from_checkpoint(path)
    features, z = torch.randn(6, MAX_WORDS * WORD_DIM), torch.randn(6, 8)
    expected = model.generate(features, z)
    assert torch.equal(loaded.generate(features, z), expected)
    assert torch.equal(loaded.eval().generate(features, z), expected)
    assert int(loaded.gan_step) == 2
    # `frame` is a name Lightning's save_hyperparameters() skips on its own; it must survive anyway.
    assert (loaded.hparams.frame, loaded.hparams.losses["kl"], loaded.hparams.generator["z_dim"]) == (-1, 2.0, 8)
    for group in ("losses", "ema", "optim", "text_input"):
        assert getattr(loaded, group) == getattr(model, group), group
    assert loaded.export_artifact(tmp_path, None) == {"dims": {"image_size": 16, "embedding": EMBED_DIM}}


def test_generate_uses_ca_mean_and_leaves_bn_stats_alone() -> None:
    model = tiny_model().train()
    features, z = torch.randn(4, MAX_WORDS * WORD_DIM), torch.randn(4, 8)
    stats = snapshot(model.generator)
    first = model.generate(features, z)
    assert torch.equal(model.generate(features, z), first)  # no noise in c, no batch statistics
    # Running statistics, so a row does not depend on the rest of the batch (up to kernel rounding).
    torch.testing.assert_close(model.generate(features[:1], z[:1]), first[:1], rtol=1e-4, atol=1e-8)
    assert not changed(stats, model.generator) and model.generator.training
    assert not torch.equal(model.generate(features, z, sample_condition=True), first)


def test_ema_keeps_a_separate_generator() -> None:
    model = tiny_model(ema={"decay": 0.9})
    assert model.sampling_generator is not model.generator
    start = snapshot(model.sampling_generator)
    fit(model, 3)
    ema, live = dict(model.sampling_generator.named_parameters()), dict(model.generator.named_parameters())
    assert set(ema) == set(live)
    assert all(not torch.equal(ema[k], live[k]) for k in ("ca.fc.weight", "net.fc.0.weight"))
    assert "ca.fc.weight" in changed(start, model.sampling_generator)


def test_bf16_mixed_step_is_finite() -> None:
    model = tiny_model()
    trainer = fit(model, 1, precision="bf16-mixed")
    for name in ("d_loss", "g_loss", "kl"):
        assert torch.isfinite(trainer.callback_metrics[f"train/{name}"])
    assert int(model.gan_step) == 1


def test_bf16_backward_runs_outside_autocast() -> None:
    """Lightning runs training_step under autocast; the GAN's backward passes leave it (they are much slower
    under it, and each op's backward takes its forward's dtype anyway)."""
    model = tiny_model()
    under_autocast: list[bool] = []
    for network in (model.generator, model.discriminator):
        weight = next(network.parameters())
        weight.register_hook(lambda grad: under_autocast.append(torch.is_autocast_enabled("cpu")))
    fit(model, 1, precision="bf16-mixed")
    assert under_autocast == [False, False]  # D's weight in its update, G's in its own


def test_compile_trains_each_update_through_torch_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """model.compile=true: each update's loss terms (and so their backward) go through torch.compile; here with the
    eager backend, which captures the same graphs without the minute of code generation."""
    compile_graphs = torch.compile
    compiled: list[str] = []

    def compile_eagerly(fn: Any, **options: Any) -> Any:
        compiled.append(fn.__name__)
        return compile_graphs(fn, backend="eager")

    monkeypatch.setattr(torch, "compile", compile_eagerly)
    torch._dynamo.reset()
    model = tiny_model(compile=True)
    trainer = fit(model, 2)
    assert compiled == ["discriminator_terms", "generator_terms"]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    assert torch.isfinite(trainer.callback_metrics["train/g_loss"]) and int(model.gan_step) == 2
    assert model.hparams.compile is True and not tiny_model().compiled


def test_upstream_hooks(tmp_path: Path) -> None:
    source = tiny_model()
    for p in source.text_encoder.parameters():
        p.data.normal_()
    path = tmp_path / "siamese.ckpt"
    torch.save({"state_dict": {f"text_encoder.{k}": v for k, v in source.text_encoder.state_dict().items()}}, path)
    # An older siamese manifest also records its image encoder: stage-I takes the text encoder alone.
    manifests = {"siamese": {"text_encoder": copy.deepcopy(TEXT_ENCODER), "image_encoder": {"widths": [4]},
                             "checkpoint": str(path)}}  # fmt: skip
    assert Stage1GAN.upstream_kwargs(manifests) == {"text_encoder": TEXT_ENCODER}
    model = Stage1GAN(**Stage1GAN.upstream_kwargs(manifests), size=16, width=0.0625)
    assert isinstance(model, StageModule)
    model.load_upstream(manifests)
    features = torch.randn(3, MAX_WORDS * WORD_DIM)
    assert torch.equal(model.embed_text(features), source.eval().embed_text(features))


def test_sampling_inputs_are_repeatable_and_sample_generates_from_them() -> None:
    model = tiny_model()
    batch = batch_of(BATCH)
    inputs = model.sampling_inputs(batch, torch.Generator().manual_seed(0))
    assert set(inputs) == {"text", "z"} and inputs["z"].shape == (BATCH, 8)
    assert torch.equal(inputs["text"], batch["text"])
    # The same noise generator seed draws the same z; another seed, another z.
    assert torch.equal(model.sampling_inputs(batch, torch.Generator().manual_seed(0))["z"], inputs["z"])
    assert not torch.equal(model.sampling_inputs(batch, torch.Generator().manual_seed(1))["z"], inputs["z"])
    samples = model.sample(inputs)
    assert set(samples) == {"image"}
    assert torch.equal(samples["image"], model.generate(batch["text"], inputs["z"]))


GROUPS = {"generator": Generator, "discriminator": Discriminator, "text": TextInput, "losses": Losses,
          "optim": Optim, "ema": Ema}  # fmt: skip


def saved_form(value: Any) -> Any:
    """A default as the hyper-parameters hold it (tuples become lists)."""
    if isinstance(value, dict):
        return {k: saved_form(v) for k, v in value.items()}
    return list(value) if isinstance(value, tuple) else value


def test_config_matches_the_constructor(compose_train) -> None:
    cfg = compose_train("stage=stage1", "data.size=32")
    defaults = {k: v.default for k, v in inspect.signature(Stage1GAN.__init__).parameters.items() if k != "self"}
    assert set(cfg.model) - {"_target_"} == set(defaults) - {"text_encoder"}  # text_encoder: from upstream
    assert {key for key, value in cfg.model.items() if isinstance(value, DictConfig)} == set(GROUPS)
    for group, kind in GROUPS.items():
        assert set(cfg.model[group]) == {f.name for f in fields(kind)}, group
    model = instantiate(cfg.model, text_encoder=TEXT_ENCODER, _convert_="all")
    assert isinstance(model, Stage1GAN)
    # The config's values are the constructor's and the groups' defaults.
    for group, kind in GROUPS.items():
        assert model.hparams[group] == saved_form(asdict(kind())), group
    for key in ("frame", "width"):
        assert model.hparams[key] == defaults[key], key
    assert model.hparams.size == 32


@pytest.mark.parametrize("head", ["concat", "projection"])
@pytest.mark.parametrize("spectral_norm", [False, True])
def test_discriminator_heads_score_every_pair_and_train(head: str, spectral_norm: bool) -> None:
    torch.manual_seed(0)
    model = tiny_model(discriminator={"head": head, "spectral_norm": spectral_norm})
    assert model.discriminator.join_text == getattr(model.discriminator, f"{head}_logits")  # chosen once
    batch = batch_of(BATCH)
    embedding = model.embed_text(batch["text"])
    features = model.discriminator.features(batch["video"][:, :, 0])
    logits = model.discriminator.logits(features, embedding)
    assert logits.shape == (BATCH,) and torch.isfinite(logits).all()
    # The text changes the logit: D judges the pair, not the image alone.
    assert not torch.allclose(logits, model.discriminator.logits(features, embedding.flip(0)))
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.discriminator.modules())
    assert has_bn != spectral_norm
    model.discriminator_terms(batch)["d_loss"].backward()
    assert all(p.grad is not None for p in model.discriminator.parameters() if p.requires_grad)


def test_unknown_discriminator_head_is_a_clear_error() -> None:
    with pytest.raises(T2VError, match=r"model.discriminator.head='film' is unknown; use one of concat, projection"):
        tiny_model(discriminator={"head": "film"})


def test_vae_code_part_joins_the_embedding_and_survives_reload(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tiny_model(text={"parts": ["embedding", "vae_code"]},
                       discriminator={"head": "projection", "spectral_norm": True})  # fmt: skip
    batch = batch_of(BATCH)
    latent = TEXT_ENCODER["vae"]["latent_dim"]
    embedding = model.embed_text(batch["text"])
    assert embedding.shape == (BATCH, EMBED_DIM + latent)
    mu, _ = model.text_encoder.vae.encode(batch["text"])
    assert torch.equal(embedding[:, -latent:], mu)
    assert_reloads_the_same(model, batch["text"], tmp_path)


def test_text_parts_choose_what_g_and_d_read_and_survive_reload(tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = {**TEXT_ENCODER, "word_mean": True}
    model = tiny_model(text_encoder=encoder, text={"parts": ["word_mean"]})
    batch = batch_of(BATCH)
    assert torch.equal(model.embed_text(batch["text"]), model.text_encoder(batch["text"], parts=["word_mean"]))
    assert model.generator.ca.fc.in_features == WORD_DIM
    assert_reloads_the_same(model, batch["text"], tmp_path)
    with pytest.raises(
        T2VError, match="model.text.parts: 'word_mean' needs a siamese stage trained with model.word_mean"
    ):
        tiny_model(text={"parts": ["word_mean"]})


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (["words"], "model.text.parts: 'words' is unknown; pick from ['embedding', 'vae_code', 'word_mean']"),
        ("word_mean", "model.text.parts='word_mean' must be a list, e.g. model.text.parts=[word_mean]"),
        (["vae_code", "vae_code"], "model.text.parts=['vae_code', 'vae_code'] names a part twice"),
        ([], "model.text.parts=[] leaves stage-I without its sentence"),
    ],
)
def test_bad_text_parts_are_clear_errors(parts: Any, message: str) -> None:
    with pytest.raises(T2VError, match=re.escape(message)):
        tiny_model(text={"parts": parts})


def test_read_weight_makes_d_tell_which_caption_a_real_image_shows_and_asks_g_for_images_it_matches() -> None:
    torch.manual_seed(0)
    assert tiny_model().discriminator.image_reading is None  # off as published
    model = tiny_model(losses={"read": 2.0}, text={"parts": ["embedding", "vae_code"], "balance": True})
    batch = batch_of(BATCH)  # captions of two kinds (labels): rows of the same kind are not wrong for each other
    keys = torch.stack([batch["labels"][k] for k in sorted(batch["labels"])], dim=1)
    embedding = model.embed_text(batch["text"])
    real = model.discriminator.features(batch["video"][:, :, 0])
    logits = model.discriminator.reading_logits(real, embedding)
    assert logits.shape == (BATCH, BATCH) and logits.abs().max() <= 1 / 0.1 + 1e-4  # cosine / temperature
    same_kind = (keys[:, None] == keys[None]).all(-1)
    assert same_kind.sum() > BATCH  # some rows share a kind, so the masking is exercised
    others_of_the_same_kind = same_kind & ~torch.eye(BATCH, dtype=torch.bool)
    expected = F.cross_entropy(logits.masked_fill(others_of_the_same_kind, float("-inf")), torch.arange(BATCH))

    d_terms = model.discriminator_terms(batch)
    assert d_terms["d_read"].item() == pytest.approx(expected.item(), rel=1e-5)
    d_terms["d_loss"].backward()
    assert model.discriminator.image_reading.weight.grad is not None
    assert model.discriminator.text_reading.weight.grad is not None

    model.zero_grad()
    g_terms = model.generator_terms(batch)
    total = g_terms["g_adv"] + model.losses.kl * g_terms["kl"] + 2.0 * g_terms["g_read"]
    assert g_terms["g_loss"].item() == pytest.approx(total.item(), rel=1e-5)
    g_terms["g_loss"].backward()
    assert all(p.grad is not None for p in model.generator.net.to_rgb.parameters())

    with pytest.raises(T2VError, match=r"model.losses.read=-1.0 must be 0 or more"):
        tiny_model(losses={"read": -1.0})


def test_contrast_captions_are_one_more_wrong_caption_in_d_reading() -> None:
    torch.manual_seed(0)
    model = tiny_model(losses={"read": 1.0})
    batch = batch_of(BATCH)
    keys = torch.stack([batch["labels"][k] for k in sorted(batch["labels"])], dim=1)
    embedding = model.embed_text(batch["text"])
    features = model.discriminator.features(batch["video"][:, :, 0])
    plain = model.reading_loss(features, embedding, keys)
    # A contrast caption the image reads exactly as well as its own: its right caption's probability halves.
    twin = model.reading_loss(features, embedding, keys, contrast_embedding=embedding)
    logits = without_other_matches(model.discriminator.reading_logits(features, embedding), keys)
    diagonal = logits.diagonal()
    expected = (torch.logsumexp(torch.cat([logits, diagonal[:, None]], 1), 1) - diagonal).mean()
    assert twin.item() == pytest.approx(expected.item(), rel=1e-5) and twin > plain

    # Both D's and G's reading take the batch's contrast captions.
    with_twin = {**batch, "contrast_text": batch["text"]}
    for terms, name in ((model.discriminator_terms, "d_read"), (model.generator_terms, "g_read")):
        torch.manual_seed(1)
        alone = terms(batch)[name]
        torch.manual_seed(1)
        assert terms(with_twin)[name] > alone + 0.1


def test_the_mode_seeking_term_is_small_when_two_noises_give_different_images() -> None:
    from t2v.models.gan import mode_seeking

    z_a, z_b = torch.zeros(4, 8), torch.ones(4, 8)
    same = torch.zeros(4, 3, 16, 16)
    assert mode_seeking(same, same, z_a, z_b) > 1e4  # one image whatever the noise: the term is huge
    near, far = torch.full_like(same, 0.1), torch.full_like(same, 0.4)
    four_times_apart = float(mode_seeking(same, far, z_a, z_b))
    assert four_times_apart == pytest.approx(float(mode_seeking(same, near, z_a, z_b)) / 4, rel=1e-3)


def test_mode_seeking_asks_g_for_a_second_draw_of_each_caption_and_logs_the_term() -> None:
    model, batch = tiny_model(losses={"mode_seeking": 2.0}), batch_of(4)
    calls: list[int] = []
    model.generator.register_forward_hook(lambda *_: calls.append(1))
    terms = model.generator_terms(batch)
    assert len(calls) == 2 and terms["mode_seeking"] > 0
    terms["g_loss"].backward()
    assert model.generator.net.fc[0].weight.grad.abs().sum() > 0
    plain, calls[:] = tiny_model(), []
    plain.generator.register_forward_hook(lambda *_: calls.append(1))
    assert "mode_seeking" not in plain.generator_terms(batch) and len(calls) == 1  # off: no second pass


def test_interpolation_asks_g_for_images_of_midpoints_between_captions_that_differ() -> None:
    model, batch = tiny_model(losses={"interpolation": 1.0}), batch_of(4, shape=torch.tensor([0, 0, 1, 1]))
    seen: list[Tensor] = []
    model.generator.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].detach()))
    terms = model.generator_terms(batch)
    assert len(seen) == 2 and terms["g_between"] > 0
    own, between = seen
    # Each midpoint lies halfway between its own caption's text input and one whose labels differ.
    others = (2 * between - own)[:, None, :]
    partner = (others - own[None, :, :]).abs().amax(dim=-1).argmin(dim=1)
    assert torch.allclose(between, 0.5 * (own + own[partner]), atol=1e-5)
    assert (batch["labels"]["shape"][partner] != batch["labels"]["shape"]).all()
    terms["g_loss"].backward()
    assert model.generator.net.fc[0].weight.grad.abs().sum() > 0
    plain, seen[:] = tiny_model(), []
    plain.generator.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0]))
    assert "g_between" not in plain.generator_terms(batch) and len(seen) == 1  # off: no second pass


def test_interpolation_leaves_the_discriminator_step_alone() -> None:
    batch = batch_of(4, shape=torch.tensor([0, 0, 1, 1]))
    plain, mixing = tiny_model(), tiny_model(losses={"interpolation": 1.0})
    mixing.load_state_dict(plain.state_dict())
    torch.manual_seed(3)
    expected = plain.discriminator_terms(batch)
    torch.manual_seed(3)
    assert {k: float(v.detach()) for k, v in mixing.discriminator_terms(batch).items()} == pytest.approx(
        {k: float(v.detach()) for k, v in expected.items()}
    )
