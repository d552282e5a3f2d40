"""Peak memory of `python generate.py` against the number of captions: it must stay flat.

    python bench/generate_memory.py [--artifacts-dir artifacts] [--captions 100,500,2000] [--num-samples 4]
                                    [--batch-size 32] [--work-dir /tmp/t2v-generate-memory]

For each number of captions, ``generate.py texts_file=<captions> num_samples=<n> batch_size=<b>`` runs as its own
process, and the table gives its peak resident memory (the kernel's ``ru_maxrss`` of that process, from
``os.wait4``), when its first clip was complete on disk (``samples.json`` lists it), and how long it took. The
captions are the shapes dataset's (the vocabulary the chain was trained on). Without ``--artifacts-dir`` a
quickstart-sized chain is trained first into the work folder (``train.py experiment=quickstart stage=pipeline
debug=limit``: the quickstart's networks and clips, a handful of batches each; a few minutes on 2 CPU cores).

The target (issue 21): 2,000 captions with the quickstart chain in at most 1.5 GB, the first files within seconds.
This is a benchmark, not a test: it prints a table and exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from t2v.data.shapes import CaptionedShapes  # noqa: E402

TARGET_MB = 1536


def train_chain(work_dir: Path) -> Path:
    """A quickstart chain (networks and clip size of ``experiment=quickstart``, few batches) in ``work_dir``."""
    registry = work_dir / "artifacts"
    if (registry / "videogan" / "latest").is_file() and (registry / "stage1" / "latest").is_file():
        print(f"using the chain already trained in {registry}", flush=True)
        return registry
    command = [sys.executable, str(ROOT / "train.py"), "experiment=quickstart", "stage=pipeline", "debug=limit",
               "logger=csv", f"paths.artifacts_dir={registry}", f"paths.cache_dir={work_dir / 'cache'}",
               f"hydra.run.dir={work_dir / 'train'}"]  # fmt: skip
    log = work_dir / "train.log"
    print("training a quickstart chain:", " ".join(command), f"(output in {log})", flush=True)
    with open(log, "w") as output:
        result = subprocess.run(command, env={**os.environ, "WANDB_MODE": "offline"}, stdout=output, stderr=output)
    if result.returncode != 0:
        sys.exit(f"training the chain failed (exit {result.returncode}); see {log}")
    return registry


def listed(index: Path) -> int:
    """How many samples ``samples.json`` lists now (0 while it is absent; it is replaced atomically, so it is never
    read half-written)."""
    try:
        return len(json.loads(index.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def run_one(command: list[str], index: Path, log: Path) -> tuple[int, float | None, float, int]:
    """Run ``command`` (stderr into ``log``); returns its exit status, when ``index`` first listed a sample (seconds
    from the start), its wall time and its peak RSS in KB. ``os.wait4`` gives the usage of that one process
    (``RUSAGE_CHILDREN`` would be the maximum over every child so far)."""
    started = time.monotonic()
    first = None
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if first is None and listed(index):
                first = time.monotonic() - started
            time.sleep(0.1)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait for it again
    return process.returncode, first, time.monotonic() - started, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts-dir", type=Path, help="a trained chain's registry (default: train one)")
    parser.add_argument("--captions", default="100,500,2000", help="numbers of captions, comma separated")
    parser.add_argument("--num-samples", type=int, default=4, help="clips per caption (generate.py's default: 4)")
    parser.add_argument("--batch-size", type=int, default=32, help="clips per batch (generate.py's default: 32)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/t2v-generate-memory"))
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    registry = args.artifacts_dir or train_chain(args.work_dir)
    counts = [int(n) for n in args.captions.split(",")]
    pool = CaptionedShapes(num_clips=max(counts), frames=16, size=32).captions
    rows = []
    for count in counts:
        run = args.work_dir / f"generate_{count}"
        run.mkdir(parents=True, exist_ok=True)
        texts = run / "captions.txt"
        texts.write_text("\n".join(pool[:count]) + "\n", encoding="utf-8")
        out = run / "clips"
        command = [sys.executable, str(ROOT / "generate.py"), f"texts_file={texts}", f"num_samples={args.num_samples}",
                   f"batch_size={args.batch_size}", f"out_dir={out}", f"paths.artifacts_dir={registry}",
                   f"hydra.run.dir={run / 'hydra'}", "progress=false"]  # fmt: skip
        print(f"{count} captions ...", flush=True)
        status, first, wall, max_rss_kb = run_one(command, out / "samples.json", run / "stderr.txt")
        clips = listed(out / "samples.json")
        if status != 0:
            print(f"  generate.py failed (exit {status}); see {run / 'stderr.txt'}", flush=True)
        rows.append((count, clips, max_rss_kb / 1024, first, wall))

    print(f"\ngenerate.py, num_samples={args.num_samples}, batch_size={args.batch_size}, chain {registry}")
    print(f"{'captions':>8} {'clips':>6} {'peak RSS MB':>12} {'first clip s':>13} {'total s':>8} {'clips/s':>8}")
    for count, clips, rss, first, wall in rows:
        first_text = f"{first:.1f}" if first is not None else "-"
        print(f"{count:>8} {clips:>6} {rss:>12.0f} {first_text:>13} {wall:>8.1f} {clips / wall:>8.1f}")
    worst = max(rss for _, _, rss, _, _ in rows)
    verdict = "within" if worst <= TARGET_MB else "OVER"
    print(f"peak RSS {worst:.0f} MB: {verdict} the {TARGET_MB} MB target")


if __name__ == "__main__":
    main()
