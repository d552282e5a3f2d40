"""Decode one clip with PyAV into T frames of H x W, and judge its quality.

A clip is a video file (any container FFmpeg reads: .avi, .mp4, ...) or a folder of frame images
(MPII's ``jpgAllFrames/<movie>/<clip>/0001.jpg ...``). From its frames we take ``frames`` frames
``stride`` apart from a window at the start, the centre or a random place (random per clip but fixed
by the seed: this is preprocessing, not augmentation), scale them so they cover ``size`` x ``size``
and cut out the centre. A clip shorter than the window repeats its last frame.

:func:`process_clip` never raises: a missing, empty, truncated or undecodable file, and a clip that
fails a quality filter, come back as an :class:`Outcome` with a reason, so one bad clip out of
tens of thousands cannot stop a preprocessing run. Nothing here imports torch, so worker processes
start fast.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np

from t2v.data.annotations import ClipRecord
from t2v.errors import T2VError

WINDOWS = ("start", "center", "random")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

# Why a clip is not in the cache. Failures are problems with the file (retried on the next run, in
# case it was fixed); drops are the quality filters' verdicts on a good file (remembered).
MISSING, EMPTY, TRUNCATED, UNDECODABLE = "missing", "empty file", "truncated", "undecodable"
LOW_RESOLUTION, TOO_SHORT, SHOT_CUT, LOW_MOTION = "low resolution", "too short", "shot cut", "low motion"
FAILURES = (MISSING, EMPTY, TRUNCATED, UNDECODABLE)
FILTER_DROPS = (LOW_RESOLUTION, TOO_SHORT, SHOT_CUT, LOW_MOTION)


@dataclass(frozen=True)
class ClipSpec:
    """Which frames of a clip are kept, and at what size."""

    frames: int = 32
    size: int = 64
    stride: int = 1
    window: str = "center"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("frames", "size", "stride"):
            if int(getattr(self, name)) < 1:
                raise T2VError(f"data.{name}={getattr(self, name)} must be at least 1")
        if self.window not in WINDOWS:
            raise T2VError(f"data.window={self.window!r} is unknown; use one of {', '.join(WINDOWS)}")

    @property
    def span(self) -> int:
        """Source frames the window covers."""
        return (self.frames - 1) * self.stride + 1


@dataclass(frozen=True)
class QualityFilters:
    """Thresholds that drop clips; 0 or null switches one off.

    min_side: the source's shorter side, in pixels.
    cut_threshold: a shot cut is a pair of consecutive kept frames whose colour histograms differ by
        more than this (half the L1 distance of 16-bin histograms per channel: 0 same, 1 disjoint).
        Moving objects barely change a frame's histogram; a cut to another shot replaces it.
    min_motion: the mean absolute difference between consecutive kept frames, as a fraction of 255.
    min_frames: source frames; shorter clips would repeat their last frame to fill the window.
    """

    min_side: int = 0
    cut_threshold: float | None = 0.5
    min_motion: float = 0.0
    min_frames: int = 0


@dataclass
class Outcome:
    """What became of one clip: ``status`` kept (with ``frames`` uint8 T x H x W x 3), dropped by a
    filter, or failed; ``meta`` holds what was learnt about the source."""

    clip_id: str
    status: Literal["kept", "dropped", "failed"]
    reason: str | None = None
    detail: str = ""
    frames: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class ClipError(Exception):
    """A clip that cannot be read; ``reason`` is one of FAILURES."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


# -- decoding --------------------------------------------------------------------------------------


def cover_size(width: int, height: int, size: int) -> tuple[int, int]:
    """The smallest (width, height) with the source's aspect ratio that covers size x size."""
    scale = size / min(width, height)
    return max(size, round(width * scale)), max(size, round(height * scale))


def _small_rgb(frame: av.VideoFrame, size: int) -> np.ndarray:
    # swscale's area filter averages every source pixel: no aliasing when shrinking a DVD frame 8x.
    width, height = cover_size(frame.width, frame.height, size)
    return frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()


