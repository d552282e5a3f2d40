"""Stage `stage1`: StackGAN stage-I (Zhang et al. 2017) with a GAN-CLS matching-aware D (Reed et al. 2016).

Text -> one frame of the clip (``frame``, the first by default), at ``size`` x ``size``. The options are named
parts (``conf/model/stage1.yaml``): ``generator``, ``discriminator``, ``text``, ``losses``, ``optim``, ``ema``.

- What G and D read of the text (``text.parts``): the frozen siamese embedding (as published), the VAE code
  behind it and/or the mean word vector, each rescaled to unit RMS with ``text.balance``.
- Conditioning augmentation (CA): a linear layer maps the text to (mu, log sigma) of N_g = ``generator.c_dim``
  dims and G sees c = mu + sigma * eps; KL(N(mu, sigma^2) || N(0, I)) regularises it (``losses.kl``).
- G (the paper's / PyTorch port's layout): cat(z, c) -> FC -> 4x4 x ngf, then [nearest x2, conv 3x3, BN,
  ReLU] blocks halving the channels, then conv 3x3 to RGB + tanh.
- D: stride-2 4x4 convs down to 4x4, then a head that joins the text (``discriminator.head``): ``concat``
  (the TensorFlow original's: the text through FC + LeakyReLU, tiled 4x4 and concatenated; 1x1 conv + BN +
  LeakyReLU; a 4x4 conv to one logit) or ``projection`` (Miyato & Koyama 2018).
- Loss: D = real(x, e) + 1/2 (fake(x, e_wrong) + fake(G(z, c), e)); G = generator(G(z, c), e) + kl * KL.
  When the data serves contrast captions (``data.contrast``: training captions that differ from the right one
  in one named attribute, such as the shape word alone), half of D's wrong-caption term is on those, and with
  ``losses.read`` each is one more wrong caption in D's reading: D must then tell the shapes apart.
- ``losses.read`` > 0 (off as published): D also learns to tell, from a real image, which of the batch's
  captions is its own (InfoNCE on the cosine similarity of D's pooled features and the text input, each
  through a linear map), and G is asked to make images D matches to their own captions just as well: an
  auxiliary-classifier GAN (Odena et al. 2017) whose classes are the batch's captions, like XMC-GAN's
  contrastive D (Zhang et al. 2021).

The CA network lives inside ``self.generator`` (a :class:`ConditionedGenerator`), so the G optimizer and
the EMA copy both cover it: sampling from the EMA generator uses the matching EMA CA.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from t2v.errors import T2VError
from t2v.models.captions import caption_keys, mismatched_indices, without_other_matches
from t2v.models.gan import (
    AdversarialModule,
    Group,
    downsampling_levels,
    mode_seeking,
    probability,
    upgrade_shared_hparams,
    upgrade_text_parts,
)
from t2v.models.gan import Losses as GanLosses
from t2v.models.settings import at_least, one_of, settings
from t2v.models.siamese import TextEncoder, TextInput
from t2v.models.stage import Manifests
from t2v.models.upstream import freeze, load_submodule

# The published widths (StackGAN GF_DIM 128 and DF_DIM 64), which ``width`` multiplies.
GF_DIM, DF_DIM = 128, 64
MIN_CHANNELS = 4
# Softmax temperature of D's caption reading (CLIP-like, on cosine similarities).
READ_TEMPERATURE = 0.1


def scaled(channels: float, width: float) -> int:
    # A tiny width must still leave every layer a few channels.
    return max(MIN_CHANNELS, round(channels * width))


def kl_divergence(mu: Tensor, log_sigma: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, I)), averaged over the batch *and* the dims.

    The mean over dims is what both released StackGAN codes compute, so ``losses.kl`` keeps their scale
    (paper 1, code 2). Computed in float32: under bf16 autocast exp() of a bf16 log sigma loses digits.
    """
    mu, log_sigma = mu.float(), log_sigma.float()
    return (0.5 * (mu.pow(2) + torch.exp(2 * log_sigma) - 1) - log_sigma).mean()


