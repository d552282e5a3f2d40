"""Training and generation speed of every stage: Lightning against a bare PyTorch loop, FLOP/s, peak memory.

    python bench/throughput.py                                        # every stage, quickstart and paper sizes, fp32
    python bench/throughput.py --sizes quickstart --steps 3 --warmup 1   # a quick look
    python bench/throughput.py --sizes paper --stages stage1 --steps 2   # one published-size row
    python bench/throughput.py --precision 32-true bf16-mixed            # both precisions
    python bench/throughput.py --device cuda --precision bf16-mixed      # on a GPU
    python bench/throughput.py --batch-size paper=8 videogan.paper=2     # batch per size, or per stage.size
    python bench/throughput.py --stages stage1 --set model.compile=true   # any config override, in both loops
    python bench/throughput.py --generation [--artifacts artifacts]      # text -> clip speed instead

Training (the default) prints a markdown table, one row per stage, size and precision:

- Lightning samples/s: the stage's model built from config (``build_model``, as ``train.py`` does, on
  ``experiment=quickstart`` or ``experiment=paper``: 32 frames of 64 x 64) and trained by a real Lightning
  Trainer (``conf/trainer``, without logger, checkpoints, progress bar or validation) on synthetic batches with the
  datamodule's layout. A step is a batch: for the GANs, ``optim.d_steps`` D updates and one G update.
- bare samples/s: the same step as a plain PyTorch loop written here: the module's own networks, loss functions
  and optimizers (``configure_optimizers``), with the same requires-grad toggling, and Lightning's overhead =
  1 - Lightning / bare.
- GFLOP/step, counted once with ``torch.utils.flop_counter.FlopCounterMode`` on an untimed step of each loop (the
  two must agree: that checks the bare loop does the same work), and the GFLOP/s achieved, also as a share of the
  machine's matmul peak of that precision (a 2048 x 2048 matmul timed in the header).
- peak memory of each loop in its own process: resident set (VmHWM) on the CPU, ``max_memory_allocated`` on CUDA.
- first step s: the first step of the Lightning loop, untimed above; it holds one-off costs such as
  ``model.compile=true``'s compilation.

Each loop runs ``--warmup`` untimed steps, then ``--steps`` timed ones, each from its batch's start to the next
one's (data loading and everything Lightning does between steps included), and the rates come from the median step
(on a machine shared with other jobs some steps stall); one more step follows, untimed, under the FLOP counter.
With ``--repeats N`` the two loops run N times each, alternately, and the fastest run of each counts: other jobs
can slow a 2-core machine several-fold for minutes, longer than one run. Upstream stages (vae, siamese) are
randomly initialised and published to a temporary registry, so no trained artifact is needed. Default batch: the
experiment's ``data.batch_size``, except at the paper size stage-I's 32 images and the video GAN's 4 clips (the
published 32 clips do not fit a CPU run).

``--generation`` times text -> 16-frame clip with the chain ``generate.py`` uses (``TextToVideo``): ms per caption
warm in batches of 32, ms for one caption to its GIF/MP4/PNG files, and ``generate.py``'s start-up (interpreter,
imports, loading the chain) and one cold ``python generate.py`` run. It reads ``--artifacts`` (a registry, as
``paths.artifacts_dir``) or else publishes a randomly initialised quickstart chain, and says so.

This is a benchmark, not a test: it prints tables and exits 0 whatever the figures, which depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402

import t2v  # noqa: E402,F401  (config resolvers)
from t2v.callbacks.memory_format import to_channels_last  # noqa: E402
from t2v.data.shapes import ATTRIBUTES, CaptionedShapes  # noqa: E402
from t2v.models.gan import AdversarialModule  # noqa: E402
from t2v.models.stage import FORMAT_KEY, StageModule  # noqa: E402
from t2v.models.vae import TextVAE  # noqa: E402
from t2v.pipeline import artifacts  # noqa: E402
from t2v.pipeline.generate import TextToVideo, generate_to  # noqa: E402
from t2v.pipeline.stage import build_model, inherited_featurizer, resolve_upstream  # noqa: E402
from t2v.text.featurizer import FastTextFeaturizer  # noqa: E402

SIZES = {"quickstart": "experiment=quickstart", "paper": "experiment=paper"}
STAGES = ("vae", "siamese", "stage1", "videogan")
PRECISIONS = ("32-true", "bf16-mixed")
LOOPS = ("lightning", "bare")
# The published batches do not fit a CPU run at the paper size (32 clips of 32 x 64 x 64: ~3 TMAC a video GAN step).
PAPER_BATCH = {"stage1": 32, "videogan": 4}
CAPTION = "a small red circle moves to the left"
RESULT = "RESULT "  # the line a child process prints its measurements on


# -- config and a registry of randomly initialised stages -----------------------------------------------------
def compose_config(stage: str, size: str, registry: Path, work: Path, *overrides: str) -> DictConfig:
    """``python train.py stage=<stage> experiment=<size> ...``'s config, reading and writing under ``registry``."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"stage={stage}", SIZES[size], f"paths.artifacts_dir={registry}",
                                          "logger=none", *overrides], return_hydra_config=True)  # fmt: skip
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(work)
        cfg.hydra.runtime.cwd = str(ROOT)
    HydraConfig.instance().set_config(cfg)  # ${hydra:...} in paths.* resolves as in a train.py run
    return cfg


