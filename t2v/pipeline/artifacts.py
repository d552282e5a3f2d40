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
import pickle
import shutil
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import torch

from t2v.errors import T2VError
from t2v.files import save_torch_atomic, write_bytes_atomic, write_json_atomic
from t2v.models.stage import FORMAT_KEY, StageModule
from t2v.text.featurizer import printable

MANIFEST = "manifest.json"
CHECKPOINT = "model.ckpt"

M = TypeVar("M", bound=StageModule)
# What torch and Lightning raise for a file that is not a whole checkpoint of the class: truncated (zip reader,
# EOF), not a torch file at all, or another model's (missing keys, other hyper-parameters, other shapes).
UNREADABLE = (RuntimeError, EOFError, OSError, KeyError, TypeError, ValueError, AttributeError, zipfile.BadZipFile)


def slim_checkpoint(source: Path, target: Path) -> dict[str, Any]:
    """Copy a Lightning checkpoint without optimizer and loop state (enough for load_from_checkpoint);
    returns its hyper-parameters, which later stages use to rebuild the architecture."""
    ckpt = torch.load(source, map_location="cpu", weights_only=True)
    keep = ("state_dict", "hyper_parameters", "hparams_name", "pytorch-lightning_version", "epoch", "global_step",
            FORMAT_KEY)  # fmt: skip
    save_torch_atomic({k: ckpt[k] for k in keep if k in ckpt}, target)
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
    """The newest complete artifact folder of a stage, or None. The ``latest`` pointer must name a folder of
    ``<artifacts_dir>/<stage>/`` (an id, not a path), so a planted pointer cannot lead outside the registry."""
    stage_dir = Path(artifacts_dir) / stage
    pointer = stage_dir / "latest"
    if not pointer.is_file():
        return None
    fix = f"delete {pointer} (training {stage} again rewrites it) or write an artifact id of {stage_dir} into it"
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise T2VError(f"{pointer} cannot be read ({reason(error)}); {fix}") from None
    # One plain folder name: no separator, no "..", not a hidden (staging) folder.
    if not name or name != Path(name).name or name.startswith(".") or "\\" in name:
        raise T2VError(f"{pointer} names {printable(name)!r}, which is not an artifact id; {fix}")
    folder = stage_dir / name
    if folder.exists() and folder.resolve().parent != stage_dir.resolve():  # a link that leads elsewhere
        raise T2VError(f"{pointer} names {folder}, which leads outside the registry {stage_dir.parent}; {fix}")
    return folder if (folder / MANIFEST).is_file() else None


# Keys every manifest has (publish writes them); the rest is each stage's own and read with .get().
REQUIRED_KEYS = ("stage", "checkpoint")
# Manifest entries that are paths, resolved against the artifact folder and kept inside its registry.
PATH_KEYS = ("checkpoint", "featurizer_dir")


def reason(error: BaseException) -> str:
    """An exception as a short phrase for a one-line message (its first line, without the type's noise)."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def read_manifest(folder: str | Path, require: Sequence[str] = ()) -> dict[str, Any]:
    """The manifest of an artifact folder, with its file paths made absolute. A manifest that cannot be read,
    is not a JSON object or lacks :data:`REQUIRED_KEYS` (or ``require``), and a path in it that leads outside the
    registry (the folder's ``<registry>/<stage>/<id>``), are one-line errors naming the file."""
    folder = Path(folder).resolve()
    path = folder / MANIFEST
    fix = f"retrain that stage or delete the artifact folder {folder}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise T2VError(f"{path} is missing, so {folder} is not a complete artifact; {fix}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise T2VError(f"{path} cannot be read ({reason(error)}); {fix}") from None
    if not text.strip():
        raise T2VError(f"{path} is empty (an interrupted write?); {fix}")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise T2VError(f"{path} is not valid JSON ({reason(error)}); {fix}") from None
    if not isinstance(record, dict):
        raise T2VError(f"{path} holds a JSON {type(record).__name__}, not a manifest object; {fix}")
    missing = [key for key in (*REQUIRED_KEYS, *require) if key not in record]
    if missing:
        raise T2VError(f"{path} lacks {', '.join(missing)}, so it is not a t2v manifest; {fix}")
    record["folder"] = str(folder)
    registry = folder.parent.parent
    for key in PATH_KEYS:
        if record.get(key):
            record[key] = str(registry_path(registry, folder, record[key], f"{path}: {key}", fix))
    return record


def registry_path(registry: Path, folder: Path, value: Any, name: str, fix: str) -> Path:
    """A manifest's path ``value`` (relative to the artifact folder, or absolute), resolved inside ``registry``.

    An absolute path written where the registry used to be (registries are copied and moved: a downstream manifest
    records its upstream's featurizer by its full path) is read at the same place in this registry: its
    ``<stage>/<id>/...`` tail. Anything else outside the registry is refused: a manifest never makes t2v read a
    file elsewhere.
    """
    if not isinstance(value, str):
        raise T2VError(f"{name} is {value!r}, not a path; {fix}")
    registry = registry.resolve()
    given = Path(value)
    path = (folder / given).resolve()  # an absolute value stays itself
    if path.is_relative_to(registry):
        return path
    if given.is_absolute():
        # The longest tail of at least <stage>/<id>/<file> that exists in this registry.
        parts = given.parts[1:]
        for start in range(len(parts) - 2):
            moved = registry.joinpath(*parts[start:]).resolve()
            if moved.is_relative_to(registry) and moved.exists():
                return moved
    raise T2VError(f"{name} is {printable(value)!r}, outside the artifact registry {registry}; {fix}")


def find(artifacts_dir: str | Path, stage: str, where: str | Path) -> Path | None:
    """An artifact folder: the latest of ``stage`` for ``where="latest"``, else the folder (or its
    manifest.json) at ``where``. None when there is no such complete artifact."""
    if str(where) == "latest":
        return latest(artifacts_dir, stage)
    folder = Path(where)
    folder = folder.parent if folder.name == MANIFEST else folder
    return folder if (folder / MANIFEST).is_file() else None


def load_model(cls: type[M], manifest: Mapping[str, Any]) -> M:
    """The model of an artifact (a manifest from :func:`read_manifest`), on the CPU and in eval mode."""
    fix = f"retrain {manifest.get('stage', 'that stage')} or delete the artifact folder {manifest['folder']}"
    return load_checkpoint(cls, manifest["checkpoint"], fix)


def load_checkpoint(cls: type[M], checkpoint: str | Path, fix: str) -> M:
    """``cls.load_from_checkpoint`` on the CPU with ``weights_only=True``, passed explicitly: torch then never
    runs code from the file, even with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (which only overrides a default).
    A file it refuses, or cannot read (truncated, not a checkpoint, another model's), is one line naming it."""
    path = Path(checkpoint)
    if not path.is_file():
        raise T2VError(f"the checkpoint {path} is missing; {fix}")
    try:
        model = cls.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = next((line.strip() for line in str(error).splitlines() if "Unsupported" in line), reason(error))
        raise T2VError(
            f"{path} is not a t2v checkpoint or holds code to run (torch's safe loader refused it: {refused}); {fix}"
        ) from None
    except UNREADABLE as error:
        raise T2VError(
            f"{path} is not a t2v checkpoint or holds code to run (it does not load: {reason(error)}); {fix}"
        ) from None
    return model.eval()
