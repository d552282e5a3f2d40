"""The chain of tiny trained stages that the end-to-end tests share, trained once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import TINY, VIDEOGAN_STEPS, paths_in, run_entry


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny pipeline run; its artifacts serve the other tests."""
    root = tmp_path_factory.mktemp("chain")
    result = run_entry("train.py", "stage=pipeline", *TINY, f"hydra.run.dir={root / 'run'}", *paths_in(root),
                       VIDEOGAN_STEPS, cwd=root, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return root
