"""The text VAE: KL schedule, masked reconstruction, learning, and checkpoint reload."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from t2v.errors import T2VError  # noqa: F401  (the package imports cleanly)
from t2v.models.vae import TextVAE, active_units, kl_weight, slot_mask

from helpers import HostReads

WORD_DIM, MAX_WORDS = 8, 6


class Captions(Dataset):
    """Random unit 'word vectors' for captions of 2..MAX_WORDS words, zero padded."""

    def __init__(self, n: int = 64, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        vocab = torch.nn.functional.normalize(torch.randn(10, WORD_DIM, generator=g), dim=-1)
        self.n_words = torch.randint(2, MAX_WORDS + 1, (n,), generator=g)
        words = vocab[torch.randint(0, 10, (n, MAX_WORDS), generator=g)]
        self.text = (words * slot_mask(self.n_words, MAX_WORDS)[..., None]).view(n, -1)

    def __len__(self) -> int:
        return len(self.text)

    def __getitem__(self, i: int) -> dict:
        return {"text": self.text[i], "text_len": self.n_words[i]}


def tiny_vae(**kwargs) -> TextVAE:
    defaults = dict(
        word_dim=WORD_DIM, max_words=MAX_WORDS, hidden_dims=[32], latent_dim=4, kl_schedule="constant", lr=3e-3
    )
    return TextVAE(**{**defaults, **kwargs})


def test_kl_schedules() -> None:
    assert kl_weight(2500, "logistic", 0.0025, 2500) == pytest.approx(0.5)
    assert kl_weight(0, "logistic", 0.0025, 2500) == pytest.approx(1 / (1 + math.exp(6.25)))
    assert kl_weight(10_000, "logistic", 0.0025, 2500) > 0.9999
    assert [kl_weight(s, "linear", x0=100) for s in (0, 50, 100, 500)] == [0.0, 0.5, 1.0, 1.0]
    assert kl_weight(0, "constant") == 1.0
    with pytest.raises(ValueError, match="kl_schedule"):
        kl_weight(0, "cyclic")


def test_padding_slots_do_not_count() -> None:
    vae = tiny_vae()
    target = torch.zeros(2, MAX_WORDS * WORD_DIM)
    target[:, :WORD_DIM] = 1.0
    n_words = torch.tensor([1, 1])
    wrong_padding = target.clone()
    wrong_padding[:, WORD_DIM:] = 5.0  # garbage only in padding slots
    assert vae.reconstruction(wrong_padding, target, n_words) == 0
    wrong_word = target.clone()
    wrong_word[:, :WORD_DIM] = 0.0
    assert vae.reconstruction(wrong_word, target, n_words) == pytest.approx(
        WORD_DIM
    )  # squared error summed over one slot
    cosine = tiny_vae(recon_loss="cosine")
    assert cosine.reconstruction(-target, target, n_words) == pytest.approx(2.0)


def test_slot_dropout_zeroes_whole_slots() -> None:
    vae = tiny_vae(slot_dropout=0.5).train()
    torch.manual_seed(0)
    dropped = vae.drop_slots(torch.ones(32, MAX_WORDS * WORD_DIM)).view(32, MAX_WORDS, WORD_DIM)
    per_slot = dropped.sum(-1)
    assert set(per_slot.unique().tolist()) == {0.0, float(WORD_DIM)}
    assert 0.3 < (per_slot == 0).float().mean() < 0.7
    assert torch.equal(vae.eval().drop_slots(torch.ones(2, MAX_WORDS * WORD_DIM)), torch.ones(2, MAX_WORDS * WORD_DIM))


def test_bad_settings_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="recon_loss"):
        tiny_vae(recon_loss="bce")
    with pytest.raises(ValueError, match="kl_schedule"):
        tiny_vae(kl_schedule="cyclic")


def test_active_units() -> None:
    mu = torch.zeros(100, 5)
    mu[:, :2] = torch.randn(100, 2)
    assert active_units(mu) == 2


class WithVal(pl.LightningDataModule):
    def train_dataloader(self) -> DataLoader:
        return DataLoader(Captions(64, seed=0), batch_size=16, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(Captions(32, seed=1), batch_size=16)


def test_loss_falls_and_checkpoint_reloads(tmp_path) -> None:
    pl.seed_everything(0)
    # A KL weight that stays near 0 over this short run: the reconstruction must then be learnt.
    vae = tiny_vae(kl_schedule="linear", kl_x0=100_000)
    data = Captions(64)
    batch = {"text": data.text, "text_len": data.n_words}
    vae.eval()
    before = vae.losses(batch)["recon"].item()
    vae.train()
    trainer = pl.Trainer(
        max_epochs=30,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(vae, datamodule=WithVal())
    vae.eval()
    after = vae.losses(batch)["recon"].item()
    assert after < 0.7 * before
    assert trainer.callback_metrics["val/active_units"] >= 1

    path = tmp_path / "vae.ckpt"
    trainer.save_checkpoint(path)
    reloaded = TextVAE.load_from_checkpoint(path).eval()  # no extra arguments needed
    assert reloaded.hparams.latent_dim == 4
    with torch.no_grad():
        assert torch.equal(reloaded.encode(data.text)[0], vae.encode(data.text)[0])


def test_the_loss_reaches_the_progress_bar_only_on_the_logged_steps(tmp_path, monkeypatch) -> None:
    """Lightning would copy a prog_bar loss to the host after every batch (on a GPU, a wait each step)."""
    from t2v.callbacks.progress import ProgressBar

    reads = HostReads(monkeypatch)
    bar = ProgressBar()
    trainer = pl.Trainer(max_steps=12, accelerator="cpu", logger=False, callbacks=[bar, reads], log_every_n_steps=4,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
                         limit_val_batches=0)  # fmt: skip
    trainer.fit(tiny_vae(), DataLoader(Captions(64), batch_size=4))
    assert {s for s in reads.steps if s > 0} <= {4, 8, 12}
    assert "loss" in bar.get_metrics(trainer, trainer.lightning_module)
