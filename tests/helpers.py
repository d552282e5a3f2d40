"""Helpers shared by the tests (importable because pyproject puts tests/ on pytest's pythonpath)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from pytorch_lightning.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Small networks and data so a whole stage trains in seconds on 2 CPU cores.
TINY_VAE = ["model.hidden_dims=[64]", "model.latent_dim=16", "featurizer.max_words=12", "featurizer.dim=32"]


# -- the tiny chain the end-to-end tests share (tests/e2e/conftest.py trains it once per session) --
# experiment=quickstart (16 frames of 32x32, small widths) cut to a handful of batches by debug=limit.
TINY = ["experiment=quickstart", "debug=limit", "logger=csv"]
FRAMES, SIZE = 16, 32
# A per-stage override, quoted as the shell needs it ('=' inside the list): 4 video GAN steps (one epoch, ending with
# its validation), not 8.
VIDEOGAN_STEPS = 'stage.overrides.videogan=["trainer.max_steps=4"]'


def paths_in(root: Path) -> list[str]:
    return [f"paths.artifacts_dir={root / 'artifacts'}", f"paths.cache_dir={root / 'cache'}"]


def artifacts_in(root: Path) -> list[str]:
    """generate.py reads only the artifact registry."""
    return [f"paths.artifacts_dir={root / 'artifacts'}"]


# What every entry point run by a test sees: W&B offline and quiet, Hydra's one-line errors.
ENTRY_ENVIRONMENT = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0"}


def run_entry(
    script: str, *args: str, cwd: Path, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run an entry point (train.py, ...) the way a user does, from `cwd` (``env``: extra environment variables)."""
    env = {**os.environ, **ENTRY_ENVIRONMENT, **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def call_entry(script: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run an entry point's Hydra app inside this process, as :func:`run_entry` runs it in a new one.

    For the error paths, which stop before any training: the same command line, Hydra app, checks and exit status,
    without the ~6 s a new interpreter spends importing torch and Lightning. The process state an app changes (the
    working directory, argv, the environment, Hydra's singletons, the root logger) is put back afterwards.
    """
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, Path.cwd()
    saved_handlers, saved_level = logging.root.handlers[:], logging.root.level
    os.environ.update({**ENTRY_ENVIRONMENT, **(env or {})})
    GlobalHydra.instance().clear()
    sys.argv = command = [str(ROOT / script), *args]
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                runpy.run_path(str(ROOT / script), run_name="__main__")
                status = 0
            except SystemExit as exit_:
                status = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        GlobalHydra.instance().clear()
        for handler in set(logging.root.handlers) - set(saved_handlers):
            handler.close()
        logging.root.handlers[:] = saved_handlers
        logging.root.setLevel(saved_level)
    return subprocess.CompletedProcess(command, status, stdout.getvalue(), stderr.getvalue())


def compose_app(config_name: str, *overrides: str, output_dir: Path, cwd: Path) -> DictConfig:
    """``conf/<config_name>.yaml`` composed as its Hydra app composes it, with the run dir and the
    working directory set, and the ``hydra`` node removed (the task function never sees it either)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(cwd)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


class RankState(Callback):
    """A test callback for multi-process runs (``+callbacks.rank_state._target_=helpers.RankState``, with tests/ on
    PYTHONPATH): at the end of training every process saves its module's state to
    ``<dirpath>/<class name>_rank<rank>.pt``, so a test can compare the processes' weights and statistics."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        name = f"{type(pl_module).__name__}_rank{trainer.global_rank}.pt"
        torch.save({k: v.detach().cpu() for k, v in pl_module.state_dict().items()}, self.dirpath / name)


class SignalAt(Callback):
    """A test callback that sends a real signal to its own process after training batch ``batch`` (counted over the
    run), as a scheduler would at a moment the test chooses (``+callbacks.signal._target_=helpers.SignalAt``, with
    tests/ on PYTHONPATH)."""

    def __init__(self, batch: int, signal_name: str = "SIGTERM") -> None:
        self.batch, self.signal = batch, signal_name
        self.seen = 0

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        self.seen += 1
        if self.seen == self.batch:
            os.kill(os.getpid(), getattr(__import__("signal"), self.signal))


class HostReads(Callback):
    """Counts, per training batch, the copies of tensor values to the host (``item``, ``tolist``, ``float()``,
    ``int()``, ``bool()``) outside data loading, whose tensors live on the CPU anyway: on a GPU each such copy
    waits for the step to finish. ``steps`` lists the (1-based) batch of each read. Install with ``monkeypatch``."""

    def __init__(self, monkeypatch: Any, steps_per_batch: int = 1) -> None:
        import traceback

        self.batch, self.steps, self.per_batch = 0, [], steps_per_batch
        for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
            original = getattr(torch.Tensor, name)

            def counted(tensor: torch.Tensor, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                if not any("torch/utils/data" in frame.filename for frame in traceback.extract_stack()):
                    self.steps.append(self.batch)
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.batch = trainer.global_step // self.per_batch + 1
