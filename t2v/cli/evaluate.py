"""What `python evaluate.py` does: does the clip mean the sentence?

Loads the trained generators (the code path of generate.py), finds or trains the judge of their data (the
attribute probe on the shapes, the text-video judge on movie clips), generates ``num_samples`` clips for every
test caption, and writes ``metrics.json``, ``metrics.md`` and the logger's copy of the same values.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from t2v.config import instantiate_group
from t2v.data.shapes import CaptionedShapes
from t2v.errors import T2VError
from t2v.eval import report, unlabelled
from t2v.eval.fidelity import Retrieval, score
from t2v.eval.judge import judge_dims, obtain_judge
from t2v.eval.probe import obtain_probe
from t2v.eval.sheet import write_sheet
from t2v.pipeline import artifacts
from t2v.pipeline.generate import GENERATOR_STAGES, TextToVideo
from t2v.pipeline.stage import command_to_make, shared_overrides

# Command-line groups that decide the data (evaluate.py takes no featurizer and no paths of the data).
DATA_OVERRIDES = ("data", "held_out", "experiment", "debug")
SHAPES_TARGET = "t2v.data.datamodule.ShapesDataModule"


def train_command() -> str:
    """The command that trains the chain this evaluation asked for."""
    return command_to_make("pipeline")


# -- the generators ---------------------------------------------------------------------------------------


def generator_manifests(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    manifests = {}
    for name in GENERATOR_STAGES:
        where = cfg.artifacts[name]
        folder = artifacts.find(cfg.paths.artifacts_dir, name, where)
        if folder is None:
            place = Path(cfg.paths.artifacts_dir) / name if where == "latest" else where
            raise T2VError(
                f"evaluate needs a trained {name} artifact and there is none at {place}; make the chain with: "
                f"{train_command()}"
            )
        manifests[name] = artifacts.read_manifest(folder)
    fingerprints = {name: m.get("data_fingerprint") for name, m in manifests.items()}
    if fingerprints["stage1"] != fingerprints["videogan"]:
        raise T2VError(
            f"stage1 ({manifests['stage1']['folder']}) and videogan ({manifests['videogan']['folder']}) were trained "
            f"on different data (fingerprints {fingerprints['stage1']} and {fingerprints['videogan']}); evaluate a "
            f"chain trained on one dataset, e.g. {train_command()}"
        )
    return manifests


def trained_data(manifest: dict[str, Any]) -> dict[str, Any]:
    return dict((manifest.get("config") or {}).get("data") or {})


def describe(data: dict[str, Any]) -> str:
    return f"frames={data.get('frames')} size={data.get('size')} num_clips={data.get('num_clips')}"


def data_config(cfg: DictConfig, videogan: dict[str, Any], console: Console) -> dict[str, Any]:
    """The data config of the evaluation: the videogan manifest's, or the one composed here (``data_from``)."""
    source = cfg.data_from
    if source not in ("auto", "artifacts", "config"):
        raise T2VError(f"data_from={source} is unknown; use auto, artifacts or config")
    if source == "auto":
        source = "config" if shared_overrides(DATA_OVERRIDES) else "artifacts"
    data = OmegaConf.to_container(cfg.data, resolve=True) if source == "config" else trained_data(videogan)
    if not data:
        raise T2VError(
            f"the videogan artifact {videogan['folder']} records no data config; pass the data settings it was "
            "trained with (e.g. experiment=quickstart) and data_from=config"
        )
    if source == "artifacts":
        console.print(f"  data         from the videogan artifact: {describe(data)}")
    return data


