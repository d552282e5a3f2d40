"""Long runs you can trust, with real processes: a training run killed with SIGKILL after its first checkpoint and
resumed from ``last.ckpt`` ends bitwise where an uninterrupted run ends; SIGTERM saves the state at that step, fails
with exit status 143 and says ``preempted``; a diverged GAN stage stops the pipeline before a later stage uses an
older artifact in its place; a checkpoint from another configuration is one line."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import ROOT, TINY, TINY_VAE, call_entry, paths_in, run_entry

pytestmark = pytest.mark.slow

# No validation judge (it would train a probe), samples or plots: the runs only train and checkpoint.
QUIET = ["stage.monitor=null", "callbacks.gan_validation=null", "callbacks.gan_samples=null",
         "callbacks.loss_plot=null", "callbacks.progress_bar=null", "trainer.enable_progress_bar=false",
         "trainer.limit_val_batches=1", "debug=limit", "trainer.limit_train_batches=4"]  # fmt: skip
QUIET_CSV = [*QUIET, "logger=csv"]
# A video GAN without text (no upstream stage), 8 frames of 16x16; a VAE of the tiny chain.
VIDEOGAN = ["stage=videogan", "model.text.parts=[]", "data.frames=8", "data.size=16", "data.num_clips=96",
            "data.batch_size=8", "model.width=0.0625", "featurizer.max_words=12", "featurizer.dim=32"]  # fmt: skip
VAE = ["stage=vae", "experiment=quickstart", *TINY_VAE, "data.num_clips=96", "data.batch_size=8"]
STEPS = ["trainer.max_steps=10", "trainer.max_epochs=-1"]  # 10 batches: the third epoch is cut short
EPOCHS = ["trainer.max_steps=-1", "trainer.max_epochs=3"]

CASES = {
    "videogan-max_steps": [*VIDEOGAN, *STEPS],
    "videogan-ema-max_epochs": [*VIDEOGAN, *EPOCHS, "model.ema.decay=0.9"],
    "vae-max_steps": [*VAE, *STEPS],
    "vae-max_epochs": [*VAE, *EPOCHS],
    # Stages with upstream artifacts read the shared tiny chain's (and publish nothing into it).
    "siamese-max_steps": ["stage=siamese", "experiment=quickstart", "publish=false", *STEPS],
    "stage1-max_steps": ["stage=stage1", "experiment=quickstart", "publish=false", *STEPS],
}
ON_THE_CHAIN = ("siamese-max_steps", "stage1-max_steps")


def train(
    root: Path,
    name: str,
    overrides: list[str],
    *extra: str,
    env: dict[str, str] | None = None,
    logger: str = "csv",
    registry: Path | None = None,
) -> subprocess.Popen:
    """Start ``python train.py`` in a process of its own, with its run dir at ``root/name`` (``env``: extra
    environment variables; ``registry``: the folder whose artifacts and cache it uses, ``root`` by default)."""
    command = [sys.executable, str(ROOT / "train.py"), *QUIET, f"logger={logger}", *overrides,
               *paths_in(registry or root), f"hydra.run.dir={root / name}", *extra]  # fmt: skip
    environment = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0",
                   "PYTHONPATH": str(ROOT / "tests"), **(env or {})}  # fmt: skip
    output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    return subprocess.Popen(command, cwd=root, env=environment, **output)


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-4000:]
    return output


def kill_after_first_checkpoint(process: subprocess.Popen, run_dir: Path) -> None:
    """SIGKILL as soon as ``last.ckpt`` exists (it is renamed into place whole, so it is complete)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    while process.poll() is None and not last.is_file():
        time.sleep(0.02)
    process.kill()
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert last.is_file()


