"""`python evaluate.py` on a tiny chain: metrics.json, the markdown table, the logger, the cached probe, and
the one-line errors for missing artifacts and for data or a probe that do not match the generators."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import imageio.v3 as iio
import pytest
from omegaconf import DictConfig

from helpers import call_entry, compose_app, run_entry

# One xdist worker runs the module: its tests share one evaluation of the chain (and the probe it trains).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("evaluate")]

# The chain: experiment=quickstart (16 frames of 32x32) cut to a handful of batches by debug=limit.
TINY = ["experiment=quickstart", "debug=limit", "logger=csv"]
# Smaller caption features than the quickstart's 25 x 300 (a pipeline forwards these to every stage).
TINY_TEXT = ["featurizer.max_words=12", "featurizer.dim=32"]
# A probe that trains in a few seconds (it will not be trusted: the run must say so and still finish).
TINY_PROBE = ["probe.max_steps=15", "probe.extra_clips=0", "probe.batch_size=16", "probe.video_widths=[8,16]",
              "probe.image_widths=[8,16]", "probe.appearance_frames=2"]  # fmt: skip


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chain")
    result = run_entry("train.py", "stage=pipeline", *TINY, *TINY_TEXT, f"hydra.run.dir={root / 'train'}",
                       f"paths.artifacts_dir={root / 'artifacts'}", f"paths.cache_dir={root / 'cache'}", cwd=root,
                       timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return root


@pytest.fixture(scope="module")
def evaluation(chain: Path) -> tuple[Path, str]:
    run_dir = chain / "eval"
    result = run_entry("evaluate.py", *TINY, *TINY_PROBE, "num_samples=2", f"paths.artifacts_dir={chain / 'artifacts'}",
                       "judge.on_shapes=true", f"hydra.run.dir={run_dir}", cwd=chain)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir, result.stdout


def compose_evaluate(root: Path, *overrides: str) -> DictConfig:
    """conf/evaluate.yaml composed as evaluate.py composes it, with its paths inside ``root``."""
    return compose_app("evaluate", *overrides, output_dir=root / "run", cwd=root)


def test_evaluate_writes_metrics_table_and_logs(evaluation: tuple[Path, str], chain: Path) -> None:
    run_dir, stdout = evaluation
    summary = json.loads((run_dir / "metrics.json").read_text())
    metrics = summary["metrics"]
    assert summary["experiment"] == "quickstart" and summary["num_samples"] == 2
    assert summary["test_captions"] > summary["held_out_captions"] > 0
    for kind, attributes in (("video", ("shape", "colour", "size", "direction", "speed")),
                             ("image", ("shape", "colour", "size"))):  # fmt: skip
        for attribute in (*attributes, "all"):
            for subset in ("test", "held_out", "seen"):
                assert 0.0 <= metrics[f"generated/{kind}/{subset}/{attribute}"] <= 1.0
                assert 0.0 <= metrics[f"real/{kind}/{subset}/{attribute}"] <= 1.0
    assert metrics["chance/colour"] == pytest.approx(1 / 6) and metrics["chance/direction"] == 0.25
    for key in ("quality/video/fd", "quality/video/kid", "quality/image/fd", "quality/image/kid",
                "quality/temporal_change/generated", "quality/temporal_change/real",
                "diversity/video/pixel/generated", "diversity/video/feature/generated",
                "retrieval/real/recall@1", "retrieval/real/recall@10", "retrieval/generated/recall@5"):  # fmt: skip
        assert isinstance(metrics[key], float), key
    for attribute in ("shape", "colour", "size", "direction", "speed"):
        assert 0.0 <= metrics[f"generated/video/balanced/{attribute}"] <= 1.0
        per_value = [v for k, v in metrics.items() if k.startswith(f"generated/video/value/{attribute}/")]
        assert per_value and all(0.0 <= v <= 1.0 for v in per_value), attribute
        assert 0.0 <= metrics[f"generated/video/held_out_balanced/{attribute}"] <= 1.0
    assert 0.0 <= metrics["generated/video/held_out_balanced/all"] <= 1.0
    # The text-video judge beside the probe (judge.on_shapes=true), its section in the table.
    for key in ("judge/r_precision/generated", "judge/r_precision/real", "judge/r_precision/shuffled"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["judge/r_precision/chance"] == pytest.approx(1 / min(100, summary["test_captions"]))
    assert metrics["judge/fd"] >= 0
    assert summary["judge"]["test_captions"] == summary["test_captions"]
    assert "## The text-video judge" in (run_dir / "metrics.md").read_text()
    # The video GAN alone, from the real first frames (animate_real_frames, on by default).
    for key in ("generated/animated/held_out_balanced/shape", "generated/animated/test/direction",
                "quality/animated/fd", "quality/temporal_change/animated"):  # fmt: skip
        assert isinstance(metrics[key], float), key
    assert metrics["quality/animated/fd_real"] == metrics["quality/video/fd_real"]
    table = (run_dir / "metrics.md").read_text()
    assert "| animated | shape |" in table
    assert "| video | colour |" in table and "| chance |" in table
    assert "## Fidelity by the value the caption names" in table
    assert table.index("## Held-out combinations, balanced") < table.index("## Fidelity: the probe")
    # The sheet a person looks at: real then generated clips, a row per caption, held-out captions first.
    sheet = iio.imread(summary["sheet"]["sheet_gif"])
    assert sheet.shape[0] == 16 and sheet.shape[2] == 3 * 32 + 2 * 4  # 16 frames; the real clip and 2 samples
    assert Path(summary["sheet"]["sheet_png"]).is_file() and "sheet" in stdout
    # The same values went to the logger (logger=csv).
    with open(run_dir / "csv" / "metrics.csv") as f:
        logged = next(csv.DictReader(f))
    assert float(logged["generated/video/test/colour"]) == pytest.approx(metrics["generated/video/test/colour"])
    assert float(logged["generated/video/balanced/shape"]) == pytest.approx(metrics["generated/video/balanced/shape"])
    # The GAN stages' validation trained the probe (debug=limit's 15 steps) and published it; the evaluation reads the
    # same cached one. A 15-step probe cannot be trusted, and the run says so.
    assert (
        summary["probe"]["cached"] is True
        and Path(summary["probe"]["artifact"]).parent == chain / "artifacts" / "probe"
        and len(list((chain / "artifacts" / "probe").glob("2*"))) == 1
    )
    assert summary["probe"]["trusted"] is (metrics["probe/trusted"] == 1.0)
    if not summary["probe"]["trusted"]:
        assert "THE PROBE CANNOT BE TRUSTED" in table and "probe cannot be trusted" in stdout


def test_a_second_evaluation_reuses_the_probe_and_reads_the_data_from_the_artifacts(
    evaluation: tuple[Path, str], chain: Path, tmp_path: Path
) -> None:
    from t2v.cli.evaluate import evaluate

    # No experiment/debug override: the data settings come from the videogan manifest.
    cfg = compose_evaluate(tmp_path, *TINY_PROBE, "logger=none", "num_samples=1", "progress=false",
                           f"paths.artifacts_dir={chain / 'artifacts'}")  # fmt: skip
    summary = evaluate(cfg)
    first = json.loads((evaluation[0] / "metrics.json").read_text())
    assert summary["probe"]["cached"] is True and summary["probe"]["artifact"] == first["probe"]["artifact"]
    assert summary["data_fingerprint"] == first["data_fingerprint"]
    assert summary["metrics"]["real/video/test/colour"] == first["metrics"]["real/video/test/colour"]
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["metrics"]["diversity/video/pixel/generated"] is None  # one sample per caption: no diversity


def test_data_that_differs_from_the_generators_is_refused(chain: Path, tmp_path: Path) -> None:
    from t2v.cli.evaluate import evaluate
    from t2v.errors import T2VError

    cfg = compose_evaluate(tmp_path, *TINY, "data.num_clips=300", f"paths.artifacts_dir={chain / 'artifacts'}")
    with pytest.raises(T2VError, match=r"num_clips=300.* is not the data the videogan artifact .* num_clips=256"):
        evaluate(cfg)


def test_a_probe_trained_on_other_data_is_refused(evaluation: tuple[Path, str], chain: Path, tmp_path: Path) -> None:
    from t2v.cli.evaluate import evaluate
    from t2v.errors import T2VError

    cached = Path(json.loads((evaluation[0] / "metrics.json").read_text())["probe"]["artifact"])
    other = tmp_path / "probe" / "other"
    shutil.copytree(cached, other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "data_fingerprint": "0123456789abcdef"}))
    cfg = compose_evaluate(tmp_path, *TINY, f"probe.artifact={other}", f"paths.artifacts_dir={chain / 'artifacts'}")
    with pytest.raises(T2VError, match="was trained on other data .*fingerprint 0123456789abcdef"):
        evaluate(cfg)
    cfg = compose_evaluate(tmp_path, *TINY, f"probe.artifact={chain / 'artifacts' / 'videogan' / 'nope'}",
                           f"paths.artifacts_dir={chain / 'artifacts'}")  # fmt: skip
    with pytest.raises(T2VError, match="is not a probe artifact"):
        evaluate(cfg)


def test_missing_artifacts_print_the_command_that_makes_them(tmp_path: Path) -> None:
    registry, run_dir = tmp_path / "none", tmp_path / "run"
    result = call_entry("evaluate.py", "experiment=seed_2017", "debug=limit", f"paths.artifacts_dir={registry}",
                        f"hydra.run.dir={run_dir}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("t2v: error:")]
    assert len(errors) == 1 and "evaluate needs a trained stage1 artifact" in errors[0]
    assert (
        f"python train.py stage=pipeline experiment=seed_2017 debug=limit paths.artifacts_dir={tmp_path / 'none'}"
        in errors[0]
    )
