"""Training one stage: build every object from config, fit, then record and publish the result.

What ``python train.py stage=<name>`` runs, and what ``stage=pipeline`` runs once per stage. A stage's model is a
:class:`~t2v.models.stage.StageModule`; this module is the app side of that contract: it finds the upstream
artifacts (:func:`resolve_upstream`), builds the model from them (:func:`build_model`), and publishes the trained
stage for the stages after it (:func:`publish_stage`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar
from pytorch_lightning.utilities.exceptions import SIGTERMException
from rich.console import Console

from t2v.callbacks.equilibrium import GanEquilibriumStopping, GanTrainingAborted, last_good_checkpoint, limit_reached
from t2v.callbacks.loss_plot import GanLossPlot
from t2v.callbacks.metrics import MetricsHistory, to_number
from t2v.callbacks.resume import ExactResume
from t2v.callbacks.samples import GanSamples
from t2v.callbacks.stopping_rules import FAILURES
from t2v.callbacks.validation import GanValidation
from t2v.cluster import slurm_requeued
from t2v.config import instantiate_group
from t2v.data.datamodule import check_data
from t2v.errors import RunFailed, T2VError
from t2v.files import write_json_atomic
from t2v.loggers import close_loggers, define_gan_metrics, wandb_run_dir
from t2v.models.gan import AdversarialModule
from t2v.models.stage import Manifests, StageModule
from t2v.pipeline import artifacts
from t2v.text.featurizer import FastTextFeaturizer

# Lightning advertises a cloud product at every start; keep the console for t2v's own lines.
logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
    lambda record: "litlogger" not in record.getMessage()
)

# Command-line groups that shape the data and its features: an upstream stage, and the chain an evaluation
# scores, must have been trained with the same ones.
SHARED_OVERRIDES = ("data", "held_out", "featurizer", "experiment", "paths", "debug")


def command_line() -> list[str]:
    """The overrides this app was started with (none outside a Hydra app)."""
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


def shared_overrides(groups: tuple[str, ...] = SHARED_OVERRIDES) -> list[str]:
    """The command line's overrides of ``groups`` (``data.size=16``, ``experiment=t2v``, ``+data.x=1``, ...)."""
    return [o for o in command_line() if o.lstrip("+~").split("=")[0].split(".")[0] in groups]


def command_to_make(stage: str) -> str:
    """The exact command that trains ``stage`` (or ``pipeline``, the chain) for this run's data and paths."""
    return " ".join(["python train.py", f"stage={stage}", *shared_overrides()])


# Exit status of a run stopped by a signal (128 + SIGTERM), as a shell reports one.
PREEMPTED_STATUS = 143


class StageFailed(RunFailed):
    """A GAN stage ended on a failure (``stop/reason`` nonfinite or d_wins): nothing was published."""


class Preempted(RunFailed):
    """The run was stopped by a signal (SIGTERM, a scheduler's requeue); its state is in ``last.ckpt``."""

    exit_status = PREEMPTED_STATUS


