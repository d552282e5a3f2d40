"""Stage `videogan`: image -> video, after Vondrick et al. 2016 ("Generating Videos with Scene Dynamics").

The published image-to-video variant (``main_conditional.lua``), parameterised by size, clip length
and a channel-width multiplier (``width=1.0`` is the published network):

- G encodes the first frame with stride-2 convs down to a (1024 w) x 4 x 4 code. A 2D stream
  decodes it into one static background image; a 3D stream decodes it into a foreground video and
  a sigmoid mask; the clip is ``mask * foreground + (1 - mask) * background``.
- D is a stride-2 3D conv stack down to (T / 2**n) x 4 x 4 and one logit per clip.
- G's loss adds ``recon_weight * L1(first generated frame, input frame)``.

Departures, all off by default: ``noise_dim > 0`` joins a noise code at the bottleneck (the
published G is deterministic given the image); ``text_conditioning`` joins a frozen siamese
caption embedding to G's bottleneck and makes D matching-aware on (video, caption) pairs;
``clip_l1 > 0`` adds an L1 term between the whole generated clip and the real one (pix2pix's
supervised term), which teaches the caption's motion in far fewer steps than D alone; ``skips``
gives G's decoders U-Net skip connections from the frame encoder; ``warp`` replaces the generated
background with the input frame resampled by a generated flow per frame, so the clip moves the frame's
own pixels (its shapes stay sharp) and the mask and foreground paint only what the flow cannot;
``rigid_flow`` makes that flow one translation per frame, which moves the frame whole, like a camera pan.

Weights start as in the original: conv weights N(0, 0.01), biases 0, BatchNorm gamma N(1, 0.02).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from t2v.errors import T2VError
from t2v.models.gan import AdversarialModule, downsampling_levels, mismatched_indices, probability
from t2v.models.siamese import TextEncoder, caption_keys
from t2v.models.upstream import freeze, load_submodule

# Channels of the 4x4 bottleneck at width 1.0 (the published encoder ends at 1024 x 4 x 4).
BOTTLENECK_CHANNELS = 1024
# The original's BatchNorm eps in the frame encoder and the discriminator (Torch's 1e-3).
BN_EPS = 1e-3


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


def blur_half(images: Tensor) -> Tensor:
    """Images (B, C, H, W) averaged down to half size and bilinearly back: detail finer than 2 pixels is lost."""
    small = F.interpolate(images, scale_factor=0.5, mode="area")
    return F.interpolate(small, size=images.shape[-2:], mode="bilinear", align_corners=False)


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
    frame through the 4 x 4 bottleneck to redraw it, and learns the motion much sooner.
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
        warp: bool = False,
        flow_stride: int = 1,
        rigid_flow: bool = False,
    ) -> None:
        super().__init__()
        channels = level_channels(size, width)
        top, t0 = channels[-1], frames // 2 ** downsampling_levels(size)
        self.noise_dim, self.skips, self.warp, self.flow_stride = noise_dim, skips, warp, flow_stride
        self.rigid_flow = rigid_flow

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

        # Both decoders mirror the encoder's channels back up; the last level goes to pixels. With ``warp``
        # the background is the input frame itself, moved by a generated flow, so there is no 2D stream.
        if not warp:
            self.background = upsampling_levels(nn.ConvTranspose2d, nn.BatchNorm2d, joined, widths, skip_in)
            self.to_background = nn.Sequential(nn.ConvTranspose2d(widths[-1] + skip_in[-1], 3, 4, 2, 1), nn.Tanh())

        # The code is a single time step; a (t0, 1, 1) kernel unfolds it into t0 steps.
        self.unfold = nn.Sequential(nn.ConvTranspose3d(joined, top, (t0, 1, 1)), nn.BatchNorm3d(top), nn.ReLU())
        self.foreground = upsampling_levels(nn.ConvTranspose3d, nn.BatchNorm3d, top, widths, skip_in)
        pixels_in = widths[-1] + skip_in[-1]
        self.to_foreground = nn.Sequential(nn.ConvTranspose3d(pixels_in, 3, 4, 2, 1), nn.Tanh())
        self.to_mask = nn.Sequential(nn.ConvTranspose3d(pixels_in, 1, 4, 2, 1), nn.Sigmoid())
        if warp:
            # A flow per frame, in grid_sample's [-1, 1] units (it starts at zero: the first frame, still),
            # from the decoder level at 1/flow_stride of the frame size, then upsampled: a coarse flow is a
            # smooth one, and moves a shape whole instead of tearing it.
            strides = [2**k for k in range(downsampling_levels(size) + 1)]
            if flow_stride not in strides:
                raise T2VError(f"model.flow_stride={flow_stride} must be one of {strides} at size {size}")
            # Which of the 3D stream's outputs (unfold, then each up-level: 4 x 4, 8 x 8, ...) the flow reads.
            self.flow_level = len(widths) + 1 - (flow_stride.bit_length() - 1)
            if flow_stride == 1:
                self.to_flow: nn.Module = nn.ConvTranspose3d(pixels_in, 2, 4, 2, 1)
            else:
                self.to_flow = nn.Conv3d([top, *widths][self.flow_level], 2, 3, 1, 1)

    def with_skip(self, hidden: Tensor, features: list[Tensor]) -> Tensor:
        """``hidden`` joined with the encoder features of its resolution (tiled over time for video)."""
        if not self.skips or hidden.shape[-1] == features[-1].shape[-1]:  # the bottleneck is already in
            return hidden
        skip = next(f for f in features if f.shape[-1] == hidden.shape[-1])
        if hidden.dim() == 5:
            skip = skip.unsqueeze(2).expand(-1, -1, hidden.shape[2], -1, -1)
        return torch.cat([hidden, skip.to(hidden.dtype)], dim=1)

    def forward(self, image: Tensor, embedding: Tensor | None = None, z: Tensor | None = None) -> dict[str, Tensor]:
        features = []
        code = image
        for level in self.encoder:
            code = level(code)
            features.append(code)
        parts = [code]
        if self.noise_dim:
            if z is None:
                raise ValueError("this generator has noise_dim > 0 and needs z")
            parts.append(tile(z.to(code.dtype), code))
        if self.condition is not None:
            if embedding is None:
                raise ValueError("this generator is text-conditioned and needs a caption embedding")
            parts.append(tile(self.condition(embedding).to(code.dtype), code))
        joined = torch.cat(parts, dim=1)

        hidden = self.unfold(joined.unsqueeze(2))
        levels = [hidden]
        for level in self.foreground:
            hidden = level(self.with_skip(hidden, features))
            levels.append(hidden)
        hidden = self.with_skip(hidden, features)
        foreground, mask = self.to_foreground(hidden), self.to_mask(hidden)
        if self.warp:
            if self.flow_stride == 1:
                flow = self.to_flow(hidden)
            else:
                coarse = self.to_flow(levels[self.flow_level])
                flow = F.interpolate(coarse, size=mask.shape[2:], mode="trilinear", align_corners=False)
            fill = None
            if self.rigid_flow:
                # One displacement per frame: every pixel moves alike, so no shape can bend or tear. It pulls a
                # whole side's strip in from outside the frame, which the border pixels' replicas would streak.
                flow = flow.mean(dim=(-2, -1), keepdim=True).expand_as(flow)
                fill = border_colour(image)
            background = warp_frames(image, flow, fill)
            video = mask * foreground + (1 - mask) * background
            return {"video": video, "foreground": foreground, "background": image, "mask": mask, "flow": flow}
        background = joined
        for level in self.background:
            background = level(self.with_skip(background, features))
        background = self.to_background(self.with_skip(background, features))
        video = mask * foreground + (1 - mask) * background.unsqueeze(2)
        return {"video": video, "foreground": foreground, "background": background, "mask": mask}


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

    def __init__(
        self,
        frames: int = 32,
        size: int = 64,
        width: float = 1.0,
        recon_weight: float = 10.0,
        clip_l1: float = 0.0,
        skips: bool = False,
        warp: bool = False,
        flow_stride: int = 1,
        rigid_flow: bool = False,
        mask_l1: float = 0.0,
        noise_dim: int = 0,
        text_conditioning: bool = False,
        text_encoder: dict[str, Any] | None = None,
        text_code: bool = False,
        text_balance: bool = False,
        cond_dim: int = 128,
        lr_g: float = 2e-4,
        lr_d: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        d_steps: int = 1,
        gan_loss: str = "bce",
        clip_grad_norm: float | None = None,
        ema_decay: float = 0.0,
        ema_start: int = 0,
        input_blur: float = 0.0,
    ) -> None:
        super().__init__(
            lr_g=lr_g, lr_d=lr_d, betas=betas, d_steps=d_steps, gan_loss=gan_loss, clip_grad_norm=clip_grad_norm,
            ema_decay=ema_decay, ema_start=ema_start,
        )  # fmt: skip
        check_geometry(frames, size)
        if width <= 0:
            raise T2VError(f"model.width={width} must be positive; 1.0 is the published network, 0.125 a CPU-sized one")
        for name, value in (
            ("recon_weight", recon_weight),
            ("clip_l1", clip_l1),
            ("mask_l1", mask_l1),
            ("noise_dim", noise_dim),
        ):
            if value < 0:
                raise T2VError(f"model.{name}={value} must be 0 or more")
        if not 0 <= input_blur <= 1:
            raise T2VError(f"model.input_blur={input_blur} is a probability; use a value in [0, 1] (0 = off)")
        if rigid_flow and not warp:
            raise T2VError("model.rigid_flow=true shapes the warp's flow; set model.warp=true too, or rigid_flow=false")
        if text_conditioning and cond_dim < 1:
            raise T2VError(f"model.cond_dim={cond_dim} must be at least 1 with text conditioning (128 as in StackGAN)")
        if text_conditioning and not text_encoder:
            raise T2VError(
                "model.text_conditioning=true needs the siamese text encoder; train the siamese stage first "
                "(python train.py stage=siamese) and set stage.upstream.siamese=latest, "
                "or set model.text_conditioning=false"
            )
        self.save_hyperparameters()

        self.text_encoder: TextEncoder | None = None
        embed_dim = 0
        if text_conditioning:
            assert text_encoder is not None
            self.text_encoder = freeze(TextEncoder(**text_encoder))
            embed_dim = self.text_encoder.out_dim(text_code)
        self.generator = VideoGenerator(
            frames, size, width, noise_dim, embed_dim, cond_dim, skips, warp, flow_stride, rigid_flow
        )
        self.discriminator = VideoDiscriminator(frames, size, width, embed_dim, cond_dim)
        self.generator.apply(init_weights)
        if warp:
            nn.init.zeros_(self.generator.to_flow.weight)
        self.discriminator.apply(init_weights)
        self.setup_ema()  # after init: the EMA copy starts from the initialised generator

    # -- upstream / artifact ----------------------------------------------------------------------
    @classmethod
    def upstream_kwargs(cls, manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {"text_encoder": manifests["siamese"]["text_encoder"]} if "siamese" in manifests else {}

    def load_upstream(self, manifests: dict[str, dict[str, Any]]) -> None:
        if self.text_encoder is not None:
            if "siamese" not in manifests:
                raise T2VError(
                    "model.text_conditioning=true needs the siamese artifact; set stage.upstream.siamese=latest"
                )
            load_submodule(self.text_encoder, manifests["siamese"]["checkpoint"], prefix="text_encoder.")

    def export_artifact(self, directory: Path, datamodule: pl.LightningDataModule) -> dict[str, Any]:
        p = self.hparams
        embedding = self.text_encoder.embed_dim if self.text_encoder is not None else None
        return {
            "dims": {
                "frames": p.frames,
                "size": p.size,
                "text_conditioning": p.text_conditioning,
                "embedding": embedding,
            }
        }

    # -- the model ------------------------------------------------------------------------------
    def embed(self, text_features: Tensor | None) -> Tensor | None:
        """The frozen caption embedding, or None without text conditioning."""
        if self.text_encoder is None:
            return None
        if text_features is None:
            raise T2VError("this videogan model is text-conditioned; pass the caption's text features")
        with torch.no_grad():
            return self.text_encoder(
                text_features, with_code=self.hparams.text_code, balanced=self.hparams.text_balance
            )

    def noise(self, batch_size: int, device: torch.device) -> Tensor | None:
        noise_dim = self.hparams.noise_dim
        return torch.randn(batch_size, noise_dim, device=device) if noise_dim else None

    def real_video(self, batch: dict[str, Any]) -> Tensor:
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
        first = self.real_video(batch)[:, :, 0]
        if self.training and self.hparams.input_blur > 0:
            # At sampling time the input is a stage-I image, blurrier than any real frame.
            pick = torch.rand(len(first), device=first.device) < self.hparams.input_blur
            first = torch.where(pick[:, None, None, None], blur_half(first), first)
        return self.generator(first, embedding, self.noise(len(first), first.device))

    # -- the losses -----------------------------------------------------------------------------
    def discriminator_terms(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        video = self.real_video(batch)
        embedding = self.embed(batch.get("text"))
        with torch.no_grad():
            fake = self.fake(batch, embedding)["video"]
        real_features = self.discriminator.features(video)
        real_logits = self.discriminator.score(real_features, embedding)
        fake_logits = self.discriminator(fake, embedding)
        terms = {"d_real": probability(real_logits), "d_fake": probability(fake_logits)}
        if embedding is None:
            terms["d_loss"] = self.gan.real(real_logits) + self.gan.fake(fake_logits)
            return terms
        # Matching-aware (GAN-CLS): a real clip with another clip's caption is also "fake".
        wrong = mismatched_indices(caption_keys(batch))
        wrong_logits = self.discriminator.score(real_features, embedding[wrong])
        terms["d_wrong"] = probability(wrong_logits)
        terms["d_loss"] = self.gan.real(real_logits) + 0.5 * (self.gan.fake(wrong_logits) + self.gan.fake(fake_logits))
        return terms

    def generator_terms(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        p = self.hparams
        embedding = self.embed(batch.get("text"))
        out = self.fake(batch, embedding)
        adversarial = self.gan.generator(self.discriminator(out["video"], embedding))
        real = batch["video"].float()
        recon = F.l1_loss(out["video"][:, :, 0].float(), real[:, :, 0])
        mask = out["mask"].float().abs().mean()
        loss = adversarial + p.recon_weight * recon
        terms = {"g_adv": adversarial.detach(), "recon_l1": recon.detach(), "mask_l1": mask.detach()}
        if p.clip_l1:
            # Supervised, as pix2pix: the real clip that starts at this frame and fits this caption.
            clip = F.l1_loss(out["video"].float(), real)
            loss = loss + p.clip_l1 * clip
            terms["clip_l1"] = clip.detach()
        if p.mask_l1:
            loss = loss + p.mask_l1 * mask
        return {"g_loss": loss, **terms}

    # -- sampling -------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self, first_frame: Tensor, text_features: Tensor | None = None, z: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Clips from first frames (B, 3, H, W) in [-1, 1], with the sampling (EMA if any) generator in eval mode.

        ``text_features`` are captions as the data gives them (the batch's ``text``), required when
        text-conditioned; ``z`` (B, noise_dim) is drawn from N(0, 1) when not given. Returns ``video``
        and ``foreground`` (B, 3, T, H, W), ``background`` (B, 3, H, W) and ``mask`` (B, 1, T, H, W); with ``warp``,
        ``background`` is the input frame and ``flow`` (B, 2, T, H, W) moves it.
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