def assert_same_state(a: Path, b: Path) -> None:
    """The two checkpoints hold the same step, weights, buffers and optimizer state, bit for bit."""
    first, second = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    assert first["global_step"] == second["global_step"]
    assert first["state_dict"].keys() == second["state_dict"].keys()
    differ = [k for k, v in first["state_dict"].items() if not torch.equal(v, second["state_dict"][k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"
    for one, other in zip(first["optimizer_states"], second["optimizer_states"], strict=True):
        for param, state in one["state"].items():
            for key, value in state.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(other["state"][param][key])), (param, key)


# The tests that compare with the uninterrupted run go to one xdist worker, which trains it once.
SHARES_THE_UNINTERRUPTED_RUN = pytest.mark.xdist_group("uninterrupted_videogan")


@pytest.fixture(scope="module")
def uninterrupted_videogan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``last.ckpt`` of one uninterrupted video GAN run, which the preemption tests compare against."""
    root = tmp_path_factory.mktemp("uninterrupted")
    finish(train(root, "full", CASES["videogan-max_steps"]))
    return root / "full" / "checkpoints" / "last.ckpt"


# GAN resumes with max_steps, from a stop mid-epoch, are the SIGTERM and SLURM tests' (against one shared run).
KILLED = [case for case in CASES if case not in ("videogan-max_steps", "vae-max_steps")]


@pytest.mark.parametrize("case", KILLED)
def test_a_killed_run_resumed_from_last_ckpt_ends_bitwise_like_an_uninterrupted_one(
    case: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    overrides = CASES[case]
    registry = request.getfixturevalue("chain") if case in ON_THE_CHAIN else None
    uninterrupted = train(tmp_path, "full", overrides, registry=registry)
    killed = train(tmp_path, "killed", overrides, registry=registry)
    kill_after_first_checkpoint(killed, tmp_path / "killed")
    finish(uninterrupted)
    # In place: the same run dir and logs.
    resumed = finish(train(tmp_path, "killed", overrides, "ckpt_path=auto", registry=registry))
    assert f"resuming from {tmp_path / 'killed' / 'checkpoints' / 'last.ckpt'}" in resumed
    assert_same_state(
        tmp_path / "full" / "checkpoints" / "last.ckpt", tmp_path / "killed" / "checkpoints" / "last.ckpt"
    )
    metrics = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    # The resumed run's record spans the whole run: every validation, the killed part's included.
    assert len(metrics["history"]) == len(json.loads((tmp_path / "full" / "metrics.json").read_text())["history"])


@SHARES_THE_UNINTERRUPTED_RUN
def test_sigterm_saves_the_step_fails_as_preempted_and_resumes_mid_epoch_bitwise(
    tmp_path: Path, uninterrupted_videogan: Path
) -> None:
    overrides = CASES["videogan-max_steps"]
    # A real SIGTERM, sent from inside the process after its 6th batch: the second epoch's second (4 an epoch).
    signal_at = ["+callbacks.signal._target_=helpers.SignalAt", "+callbacks.signal.batch=6"]
    stopped = train(tmp_path, "stopped", overrides, *signal_at, logger="[csv,wandb]")
    output, _ = stopped.communicate(timeout=120)
    assert stopped.returncode == 143, output[-4000:]
    errors = [line for line in output.splitlines() if line.startswith("t2v: error:")]
    assert len(errors) == 1 and "stopped by a signal" in errors[0] and "ckpt_path=auto" in errors[0]
    metrics = json.loads((tmp_path / "stopped" / "metrics.json").read_text())
    last = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert metrics["stop/reason"] == "preempted" and metrics["stop/checkpoint"] == str(last)
    assert "artifact" not in metrics
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["global_step"] % 8 != 0, "the stop checkpoint should be mid-epoch (4 batches of 2 steps an epoch)"
    finish(train(tmp_path, "stopped", overrides, "ckpt_path=auto", logger="[csv,wandb]"))
    assert_same_state(uninterrupted_videogan, last)
    # The resumed run logged into the same W&B run (an offline run's folder ends with its id).
    resumed = json.loads((tmp_path / "stopped" / "metrics.json").read_text())
    assert resumed["wandb_run"] != metrics["wandb_run"]
    assert resumed["wandb_run"].rsplit("-", 1)[1] == metrics["wandb_run"].rsplit("-", 1)[1]


def test_a_diverged_gan_stage_stops_the_pipeline_before_a_later_stage_uses_an_older_artifact(
    chain: Path, tmp_path: Path
) -> None:
    registry = chain / "artifacts"
    before = {name: (registry / name / "latest").read_text() for name in ("stage1", "videogan")}
    result = run_entry("train.py", "stage=pipeline", *TINY, "stage.stages=[stage1,videogan]",
                       'stage.overrides.stage1=["model.optim.lr_g=1e9","model.optim.lr_d=1e9"]',
                       f"hydra.run.dir={tmp_path / 'run'}", *paths_in(chain), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1, result.stderr[-4000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("t2v: error:")]
    assert len(errors) == 1 and "stage stage1 failed: nonfinite" in errors[0] and "not published" in errors[0]
    assert "saved no good checkpoint before that" in errors[0]  # it diverged at once, before its first checkpoint
    assert {name: (registry / name / "latest").read_text() for name in before} == before  # latest did not move
    assert not (tmp_path / "run" / "videogan").exists() and not (tmp_path / "run" / "samples").exists()
    assert json.loads((tmp_path / "run" / "stage1" / "metrics.json").read_text())["stop/reason"] == "nonfinite"


@SHARES_THE_UNINTERRUPTED_RUN
def test_a_checkpoint_of_another_configuration_is_one_line(tmp_path: Path, uninterrupted_videogan: Path) -> None:
    last = uninterrupted_videogan
    wider = call_entry("train.py", *QUIET_CSV, *CASES["videogan-max_steps"], "model.width=0.125", f"ckpt_path={last}",
                       *paths_in(tmp_path), f"hydra.run.dir={tmp_path / 'wider'}", cwd=tmp_path)  # fmt: skip
    vae = call_entry("train.py", *QUIET_CSV, *CASES["vae-max_steps"], f"ckpt_path={last}", *paths_in(tmp_path),
                     f"hydra.run.dir={tmp_path / 'vae'}", cwd=tmp_path)  # fmt: skip
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[:1000])
    broken = call_entry("train.py", *QUIET_CSV, *CASES["videogan-max_steps"], f"ckpt_path={truncated}",
                        *paths_in(tmp_path), f"hydra.run.dir={tmp_path / 'broken'}", cwd=tmp_path)  # fmt: skip
    for result, says in ((wider, "was saved by another stage or model configuration"),
                         (vae, "was saved by another stage or model configuration"),
                         (broken, "is not a checkpoint t2v can read")):  # fmt: skip
        assert result.returncode == 2, result.stderr[-3000:]
        assert result.stderr.strip().splitlines()[-1].startswith("t2v: error: ckpt_path=")
        assert says in result.stderr and "Traceback" not in result.stderr


@SHARES_THE_UNINTERRUPTED_RUN
def test_under_slurm_the_requeue_signal_requeues_the_job_and_the_requeued_job_resumes(
    tmp_path: Path, uninterrupted_videogan: Path
) -> None:
    # A one-task SLURM job as Lightning reads it from the environment, and an `scontrol` that records its arguments.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    slurm = {"SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
             "SLURM_JOB_NAME": "t2v", "SLURM_JOB_ID": "4242", "SLURM_NODELIST": "localhost",
             "PATH": f"{bin_dir}:{os.environ['PATH']}"}  # fmt: skip
    overrides = CASES["videogan-max_steps"]
    signal_at = ["+callbacks.signal._target_=helpers.SignalAt", "+callbacks.signal.batch=6",
                 "+callbacks.signal.signal_name=SIGUSR1"]  # fmt: skip
    stopped = train(tmp_path, "job", overrides, *signal_at, env=slurm)
    output, _ = stopped.communicate(timeout=300)
    assert stopped.returncode == 143, output[-4000:]
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    assert list((tmp_path / "job").glob("hpc_ckpt_*.ckpt"))  # Lightning's own, before the stop
    assert json.loads((tmp_path / "job" / "metrics.json").read_text())["stop/reason"] == "preempted"
    # SLURM starts the requeued job with the same command; it resumes by itself.
    requeued = train(tmp_path, "job", overrides, env={**slurm, "SLURM_RESTART_COUNT": "1"})
    assert f"resuming from {tmp_path / 'job' / 'checkpoints' / 'last.ckpt'}" in finish(requeued)
    assert json.loads((tmp_path / "job" / "metrics.json").read_text())["stop/reason"] == "max_steps"
    assert_same_state(uninterrupted_videogan, tmp_path / "job" / "checkpoints" / "last.ckpt")


@SHARES_THE_UNINTERRUPTED_RUN
def test_a_checkpoint_write_that_fails_for_lack_of_space_keeps_the_last_good_one(
    tmp_path: Path, uninterrupted_videogan: Path
) -> None:
    shutil.copytree(uninterrupted_videogan.parents[1], tmp_path / "run")  # a finished run, resumed for more steps
    checkpoints = tmp_path / "run" / "checkpoints"
    before = {p.name: p.read_bytes() for p in checkpoints.iterdir()}

    def no_room_for_a_checkpoint() -> None:
        """Writes past 1 MB fail with EFBIG, as they would on a full disk (the checkpoints are ~4 MB)."""
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    command = [sys.executable, str(ROOT / "train.py"), *QUIET_CSV, *CASES["videogan-max_steps"], *paths_in(tmp_path),
               f"hydra.run.dir={tmp_path / 'run'}", "ckpt_path=auto", "trainer.max_steps=14"]  # fmt: skip
    environment = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    result = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300,
                            preexec_fn=no_room_for_a_checkpoint)  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"t2v: error: disk full while writing {checkpoints}/")
    assert "Traceback" not in result.stderr
    assert {p.name: p.read_bytes() for p in checkpoints.iterdir()} == before  # whole, and nothing half-written
