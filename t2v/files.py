"""Writing files so that a crash or a full disk never leaves half a file under its final name.

Everything t2v writes that another step reads back (checkpoints, artifacts, metrics.json, samples.json, the
prepare cache) goes through :func:`atomic_path`: the data is written to a temporary file in the **same directory**
(so the final rename never crosses file systems), flushed to disk, then renamed over the target. A reader sees the
old file or the new one, never a mix, and a failed write leaves the old file as it was.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from t2v.errors import T2VError

# The errors a write fails with when there is no room: a full disk, a quota, a file-size limit (ulimit -f).
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class DiskFull(T2VError):
    """A write failed for lack of space; the previous file at that path is intact."""


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is an out-of-space write failure."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            return True
        error = error.__cause__ or error.__context__
    return False


def fsync_file(path: Path) -> None:
    """Push a finished file's data to the disk before it is renamed into place."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, rename it onto ``path``.

    On any failure the temporary file is removed and ``path`` keeps its previous content; a failure for lack of
    space becomes one :class:`DiskFull` line that names the file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if is_disk_full(error):
            raise DiskFull(f"disk full while writing {path}; free some space and run again") from error
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_torch_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically. Through a Python file object: torch's own file writer reports a full disk as a
    RuntimeError, not an OSError."""
    import torch  # only the writers of checkpoints need it

    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        torch.save(obj, file)


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as indented JSON, atomically (values JSON cannot hold are written as text)."""
    write_bytes_atomic(path, json.dumps(data, indent=2, default=str, ensure_ascii=False).encode())