# -- the stage ---------------------------------------------------------------------------------------------
def train_stage(cfg: DictConfig) -> dict[str, Any]:
    """Train one stage. Returns the summary that is also written to ``<run dir>/metrics.json``; raises
    :class:`StageFailed` or :class:`Preempted` (after writing it) when the run did not end with a model."""
    started = time.time()
    check_data(cfg.data)
    output_dir = Path(cfg.paths.output_dir)
    resume = resume_checkpoint(cfg, output_dir)
    resumed = read_checkpoint(resume) if resume else None
    if resumed is not None and continues_in_place(cfg):
        continue_logging(cfg, resumed)  # the same run, in place; ckpt_path=<file> starts a new one
    output_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    pl.seed_everything(cfg.seed, workers=True)

    upstream = resolve_upstream(cfg)
    datamodule = instantiate(cfg.data, featurizer=featurizer_for(cfg, upstream))
    model = build_model(cfg, upstream)
    if resumed is not None:
        check_resumable(model, resumed, resume)
    history = MetricsHistory()
    callbacks = [*instantiate_group(cfg.callbacks), history]
    if not cfg.trainer.get("enable_progress_bar", True):
        # Lightning refuses a progress-bar callback beside enable_progress_bar=false; the flag wins.
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    prepare_validation(cfg, model, datamodule, callbacks)
    loggers = instantiate_group(cfg.logger)
    # A GAN makes several optimizer steps per batch; trainer.max_steps counts batches (GAN steps).
    max_steps = cfg.trainer.max_steps * model.optimizer_steps_per_batch if cfg.trainer.max_steps > 0 else -1
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, max_steps=max_steps)
    if trainer.is_global_zero:
        OmegaConf.save(OmegaConf.create(resolved), output_dir / "config.yaml")
    for logger in loggers:
        logger.log_hyperparams(resolved)
    if isinstance(model, AdversarialModule):
        define_gan_metrics(loggers)

    preempted = False
    try:
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=True)
        except GanTrainingAborted:
            pass  # a non-finite loss: the callback said why and kept the last good checkpoint
        except SIGTERMException:  # SIGTERM, or SLURM's requeue signal (t2v.callbacks.resume)
            preempted = True
        summary = summarize(cfg, trainer, history, started)
        summary.update(preemption_summary(trainer, model) if preempted else stop_summary(trainer, model))
        summary.update(monitoring_files(trainer))
        summary["wandb_run"] = wandb_run_dir(loggers)
        close_loggers(loggers)  # before the report, so W&B's own summary does not bury it
        if trainer.is_global_zero:
            # metrics.json first: a registry on a full disk must not cost the record of the run.
            write_json_atomic(output_dir / "metrics.json", summary)
            if not failure(summary):
                summary["artifact"] = publish_stage(cfg, trainer, model, datamodule, resolved, upstream)
                write_json_atomic(output_dir / "metrics.json", summary)
            report(summary, output_dir)
    finally:
        close_loggers(loggers)
    raise_failure(cfg, summary, trainer.is_global_zero)
    return summary


def failure(summary: dict[str, Any]) -> bool:
    """Whether the run ended without a model to publish: a GAN failure, or a stop by a signal."""
    return summary.get("stop/reason") in (*FAILURES, "preempted")


def raise_failure(cfg: DictConfig, summary: dict[str, Any], global_zero: bool = True) -> None:
    """A run that did not end with a model fails (non-zero exit status), naming what it kept. Under DDP rank 0 says
    so; the other processes exit with the same status without a word."""
    if not failure(summary):
        return
    reason, step, kept = summary.get("stop/reason"), summary.get("stop/step"), summary.get("stop/checkpoint")
    if not global_zero:
        raise SystemExit(PREEMPTED_STATUS if reason == "preempted" else StageFailed.exit_status)
    if reason == "preempted":
        state = f"its state is in {kept}" if kept else "it had saved no checkpoint yet"
        raise Preempted(
            f"stage {cfg.stage.name} was stopped by a signal at step {step}; {state}; resume with: {resume_command()}"
        )
    if reason in FAILURES:
        best = (summary.get("checkpoints") or {}).get("best") or kept
        kept_line = f"its best good checkpoint is {best}" if best else "it saved no good checkpoint before that"
        raise StageFailed(
            f"stage {cfg.stage.name} failed: {reason} at GAN step {step} ({summary.get('stop/message')}); it was not "
            f"published; {kept_line}; lower model.optim.lr_g/lr_d or change the losses, and train it again"
        )


def resume_command() -> str:
    """This run's own command line, to continue it in place (``ckpt_path=auto`` in its run dir)."""
    try:
        run_dir = HydraConfig.get().runtime.output_dir
    except ValueError:
        run_dir = "<run dir>"
    kept = [o for o in command_line() if not o.startswith("ckpt_path=")]
    return " ".join(["python train.py", *kept, f"hydra.run.dir={run_dir}", "ckpt_path=auto"])


def continues_in_place(cfg: DictConfig) -> bool:
    """Whether this run continues an earlier try in its own run dir: ``ckpt_path=auto``, or a requeued SLURM job
    (SLURM counts restarts in SLURM_RESTART_COUNT)."""
    return cfg.ckpt_path == "auto" or slurm_requeued()


