"""Tiny MPII-MD, LSMDC and folder datasets in the published layouts, written by the tests (the real
data is licence-gated). Videos are real .avi files written with imageio: a coloured square gliding
over a gradient, at several sizes and frame rates, plus the bad cases preprocessing must survive.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image

ALPHA, BETA = "0001_Alpha_Movie", "1015_Beta_Movie"


def clip_id(movie: str, start: str, end: str) -> str:
    return f"{movie}_{start}-{end}"


def moving_square(frames: int, height: int, width: int, seed: int, background: tuple[int, int, int] | None = None,
                  static: bool = False) -> np.ndarray:  # fmt: skip
    """uint8 (T, H, W, 3): a square moving 2 px per frame over a vertical gradient."""
    rng = np.random.default_rng(seed)
    bg = np.array(background if background is not None else rng.integers(20, 120, 3), dtype=np.float32)
    ramp = np.linspace(0.7, 1.0, height, dtype=np.float32)[:, None, None]
    base = np.broadcast_to(ramp * bg, (height, width, 3))
    colour = rng.integers(150, 255, 3)
    side = max(4, min(height, width) // 5)
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        x = 2 + (0 if static else 2 * t) % max(1, width - side - 4)
        y = (height - side) // 2
        frame = base.copy()
        frame[y : y + side, x : x + side] = colour
        out[t] = frame.astype(np.uint8)
    return out


def hard_cut(frames: int, height: int, width: int) -> np.ndarray:
    """A dark blue shot that cuts half-way to a bright orange one."""
    first = moving_square(frames // 2, height, width, seed=1, background=(10, 20, 90))
    second = moving_square(frames - frames // 2, height, width, seed=2, background=(250, 170, 40))
    return np.concatenate([first, second])


def write_avi(path: Path, frames: np.ndarray, fps: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, frames, fps=fps, plugin="pyav", codec="mpeg4")
    return path


def write_jpgs(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(folder / f"{i:04d}.jpg", quality=95)


@dataclass
class MovieTree:
    """A written dataset and what preprocessing must make of it."""

    root: Path
    kept: dict[str, str]  # clip id -> split, with the default filters
    dropped: dict[str, str]  # clip id -> reason
    failed: dict[str, str]  # clip id -> reason
    captions: dict[str, list[str]]


# (clip id, frames, height, width, fps, kind, caption)
A1 = clip_id(ALPHA, "00.00.51.926", "00.00.54.129")
A2 = clip_id(ALPHA, "00.01.02.000", "00.01.04.500")
A3 = clip_id(ALPHA, "00.01.10.100", "00.01.12.200")
A4 = clip_id(ALPHA, "00.02.00.000", "00.02.02.000")  # low resolution
A5 = clip_id(ALPHA, "00.02.10.000", "00.02.12.000")  # static
A6 = clip_id(ALPHA, "00.03.00.000", "00.03.02.000")  # hard cut
A7 = clip_id(ALPHA, "00.04.00.000", "00.04.02.000")  # truncated
A8 = clip_id(ALPHA, "00.05.00.000", "00.05.02.000")  # zero bytes
B1 = clip_id(BETA, "00.10.00.000", "00.10.02.000")
B2 = clip_id(BETA, "00.10.05.000", "00.10.06.000")  # short
B3 = clip_id(BETA, "00.11.00.000", "00.11.02.000")  # JPEG frames
B4 = clip_id(BETA, "00.12.00.000", "00.12.02.000")  # listed, missing

CAPTIONS = {
    A1: ["SOMEONE walks into the kitchen.", "SOMEONE kisses SOMEONE on the cheek."],
    A2: ["SOMEONE sips a café au lait, naïvely smiling."],
    A3: ["The car drives down a long road."],
    A4: ["SOMEONE opens the door slowly."],
    A5: ["A quiet room with a lamp."],
    A6: ["SOMEONE turns; later, a busy street."],
    A7: ["SOMEONE runs up the stairs."],
    A8: ["SOMEONE sleeps."],
    B1: ["SOMEONE gives SOMEONE a kiss."],
    B2: ["Snow falls on the roof."],
    B3: ["SOMEONE reads a letter — «merci»."],
    B4: ["SOMEONE waves goodbye."],
}


def make_mpii(root: Path) -> MovieTree:
    """Two movies (training and validation), 8 good clips, a hard cut, and three broken ones."""
    write_avi(root / ALPHA / f"{A1}.avi", moving_square(24, 48, 64, seed=11), fps=25)
    write_avi(root / ALPHA / f"{A2}.avi", moving_square(20, 60, 80, seed=12), fps=24)
    write_avi(root / ALPHA / f"{A3}.avi", moving_square(16, 54, 96, seed=13), fps=30)
    write_avi(root / ALPHA / f"{A4}.avi", moving_square(24, 32, 40, seed=14), fps=25)
    write_avi(root / ALPHA / f"{A5}.avi", moving_square(16, 48, 64, seed=15, static=True), fps=25)
    write_avi(root / ALPHA / f"{A6}.avi", hard_cut(24, 48, 64), fps=25)
    truncated = write_avi(root / ALPHA / f"{A7}.avi", moving_square(30, 48, 64, seed=17), fps=25)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    (root / ALPHA / f"{A8}.avi").write_bytes(b"")
    write_avi(root / BETA / f"{B1}.avi", moving_square(20, 64, 64, seed=21), fps=25)
    write_avi(root / BETA / f"{B2}.avi", moving_square(12, 48, 72, seed=22), fps=15)
    write_jpgs(root / "jpgAllFrames" / BETA / B3, moving_square(16, 48, 48, seed=23))

    lines = [f"{cid}\t{caption}" for cid, captions in CAPTIONS.items() for caption in captions]
    (root / "annotations-someone.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "dataSplit.txt").write_text(f"{ALPHA}\ttraining\n{BETA}\tvalidation\n0002_Unused_Movie\ttest\n")
    kept = {A1: "train", A2: "train", A3: "train", A4: "train", A5: "train", B1: "val", B2: "val", B3: "val"}
    return MovieTree(root, kept, {A6: "shot cut"}, {A7: "truncated", A8: "empty file", B4: "missing"}, CAPTIONS)


def make_lsmdc(root: Path) -> None:
    """LSMDC16 annotation files next to an MPII tree's videos (the same layout): six columns, no header."""

    def row(cid: str, caption: str) -> str:
        start, end = cid.rsplit("_", 1)[1].split("-")
        return "\t".join([cid, start, end, start, end, caption])

    training = [row(A1, "SOMEONE walks in."), row(A1, "SOMEONE smiles."), row(A2, "SOMEONE drinks a café."),
                f"{A3}\tonly two columns", row(A6, "A cut."), row(A8, "Nothing here.")]  # fmt: skip
    (root / "LSMDC16_annos_training.csv").write_text("\n".join(training) + "\n", encoding="utf-8")
    (root / "LSMDC16_annos_val.csv").write_text(row(B1, "SOMEONE waves.") + "\n", encoding="utf-8")
    (root / "LSMDC16_annos_test.csv").write_text(row(B2, "Snow falls.") + "\n", encoding="utf-8")


