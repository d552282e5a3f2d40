"""Can the text-video judge find the clip-caption pairs whose caption is wrong?

The shapes' training split with a share of its captions deliberately shuffled among themselves (each one moved to
another clip of that share), a judge trained on those noisy pairs (t2v/eval/judge.py, the settings of
conf/judge/default.yaml unless told), then every training pair scored by the judge's agreement (the cosine of its
caption and clip embeddings). Dropping the lowest-scoring share, how many of the dropped pairs were corrupted
(precision) and how many of the corrupted pairs were dropped (recall)? Chance is the corrupted share for both.

    python bench/filter_agreement.py                       # quickstart data, 20% shuffled, drop the lowest 20%
    python bench/filter_agreement.py --seeds 0 1 --corrupt 0.2 --drop 0.1 0.2 0.3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from t2v.data.shapes import CaptionedShapes  # noqa: E402
from t2v.eval.judge import judge_dims, train_judge  # noqa: E402
from t2v.eval.probe import to_tensor  # noqa: E402
from t2v.text import FastTextFeaturizer  # noqa: E402


class Pairs(Dataset):
    """Clips with the caption features given to them (right or not)."""

    def __init__(self, video: torch.Tensor, text: torch.Tensor) -> None:
        self.video, self.text = video, text

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"video": self.video[i], "text": self.text[i]}


def corrupted_captions(captions: list[str], share: float, seed: int) -> tuple[list[str], np.ndarray]:
    """``captions`` with ``share`` of them moved one place round a random subset (every moved caption lands on
    another clip), and which ones were moved."""
    rng = np.random.default_rng(seed)
    moved = rng.choice(len(captions), size=round(share * len(captions)), replace=False)
    out = list(captions)
    for src, dst in zip(moved, np.roll(moved, 1), strict=True):
        out[dst] = captions[src]
    wrong = np.array([a != b for a, b in zip(out, captions, strict=True)])
    return out, wrong


@torch.no_grad()
def agreement_of(judge: torch.nn.Module, text: torch.Tensor, video: torch.Tensor) -> np.ndarray:
    scores = [(judge.embed_text(text[i : i + 256]) * judge.embed_video(video[i : i + 256])).sum(-1)
              for i in range(0, len(text), 256)]  # fmt: skip
    return torch.cat(scores).numpy()


def run(seed: int, corrupt: float, drops: list[float], settings: dict, data: dict, cache: str,
        folds: int = 1) -> list[dict]:  # fmt: skip
    shapes = CaptionedShapes(**data)
    rows = shapes.split_indices("train")
    captions, wrong = corrupted_captions([shapes.captions[i] for i in rows], corrupt, seed)
    featurizer = FastTextFeaturizer(cache_dir=cache).fit(captions)
    text = torch.from_numpy(featurizer.transform(captions)[0])
    video = to_tensor(shapes.render(rows))
    dims = judge_dims(featurizer, shapes.frames, shapes.size)
    started = time.time()
    agreement = np.zeros(len(text), dtype=np.float32)
    # folds > 1: each pair is scored by a judge trained on the other folds only (it never saw that pair).
    fold = np.random.default_rng(seed).integers(0, folds, len(text)) if folds > 1 else np.zeros(len(text), int)
    for k in range(folds):
        train = np.flatnonzero(fold != k) if folds > 1 else np.arange(len(text))
        scored = np.flatnonzero(fold == k)
        with tempfile.TemporaryDirectory() as work:
            judge, _ = train_judge(Pairs(video[train], text[train]), dims, {**settings, "seed": seed}, work,
                                   progress=False)  # fmt: skip
        agreement[scored] = agreement_of(judge, text[scored], video[scored])
    trained_s = time.time() - started
    order = np.argsort(agreement, kind="stable")
    results = []
    for drop in drops:
        dropped = np.zeros(len(order), dtype=bool)
        dropped[order[: round(drop * len(order))]] = True
        caught = int((dropped & wrong).sum())
        results.append({"seed": seed, "drop": drop, "precision": caught / max(int(dropped.sum()), 1),
                        "recall": caught / max(int(wrong.sum()), 1), "corrupted": float(wrong.mean()),
                        "train_s": trained_s})  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--corrupt", type=float, default=0.2, help="share of training captions shuffled")
    parser.add_argument("--drop", type=float, nargs="+", default=[0.2], help="shares of the lowest pairs dropped")
    parser.add_argument("--steps", type=int, default=None, help="judge training steps (conf/judge: 1000)")
    parser.add_argument("--folds", type=int, default=1, help="score each pair with a judge trained on the other "
                        "folds (1: the judge scores the pairs it trained on)")  # fmt: skip
    args = parser.parse_args()
    if not 0 < args.corrupt < 1 or not all(0 < d < 1 for d in args.drop):
        parser.error("--corrupt and --drop are shares between 0 and 1, e.g. --corrupt 0.2 --drop 0.2")
    settings = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "judge" / "default.yaml"))
    settings = {k: v for k, v in settings.items() if k != "artifacts_dir"}
    if args.steps:
        settings["max_steps"] = args.steps
    # The quickstart's data (conf/experiment/quickstart.yaml) on the default split.
    data = {"num_clips": 4000, "frames": 16, "size": 32, "held_out": [{"shape": "circle", "colour": "red"},
            {"shape": "square", "direction": "up"}], "seed": 0}  # fmt: skip
    cache = str(ROOT / ".cache" / "t2v" / "fasttext")
    print(f"judge steps {settings['max_steps']}, folds {args.folds}")
    print("| seed | corrupted | dropped (lowest agreement) | precision | recall | judges trained in |")
    print("|---|---|---|---|---|---|")
    for seed in args.seeds:
        for r in run(seed, args.corrupt, args.drop, settings, data, cache, args.folds):
            print(f"| {r['seed']} | {r['corrupted']:.1%} | {r['drop']:.0%} | {r['precision']:.1%} | {r['recall']:.1%} "
                  f"| {r['train_s']:.0f} s |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