def random_featurizer(cfg: DictConfig, work: Path) -> FastTextFeaturizer:
    """The config's featurizer over random word vectors (a ``.vec`` file) for the shapes vocabulary: real code and
    real feature layout, without training fastText."""
    captions = CaptionedShapes(num_clips=1000, frames=cfg.data.frames, size=cfg.data.size).captions + [CAPTION]
    tokenize = FastTextFeaturizer(dim=cfg.featurizer.dim).tokenize
    words = sorted({w for c in captions for w in tokenize(c)})
    vectors = np.random.default_rng(0).standard_normal((len(words), cfg.featurizer.dim))
    path = work / "random-vectors.vec"
    lines = (f"{w} {' '.join(f'{x:.5f}' for x in v)}\n" for w, v in zip(words, vectors, strict=True))
    path.write_text(f"{len(words)} {cfg.featurizer.dim}\n" + "".join(lines), encoding="utf-8")
    return instantiate(cfg.featurizer, vectors=str(path)).fit(captions)


def publish_random(cfg: DictConfig, model: StageModule, upstream: dict, featurizer: FastTextFeaturizer) -> None:
    """Publish ``model`` to ``cfg.paths.artifacts_dir`` as ``train.py`` would publish its best checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "model.ckpt"  # what slim_checkpoint keeps of a Lightning checkpoint
        state = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                 "pytorch-lightning_version": pl.__version__, FORMAT_KEY: model.hparams_format}  # fmt: skip
        torch.save(state, checkpoint)
        manifest = {"upstream": {name: m["folder"] for name, m in upstream.items()},
                    "featurizer_dir": inherited_featurizer(upstream), "random_weights": True}  # fmt: skip
        datamodule = SimpleNamespace(featurizer=featurizer)  # all export_artifact reads of a datamodule
        artifacts.publish(cfg.paths.artifacts_dir, cfg.stage.name, checkpoint, manifest,
                          export=lambda directory: model.export_artifact(directory, datamodule))  # fmt: skip


def random_registry(registry: Path, size: str, stages: Sequence[str]) -> None:
    """Randomly initialised ``stages`` (in chain order) at ``size``, each built from its config by ``build_model``
    on the ones before it and published to ``registry``."""
    work = registry.parent / f"work-{size}"
    work.mkdir(parents=True, exist_ok=True)
    featurizer = None
    for stage in stages:
        cfg = compose_config(stage, size, registry, work)
        featurizer = featurizer or random_featurizer(cfg, work)
        torch.manual_seed(0)
        upstream = resolve_upstream(cfg)
        publish_random(cfg, build_model(cfg, upstream), upstream, featurizer)


# -- synthetic batches --------------------------------------------------------------------------------------
class SyntheticClips(Dataset):
    """``n`` items with the shapes datamodule's layout (``t2v/data/datamodule.py``): real captions, labels and text
    features, random clips. One batch of distinct items, repeated: the data costs the same in both loops and little."""

    def __init__(self, cfg: DictConfig, featurizer: FastTextFeaturizer, batch_size: int, n: int) -> None:
        shapes = CaptionedShapes(num_clips=batch_size, frames=cfg.data.frames, size=cfg.data.size, seed=1)
        text, n_words = featurizer.transform(shapes.captions)
        self.n, self.pool = n, batch_size
        self.captions, self.text, self.n_words = shapes.captions, torch.from_numpy(text), torch.from_numpy(n_words)
        self.labels = {a: torch.from_numpy(shapes.labels[a]).long() for a in ATTRIBUTES}
        generator = torch.Generator().manual_seed(0)
        shape = (batch_size, 3, cfg.data.frames, cfg.data.size, cfg.data.size)
        self.video = torch.rand(shape, generator=generator) * 2 - 1 if cfg.data.with_video else None
        # data.contrast: each training clip also has a caption that says something else (here: another row's).
        self.contrast = bool(cfg.data.get("contrast"))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        k = i % self.pool
        item = {"caption": self.captions[k], "text": self.text[k], "text_len": self.n_words[k],
                "labels": {a: v[k] for a, v in self.labels.items()}, "clip_id": f"synthetic-{k}",
                "index": torch.tensor(k)}  # fmt: skip
        if self.video is not None:
            item["video"] = self.video[k]
        if self.contrast:
            item["contrast_text"] = self.text[(k + 1) % self.pool]
        return item


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


# -- the bare step ------------------------------------------------------------------------------------------
@contextmanager
def toggled(optimizer: torch.optim.Optimizer, others: Sequence[torch.optim.Optimizer]) -> Iterator[None]:
    """What Lightning's ``toggle_optimizer`` does around a manual update: the other optimizers' parameters stop
    requiring gradients, so G's backward through D computes no D weight gradients (and D's none of G's)."""
    own = {id(p) for group in optimizer.param_groups for p in group["params"]}
    frozen = [p for o in others for group in o.param_groups for p in group["params"]
              if id(p) not in own and p.requires_grad]  # fmt: skip
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


