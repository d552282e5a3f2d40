"""Resuming and preemption (``callbacks.exact_resume``): what a checkpoint needs, beyond Lightning's own state, for
a resumed run to continue bitwise where the interrupted one was, and a checkpoint at the moment a job is stopped.

Lightning saves the weights, optimizers, loop counters and callback states, but not the random generators: a resumed
GAN draws other noise than the uninterrupted run would have. :class:`ExactResume` saves the global generators of
torch, numpy and Python with every checkpoint and sets them back when training restarts, after the sanity check and
anything else that draws before the first training batch. The data order needs no state: the training sampler
(:class:`t2v.data.datamodule.EpochShuffle`) is a function of the seed and the epoch, and a run resumed mid-epoch
skips the batches it already trained on. The checkpoint also keeps the W&B run id, so the resumed run logs into the
same W&B run.

On SIGTERM (what SLURM and most schedulers send before they kill a job) Lightning stops after the current batch
with a ``SIGTERMException``, and :meth:`ExactResume.on_exception` saves ``last.ckpt`` at that step before the
process goes. (submitit's requeue signal instead exits wherever the job is, perhaps between a D and a G update: that
state is not saved, and the job resumes from the last checkpoint it wrote.) Under SLURM, Lightning's
handler of the requeue signal (SIGUSR1, sent ``--signal=USR1@<seconds>`` before the time limit) saves
``hpc_ckpt_<n>.ckpt`` and requeues the job, then trains on until the job is killed; t2v makes it stop after the
current batch, as on SIGTERM.
"""

from __future__ import annotations

import random
import signal
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException

from t2v.callbacks.equilibrium import checkpoint_dir


def capture_rng() -> dict[str, Any]:
    """The global random generators' states, as tensors and lists (a checkpoint loads with ``weights_only=True``)."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    version, python_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gauss": float(cached_gauss),
        },  # fmt: skip
        "python": {"version": version, "state": list(python_state), "gauss": gauss},
    }


def restore_rng(states: dict[str, Any]) -> None:
    """Set the global random generators back to what :func:`capture_rng` returned."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    state = states["numpy"]
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["position"], state["has_gauss"], state["cached_gauss"]))
    python = states["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))


def wandb_run_id(trainer: pl.Trainer) -> str | None:
    return next((logger.version for logger in trainer.loggers if isinstance(logger, WandbLogger)), None)


def stop_after_requeue_signal(trainer: pl.Trainer) -> None:
    """Chain "stop after this batch" to Lightning's SLURM requeue handler (registered before training starts)."""
    requeue = signal.getsignal(signal.SIGUSR1)
    if not SLURMEnvironment.detect() or not callable(requeue):
        return

    def requeue_then_stop(signum: int, frame: Any) -> None:
        requeue(signum, frame)
        # What Lightning's own SIGTERM handler sets; the training loops stop on it after the current batch.
        trainer._signal_connector.received_sigterm = True

    signal.signal(signal.SIGUSR1, requeue_then_stop)


class ExactResume(pl.Callback):
    """Saves the random generators (and the W&B run id) with every checkpoint, restores them when a resumed fit
    starts training, and saves ``last.ckpt`` when the job is stopped by a signal."""

    def __init__(self) -> None:
        self.restored: dict[str, Any] | None = None
        self.wandb_id: str | None = None
        self.preempted_at: str | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.wandb_id = wandb_run_id(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": capture_rng(), "wandb_id": self.wandb_id}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Kept until training starts: the sanity check and the loaders' set-up, which run in between, draw too, and
        # the uninterrupted run drew those before the states were saved.
        self.restored = state_dict.get("rng")

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """A checkpoint saved mid-epoch (at a preemption): the datamodule skips the batches already trained on."""
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})
        done = progress.get("current", {}).get("completed", 0)
        if done and not progress.get("is_last_batch", True) and hasattr(trainer.datamodule, "resume_batches"):
            trainer.datamodule.resume_batches = int(done)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stop_after_requeue_signal(trainer)
        if self.restored is not None:
            restore_rng(self.restored)
            self.restored = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """SIGTERM: keep the state at this step (after a training batch, or in the middle of a validation)."""
        fitting = trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking
        if not isinstance(exception, SIGTERMException) or not fitting or trainer.global_step == 0:
            return
        path = checkpoint_dir(trainer) / "last.ckpt"
        trainer.save_checkpoint(path, weights_only=False)
        self.preempted_at = str(path)
