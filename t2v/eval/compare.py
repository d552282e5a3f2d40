"""Evaluations side by side: `python -m t2v.eval.compare <eval run dir or metrics.json> ... [--names a,b]`.

Prints one markdown table with a column per evaluation and chance beside every accuracy: first the held-out
combinations balanced over the values each caption names (with their targets), then the plain accuracies.
Runs given the same name (``--names base,base,new,new``: two seeds each) share a column: their mean, with the
lowest and highest value beside it, the spread a reader needs before believing a difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from t2v.eval.fidelity import ALL_KINDS, SUBSETS, attributes_of
from t2v.eval.report import fmt, other_rows, target_of


def load(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    path = path / "metrics.json" if path.is_dir() else path
    if not path.is_file():
        raise SystemExit(f"t2v: error: {path} does not exist; pass an evaluate.py run dir or its metrics.json")
    summary = json.loads(path.read_text())
    if "metrics" not in summary:
        raise SystemExit(f"t2v: error: {path} is not an evaluate.py metrics.json (no 'metrics')")
    return summary


def merged(summaries: list[dict[str, Any]], names: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """One summary per distinct name: each number the mean of that name's runs, kept with its spread."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for summary, name in zip(summaries, names, strict=True):
        groups.setdefault(name, []).append(summary)
    out = []
    for runs in groups.values():
        if len(runs) == 1:
            out.append(runs[0])
            continue
        keys = {k for run in runs for k in run["metrics"]}
        metrics: dict[str, Any] = {}
        for key in keys:
            numbers = [v for run in runs if isinstance(v := run["metrics"].get(key), int | float)]
            # A probe is trusted for the group only when it is for every run.
            metrics[key] = (min(numbers) if key == "probe/trusted" else Spread(numbers, len(runs))) if numbers else None
        times = [t for run in runs if (t := run.get("run_time_s")) is not None]
        out.append({"metrics": metrics, "run_time_s": Spread(times, len(runs)) if times else None})
    return out, list(groups)


class Spread(float):
    """A mean that also knows the lowest and highest of the values it averages (several seeds of one setting),
    and how many of the group's runs had a value."""

    def __new__(cls, values: list[float], runs: int) -> Spread:
        return spread_of(sum(values) / len(values), min(values), max(values), len(values), runs)

    def __reduce__(self) -> tuple[Any, ...]:  # copy and pickle rebuild it from its fields, not from its values
        return (spread_of, (float(self), self.low, self.high, self.count, self.runs))


def spread_of(mean: float, low: float, high: float, count: int, runs: int) -> Spread:
    spread = float.__new__(Spread, mean)
    spread.low, spread.high, spread.count, spread.runs = low, high, count, runs
    return spread


def table(summaries: list[dict[str, Any]], names: list[str]) -> str:
    summaries, names = merged(summaries, names)
    metrics = [s["metrics"] for s in summaries]
    first = metrics[0]
    head = "| metric | chance | " + " | ".join(names) + " |"
    lines = [head, "|---|---|" + "---|" * len(names)]

    def cell(value: Any, percent: bool) -> str:
        if not isinstance(value, Spread):
            return fmt(value, percent)
        missing = f", {value.count} of {value.runs} runs" if value.count < value.runs else ""
        return f"{fmt(float(value), percent)} ({fmt(value.low, percent)}–{fmt(value.high, percent)}{missing})"

    def row(label: str, values: list[Any], chance: Any = None, percent: bool = True) -> None:
        lines.append(f"| {label} | {fmt(chance)} | " + " | ".join(cell(v, percent) for v in values) + " |")

    for kind in ALL_KINDS:
        for attribute in (*attributes_of(kind), "all"):
            key = f"generated/{kind}/held_out_balanced/{attribute}"
            if any(key in m for m in metrics):
                goal = target_of(kind, attribute)
                target = f" (target ≥ {goal:.0%})" if goal is not None else ""
                chance = first.get(f"chance/{kind}/all" if attribute == "all" else f"chance/{attribute}")
                row(f"{kind} {attribute}, held-out, balanced over values{target}", [m.get(key) for m in metrics],
                    chance)  # fmt: skip
    for subset in ("held_out", *[s for s in SUBSETS if s != "held_out"]):
        for kind in ALL_KINDS:
            for attribute in (*attributes_of(kind), "all"):
                key = f"generated/{kind}/{subset}/{attribute}"
                if not any(key in m for m in metrics):
                    continue
                chance = first.get(f"chance/{kind}/all" if attribute == "all" else f"chance/{attribute}")
                row(f"{kind} {attribute}, {subset.replace('_', '-')}", [m.get(key) for m in metrics], chance)
    for kind in ALL_KINDS:
        for attribute in attributes_of(kind):
            key = f"generated/{kind}/balanced/{attribute}"
            if any(key in m for m in metrics):
                row(f"{kind} {attribute}, test, balanced over values", [m.get(key) for m in metrics],
                    first.get(f"chance/{attribute}"))  # fmt: skip
    for label, *_ in other_rows(first):
        values = [dict((r[0], r[1]) for r in other_rows(m)).get(label) for m in metrics]
        row(f"{label}, generated", values, percent=False)
        real = dict((r[0], r[2]) for r in other_rows(first)).get(label)
        if real is not None:
            row(
                f"{label}, real", [dict((r[0], r[2]) for r in other_rows(m)).get(label) for m in metrics], percent=False
            )
    for k in (1, 5, 10):
        for which in ("real", "generated"):
            key = f"retrieval/{which}/recall@{k}"
            if any(key in m for m in metrics):
                row(f"retrieval recall@{k}, {which} images", [m.get(key) for m in metrics])
    row("probe trusted (≥ threshold on real clips)", [bool(m.get("probe/trusted")) for m in metrics])
    row("evaluation time (s)", [s.get("run_time_s") for s in summaries], percent=False)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="evaluate.py run dirs (or their metrics.json)")
    parser.add_argument("--names", help="comma-separated column names (default: each run's experiment)")
    args = parser.parse_args(argv)
    summaries = [load(run) for run in args.runs]
    if args.names:
        names = args.names.split(",")
    else:  # one column per run: runs are averaged only when you name them alike
        names = [f"{s.get('experiment') or 'run'} ({Path(r).name})" for s, r in zip(summaries, args.runs, strict=True)]
    if len(names) != len(summaries):
        raise SystemExit(
            f"t2v: error: --names has {len(names)} names for {len(summaries)} runs; give one per run "
            "(the same name for runs to average, e.g. two seeds)"
        )
    print(table(summaries, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
