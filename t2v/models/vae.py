"""Stage `vae`: a variational autoencoder over concatenated fastText word vectors.

The input is ``max_words`` slots of ``word_dim`` numbers (25 x 300 = 7,500 by default), zero padded.
Two departures from the 2017 notebook, both for correctness: reconstruction is a real-valued loss
(squared error or cosine per word slot) instead of sigmoid + binary cross-entropy, and only real
word slots count, so the padding of a short caption cannot dominate its loss. KL annealing and
slot dropout (Bowman et al. 2015) keep the posterior from collapsing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from t2v.models.stage import StageModule, adam

KL_SCHEDULES = ("logistic", "linear", "constant")
RECON_LOSSES = ("mse", "cosine")


def kl_weight(step: int, schedule: str = "logistic", k: float = 0.0025, x0: float = 2500) -> float:
    """The KL term's weight at an optimizer step: logistic 1/(1+exp(-k(step-x0))), a linear ramp
    reaching 1 at x0, or a constant 1."""
    if schedule == "logistic":
        return 1.0 / (1.0 + math.exp(-k * (step - x0)))
    if schedule == "linear":
        return min(1.0, step / x0) if x0 > 0 else 1.0
    if schedule == "constant":
        return 1.0
    raise ValueError(f"model.kl_schedule={schedule!r} is unknown; use one of {KL_SCHEDULES}")


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def slot_mask(n_words: Tensor, max_words: int) -> Tensor:
    """(B, max_words) float mask of the real (non-padding) word slots."""
    slots = torch.arange(max_words, device=n_words.device)
    return (slots[None, :] < n_words[:, None]).float()


class TextVAE(StageModule):
    """MLP VAE: features (B, max_words*word_dim) -> (mu, logvar) of ``latent_dim`` -> features."""

    def __init__(
        self,
        word_dim: int = 300,
        max_words: int = 25,
        hidden_dims: Sequence[int] = (1200,),
        latent_dim: int = 500,
        recon_loss: str = "mse",
        kl_schedule: str = "logistic",
        kl_k: float = 0.0025,
        kl_x0: float = 2500,
        slot_dropout: float = 0.0,
        recon_weight: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        if recon_loss not in RECON_LOSSES:
            raise ValueError(f"model.recon_loss={recon_loss!r} is unknown; use one of {RECON_LOSSES}")
        kl_weight(0, kl_schedule, kl_k, kl_x0)  # fail at construction, not mid-training
        self.save_hyperparameters()
        hidden = list(hidden_dims)
        self.input_dim = word_dim * max_words
        self.encoder = mlp([self.input_dim, *hidden])
        self.to_mu = nn.Linear(hidden[-1], latent_dim)
        self.to_logvar = nn.Linear(hidden[-1], latent_dim)
        self.decoder = mlp([latent_dim, *reversed(hidden), self.input_dim])
        self.encoder_act = nn.ReLU()
        # Start by predicting empty word slots. With default init the first outputs are large over
        # 7,500 dims, and the resulting gradients kill the hidden ReLUs: the model then stays stuck
        # at the mean caption (measured: recon flat at ~8.4 per caption instead of falling to 0.3).
        nn.init.zeros_(self.decoder[-1].weight)
        nn.init.zeros_(self.decoder[-1].bias)

    # -- the model ------------------------------------------------------------------------------
    def encode(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior parameters (mu, logvar). Later stages use mu as the sentence code."""
        h = self.encoder_act(self.encoder(features))
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(features)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decode(z), mu, logvar

    # -- the loss -------------------------------------------------------------------------------
    def reconstruction(self, recon: Tensor, target: Tensor, n_words: Tensor) -> Tensor:
        """Per-sample reconstruction error summed over the real word slots, averaged over the batch."""
        p = self.hparams
        recon = recon.view(-1, p.max_words, p.word_dim)
        target = target.view(-1, p.max_words, p.word_dim)
        if p.recon_loss == "mse":
            per_slot = (recon - target).pow(2).sum(-1)
        else:
            per_slot = 1.0 - nn.functional.cosine_similarity(recon, target, dim=-1, eps=1e-6)
        return (per_slot * slot_mask(n_words, p.max_words)).sum(-1).mean()

    @staticmethod
    def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
        """KL(q(z|x) || N(0, I)), summed over latent dims, averaged over the batch."""
        return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)).mean()

    def drop_slots(self, features: Tensor) -> Tensor:
        """Zero whole word slots of the encoder input, so the code cannot rely on any one word."""
        p = self.hparams
        if not self.training or p.slot_dropout <= 0:
            return features
        keep = torch.rand(features.shape[0], p.max_words, 1, device=features.device) >= p.slot_dropout
        return (features.view(-1, p.max_words, p.word_dim) * keep).view_as(features)

    def losses(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        features, n_words = batch["text"], batch["text_len"]
        recon, mu, logvar = self(self.drop_slots(features))
        rec = self.reconstruction(recon, features, n_words)
        kl = self.kl_divergence(mu, logvar)
        weight = kl_weight(self.global_step, self.hparams.kl_schedule, self.hparams.kl_k, self.hparams.kl_x0)
        rec_term = self.hparams.recon_weight * rec
        return {
            "recon": rec,
            "kl": kl,
            "kl_weight": torch.tensor(weight),
            "loss": rec_term + weight * kl,
            "elbo": rec_term + kl,
            "mu": mu,
        }

    # -- Lightning hooks ------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        out = self.losses(batch)
        bs = batch["text"].shape[0]
        for name in ("loss", "recon", "kl", "kl_weight", "elbo"):
            self.log(f"train/{name}", out[name], batch_size=bs)
        self.show({"loss": out["loss"]})
        return out["loss"]

    def on_validation_epoch_start(self) -> None:
        self._val_mu: list[Tensor] = []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.losses(batch)
        bs = batch["text"].shape[0]
        for name in ("loss", "recon", "kl", "elbo"):
            self.log(f"val/{name}", out[name], prog_bar=name == "elbo", batch_size=bs, sync_dist=True)
        self._val_mu.append(out["mu"].detach())

    def on_validation_epoch_end(self) -> None:
        if self._val_mu:
            self.log("val/active_units", float(active_units(torch.cat(self._val_mu))), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    # -- artifact -------------------------------------------------------------------------------
    def export_artifact(self, directory: Path, datamodule: pl.LightningDataModule) -> dict[str, Any]:
        """Save what later stages need beside the weights (the featurizer) and name the dimensions."""
        return {
            "featurizer": datamodule.featurizer.save(directory / "featurizer"),
            "featurizer_dir": "featurizer",  # relative to the artifact folder, which is renamed into place
            "dims": {"input": self.input_dim, "latent": self.hparams.latent_dim},
        }


def active_units(mu: Tensor, threshold: float = 0.01) -> int:
    """Latent dims whose posterior mean varies across inputs (Burda et al. 2016): Var_x[mu] > threshold."""
    if mu.shape[0] < 2:
        return 0
    return int((mu.var(dim=0) > threshold).sum())