def bare_step(model: StageModule, precision: str, device: torch.device) -> Callable[[dict[str, Any]], None]:
    """One training step of ``model`` in plain PyTorch, with the optimizers the module builds."""
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if precision == "bf16-mixed" else nullcontext

    def update(optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip: float | None = None) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:  # as Lightning's clip_gradients(algorithm="norm")
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip)
        optimizer.step()

    if isinstance(model, AdversarialModule):  # AdversarialModule.training_step without the logging
        model.configure_model()  # model.compile=true: the compiled loss terms, as under the Trainer
        opt_g, opt_d = model.configure_optimizers()

        def gan(batch: dict[str, Any]) -> None:
            for _ in range(model.optim.d_steps):
                with toggled(opt_d, [opt_g]):
                    with autocast():
                        d_loss = model.d_terms(batch)["d_loss"]
                    update(opt_d, d_loss, model.optim.clip_grad_norm)
            with toggled(opt_g, [opt_d]):
                with autocast():
                    g_loss = model.g_terms(batch)["g_loss"]
                update(opt_g, g_loss, model.optim.clip_grad_norm)
            model.gan_step += 1
            model.update_ema()

        return gan

    optimizer = model.configure_optimizers()
    # The loss each module's training_step logs and returns, from the module's own helpers.
    if isinstance(model, TextVAE):
        loss_of: Callable[[dict[str, Any]], torch.Tensor] = lambda b: model.losses(b)["loss"]  # noqa: E731
    else:
        loss_of = lambda b: model.loss(*model.embed(b))  # noqa: E731

    def plain(batch: dict[str, Any]) -> None:
        with autocast():
            loss = loss_of(batch)
        update(optimizer, loss)

    return plain


# -- one loop in its own process ----------------------------------------------------------------------------
def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def reset_peak_memory(device: torch.device) -> None:
    """Start the peak over from the current use, so building the model and its upstream parts does not count."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        try:  # Linux: "5" resets the resident-set high-water mark (VmHWM) to the current resident set
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass


def peak_memory_mib(device: torch.device) -> float:
    """CUDA: the allocator's peak. CPU: the resident-set high-water mark, VmHWM (what ``ru_maxrss`` reports, but
    resettable; torch's own allocations are invisible to tracemalloc), else ``ru_maxrss``."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]
    except (OSError, AttributeError):
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS, KB elsewhere


