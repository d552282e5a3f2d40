"""The chain of tiny trained stages that the end-to-end tests share, trained once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from filelock import FileLock

from helpers import TINY, VIDEOGAN_STEPS, paths_in, run_entry


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """One tiny pipeline run; its artifacts serve the other tests.

    Under pytest-xdist the workers share it: the first to need it trains it under a file lock in the
    session's common temporary folder, and the others wait for it and reuse it.
    """
    session_dir = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # each worker's base folder lies inside the session's
        session_dir = session_dir.parent
    root = session_dir / "chain"
    with FileLock(str(session_dir / "chain.lock")):
        if not (root / "done").exists():
            root.mkdir(exist_ok=True)
            result = run_entry("train.py", "stage=pipeline", *TINY, f"hydra.run.dir={root / 'run'}", *paths_in(root),
                               VIDEOGAN_STEPS, cwd=root, timeout=600)  # fmt: skip
            assert result.returncode == 0, result.stderr[-4000:]
            (root / "done").touch()
    return root
