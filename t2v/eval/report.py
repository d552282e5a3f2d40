"""The evaluation's outputs: ``metrics.json``, a markdown table (``metrics.md``) and the logger.

Metric names (all in ``metrics.json`` under ``metrics``, and logged as they are):

==================================================  ===========================================================
``real/<kind>/<subset>/<attribute>``                the probe's accuracy on real test clips (its own check)
``generated/<kind>/<subset>/<attribute>``           the probe's accuracy on generated clips / stage-I images
``generated/<kind>/value/<attribute>/<value>``      that accuracy on the test samples whose caption names <value>
``generated/<kind>/balanced/<attribute>``           the mean of those over the values (balanced accuracy)
``generated/<kind>/held_out_value/...``, ``held_out_balanced/<attribute>``  the same on the held-out combinations;
                                                    ``held_out_balanced/all``: every attribute right, averaged
                                                    over the held-out combinations
``chance/<attribute>``, ``chance/<kind>/all``       1 / number of values; the product for ``all``
``quality/<kind>/fd``, ``kid``, ``kid_std``         Fréchet distance and KID, real vs generated, probe features
``quality/<kind>/fd_real``, ``kid_real``, ...       the same between the test clips and as many fresh real ones
``quality/temporal_change/<which>``                 mean absolute frame-to-frame change (pixels in [0, 1]) of
                                                    the real, generated or animated clips
``diversity/<kind>/<pixel|feature>/<generated|real>``  mean pairwise distance between samples of one caption
``retrieval/<real|generated>/recall@K``             siamese text -> image recall@K on the test split
==================================================  ===========================================================

``kind`` is ``video`` (the clip, video probe), ``image`` (the stage-I image, image probe) or ``animated`` (the video
GAN's clip from the real first frame, video probe; with ``animate_real_frames``); ``subset`` is
``test``, ``held_out`` (attribute combinations never trained on) or ``seen``; ``attribute`` is an attribute
name or ``all`` (every attribute of the kind right at once).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t2v.data.shapes import ATTRIBUTES
from t2v.eval.fidelity import ALL_KINDS, ANIMATED, SUBSETS, attributes_of
from t2v.eval.unlabelled import judge_rows

# Shown beside the held-out combinations' balanced figures: what experiment=t2v is to reach on any held-out split
# (the clips on every one; the stage-I images on shape and colour).
TARGETS = {"colour": 0.97, "direction": 0.97, "shape": 0.90, "all": 0.85}
IMAGE_TARGETS = ("shape", "colour")


def target_of(kind: str, attribute: str) -> float | None:
    """The chain's targets: the clips' and the stage-I images'; the video GAN alone (``animated``) is a diagnosis."""
    if kind == "video" or (kind == "image" and attribute in IMAGE_TARGETS):
        return TARGETS.get(attribute)
    return None