class Flops:
    """FLOPs of whatever runs between :meth:`start` and :meth:`stop` (forward and backward)."""

    def start(self) -> None:
        self.mode = FlopCounterMode(display=False)
        self.mode.__enter__()

    def stop(self) -> int:
        self.mode.__exit__(None, None, None)
        return self.mode.get_total_flops()


class LightningClock(pl.Callback):
    """The start times of batches ``warmup`` to ``warmup + steps`` (so ``steps`` whole steps, each from one batch's
    start to the next one's) and of the first two; counts the FLOPs of that last batch, which is not timed."""

    def __init__(self, warmup: int, steps: int, device: torch.device) -> None:
        self.warmup, self.steps, self.device = warmup, steps, device
        self.starts: list[float] = []
        self.first: list[float] = []
        self.flops, self.counter = 0, Flops()

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, i: int) -> None:
        if i < 2:
            self.first.append(clock(self.device))
        if i >= self.warmup:
            self.starts.append(clock(self.device))
        if i == self.warmup + self.steps:
            self.counter.start()

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, out: Any, batch: Any, i: int) -> None:
        if i == self.warmup + self.steps:
            self.flops = self.counter.stop()


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """``--one STAGE SIZE PRECISION LOOP``: train one loop in this process and return its measurements."""
    stage, size, precision, loop = args.one
    device = torch.device(args.device)
    registry = Path(args.registry)
    work = Path(tempfile.mkdtemp(prefix="t2v-throughput-run-"))
    try:
        accelerator = "gpu" if device.type == "cuda" else "cpu"
        cfg = compose_config(stage, size, registry, work, f"trainer.precision={precision}",
                             f"trainer.accelerator={accelerator}", *args.set)  # fmt: skip
        batch_size = batch_for(args.batch_size, stage, size, cfg.data.batch_size)
        vae = artifacts.read_manifest(artifacts.latest(registry, "vae"))  # type: ignore[arg-type]
        batches = args.warmup + args.steps + 1  # the last one: FLOPs counted, not timed
        data = SyntheticClips(cfg, FastTextFeaturizer.load(vae["featurizer_dir"]), batch_size, batch_size * batches)
        loader = DataLoader(data, batch_size=batch_size)
        torch.manual_seed(0)
        model = build_model(cfg, resolve_upstream(cfg))
        if cfg.callbacks.get("channels_last"):  # what that callback of train.py's does, for both loops
            to_channels_last(model)
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        # Every optimizer step of the run, either loop's (Lightning's steps go through the same torch optimizers).
        updates = [0]
        register_optimizer_step_post_hook(lambda *_: updates.__setitem__(0, updates[0] + 1))
        if loop == "lightning":
            starts, flops, first = lightning_loop(args, cfg, model, loader, device, work)
        else:
            starts, flops, first = bare_loop(args, model, loader, precision, device)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # The median step: a machine shared with other jobs stalls some steps, which would sway a mean.
    seconds = statistics.median([b - a for a, b in zip(starts[:-1], starts[1:], strict=True)])
    return {"batch": batch_size, "params": params, "step_seconds": seconds, "flops_per_step": flops,
            "updates_per_step": updates[0] / len(loader), "peak_mib": peak_memory_mib(device),
            "first_step_seconds": first}  # fmt: skip


def lightning_loop(
    args: argparse.Namespace, cfg: DictConfig, model: StageModule, loader: DataLoader, device: torch.device, work: Path
) -> tuple[list[float], int, float]:
    """``trainer.fit`` over ``loader`` with the config's Trainer; returns the timed batches' start times, the FLOPs
    of the last batch and the first step's seconds."""
    timer = LightningClock(args.warmup, args.steps, device)
    trainer = instantiate(cfg.trainer, callbacks=[timer], logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False, max_epochs=1,
                          max_steps=len(loader) * model.optimizer_steps_per_batch, limit_val_batches=0,
                          num_sanity_val_steps=0, default_root_dir=str(work))  # fmt: skip
    reset_peak_memory(device)
    trainer.fit(model, train_dataloaders=loader)
    return timer.starts, timer.flops, timer.first[1] - timer.first[0]