def expected_frames(stream: av.video.stream.VideoStream) -> int:
    """The frame count the container promises (0 if it does not say), to tell a truncated file."""
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base and stream.average_rate:
        return int(round(float(stream.duration * stream.time_base * stream.average_rate)))
    return 0


@dataclass
class Decoded:
    """Every frame of a clip, scaled to cover the crop, and the source's properties."""

    frames: list[np.ndarray]
    fps: float | None
    width: int
    height: int


def riff_shortfall(path: Path) -> tuple[int, int] | None:
    """(bytes present, bytes declared) when a RIFF file (.avi) is shorter than its header says."""
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF":
        return None
    declared = int.from_bytes(head[4:8], "little") + 8
    size = path.stat().st_size
    return (size, declared) if size < declared else None


def decode_video(path: Path, size: int, min_side: int = 0) -> Decoded | tuple[int, int]:
    """All frames of a video file, scaled. Returns the source (width, height) alone when its shorter
    side is below ``min_side``, after decoding only the first frame."""
    if path.stat().st_size == 0:
        raise ClipError(EMPTY, f"{path} is empty (0 bytes)")
    # An AVI cut short (an interrupted download or copy) is recognised by its header before FFmpeg
    # tries it: FFmpeg fails on some and silently decodes part of others.
    shortfall = riff_shortfall(path)
    if shortfall is not None:
        raise ClipError(TRUNCATED, f"{path} has {shortfall[0]} of the {shortfall[1]} bytes its RIFF header declares")
    frames: list[np.ndarray] = []
    width = height = 0
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.video:
                raise ClipError(UNDECODABLE, f"{path} has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame threads: decoding is most of the cost
            fps = float(stream.average_rate) if stream.average_rate else None
            expected = expected_frames(stream)
            for frame in container.decode(stream):
                if not frames:  # the first frame tells the true size; a small source is not decoded further
                    width, height = frame.width, frame.height
                    if min_side and min(width, height) < min_side:
                        return width, height
                frames.append(_small_rgb(frame, size))
    except av.FFmpegError as error:
        # A file cut short often decodes its first frames, then fails.
        raise ClipError(TRUNCATED if frames else UNDECODABLE, f"{path}: {error}") from None
    if not frames:
        raise ClipError(UNDECODABLE, f"{path} has no decodable frames")
    # A cut-off AVI decodes what is left without an error: compare with the header's frame count
    # (with slack, since some encoders count a frame or two more than they store).
    if expected and len(frames) < expected - max(2, expected // 20):
        raise ClipError(TRUNCATED, f"{path} decodes {len(frames)} of the {expected} frames its header lists")
    return Decoded(frames, fps, width, height)


def decode_images(folder: Path, size: int, min_side: int = 0) -> Decoded | tuple[int, int]:
    """A folder of frame images (sorted by name), scaled; like :func:`decode_video`."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ClipError(EMPTY, f"{folder} holds no {'/'.join(IMAGE_SUFFIXES)} frames")
    frames: list[np.ndarray] = []
    width = height = 0
    for file in files:
        try:
            with av.open(str(file), metadata_errors="ignore") as container:
                frame = next(container.decode(video=0))
        except (av.FFmpegError, StopIteration) as error:
            raise ClipError(UNDECODABLE, f"{file}: {error or 'no image'}") from None
        if not frames:
            width, height = frame.width, frame.height
            if min_side and min(width, height) < min_side:
                return width, height
        frames.append(_small_rgb(frame, size))
    return Decoded(frames, None, width, height)


def window_indices(n: int, spec: ClipSpec, clip_id: str) -> np.ndarray:
    """Which of a clip's ``n`` frames are kept (the last one repeated when the clip is short)."""
    room = max(0, n - spec.span)
    if spec.window == "start":
        start = 0
    elif spec.window == "center":
        start = room // 2
    else:  # random, but the same for a clip every time: a hash of the seed and the clip id
        start = int.from_bytes(hashlib.sha256(f"{spec.seed}:{clip_id}".encode()).digest()[:8], "big") % (room + 1)
    return np.minimum(start + np.arange(spec.frames) * spec.stride, n - 1)


def center_crop(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return frame[top : top + size, left : left + size]


# -- quality ---------------------------------------------------------------------------------------


def cut_score(frames: np.ndarray, bins: int = 16) -> float:
    """The largest colour-histogram change between consecutive frames (0 same, 1 disjoint)."""
    t = frames.shape[0]
    if t < 2:
        return 0.0
    shift = 8 - int(np.log2(bins))
    # One bincount for all frames and channels: bin + bins * (channel + 3 * frame).
    offsets = (np.arange(3) * bins)[None, None, None, :] + (np.arange(t) * 3 * bins)[:, None, None, None]
    counts = np.bincount(((frames >> shift) + offsets).ravel(), minlength=t * 3 * bins).reshape(t, 3, bins)
    hist = counts / counts.sum(-1, keepdims=True)
    return float((0.5 * np.abs(np.diff(hist, axis=0)).sum(-1)).mean(-1).max())


def motion_energy(frames: np.ndarray) -> float:
    """Mean absolute difference between consecutive frames, as a fraction of 255."""
    if frames.shape[0] < 2:
        return 0.0
    return float(np.abs(np.diff(frames.astype(np.int16), axis=0)).mean() / 255.0)


def judge(frames: np.ndarray, n_source: int, filters: QualityFilters) -> tuple[str | None, dict[str, float]]:
    """The first quality filter the clip fails (or None), and its measurements."""
    scores = {"cut": round(cut_score(frames), 4), "motion": round(motion_energy(frames), 5)}
    if filters.min_frames and n_source < filters.min_frames:
        return TOO_SHORT, scores
    if filters.cut_threshold is not None and scores["cut"] > filters.cut_threshold:
        return SHOT_CUT, scores
    if filters.min_motion and scores["motion"] < filters.min_motion:
        return LOW_MOTION, scores
    return None, scores


# -- one clip, start to end ------------------------------------------------------------------------


def process_clip(record: ClipRecord, spec: ClipSpec, filters: QualityFilters) -> Outcome:
    """Decode, sample, crop and judge one clip. Never raises for a bad clip (see the module doc)."""
    source = next((p for p in record.sources if p.exists()), None)
    if source is None:
        return Outcome(record.clip_id, "failed", MISSING, f"not found at {record.sources[0]}")
    try:
        decode = decode_images if source.is_dir() else decode_video
        decoded = decode(source, spec.size, filters.min_side)
    except ClipError as error:
        return Outcome(record.clip_id, "failed", error.reason, str(error))
    except Exception as error:  # anything else a broken file can provoke in the decoder
        return Outcome(record.clip_id, "failed", UNDECODABLE, f"{source}: {type(error).__name__}: {error}")
    if isinstance(decoded, tuple):
        width, height = decoded
        return Outcome(record.clip_id, "dropped", LOW_RESOLUTION, f"{width}x{height}",
                       meta={"width": width, "height": height})  # fmt: skip
    picks = window_indices(len(decoded.frames), spec, record.clip_id)
    frames = np.stack([center_crop(decoded.frames[i], spec.size) for i in picks])
    meta = {
        "fps": round(decoded.fps, 3) if decoded.fps else None,
        "n_frames": len(decoded.frames),
        "width": decoded.width,
        "height": decoded.height,
    }
    reason, scores = judge(frames, len(decoded.frames), filters)
    meta.update(scores)
    if reason is not None:
        return Outcome(record.clip_id, "dropped", reason, ", ".join(f"{k}={v}" for k, v in scores.items()), meta=meta)
    return Outcome(record.clip_id, "kept", frames=np.ascontiguousarray(frames), meta=meta)


def settings(spec: ClipSpec, filters: QualityFilters) -> dict[str, Any]:
    """What decides the cached pixels (part of the cache key)."""
    out = {**asdict(spec), "filters": asdict(filters)}
    if spec.window != "random":
        out.pop("seed")  # only the random window uses it
    return out
