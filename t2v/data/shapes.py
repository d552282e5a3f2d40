"""Captioned moving shapes: the embedded, procedural text-to-video dataset.

Every clip shows one coloured shape gliding in a straight line over a dark background, and
carries a caption that names all five of its attributes (shape, colour, size, direction,
speed). Nothing is downloaded: attributes, captions, splits and pixels are computed from the
settings, the seed and the clip index, so a clip can be rendered on demand in a DataLoader
worker and re-rendered bit-identically anywhere.

Randomness comes from a counter-based hash of (seed, stream, clip index) rather than a
stateful generator, so clip i never depends on how many clips exist or which others were
drawn, and whole chunks of clips can still be drawn at once with numpy.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import numpy as np
import torch
from torch.utils.data import Dataset

from t2v.errors import T2VError

ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "size", "direction", "speed")
SPLITS: tuple[str, ...] = ("train", "val", "test")

# Speeds are "fraction of the frame side moved per frame" measured on a clip of this many
# frames. Longer clips sample the same path more finely instead of travelling further, so the
# 16-frame quickstart and the 32-frame full size show the same motion and stay in frame.
REFERENCE_FRAMES = 16

# Bumped whenever rendering or captioning changes, so fingerprints (and caches keyed on them)
# stop matching data produced by older code.
RENDER_VERSION = 1

DEFAULT_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
DEFAULT_COLOURS: Mapping[str, tuple[int, int, int]] = MappingProxyType(
    {
        "red": (220, 40, 40),
        "green": (40, 190, 60),
        "blue": (50, 100, 240),
        "yellow": (235, 215, 40),
        "purple": (160, 70, 220),
        "white": (235, 235, 235),
    }
)
DEFAULT_SIZES: Mapping[str, float] = MappingProxyType({"small": 0.12, "large": 0.2})
DEFAULT_DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
DEFAULT_SPEEDS: Mapping[str, float] = MappingProxyType({"slowly": 0.02, "quickly": 0.04})

_DIAGONAL = 1.0 / math.sqrt(2.0)
# Image coordinates: x grows to the right, y grows downwards.
DIRECTION_VECTORS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "left": (-1.0, 0.0),
        "right": (1.0, 0.0),
        "up": (0.0, -1.0),
        "down": (0.0, 1.0),
        "up-left": (-_DIAGONAL, -_DIAGONAL),
        "up-right": (_DIAGONAL, -_DIAGONAL),
        "down-left": (-_DIAGONAL, _DIAGONAL),
        "down-right": (_DIAGONAL, _DIAGONAL),
    }
)

# Caption phrases per attribute value. The first phrase is the canonical one. A phrase must
# name exactly one value of one attribute, which the constructor checks for the vocabulary in
# use; values missing here (e.g. a user-defined colour) are written as their own name.
SYNONYMS: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "shape": {
            "circle": ("circle", "ball", "disc"),
            "square": ("square", "box", "block"),
            "triangle": ("triangle",),
            "star": ("star",),
            "diamond": ("diamond", "rhombus"),
            "cross": ("cross", "plus sign"),
        },
        "colour": {},
        "size": {
            "small": ("small", "little", "tiny"),
            "medium": ("medium-sized",),
            "large": ("large", "big"),
        },
        "direction": {
            "left": ("to the left", "left", "leftwards"),
            "right": ("to the right", "right", "rightwards"),
            "up": ("up", "upwards", "towards the top"),
            "down": ("down", "downwards", "towards the bottom"),
            "up-left": ("up and to the left", "up-left", "towards the top left"),
            "up-right": ("up and to the right", "up-right", "towards the top right"),
            "down-left": ("down and to the left", "down-left", "towards the bottom left"),
            "down-right": ("down and to the right", "down-right", "towards the bottom right"),
        },
        "speed": {
            "slowly": ("slowly", "at a slow pace", "gently"),
            "quickly": ("quickly", "at a fast pace", "rapidly"),
        },
    }
)

# "{a}" is the article for the size phrase, which always follows it.
_TEMPLATES: tuple[str, ...] = (
    "{a} {size} {colour} {shape} moves {direction} {speed}",
    "the {size} {colour} {shape} slides {direction} {speed}",
    "{a} {size} {colour} {shape} is moving {direction} {speed}",
    "{a} {size} {shape} in {colour} travels {direction} {speed}",
    "there is {a} {size} {colour} {shape} drifting {direction} {speed}",
    "{speed}, the {size} {colour} {shape} glides {direction}",
)

# Background channels stay below this, and every shape colour must have a channel of at least
# _MIN_SHAPE_BRIGHTNESS, so a shape pixel can never be mistaken for background.
_BACKGROUND_BASE = (10.0, 40.0)
_BACKGROUND_GRADIENT = 20.0
_MIN_SHAPE_BRIGHTNESS = 96

# Shapes reach up to 1.2 radii from their centre (star, triangle); keeping the centre this many
# radii from the border keeps nearly all of every shape in frame along its whole path.
_PATH_MARGIN = 1.1

# Pixels (clips x frames x H x W) processed at once while rendering; bounds peak memory to a
# few tens of MiB regardless of how many clips are requested.
_PIXEL_BUDGET = 1 << 22


# --------------------------------------------------------------------------- randomness


_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """Scrambles uint64 values; numpy wraps uint64 array arithmetic, which is what we want."""
    z = z + _GOLDEN
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


# Independent random streams per clip; each quantity gets its own so adding one never shifts
# the others.
_STREAM_ATTRIBUTE = 0  # + attribute position, 5 streams
_STREAM_CAPTION = 8
_STREAM_START = 9  # x, y
_STREAM_BACKGROUND = 11  # r, g, b tint, gradient angle, gradient strength
_STREAM_SPLIT = 16


def _random_bits(seed: int, stream: int, indices: np.ndarray) -> np.ndarray:
    """64 random bits per clip index, a pure function of (seed, stream, index)."""
    key = _splitmix64(np.array([seed % 2**64], dtype=_U64))
    key = _splitmix64(key + _U64(stream))
    return _splitmix64(key + np.asarray(indices, dtype=np.int64).astype(_U64))


def _uniform(seed: int, stream: int, indices: np.ndarray) -> np.ndarray:
    """float64 in [0, 1) per clip index, from the top 53 bits."""
    return (_random_bits(seed, stream, indices) >> _U64(11)).astype(np.float64) * 2.0**-53


# --------------------------------------------------------------------------- shape masks
# Each takes offsets from the shape centre in units of its radius, dx (n, T, 1, W) and
# dy (n, T, H, 1), and broadcasts them to a boolean mask (n, T, H, W). All shapes span
# roughly the unit disc so that "small" and "large" mean the same for every shape.


def _circle(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return dx * dx + dy * dy <= 1.0


def _square(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    # Half-side 0.85 gives about the circle's area, so size reads the same across shapes.
    return (np.abs(dx) <= 0.85) & (np.abs(dy) <= 0.85)


def _diamond(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return np.abs(dx) + np.abs(dy) <= 1.15


def _triangle(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    # Upward equilateral triangle (circumradius 1.2) intersected from three half-planes; it is
    # shifted so its bounding box, not its centroid, is centred, keeping it within +-1.04.
    qy = dy - 0.3
    inradius = 0.6
    half_root3 = math.sqrt(3.0) / 2.0
    return (qy <= inradius) & (-half_root3 * dx - 0.5 * qy <= inradius) & (half_root3 * dx - 0.5 * qy <= inradius)


_STAR_RADIUS = 1.2
_STAR_NORMALS = tuple(
    (math.cos(math.radians(-18.0 + 72.0 * k)), math.sin(math.radians(-18.0 + 72.0 * k))) for k in range(5)
)


def _star(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    # The five edge lines of a pentagram bound half-planes around the centre: the inner
    # pentagon lies inside all five and each point (tip) lies outside exactly one, so "inside
    # at least four" is the filled star, without any per-pixel trigonometry.
    limit = _STAR_RADIUS * math.cos(math.radians(72.0))
    inside = np.zeros(np.broadcast_shapes(dx.shape, dy.shape), dtype=np.uint8)
    for nx, ny in _STAR_NORMALS:
        inside += nx * dx + ny * dy <= limit
    return inside >= 4


def _cross(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    ax, ay = np.abs(dx), np.abs(dy)
    return ((ax <= 1.0) & (ay <= 0.35)) | ((ax <= 0.35) & (ay <= 1.0))


SHAPE_MASKS: Mapping[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = MappingProxyType(
    {
        "circle": _circle,
        "square": _square,
        "triangle": _triangle,
        "star": _star,
        "diamond": _diamond,
        "cross": _cross,
    }
)


# --------------------------------------------------------------------------- validation


def _names(value: object, what: str, supported: Sequence[str] | None = None) -> list[str]:
    """A non-empty list of distinct names, optionally restricted to the supported ones."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise T2VError(f"shapes dataset: {what} must be a list of names, got {value!r}")
    names = [str(v) for v in value]
    if not names or len(set(names)) != len(names):
        raise T2VError(f"shapes dataset: {what} must be a non-empty list of distinct names, got {names}")
    if supported is not None:
        for name in names:
            if name not in supported:
                raise T2VError(f"shapes dataset: unknown {what[:-1]} {name!r}; supported: {', '.join(supported)}")
    return names