def fmt(value: Any, percent: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{100 * value:.1f}%" if percent else f"{value:.4g}"


def accuracy_rows(metrics: dict[str, float], prefix: str) -> list[tuple[str, str, list[Any], Any]]:
    """(kind, attribute, [value per subset], chance) for every accuracy under ``prefix`` (real|generated)."""
    rows = []
    for kind in ALL_KINDS:
        for attribute in (*attributes_of(kind), "all"):
            values = [metrics.get(f"{prefix}/{kind}/{subset}/{attribute}") for subset in SUBSETS]
            if all(v is None for v in values):
                continue
            chance = metrics.get(f"chance/{kind}/all" if attribute == "all" else f"chance/{attribute}")
            rows.append((kind, attribute, values, chance))
    return rows


def value_rows(metrics: dict[str, float], subset: str = "") -> list[tuple[str, str, Any, str, Any]]:
    """(kind, attribute, balanced accuracy, "value accuracy, ...", chance) for the generated samples, on the test
    split (``subset=""``) or the held-out combinations (``subset="held_out_"``, with the ``all`` row)."""
    rows = []
    for kind in ALL_KINDS:
        for attribute in (*attributes_of(kind), *(["all"] if subset else [])):
            balanced = metrics.get(f"generated/{kind}/{subset}balanced/{attribute}")
            if balanced is None:
                continue
            prefix = f"generated/{kind}/{subset}value/{attribute}/"
            values = ", ".join(f"{k[len(prefix) :]} {fmt(v)}" for k, v in metrics.items() if k.startswith(prefix))
            chance = metrics.get(f"chance/{kind}/all" if attribute == "all" else f"chance/{attribute}")
            rows.append((kind, attribute, balanced, values, chance))
    return rows


def other_rows(metrics: dict[str, float]) -> list[tuple[str, Any, Any]]:
    """(name, generated, real) for the quality, diversity and retrieval figures."""
    rows: list[tuple[str, Any, Any]] = []
    for kind in ALL_KINDS:
        for key in ("fd", "kid"):
            if f"quality/{kind}/{key}" in metrics:
                label = f"{key.upper()} {kind} to the test clips (probe features)"
                rows.append((label, metrics[f"quality/{kind}/{key}"], metrics.get(f"quality/{kind}/{key}_real")))
    rows.append(("mean frame-to-frame change", metrics.get("quality/temporal_change/generated"),
                 metrics.get("quality/temporal_change/real")))  # fmt: skip
    if f"quality/temporal_change/{ANIMATED}" in metrics:
        rows.append((f"mean frame-to-frame change, {ANIMATED}", metrics[f"quality/temporal_change/{ANIMATED}"],
                     metrics.get("quality/temporal_change/real")))  # fmt: skip
    for kind in ALL_KINDS:
        for space in ("pixel", "feature"):
            name = f"diversity/{kind}/{space}"
            if f"{name}/generated" in metrics or f"{name}/real" in metrics:
                rows.append((f"diversity {kind}, {space} (same caption)", metrics.get(f"{name}/generated"),
                             metrics.get(f"{name}/real")))  # fmt: skip
    return rows


def markdown(metrics: dict[str, float], title: str, notes: Sequence[str] = ()) -> str:
    """The evaluation as markdown: fidelity with chance beside each figure, then quality and retrieval."""
    lines = [f"# {title}", ""]
    lines += [f"> {note}" for note in notes]
    if notes:
        lines.append("")
    held_out = value_rows(metrics, "held_out_")
    if held_out:
        lines += ["## Held-out combinations, balanced over the values each caption names", "",
                  "The headline: captions never trained on, each value (each shape, colour, ...) counted once, "
                  "whatever the split's mix; `all` averages the held-out combinations.", "",
                  "| kind | attribute | balanced | target | per value | chance |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for kind, attribute, balanced, values, chance in held_out:
            target = fmt(target_of(kind, attribute))
            lines.append(f"| {kind} | {attribute} | {fmt(balanced)} | {target} | {values or '–'} | {fmt(chance)} |")
        lines.append("")
    lines += ["## Fidelity: the probe's accuracy on generated samples", "",
              "| kind | attribute | test | held-out combinations | seen combinations | chance |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for kind, attribute, values, chance in accuracy_rows(metrics, "generated"):
        lines.append(f"| {kind} | {attribute} | " + " | ".join(fmt(v) for v in values) + f" | {fmt(chance)} |")
    by_value = value_rows(metrics)
    if by_value:
        lines += ["", "## Fidelity by the value the caption names (test split)", "",
                  "A generator that draws one value for every caption gets that value's share of the test split as "
                  "accuracy above, but here only one over the number of values the test captions name.", "",
                  "| kind | attribute | balanced (mean over values) | per value | chance |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for kind, attribute, balanced, values, chance in by_value:
            lines.append(f"| {kind} | {attribute} | {fmt(balanced)} | {values} | {fmt(chance)} |")
    lines += ["", "## The probe on real test clips (must be ≥ threshold to trust the figures above)", "",
              "| kind | attribute | test | held-out combinations | seen combinations | chance |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for kind, attribute, values, chance in accuracy_rows(metrics, "real"):
        lines.append(f"| {kind} | {attribute} | " + " | ".join(fmt(v) for v in values) + f" | {fmt(chance)} |")
    lines += ["", "## Quality and diversity", "",
              "| metric | generated | real (FD/KID: fresh real clips, the score of a perfect generator) |",
              "|---|---|---|"]  # fmt: skip
    for name, generated, real in other_rows(metrics):
        lines.append(f"| {name} | {fmt(generated, False)} | {fmt(real, False)} |")
    if "judge/fd" in metrics:
        lines += ["", "## The text-video judge (what scores movie clips), beside the probe", "", *judge_rows(metrics)]
    recalls = sorted((k for k in metrics if k.startswith("retrieval/real/")), key=lambda k: int(k.rsplit("@", 1)[1]))
    if recalls:
        lines += ["", "## Retrieval: siamese text → image on the test split", "",
                  "| recall@K | real clips | generated stage-I images |", "|---|---|---|"]  # fmt: skip
        for key in recalls:
            k = key.rsplit("@", 1)[1]
            lines.append(f"| @{k} | {fmt(metrics[key])} | {fmt(metrics.get(f'retrieval/generated/recall@{k}'))} |")
    return "\n".join(lines) + "\n"


def finite_or_null(value: Any) -> Any:
    """NaN and infinities as null, so metrics.json is strict JSON (a diversity of one sample is undefined)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def write(output_dir: Path, summary: dict[str, Any], table: str) -> dict[str, str]:
    """``metrics.json`` and ``metrics.md`` in the run dir; returns their paths."""
    paths = {"metrics": output_dir / "metrics.json", "table": output_dir / "metrics.md"}
    paths["metrics"].write_text(json.dumps(finite_or_null(summary), indent=2, default=str))
    paths["table"].write_text(table)
    return {k: str(v) for k, v in paths.items()}


def log(loggers: Sequence[Any], metrics: dict[str, float], config: dict[str, Any], table: str) -> None:
    """The same values to every configured logger (W&B also gets the markdown table as text)."""
    from pytorch_lightning.loggers import WandbLogger

    finite = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    for logger in loggers:
        logger.log_hyperparams(config)
        logger.log_metrics(finite, step=0)
        if isinstance(logger, WandbLogger):
            import wandb

            logger.experiment.summary.update(finite)
            logger.experiment.log({"evaluation/table": wandb.Html(f"<pre>{table}</pre>")})
        logger.finalize("success")
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()


def probe_verdict(metrics: dict[str, float], threshold: float) -> tuple[bool, list[str]]:
    """Whether the probe reads every attribute of real test clips at ``threshold`` or better, on every
    subset; otherwise the attributes that fall short, with their lowest accuracy over the subsets."""
    lowest: dict[str, float] = {}
    for key, value in metrics.items():
        parts = key.split("/")  # real/<kind>/<subset>/<attribute>
        if parts[0] == "real" and len(parts) == 4 and parts[3] != "all":
            name = f"{parts[1]} {parts[3]}"
            lowest[name] = min(value, lowest.get(name, value))
    short = [f"{name} {fmt(value)}" for name, value in lowest.items() if value < threshold]
    return not short, short


__all__ = ["ATTRIBUTES", "TARGETS", "markdown", "write", "log", "probe_verdict"]