def resume_checkpoint(cfg: DictConfig, output_dir: Path) -> str | None:
    """The checkpoint this run continues from: ``ckpt_path``; with ``ckpt_path=auto``, or in a requeued SLURM job
    (SLURM counts restarts in SLURM_RESTART_COUNT), the newest checkpoint in the run dir, when there is one."""
    if cfg.ckpt_path not in (None, "auto"):
        if not Path(cfg.ckpt_path).is_file():
            raise T2VError(
                f"ckpt_path={cfg.ckpt_path} does not exist; pass a .ckpt file, e.g. <run dir>/checkpoints/last.ckpt, "
                "or ckpt_path=auto with hydra.run.dir=<run dir>"
            )
        return str(cfg.ckpt_path)
    if not continues_in_place(cfg):
        return None
    # A process killed while writing a checkpoint leaves its temporary file (t2v.files.atomic_path); nothing else
    # writes into this run dir before the resumed run does.
    for stale in (output_dir / "checkpoints").glob(".*.tmp"):
        stale.unlink()
    # last.ckpt, or the checkpoint Lightning's own SLURM requeue handler saved (hpc_ckpt_<n>.ckpt), if newer.
    candidates = [
        p for p in [output_dir / "checkpoints" / "last.ckpt", *output_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()
    ]
    if not candidates:
        if cfg.ckpt_path == "auto":
            Console(soft_wrap=True).print(f"t2v: ckpt_path=auto: no checkpoint in {output_dir} yet; starting afresh")
        return None
    newest = max(candidates, key=lambda p: p.stat().st_mtime)
    Console(soft_wrap=True).print(f"t2v: resuming from {newest}")
    return str(newest)


def read_checkpoint(path: str) -> dict[str, Any]:
    """A checkpoint to resume from, read without running any code it may hold."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        why = f"{type(error).__name__}: {artifacts.reason(error)}"
        raise T2VError(
            f"ckpt_path={path} is not a checkpoint t2v can read ({why}); "
            "pass a last.ckpt or best.ckpt that a t2v run wrote"
        ) from None


def continue_logging(cfg: DictConfig, checkpoint: dict[str, Any]) -> None:
    """Log the resumed run into the W&B run it started (its id is kept in the checkpoint)."""
    run_id = (checkpoint.get("callbacks", {}).get(ExactResume.__qualname__) or {}).get("wandb_id")
    if run_id and cfg.logger and cfg.logger.get("wandb"):
        with open_dict(cfg):
            cfg.logger.wandb.id = run_id
            cfg.logger.wandb.resume = "allow"


def check_resumable(model: StageModule, checkpoint: dict[str, Any], path: str) -> None:
    """A checkpoint from another stage or model configuration fails here in one line, not deep inside Lightning."""
    saved = checkpoint.get("state_dict") or {}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    reshaped = [k for k in expected if k in saved and tuple(saved[k].shape) != tuple(expected[k].shape)]
    problem = (
        (missing and f"it lacks {missing[0]}")
        or (unexpected and f"it has {unexpected[0]}, which this model does not")
        or (
            reshaped and f"{reshaped[0]} is {tuple(saved[reshaped[0]].shape)}, not {tuple(expected[reshaped[0]].shape)}"
        )
    )
    if problem:
        raise T2VError(
            f"ckpt_path={path} was saved by another stage or model configuration ({problem}); resume with the "
            "settings it was trained with (its run dir's config.yaml), or start without ckpt_path"
        )


def prepare_validation(
    cfg: DictConfig, model: StageModule, datamodule: pl.LightningDataModule, callbacks: list[pl.Callback]
) -> None:
    """Build the GAN validation judge before training (it may train the probe); a GAN stage that monitors a metric
    only the judge logs cannot pick its best checkpoint without it."""
    validation = [c for c in callbacks if isinstance(c, GanValidation)]
    for callback in validation:
        callback.prepare(model, datamodule, Path(cfg.paths.output_dir))
    if isinstance(model, AdversarialModule) and cfg.stage.monitor and not validation:
        raise T2VError(
            f"stage.monitor={cfg.stage.monitor} is logged by callbacks.gan_validation, which is switched off; "
            "switch it back on, or set stage.monitor=null to keep the latest checkpoint as the best"
        )


# -- upstream stages --------------------------------------------------------------------------------
def resolve_upstream(cfg: DictConfig) -> Manifests:
    """The manifests of the upstream artifacts the stage declares (``stage.upstream``: name -> "latest"
    or an artifact folder; null switches one off)."""
    manifests = {}
    for name, where in (cfg.stage.get("upstream") or {}).items():
        if where is None:
            continue
        folder = artifacts.find(cfg.paths.artifacts_dir, name, where)
        if folder is None:
            place = f"in {Path(cfg.paths.artifacts_dir) / name}" if where == "latest" else f"at {where}"
            raise T2VError(
                f"stage {cfg.stage.name} needs a trained {name} artifact and there is none {place}; "
                f"make it with: {command_to_make(name)}"
            )
        manifests[name] = artifacts.read_manifest(folder)
    return manifests


def inherited_featurizer(upstream: Manifests) -> str | None:
    """The fitted featurizer of the lineage (saved by the vae stage, passed on by every later one)."""
    return next((m["featurizer_dir"] for m in upstream.values() if m.get("featurizer_dir")), None)


def featurizer_for(cfg: DictConfig, upstream: Manifests) -> FastTextFeaturizer:
    """The lineage's own featurizer when there is an upstream (the features must mean what they meant
    when the VAE learnt them), else a new one from ``featurizer``."""
    saved = inherited_featurizer(upstream)
    if saved is None:
        return instantiate(cfg.featurizer)
    featurizer = FastTextFeaturizer.load(saved)
    for key in ("dim", "max_words"):
        if getattr(featurizer, key) != cfg.featurizer[key]:
            raise T2VError(
                f"featurizer.{key}={cfg.featurizer[key]} but the upstream featurizer ({saved}) uses "
                f"{getattr(featurizer, key)}; drop the featurizer.{key} override or retrain the upstream stages with it"
            )
    return featurizer


def build_model(cfg: DictConfig, upstream: Manifests) -> StageModule:
    """Instantiate the stage's model, with the architecture of its frozen parts taken from the
    upstream manifests (so they become hyper-parameters) and their weights loaded."""
    model_class: type[StageModule] = get_class(cfg.model._target_)
    # Plain lists and dicts, so checkpoints hold no OmegaConf objects and load with weights_only=True.
    model = instantiate(cfg.model, _convert_="all", **model_class.upstream_kwargs(upstream))
    model.load_upstream(upstream)
    return model


# -- the result -------------------------------------------------------------------------------------
def summarize(cfg: DictConfig, trainer: pl.Trainer, history: MetricsHistory, started: float) -> dict[str, Any]:
    """Final and best metric values, checkpoints, stage, seed and run time."""
    ckpt = trainer.checkpoint_callback if isinstance(trainer.checkpoint_callback, ModelCheckpoint) else None
    best_ckpt = ckpt.best_model_path if ckpt and ckpt.best_model_path else None
    last_ckpt = ckpt.last_model_path if ckpt and ckpt.last_model_path else None
    return {
        "stage": cfg.stage.name,
        "seed": cfg.seed,
        "run_time_s": round(time.time() - started, 2),
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "monitor": cfg.stage.monitor,
        "final": {k: to_number(v) for k, v in trainer.callback_metrics.items()},
        "best": history.best(cfg.stage.monitor, cfg.stage.mode),
        "checkpoints": {"best": best_ckpt, "last": last_ckpt},
        "history": history.history,
    }


def stop_summary(trainer: pl.Trainer, model: StageModule) -> dict[str, Any]:
    """How a GAN run ended: ``stop/reason``, ``stop/step`` (GAN steps) and the stop checkpoint, from the
    stopping callback, or from the step counters when it is switched off (``callbacks.gan_stopping=null``)."""
    if not isinstance(model, AdversarialModule):
        return {}
    stopping = next((c for c in trainer.callbacks if isinstance(c, GanEquilibriumStopping)), None)
    if stopping is not None and stopping.summary():
        return stopping.summary()
    return {"stop/reason": limit_reached(trainer), "stop/step": int(model.gan_step)}


def preemption_summary(trainer: pl.Trainer, model: StageModule) -> dict[str, Any]:
    """How a run stopped by a signal ended: at which step, and where its state is."""
    resume = next((c for c in trainer.callbacks if isinstance(c, ExactResume)), None)
    step = int(model.gan_step) if isinstance(model, AdversarialModule) else trainer.global_step
    return {
        "stop/reason": "preempted",
        "stop/step": step,
        "stop/message": "stopped by a signal (SIGTERM or the scheduler's requeue)",
        # Saved at the stop on SIGTERM; else (a scheduler's exit elsewhere in a step) the last one written.
        "stop/checkpoint": (resume.preempted_at if resume else None) or last_good_checkpoint(trainer),
    }


def monitoring_files(trainer: pl.Trainer) -> dict[str, str]:
    """The GAN loss plot and sample folder, when the callbacks wrote them."""
    files = {}
    for callback in trainer.callbacks:
        if isinstance(callback, GanLossPlot) and callback.written:
            files["loss_plot"] = str(callback.written)
        if isinstance(callback, GanSamples) and callback.written:
            files["samples"] = str(callback.dirpath)
    return files


def published_checkpoint(trainer: pl.Trainer, monitor: str | None) -> str | None:
    """The best checkpoint by ``monitor``; the last one when the run ended before its first validation (it was
    shorter than an epoch or ``trainer.val_check_interval``), which is said in one line."""
    ckpt = trainer.checkpoint_callback if isinstance(trainer.checkpoint_callback, ModelCheckpoint) else None
    if ckpt is None:
        return None
    if ckpt.best_model_path or not ckpt.last_model_path:
        return ckpt.best_model_path or None
    Console(soft_wrap=True).print(
        f"t2v: no validation ran before the run ended, so no checkpoint is best by {monitor}; publishing the last one"
    )
    return ckpt.last_model_path


def publish_stage(
    cfg: DictConfig,
    trainer: pl.Trainer,
    model: StageModule,
    datamodule: pl.LightningDataModule,
    resolved: dict[str, Any],
    upstream: Manifests,
) -> str | None:
    """Register the best checkpoint as this stage's artifact for the stages after it."""
    checkpoint = published_checkpoint(trainer, cfg.stage.monitor)
    if not cfg.publish or not checkpoint:
        return None
    manifest = {
        "run_dir": cfg.paths.output_dir,
        "data_fingerprint": datamodule.fingerprint(),
        "upstream": {name: record["folder"] for name, record in upstream.items()},
        "featurizer_dir": inherited_featurizer(upstream),
        "config": resolved,
        "stop": {k.removeprefix("stop/"): v for k, v in stop_summary(trainer, model).items()} or None,
    }
    folder = artifacts.publish(
        cfg.paths.artifacts_dir,
        cfg.stage.name,
        checkpoint,
        manifest,
        export=lambda directory: model.export_artifact(directory, datamodule),
    )
    return str(folder)


