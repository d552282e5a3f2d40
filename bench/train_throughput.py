"""Training throughput of every stage, in samples per second, at the quickstart and the full size.

    python bench/train_throughput.py [--steps 10] [--batch-size 16] [--sizes quickstart full] [--stages ...]

Each stage is built from its config (conf/model/<stage>.yaml with the experiment's stage preset) and
trained by a real Lightning Trainer on synthetic batches of the right shapes; the first steps are
warm-up and not timed. This is a benchmark, not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402

import t2v  # noqa: E402,F401  (config resolvers)
from t2v.pipeline.stage import build_model  # noqa: E402

SIZES = {"quickstart": "experiment=quickstart", "full": "experiment=paper"}
STAGES = ("vae", "siamese", "stage1", "videogan")


class Synthetic(Dataset):
    """Random batches with the layout of the real datamodule."""

    def __init__(self, n: int, frames: int, size: int, text_dim: int) -> None:
        self.n, self.frames, self.size, self.text_dim = n, frames, size, text_dim

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {
            "video": torch.rand(3, self.frames, self.size, self.size, generator=g) * 2 - 1,
            "text": torch.randn(self.text_dim, generator=g),
            "text_len": torch.tensor(10),
            "labels": {"colour": torch.tensor(i % 6), "shape": torch.tensor(i % 4)},
            "caption": f"caption {i}",
        }


class Timer(pl.Callback):
    """Times training batches after ``warmup`` of them."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.times, self._start = warmup, [], 0.0

    def on_train_batch_start(self, *args) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, *args) -> None:
        self.times.append(time.perf_counter() - self._start)


def upstream_for(cfg) -> dict:
    """Upstream manifests with the architectures the config implies (weights are not needed here)."""
    text = cfg.featurizer
    vae = {"word_dim": text.dim, "max_words": text.max_words, "hidden_dims": [1200], "latent_dim": 500}
    # With the word mean, so that every text part a preset may read exists.
    encoder = {"vae": vae, "embed_dim": 512, "hidden_dim": 500, "dropout": 0.5, "final_relu": True, "word_mean": True}
    return {"vae": {"hparams": vae}, "siamese": {"text_encoder": encoder}}


def measure(stage: str, size: str, steps: int, batch_size: int) -> tuple[float, int]:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"stage={stage}", SIZES[size]], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = "/tmp/t2v-bench"
        cfg.hydra.runtime.cwd = str(ROOT)
    HydraConfig.instance().set_config(cfg)
    upstream = upstream_for(cfg)
    model = build_model(cfg, {}) if stage == "vae" else _model_with(cfg, upstream)
    text_dim = cfg.featurizer.dim * cfg.featurizer.max_words
    data = Synthetic(batch_size * (steps + 2), cfg.data.frames, cfg.data.size, text_dim)
    timer = Timer(warmup=2)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                         default_root_dir="/tmp/t2v-bench")  # fmt: skip
    trainer.fit(model, DataLoader(data, batch_size=batch_size))
    timed = timer.times[timer.warmup :]
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return batch_size * len(timed) / sum(timed), params


def _model_with(cfg, upstream: dict):
    from hydra.utils import get_class, instantiate

    extra = get_class(cfg.model._target_).upstream_kwargs(upstream)
    return instantiate(cfg.model, _convert_="all", **extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per stage")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    print(f"{'stage':<10}{'size':<12}{'samples/s':>10}{'trainable params':>18}")
    for size in args.sizes:
        for stage in args.stages:
            rate, params = measure(stage, size, args.steps, args.batch_size)
            print(f"{stage:<10}{size:<12}{rate:>10.1f}{params:>18,}", flush=True)


if __name__ == "__main__":
    main()
