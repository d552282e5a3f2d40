"""What t2v adds to Lightning's Trainer (``conf/trainer/``): checkpoint files written atomically and read safely, and
side trainings (a probe, a judge) that leave the stage's random state alone."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.seed import isolate_rng

from t2v.files import save_torch_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with two guarantees it lacks.

    - A checkpoint is written to a temporary file in its own folder and renamed over the target, so a crash or a
      full disk leaves the previous ``last.ckpt``/``best.ckpt`` intact (Lightning writes the target in place).
    - A checkpoint is always read with ``weights_only=True``: a t2v checkpoint holds tensors and plain values, so a
      planted pickle never runs, whatever torch's default or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` say.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_torch_atomic(checkpoint, path)

    def load_checkpoint(self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None) -> Any:
        where = {} if map_location is None else {"map_location": map_location}
        return super().load_checkpoint(path, weights_only=True, **where)


# Lightning's seed_everything also leaves the seed here, where the data loaders and DistributedSampler read it.
SEED_VARIABLES = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")


@contextmanager
def random_state_kept() -> Iterator[None]:
    """Whatever runs inside may seed and draw random numbers (a probe or a judge trained on the side): afterwards the
    random streams (torch, numpy, random, CUDA) and Lightning's seed variables are as they were. Otherwise a stage's
    data order would depend on whether its judge was cached, and two DDP ranks could shuffle with different seeds.
    Also a decorator."""
    saved = {name: os.environ.get(name) for name in SEED_VARIABLES}
    try:
        with isolate_rng():
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
