"""What t2v adds to Lightning's Trainer (``conf/trainer/``): checkpoint files written atomically and read safely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.io import TorchCheckpointIO

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
