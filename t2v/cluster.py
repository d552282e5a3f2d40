"""Where this process stands in a job that a cluster launcher (srun, torchrun) started once per device, read from
the launcher's environment: ranks other than 0 wait for what rank 0 writes to the shared filesystem."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

from t2v.errors import T2VError

T = TypeVar("T")


def launched_rank() -> int:
    """This process's global rank as srun (SLURM_PROCID) or torchrun (RANK) set it; 0 when started once."""
    return int(os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or 0)


def slurm_requeued() -> bool:
    """Whether this is a later try of a SLURM job that was requeued (after a timeout or a preemption)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def wait_for(find: Callable[[], T | None], what: str, timeout_s: float = 3600.0, poll_s: float = 2.0) -> T:
    """Poll ``find`` until it returns something (what rank 0 is making), or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (found := find()) is None:
        if time.monotonic() > deadline:
            raise T2VError(
                f"rank {launched_rank()} waited {timeout_s:.0f}s for rank 0 to write {what}; check rank 0's log, and "
                "that the run dir and paths.artifacts_dir are on a filesystem every node sees"
            )
        time.sleep(poll_s)
    return found
