"""Caption files of real movie datasets -> one :class:`ClipRecord` per clip.

Three layouts (see README, "Real movie data"):

- MPII-MD: ``annotations-someone.csv`` (``<clip id>\\t<sentence>``) and ``dataSplit.txt``
  (``<movie>\\t<training|validation|test>``).
- LSMDC 2016: ``LSMDC16_annos_{training,val,test}.csv``, six tab-separated columns without a header
  (clip id, start/end aligned, start/end extracted, sentence); the file gives the split.
- A folder of the user's own clips with ``captions.csv``: ``path,caption[,split]``.

MPII and LSMDC clips live at ``<root>/<movie>/<clip id>.avi`` or as frames in
``<root>/jpgAllFrames/<movie>/<clip id>/0001.jpg ...``, where the movie is the clip id without its
trailing timestamps (``0001_American_Beauty_00.00.51.926-00.00.54.129`` -> ``0001_American_Beauty``).

Reading never touches the videos: whether a clip exists or decodes is the preprocessing's business,
which skips and counts the bad ones instead of failing the whole dataset. What reading does refuse is a
``captions.csv`` path that leaves ``root`` (see :func:`folder_clip_path`) and a ``captions.csv`` that is not
UTF-8 (see :func:`read_text`).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from t2v.errors import T2VError

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
# The names the published files and users write for each split.
SPLIT_NAMES: Mapping[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
# <4-digit movie id>_<Movie_Name>_<hh.mm.ss.mmm>-<hh.mm.ss.mmm>
_TIMESTAMPS = re.compile(r"_\d{1,2}\.\d{2}\.\d{2}\.\d{1,3}-\d{1,2}\.\d{2}\.\d{2}\.\d{1,3}$")
_MOVIE_NUMBER = re.compile(r"^\d+_")
# A caption needs one letter or digit, or the featurizer has no word to embed.
_HAS_WORD = re.compile(r"[^\W_]")


@dataclass(frozen=True)
class ClipRecord:
    """One clip as the annotations describe it.

    ``sources`` are the places the clip may be, in order of preference (a video file or a folder of
    frames); the first that exists is decoded.
    """

    clip_id: str
    captions: tuple[str, ...]
    movie: str
    split: str
    sources: tuple[Path, ...]


def movie_of(clip_id: str) -> str:
    """The movie folder of an MPII/LSMDC clip id: the id without its trailing timestamps."""
    stripped = _TIMESTAMPS.sub("", clip_id)
    if stripped != clip_id:
        return stripped
    # Not the published form: take everything before the last "_" (the clip's own part).
    return clip_id.rsplit("_", 1)[0] if "_" in clip_id else clip_id


def movie_sources(root: Path, clip_id: str, movie: str) -> tuple[Path, ...]:
    """Where an MPII/LSMDC clip may be: the .avi, else its folder of JPEG frames."""
    return (root / movie / f"{clip_id}.avi", root / "jpgAllFrames" / movie / clip_id)


def read_text(path: Path, key: str, latin1_fallback: bool = True) -> str:
    """A text file as str, decoded as UTF-8 (with or without BOM).

    The published MPII/LSMDC files (``latin1_fallback=True``) that are not UTF-8 are read as Latin-1, which
    decodes any 8-bit text, so an odd character in one caption cannot stop the whole dataset. A file the
    user writes for t2v (``captions.csv``: ``latin1_fallback=False``) must be UTF-8: its paths, decoded as
    the wrong encoding, would name files that do not exist. A UTF-16 or UTF-32 file is no 8-bit text, and
    Latin-1 would turn it into garbage rows, so every reader refuses it.
    """
    if not path.is_file():
        raise T2VError(f"{key}: {path} does not exist; check data.root and the file name in {key}")
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data:
        at = data.find(b"\x00")
        raise T2VError(_not_utf8(path, key, data, max(at, 0), "it looks like UTF-16 or UTF-32"))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        if not latin1_fallback:
            raise T2VError(_not_utf8(path, key, data, error.start, f"byte 0x{data[error.start]:02x}")) from None
        log.warning("%s is not UTF-8; reading it as Latin-1", path)
        return data.decode("latin-1")


def _not_utf8(path: Path, key: str, data: bytes, at: int, what: str) -> str:
    """The one-line message for a file that is not UTF-8, with the line of the first bad byte."""
    line = data.count(b"\n", 0, at) + 1
    return (
        f"{key}: {path} is not UTF-8 ({what}, line {line}); save it as UTF-8 "
        "(a spreadsheet's 'CSV UTF-8', or iconv -f <its encoding> -t UTF-8)"
    )


def check_root(root: str | Path, what: str) -> Path:
    """``data.root`` as a Path, or a one-line error that names it."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise T2VError(f"data.root={path} does not exist; set data.root to the folder of {what}")
    return path


