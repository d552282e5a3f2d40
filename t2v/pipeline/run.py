"""`python train.py stage=pipeline`: train vae -> siamese -> stage1 -> videogan in one command, then
write sample GIFs with the freshly trained chain.

Each stage is composed exactly as `python train.py stage=<name> <your overrides>` would compose it,
plus its entry in ``stage.overrides``, and runs in ``<run dir>/<name>/``. Every stage publishes its
artifact, so the next one finds it as its "latest" upstream.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hydra import compose
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from t2v.errors import T2VError
from t2v.pipeline import artifacts
from t2v.pipeline.generate import GENERATOR_STAGES, TextToVideo, write_samples
from t2v.pipeline.stage import command_line, train_stage


def forwarded_overrides() -> list[str]:
    """The user's command-line overrides, minus the stage choice (each stage sets its own)."""
    return [o for o in command_line() if not o.lstrip("+~").startswith("stage")]


def run_pipeline(cfg: DictConfig) -> dict[str, Any]:
    """Train every stage of ``stage.stages`` in order, then generate ``stage.samples``."""
    started = time.time()
    if int(cfg.trainer.devices) > 1 or int(cfg.trainer.num_nodes) > 1:
        raise T2VError(
            "stage=pipeline runs the stages one after another in one process, which DDP cannot do; "
            "use one device, or run each stage with python train.py stage=<name> trainer=ddp"
        )
    output_dir = Path(cfg.paths.output_dir)
    summaries: dict[str, Any] = {}
    for name in cfg.stage.stages:
        overrides = [
            f"stage={name}",
            *forwarded_overrides(),
            *cfg.stage.overrides.get(name, []),
            f"paths.output_dir={output_dir / name}",
        ]
        Console().rule(f"[bold]t2v pipeline: {name}")
        summaries[name] = train_stage(compose(config_name="train", overrides=overrides))

    samples = write_chain_samples(cfg, output_dir / "samples")
    summary = {
        "stage": "pipeline",
        "seed": cfg.seed,
        "run_time_s": round(time.time() - started, 2),
        "stages": {name: {k: s.get(k) for k in ("run_time_s", "best", "artifact")} for name, s in summaries.items()},
        "samples": samples,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2, default=str))
    console = Console()
    console.print(f"[bold green]t2v[/] pipeline finished in {summary['run_time_s']:.0f}s")
    for name, s in summaries.items():
        console.print(f"  {name:<9} {s['run_time_s']:>6.0f}s  artifact {s.get('artifact')}")
    if samples:
        console.print(f"  samples   {output_dir / 'samples'}")
    return summary


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