def _numbers(value: object, what: str, low: float, high: float) -> dict[str, float]:
    """A non-empty name -> number mapping with every number in [low, high]."""
    if not isinstance(value, Mapping) or not value:
        raise T2VError(f"shapes dataset: {what} must be a non-empty mapping name -> number, got {value!r}")
    out: dict[str, float] = {}
    for name, number in value.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not low <= number <= high:
            raise T2VError(f"shapes dataset: {what}[{name!r}] = {number!r} must be a number within [{low}, {high}]")
        out[str(name)] = float(number)
    return out


def _rgb_colours(value: object) -> dict[str, tuple[int, int, int]]:
    if not isinstance(value, Mapping) or not value:
        raise T2VError(f"shapes dataset: colours must be a non-empty mapping name -> [r, g, b], got {value!r}")
    out: dict[str, tuple[int, int, int]] = {}
    for name, rgb in value.items():
        channels = list(rgb) if isinstance(rgb, Sequence) and not isinstance(rgb, str) else []
        if len(channels) != 3 or not all(
            isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c <= 255 for c in channels
        ):
            raise T2VError(f"shapes dataset: colours[{name!r}] = {rgb!r} must be three integers in 0..255")
        if max(channels) < _MIN_SHAPE_BRIGHTNESS:
            raise T2VError(
                f"shapes dataset: colours[{name!r}] = {rgb!r} is too dark to show on the dark "
                f"background; give it a channel of at least {_MIN_SHAPE_BRIGHTNESS}"
            )
        out[str(name)] = (int(channels[0]), int(channels[1]), int(channels[2]))
    return out


