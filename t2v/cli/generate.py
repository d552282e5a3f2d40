"""What `python generate.py` does: sentences in, GIF/MP4/PNG clips out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from t2v.errors import T2VError
from t2v.pipeline.generate import TextToVideo, write_samples


def read_captions(cfg: DictConfig) -> list[str]:
    """``text=...`` or ``texts_file=...`` (one sentence a line; blank lines skipped)."""
    if cfg.texts_file:
        path = Path(cfg.texts_file)
        if not path.is_file():
            raise T2VError(f"texts_file={path} does not exist; pass a text file with one sentence per line")
        captions = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not captions:
            raise T2VError(f"texts_file={path} holds no sentence; write one sentence per line")
        return captions
    if cfg.text is None or not str(cfg.text).strip():
        raise T2VError("text is empty; pass a sentence, e.g. text='a red circle moves to the left'")
    return [str(cfg.text)]


def generate(cfg: DictConfig) -> dict[str, Any]:
    """Generate ``num_samples`` clips per sentence into ``out_dir``; returns what was written."""
    if cfg.num_samples < 1:
        raise T2VError(f"num_samples={cfg.num_samples} must be at least 1")
    captions = read_captions(cfg)
    chain = TextToVideo.from_artifacts(cfg.paths.artifacts_dir, OmegaConf.to_container(cfg.artifacts))
    result = chain(captions, num_samples=cfg.num_samples, seed=cfg.seed)
    written = write_samples(result, cfg.out_dir, cfg.num_samples, fps=cfg.fps)
    (Path(cfg.out_dir) / "samples.json").write_text(json.dumps(written, indent=2))
    console = Console()
    console.print(f"[bold green]t2v[/] wrote {len(written)} clips ({result['video'].shape[2]} frames) to {cfg.out_dir}")
    for sample in written:
        console.print(f"  {sample['gif']}  [dim]{sample['caption']}[/]")
    return {"samples": written}
