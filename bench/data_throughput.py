"""Movie-data throughput: decoding clips with PyAV versus reading them from the preprocessed cache.

    python bench/data_throughput.py [--clips 32] [--frames 32] [--size 64] [--loader-workers 0 2]
    python bench/data_throughput.py --root /data/mpii --data mpii --clips 500   # your own copy

Without --root it writes an MPII-MD-style tree of synthetic clips (a square moving over a gradient,
--source WxH at 25 fps, --source-frames long) into a temporary folder. Each measurement runs in its own
process, so each peak RSS is its own: "decode" runs what preprocessing does per clip (decode, sample
the window, scale, crop, judge) in one process; "cache" reads the same clips as training does
(memory-mapped shards through a DataLoader with N workers, whose largest peak is shown apart: a
forked worker's RSS also counts the pages it shares with the main process). "baseline" is the RSS
after imports, before any clip. This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_tree(root: Path, clips: int, width: int, height: int, frames: int) -> None:
    """An MPII-MD-style tree: one movie, ``clips`` .avi clips, annotations and split files."""
    import imageio.v3 as iio

    movie = "0001_Bench_Movie"
    (root / movie).mkdir(parents=True)
    ramp = np.linspace(0.5, 1.0, height, dtype=np.float32)[:, None, None]
    lines = []
    for i in range(clips):
        rng = np.random.default_rng(i)
        base = (ramp * rng.integers(30, 200, 3)).astype(np.uint8)
        video = np.repeat(np.broadcast_to(base, (height, width, 3))[None], frames, axis=0).copy()
        side = height // 5
        for t in range(frames):
            x = (4 * t) % (width - side)
            video[t, height // 3 : height // 3 + side, x : x + side] = rng.integers(150, 255, 3)
        clip_id = f"{movie}_00.{i // 60:02d}.{i % 60:02d}.000-00.{i // 60:02d}.{i % 60:02d}.900"
        iio.imwrite(root / movie / f"{clip_id}.avi", video, fps=25, plugin="pyav", codec="mpeg4")
        lines.append(f"{clip_id}\tSOMEONE watches square number {i} move.")
    (root / "annotations-someone.csv").write_text("\n".join(lines) + "\n")
    (root / "dataSplit.txt").write_text(f"{movie}\ttraining\n")


def datamodule(args: argparse.Namespace):
    from t2v.data import movies

    cls = {"mpii": movies.MPIIDataModule, "lsmdc": movies.LSMDCDataModule, "folder": movies.FolderDataModule}[args.data]
    return cls(featurizer=None, root=args.root, frames=args.frames, size=args.size, num_clips=args.clips,
               cache_dir=args.cache_dir, prepare_workers=args.prepare_workers)  # fmt: skip


def measure_decode(args: argparse.Namespace) -> dict:
    from t2v.data.video import process_clip

    dm = datamodule(args)
    records = dm.records()
    baseline = current_rss_mib()
    started = time.perf_counter()
    kept = sum(process_clip(r, dm.spec, dm.filters).status == "kept" for r in records)
    seconds = time.perf_counter() - started
    return {"clips": len(records), "kept": kept, "seconds": seconds, "baseline_mib": baseline, "peak_mib": rss_mib()}


def measure_cache(args: argparse.Namespace, workers: int) -> dict:
    from torch.utils.data import DataLoader

    from t2v.data.movies import CachedClips

    dm = datamodule(args)
    cache = dm.cache
    rows = list(cache.index().values())
    dataset = CachedClips(cache, np.arange(len(rows)), np.array([(r["shard"], r["row"]) for r in rows]).reshape(-1, 2),
                          np.array([r["caption"] for r in rows]), np.array([r["clip_id"] for r in rows]))  # fmt: skip
    loader = DataLoader(dataset, batch_size=8, num_workers=workers)
    baseline = current_rss_mib()
    started = time.perf_counter()
    seen = 0
    for _ in range(args.epochs):  # several passes: cache reads are too fast to time in one
        for batch in loader:
            seen += len(batch["video"])
    seconds = time.perf_counter() - started
    workers_peak = rss_mib(resource.RUSAGE_CHILDREN) if workers else None
    return {"clips": seen, "seconds": seconds, "baseline_mib": baseline, "peak_mib": rss_mib(),
            "worker_peak_mib": workers_peak}  # fmt: skip


def child(args: argparse.Namespace, what: str, workers: int = 0) -> dict:
    """Run one measurement in a fresh interpreter and return its JSON."""
    command = [sys.executable, __file__, "--measure", what, "--root", args.root, "--data", args.data,
               "--cache-dir", args.cache_dir, "--frames", str(args.frames), "--size", str(args.size),
               "--clips", str(args.clips), "--epochs", str(args.epochs), "--workers-now", str(workers)]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", help="an existing dataset (default: write synthetic clips to a temp dir)")
    parser.add_argument("--data", default="mpii", choices=["mpii", "lsmdc", "folder"])
    parser.add_argument("--clips", type=int, default=32, help="clips to use (data.num_clips)")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--source", default="480x272", help="synthetic clips' WxH")
    parser.add_argument("--source-frames", type=int, default=75, help="synthetic clips' length (3 s at 25 fps)")
    parser.add_argument("--prepare-workers", type=int, default=None, help="for building the cache")
    parser.add_argument("--loader-workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--epochs", type=int, default=5, help="passes over the cache per measurement")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--measure", choices=["decode", "cache"], help=argparse.SUPPRESS)
    parser.add_argument("--workers-now", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure:
        result = measure_decode(args) if args.measure == "decode" else measure_cache(args, args.workers_now)
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="t2v-bench-") as tmp:
        if args.root is None:
            width, height = map(int, args.source.lower().split("x"))
            args.root = str(Path(tmp) / "mpii")
            started = time.perf_counter()
            write_tree(Path(args.root), args.clips, width, height, args.source_frames)
            print(f"wrote {args.clips} clips of {args.source_frames} frames at {args.source} "
                  f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
        args.cache_dir = args.cache_dir or str(Path(tmp) / "cache")
        started = time.perf_counter()
        summary = datamodule(args).prepare_cache(progress=False)
        prepare_s = time.perf_counter() - started
        print(f"prepare ({args.prepare_workers or 'all'} worker processes): {summary['cached']} clips cached "
              f"in {prepare_s:.1f} s ({summary['cached'] / prepare_s:.1f} clips/s), clip = {args.frames} frames "
              f"of {args.size}x{args.size}")  # fmt: skip
        rows = [("decode (PyAV, 1 process)", child(args, "decode"))]
        rows += [(f"cache, DataLoader {w} workers", child(args, "cache", w)) for w in args.loader_workers]
        print(f"{'':32} {'clips/s':>10} {'baseline MiB':>13} {'peak RSS MiB':>13} {'worker peak MiB':>16}")
        for name, r in rows:
            rate = r["clips"] / r["seconds"]
            worker = f"{r['worker_peak_mib']:16.0f}" if r.get("worker_peak_mib") else f"{'-':>16}"
            print(f"{name:32} {rate:10.1f} {r['baseline_mib']:13.0f} {r['peak_mib']:13.0f} {worker}")
        print("(RSS counts the pages of the memory-mapped shards a process touched; the kernel can drop them.)")


if __name__ == "__main__":
    main()
