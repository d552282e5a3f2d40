"""The preprocessed-clip cache: uint8 shards that training memory-maps, and a JSONL index.

One cache folder per preprocessing setting (frames, size, stride, window, filters, dataset and root):

    <cache_dir>/<key>/settings.json        what the key stands for
    <cache_dir>/<key>/shards/00000.npy     uint8 (clips, T, H, W, 3), a plain .npy: np.load(mmap_mode="r")
    <cache_dir>/<key>/index.jsonl          one line per cached clip: where its frames are, its captions,
                                           movie, split, the source's fps, frame count and size
    <cache_dir>/<key>/dropped.jsonl        clips the quality filters dropped, and why
    <cache_dir>/<key>/failed.jsonl         clips whose files are missing or broken, and why
    <cache_dir>/<key>/summary.json         the counts of the last preprocessing run

Crash safety. A shard is written to ``<name>.tmp``, fsynced and renamed into place; only then are
its clips appended to the index. So a killed run leaves at worst (a) a ``.tmp`` file, (b) a complete
shard that no index line refers to, or (c) a torn last index line. Readers see none of them: the
index only names renamed, complete shards, and a line without its newline is ignored. The next
writer deletes (a) and (b), cuts (c), and redoes those clips. Clips in the index or in the dropped or
failed lists count as done, which is what makes preprocessing resumable.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from t2v.errors import T2VError
from t2v.files import atomic_path, write_bytes_atomic

try:  # POSIX: one writer per cache folder at a time (e.g. DDP ranks, or two prepare commands)
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None

# Bump when the layout changes; it is part of the key, so old caches are simply not found.
CACHE_FORMAT = 1
INDEX, DROPPED, FAILED = "index.jsonl", "dropped.jsonl", "failed.jsonl"
SETTINGS, SUMMARY, LOCK = "settings.json", "summary.json", ".lock"
# Shards of about this size: large enough for few files, small enough that an interrupted run
# loses little and the writer's buffer stays small.
SHARD_BYTES = 64 << 20


def cache_key(settings: dict[str, Any]) -> str:
    """A short hash of the settings that decide the cached pixels."""
    blob = json.dumps({"format": CACHE_FORMAT, **settings}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a JSONL file; a torn last line (no newline, or cut JSON) is ignored."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


@lru_cache(maxsize=64)
def open_shard(path: str) -> np.ndarray:
    """A read-only memory map of a shard. Cached per process (each DataLoader worker has its own),
    with a bound, so a dataset of thousands of shards does not hold thousands of open maps."""
    return np.load(path, mmap_mode="r")


class ClipCache:
    """One cache folder (see the module doc). Reading is safe while a writer appends."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @classmethod
    def for_settings(cls, parent: str | Path, settings: dict[str, Any]) -> ClipCache:
        return cls(Path(parent).expanduser() / cache_key(settings))

    def shard_path(self, shard: int) -> Path:
        return self.directory / "shards" / f"{shard:05d}.npy"

    def exists(self) -> bool:
        return (self.directory / INDEX).is_file()

    def index(self) -> dict[str, dict[str, Any]]:
        """clip id -> its index row, for every clip in a complete shard."""
        return {row["clip_id"]: row for row in read_jsonl(self.directory / INDEX)}

    def dropped(self) -> dict[str, dict[str, Any]]:
        """clip id -> {reason, detail, ...} for clips the quality filters dropped."""
        return {row["clip_id"]: row for row in read_jsonl(self.directory / DROPPED)}

    def failed(self) -> dict[str, dict[str, Any]]:
        """clip id -> {reason, detail} for clips whose file was missing or broken when last tried."""
        return {row["clip_id"]: row for row in read_jsonl(self.directory / FAILED)}

    def frames(self, shard: int, row: int) -> np.ndarray:
        """The cached uint8 frames (T, H, W, 3) at ``shard``/``row`` of the index, a view into the memory map."""
        path = self.shard_path(shard)
        if not path.is_file():
            raise T2VError(f"data cache {self.directory} lacks {path.name}; delete {self.directory} to rebuild it")
        return open_shard(str(path))[row]

    @contextmanager
    def writer(self, settings: dict[str, Any], shard_bytes: int | None = None) -> Iterator[CacheWriter]:
        """Exclusive, crash-safe appending (see the module doc); shards of about ``shard_bytes``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / LOCK, "w") as lock:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)  # waits for another writer to finish
            writer = CacheWriter(self, settings, shard_bytes or SHARD_BYTES)
            try:
                yield writer
            except KeyboardInterrupt:
                writer.flush()  # keep the finished clips of an interrupted run
                raise
            else:
                writer.flush()


class CacheWriter:
    """Buffers finished clips and writes them as shards; use through :meth:`ClipCache.writer`."""

    def __init__(self, cache: ClipCache, settings: dict[str, Any], shard_bytes: int) -> None:
        self.cache, self.shard_bytes = cache, shard_bytes
        directory = cache.directory
        write_bytes_atomic(directory / SETTINGS, json.dumps(settings, indent=2, sort_keys=True).encode())
        # Cut torn last lines, so appends start on a fresh line.
        for name in (INDEX, DROPPED, FAILED):
            rows = read_jsonl(directory / name)
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            if (directory / name).is_file() and (directory / name).read_text(encoding="utf-8") != text:
                write_bytes_atomic(directory / name, text.encode())
        indexed = {row["shard"] for row in read_jsonl(directory / INDEX)}
        self.next_shard = max(indexed, default=-1) + 1
        # Leftovers of a killed run: unfinished .tmp files, and finished shards no index line names.
        (directory / "shards").mkdir(exist_ok=True)
        for path in (directory / "shards").iterdir():
            stem = path.name.split(".")[0]
            if path.name.endswith(".tmp") or (stem.isdigit() and int(stem) not in indexed):
                path.unlink()
        self.buffer: list[tuple[np.ndarray, dict[str, Any]]] = []
        self.written = 0

    def add(self, frames: np.ndarray, row: dict[str, Any]) -> None:
        """Queue a clip's uint8 frames and its index row (``clip_id`` and whatever else to record)."""
        self.buffer.append((frames, row))
        if len(self.buffer) * frames.nbytes >= self.shard_bytes:
            self.flush()

    def drop(self, row: dict[str, Any]) -> None:
        """Record a clip the quality filters dropped (``clip_id``, ``reason``, ...)."""
        self._append(DROPPED, row)

    def fail(self, row: dict[str, Any]) -> None:
        """Record a clip whose file is missing or broken (``clip_id``, ``reason``, ``detail``)."""
        self._append(FAILED, row)

    def forget_failures(self) -> None:
        """Start the failed list afresh, before trying those clips again."""
        write_bytes_atomic(self.cache.directory / FAILED, b"")

    def _append(self, name: str, row: dict[str, Any]) -> None:
        with open(self.cache.directory / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        """Write the buffered clips as one shard, then index them (in that order: see the module doc)."""
        if not self.buffer:
            return
        shard = self.next_shard
        path = self.cache.shard_path(shard)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.lib.format.write_array(f, np.stack([frames for frames, _ in self.buffer]), allow_pickle=False)
        lines = [{**row, "shard": shard, "row": i} for i, (_, row) in enumerate(self.buffer)]
        with open(self.cache.directory / INDEX, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        self.written += len(self.buffer)
        self.next_shard += 1
        self.buffer = []