def report(summary: dict[str, Any], output_dir: Path) -> None:
    """Tell the user where everything went."""
    console = Console()
    best = summary["best"] or {}
    value = best.get(summary["monitor"])
    ended = "[bold red]stopped[/]" if failure(summary) else "finished"
    console.print(
        f"[bold green]t2v[/] stage [bold]{summary['stage']}[/] {ended} after {summary['run_time_s']:.0f}s"
        + (f", best {summary['monitor']} = {value:.4f}" if isinstance(value, float) else "")
    )
    console.print(f"  run dir      {output_dir}")
    console.print(f"  metrics      {output_dir / 'metrics.json'}")
    for kind, path in summary["checkpoints"].items():
        if path:
            console.print(f"  {kind + ' ckpt':<12} {path}")
    if summary.get("stop/reason"):
        console.print(f"  stopped      {summary['stop/reason']} at GAN step {summary['stop/step']}")
    for kind in ("loss_plot", "samples"):
        if summary.get(kind):
            console.print(f"  {kind.replace('_', ' '):<12} {summary[kind]}")
    if summary.get("artifact"):
        console.print(f"  artifact     {summary['artifact']}")
    if summary.get("wandb_run"):
        console.print(f"  W&B run      {summary['wandb_run']}  (upload: wandb sync {summary['wandb_run']})")
