"""How a stage takes its frozen parts from the artifacts of the stages before it.

A stage module with upstream stages implements two hooks that the training app calls:

- ``upstream_kwargs(manifests) -> dict`` (classmethod): constructor arguments derived from the
  upstream manifests, such as the architecture of a frozen encoder. They become hyper-parameters,
  so ``Model.load_from_checkpoint(path)`` rebuilds the same architecture with no extras.
- ``load_upstream(manifests)``: copies the upstream weights into the frozen parts before training.
"""

from __future__ import annotations

import types
from pathlib import Path

import torch
from torch import nn


def load_submodule(module: nn.Module, checkpoint: str | Path, prefix: str = "") -> None:
    """Load the entries of a checkpoint's state_dict that start with ``prefix`` into ``module``."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    picked = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    module.load_state_dict(picked)


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def freeze(module: nn.Module) -> nn.Module:
    """No gradients, and eval mode for good (no dropout, BatchNorm/VAE in inference form): a fixed
    function of its input. Lightning switches the whole LightningModule to train mode every epoch; the
    frozen part ignores that, so no owner has to switch it back."""
    module.requires_grad_(False)
    module.train = types.MethodType(_stay_in_eval, module)
    return module.eval()
