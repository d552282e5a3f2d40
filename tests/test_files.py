"""t2v.files: a write that fails (a full disk) leaves the previous file whole, no temporary file, and one line."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import BinaryIO

import pytest
import torch

from t2v.files import DiskFull, atomic_path, write_json_atomic
from t2v.trainer import AtomicCheckpointIO


def test_a_failed_write_keeps_the_previous_file_and_says_disk_full(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_json_atomic(target, {"run": 1})
    says = f"disk full while writing {target}; free some space"
    with pytest.raises(DiskFull, match=says), atomic_path(target) as tmp:
        tmp.write_text('{"run": 2, "half')  # half of the new content reached the disk, then the disk was full
        raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == '{\n  "run": 1\n}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_other_failures_are_not_called_a_full_disk(tmp_path: Path) -> None:
    with pytest.raises(PermissionError), atomic_path(tmp_path / "x") as tmp:
        tmp.write_text("x")
        raise PermissionError(errno.EACCES, "denied")
    assert not list(tmp_path.iterdir())


def test_a_checkpoint_that_cannot_be_written_leaves_the_last_good_one(tmp_path: Path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    last = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, last)

    def full_disk(obj: object, file: BinaryIO) -> None:
        file.write(b"PK\x03\x04 truncated")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(DiskFull, match="last.ckpt"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, last)
    assert torch.equal(io.load_checkpoint(last)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]
