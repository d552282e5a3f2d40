"""A table of the jobs of a sweep: ``python -m t2v.sweep_summary multirun/<stage>/<date>_<time>``.

One row per job folder (``0/``, ``1/``, ...): the overrides that differ between the jobs (all of them
when there is one job), how the run ended (``stop/reason`` and ``stop/step`` from its metrics.json;
GAN stages only) and its final metrics: the stage's monitored metric and the G and D losses, or the
metrics named with ``--metrics``. A job without metrics.json (it failed, or still runs) is listed too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from t2v.errors import T2VError

DEFAULT_METRICS = ("train/g_loss", "train/d_loss")


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job folders of a sweep, in job order."""
    if not sweep_dir.is_dir():
        raise T2VError(f"{sweep_dir} is not a folder; pass a sweep folder, e.g. multirun/stage1/<date>_<time>")
    jobs = [
        p for p in sweep_dir.iterdir() if p.is_dir() and ((p / "metrics.json").is_file() or (p / ".hydra").is_dir())
    ]
    if not jobs:
        raise T2VError(f"{sweep_dir} holds no sweep jobs (folders with metrics.json or .hydra/); pass the sweep folder")
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def read_job(job: Path) -> dict[str, Any]:
    overrides_file = job / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    metrics_file = job / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    return {"job": job.name, "overrides": list(overrides or []), "metrics": metrics}


def varying(jobs: list[dict[str, Any]]) -> list[list[str]]:
    """Each job's overrides, without those every job shares (unless there is only one job)."""
    if len(jobs) < 2:
        return [job["overrides"] for job in jobs]
    shared = set.intersection(*(set(job["overrides"]) for job in jobs))
    return [[o for o in job["overrides"] if o not in shared] for job in jobs]


def metric_columns(jobs: list[dict[str, Any]], requested: list[str] | None) -> list[str]:
    if requested:
        return requested
    columns: list[str] = []
    for job in jobs:
        metrics = job["metrics"] or {}
        candidates = [metrics.get("monitor"), *DEFAULT_METRICS]
        columns += [c for c in candidates if c and c in (metrics.get("final") or {}) and c not in columns]
    return columns


def number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def build_table(sweep_dir: Path, requested: list[str] | None = None) -> Table:
    jobs = [read_job(job) for job in job_dirs(sweep_dir)]
    columns = metric_columns(jobs, requested)
    table = Table(title=f"sweep {sweep_dir}", title_justify="left")
    for name in ("job", "overrides", "stop reason", "stop step", *columns):
        table.add_column(name, justify="right" if name not in ("overrides", "stop reason") else "left")
    for job, overrides in zip(jobs, varying(jobs), strict=True):
        metrics = job["metrics"]
        if metrics is None:
            table.add_row(job["job"], " ".join(overrides), "[red]no metrics.json[/]", "-", *("-" for _ in columns))
            continue
        final = metrics.get("final") or {}
        table.add_row(
            job["job"],
            " ".join(overrides),
            str(metrics.get("stop/reason", "-")),
            number(metrics.get("stop/step")),
            *(number(final.get(c)) for c in columns),
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t2v.sweep_summary", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep folder, e.g. multirun/stage1/2026-11-24_19-00-00")
    parser.add_argument("--metrics", help="comma-separated final metrics to show, e.g. train/g_loss,train/diversity")
    args = parser.parse_args(argv)
    requested = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    try:
        table = build_table(args.sweep_dir, requested)
    except T2VError as error:
        print(f"t2v: error: {error}", file=sys.stderr)
        return 2
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))  # a log file or a pipe: do not squeeze the columns
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
