"""The whole chain through the entry points: stage=pipeline, single stages on its artifacts, the chaining errors,
and generate.py (the chain under 2-process DDP is in test_scale_out.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import imageio.v3 as iio
import pytest

from t2v.text import FastTextFeaturizer

from helpers import FRAMES, SIZE, TINY, VIDEOGAN_STEPS, artifacts_in, call_entry, paths_in, run_entry

pytestmark = pytest.mark.slow

GANS = ("stage1", "videogan")


def test_pipeline_trains_every_stage_and_writes_samples(chain: Path) -> None:
    summary = json.loads((chain / "run" / "metrics.json").read_text())
    assert list(summary["stages"]) == ["vae", "siamese", "stage1", "videogan"]
    for stage in summary["stages"]:
        assert (chain / "run" / stage / "checkpoints" / "last.ckpt").is_file()
        assert (chain / "artifacts" / stage / "latest").is_file()
    stop_step = {name: json.loads((chain / "run" / name / "metrics.json").read_text())["stop/step"] for name in GANS}
    assert stop_step == {"stage1": 8, "videogan": 4}  # debug=limit's 2 epochs of 4 batches; stage.overrides
    for name in GANS:  # the GANs' best checkpoint is the best by their validation metric
        metrics = json.loads((chain / "run" / name / "metrics.json").read_text())
        assert metrics["monitor"] == "val/fidelity" and 0.0 <= metrics["best"]["val/fidelity"] <= 1.0
        assert metrics["final"]["val/fd"] >= 0.0
    gifs = sorted((chain / "run" / "samples").glob("*.gif"))
    assert len(gifs) == 4 * 2  # 4 sample sentences x 2 samples
    assert iio.imread(gifs[0]).shape == (FRAMES, SIZE, SIZE, 3)


def test_every_stage_reloads_from_its_checkpoint(chain: Path) -> None:
    from t2v.models.siamese import SiameseEmbedding
    from t2v.models.stage1 import Stage1GAN
    from t2v.models.vae import TextVAE
    from t2v.models.videogan import VideoGAN
    from t2v.pipeline import artifacts

    for stage, cls in [("vae", TextVAE), ("siamese", SiameseEmbedding), ("stage1", Stage1GAN), ("videogan", VideoGAN)]:
        manifest = artifacts.read_manifest(artifacts.latest(chain / "artifacts", stage))
        for checkpoint in (manifest["checkpoint"], chain / "run" / stage / "checkpoints" / "last.ckpt"):
            assert isinstance(cls.load_from_checkpoint(checkpoint, map_location="cpu"), cls)
    videogan = artifacts.read_manifest(artifacts.latest(chain / "artifacts", "videogan"))
    assert videogan["dims"]["text_conditioning"] is True and videogan["upstream"]["siamese"]


def test_siamese_stage_alone_reads_the_latest_vae(chain: Path, tmp_path: Path) -> None:
    from t2v.models.siamese import SiameseEmbedding

    run_dir = tmp_path / "siamese"
    result = run_entry("train.py", "stage=siamese", *TINY, "publish=false", f"hydra.run.dir={run_dir}",
                       *paths_in(chain), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"val/recall@1", "val/recall@5", "val/recall@10"} <= set(metrics["final"])
    SiameseEmbedding.load_from_checkpoint(run_dir / "checkpoints" / "best.ckpt")


def test_missing_upstream_prints_the_command_that_makes_it(tmp_path: Path) -> None:
    result = call_entry("train.py", "stage=siamese", *TINY, f"hydra.run.dir={tmp_path / 'run'}", *paths_in(tmp_path),
                        cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "needs a trained vae artifact" in result.stderr
    assert "python train.py stage=vae experiment=quickstart debug=limit" in result.stderr


def test_dimension_contract_is_checked_before_training(chain: Path, tmp_path: Path) -> None:
    result = call_entry("train.py", "stage=siamese", *TINY, "featurizer.max_words=10",
                        f"hydra.run.dir={tmp_path / 'r'}", *paths_in(chain), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert "featurizer.max_words=10 but the upstream featurizer" in result.stderr
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_video_discriminator_strides_are_checked_before_training(chain: Path, tmp_path: Path) -> None:
    result = call_entry("train.py", "stage=videogan", *TINY, "data.frames=20", f"hydra.run.dir={tmp_path / 'r'}",
                        *paths_in(chain), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "frames=20" in result.stderr


def test_generate_writes_gif_mp4_and_strip(chain: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    result = run_entry("generate.py", "text=a small red circle moves to the left", "num_samples=3", f"out_dir={out}",
                       *artifacts_in(chain), f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    gifs = sorted(out.glob("*.gif"))
    assert len(gifs) == 3 and len(list(out.glob("*.mp4"))) == 3
    frames = iio.imread(gifs[0])
    assert frames.shape == (FRAMES, SIZE, SIZE, 3)
    strip = iio.imread(gifs[0].with_suffix(".png"))
    assert strip.shape == (SIZE, SIZE * (FRAMES + 1), 3)  # the stage-I image, then every frame
    assert len(list(iio.imiter(gifs[0].with_suffix(".mp4"), plugin="pyav"))) == FRAMES


def test_generate_from_a_file_of_sentences(chain: Path, tmp_path: Path) -> None:
    captions = tmp_path / "captions.txt"
    captions.write_text("a small red circle moves to the left\n\nthe large blue square slides up\n")
    result = run_entry("generate.py", f"texts_file={captions}", "num_samples=1", f"out_dir={tmp_path / 'gen'}",
                       *artifacts_in(chain), f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert len(list((tmp_path / "gen").glob("*.gif"))) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [(["text= "], "text is empty"),
     (["text=a red ball", "paths.artifacts_dir=/nope/artifacts"], "generate needs a trained stage1 artifact")],
)  # fmt: skip
def test_generate_errors_are_one_clear_line(chain: Path, tmp_path: Path, args: list[str], message: str) -> None:
    overridden = {arg.split("=")[0] for arg in args}
    defaults = [arg for arg in artifacts_in(chain) if arg.split("=")[0] not in overridden]
    result = call_entry("generate.py", *defaults, *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("t2v: error:")]
    assert len(errors) == 1 and message in errors[0]


def test_generate_refuses_a_sentence_none_of_whose_words_has_a_vector(chain: Path, tmp_path: Path) -> None:
    """fastText builds most unseen words from n-grams the captions taught it; words whose n-grams it never saw read
    as zeros, and a sentence of nothing else means nothing: refused. Which words those are depends on the hashing of
    the model's n-grams, so they are looked for in the chain's own featurizer."""
    vae = chain / "artifacts" / "vae"
    featurizer = FastTextFeaturizer.load(vae / (vae / "latest").read_text().strip() / "featurizer")
    blank = [w for w in (a + b + c for a in "qxz" for b in "qxzj" for c in "qxzjv") if not featurizer.has_vector(w)][:2]
    assert len(blank) == 2, "every candidate word has a vector"
    text = " ".join(blank)
    result = call_entry("generate.py", *artifacts_in(chain), f"text={text}", f"hydra.run.dir={tmp_path / 'run'}",
                        cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("t2v: error:")]
    assert len(errors) == 1 and f"no word of '{text}' has a word vector" in errors[0]


def test_a_partial_pipeline_trains_what_it_is_asked_and_says_why_there_are_no_samples(tmp_path: Path) -> None:
    result = run_entry("train.py", "stage=pipeline", "stage.stages=[vae,siamese]", *TINY,
                       f"hydra.run.dir={tmp_path / 'run'}", *paths_in(tmp_path), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert list(summary["stages"]) == ["vae", "siamese"] and summary["samples"] == []
    assert "no samples" in result.stdout and "no trained stage1 or videogan yet" in result.stdout
    assert not (tmp_path / "run" / "samples").exists()


def test_a_partial_pipeline_samples_with_the_registrys_other_generator_and_says_so(chain: Path, tmp_path: Path) -> None:
    registry = tmp_path / "artifacts"
    shutil.copytree(chain / "artifacts", registry)
    result = run_entry("train.py", "stage=pipeline", "stage.stages=[videogan]", *TINY, VIDEOGAN_STEPS,
                       f"hydra.run.dir={tmp_path / 'run'}", f"paths.artifacts_dir={registry}",
                       f"paths.cache_dir={chain / 'cache'}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert "samples with the registry's latest stage1, which this run did not train" in result.stdout
    assert len(list((tmp_path / "run" / "samples").glob("*.gif"))) == 4 * 2