def bare_loop(
    args: argparse.Namespace, model: StageModule, loader: DataLoader, precision: str, device: torch.device
) -> tuple[list[float], int, float]:
    """:func:`bare_step` over ``loader``; returns what :func:`lightning_loop` returns."""
    model.to(device).train()
    step = bare_step(model, precision, device)
    reset_peak_memory(device)
    starts, first, counter = [], [], Flops()
    for i, batch in enumerate(loader):
        if i < 2:
            first.append(clock(device))
        if i >= args.warmup:
            starts.append(clock(device))
        if i == args.warmup + args.steps:
            counter.start()
        step(to_device(batch, device))
    return starts, counter.stop(), first[1] - first[0]


def batch_for(specs: Sequence[str], stage: str, size: str, configured: int) -> int:
    """The batch of ``stage`` at ``size``: ``--batch-size`` entries N, SIZE=N or STAGE.SIZE=N (the most specific
    wins), else the paper size's CPU-sized default, else the config's ``data.batch_size``."""
    found = {"": PAPER_BATCH.get(stage, configured) if size == "paper" else configured}
    for spec in specs:
        key, _, value = spec.rpartition("=")
        found[key] = int(value)
    return found.get(f"{stage}.{size}", found.get(size, found.get("", configured)))


# -- the parent: peaks, children, the table -------------------------------------------------------------------
def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, seconds: float = 1.0) -> float:
    """GFLOP/s of the fastest of several n x n matmuls (after one warm-up), with torch's current thread count."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b
    best, spent = float("inf"), 0.0
    while spent < seconds or best == float("inf"):
        start = clock(device)
        a @ b
        took = clock(device) - start
        best, spent = min(best, took), spent + took
    return 2 * n**3 / best / 1e9


def run_child(args: argparse.Namespace, registry: Path, stage: str, size: str, precision: str, loop: str) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--one", stage, size, precision, loop,
               "--registry", str(registry), "--device", args.device, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--batch-size", *args.batch_size, "--set", *args.set]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in result.stdout.splitlines() if line.startswith(RESULT)]
    if result.returncode != 0 or not lines:
        tail = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        return {"error": tail[:120]}
    return json.loads(lines[-1][len(RESULT) :])


def fastest(kept: dict | None, new: dict) -> dict:
    """The faster of two runs of a loop, with the larger peak memory of the two; a failure stays."""
    if kept is None or "error" in kept or "error" in new:
        return new if kept is None or "error" in new else kept
    best = min(kept, new, key=lambda r: r["step_seconds"])
    return {**best, "peak_mib": max(kept["peak_mib"], new["peak_mib"])}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        return re.search(r"model name\s*:\s*(.+)", cpuinfo).group(1).strip()  # type: ignore[union-attr]
    except (OSError, AttributeError):
        return platform.processor() or "CPU"


def header(device: torch.device, peaks: dict[str, float], size: int, overrides: Sequence[str]) -> list[str]:
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    load = f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores" if device.type == "cpu" else ""
    return [
        f"- {device_name(device)}{threads}{load}; torch {torch.__version__}, Lightning {pl.__version__}",
        f"- matmul peak ({size} x {size}, best of ~1 s): fp32 {peaks['32-true']:.1f} GFLOP/s, "
        f"bf16 {peaks['bf16-mixed']:.1f} GFLOP/s",
        *([f"- config overrides: {' '.join(overrides)}"] if overrides else []),
    ]


def training(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    matmul = args.matmul_size or (8192 if device.type == "cuda" else 2048)
    dtypes = {"32-true": torch.float32, "bf16-mixed": torch.bfloat16}
    peaks = {precision: matmul_peak(device, dtype, matmul) for precision, dtype in dtypes.items()}
    root = Path(tempfile.mkdtemp(prefix="t2v-throughput-"))
    rows = []
    try:
        for size in args.sizes:
            registry = root / size / "artifacts"
            print(f"publishing randomly initialised vae and siamese stages at the {size} size", file=sys.stderr)
            random_registry(registry, size, ["vae", "siamese"])
            for stage in args.stages:
                for precision in args.precision:
                    done = both_loops(args, registry, stage, size, precision)
                    rows.append(table_row(stage, size, precision, done, peaks[precision]))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\n".join(["## Training throughput", "", *header(device, peaks, matmul, args.set),
                     f"- median of {args.steps} timed steps after {args.warmup} warm-up"
                     + (f", fastest of {args.repeats} runs per loop" if args.repeats > 1 else "")
                     + "; a step is one batch (GANs: D then G update); samples are clips (images for "
                     "stage1, captions for vae); random weights", "",
                     "| stage | size | precision | batch | updates/step | trainable params | GFLOP/step "
                     "| Lightning samples/s | bare samples/s | Lightning overhead | GFLOP/s Lightning (% of peak) "
                     "| GFLOP/s bare (% of peak) | peak memory MiB Lightning / bare | first step s |",
                     "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *rows]))  # fmt: skip


def both_loops(args: argparse.Namespace, registry: Path, stage: str, size: str, precision: str) -> dict[str, dict]:
    """Each loop ``--repeats`` times, alternately (a stretch when other jobs hold the cores then slows both alike),
    keeping the fastest run of each."""
    done: dict[str, dict] = {}
    for repeat in range(args.repeats):
        for loop in LOOPS:
            print(f"{stage} {size} {precision}: {loop} loop, run {repeat + 1} of {args.repeats}", file=sys.stderr,
                  flush=True)  # fmt: skip
            done[loop] = fastest(done.get(loop), run_child(args, registry, stage, size, precision, loop))
    return done


def table_row(stage: str, size: str, precision: str, done: dict[str, dict], peak: float) -> str:
    light, bare = done["lightning"], done["bare"]
    failed = [f"{loop}: {r['error']}" for loop, r in done.items() if "error" in r]
    if failed:
        return f"| {stage} | {size} | {precision} | failed: {'; '.join(failed)} |"
    rate = {loop: r["batch"] / r["step_seconds"] for loop, r in done.items()}
    flops = bare["flops_per_step"]
    # The Lightning step must do the bare step's work: the same FLOPs and optimizer updates (GANs: D + G).
    updates = bare["updates_per_step"]
    same = abs(light["flops_per_step"] - flops) <= 0.01 * flops and light["updates_per_step"] == updates
    gflops = f"{flops / 1e9:,.2f}" + (
        ""
        if same
        else f" (Lightning: {light['flops_per_step'] / 1e9:,.2f} GFLOP, {light['updates_per_step']:g} updates!)"
    )
    achieved = {loop: flops / r["step_seconds"] / 1e9 for loop, r in done.items()}
    cells = [
        stage, size, precision, str(bare["batch"]), f"{updates:g}", f"{bare['params']:,}", gflops,
        f"{rate['lightning']:,.1f}", f"{rate['bare']:,.1f}", f"{100 * (1 - rate['lightning'] / rate['bare']):.1f}%",
        *(f"{achieved[loop]:,.1f} ({100 * achieved[loop] / peak:.0f}%)" for loop in LOOPS),
        f"{light['peak_mib']:,.0f} / {bare['peak_mib']:,.0f}", f"{light['first_step_seconds']:,.1f}",
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


# -- generation -----------------------------------------------------------------------------------------------
# What generate.py loads before it generates: its imports (hydra, t2v, t2v.cli.generate), then the chain.
STARTUP = """
import json, sys, time
start = time.perf_counter()
import hydra, omegaconf, t2v
from t2v.cli.generate import generate
from t2v.errors import run_reporting_errors
imported = time.perf_counter()
from t2v.pipeline.generate import TextToVideo
TextToVideo.from_artifacts(sys.argv[1])
print(json.dumps({"imports": imported - start, "loading": time.perf_counter() - imported}))
"""


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def timed(fn: Callable[[], Any], reps: int) -> float:
    """The median of ``reps`` timed calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def generation(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="t2v-throughput-generate-"))
    try:
        registry = Path(args.artifacts) if args.artifacts else root / "artifacts"
        if not args.artifacts:
            print("publishing a randomly initialised quickstart chain", file=sys.stderr)
            random_registry(registry, "quickstart", STAGES)
        chain = TextToVideo.from_artifacts(registry)
        captions = list(dict.fromkeys(CaptionedShapes(num_clips=200, frames=16, size=32).captions))[:32]
        one = lambda: generate_to(chain, [CAPTION], root / "out", num_samples=1, seed=0, batch_size=32,  # noqa: E731
                                  fps=8, progress=False)  # fmt: skip
        per_caption = timed(lambda: list(chain.batches(captions, 1, 0, 32)), args.reps) / len(captions)
        one_clip = timed(lambda: list(chain.batches([CAPTION], 1, 0, 32)), args.reps)
        one_caption = timed(one, args.reps)
        clip = next(chain.batches([CAPTION], 1, 0, 1))["video"].shape
        python = wall([sys.executable, "-c", "pass"])
        out = subprocess.run([sys.executable, "-c", STARTUP, str(registry)], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        startup = json.loads(out.strip().splitlines()[-1])
        cli = wall([sys.executable, "generate.py", f"text={CAPTION}", "num_samples=1", "progress=false",
                    f"paths.artifacts_dir={registry}", f"hydra.run.dir={root / 'cli'}"])  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    weights = f"trained artifacts in {registry}" if args.artifacts else "RANDOM weights (untrained quickstart chain)"
    print("\n".join([
        "## Generation (text -> clip, CPU, fp32, as generate.py)", "",
        f"- {device_name(torch.device('cpu'))}, {torch.get_num_threads()} threads, load average "
        f"{os.getloadavg()[0]:.1f}; {weights}; clips {tuple(clip[1:])} (C, T, H, W); median of {args.reps}", "",
        "| what | time |", "|---|---:|",
        f"| text -> clip, warm, batches of 32 | {1000 * per_caption:,.1f} ms per caption |",
        f"| one caption -> clip, warm | {1000 * one_clip:,.1f} ms |",
        f"| one caption -> GIF + MP4 + PNG on disk, warm (generate_to) | {1000 * one_caption:,.1f} ms |",
        f"| python start-up (`python -c pass`) | {1000 * python:,.0f} ms |",
        f"| generate.py imports (hydra, t2v.cli.generate: torch, Lightning, PyAV, ...) | {startup['imports']:,.2f} s |",
        f"| loading the chain (TextToVideo.from_artifacts) | {startup['loading']:,.2f} s |",
        f"| `python generate.py text=... num_samples=1`, cold, whole run | {cli:,.2f} s |",
    ]))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--precision", nargs="+", default=["32-true"], choices=PRECISIONS)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per loop")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each loop, alternately; the fastest counts")
    parser.add_argument("--batch-size", nargs="*", default=[], metavar="[[STAGE.]SIZE=]N",
                        help="e.g. 8 (all), paper=8, videogan.paper=2")  # fmt: skip
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for both loops, e.g. model.compile=true")  # fmt: skip
    parser.add_argument("--matmul-size", type=int, default=0, help="side of the peak matmul (2048 CPU, 8192 CUDA)")
    parser.add_argument("--generation", action="store_true", help="time text -> clip generation instead")
    parser.add_argument("--artifacts", help="--generation: a trained registry (else random quickstart weights)")
    parser.add_argument("--reps", type=int, default=3, help="--generation: timed repetitions")
    parser.add_argument("--one", nargs=4, metavar=("STAGE", "SIZE", "PRECISION", "LOOP"), help=argparse.SUPPRESS)
    parser.add_argument("--registry", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench/throughput.py: error: torch sees no CUDA GPU here; use --device cpu", file=sys.stderr)
        sys.exit(2)  # bad input, as every t2v entry point
    if args.one:
        warnings.filterwarnings("ignore")  # Lightning's advice on workers and loggers; the table is the output
        logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
        print(RESULT + json.dumps(run_one(args)), flush=True)
    elif args.generation:
        generation(args)
    else:
        training(args)


if __name__ == "__main__":
    main()