def _phrase(attribute: str, value: str) -> tuple[str, ...]:
    return SYNONYMS[attribute].get(value, (value.replace("_", " "),))


# --------------------------------------------------------------------------- the dataset


class CaptionedShapes:
    """The index of the whole procedural dataset: attributes, captions and splits.

    Clips are rendered on demand by :meth:`render`.

    Label ``labels[attr][i] == k`` means clip ``i`` has value ``vocab[attr][k]``. Clips that
    match any ``held_out`` combination (every key of one mapping matches) are always in the
    test split; the other clips are split train/val/test by the fractions.
    """

    def __init__(
        self,
        num_clips: int = 2000,
        frames: int = 16,
        size: int = 32,
        shapes: Sequence[str] = DEFAULT_SHAPES,
        colours: Mapping[str, Sequence[int]] = DEFAULT_COLOURS,
        sizes: Mapping[str, float] = DEFAULT_SIZES,
        directions: Sequence[str] = DEFAULT_DIRECTIONS,
        speeds: Mapping[str, float] = DEFAULT_SPEEDS,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        held_out: Sequence[Mapping[str, str]] = (),
        seed: int = 0,
    ) -> None:
        if int(num_clips) < 1:
            raise T2VError(f"shapes dataset: num_clips must be at least 1, got {num_clips}")
        if int(frames) < 2:
            raise T2VError(f"shapes dataset: frames must be at least 2 to show motion, got {frames}")
        if int(size) < 8:
            raise T2VError(f"shapes dataset: size must be at least 8 pixels, got {size}")
        if not (0.0 <= val_fraction and 0.0 <= test_fraction and val_fraction + test_fraction < 1.0):
            raise T2VError(
                f"shapes dataset: val_fraction ({val_fraction}) and "
                f"test_fraction ({test_fraction}) "
                "must be non-negative and sum to less than 1"
            )
        self.num_clips = int(num_clips)
        self.frames = int(frames)
        self.size = int(size)
        self.seed = int(seed)
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)

        self.colours = _rgb_colours(colours)
        self.sizes = _numbers(sizes, "sizes", 0.01, 0.5)
        self.speeds = _numbers(speeds, "speeds", 0.0, 1.0)
        self.vocab: dict[str, list[str]] = {
            "shape": _names(shapes, "shapes", tuple(SHAPE_MASKS)),
            "colour": list(self.colours),
            "size": list(self.sizes),
            "direction": _names(directions, "directions", tuple(DIRECTION_VECTORS)),
            "speed": list(self.speeds),
        }
        self._build_phrases()
        self.held_out = self._validate_held_out(held_out)

        everything = np.arange(self.num_clips, dtype=np.int64)
        self.labels: dict[str, np.ndarray] = {attr: self._draw_labels(attr, everything) for attr in ATTRIBUTES}
        variants = _random_bits(self.seed, _STREAM_CAPTION, everything) >> _U64(11)
        self.captions: list[str] = [self.caption_for(self.attributes_of(i), int(v)) for i, v in enumerate(variants)]
        self.clip_ids: list[str] = [f"shapes-{i:06d}" for i in range(self.num_clips)]
        self._combination = self._match_held_out()
        self._held = self._combination >= 0
        self._splits = self._assign_splits()
        if len(self._splits["train"]) == 0:
            raise T2VError(
                f"shapes dataset: no clip is left for training ({self.num_clips} clips, "
                f"held_out={self.held_out}); add clips or hold out fewer combinations"
            )

    # ---------------------------------------------------------------- construction helpers

    def _build_phrases(self) -> None:
        """Maps every caption phrase to its (attribute, value) and compiles the parser."""
        self._phrases: dict[str, tuple[str, str]] = {}
        for attr in ATTRIBUTES:
            for value in self.vocab[attr]:
                for phrase in _phrase(attr, value):
                    owner = self._phrases.setdefault(phrase.lower(), (attr, value))
                    if owner != (attr, value):
                        raise T2VError(
                            f"shapes dataset: the phrase {phrase!r} would name both {owner[0]} "
                            f"{owner[1]!r} and {attr} {value!r}; rename one of them"
                        )
        # Longest phrases first so "up and to the left" wins over "up" and "to the left";
        # hyphens count as word characters so "up" never matches inside "up-left".
        alternatives = sorted(self._phrases, key=len, reverse=True)
        self._parser = re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(p) for p in alternatives) + r")(?![\w-])")

    def _validate_held_out(self, held_out: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
        if isinstance(held_out, (str, Mapping)) or not isinstance(held_out, Sequence):
            raise T2VError(
                f"shapes dataset: held_out must be a list of {{attribute: value}} mappings, got {held_out!r}"
            )
        checked: list[dict[str, str]] = []
        for n, combo in enumerate(held_out):
            if not isinstance(combo, Mapping) or not combo:
                raise T2VError(
                    f"shapes dataset: held_out[{n}] = {combo!r} must be a non-empty mapping "
                    f"attribute -> value, e.g. {{shape: circle, colour: red}}"
                )
            entry: dict[str, str] = {}
            for attr, value in combo.items():
                if attr not in ATTRIBUTES:
                    raise T2VError(
                        f"shapes dataset: held_out[{n}] has unknown attribute {attr!r}; "
                        f"valid attributes: {', '.join(ATTRIBUTES)}"
                    )
                if str(value) not in self.vocab[attr]:
                    raise T2VError(
                        f"shapes dataset: held_out[{n}] has unknown {attr} {value!r}; "
                        f"valid {attr} values: {', '.join(self.vocab[attr])}"
                    )
                entry[str(attr)] = str(value)
            checked.append(entry)
        return checked

    def _draw_labels(self, attr: str, indices: np.ndarray) -> np.ndarray:
        count = len(self.vocab[attr])
        u = _uniform(self.seed, _STREAM_ATTRIBUTE + ATTRIBUTES.index(attr), indices)
        return np.minimum((u * count).astype(np.int64), count - 1)

    def _match_held_out(self) -> np.ndarray:
        """int64 (num_clips,): the index in ``held_out`` of the first combination each clip matches, or -1."""
        combination = np.full(self.num_clips, -1, dtype=np.int64)
        for k, combo in reversed(list(enumerate(self.held_out))):
            match = np.ones(self.num_clips, dtype=bool)
            for attr, value in combo.items():
                match &= self.labels[attr] == self.vocab[attr].index(value)
            combination[match] = k
        return combination

    def _assign_splits(self) -> dict[str, np.ndarray]:
        # Ranking the free clips by a per-clip random key gives exact split sizes while a
        # clip's rank, and hence its split, barely moves when num_clips changes.
        free = np.flatnonzero(~self._held)
        order = free[np.argsort(_uniform(self.seed, _STREAM_SPLIT, free), kind="stable")]
        n_test = round(self.test_fraction * len(free))
        n_val = round(self.val_fraction * len(free))
        return {
            "test": np.sort(np.concatenate([order[:n_test], np.flatnonzero(self._held)])),
            "val": np.sort(order[n_test : n_test + n_val]),
            "train": np.sort(order[n_test + n_val :]),
        }

    # ---------------------------------------------------------------- index queries

    def __len__(self) -> int:
        return self.num_clips

    def split_indices(self, split: str) -> np.ndarray:
        """Sorted global clip indices (int64) of ``"train"``, ``"val"`` or ``"test"``."""
        if split not in self._splits:
            raise T2VError(f"shapes dataset: unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        return self._splits[split].copy()

    def is_held_out(self) -> np.ndarray:
        """Boolean (num_clips,): whether each clip matches a held-out combination."""
        return self._held.copy()

    def held_out_combination(self) -> np.ndarray:
        """int64 (num_clips,): which ``held_out`` combination each clip matches (the first one), -1 for none."""
        return self._combination.copy()

    def attributes_of(self, index: int) -> dict[str, str]:
        """The attribute values of clip ``index``, by name."""
        return {attr: self.vocab[attr][int(self.labels[attr][index])] for attr in ATTRIBUTES}

    # ---------------------------------------------------------------- captions

    def caption_for(self, attributes: Mapping[str, str], variant: int = 0) -> str:
        """A caption naming every attribute; ``variant`` picks template and synonyms (any int)."""
        for attr in ATTRIBUTES:
            if attributes.get(attr) not in self.vocab[attr]:
                raise T2VError(
                    f"shapes dataset: caption needs a valid {attr}, got {attributes.get(attr)!r}; "
                    f"valid {attr} values: {', '.join(self.vocab[attr])}"
                )
        extra = set(attributes) - set(ATTRIBUTES)
        if extra:
            raise T2VError(
                f"shapes dataset: unknown attribute(s) {sorted(extra)}; valid attributes: {', '.join(ATTRIBUTES)}"
            )
        # Mixed-radix decoding: every (template, synonym...) choice is reachable, and any
        # integer is a valid variant.
        rest = abs(int(variant))
        template = _TEMPLATES[rest % len(_TEMPLATES)]
        rest //= len(_TEMPLATES)
        words: dict[str, str] = {}
        for attr in ATTRIBUTES:
            options = _phrase(attr, attributes[attr])
            words[attr] = options[rest % len(options)]
            rest //= len(options)
        article = "an" if words["size"][:1] in "aeiou" else "a"
        return template.format(a=article, **words)

    def parse_caption(self, caption: str) -> dict[str, str]:
        """The attribute values a caption names (only those it mentions), by attribute."""
        found: dict[str, str] = {}
        for match in self._parser.finditer(caption.lower()):
            attr, value = self._phrases[match.group(0)]
            if found.setdefault(attr, value) != value:
                raise T2VError(
                    f"shapes dataset: caption {caption!r} names two {attr} values, {found[attr]!r} and {value!r}"
                )
        return {attr: found[attr] for attr in ATTRIBUTES if attr in found}

    # ---------------------------------------------------------------- rendering

    def render(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """uint8 RGB clips (n, T, H, W, 3) for the given global clip indices."""
        idx = self._checked_indices(indices)
        out = np.empty((len(idx), self.frames, self.size, self.size, 3), dtype=np.uint8)
        chunk = max(1, _PIXEL_BUDGET // (self.frames * self.size * self.size))
        for start in range(0, len(idx), chunk):
            part = idx[start : start + chunk]
            self._render_chunk(part, out[start : start + len(part)])
        return out

    def render_background(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """uint8 RGB backgrounds (n, H, W, 3): each clip's frames without its shape."""
        return self._backgrounds(self._checked_indices(indices))

    def _checked_indices(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_clips):
            raise IndexError(f"clip indices must lie in [0, {self.num_clips}), got {idx.min()}..{idx.max()}")
        return idx

    def _backgrounds(self, idx: np.ndarray) -> np.ndarray:
        low, high = _BACKGROUND_BASE
        tint = np.stack(
            [low + (high - low) * _uniform(self.seed, _STREAM_BACKGROUND + c, idx) for c in range(3)],
            axis=-1,
        )
        angle = 2.0 * math.pi * _uniform(self.seed, _STREAM_BACKGROUND + 3, idx)
        strength = _BACKGROUND_GRADIENT * _uniform(self.seed, _STREAM_BACKGROUND + 4, idx)
        ramp = (np.arange(self.size) + 0.5) / self.size - 0.5
        gradient = (
            np.cos(angle)[:, None, None] * ramp[None, None, :] + np.sin(angle)[:, None, None] * ramp[None, :, None]
        ) * strength[:, None, None]
        background = tint[:, None, None, :] + gradient[..., None]
        return np.clip(np.rint(background), 0, 255).astype(np.uint8)

    def _centres(self, idx: np.ndarray, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shape centre per clip and frame in pixels, (n, T) each for x and y."""
        vectors = np.array([DIRECTION_VECTORS[d] for d in self.vocab["direction"]])
        speeds = np.array([self.speeds[s] for s in self.vocab["speed"]])
        velocity = vectors[self.labels["direction"][idx]]  # (n, 2) unit vectors
        travel = speeds[self.labels["speed"][idx]] * (REFERENCE_FRAMES - 1)  # frame sides
        displacement = velocity * travel[:, None]
        # Start so the whole path keeps the shape inside the frame; when the path is too
        # long for that, centre it so the shape leaves the frame equally at both ends.
        r = _PATH_MARGIN * radius[:, None]
        lowest = r - np.minimum(displacement, 0.0)
        highest = 1.0 - r - np.maximum(displacement, 0.0)
        u = np.stack([_uniform(self.seed, _STREAM_START + k, idx) for k in range(2)], axis=-1)
        start = np.where(highest >= lowest, lowest + u * (highest - lowest), (lowest + highest) / 2)
        progress = np.linspace(0.0, 1.0, self.frames)
        path = (start[:, None, :] + progress[None, :, None] * displacement[:, None, :]) * self.size
        return path[..., 0].astype(np.float32), path[..., 1].astype(np.float32)

    def _render_chunk(self, idx: np.ndarray, out: np.ndarray) -> None:
        """Renders clips ``idx`` into ``out`` (n, T, H, W, 3) uint8."""
        radius = np.array([self.sizes[s] for s in self.vocab["size"]])[self.labels["size"][idx]]
        cx, cy = self._centres(idx, radius)
        pixels = np.arange(self.size, dtype=np.float32) + 0.5
        scale = (1.0 / (radius * self.size)).astype(np.float32)[:, None, None, None]
        dx = (pixels[None, None, None, :] - cx[..., None, None]) * scale  # (n, T, 1, W)
        dy = (pixels[None, None, :, None] - cy[..., None, None]) * scale  # (n, T, H, 1)

        mask = np.empty((len(idx), self.frames, self.size, self.size), dtype=bool)
        shape_labels = self.labels["shape"][idx]
        for k, name in enumerate(self.vocab["shape"]):
            chosen = shape_labels == k
            if chosen.any():
                mask[chosen] = SHAPE_MASKS[name](dx[chosen], dy[chosen])

        palette = np.array([self.colours[c] for c in self.vocab["colour"]], dtype=np.uint8)
        colour = palette[self.labels["colour"][idx]]
        out[...] = self._backgrounds(idx)[:, None]
        # Shapes cover a small part of each frame, so scattering their colour into the few
        # covered pixels is several times faster than a full-frame np.where, whose inner loop
        # runs over the 3-wide interleaved RGB axis.
        covered = np.flatnonzero(mask)
        pixels_rgb = np.reshape(out, (-1, 3), copy=False)  # a view; out is C-contiguous
        pixels_rgb[covered] = colour[covered // mask[0].size]

    # ---------------------------------------------------------------- identity

    def settings(self) -> dict[str, object]:
        """Every setting that determines the data, as plain JSON-able values."""
        return {
            "render_version": RENDER_VERSION,
            "num_clips": self.num_clips,
            "frames": self.frames,
            "size": self.size,
            "shapes": self.vocab["shape"],
            "colours": {k: list(v) for k, v in self.colours.items()},
            "sizes": self.sizes,
            "directions": self.vocab["direction"],
            "speeds": self.speeds,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "held_out": self.held_out,
            "seed": self.seed,
        }

    def fingerprint(self) -> str:
        """Short stable hash of all settings (for caches and manifests)."""
        blob = json.dumps(self.settings(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class ShapesClips(Dataset):
    """A split (or any subset) of :class:`CaptionedShapes` as a torch Dataset, rendered per item."""

    def __init__(self, shapes: CaptionedShapes, indices: np.ndarray, with_video: bool = True) -> None:
        self.shapes = shapes
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= shapes.num_clips):
            raise IndexError(f"clip indices must lie in [0, {shapes.num_clips})")
        self.with_video = with_video

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.__getitems__([i])[0]

    def __getitems__(self, positions: Sequence[int]) -> list[dict]:
        """Items at ``positions``, their clips rendered in one vectorised call: the DataLoader fetches a
        whole batch through this, which costs a third of rendering the clips one by one."""
        indices = self.indices[np.asarray(positions, dtype=np.int64)]
        clips = None
        if self.with_video:  # (n, T, H, W, C) uint8 -> (n, C, T, H, W) in [-1, 1]
            clips = torch.from_numpy(self.shapes.render(indices)).permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0)
        items = []
        for k, index in enumerate(indices.tolist()):
            item: dict = {
                "caption": self.shapes.captions[index],
                "labels": {
                    attr: torch.tensor(int(self.shapes.labels[attr][index]), dtype=torch.int64) for attr in ATTRIBUTES
                },
                "clip_id": self.shapes.clip_ids[index],
                "index": torch.tensor(index, dtype=torch.int64),
            }
            if clips is not None:
                item["video"] = clips[k]
            items.append(item)
        return items
