"""generate.py on the shared tiny chain: batches streamed to disk with an index that is always valid, the same clips
whatever the batch size, text made safe to echo, and one line (exit 2, nothing half-written) for every bad input:
damaged artifacts, a planted pickle, paths that leave the registry, bad options, a full disk."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from helpers import ROOT, call_entry, run_entry

pytestmark = pytest.mark.slow

LONG = " ".join(["a small red circle moves to the left"] * 5)  # 40 words: more than featurizer.max_words=25


@pytest.fixture
def registry(chain: Path, tmp_path: Path) -> Path:
    """A copy of the chain's registry made of hard links (no bytes copied): a test changes a file by replacing it
    (:func:`replace`), never by writing into it, so the shared chain stays intact."""
    target = tmp_path / "artifacts"
    shutil.copytree(chain / "artifacts", target, copy_function=os.link)
    return target


def replace(path: Path, data: bytes) -> None:
    """Give ``path`` new content without touching the file it was linked to."""
    path.unlink()
    path.write_bytes(data)


def artifact(registry: Path, stage: str) -> Path:
    return registry / stage / (registry / stage / "latest").read_text().strip()


def generate(tmp_path: Path, registry: Path, *args: str, env: dict[str, str] | None = None, entry=run_entry):
    """generate.py on ``registry``, in a new process (``entry=call_entry``: in this one, for the error paths)."""
    return entry("generate.py", f"paths.artifacts_dir={registry}", f"hydra.run.dir={tmp_path / 'run'}", *args,
                 cwd=tmp_path, env=env)  # fmt: skip


def one_error_line(result: subprocess.CompletedProcess, status: int = 2) -> str:
    """The run's only ``t2v: error:`` line, after checking it failed with ``status`` (2: bad input)."""
    assert result.returncode == status, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("t2v: error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


# -- streaming -------------------------------------------------------------------------------------------------


def test_generate_streams_batches_with_a_valid_index_and_safe_text(registry: Path, tmp_path: Path) -> None:
    captions = tmp_path / "captions.txt"
    # An escape sequence that would turn the terminal red, a caption over max_words, a blank line, CRLF endings.
    # Words no training caption used ("reddish", "circles") are read from their subwords and listed.
    captions.write_bytes(f"a small red \x1b[31mcircle\x1b[0m moves to the left\r\n\r\nthe large blue square slides "
                         f"up\r\n{LONG}\na small reddish circles moves up\n".encode())  # fmt: skip
    out = tmp_path / "gen"
    result = generate(tmp_path, registry, f"texts_file={captions}", "num_samples=2", "batch_size=4", f"out_dir={out}")
    assert result.returncode == 0, result.stderr[-4000:]
    index = json.loads((out / "samples.json").read_text())
    new = "a small reddish circles moves up"
    assert [entry["caption"] for entry in index] == [
        "a small red circle moves to the left", "a small red circle moves to the left",
        "the large blue square slides up", "the large blue square slides up", LONG, LONG, new, new]  # fmt: skip
    assert [Path(entry["gif"]).name[:4] for entry in index] == ["000_", "000_", "001_", "001_", "002_", "002_",
                                                                "003_", "003_"]  # fmt: skip
    assert [entry["new_words"] for entry in index[::2]] == [{}, {}, {}, {"reddish": "vector", "circles": "vector"}]
    for entry in index:
        for kind in ("gif", "mp4", "png"):
            assert Path(entry[kind]).is_file() and Path(entry[kind]).suffix == f".{kind}"
    assert not list(out.glob(".*.tmp"))  # every file was renamed into place
    assert len(list(iio.imiter(index[0]["mp4"], plugin="pyav"))) == iio.imread(index[0]["gif"]).shape[0]
    output = result.stdout + result.stderr
    assert "\x1b[31m" not in output and "\x1b[0m" not in output  # the caption's escape codes never reach the terminal
    cut = [line for line in output.splitlines() if "featurizer.max_words=25" in line]
    assert len(cut) == 1 and "1 of 4 captions" in cut[0] and "first 25 words" in cut[0]
    listed = [line for line in output.splitlines() if "never used" in line]
    assert listed == [f"t2v words the training captions never used in '{new}': reddish, circles (read from "
                      "fastText's vectors)"]  # fmt: skip


def test_the_clips_do_not_depend_on_the_batch_size(chain: Path, tmp_path: Path) -> None:
    from t2v.pipeline.generate import TextToVideo, generate_to

    model = TextToVideo.from_artifacts(chain / "artifacts")
    captions = ["a small red circle moves to the left", "the large blue square slides up", "a green star"]
    pixels = {}
    for batch_size in (1, 4, 32):
        written = generate_to(model, captions, tmp_path / str(batch_size), num_samples=2, seed=3,
                              batch_size=batch_size, fps=8, progress=False)  # fmt: skip
        pixels[batch_size] = np.stack([iio.imread(sample["png"]) for sample in written])
    assert np.array_equal(pixels[1], pixels[4]) and np.array_equal(pixels[1], pixels[32])
    assert not np.array_equal(pixels[1][0], pixels[1][1])  # two samples of a caption differ
    whole = model(captions, num_samples=2, seed=3)  # what stage=pipeline and evaluate.py call: one batch
    rows = torch.cat([batch["video"] for batch in model.batches(captions, 2, 3, batch_size=4)])
    torch.testing.assert_close(rows, whole["video"], rtol=0, atol=1e-5)


def test_a_full_disk_keeps_the_index_of_the_samples_written(
    chain: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from t2v.files import DiskFull
    from t2v.pipeline.generate import TextToVideo, generate_to

    model = TextToVideo.from_artifacts(chain / "artifacts")
    real_write = Path.write_bytes

    def full_from_caption_1(self: Path, data: bytes) -> int:  # the disk fills while caption 1's files are written
        if self.name.startswith(".001_"):
            raise OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_from_caption_1)
    out = tmp_path / "gen"
    with pytest.raises(DiskFull, match="disk full while writing .*001_"):
        generate_to(model, ["a red circle", "a blue square", "a green star"], out, num_samples=2, seed=0,
                    batch_size=2, fps=8, progress=False)  # fmt: skip
    index = json.loads((out / "samples.json").read_text())
    assert [Path(entry["png"]).name[:4] for entry in index] == ["000_", "000_"]  # caption 0's batch, complete
    assert all(Path(entry[kind]).is_file() for entry in index for kind in ("gif", "mp4", "png"))
    assert not list(out.glob("001_*")) and not list(out.glob(".*.tmp"))  # nothing half-written


# -- one line for every bad input -----------------------------------------------------------------------------

Breaker = Callable[[Path, Path], list[str]]  # (registry, tmp_path) -> extra generate.py arguments


def manifest(content: bytes) -> Breaker:
    def breaker(registry: Path, tmp_path: Path) -> list[str]:
        replace(artifact(registry, "stage1") / "manifest.json", content)
        return []

    return breaker


def manifest_entry(key: str, value: str) -> Breaker:
    def breaker(registry: Path, tmp_path: Path) -> list[str]:
        path = artifact(registry, "stage1") / "manifest.json"
        record = json.loads(path.read_text())
        replace(path, json.dumps({**record, key: value}).encode())
        return []

    return breaker


def truncated_checkpoint(registry: Path, tmp_path: Path) -> list[str]:
    checkpoint = artifact(registry, "videogan") / "model.ckpt"
    replace(checkpoint, checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    return []


def latest_pointer(registry: Path, tmp_path: Path) -> list[str]:
    replace(registry / "stage1" / "latest", b"../../elsewhere")
    return []


def out_dir_is_a_file(registry: Path, tmp_path: Path) -> list[str]:
    (tmp_path / "clips").write_text("not a folder")
    return [f"out_dir={tmp_path / 'clips'}"]


def latin1_texts_file(registry: Path, tmp_path: Path) -> list[str]:
    latin1 = "a red circle moves to the left\nun cercle rouge très petit\n".encode("latin-1")
    (tmp_path / "captions.txt").write_bytes(latin1)
    return [f"texts_file={tmp_path / 'captions.txt'}"]


def arguments(*args: str) -> Breaker:
    return lambda registry, tmp_path: list(args)


@pytest.mark.parametrize(
    ("breaker", "message"),
    [(manifest(b"{\"stage\": \"stage1\", "), "manifest.json is not valid JSON"),
     (manifest(b""), "manifest.json is empty"),
     (manifest(b"{}"), "manifest.json lacks stage, checkpoint"),
     (manifest_entry("checkpoint", "../../../../outside.ckpt"), "outside the artifact registry"),
     (manifest_entry("featurizer_dir", "/etc"), "outside the artifact registry"),
     (latest_pointer, "which is not an artifact id"),
     (truncated_checkpoint, "model.ckpt is not a t2v checkpoint or holds code to run"),
     (out_dir_is_a_file, "is a file; pass a folder"),
     (latin1_texts_file, "is not UTF-8 text (byte 0xe8"),
     (arguments("fps=0"), "fps=0 must be at least 1"),
     (arguments("num_samples=abc"), "num_samples=abc is not a whole number"),
     (arguments("batch_size=2.5"), "batch_size=2.5 is not a whole number")],
    ids=["manifest-corrupt", "manifest-empty", "manifest-{}", "checkpoint-outside", "featurizer-outside",
         "latest-outside", "checkpoint-truncated", "out_dir-file", "texts_file-latin1", "fps-0", "num_samples-abc",
         "batch_size-float"],
)  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(
    registry: Path, tmp_path: Path, breaker: Breaker, message: str
) -> None:
    args = breaker(registry, tmp_path)
    out = tmp_path / "gen"
    if not any(arg.startswith("out_dir=") for arg in args):
        args.append(f"out_dir={out}")
    if not any(arg.startswith("texts_file=") for arg in args):
        args.append("text=a small red circle moves to the left")
    line = one_error_line(generate(tmp_path, registry, *args, entry=call_entry))
    assert message in line, line
    if "manifest" in message or "registry" in message or "artifact id" in message:
        assert "delete" in line  # says how to get out of it
    assert not out.exists() or not [p for p in out.iterdir() if p.name != "samples.json"]
    if out_dir_is_a_file is breaker:
        assert (tmp_path / "clips").read_text() == "not a folder"


class Payload:
    """Unpickling this runs ``open(marker, "w")``: the file appears only if a loader ran code from the checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return open, (str(self.marker), "w")


def test_a_planted_pickle_never_runs_even_when_torch_is_told_to_allow_it(registry: Path, tmp_path: Path) -> None:
    checkpoint = artifact(registry, "stage1") / "model.ckpt"
    checkpoint.unlink()
    torch.save({"state_dict": Payload(tmp_path / "pwned"), "hyper_parameters": {}}, checkpoint)
    torch.load(checkpoint, weights_only=False)  # the plant works: an unsafe load runs it
    assert (tmp_path / "pwned").exists()
    (tmp_path / "pwned").unlink()
    result = generate(tmp_path, registry, "text=a red circle", f"out_dir={tmp_path / 'gen'}",
                      env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})  # fmt: skip
    line = one_error_line(result)
    assert f"{checkpoint} is not a t2v checkpoint or holds code to run" in line and "delete" in line
    assert not (tmp_path / "pwned").exists()


def test_a_full_disk_is_one_line(registry: Path, tmp_path: Path) -> None:
    """A file-size limit (ulimit -f) fails a write as a full disk does (EFBIG): the first clip does not fit."""
    from t2v.files import DiskFull

    out = tmp_path / "gen"
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    command = [sys.executable, str(ROOT / "generate.py"), f"paths.artifacts_dir={registry}", "text=a red circle",
               f"out_dir={out}", f"hydra.run.dir={tmp_path / 'run'}", "hydra.output_subdir=null"]  # fmt: skip
    limit = 1024  # bytes: samples.json's "[]" fits, a GIF or PNG of a clip does not
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))  # fmt: skip
    line = one_error_line(result, DiskFull.exit_status)
    assert f"disk full while writing {out}" in line
    assert json.loads((out / "samples.json").read_text()) == []
    assert [p.name for p in out.iterdir()] == ["samples.json"]  # no half-written clip, no temporary file
