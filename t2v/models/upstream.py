"""How a stage takes its frozen parts from the artifacts of the stages before it.

A stage module with upstream stages implements two hooks that the training app calls:

- ``upstream_kwargs(manifests) -> dict`` (classmethod): constructor arguments derived from the
  upstream manifests, such as the architecture of a frozen encoder. They become hyper-parameters,
  so ``Model.load_from_checkpoint(path)`` rebuilds the same architecture with no extras.
- ``load_upstream(manifests)``: copies the upstream weights into the frozen parts before training.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def load_submodule(module: nn.Module, checkpoint: str | Path, prefix: str = "") -> None:
    """Load the entries of a checkpoint's state_dict that start with ``prefix`` into ``module``."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    picked = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    module.load_state_dict(picked)


def freeze(module: nn.Module) -> nn.Module:
    """No gradients, eval mode (no dropout): a fixed function of its input."""
    module.requires_grad_(False)
    return module.eval()