def check_trained_on(fingerprint: str, frames: int, size: int, data: dict[str, Any], videogan: dict[str, Any]) -> None:
    """The data here must be the data the video GAN was trained on, at its clip size."""
    if fingerprint != videogan.get("data_fingerprint"):
        raise T2VError(
            f"the data here ({describe(data)}, fingerprint {fingerprint}) is not the data the videogan "
            f"artifact {videogan['folder']} was trained on ({describe(trained_data(videogan))}, fingerprint "
            f"{videogan.get('data_fingerprint')}); pass the data/experiment overrides it was trained with, "
            "or data_from=artifacts"
        )
    dims = videogan.get("dims") or {}
    if (dims.get("frames"), dims.get("size")) != (frames, size):
        raise T2VError(
            f"videogan ({videogan['folder']}) makes {dims.get('frames')} frames of {dims.get('size')}px but the data "
            f"has {frames} frames of {size}px; evaluate with the data it was trained on"
        )


def evaluation_data(data: dict[str, Any], videogan: dict[str, Any]) -> CaptionedShapes:
    """The shapes dataset of the evaluation, which must be the one the generators were trained on."""
    datamodule = instantiate({**data, "featurizer": None, "with_video": True}, _convert_="all")
    shapes = CaptionedShapes(**datamodule.shapes_kwargs)
    check_trained_on(shapes.fingerprint(), shapes.frames, shapes.size, data, videogan)
    return shapes


# -- retrieval ----------------------------------------------------------------------------------------------


def siamese_folder(cfg: DictConfig, stage1: dict[str, Any]) -> Path:
    where = cfg.artifacts.siamese
    if where == "upstream":
        upstream = (stage1.get("upstream") or {}).get("siamese")
        folder = artifacts.find(cfg.paths.artifacts_dir, "siamese", upstream) if upstream else None
        if folder is None:
            raise T2VError(
                f"the siamese artifact stage1 was trained on ({upstream}) is gone; pass artifacts.siamese=latest "
                f"or a siamese folder, or retrain the chain: {train_command()}"
            )
        return folder
    folder = artifacts.find(cfg.paths.artifacts_dir, "siamese", where)
    if folder is None:
        raise T2VError(
            f"evaluate needs a siamese artifact for retrieval and there is none at {where}; make it with: "
            f"{train_command()}"
        )
    return folder


def build_retrieval(cfg: DictConfig, chain: TextToVideo, stage1: dict[str, Any]) -> tuple[Retrieval, str]:
    from t2v.models.siamese import SiameseEmbedding

    folder = siamese_folder(cfg, stage1)
    manifest = artifacts.read_manifest(folder)
    return Retrieval(artifacts.load_model(SiameseEmbedding, manifest), chain.features), str(folder)