def init_dcgan(module: nn.Module) -> None:
    """DCGAN init (as StackGAN): conv and linear weights N(0, 0.02), BN weights N(1, 0.02), zero biases.

    Layers under spectral norm are skipped: their owner initialises them before the norm goes on.
    """
    if nn.utils.parametrize.is_parametrized(module):
        return
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class ConditioningAugmentation(nn.Module):
    """Embedding -> (mu, log sigma) of the condition c.

    A plain linear layer: the originals put LeakyReLU (TF) or ReLU (PyTorch) after it, and a ReLU
    forces mu >= 0 and sigma >= 1, so the KL term can never reach 0.
    """

    def __init__(self, embed_dim: int, c_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(embed_dim, 2 * c_dim)

    def forward(self, embedding: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_sigma = self.fc(embedding).chunk(2, dim=-1)
        return mu, log_sigma

    @staticmethod
    def sample(mu: Tensor, log_sigma: Tensor) -> Tensor:
        return mu + torch.exp(log_sigma) * torch.randn_like(mu)


def up_block(c_in: int, c_out: int) -> nn.Sequential:
    """Nearest-neighbour x2 + 3x3 conv: the paper's upsampling (no checkerboard of transposed convs)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),  # BN follows: a bias would be cancelled
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class ImageGenerator(nn.Module):
    """cat(z, c) -> 4x4 x ngf -> ``ups`` up-blocks halving the channels -> RGB in [-1, 1]."""

    def __init__(self, z_dim: int, c_dim: int, ngf: int, ups: int) -> None:
        super().__init__()
        self.ngf = ngf
        self.fc = nn.Sequential(nn.Linear(z_dim + c_dim, ngf * 16, bias=False), nn.BatchNorm1d(ngf * 16), nn.ReLU())
        channels = [ngf] + [max(MIN_CHANNELS, ngf >> (i + 1)) for i in range(ups)]
        self.ups = nn.Sequential(*(up_block(a, b) for a, b in zip(channels[:-1], channels[1:], strict=True)))
        self.to_rgb = nn.Sequential(nn.Conv2d(channels[-1], 3, 3, 1, 1), nn.Tanh())

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        h = self.fc(torch.cat([z, c], dim=1)).view(-1, self.ngf, 4, 4)
        return self.to_rgb(self.ups(h))


class ConditionedGenerator(nn.Module):
    """CA + image generator: (embedding, z) -> (image, mu, log sigma)."""

    def __init__(self, embed_dim: int, z_dim: int, c_dim: int, ngf: int, ups: int) -> None:
        super().__init__()
        self.ca = ConditioningAugmentation(embed_dim, c_dim)
        self.net = ImageGenerator(z_dim, c_dim, ngf, ups)

    def forward(self, embedding: Tensor, z: Tensor, sample_condition: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        mu, log_sigma = self.ca(embedding)
        c = ConditioningAugmentation.sample(mu, log_sigma) if sample_condition else mu
        return self.net(z, c), mu, log_sigma


D_HEADS = ("concat", "projection")


@dataclass
class Generator:
    """``model.generator``: the noise and the conditioning augmentation's sizes."""

    z_dim: int = 100  # N_z
    c_dim: int = 128  # N_g

    def __post_init__(self) -> None:
        at_least("generator", 1, z_dim=self.z_dim, c_dim=self.c_dim)


@dataclass
class Discriminator:
    """``model.discriminator``: how D joins the text, and its normalisation."""

    head: str = "concat"  # concat (StackGAN) | projection (Miyato & Koyama 2018)
    spectral_norm: bool = False  # spectral normalisation on every layer in place of batch norm

    def __post_init__(self) -> None:
        one_of("discriminator", "head", self.head, D_HEADS)


@dataclass
class Losses(GanLosses):
    """``model.losses``: the adversarial loss (``gan``), and the weight of each other term, named as in the log."""

    kl: float = 1.0  # the CA KL term (the paper's 1; the released code's 2)
    read: float = 0.0  # D's caption reading, asked of D on real images and of G on its images
    mode_seeking: float = 0.0  # MSGAN's term: two noise draws of one caption must give different images
    interpolation: float = 0.0  # GAN-INT: G's images for the midpoint of two captions must pass D with it

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(
            "losses", 0, kl=self.kl, read=self.read, mode_seeking=self.mode_seeking, interpolation=self.interpolation
        )


class MatchingDiscriminator(nn.Module):
    """Image features once (:meth:`features`), then a logit per (features, embedding) pair (:meth:`logits`).

    Splitting the two lets the D step score the real images with the right and the wrong captions from
    one pass over the image (as both originals do). Two heads join the text: ``concat`` (StackGAN's: the
    embedding tiled over the 4x4 features, then convolutions) and ``projection`` (Miyato & Koyama 2018: an
    unconditional logit plus the inner product of the projected embedding with the pooled features).
    ``spectral_norm`` puts spectral normalisation on every layer in place of batch norm (Miyato et al. 2018).
    """

    def __init__(
        self,
        embed_dim: int,
        c_dim: int,
        ndf: int,
        downs: int,
        head: str = "concat",
        spectral_norm: bool = False,
        reads_text: bool = False,
    ) -> None:
        super().__init__()
        one_of("discriminator", "head", head, D_HEADS)
        # Channels double per step and end at 8 ndf at 4x4 (the published 64x64 layout), whatever the size.
        channels = [3] + [ndf * 2 ** max(0, 3 - (downs - 1 - i)) for i in range(downs)]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
            layers.append(nn.Conv2d(a, b, 4, 2, 1, bias=i == 0 or spectral_norm))
            if i > 0 and not spectral_norm:  # DCGAN: no BN on the input layer
                layers.append(nn.BatchNorm2d(b))
            layers.append(nn.LeakyReLU(0.2))
        self.body = nn.Sequential(*layers)
        top = channels[-1]
        if head == "concat":
            self.join_text = self.concat_logits
            self.text = nn.Sequential(nn.Linear(embed_dim, c_dim), nn.LeakyReLU(0.2))
            norm = nn.Identity() if spectral_norm else nn.BatchNorm2d(top)
            self.joint = nn.Sequential(
                nn.Conv2d(top + c_dim, top, 1, bias=spectral_norm), norm, nn.LeakyReLU(0.2), nn.Conv2d(top, 1, 4)
            )
        else:
            self.join_text = self.projection_logits
            self.text = nn.Linear(embed_dim, top)
            self.joint = nn.Conv2d(top, 1, 4)
        # With ``reads_text``, linear maps of the pooled image features and of the text into one space, where
        # D tells which caption of the batch an image shows.
        self.image_reading = nn.Linear(top, embed_dim) if reads_text else None
        self.text_reading = nn.Linear(embed_dim, embed_dim) if reads_text else None
        if spectral_norm:
            self.apply(init_dcgan)
            for module in self.modules():
                if isinstance(module, nn.Conv2d | nn.Linear):
                    nn.utils.parametrizations.spectral_norm(module)

    def features(self, image: Tensor) -> Tensor:
        return self.body(image)

    def logits(self, features: Tensor, embedding: Tensor) -> Tensor:
        """(B,) logits; never a sigmoid here, so the losses stay autocast-safe."""
        return self.join_text(features, embedding)

    def concat_logits(self, features: Tensor, embedding: Tensor) -> Tensor:
        """StackGAN's head: the text tiled over the 4x4 features, then convolutions."""
        cond = self.text(embedding)[:, :, None, None].expand(-1, -1, *features.shape[2:])
        return self.joint(torch.cat([features, cond], dim=1)).flatten()

    def projection_logits(self, features: Tensor, embedding: Tensor) -> Tensor:
        """The projection head: an unconditional logit plus <projected text, pooled features>."""
        match = (self.text(embedding) * features.sum(dim=(2, 3))).sum(dim=1)
        return self.joint(features).flatten() + match

    def reading_logits(self, features: Tensor, embedding: Tensor) -> Tensor:
        """(B images, N captions) cosine similarities / temperature in the reading space (needs ``reads_text``)."""
        assert self.image_reading is not None and self.text_reading is not None
        image = F.normalize(self.image_reading(features.mean(dim=(2, 3))).float(), dim=1)
        text = F.normalize(self.text_reading(embedding).float(), dim=1)
        return image @ text.T / READ_TEMPERATURE

    def forward(self, image: Tensor, embedding: Tensor) -> Tensor:
        return self.logits(self.features(image), embedding)


class Stage1GAN(AdversarialModule):
    """Text features -> one frame of the clip, trained adversarially with a matching-aware D."""

    generator: ConditionedGenerator
    discriminator: MatchingDiscriminator
    hparams_format = 1  # 0: flat options (text_code, d_head, lr_g, ...), before the named parts

    def __init__(
        self,
        text_encoder: dict[str, Any],
        size: int = 64,
        frame: int = 0,
        width: float = 1.0,
        generator: Group = None,
        discriminator: Group = None,
        text: Group = None,
        losses: Group = None,
        optim: Group = None,
        ema: Group = None,
        compile: bool = False,
    ) -> None:
        """``text_encoder``: the frozen siamese text encoder's architecture (from the upstream manifest); the
        rest: the image geometry and the option groups of ``conf/model/stage1.yaml``."""
        super().__init__(settings(Losses, "losses", losses), width, optim, ema, compile)
        steps = downsampling_levels(size)
        g, d = settings(Generator, "generator", generator), settings(Discriminator, "discriminator", discriminator)
        self.text_input = settings(TextInput, "text", text)
        if not self.text_input.parts:
            raise T2VError("model.text.parts=[] leaves stage-I without its sentence; name a part, e.g. [word_mean]")
        self.text_encoder = freeze(TextEncoder(**text_encoder))
        self.text_encoder.check_parts(self.text_input.parts)
        self.z_dim = g.z_dim
        # Every option as it will be saved, defaults filled in: a checkpoint means the same whatever the defaults
        # become. (Lightning's automatic collection would also leave out `frame`, a parameter name of its own.)
        self.save_hyperparameters(
            {
                "text_encoder": text_encoder,
                "size": size,
                "frame": frame,
                "width": width,
                "generator": asdict(g),
                "discriminator": asdict(d),
                "text": asdict(self.text_input),
                "losses": asdict(self.losses),
                **self.shared_hparams(),
            }  # fmt: skip
        )
        embed_dim = self.text_encoder.out_dim(self.text_input.parts)
        self.generator = ConditionedGenerator(embed_dim, g.z_dim, g.c_dim, scaled(GF_DIM * 8, width), steps)
        self.discriminator = MatchingDiscriminator(
            embed_dim, g.c_dim, scaled(DF_DIM, width), steps, d.head, d.spectral_norm, reads_text=self.losses.read > 0
        )
        self.generator.apply(init_dcgan)
        self.discriminator.apply(init_dcgan)
        self.setup_ema()

    @classmethod
    def upgrade_checkpoint(cls, checkpoint: dict[str, Any], version: int) -> None:
        """Format 0 -> 1: the flat options become named parts. ``match_weight`` (the siamese matching term) is gone:
        its image encoder's weights are dropped, which changes nothing G generates."""
        hp = checkpoint["hyper_parameters"]
        upgrade_shared_hparams(hp)
        hp["generator"] = {key: hp.pop(key) for key in ("z_dim", "c_dim") if key in hp}
        hp["discriminator"] = {"head": hp.pop("d_head", "concat"), "spectral_norm": hp.pop("spectral_norm", False)}
        hp["text"] = {"parts": upgrade_text_parts(hp), "balance": hp.pop("text_balance", False)}
        hp["losses"] |= {"kl": hp.pop("kl_weight", 1.0), "read": hp.pop("read_weight", 0.0)}
        for gone in ("match_weight", "image_encoder", "objective"):
            hp.pop(gone, None)
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("image_encoder.")]:
            del state[key]

    # -- upstream / artifact ----------------------------------------------------------------------
    @classmethod
    def upstream_kwargs(cls, manifests: Manifests) -> dict[str, Any]:
        return {"text_encoder": manifests["siamese"]["text_encoder"]}

    def load_upstream(self, manifests: Manifests) -> None:
        load_submodule(self.text_encoder, manifests["siamese"]["checkpoint"], prefix="text_encoder.")

    def export_artifact(self, directory: Path, datamodule: pl.LightningDataModule) -> dict[str, Any]:
        return {"dims": {"image_size": self.hparams.size, "embedding": self.text_encoder.embed_dim}}

    # -- sampling API -----------------------------------------------------------------------------
    @torch.no_grad()
    def embed_text(self, features: Tensor) -> Tensor:
        """Caption features (B, max_words * word_dim) -> what G and D read of the text (``text.parts``)."""
        return self.text_encoder(features, parts=self.text_input.parts, balanced=self.text_input.balance)

    @torch.no_grad()
    def generate(self, text_features: Tensor, z: Tensor | None = None, sample_condition: bool = False) -> Tensor:
        """Images (B, 3, size, size) in [-1, 1] for caption features, from the EMA generator when there is one.

        By default c is the CA mean mu: the caption alone decides the condition and ``z`` carries all the
        variety, so a fixed ``z`` gives repeatable images. ``sample_condition=True`` draws c as in training.
        G runs in eval mode (BN running statistics), so one image does not depend on the rest of the batch
        and sampling never moves the running statistics; the caller's mode is restored afterwards.
        """
        generator = self.sampling_generator
        if z is None:
            z = self.noise(len(text_features), text_features.device)
        was_training = generator.training
        generator.eval()
        try:
            images, _, _ = generator(self.embed_text(text_features), z, sample_condition=sample_condition)
        finally:
            generator.train(was_training)
        return images.float()

    def sampling_inputs(self, batch: dict[str, Any], noise: torch.Generator) -> dict[str, Tensor]:
        text = batch["text"].float()
        return {"text": text, "z": torch.randn(len(text), self.z_dim, generator=noise)}

    def sample(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"image": self.generate(inputs["text"], inputs["z"])}

    # -- the losses -------------------------------------------------------------------------------
    def real_samples(self, batch: dict[str, Any]) -> Tensor:
        """The configured frame of every clip, (B, 3, size, size)."""
        video = batch.get("video")
        if video is None:
            raise T2VError("stage1 trains on the clips' frames, but the batch has none; set data.with_video=true")
        frames, height = video.shape[2], video.shape[3]
        frame, size = self.hparams.frame, self.hparams.size
        if not -frames <= frame < frames:
            raise T2VError(f"model.frame={frame} is outside the {frames}-frame clips; use 0..{frames - 1} (-1 = last)")
        if height != size or video.shape[4] != size:
            raise T2VError(
                f"model.size={size} but the clips are {height}x{video.shape[4]}; keep model.size=${{data.size}}"
            )
        return video[:, :, frame]

    def noise(self, batch_size: int, device: torch.device) -> Tensor:
        return torch.randn(batch_size, self.z_dim, device=device)

    def wrong_indices(self, batch: dict[str, Any]) -> Tensor:
        """Row j for each row i whose caption says something else (different labels, or features)."""
        return mismatched_indices(caption_keys(batch))

    def discriminator_terms(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        real = self.real_samples(batch)
        embedding = self.embed_text(batch["text"])
        with torch.no_grad():
            fake, _, _ = self.generator(embedding, self.noise(len(real), real.device))
        features = self.discriminator.features(real)
        real_logits = self.discriminator.logits(features, embedding)
        wrong_logits = self.discriminator.logits(features, embedding[self.wrong_indices(batch)])
        wrong = self.gan.fake(wrong_logits)
        terms = {"d_wrong": probability(wrong_logits)}
        contrast_embedding = self.contrast_embedding(batch)
        if contrast_embedding is not None:  # hard wrong captions from the data (data.contrast): half the wrong pairs
            contrast_logits = self.discriminator.logits(features, contrast_embedding)
            wrong = 0.5 * (wrong + self.gan.fake(contrast_logits))
            terms["d_contrast"] = probability(contrast_logits)
        fake_logits = self.discriminator(fake, embedding)
        loss = self.gan.real(real_logits) + 0.5 * (wrong + self.gan.fake(fake_logits))
        terms |= {"d_real": probability(real_logits), "d_fake": probability(fake_logits)}
        if self.losses.read:
            read = self.reading_loss(features, embedding, caption_keys(batch), contrast_embedding)
            loss = loss + self.losses.read * read
            terms["d_read"] = read.detach()
        return {"d_loss": loss, **terms}

    def generator_terms(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        embedding = self.embed_text(batch["text"])
        z = self.noise(len(embedding), embedding.device)
        fake, mu, log_sigma = self.generator(embedding, z)
        kl = kl_divergence(mu, log_sigma)
        features = self.discriminator.features(fake)
        adversarial = self.gan.generator(self.discriminator.logits(features, embedding))
        loss = adversarial + self.losses.kl * kl
        terms = {"g_adv": adversarial.detach(), "kl": kl.detach()}
        if self.losses.interpolation:
            between = self.interpolation_loss(embedding, self.wrong_indices(batch))
            loss = loss + self.losses.interpolation * between
            terms["g_between"] = between.detach()
        if self.losses.read:
            read = self.reading_loss(features, embedding, caption_keys(batch), self.contrast_embedding(batch))
            loss = loss + self.losses.read * read
            terms["g_read"] = read.detach()
        if self.losses.mode_seeking:
            z_other = self.noise(len(embedding), embedding.device)
            other, _, _ = self.generator(embedding, z_other)
            seeking = mode_seeking(fake, other, z, z_other)
            loss = loss + self.losses.mode_seeking * seeking
            terms["mode_seeking"] = seeking.detach()
        return {"g_loss": loss, **terms}

    def interpolation_loss(self, embedding: Tensor, others: Tensor) -> Tensor:
        """GAN-INT (Reed et al. 2016): the midpoint of each caption's text input and another caption's (``others``,
        which says something else) is text no image was drawn for; G's image for it must still pass D as real and
        matching. D never sees these pairs: G learns to draw the text space between the training captions, where
        unseen captions lie, as judged by what D learned from the seen ones."""
        between = 0.5 * (embedding + embedding[others])
        fake, _, _ = self.generator(between, self.noise(len(between), between.device))
        return self.gan.generator(self.discriminator(fake, between))

    def contrast_embedding(self, batch: dict[str, Any]) -> Tensor | None:
        """The text input of each image's contrast caption (``data.contrast``), when the batch has them."""
        return self.embed_text(batch["contrast_text"]) if "contrast_text" in batch else None

    def reading_loss(
        self, features: Tensor, embedding: Tensor, keys: Tensor, contrast_embedding: Tensor | None = None
    ) -> Tensor:
        """Cross-entropy of D picking each image's caption among the batch's; captions that mean the same thing
        (same ``keys``) as the right one are not counted as wrong. With ``contrast_embedding`` (each image's
        contrast caption), that caption is one more wrong one for its image."""
        n = len(keys)
        # One pass over the images: the contrast captions are read as extra columns, of which image i keeps its own.
        captions = embedding if contrast_embedding is None else torch.cat([embedding, contrast_embedding])
        scores = self.discriminator.reading_logits(features, captions)
        logits = without_other_matches(scores[:, :n], keys)
        if contrast_embedding is not None:
            logits = torch.cat([logits, scores[:, n:].diagonal()[:, None]], dim=1)
        return F.cross_entropy(logits, torch.arange(n, device=keys.device))
