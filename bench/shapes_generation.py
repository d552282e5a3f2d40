"""Benchmark: how fast the embedded captioned-shapes dataset is indexed and rendered.

    python bench/shapes_generation.py --num-clips 10000 --frames 16 --size 32

Times building the index (attributes, captions, splits), rendering every clip in chunks the way
a cache writer would, and rendering single clips the way a DataLoader's __getitem__ does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

# Benchmark the checkout this script lives in, whether or not t2v is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from t2v.data.shapes import CaptionedShapes, ShapesClips  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-clips", type=int, default=10000)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=1000, help="clips per render() call")
    parser.add_argument("--single", type=int, default=500, help="clips fetched one at a time")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    shapes = CaptionedShapes(num_clips=args.num_clips, frames=args.frames, size=args.size, seed=args.seed)
    index_s = time.perf_counter() - start

    checksum = 0
    start = time.perf_counter()
    for first in range(0, args.num_clips, args.chunk):
        clips = shapes.render(np.arange(first, min(first + args.chunk, args.num_clips)))
        # Touch the result so the work cannot be skipped and the run is comparable.
        checksum += int(clips[:, 0, 0, 0, 0].sum())
    render_s = time.perf_counter() - start

    dataset = ShapesClips(shapes, np.arange(min(args.single, args.num_clips)))
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    item_ms = 1000 * (time.perf_counter() - start) / max(1, len(dataset))

    mib = args.num_clips * args.frames * args.size * args.size * 3 / 2**20
    print(f"clips {args.num_clips} x {args.frames}x{args.size}x{args.size} ({mib:.0f} MiB uint8)")
    print(f"index:  {index_s:.3f} s ({args.num_clips / index_s:,.0f} clips/s)")
    rate = args.num_clips / render_s
    print(f"render: {render_s:.3f} s ({rate:,.0f} clips/s, chunks of {args.chunk})")
    print(f"total:  {args.num_clips / (index_s + render_s):,.0f} clips/s")
    print(f"__getitem__ with video: {item_ms:.3f} ms/clip (checksum {checksum})")


if __name__ == "__main__":
    main()