# -- the app ------------------------------------------------------------------------------------------------


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score the chain in ``paths.artifacts_dir``; returns the summary also written to ``metrics.json``."""
    import pytorch_lightning as pl

    started = time.time()
    console = Console()
    if cfg.num_samples < 1:
        raise T2VError(f"num_samples={cfg.num_samples} must be at least 1 (2 or more to measure diversity)")
    if cfg.batch_size < 1:
        raise T2VError(f"batch_size={cfg.batch_size} must be at least 1")
    if cfg.sheet < 0:
        raise T2VError(f"sheet={cfg.sheet} must be 0 (no sheet) or the number of captions on it")
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold green]t2v[/] evaluate: {cfg.paths.artifacts_dir}")

    manifests = generator_manifests(cfg)
    data = data_config(cfg, manifests["videogan"], console)
    chain = TextToVideo.from_artifacts(cfg.paths.artifacts_dir, {n: manifests[n]["folder"] for n in GENERATOR_STAGES})
    if data.get("_target_") != SHAPES_TARGET:  # no attribute labels: the text-video judge scores the chain
        return evaluate_unlabelled(cfg, data, manifests, chain, output_dir, console, started)
    shapes = evaluation_data(data, manifests["videogan"])
    retrieval, siamese = build_retrieval(cfg, chain, manifests["stage1"])
    settings = OmegaConf.to_container(cfg.probe, resolve=True)
    probe, probe_info = obtain_probe(settings, shapes, output_dir, console.print, progress=bool(cfg.progress))

    pl.seed_everything(cfg.seed, verbose=False)
    test = shapes.split_indices("test")
    real_frame = int(manifests["stage1"]["hparams"].get("frame", 0))

    def generate(captions: list[str], n: int, seed: int) -> dict[str, Any]:
        return chain(captions, num_samples=n, seed=seed)

    metrics = score(
        generate,
        probe,
        shapes,
        test,
        num_samples=int(cfg.num_samples),
        seed=int(cfg.seed),
        batch_size=int(cfg.batch_size),
        real_frame=real_frame,
        retrieval=retrieval,
        # Fresh real clips for FD/KID's reference start past the dataset and the probe's training clips.
        reference_start=shapes.num_clips + int(probe_info.get("extra_clips", 0)),
        progress=bool(cfg.progress),
        animate=chain.animate if cfg.animate_real_frames else None,
    )
    judge_info = None
    if cfg.judge.on_shapes:  # the judge beside the probe, to see how far the two agree
        judged, judge_info, judge_notes = judge_metrics(cfg, data, manifests, chain, output_dir, console)
        metrics.update({k: v for k, v in judged.items() if k.startswith("judge/")})
    trusted, short = report.probe_verdict(metrics, float(cfg.probe.threshold))
    metrics["probe/trusted"] = float(trusted)
    held = int(shapes.is_held_out()[test].sum())
    notes = [
        f"{len(test)} test captions ({held} of held-out combinations {shapes.held_out}), {cfg.num_samples} samples "
        f"each; data {shapes.frames} frames of {shapes.size}px, fingerprint {shapes.fingerprint()}.",
        f"Generators: stage1 {manifests['stage1']['folder']}, videogan {manifests['videogan']['folder']}.",
    ]
    if not trusted:
        notes.append(
            f"THE PROBE CANNOT BE TRUSTED: below {cfg.probe.threshold:.0%} on real test clips for "
            + ", ".join(short)
            + "; train a better one (e.g. more probe.max_steps) before reading the fidelity figures."
        )
    if judge_info is not None:
        notes += judge_notes
    sheet = write_sheet(output_dir, generate, shapes, test, int(cfg.num_samples), int(cfg.seed), int(cfg.sheet),
                        batch_size=int(cfg.batch_size))  # fmt: skip
    title = f"t2v evaluation: experiment={experiment_name()}"
    table = report.markdown(metrics, title, notes)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    summary = {
        "stage": "evaluate",
        "experiment": experiment_name(),
        "seed": cfg.seed,
        "run_time_s": round(time.time() - started, 2),
        "num_samples": cfg.num_samples,
        "test_captions": len(test),
        "held_out_captions": held,
        "data_fingerprint": shapes.fingerprint(),
        "artifacts": {**{n: manifests[n]["folder"] for n in GENERATOR_STAGES}, "siamese": siamese},
        "probe": {**probe_info, "threshold": cfg.probe.threshold, "trusted": trusted, "short": short},
        **({"judge": judge_info} if judge_info is not None else {}),
        "metrics": metrics,
        "sheet": sheet,
        "config": resolved,
    }
    warning = None if trusted else f"[bold red]t2v: the probe cannot be trusted[/] ({', '.join(short)})"
    publish(cfg, output_dir, summary, table, console, warning)
    if sheet:
        console.print(f"  sheet        {sheet['sheet_gif']}, {sheet['sheet_png']}  (real, then generated)")
    return summary


def judge_metrics(
    cfg: DictConfig,
    data: dict[str, Any],
    manifests: dict[str, dict[str, Any]],
    chain: TextToVideo,
    output_dir: Path,
    console: Console,
) -> tuple[dict[str, float], dict[str, Any], list[str]]:
    """The text-video judge's figures for the chain (trained, or found cached, on the real training clips with the
    chain's own caption features), its record, and the notes that say what was compared."""
    import pytorch_lightning as pl

    datamodule = instantiate({**data, "with_video": True}, featurizer=chain.featurizer, _convert_="all")
    datamodule.setup("fit")
    check_trained_on(datamodule.fingerprint(), int(data["frames"]), int(data["size"]), data, manifests["videogan"])
    sets = datamodule.datasets
    if len(sets["test"]) < 2:
        raise T2VError(
            f"the test split has {len(sets['test'])} clip(s) with a caption; R-precision needs at least 2 (check "
            "data.root and the splits of its clips)"
        )
    settings = OmegaConf.to_container(cfg.judge, resolve=True)
    dims = judge_dims(chain.featurizer, data["frames"], data["size"])
    judge, judge_info = obtain_judge(settings, sets["train"], dims, datamodule.fingerprint(),
                                     chain.featurizer.identity(), output_dir, console.print,
                                     progress=bool(cfg.progress))  # fmt: skip
    pl.seed_everything(cfg.seed, verbose=False)
    reference = "val" if len(sets["val"]) >= 2 else "train"

    def generate(captions: list[str], n: int, seed: int) -> dict[str, Any]:
        return chain(captions, num_samples=n, seed=seed)

    judge_info["test_captions"] = len(sets["test"])
    metrics = unlabelled.score_unlabelled(generate, judge, sets["test"], sets[reference], int(cfg.num_samples),
                                          int(cfg.seed), int(cfg.batch_size), int(settings["candidates"]),
                                          bool(cfg.progress))  # fmt: skip
    notes = [
        f"Judge {judge_info['artifact']}: {len(sets['test'])} test captions against "
        f"{min(int(settings['candidates']), len(sets['test']))} candidates each; the real-vs-real reference compares "
        f"the test clips with the {'validation' if reference == 'val' else 'training'} clips."
    ]
    return metrics, judge_info, notes


