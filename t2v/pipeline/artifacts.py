"""The local artifact registry: how a trained stage hands its model to the stages after it.

Layout under ``paths.artifacts_dir``::

    <stage>/<artifact id>/model.ckpt       weights + hyper-parameters (Model.load_from_checkpoint works)
    <stage>/<artifact id>/manifest.json    stage, checkpoint, resolved config, data fingerprint, dims, ...
    <stage>/<artifact id>/...              stage extras (e.g. the VAE's fitted featurizer)
    <stage>/latest                         the id of the newest complete artifact

Everything is written to a temporary folder first and renamed into place, and ``latest`` moves
last, so an interrupted run never leaves a half-written artifact that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from t2v.files import write_bytes_atomic, write_json_atomic
from t2v.models.stage import FORMAT_KEY

MANIFEST = "manifest.json"
CHECKPOINT = "model.ckpt"


def slim_checkpoint(source: Path, target: Path) -> dict[str, Any]:
    """Copy a Lightning checkpoint without optimizer and loop state (enough for load_from_checkpoint);
    returns its hyper-parameters, which later stages use to rebuild the architecture."""
    ckpt = torch.load(source, map_location="cpu", weights_only=True)
    keep = ("state_dict", "hyper_parameters", "hparams_name", "pytorch-lightning_version", "epoch", "global_step",
            FORMAT_KEY)  # fmt: skip
    torch.save({k: ckpt[k] for k in keep if k in ckpt}, target)
    return dict(ckpt.get("hyper_parameters", {}))


def publish(
    artifacts_dir: str | Path,
    stage: str,
    checkpoint: str | Path,
    manifest: dict[str, Any],
    export: Callable[[Path], dict[str, Any]] | None = None,
) -> Path:
    """Register a trained stage: copy its checkpoint, let the stage add its extras, write the
    manifest, then point ``latest`` at it. Returns the artifact folder."""
    stage_dir = Path(artifacts_dir) / stage
    stage_dir.mkdir(parents=True, exist_ok=True)
    artifact_id = f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    staging = stage_dir / f".{artifact_id}.partial"
    staging.mkdir()
    try:
        hparams = slim_checkpoint(Path(checkpoint), staging / CHECKPOINT)
        extras = export(staging) if export else {}
        final = stage_dir / artifact_id
        record = {
            "stage": stage,
            "id": artifact_id,
            "created": datetime.now().isoformat(timespec="seconds"),
            "checkpoint": CHECKPOINT,
            "hparams": hparams,
            **manifest,
            **extras,
        }
        write_json_atomic(staging / MANIFEST, record)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_bytes_atomic(stage_dir / "latest", artifact_id.encode())
    return final


def latest(artifacts_dir: str | Path, stage: str) -> Path | None:
    """The newest complete artifact folder of a stage, or None."""
    pointer = Path(artifacts_dir) / stage / "latest"
    if not pointer.is_file():
        return None
    folder = pointer.parent / pointer.read_text().strip()
    return folder if (folder / MANIFEST).is_file() else None


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of an artifact folder, with its file paths made absolute."""
    folder = Path(folder).resolve()
    record = json.loads((folder / MANIFEST).read_text())
    record["folder"] = str(folder)
    for key in ("checkpoint", "featurizer_dir"):
        if record.get(key):
            record[key] = str(folder / record[key])
    return record


def find(artifacts_dir: str | Path, stage: str, where: str | Path) -> Path | None:
    """An artifact folder: the latest of ``stage`` for ``where="latest"``, else the folder (or its
    manifest.json) at ``where``. None when there is no such complete artifact."""
    if str(where) == "latest":
        return latest(artifacts_dir, stage)
    folder = Path(where)
    folder = folder.parent if folder.name == MANIFEST else folder
    return folder if (folder / MANIFEST).is_file() else None
