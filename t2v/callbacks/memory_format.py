"""Convolution weights in the channels-last memory layouts, which oneDNN (CPU) and cuDNN (GPU) run fastest."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn

# The channels-last layout of each convolution's weight rank: 2D convs (4D weights) and 3D convs (5D weights).
LAYOUTS = {4: torch.channels_last, 5: torch.channels_last_3d}


def to_channels_last(module: nn.Module) -> int:
    """Store every 2D and 3D convolution weight of ``module`` channels-last, in place; returns how many moved.

    ``Module.to(memory_format=...)`` cannot do this for a model with both kinds (the video GAN's frame encoder is
    2D): it applies one layout to every 4D and 5D tensor and refuses a 3D layout on a 4D one. The parameters stay
    the same objects, so optimizers built before keep them, and checkpoints load into them as before (the layout
    is not part of a state dict).
    """
    moved = 0
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d | nn.ConvTranspose3d):
            weight = layer.weight
            layout = LAYOUTS[weight.dim()]
            if not weight.is_contiguous(memory_format=layout):
                weight.data = weight.data.contiguous(memory_format=layout)
                moved += 1
    return moved


class ChannelsLast(pl.Callback):
    """Put the stage's convolution weights channels-last before training; its activations follow (a convolution
    with a channels-last weight returns a channels-last output).

    The published-size stage-I step takes 40% less time on 2 CPU cores this way (docs/results.md, Speed); the
    small quickstart networks run as fast as before. Switch it off with ``callbacks.channels_last=null``.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        to_channels_last(pl_module)