def make_folder(root: Path) -> MovieTree:
    """A user's folder: clips in sub-folders, a frames folder, captions.csv with a header and optional splits."""
    write_avi(root / "beach" / "waves.avi", moving_square(20, 48, 64, seed=31), fps=25)
    write_avi(root / "beach" / "gulls.avi", moving_square(16, 64, 48, seed=32), fps=24)
    write_avi(root / "city" / "traffic.avi", moving_square(18, 40, 72, seed=33), fps=30)
    write_jpgs(root / "city" / "rain", moving_square(12, 40, 40, seed=34))
    rows = [
        "path,caption,split",
        "beach/waves.avi,Waves roll onto the beach,train",
        'beach/gulls.avi,"Gulls fly over the sea, crying",train',
        "city/traffic.avi,Cars pass at night — très vite,val",
        "city/rain,Rain on a window,",
        "city/gone.avi,A clip that is not there,test",
    ]
    (root / "captions.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    kept = {"beach/waves": "train", "beach/gulls": "train", "city/traffic": "val", "city/rain": None}
    return MovieTree(root, kept, {}, {"city/gone": "missing"}, {})


def make_guarded_folder(base: Path, rows: list[str], encoding: str = "utf-8") -> Path:
    """``base/clips`` holding one clip, a clip beside that folder (``base/outside.avi``) that its captions.csv
    must not reach, and captions.csv: a header, the inside clip's row (line 2), then ``rows`` from line 3."""
    root = base / "clips"
    write_avi(root / "inside.avi", moving_square(12, 32, 32, seed=41), fps=25)
    write_avi(base / "outside.avi", moving_square(12, 32, 32, seed=42), fps=25)
    lines = ["path,caption,split", "inside.avi,A clip in the folder,train", *rows]
    (root / "captions.csv").write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return root
