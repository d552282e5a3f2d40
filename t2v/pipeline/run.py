"""`python train.py stage=pipeline`: train vae -> siamese -> stage1 -> videogan in one command, then
write sample GIFs with the freshly trained chain.

Each stage is composed exactly as `python train.py stage=<name> <your overrides>` would compose it,
plus its entry in ``stage.overrides``, and runs in ``<run dir>/<name>/``. Every stage publishes its
artifact, so the next one finds it as its "latest" upstream.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hydra import compose
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from t2v.cluster import launched_rank, wait_for
from t2v.errors import T2VError
from t2v.files import write_json_atomic
from t2v.pipeline import artifacts
from t2v.pipeline.generate import GENERATOR_STAGES, TextToVideo, write_samples
from t2v.pipeline.stage import command_line, continues_in_place, failure, train_stage

TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "train.py"


class PipelineStageFailed(T2VError):
    """A stage launched as its own process exited with an error (it has said why, above); the pipeline exits with
    the stage's status."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def forwarded_overrides() -> list[str]:
    """The user's command-line overrides, minus the stage choice (each stage sets its own)."""
    return [o for o in command_line() if not o.lstrip("+~").startswith("stage")]


def override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def stage_overrides(name: str, overrides: list[str]) -> list[str]:
    """``overrides`` for stage ``name``: a ``model.*`` key goes only to the stages whose model has it (so
    ``model.optim.lr_g=1e-4`` sets both GANs' and leaves the VAE alone); everything else goes to every stage."""
    model_keys = [o for o in overrides if override_key(o).startswith("model.") and not o.startswith("+")]
    if not model_keys:
        return overrides
    composed = compose(config_name="train", overrides=[f"stage={name}"])
    absent = object()  # a key whose default is null is still the stage's setting
    return [o for o in overrides if o not in model_keys or OmegaConf.select(composed, override_key(o), default=absent)
            is not absent]  # fmt: skip


def run_pipeline(cfg: DictConfig) -> dict[str, Any]:
    """Train every stage of ``stage.stages`` in order, then generate ``stage.samples``."""
    started = time.time()
    output_dir = Path(cfg.paths.output_dir)
    forwarded = forwarded_overrides()
    # Under DDP each stage is its own launch of train.py, so no process group outlives its stage.
    distributed = int(cfg.trainer.devices) > 1 or int(cfg.trainer.num_nodes) > 1
    summaries: dict[str, Any] = {}
    for name in cfg.stage.stages:
        overrides = [
            f"stage={name}",
            *stage_overrides(name, forwarded),
            *cfg.stage.overrides.get(name, []),
            f"paths.output_dir={output_dir / name}",
        ]
        Console().rule(f"[bold]t2v pipeline: {name}")
        finished = finished_before(cfg, output_dir / name)
        if finished is not None:
            Console(soft_wrap=True).print(f"t2v: {name} finished in an earlier try of this run; not trained again")
            summaries[name] = finished
        elif distributed:
            summaries[name] = launch_stage(name, overrides, output_dir / name)
        else:
            summaries[name] = train_stage(compose(config_name="train", overrides=overrides))

    if launched_rank() != 0:
        return {"stage": "pipeline", "stages": summaries}
    samples = write_chain_samples(cfg, output_dir / "samples")
    last = summaries[cfg.stage.stages[-1]] if summaries else {}
    summary = {
        "stage": "pipeline",
        "seed": cfg.seed,
        "run_time_s": round(time.time() - started, 2),
        "stages": {
            name: {k: s.get(k) for k in ("run_time_s", "monitor", "best", "stop/reason", "artifact")}
            for name, s in summaries.items()
        },  # fmt: skip
        # A sweep over the pipeline optimises its last stage's metric.
        "monitor": last.get("monitor"),
        "best": last.get("best"),
        "samples": samples,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_json_atomic(output_dir / "metrics.json", summary)
    console = Console()
    console.print(f"[bold green]t2v[/] pipeline finished in {summary['run_time_s']:.0f}s")
    for name, s in summaries.items():
        console.print(f"  {name:<9} {s['run_time_s']:>6.0f}s  artifact {s.get('artifact')}")
    if samples:
        console.print(f"  samples   {output_dir / 'samples'}")
    return summary


def finished_before(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The summary of a stage that an earlier try of this pipeline run (a requeued SLURM job, or the same run dir
    again with ``ckpt_path=auto``) trained and published; None for a stage to train, or to resume: one that never
    ran, failed or was stopped by a signal."""
    if not continues_in_place(cfg):
        return None
    try:
        summary = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and summary.get("artifact") and not failure(summary) else None


def launch_stage(name: str, overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """Train one stage as ``python train.py <overrides>`` in a process of its own, which starts (and ends) the
    stage's DDP processes; returns the summary the stage wrote, its ``metrics.json``."""
    command = [sys.executable, str(TRAIN_SCRIPT), *overrides, f"hydra.run.dir={run_dir}"]
    returncode = subprocess.run(command, check=False).returncode
    if returncode != 0:
        kept = finished_before_failing(run_dir)
        raise PipelineStageFailed(
            f"stage {name} failed (exit status {returncode}){kept}; its run dir is {run_dir}",
            exit_status=returncode if returncode > 0 else 1,
        )
    # Rank 0 publishes the stage and then writes metrics.json. Under srun or torchrun every rank runs the pipeline,
    # and the others must not start the next stage (which reads this one's artifact) before that.
    metrics = run_dir / "metrics.json"
    wait_for(lambda: metrics if metrics.is_file() else None, f"{name}'s {metrics}")
    return json.loads(metrics.read_text())


def finished_before_failing(run_dir: Path) -> str:
    """What a failed stage process said it kept (its metrics.json), as a clause of the pipeline's one line."""
    try:
        summary = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return ""
    reason, kept = summary.get("stop/reason"), summary.get("stop/checkpoint")
    return f": {reason}" + (f", its checkpoint is {kept}" if kept else "") if reason else ""


def write_chain_samples(cfg: DictConfig, out_dir: Path) -> list[dict[str, str]]:
    """GIFs of ``stage.samples`` from the latest stage1 and videogan in the registry; none (said in one line) when
    either generator has never been trained, as after ``stage.stages=[vae,siamese]``."""
    console = Console(soft_wrap=True)
    missing = [name for name in GENERATOR_STAGES if artifacts.find(cfg.paths.artifacts_dir, name, "latest") is None]
    if missing:
        console.print(
            f"t2v: no samples: the registry {cfg.paths.artifacts_dir} has no trained {' or '.join(missing)} yet; "
            "add it to stage.stages (or train it with python train.py stage=<name>) for text-to-video samples"
        )
        return []
    older = [name for name in GENERATOR_STAGES if name not in cfg.stage.stages]
    try:
        chain = TextToVideo.from_artifacts(cfg.paths.artifacts_dir)
    except T2VError as error:
        if not older:  # the chain this run trained must generate
            raise
        console.print(f"t2v: no samples: the registry's latest {' and '.join(older)} cannot join this run's: {error}")
        return []
    if older:
        console.print(f"t2v: samples with the registry's latest {' and '.join(older)}, which this run did not train")
    result = chain(list(cfg.stage.samples), num_samples=cfg.stage.num_samples, seed=cfg.seed)
    return write_samples(result, out_dir, cfg.stage.num_samples, fps=cfg.stage.fps)
