"""What `python evaluate.py` does: does the clip mean the sentence?

Loads the trained generators (the code path of generate.py), finds or trains the attribute probe for
their data, generates ``num_samples`` clips for every test caption, and writes ``metrics.json``,
``metrics.md`` and the logger's copy of the same values.
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
from t2v.eval import report
from t2v.eval.fidelity import Retrieval, score
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


def evaluation_data(cfg: DictConfig, videogan: dict[str, Any], console: Console) -> CaptionedShapes:
    """The shapes dataset of the evaluation, which must be the one the generators were trained on."""
    source = cfg.data_from
    if source not in ("auto", "artifacts", "config"):
        raise T2VError(f"data_from={source} is unknown; use auto, artifacts or config")
    if source == "auto":
        source = "config" if shared_overrides(DATA_OVERRIDES) else "artifacts"
    trained = trained_data(videogan)
    data = OmegaConf.to_container(cfg.data, resolve=True) if source == "config" else trained
    if not data:
        raise T2VError(
            f"the videogan artifact {videogan['folder']} records no data config; pass the data settings it was "
            "trained with (e.g. experiment=quickstart) and data_from=config"
        )
    if data.get("_target_") != SHAPES_TARGET:
        raise T2VError(
            f"evaluate.py scores captions by their attributes and needs data=shapes, but the data is "
            f"{data.get('_target_')} (real movie clips have no attribute labels)"
        )
    datamodule = instantiate({**data, "featurizer": None, "with_video": True}, _convert_="all")
    shapes = CaptionedShapes(**datamodule.shapes_kwargs)
    if shapes.fingerprint() != videogan.get("data_fingerprint"):
        raise T2VError(
            f"the data here ({describe(data)}, fingerprint {shapes.fingerprint()}) is not the data the videogan "
            f"artifact {videogan['folder']} was trained on ({describe(trained)}, fingerprint "
            f"{videogan.get('data_fingerprint')}); pass the data/experiment overrides it was trained with, "
            "or data_from=artifacts"
        )
    dims = videogan.get("dims") or {}
    if (dims.get("frames"), dims.get("size")) != (shapes.frames, shapes.size):
        raise T2VError(
            f"videogan ({videogan['folder']}) makes {dims.get('frames')} frames of {dims.get('size')}px but the data "
            f"has {shapes.frames} frames of {shapes.size}px; evaluate with the data it was trained on"
        )
    if source == "artifacts":
        console.print(f"  data         from the videogan artifact: {describe(data)}")
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
    shapes = evaluation_data(cfg, manifests["videogan"], console)
    chain = TextToVideo.from_artifacts(cfg.paths.artifacts_dir, {n: manifests[n]["folder"] for n in GENERATOR_STAGES})
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
        "metrics": metrics,
        "sheet": sheet,
        "config": resolved,
    }
    paths = report.write(output_dir, summary, table)
    report.log(instantiate_group(cfg.logger), metrics, resolved, table)

    console.print(table, markup=False, highlight=False, soft_wrap=True)
    if not trusted:
        console.print(f"[bold red]t2v: the probe cannot be trusted[/] ({', '.join(short)})")
    console.print(f"[bold green]t2v[/] evaluation finished in {summary['run_time_s']:.0f}s")
    console.print(f"  metrics      {paths['metrics']}")
    console.print(f"  table        {paths['table']}")
    if sheet:
        console.print(f"  sheet        {sheet['sheet_gif']}, {sheet['sheet_png']}  (real, then generated)")
    return summary


def experiment_name() -> str:
    try:
        choice = HydraConfig.get().runtime.choices.get("experiment")
    except ValueError:
        choice = None
    return choice if choice not in (None, "null") else "default"
