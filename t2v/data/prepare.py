"""Preprocess a movie dataset once: decode every clip into the memory-mapped cache.

    python -m t2v.data.prepare data=mpii data.root=/data/mpii [data.frames=16 data.size=32 ...]

It composes ``conf/train.yaml`` like ``train.py``, so the same ``data=...`` overrides name the same
cache, and training finds it (training also runs this when clips are missing from the cache).
Clips are decoded by a pool of worker processes while the main process writes shards, under a rich
progress bar. Interrupted runs resume: the clips already in the cache, dropped by a quality filter or
failed are skipped. A file that failed (missing, empty, truncated, undecodable) is logged with its clip
id and counted in the summary by reason; this command tries the failed ones again, in case they were
fixed, while training leaves them alone.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from t2v.data.annotations import ClipRecord
from t2v.data.cache import SUMMARY, ClipCache
from t2v.data.video import ClipSpec, Outcome, QualityFilters, process_clip
from t2v.files import write_bytes_atomic

log = logging.getLogger(__name__)
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def outcomes(records: Sequence[ClipRecord], spec: ClipSpec, filters: QualityFilters, workers: int) -> Iterator[Outcome]:
    """Process clips in ``workers`` processes (0: in this one), yielding outcomes as they finish."""
    if workers == 0:
        for record in records:
            yield process_clip(record, spec, filters)
        return
    # spawn, not fork: the caller may be a training process with torch threads running, which a
    # forked child can deadlock on; the workers only import numpy and PyAV.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    todo = iter(records)
    pending: set[Future[Outcome]] = set()
    try:
        # A bounded number in flight keeps the decoded clips waiting in memory bounded too.
        for record in todo:
            pending.add(pool.submit(process_clip, record, spec, filters))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                record = next(todo, None)
                if record is not None:
                    pending.add(pool.submit(process_clip, record, spec, filters))
                yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def prepare_clips(
    records: Sequence[ClipRecord],
    cache: ClipCache,
    settings: dict[str, Any],
    spec: ClipSpec,
    filters: QualityFilters,
    workers: int | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    shard_bytes: int | None = None,
) -> dict[str, Any]:
    """Bring every clip of ``records`` into ``cache``, or its dropped or failed list (``retry_failed``:
    try the failed ones again). Returns the summary: the clips cached, the ones each filter dropped
    and the ones each kind of failure skipped."""
    started = time.time()
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    with cache.writer(settings, shard_bytes) as writer:
        if retry_failed:
            writer.forget_failures()
        done = set(cache.index()) | set(cache.dropped()) | set(cache.failed())
        todo = [r for r in records if r.clip_id not in done]
        records_by_id = {r.clip_id: r for r in todo}
        with make_progress(progress) as bar:
            task = bar.add_task("decoding clips", total=len(todo))
            for outcome in outcomes(todo, spec, filters, min(workers, len(todo))):
                record = records_by_id[outcome.clip_id]
                if outcome.status == "kept":
                    row = {"clip_id": record.clip_id, "caption": record.captions[0], "captions": list(record.captions),
                           "movie": record.movie, "split": record.split, **outcome.meta}  # fmt: skip
                    writer.add(outcome.frames, row)
                elif outcome.status == "dropped":
                    writer.drop({"clip_id": record.clip_id, "reason": outcome.reason, "detail": outcome.detail,
                                 **outcome.meta})  # fmt: skip
                else:
                    writer.fail({"clip_id": record.clip_id, "reason": outcome.reason, "detail": outcome.detail})
                    log.warning("skipped clip %s: %s (%s)", record.clip_id, outcome.reason, outcome.detail)
                bar.advance(task)
        new = writer.written + len(writer.buffer)
    wanted = {r.clip_id for r in records}
    dropped = Counter(row["reason"] for clip_id, row in cache.dropped().items() if clip_id in wanted)
    failed = {clip_id: row["reason"] for clip_id, row in cache.failed().items() if clip_id in wanted}
    summary = {
        "cache": str(cache.directory),
        "listed": len(wanted),
        "cached": sum(clip_id in wanted for clip_id in cache.index()),
        "cached_this_run": new,
        "tried_this_run": len(todo),
        "dropped": dict(sorted(dropped.items())),
        "failed": dict(sorted(Counter(failed.values()).items())),
        "failed_clips": sorted(failed),
        "seconds": round(time.time() - started, 2),
    }
    write_bytes_atomic(cache.directory / SUMMARY, json.dumps(summary, indent=2, ensure_ascii=False).encode())
    return summary


def make_progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    """The counts of a preprocessing run, one line per filter and per kind of failure."""
    console = console or Console()
    console.print(f"[bold]data cache[/] {summary['cache']}", soft_wrap=True)
    table = Table(show_header=False)
    table.add_row("clips listed", str(summary["listed"]))
    table.add_row("tried this run", str(summary["tried_this_run"]))
    table.add_row("cached", f"{summary['cached']} ({summary['cached_this_run']} this run)")
    for reason, count in summary["dropped"].items():
        table.add_row(f"dropped: {reason}", str(count))
    for reason, count in summary["failed"].items():
        table.add_row(f"skipped: {reason}", str(count))
    table.add_row("time", f"{summary['seconds']:.1f} s")
    console.print(table)
    if summary["failed_clips"]:
        shown = ", ".join(summary["failed_clips"][:10])
        more = len(summary["failed_clips"]) - 10
        console.print(f"skipped clips: {shown}" + (f" and {more} more" if more > 0 else ""), soft_wrap=True)


def run(cfg: DictConfig) -> dict[str, Any] | None:
    """Build the configured datamodule and prepare its cache."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from t2v.data.datamodule import check_data

    check_data(cfg.data)
    datamodule = instantiate(cfg.data, featurizer=None)
    if not hasattr(datamodule, "prepare_cache"):
        Console().print(f"data={HydraConfig.get().runtime.choices.get('data')} needs no preparation")
        return None
    summary = datamodule.prepare_cache(progress=True, retry_failed=True)
    if getattr(datamodule, "min_agreement", 0):  # the judge needs the caption features, as the first stage makes them
        datamodule.featurizer = instantiate(cfg.featurizer)
        datamodule.setup()
        summary["dropped"]["caption unlike its clip (judge)"] = datamodule.agreement_dropped["dropped"]
    print_summary(summary)
    return summary


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    from t2v.errors import run_reporting_errors

    run_reporting_errors(run, cfg)


def entry(argv: Iterable[str] | None = None) -> None:
    """``python -m t2v.data.prepare``: no run folder, logs to the console only."""
    user = list(sys.argv[1:] if argv is None else argv)
    quiet = ["hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=stdout"]
    sys.argv = [sys.argv[0], *quiet, *user]
    main()


if __name__ == "__main__":
    entry()
