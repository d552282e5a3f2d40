"""The siamese text/image embedding: losses, frame choice, retrieval recall, training, reload."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from t2v.errors import T2VError
from t2v.models.siamese import (
    RECALL_AT,
    SiameseEmbedding,
    TextInput,
    contrastive_loss,
    frame_indices,
    retrieval_recall,
)
from t2v.models.siamese import word_mean as word_mean_of
from t2v.models.vae import TextVAE

VAE = dict(word_dim=8, max_words=4, hidden_dims=[16], latent_dim=8)
COLOURS = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1]])


class ColourClips(Dataset):
    """Clips filled with one of three colours; the caption's features say which one."""

    def __init__(self, n: int = 48, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.colour = torch.randint(0, 3, (n,), generator=g)
        words = torch.nn.functional.one_hot(self.colour, 8).float()
        self.text = torch.cat([words, torch.zeros(n, 24)], dim=1)

    def __len__(self) -> int:
        return len(self.colour)

    def __getitem__(self, i: int) -> dict:
        video = COLOURS[self.colour[i]][:, None, None, None].expand(3, 12, 16, 16).clone()
        return {"video": video, "text": self.text[i], "labels": {"colour": self.colour[i]}, "caption": "c"}


def tiny(**kwargs) -> SiameseEmbedding:
    defaults = dict(vae=VAE, embed_dim=8, hidden_dim=16, dropout=0.0, final_relu=False, image_widths=(8, 8), lr=1e-2)
    return SiameseEmbedding(**{**defaults, **kwargs})


def test_contrastive_loss_matches_the_original_formula() -> None:
    d = torch.tensor([0.5, 0.2, 1.5])
    y = torch.tensor([1.0, 0.0, 0.0])
    expected = (0.5**2 + (1 - 0.2) ** 2 + 0.0) / 3
    assert contrastive_loss(d, y, margin=1.0).item() == pytest.approx(expected)


def test_frame_choices() -> None:
    assert frame_indices("first", 32, True) == [0]
    assert frame_indices("middle", 32, True) == [16]
    assert frame_indices("original", 32, True) == [0, 22, 31]
    assert frame_indices("random", 32, True) is None and frame_indices("random", 32, False) == [16]
    with pytest.raises(ValueError, match="model.image_frame"):
        tiny(image_frame="last")


def test_original_frames_pair_three_images_with_each_caption() -> None:
    model = tiny(image_frame="original")
    video = torch.arange(2 * 12, dtype=torch.float)[:, None, None, None].view(2, 1, 12, 1, 1).expand(2, 3, 12, 4, 4)
    images, rows = model.pick_frames(video)
    assert images.shape == (6, 3, 4, 4) and rows.tolist() == [0, 0, 0, 1, 1, 1]
    assert images[:, 0, 0, 0].tolist() == [0, 2, 11, 12, 14, 23]  # frames 0, 12-10, 11 of each clip


def test_recall_is_one_for_perfect_embeddings_and_low_for_shuffled() -> None:
    keys = torch.arange(20)[:, None]
    emb = torch.randn(20, 8)
    metrics = tiny().recall
    perfect = retrieval_recall(emb, emb, keys, metrics)
    assert all(perfect[k].item() == 1.0 for k in RECALL_AT)
    shuffled = retrieval_recall(emb, emb[torch.randperm(20, generator=torch.Generator().manual_seed(1))], keys, metrics)
    assert shuffled[1].item() < 0.3


@pytest.mark.parametrize("loss", ["contrastive", "infonce", "triplet"])
def test_training_aligns_text_and_images_and_keeps_the_vae_frozen(loss: str, tmp_path) -> None:
    pl.seed_everything(0)
    model = tiny(loss=loss)
    vae_before = {k: v.clone() for k, v in model.text_encoder.vae.state_dict().items()}
    data = DataLoader(ColourClips(48), batch_size=16, shuffle=True)
    val = DataLoader(ColourClips(30, seed=1), batch_size=30)
    trainer = pl.Trainer(max_epochs=25, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, data, val)
    assert trainer.callback_metrics["val/recall@1"] > 0.9  # 3 colours: chance is 1/3
    for k, v in model.text_encoder.vae.state_dict().items():
        assert torch.equal(v, vae_before[k]), k


def test_checkpoint_reloads_without_extras_and_upstream_weights_load(tmp_path) -> None:
    vae = TextVAE(**VAE)
    vae_path = tmp_path / "vae.ckpt"
    torch.save({"state_dict": vae.state_dict(), "hyper_parameters": dict(vae.hparams)}, vae_path)
    model = tiny()
    model.load_upstream({"vae": {"checkpoint": str(vae_path)}})
    assert torch.equal(model.text_encoder.vae.to_mu.weight, vae.to_mu.weight)
    assert SiameseEmbedding.upstream_kwargs({"vae": {"hparams": VAE}}) == {"vae": VAE}

    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, DataLoader(ColourClips(8), batch_size=8))
    trainer.save_checkpoint(tmp_path / "siamese.ckpt")
    reloaded = SiameseEmbedding.load_from_checkpoint(tmp_path / "siamese.ckpt").eval()
    text = ColourClips(4).text
    assert torch.equal(reloaded.text_encoder(text), model.eval().text_encoder(text))