class Collector:
    """Accumulates captions per clip (a clip id may repeat with several sentences) in file order,
    and counts the rows it had to skip."""

    def __init__(self) -> None:
        self.records: dict[str, ClipRecord] = {}
        self.skipped: Counter[str] = Counter()

    def add(self, clip_id: str, caption: str, movie: str, split: str, sources: tuple[Path, ...]) -> None:
        caption = " ".join(caption.split())  # stray tabs, newlines and double spaces
        if not _HAS_WORD.search(caption):
            self.skipped["no words in caption"] += 1
            return
        old = self.records.get(clip_id)
        if old is None:
            self.records[clip_id] = ClipRecord(clip_id, (caption,), movie, split, sources)
        elif caption not in old.captions:
            self.records[clip_id] = ClipRecord(clip_id, (*old.captions, caption), movie, old.split, old.sources)

    def result(self, name: str) -> list[ClipRecord]:
        for reason, count in sorted(self.skipped.items()):
            log.warning("%s: skipped %d rows (%s)", name, count, reason)
        return list(self.records.values())


def _rows(text: str, columns: int) -> Iterable[tuple[int, list[str]]]:
    """Non-empty lines split on tabs into at most ``columns`` fields (the last, the sentence, may hold tabs)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line.rstrip("\r\n").split("\t", columns - 1)


def read_mpii(
    root: str | Path, annotations: str = "annotations-someone.csv", splits: str = "dataSplit.txt"
) -> list[ClipRecord]:
    """MPII-MD: ``<root>/<annotations>`` (clip id TAB sentence) and ``<root>/<splits>`` (movie TAB split).

    Clips of movies that ``dataSplit.txt`` does not list are skipped (and counted in the log).
    """
    root = check_root(root, "MPII-MD (annotations-someone.csv, dataSplit.txt, <movie>/<clip>.avi)")
    split_of: dict[str, str] = {}
    for number, fields in _rows(read_text(root / splits, "data.splits"), 2):
        name = SPLIT_NAMES.get(fields[-1].strip().lower()) if len(fields) == 2 else None
        if name is None:
            raise T2VError(
                f"data.splits: line {number} of {root / splits} is {fields!r}; "
                "expected <movie><TAB>training|validation|test"
            )
        split_of[fields[0].strip()] = name
    collector = Collector()
    for _, fields in _rows(read_text(root / annotations, "data.annotations"), 2):
        if len(fields) != 2:
            collector.skipped["not <clip id><TAB><sentence>"] += 1
            continue
        clip_id = fields[0].strip()
        movie = movie_of(clip_id)
        if movie not in split_of:
            collector.skipped[f"movie not in {splits}"] += 1
            continue
        collector.add(clip_id, fields[1], movie, split_of[movie], movie_sources(root, clip_id, movie))
    return collector.result(str(root / annotations))


def read_lsmdc(root: str | Path, annotations: Mapping[str, str | None]) -> list[ClipRecord]:
    """LSMDC 2016: one headerless six-column TSV per split (``annotations``: split -> file, null skips one)."""
    root = check_root(root, "LSMDC (LSMDC16_annos_*.csv and <movie>/<clip>.avi)")
    unknown = set(annotations) - set(SPLITS)
    if unknown:
        raise T2VError(f"data.annotations has unknown splits {sorted(unknown)}; use the keys {', '.join(SPLITS)}")
    collector = Collector()
    for split, name in annotations.items():
        if not name:
            continue
        for _, fields in _rows(read_text(root / name, f"data.annotations.{split}"), 6):
            if len(fields) != 6:
                collector.skipped["not six tab-separated columns"] += 1
                continue
            clip_id = fields[0].strip()
            movie = movie_of(clip_id)
            collector.add(clip_id, fields[5], movie, split, movie_sources(root, clip_id, movie))
    return collector.result(str(root))


def hashed_split(key: str, val_fraction: float, test_fraction: float, seed: int = 0) -> str:
    """A split for a clip the user did not assign: stable for the clip, whatever else is in the folder."""
    u = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2**64
    return "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"


def folder_clip_path(root: Path, rel: str, line: int, captions: Path) -> Path:
    """The clip a ``captions.csv`` row names, as ``root / rel``, or a one-line error naming the row.

    The check is on the path as written, not on where it resolves: a symlink inside ``root`` that points
    elsewhere is the user's deliberate choice and is followed, while an absolute path or a ``..`` in the
    CSV would read (and decode into the cache) a file the folder does not hold. A ``..`` that stays inside
    ``root`` is refused too: through a symlinked folder, ``..`` goes somewhere else than it reads.
    """
    path = Path(rel)
    if not path.parts:
        raise T2VError(
            f"data.captions: line {line} of {captions} has no path; give the clip's path relative to data.root={root}"
        )
    if path.is_absolute() or ".." in path.parts:
        raise T2VError(
            f"data.captions: line {line} of {captions} has the path {rel!r}, which is absolute or uses '..'; "
            f"paths in captions.csv are relative to data.root={root}; move the clip under data.root "
            "(or link it there) and give its path from there"
        )
    return root / path


def read_folder(
    root: str | Path,
    captions: str = "captions.csv",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> list[ClipRecord]:
    """The user's own clips: ``<root>/<captions>``, UTF-8, comma-separated ``path,caption[,split]``, with
    or without that header row. ``path`` is a video file or a folder of frames, relative to ``root`` and
    inside it (:func:`folder_clip_path`). Rows without a split are assigned one by a hash of the path."""
    root = check_root(root, f"your clips and {captions}")
    csv_path = root / captions
    collector = Collector()
    reader = csv.reader(io.StringIO(read_text(csv_path, "data.captions", latin1_fallback=False)))
    line = 1  # where the next row starts: a quoted caption may span lines, so reader.line_num is its end
    for number, row in enumerate(reader):
        row_line, line = line, reader.line_num + 1
        if number == 0 and [c.strip().lower() for c in row[:2]] == ["path", "caption"]:
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) not in (2, 3):
            collector.skipped["not path,caption[,split]"] += 1
            continue
        rel = row[0].strip()
        source = folder_clip_path(root, rel, row_line, csv_path)
        given = row[2].strip().lower() if len(row) == 3 and row[2].strip() else None
        if given is not None and given not in SPLIT_NAMES:
            raise T2VError(
                f"data.captions: line {row_line} of {csv_path} gives {rel} the split {given!r}; use train, val or test"
            )
        split = SPLIT_NAMES[given] if given else hashed_split(rel, val_fraction, test_fraction, seed)
        path = Path(rel)
        clip_id = path.with_suffix("").as_posix() if path.suffix else path.as_posix()
        movie = path.parent.as_posix() if path.parent != Path(".") else ""
        collector.add(clip_id, row[1], movie, split, (source,))
    return collector.result(str(csv_path))


# -- subsets ---------------------------------------------------------------------------------------


def select_movies(records: Sequence[ClipRecord], movies: Sequence[str] | None) -> list[ClipRecord]:
    """The clips of the named movies. A name matches the movie folder (``0001_American_Beauty``) or the
    title without its number (``American_Beauty``), ignoring case; a name that matches nothing is an
    error, because a typo would silently train on less data."""
    if not movies:
        return list(records)
    wanted = {m.lower() for m in movies}

    def names(movie: str) -> set[str]:
        return {movie.lower(), _MOVIE_NUMBER.sub("", movie).lower()}

    found = {name for r in records for name in names(r.movie) & wanted}
    missing = sorted(wanted - found)
    if missing:
        known = sorted({r.movie for r in records})
        listing = ", ".join(known[:12]) + (f", ... ({len(known)} in all)" if len(known) > 12 else "")
        raise T2VError(f"data.movies: no clips of {', '.join(missing)}; the annotations have: {listing}")
    return [r for r in records if names(r.movie) & wanted]


def keyword_pattern(keywords: Sequence[str]) -> re.Pattern[str] | None:
    """Whole words or phrases, any of them, ignoring case ("kiss" matches "a kiss", not "kissing")."""
    words = [k.strip() for k in keywords if k and k.strip()]
    if not words:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE)


def select_keywords(records: Sequence[ClipRecord], keywords: Sequence[str] | None) -> list[ClipRecord]:
    """Keep the captions that contain one of ``keywords``, and the clips that keep at least one."""
    pattern = keyword_pattern(keywords or [])
    if pattern is None:
        return list(records)
    out = []
    for r in records:
        kept = tuple(c for c in r.captions if pattern.search(c))
        if kept:
            out.append(ClipRecord(r.clip_id, kept, r.movie, r.split, r.sources))
    return out


def cap_clips(records: Sequence[ClipRecord], num_clips: int | None, seed: int = 0) -> list[ClipRecord]:
    """At most ``num_clips`` clips, picked by a seeded hash of the clip id so they spread over movies and
    splits, a larger cap keeps every clip of a smaller one, and file order is kept."""
    if num_clips is None or num_clips >= len(records):
        return list(records)
    if num_clips < 1:
        raise T2VError(f"data.num_clips={num_clips} must be at least 1, or null for every clip")

    def rank(r: ClipRecord) -> bytes:
        return hashlib.sha256(f"{seed}:{r.clip_id}".encode()).digest()

    chosen = {r.clip_id for r in sorted(records, key=rank)[:num_clips]}
    return [r for r in records if r.clip_id in chosen]


def ensure_val_split(records: Sequence[ClipRecord], val_fraction: float, seed: int = 0) -> list[ClipRecord]:
    """A selection without validation clips (say ``data.movies`` names only training movies) lends
    ``val_fraction`` of its training clips, picked by a hash of the clip id, to validation: the stages
    choose their best checkpoint on it. At least one clip is lent when there are two or more."""
    if any(r.split == "val" for r in records) or not val_fraction:
        return list(records)
    train = [r for r in records if r.split == "train"]
    if len(train) < 2:
        return list(records)
    lent = {r.clip_id for r in train if hashed_split(r.clip_id, val_fraction, 0.0, seed) == "val"}
    if not lent:
        lent = {min(train, key=lambda r: hashlib.sha256(f"{seed}:{r.clip_id}".encode()).digest()).clip_id}
    log.warning("no validation clips among the selected ones: %d of the %d training clips are used for validation",
                len(lent), len(train))  # fmt: skip
    return [ClipRecord(r.clip_id, r.captions, r.movie, "val", r.sources) if r.clip_id in lent else r for r in records]
