"""Stage `videogan`: image -> video, after Vondrick et al. 2016 ("Generating Videos with Scene Dynamics").

The published image-to-video variant (``main_conditional.lua``), parameterised by size, clip length
and a channel-width multiplier (``width=1.0`` is the published network):

- G encodes the first frame with stride-2 convs down to a (1024 w) x 4 x 4 code. A 2D stream
  decodes it into one static background image; a 3D stream decodes it into a foreground video and
  a sigmoid mask; the clip is ``mask * foreground + (1 - mask) * background``.
- D is a stride-2 3D conv stack down to (T / 2**n) x 4 x 4 and one logit per clip.
- G's loss adds ``losses.recon_l1 * L1(first generated frame, input frame)``.

The options are named parts (``conf/model/videogan.yaml``): ``generator``, ``text``, ``losses``, ``optim``,
``ema``. Departures, all off by default: ``generator.noise_dim > 0`` joins a noise code at the bottleneck (the
published G is deterministic given the image); ``text.parts`` joins the frozen siamese text (embedding, VAE code,
word mean) to G's bottleneck and makes D matching-aware on (video, caption) pairs; ``losses.clip_l1 > 0`` adds
an L1 term between the whole generated clip and the real one (pix2pix's supervised term), which teaches the
caption's motion in far fewer steps than D alone; ``generator.skips`` gives G's decoders U-Net skip connections
from the frame encoder; ``generator.background`` chooses what lies behind the foreground: the ``generated``
2D stream (published), the input frame moved by a generated ``flow`` per frame (the clip moves the frame's own
pixels, so its shapes stay sharp, and the mask and foreground paint only what the flow cannot), or by one
``translation`` per frame (the frame moves whole, like a camera pan).

Weights start as in the original: conv weights N(0, 0.01), biases 0, BatchNorm gamma N(1, 0.02).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from t2v.errors import T2VError
from t2v.models.captions import caption_keys, mismatched_indices
from t2v.models.gan import (
    AdversarialModule,
    Group,
    downsampling_levels,
    probability,
    upgrade_shared_hparams,
    upgrade_text_parts,
)
from t2v.models.gan import Losses as GanLosses
from t2v.models.settings import at_least, one_of, settings
from t2v.models.siamese import TextEncoder, TextInput
from t2v.models.stage import Manifests
from t2v.models.upstream import freeze, load_submodule

# Channels of the 4x4 bottleneck at width 1.0 (the published encoder ends at 1024 x 4 x 4).
BOTTLENECK_CHANNELS = 1024
# The original's BatchNorm eps in the frame encoder and the discriminator (Torch's 1e-3).
BN_EPS = 1e-3
# What lies behind the foreground: the published 2D stream, or the input frame moved by a flow or a translation.
BACKGROUNDS = ("generated", "flow", "translation")


@dataclass
class Generator:
    """``model.generator``: noise, skips, and what lies behind the foreground."""

    noise_dim: int = 0  # a noise code joined at the bottleneck; 0 = none (the published G is deterministic)
    skips: bool = False  # U-Net skip connections from the frame encoder into both decoder streams
    background: str = "generated"  # generated | flow | translation
    flow_stride: int = 1  # flow and translation: made at 1/flow_stride of the frame size, then upsampled

    def __post_init__(self) -> None:
        at_least("generator", 0, noise_dim=self.noise_dim)
        one_of("generator", "background", self.background, BACKGROUNDS)


@dataclass
class VideoText(TextInput):
    """``model.text``: the parts of the text G and D read (none: the published, unconditioned net), and the size
    of their projection (FC + LeakyReLU, StackGAN's 128) in G and D."""

    parts: list[str] = field(default_factory=list)
    cond_dim: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.parts:
            at_least("text", 1, cond_dim=self.cond_dim)


@dataclass
class Losses(GanLosses):
    """``model.losses``: the adversarial loss (``gan``: bce is the published 2-way softmax), and the weight of each
    other term of the same name in the log."""

    recon_l1: float = 10.0  # L1(first generated frame, input frame), published 10
    clip_l1: float = 0.0  # L1(generated clip, real clip), pix2pix's supervised term
    mask_l1: float = 0.0  # mean |mask|, the mask's sparsity (0.1 in the unconditional paper)

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least("losses", 0, recon_l1=self.recon_l1, clip_l1=self.clip_l1, mask_l1=self.mask_l1)


def check_geometry(frames: int, size: int) -> None:
    """Reject sizes and clip lengths the stride-2 stacks cannot take down to (T / 2**n) x 4 x 4."""
    n = downsampling_levels(size)
    if frames < 2**n or frames % 2**n:
        raise T2VError(
            f"model.frames={frames} does not fit the discriminator's {n} stride-2 levels at size {size}; "
            f"use a multiple of {2**n} (data.frames={2**n} or {2 ** (n + 1)})"
        )


def level_channels(size: int, width: float) -> list[int]:
    """Channels after each stride-2 level, shallow to deep; the deepest is the bottleneck.

    Each level doubles the channels and the deepest has ``1024 * width``, which gives the published
    128, 256, 512, 1024 at size 64 and width 1.
    """
    n = downsampling_levels(size)
    top = BOTTLENECK_CHANNELS * width
    return [max(1, round(top / 2 ** (n - 1 - i))) for i in range(n)]


def init_weights(module: nn.Module) -> None:
    """The original's init (convs N(0, 0.01), BN gamma N(1, 0.02)); linear layers keep PyTorch's.

    Linear layers only project the caption embedding; at N(0, 0.01) the condition would enter the
    bottleneck ~100x weaker than the BN-normalised image code and take long to be noticed.
    """
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.normal_(module.weight, 0.0, 0.01)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def tile(vector: Tensor, like: Tensor) -> Tensor:
    """(B, C) -> (B, C, *like's spatial dims), the same vector at every position."""
    return vector.reshape(*vector.shape, *(1,) * (like.dim() - 2)).expand(-1, -1, *like.shape[2:])


def condition_projection(embed_dim: int, cond_dim: int) -> nn.Sequential:
    """The caption embedding -> a small conditioning vector (StackGAN/GAN-CLS style FC + LeakyReLU)."""
    return nn.Sequential(nn.Linear(embed_dim, cond_dim), nn.LeakyReLU(0.2))


def border_colour(image: Tensor) -> Tensor:
    """(B, C): the median colour of each image's outermost pixels, its background wherever little touches the edge."""
    edges = torch.cat([image[..., 0, :], image[..., -1, :], image[..., :, 0], image[..., :, -1]], dim=-1)
    return edges.median(dim=-1).values


def warp_frames(image: Tensor, flow: Tensor, fill: Tensor | None = None) -> Tensor:
    """The image (B, C, H, W) resampled at every frame's flow (B, 2, T, H, W): frame t at pixel p is the image
    at p + flow[t](p) (x then y, in grid_sample's [-1, 1] units), bilinearly. Outside the image: the nearest
    border pixel, or the colour ``fill`` (B, C) when given."""
    b, c, h, w = image.shape
    frames = flow.shape[2]
    ys, xs = torch.meshgrid(
        torch.linspace(-1, 1, h, device=image.device), torch.linspace(-1, 1, w, device=image.device), indexing="ij"
    )
    identity = torch.stack([xs, ys], dim=-1)  # (H, W, 2), x first as grid_sample wants
    grid = identity + flow.float().permute(0, 2, 3, 4, 1)  # (B, T, H, W, 2)
    offset = fill.float()[:, :, None, None] if fill is not None else 0.0
    source = (image.float() - offset).unsqueeze(1).expand(-1, frames, -1, -1, -1).reshape(b * frames, c, h, w)
    padding = "border" if fill is None else "zeros"  # zeros of (image - fill): the fill colour
    warped = F.grid_sample(source, grid.reshape(b * frames, h, w, 2), padding_mode=padding, align_corners=True)
    warped = warped.reshape(b, frames, c, h, w).transpose(1, 2)
    if fill is not None:
        warped = warped + offset.unsqueeze(2)
    return warped.to(image.dtype)


def upsampling_levels(
    conv: type[nn.Module], norm: type[nn.Module], channels_in: int, widths: list[int], skip_in: list[int]
) -> nn.ModuleList:
    """A decoder stream's x2 levels (transposed conv, BN, ReLU) to ``widths``; each level after the first also
    takes the encoder's skip channels of its input resolution (``skip_in``, 0 without skips)."""
    levels = nn.ModuleList()
    previous = channels_in
    for c, extra in zip(widths, [0, *skip_in[:-1]], strict=True):
        levels.append(nn.Sequential(conv(previous + extra, c, 4, 2, 1), norm(c), nn.ReLU()))
        previous = c
    return levels


class VideoGenerator(nn.Module):
    """First frame (+ caption embedding, + noise) -> background, foreground, mask and the composed clip.

    With ``skips`` (off as published), every decoder level also sees the frame encoder's features at its
    resolution (tiled over time in the 3D stream), U-Net style: G no longer has to squeeze the whole
    frame through the 4 x 4 bottleneck to redraw it, and learns the motion much sooner. ``background`` decides,
    once, what lies behind the foreground (:meth:`generated_background` or :meth:`moved_frame`).
    """

    def __init__(
        self,
        frames: int,
        size: int,
        width: float,
        noise_dim: int,
        embed_dim: int,
        cond_dim: int,
        skips: bool = False,
        background: str = "generated",
        flow_stride: int = 1,
    ) -> None:
        super().__init__()
        one_of("generator", "background", background, BACKGROUNDS)
        channels = level_channels(size, width)
        top, t0 = channels[-1], frames // 2 ** downsampling_levels(size)
        self.noise_dim, self.skips, self.flow_stride = noise_dim, skips, flow_stride
        self.clip_shape = (frames, size, size)

        self.encoder = nn.ModuleList()
        previous = 3
        for i, c in enumerate(channels):
            # as published: no BN on the first layer
            norm = [nn.BatchNorm2d(c, eps=BN_EPS)] if i > 0 else []
            self.encoder.append(nn.Sequential(nn.Conv2d(previous, c, 4, 2, 1), *norm, nn.ReLU()))
            previous = c

        self.condition = condition_projection(embed_dim, cond_dim) if embed_dim else None
        joined = top + noise_dim + (cond_dim if embed_dim else 0)
        # Channels each decoder level takes in from the encoder: none at the bottleneck (it is in `joined`).
        skip_in = [c if skips else 0 for c in reversed(channels[:-1])]
        widths = list(reversed(channels[:-1]))

        # Both decoders mirror the encoder's channels back up; the last level goes to pixels. A moved frame needs
        # no 2D stream. (Layers are registered in the published order, which checkpoints and optimizer states keep.)
        self.draw_background: Callable[..., dict[str, Tensor]] = self.moved_frame
        if background == "generated":
            self.draw_background = self.generated_background
            self.background = upsampling_levels(nn.ConvTranspose2d, nn.BatchNorm2d, joined, widths, skip_in)
            self.to_background = nn.Sequential(nn.ConvTranspose2d(widths[-1] + skip_in[-1], 3, 4, 2, 1), nn.Tanh())

        # The code is a single time step; a (t0, 1, 1) kernel unfolds it into t0 steps.
        self.unfold = nn.Sequential(nn.ConvTranspose3d(joined, top, (t0, 1, 1)), nn.BatchNorm3d(top), nn.ReLU())
        self.foreground = upsampling_levels(nn.ConvTranspose3d, nn.BatchNorm3d, top, widths, skip_in)
        pixels_in = widths[-1] + skip_in[-1]
        self.to_foreground = nn.Sequential(nn.ConvTranspose3d(pixels_in, 3, 4, 2, 1), nn.Tanh())
        self.to_mask = nn.Sequential(nn.ConvTranspose3d(pixels_in, 1, 4, 2, 1), nn.Sigmoid())
        if background != "generated":
            # A flow per frame, in grid_sample's [-1, 1] units (it starts at zero: the first frame, still),
            # from the decoder level at 1/flow_stride of the frame size, then upsampled: a coarse flow is a
            # smooth one, and moves a shape whole instead of tearing it.
            strides = [2**k for k in range(downsampling_levels(size) + 1)]
            if flow_stride not in strides:
                raise T2VError(f"model.generator.flow_stride={flow_stride} must be one of {strides} at size {size}")
            # Which of the 3D stream's outputs (unfold, then each up-level: 4 x 4, 8 x 8, ...) the flow reads.
            self.flow_level = len(widths) + 1 - (flow_stride.bit_length() - 1)
            self.make_flow = self.full_size_flow if flow_stride == 1 else self.upsampled_flow
            if flow_stride == 1:
                self.to_flow: nn.Module = nn.ConvTranspose3d(pixels_in, 2, 4, 2, 1)
            else:
                self.to_flow = nn.Conv3d([top, *widths][self.flow_level], 2, 3, 1, 1)
            self.shape_flow = self.as_translation if background == "translation" else self.as_field

    def with_skip(self, hidden: Tensor, features: list[Tensor]) -> Tensor:
        """``hidden`` joined with the encoder features of its resolution (tiled over time for video)."""
        if not self.skips or hidden.shape[-1] == features[-1].shape[-1]:  # the bottleneck is already in
            return hidden
        skip = next(f for f in features if f.shape[-1] == hidden.shape[-1])
        if hidden.dim() == 5:
            skip = skip.unsqueeze(2).expand(-1, -1, hidden.shape[2], -1, -1)
        return torch.cat([hidden, skip.to(hidden.dtype)], dim=1)

    def encode(self, image: Tensor) -> list[Tensor]:
        """The frame encoder's features at every level, shallow to deep; the deepest is the 4 x 4 code."""
        features = []
        for level in self.encoder:
            image = level(image)
            features.append(image)
        return features

    def join(self, code: Tensor, embedding: Tensor | None, z: Tensor | None) -> Tensor:
        """The bottleneck: the frame's code, with the noise and the caption's projection tiled over it."""
        parts = [code]
        if self.noise_dim:
            if z is None:
                raise ValueError("this generator has noise_dim > 0 and needs z")
            parts.append(tile(z.to(code.dtype), code))
        if self.condition is not None:
            if embedding is None:
                raise ValueError("this generator is text-conditioned and needs a caption embedding")
            parts.append(tile(self.condition(embedding).to(code.dtype), code))
        return torch.cat(parts, dim=1)

    def foreground_levels(self, joined: Tensor, features: list[Tensor]) -> list[Tensor]:
        """The 3D stream's outputs: the unfolded code, then every up-level's (skips joined before each level)."""
        levels = [self.unfold(joined.unsqueeze(2))]
        for level in self.foreground:
            levels.append(level(self.with_skip(levels[-1], features)))
        return levels

    def forward(self, image: Tensor, embedding: Tensor | None = None, z: Tensor | None = None) -> dict[str, Tensor]:
        features = self.encode(image)
        joined = self.join(features[-1], embedding, z)
        levels = self.foreground_levels(joined, features)
        pixels = self.with_skip(levels[-1], features)
        foreground, mask = self.to_foreground(pixels), self.to_mask(pixels)
        background = self.draw_background(image, joined, features, levels, pixels)
        video = mask * foreground + (1 - mask) * background.pop("behind")
        return {"video": video, "foreground": foreground, "mask": mask, **background}

    def generated_background(
        self, image: Tensor, joined: Tensor, features: list[Tensor], levels: list[Tensor], pixels: Tensor
    ) -> dict[str, Tensor]:
        """The published 2D stream: one static background image, drawn from the code."""
        background = joined
        for level in self.background:
            background = level(self.with_skip(background, features))
        background = self.to_background(self.with_skip(background, features))
        return {"background": background, "behind": background.unsqueeze(2)}

    def moved_frame(
        self, image: Tensor, joined: Tensor, features: list[Tensor], levels: list[Tensor], pixels: Tensor
    ) -> dict[str, Tensor]:
        """The input frame resampled at every frame by a generated flow (a field, or one translation per frame)."""
        flow, fill = self.shape_flow(self.make_flow(levels, pixels), image)
        return {"background": image, "flow": flow, "behind": warp_frames(image, flow, fill)}

    def full_size_flow(self, levels: list[Tensor], pixels: Tensor) -> Tensor:
        return self.to_flow(pixels)

    def upsampled_flow(self, levels: list[Tensor], pixels: Tensor) -> Tensor:
        """The flow made at a coarser level, trilinearly up to the clip: coarse is smooth, and moves a shape whole."""
        level = levels[self.flow_level]
        # In float32: under CPU bf16 autocast this coarse branch's backward crashed (segmentation fault) in about 4
        # runs of 10 (torch 2.13); it makes two channels at a coarse level, so the cost is nil.
        with torch.autocast(level.device.type, enabled=False):
            coarse = self.to_flow(level.float())
            return F.interpolate(coarse, size=self.clip_shape, mode="trilinear", align_corners=False)

    @staticmethod
    def as_field(flow: Tensor, image: Tensor) -> tuple[Tensor, Tensor | None]:
        """A flow field as it is; outside the frame, the nearest border pixel."""
        return flow, None

    @staticmethod
    def as_translation(flow: Tensor, image: Tensor) -> tuple[Tensor, Tensor | None]:
        """One displacement per frame (the flow's mean): every pixel moves alike, so no shape can bend or tear. It
        pulls a whole side's strip in from outside the frame, filled with the frame's border colour (the border
        pixels' replicas would streak)."""
        return flow.mean(dim=(-2, -1), keepdim=True).expand_as(flow), border_colour(image)


class VideoDiscriminator(nn.Module):
    """Clip (+ caption embedding) -> one logit per clip. ``features`` and ``score`` are split so a
    matching-aware loss can score one pass over the real clips against two captions."""

    def __init__(self, frames: int, size: int, width: float, embed_dim: int, cond_dim: int) -> None:
        super().__init__()
        channels = level_channels(size, width)
        top, t0 = channels[-1], frames // 2 ** downsampling_levels(size)
        layers: list[nn.Module] = []
        previous = 3
        for i, c in enumerate(channels):
            layers.append(nn.Conv3d(previous, c, 4, 2, 1))
            if i > 0:
                layers.append(nn.BatchNorm3d(c, eps=BN_EPS))
            layers.append(nn.LeakyReLU(0.2))
            previous = c
        self.features = nn.Sequential(*layers)
        self.condition = condition_projection(embed_dim, cond_dim) if embed_dim else None
        self.joint = (
            nn.Sequential(nn.Conv3d(top + cond_dim, top, 1), nn.BatchNorm3d(top, eps=BN_EPS), nn.LeakyReLU(0.2))
            if embed_dim
            else None
        )
        self.logit = nn.Conv3d(top, 1, (t0, 4, 4))

    def score(self, features: Tensor, embedding: Tensor | None = None) -> Tensor:
        """Logits (B,) from the final feature map (and the caption embedding when conditioned)."""
        if self.condition is not None and self.joint is not None:
            if embedding is None:
                raise ValueError("this discriminator is text-conditioned and needs a caption embedding")
            condition = tile(self.condition(embedding).to(features.dtype), features)
            features = self.joint(torch.cat([features, condition], dim=1))
        return self.logit(features).flatten()

    def forward(self, video: Tensor, embedding: Tensor | None = None) -> Tensor:
        return self.score(self.features(video), embedding)


class VideoGAN(AdversarialModule):
    """Image -> clip of ``frames`` frames: a two-stream generator against a 3D-conv discriminator."""

    hparams_format = 1  # 0: flat options (warp, rigid_flow, text_code, lr_g, ...), before the named parts

    def __init__(
        self,
        text_encoder: dict[str, Any] | None = None,
        frames: int = 32,
        size: int = 64,
        width: float = 1.0,
        generator: Group = None,
        text: Group = None,
        losses: Group = None,
        optim: Group = None,
        ema: Group = None,
        compile: bool = False,
    ) -> None:
        """``text_encoder``: the frozen siamese text encoder's architecture (from the upstream manifest, needed only
        with ``text.parts``); the rest: the clip geometry and the option groups of ``conf/model/videogan.yaml``."""
        super().__init__(settings(Losses, "losses", losses), width, optim, ema, compile)
        check_geometry(frames, size)
        g, self.text_input = settings(Generator, "generator", generator), settings(VideoText, "text", text)
        parts = self.text_input.parts
        if parts and not text_encoder:
            raise T2VError(
                f"model.text.parts={parts} needs the siamese text encoder; train the siamese stage first "
                "(python train.py stage=siamese) and set stage.upstream.siamese=latest, or set model.text.parts=[]"
            )
        self.save_hyperparameters(
            {
                "text_encoder": text_encoder if parts else None,
                "frames": frames,
                "size": size,
                "width": width,
                "generator": asdict(g),
                "text": asdict(self.text_input),
                "losses": asdict(self.losses),
                **self.shared_hparams(),
            }  # fmt: skip
        )
        # The frozen siamese text encoder, built only when G and D read the text.
        self.text_encoder = freeze(TextEncoder(**text_encoder)) if parts and text_encoder else None
        embed_dim = 0
        if self.text_encoder is not None:
            self.text_encoder.check_parts(parts)
            embed_dim = self.text_encoder.out_dim(parts)
        self.noise_dim = g.noise_dim
        cond_dim = self.text_input.cond_dim
        self.generator = VideoGenerator(
            frames, size, width, g.noise_dim, embed_dim, cond_dim, g.skips, g.background, g.flow_stride
        )
        self.discriminator = VideoDiscriminator(frames, size, width, embed_dim, cond_dim)
        self.generator.apply(init_weights)
        if g.background != "generated":
            nn.init.zeros_(self.generator.to_flow.weight)  # the flow starts still: the first frame, held
        self.discriminator.apply(init_weights)
        self.setup_ema()  # after init: the EMA copy starts from the initialised generator

    @classmethod
    def upgrade_checkpoint(cls, checkpoint: dict[str, Any], version: int) -> None:
        """Format 0 -> 1: the flat options become named parts; ``warp``/``rigid_flow`` become one background choice,
        ``text_conditioning``/``text_code`` the text parts; ``input_blur`` (training only) is gone."""
        hp = checkpoint["hyper_parameters"]
        upgrade_shared_hparams(hp)
        warp, rigid = hp.pop("warp", False), hp.pop("rigid_flow", False)
        hp["generator"] = {
            "noise_dim": hp.pop("noise_dim", 0), "skips": hp.pop("skips", False),
            "background": "translation" if rigid else "flow" if warp else "generated",
            "flow_stride": hp.pop("flow_stride", 1),
        }  # fmt: skip
        parts = upgrade_text_parts(hp) if hp.pop("text_conditioning", False) else []
        hp.pop("text_code", None)
        hp["text"] = {"parts": parts, "balance": hp.pop("text_balance", False), "cond_dim": hp.pop("cond_dim", 128)}
        hp["losses"] |= {key: hp.pop(old, default) for key, old, default in (
            ("recon_l1", "recon_weight", 10.0), ("clip_l1", "clip_l1", 0.0), ("mask_l1", "mask_l1", 0.0))}  # fmt: skip
        hp.pop("input_blur", None)

    # -- upstream / artifact ----------------------------------------------------------------------
    @classmethod
    def upstream_kwargs(cls, manifests: Manifests) -> dict[str, Any]:
        return {"text_encoder": manifests["siamese"]["text_encoder"]} if "siamese" in manifests else {}

    def load_upstream(self, manifests: Manifests) -> None:
        if self.text_encoder is not None:
            if "siamese" not in manifests:
                raise T2VError(
                    f"model.text.parts={self.text_input.parts} needs the siamese artifact; "
                    "set stage.upstream.siamese=latest"
                )
            load_submodule(self.text_encoder, manifests["siamese"]["checkpoint"], prefix="text_encoder.")

    def export_artifact(self, directory: Path, datamodule: pl.LightningDataModule) -> dict[str, Any]:
        p = self.hparams
        embedding = self.text_encoder.embed_dim if self.text_encoder is not None else None
        conditioned = self.text_encoder is not None
        return {"dims": {"frames": p.frames, "size": p.size, "text_conditioning": conditioned, "embedding": embedding}}

    # -- the model ------------------------------------------------------------------------------
    def embed(self, text_features: Tensor | None) -> Tensor | None:
        """What G and D read of the caption (``text.parts``), or None when they read no text."""
        if self.text_encoder is None:
            return None
        if text_features is None:
            raise T2VError("this videogan model is text-conditioned; pass the caption's text features")
        with torch.no_grad():
            return self.text_encoder(text_features, parts=self.text_input.parts, balanced=self.text_input.balance)

    def noise(self, batch_size: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor | None:
        if not self.noise_dim:
            return None
        return torch.randn(batch_size, self.noise_dim, generator=generator, device=device)

    def real_samples(self, batch: dict[str, Any]) -> Tensor:
        """The batch's clips, checked against the geometry the networks were built for."""
        p = self.hparams
        video = batch.get("video")
        if video is None:
            raise T2VError("videogan trains on clips, but the batch has none; set data.with_video=true")
        if tuple(video.shape[1:]) != (3, p.frames, p.size, p.size):
            raise T2VError(
                f"the clips are {tuple(video.shape[1:])} (C, T, H, W) but the model was built for "
                f"(3, {p.frames}, {p.size}, {p.size}); set model.frames/model.size to data.frames/data.size"
            )
        return video

    def fake(self, batch: dict[str, Any], embedding: Tensor | None) -> dict[str, Tensor]:
        """G's clips from the real first frames (the training input, as published)."""
        first = self.real_samples(batch)[:, :, 0]
        return self.generator(first, embedding, self.noise(len(first), first.device))

    # -- the losses -----------------------------------------------------------------------------
    def discriminator_terms(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        video = self.real_samples(batch)
        embedding = self.embed(batch.get("text"))
        with torch.no_grad():
            fake = self.fake(batch, embedding)["video"]
        real_features = self.discriminator.features(video)
        real_logits = self.discriminator.score(real_features, embedding)
        fake_logits = self.discriminator(fake, embedding)
        terms = {"d_real": probability(real_logits), "d_fake": probability(fake_logits)}
        fake_term = self.gan.fake(fake_logits)
        if embedding is not None:  # matching-aware (GAN-CLS): a real clip with another clip's caption is "fake" too
            wrong_logits = self.discriminator.score(real_features, embedding[mismatched_indices(caption_keys(batch))])
            terms["d_wrong"] = probability(wrong_logits)
            fake_term = 0.5 * (self.gan.fake(wrong_logits) + fake_term)
        return {"d_loss": self.gan.real(real_logits) + fake_term, **terms}

    def generator_terms(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        weights = self.losses
        embedding = self.embed(batch.get("text"))
        out = self.fake(batch, embedding)
        adversarial = self.gan.generator(self.discriminator(out["video"], embedding))
        real = batch["video"].float()
        recon = F.l1_loss(out["video"][:, :, 0].float(), real[:, :, 0])
        mask = out["mask"].float().abs().mean()
        loss = adversarial + weights.recon_l1 * recon
        terms = {"g_adv": adversarial.detach(), "recon_l1": recon.detach(), "mask_l1": mask.detach()}
        if weights.clip_l1:
            # Supervised, as pix2pix: the real clip that starts at this frame and fits this caption.
            clip = F.l1_loss(out["video"].float(), real)
            loss = loss + weights.clip_l1 * clip
            terms["clip_l1"] = clip.detach()
        if weights.mask_l1:
            loss = loss + weights.mask_l1 * mask
        return {"g_loss": loss, **terms}

    # -- sampling -------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self, first_frame: Tensor, text_features: Tensor | None = None, z: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Clips from first frames (B, 3, H, W) in [-1, 1], with the sampling (EMA if any) generator in eval mode.

        ``text_features`` are captions as the data gives them (the batch's ``text``), required when
        text-conditioned and ignored otherwise; ``z`` (B, noise_dim) is drawn from N(0, 1) when not given. Returns
        ``video`` and ``foreground`` (B, 3, T, H, W), ``background`` (B, 3, H, W) and ``mask`` (B, 1, T, H, W); when
        the background is the moved frame, ``background`` is the input frame and ``flow`` (B, 2, T, H, W) moves it.
        """
        size = self.hparams.size
        if first_frame.dim() != 4 or first_frame.shape[1] != 3 or tuple(first_frame.shape[2:]) != (size, size):
            raise T2VError(
                f"first_frame has shape {tuple(first_frame.shape)}; this model takes (B, 3, {size}, {size}) "
                f"images in [-1, 1] (resize the frames to {size}x{size})"
            )
        first_frame = first_frame.to(self.device, torch.float32)
        embedding = self.embed(text_features.to(self.device) if text_features is not None else None)
        if z is None:
            z = self.noise(len(first_frame), self.device)
        generator = self.sampling_generator
        was_training = generator.training
        generator.eval()  # BN running statistics: a sample must not depend on the rest of its batch
        try:
            out = generator(first_frame, embedding, z.to(self.device) if z is not None else None)
        finally:
            generator.train(was_training)
        return {k: v.float() for k, v in out.items()}

    def sampling_inputs(self, batch: dict[str, Any], noise: torch.Generator) -> dict[str, Tensor]:
        first = self.real_samples(batch)[:, :, 0]
        z = self.noise(len(first), noise.device, generator=noise)  # drawn where the generator is, then moved
        return {"first": first, "text": batch["text"].float(), **({"z": z.to(first.device)} if z is not None else {})}

    def sample(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"input": inputs["first"], **self.generate(inputs["first"], inputs["text"], inputs.get("z"))}
