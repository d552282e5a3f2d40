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
from t2v.pipeline.generate import TextToVideo, write_samples
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

    chain = TextToVideo.from_artifacts(cfg.paths.artifacts_dir)
    captions = list(cfg.stage.samples)
    result = chain(captions, num_samples=cfg.stage.num_samples, seed=cfg.seed)
    samples = write_samples(result, output_dir / "samples", cfg.stage.num_samples, fps=cfg.stage.fps)
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
    console.print(f"  samples   {output_dir / 'samples'}")
    return summary