def evaluate_unlabelled(
    cfg: DictConfig,
    data: dict[str, Any],
    manifests: dict[str, dict[str, Any]],
    chain: TextToVideo,
    output_dir: Path,
    console: Console,
    started: float,
) -> dict[str, Any]:
    """Score a chain trained on movie clips (no attribute labels) with the text-video judge."""
    metrics, judge_info, judge_notes = judge_metrics(cfg, data, manifests, chain, output_dir, console)
    fingerprint = manifests["videogan"]["data_fingerprint"]
    notes = [
        f"{cfg.num_samples} samples per test caption; data {data['_target_'].rsplit('.', 1)[-1]}, {data['frames']} "
        f"frames of {data['size']}px, fingerprint {fingerprint}.",
        f"Generators: stage1 {manifests['stage1']['folder']}, videogan {manifests['videogan']['folder']}.",
        *judge_notes,
    ]
    table = unlabelled.markdown(metrics, f"t2v evaluation: experiment={experiment_name()}", notes)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    summary = {
        "stage": "evaluate",
        "experiment": experiment_name(),
        "seed": cfg.seed,
        "run_time_s": round(time.time() - started, 2),
        "num_samples": cfg.num_samples,
        "test_captions": judge_info["test_captions"],
        "data_fingerprint": fingerprint,
        "artifacts": {n: manifests[n]["folder"] for n in GENERATOR_STAGES},
        "judge": judge_info,
        "metrics": metrics,
        "config": resolved,
    }
    publish(cfg, output_dir, summary, table, console)
    return summary


def publish(
    cfg: DictConfig, output_dir: Path, summary: dict[str, Any], table: str, console: Console, warning: str | None = None
) -> None:
    """``metrics.json`` and ``metrics.md`` in the run dir, the same to the logger, and the table on the terminal."""
    paths = report.write(output_dir, summary, table)
    report.log(instantiate_group(cfg.logger), summary["metrics"], summary["config"], table)
    console.print(table, markup=False, highlight=False, soft_wrap=True)
    if warning:
        console.print(warning)
    console.print(f"[bold green]t2v[/] evaluation finished in {summary['run_time_s']:.0f}s")
    console.print(f"  metrics      {paths['metrics']}")
    console.print(f"  table        {paths['table']}")


def experiment_name() -> str:
    try:
        choice = HydraConfig.get().runtime.choices.get("experiment")
    except ValueError:
        choice = None
    return choice if choice not in (None, "null") else "default"
