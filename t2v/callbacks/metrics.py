"""Records validation metrics per epoch, so metrics.json can report final and best values."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch


def to_number(value: Any) -> float | Any:
    """Plain floats for JSON; tensors of one element become numbers."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    return value


class MetricsHistory(pl.Callback):
    """Keeps ``trainer.callback_metrics`` after every validation epoch (rank 0 holds the same values)."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row = {k: to_number(v) for k, v in trainer.callback_metrics.items()}
        self.history.append({"epoch": trainer.current_epoch, "step": trainer.global_step, **row})

    # Kept in checkpoints, so a resumed run's metrics.json reports the best over the whole run.
    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

    def best(self, monitor: str, mode: str) -> dict[str, Any] | None:
        """All metrics of the epoch where ``monitor`` was best."""
        rows = [r for r in self.history if isinstance(r.get(monitor), float)]
        if not rows:
            return None
        pick = min if mode == "min" else max
        return pick(rows, key=lambda r: r[monitor])
