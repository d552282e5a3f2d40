"""ProgressBar (``callbacks.progress_bar``): Lightning's rich progress bar, plus the numbers a module keeps in
``progress``.

Lightning copies every value logged with ``prog_bar=True`` from the device after every batch, for as long as the
epoch lasts; on a GPU each copy waits for the step to finish, so the next step cannot be queued behind it. The GAN
stages therefore log nothing to the bar and keep host numbers in ``progress`` instead, read on the steps the loggers
write (``t2v/models/gan.py``), which this bar shows beside Lightning's.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar


class ProgressBar(RichProgressBar):
    """A :class:`RichProgressBar` that also shows ``pl_module.progress`` (a dict of numbers), when the module has it."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        return {**super().get_metrics(trainer, pl_module), **getattr(pl_module, "progress", {})}