def test_the_manifest_describes_the_text_branch_the_later_stages_rebuild() -> None:
    from t2v.models.siamese import TextEncoder

    model = tiny()
    record = model.export_artifact(Path("."), None)
    encoder = TextEncoder(**record["text_encoder"])
    assert [p.shape for p in encoder.parameters()] == [p.shape for p in model.text_encoder.parameters()]
    assert record["dims"] == {"embedding": model.hparams.embed_dim}


def test_word_mean_skips_the_padding_slots() -> None:
    from t2v.models.siamese import word_mean

    words = torch.tensor([[[1.0, 2.0], [3.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    assert torch.equal(word_mean(words.flatten(1), 2), torch.tensor([[2.0, 1.0], [0.0, 0.0]]))


def test_word_mean_joins_the_vae_code_in_the_head_and_the_code_and_survives_reload(tmp_path: Path) -> None:
    from t2v.models.siamese import TextEncoder, word_mean

    model = tiny(word_mean=True).eval()
    text = ColourClips(4).text
    mu, _ = model.text_encoder.vae.encode(text)
    every_part = ["embedding", "vae_code", "word_mean"]
    with_code = model.text_encoder(text, parts=every_part)
    embed_dim, latent, word_dim = 8, VAE["latent_dim"], VAE["word_dim"]
    assert with_code.shape == (4, model.text_encoder.out_dim(every_part)) == (4, embed_dim + latent + word_dim)
    assert torch.equal(with_code[:, embed_dim : embed_dim + latent], mu)
    assert torch.equal(with_code[:, embed_dim + latent :], word_mean(text, word_dim))
    # The head reads the word mean beside the VAE code.
    assert model.text_encoder.head[0].in_features == latent + word_dim

    rebuilt = TextEncoder(**model.text_encoder_hparams())
    rebuilt.load_state_dict(model.text_encoder.state_dict())
    assert torch.equal(rebuilt.eval()(text, parts=every_part), with_code)
    assert tiny().text_encoder_hparams()["word_mean"] is False  # off as published


def test_text_parts_pick_the_parts_by_name_in_the_order_given() -> None:
    model = tiny(word_mean=True).eval()
    encoder, text = model.text_encoder, ColourClips(4).text
    embedding, mu, mean = encoder(text), encoder.vae.encode(text)[0], word_mean_of(text, VAE["word_dim"])
    assert torch.equal(encoder(text, parts=["vae_code"]), mu)
    assert torch.equal(encoder(text, parts=["word_mean"]), mean)
    assert torch.equal(encoder(text, parts=["word_mean", "embedding"]), torch.cat([mean, embedding], dim=1))
    assert torch.equal(encoder(text), embedding)  # the embedding alone by default
    assert encoder.out_dim(parts=["vae_code", "word_mean"]) == VAE["latent_dim"] + VAE["word_dim"]
    torch.testing.assert_close(encoder(text, parts=["word_mean"], balanced=True).pow(2).mean(1), torch.ones(4))
    encoder.vae.encode = None  # reading the word mean alone needs no VAE pass
    assert torch.equal(encoder(text, parts=["word_mean"]), mean)


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (["words"], r"model.text.parts: 'words' is unknown; pick from \['embedding', 'vae_code', 'word_mean'\]"),
        ("word_mean", r"model.text.parts='word_mean' must be a list, e.g. model.text.parts=\[word_mean\]"),
        (["word_mean", "word_mean"], r"names a part twice"),
    ],
)
def test_text_parts_are_a_list_of_known_parts_each_named_once(parts: list[str], message: str) -> None:
    with pytest.raises(T2VError, match=message):
        TextInput(parts=parts)
    assert TextInput(parts=["word_mean", "embedding"]).parts == ["word_mean", "embedding"]


def test_the_word_mean_is_a_part_only_of_a_siamese_stage_that_reads_it() -> None:
    with pytest.raises(T2VError, match=r"model.text.parts: 'word_mean' needs a siamese stage trained with model.word"):
        tiny(word_mean=False).text_encoder.check_parts(["word_mean"])
    tiny(word_mean=True).text_encoder.check_parts(["word_mean"])


def test_balanced_text_puts_every_part_at_unit_rms_and_keeps_its_direction() -> None:
    model = tiny(word_mean=True).eval()
    text = ColourClips(4).text
    plain = model.text_encoder(text, parts=["embedding", "vae_code", "word_mean"])
    balanced = model.text_encoder(text, parts=["embedding", "vae_code", "word_mean"], balanced=True)
    cuts = [0, 8, 8 + VAE["latent_dim"], plain.shape[1]]  # embedding | VAE code | word mean
    for start, end in zip(cuts[:-1], cuts[1:], strict=True):
        part = balanced[:, start:end]
        torch.testing.assert_close(part.pow(2).mean(1), torch.ones(4))
        torch.testing.assert_close(F.cosine_similarity(part, plain[:, start:end], dim=1), torch.ones(4))
