"""Text -> image -> clip with trained artifacts, and writing the results as GIF, MP4 and PNG.

Used by `python generate.py` (:func:`generate_to`: batch by batch, each file written as it is made) and at the end
of `python train.py stage=pipeline` (:class:`TextToVideo` called on a few captions, then :func:`write_samples`).

Every sample has its own noise: sample ``k`` of caption ``i`` draws its stage-I ``z`` and then its video ``z`` from a
``torch.Generator`` seeded with :func:`sample_seed` ``(seed, i, k)``. So a clip depends on its caption, its place and
the seed, never on which batch it was made in or how large that batch was: any ``batch_size`` gives the same clips
(both generators run in eval mode, so no sample sees the rest of its batch; the arithmetic of a larger batch may
differ in the last float bit, which is below the 8-bit pixel step but for a rare rounding).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import imageio.v3 as iio
import numpy as np
import torch
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor

from t2v.errors import T2VError
from t2v.files import write_bytes_atomic, write_json_atomic
from t2v.pipeline import artifacts
from t2v.text.featurizer import FastTextFeaturizer, printable

GENERATOR_STAGES = ("stage1", "videogan")
# The index of a generate.py run's output folder: one entry per sample whose files are all written.
SAMPLES_INDEX = "samples.json"
# (caption index, sample index): which clip a row of a batch is.
Row = tuple[int, int]


def to_uint8(x: Tensor) -> np.ndarray:
    """[-1, 1] float, channels first (..., C, H, W) -> uint8 channels last (..., H, W, C)."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


def slug(text: str, limit: int = 48) -> str:
    """A file-name-safe short form of a caption."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "caption"


def sample_seed(seed: int, caption: int, sample: int) -> int:
    """The seed of sample ``sample`` of caption ``caption`` in a run seeded with ``seed`` (taken modulo 2**64).

    NumPy's SeedSequence mixes the three numbers, so neighbouring samples, captions and seeds get unrelated noise
    (``seed + caption`` would make caption 1 of seed 0 repeat caption 0 of seed 1)."""
    entropy = [seed % 2**64, caption, sample]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])


@dataclass
class TextToVideo:
    """The generation chain: featurizer -> (VAE -> siamese) text encoder -> stage-I -> video GAN."""

    featurizer: FastTextFeaturizer
    stage1: torch.nn.Module
    videogan: torch.nn.Module

    @classmethod
    def from_artifacts(cls, artifacts_dir: str | Path, where: dict[str, str] | None = None) -> TextToVideo:
        """Load the stage1 and videogan artifacts ("latest" or folders) and check they fit together."""
        from t2v.models.stage1 import Stage1GAN
        from t2v.models.videogan import VideoGAN

        where = {**{name: "latest" for name in GENERATOR_STAGES}, **(where or {})}
        manifests = {}
        for name in GENERATOR_STAGES:
            folder = artifacts.find(artifacts_dir, name, where[name])
            if folder is None:
                place = Path(artifacts_dir) / name if where[name] == "latest" else where[name]
                raise T2VError(
                    f"generate needs a trained {name} artifact and there is none at {place}; make the whole "
                    "chain with: python train.py stage=pipeline (or pass paths.artifacts_dir=<folder>)"
                )
            manifest = artifacts.read_manifest(folder, require=("dims",))
            if manifest["stage"] != name:
                raise T2VError(
                    f"artifacts.{name}={where[name]} is a {printable(str(manifest['stage']))} artifact, not a {name} "
                    f"one; pass a folder of {Path(artifacts_dir) / name} or artifacts.{name}=latest"
                )
            manifests[name] = manifest
        check_compatible(manifests["stage1"], manifests["videogan"])
        featurizer_dir = manifests["stage1"].get("featurizer_dir")
        if not featurizer_dir:
            raise T2VError(
                f"the stage1 artifact {manifests['stage1']['folder']} names no featurizer_dir, so its captions "
                "cannot be read; retrain stage1 on a vae/siamese chain or delete that artifact"
            )
        return cls(
            featurizer=FastTextFeaturizer.load(featurizer_dir),
            stage1=artifacts.load_model(Stage1GAN, manifests["stage1"]),
            videogan=artifacts.load_model(VideoGAN, manifests["videogan"]),
        )

    def check(self, captions: Sequence[str], names: Sequence[str] | None = None) -> None:
        """Refuse, before anything is generated, a caption the featurizer cannot read (``names``: how to call each
        caption in the message, such as its line in a file)."""
        for n, caption in enumerate(captions):
            where = f" ({names[n]})" if names is not None else ""
            if not self.featurizer.tokenize(caption):
                raise T2VError(f"text is empty{where}; pass a sentence, e.g. text='a red circle moves to the left'")
            if not any(map(self.featurizer.has_vector, self.featurizer.read_words(caption))):
                raise T2VError(
                    f"no word of {printable(caption)!r}{where} has a word vector (none is a word of the training "
                    "captions or the vectors, nor built from subwords they know); use words like the training captions'"
                )

    def features(self, captions: Sequence[str]) -> Tensor:
        """Caption features, refusing captions the featurizer cannot read."""
        self.check(captions)
        features, _ = self.featurizer.transform(captions)
        return torch.from_numpy(features)

    def noise(self, rows: Sequence[Row], seed: int) -> tuple[Tensor, Tensor | None]:
        """The stage-I ``z`` (B, z_dim) and video ``z`` (B, noise_dim; None for a video GAN without noise) of
        ``rows``, each row from its own generator (:func:`sample_seed`), whatever else is in the batch."""
        video_dim = int(getattr(self.videogan, "noise_dim", 0) or 0)
        images, videos = [], []
        for caption, sample in rows:
            draw = torch.Generator().manual_seed(sample_seed(seed, caption, sample))
            images.append(torch.randn(self.stage1.z_dim, generator=draw))
            if video_dim:
                videos.append(torch.randn(video_dim, generator=draw))
        return torch.stack(images), torch.stack(videos) if video_dim else None

    @torch.no_grad()
    def generate(self, text: Tensor, rows: Sequence[Row], seed: int) -> dict[str, Tensor]:
        """The stage-I images and clips of ``rows``, given each row's caption features ``text`` (B, features)."""
        z_image, z_video = self.noise(rows, seed)
        images = self.stage1.generate(text, z_image.to(text.device))
        clip = self.videogan.generate(images, text, z_video)  # the text is ignored by an unconditioned video GAN
        return {"images": images, **clip}

    @torch.no_grad()
    def __call__(self, captions: list[str], num_samples: int = 1, seed: int = 0) -> dict[str, Any]:
        """``num_samples`` clips per caption, row i*num_samples+k being sample k of caption i, all in one batch
        (:meth:`batches` makes the same clips a batch at a time)."""
        text = self.features(captions)
        rows = [(i, k) for i in range(len(captions)) for k in range(num_samples)]
        out = self.generate(text.repeat_interleave(num_samples, dim=0), rows, seed)
        return {"captions": [captions[i] for i, _ in rows], **out}

    @torch.no_grad()
    def batches(
        self, captions: Sequence[str], num_samples: int, seed: int, batch_size: int
    ) -> Iterator[dict[str, Any]]:
        """The clips of ``self(captions, num_samples, seed)``, ``batch_size`` rows at a time: each batch's
        ``rows`` (caption index, sample index), ``captions``, ``images`` and ``video``. Memory holds one batch of
        clips, whatever the number of captions; call :meth:`check` first to refuse bad captions before any batch."""
        # Every caption as word-table rows at once: 200 bytes a caption, and one warning for all that are cut.
        slots, _ = self.featurizer.word_slots(captions)
        table = self.featurizer.word_table()
        total = len(captions) * num_samples
        for start in range(0, total, batch_size):
            rows = [divmod(row, num_samples) for row in range(start, min(start + batch_size, total))]
            which = [caption for caption, _ in rows]
            text = torch.from_numpy(table[slots[which]].reshape(len(rows), -1))
            out = self.generate(text, rows, seed)
            yield {
                "rows": rows,
                "captions": [captions[i] for i in which],
                "images": out["images"],
                "video": out["video"],
            }

    @torch.no_grad()
    def animate(self, first_frames: Tensor, captions: list[str], num_samples: int = 1, seed: int = 0) -> Tensor:
        """The video GAN alone: ``num_samples`` clips (B*n, 3, T, H, W) per given first frame (B, 3, H, W) and its
        caption, row i*num_samples+k being sample k of frame i."""
        torch.manual_seed(seed)
        text = self.features(captions).repeat_interleave(num_samples, dim=0)
        return self.videogan.generate(first_frames.repeat_interleave(num_samples, dim=0), text)["video"]


def manifest_dim(manifest: dict[str, Any], key: str) -> Any:
    """``manifest["dims"][key]``, or one line saying the artifact lacks it."""
    dims = manifest.get("dims")
    if not isinstance(dims, dict) or key not in dims:
        raise T2VError(
            f"{Path(manifest['folder']) / artifacts.MANIFEST} lacks dims.{key}; retrain {manifest['stage']} or "
            f"delete the artifact folder {manifest['folder']}"
        )
    return dims[key]


def check_compatible(stage1: dict[str, Any], videogan: dict[str, Any]) -> None:
    """The dimension contract between the two generators, before anything is generated."""
    size, frame_size = manifest_dim(stage1, "image_size"), manifest_dim(videogan, "size")
    if size != frame_size:
        raise T2VError(
            f"stage1 makes {size}px images ({stage1['folder']}) but videogan expects {frame_size}px frames "
            f"({videogan['folder']}); train both with the same data.size"
        )
    if videogan["dims"].get("text_conditioning") and videogan.get("featurizer_dir") != stage1.get("featurizer_dir"):
        raise T2VError(
            f"stage1 ({stage1['folder']}) and videogan ({videogan['folder']}) read text through different "
            "featurizers (different vae artifacts); retrain videogan on the same chain as stage1"
        )


# -- writing ------------------------------------------------------------------------------------------------


def encode_mp4(frames: np.ndarray, fps: int) -> bytes:
    """H.264 in MP4 (yuv420p, which every player reads) of uint8 frames (T, H, W, 3), with PyAV itself.

    Not through imageio's PyAV plugin: once torch is imported, that path took ~150 ms a 16-frame clip here against
    ~8 ms for the same encoder driven directly. One encoder thread: the clips are tiny, and threads cost more to
    start than they save."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())  # flush the frames the encoder still holds
    return buffer.getvalue()


def encode_gif(frames: np.ndarray, fps: int) -> bytes:
    """A looping GIF of uint8 frames (T, H, W, 3), with one 256-colour palette for the whole clip.

    Pillow itself, not imageio's plugin: that one quantizes every frame on its own (median cut), ~140 ms a
    16-frame 32 x 32 clip of a young generator's many colours, most of a generate.py run. Quantizing the frames
    once, stacked, takes ~10 ms, looks the same (mean error below 0.1 of a level) and does not flicker between
    per-frame palettes."""
    count, height, width, _ = frames.shape
    stacked = Image.fromarray(np.ascontiguousarray(frames).reshape(count * height, width, 3))
    paletted = stacked.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    images = [paletted.crop((0, t * height, width, (t + 1) * height)) for t in range(count)]
    buffer = io.BytesIO()
    # GIF durations are in milliseconds; loop=0 plays it forever.
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=1000 / fps, loop=0)
    return buffer.getvalue()


def encode_sample(image: np.ndarray, frames: np.ndarray, fps: int) -> dict[str, bytes]:
    """One sample's files, in memory (a few tens of KB), from its uint8 stage-I image (H, W, 3) and frames
    (T, H, W, 3): ``gif`` and ``mp4`` (the clip) and ``png`` (the image, then the frames, side by side). Encoded
    before anything is written, so each file goes to disk whole."""
    return {
        "gif": encode_gif(frames, fps),
        "mp4": encode_mp4(frames, fps),
        "png": iio.imwrite("<bytes>", np.concatenate([image, *frames], axis=1), extension=".png"),
    }


def as_frames(images: Tensor, video: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """A batch's images (B, 3, H, W) and clips (B, 3, T, H, W) in [-1, 1] as uint8 (B, H, W, 3) and (B, T, H, W, 3).
    Once per batch, not per sample: a tiny torch op costs a thread-pool wake-up (~40 ms on a busy 2-core machine)."""
    return to_uint8(images), to_uint8(video.transpose(1, 2))


def write_sample(out_dir: Path, name: str, image: np.ndarray, frames: np.ndarray, fps: int) -> dict[str, str]:
    """One sample as ``name.gif``, ``name.mp4`` and ``name.png`` (see :func:`encode_sample`), each written to a
    temporary file and renamed, so a stopped run or a full disk never leaves half a file under its name (a full disk
    is one DiskFull line)."""
    paths = {}
    for kind, data in encode_sample(image, frames, fps).items():
        path = out_dir / f"{name}.{kind}"
        write_bytes_atomic(path, data)
        paths[kind] = str(path)
    return paths


def check_out_dir(out_dir: str | Path) -> Path:
    """``out_dir`` as a path, refused in one line when something other than a folder is there."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise T2VError(f"out_dir={out} is a file; pass a folder (it is created if missing), e.g. out_dir=clips/")
    return out


def output_folder(out_dir: str | Path) -> Path:
    """``out_dir``, created if missing; one line when it is a file or cannot be made."""
    out = check_out_dir(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise T2VError(
            f"out_dir={out} cannot be created ({artifacts.reason(error)}); pass a folder you can write"
        ) from None
    return out


def sample_name(caption_index: int, caption: str, sample: int, width: int = 3) -> str:
    """``<caption index>_<caption slug>_<sample>``, the index zero-padded to ``width`` so the files sort in order."""
    return f"{caption_index:0{width}d}_{slug(caption)}_{sample}"


def write_samples(result: dict[str, Any], out_dir: str | Path, num_samples: int, fps: int = 8) -> list[dict[str, str]]:
    """Write every sample of a :class:`TextToVideo` call; returns their paths with their captions."""
    out = output_folder(out_dir)
    images, clips = as_frames(result["images"], result["video"])
    written = []
    for row, caption in enumerate(result["captions"]):
        name = sample_name(row // num_samples, caption, row % num_samples)
        written.append({"caption": caption, **write_sample(out, name, images[row], clips[row], fps)})
    return written


def progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]generate[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("clips"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def generate_to(
    chain: TextToVideo,
    captions: Sequence[str],
    out_dir: str | Path,
    *,
    num_samples: int,
    seed: int,
    batch_size: int,
    fps: int,
    progress: bool = True,
    names: Sequence[str] | None = None,
) -> list[dict[str, str]]:
    """Generate ``num_samples`` clips per caption into ``out_dir``, ``batch_size`` clips at a time, each written as
    soon as it is made; returns ``[{"caption", "gif", "mp4", "png", "new_words"}, ...]`` in caption order, where
    ``new_words`` maps each word no training caption used to how it was read (``vector`` or ``zeros``).

    ``out_dir/samples.json`` holds the same list. It is replaced atomically after every batch (and when the run
    fails or is interrupted), so at any moment it lists exactly the samples whose three files are complete.
    Captions the chain cannot read are refused first (``names``: how the messages call them, e.g. file lines)."""
    chain.check(captions, names)
    new_words = [{"new_words": w} if (w := chain.featurizer.new_words(c)) is not None else {} for c in captions]
    out = output_folder(out_dir)
    index = out / SAMPLES_INDEX
    width = max(3, len(str(len(captions) - 1)))
    written: list[dict[str, str]] = []
    write_json_atomic(index, written)  # a run stopped before its first batch leaves an empty index, not an old one
    try:
        with progress_bar(progress) as bar:
            task = bar.add_task("generate", total=len(captions) * num_samples)
            for batch in chain.batches(captions, num_samples, seed, batch_size):
                images, clips = as_frames(batch["images"], batch["video"])
                for (i, k), caption, image, frames in zip(batch["rows"], batch["captions"], images, clips, strict=True):
                    paths = write_sample(out, sample_name(i, caption, k, width), image, frames, fps)
                    written.append({"caption": caption, **paths, **new_words[i]})
                    bar.advance(task)
                write_json_atomic(index, written)
    except BaseException:
        # Record what is complete before the error goes on; a full disk may refuse this too (the last index stays).
        with suppress(Exception):
            write_json_atomic(index, written)
        raise
    return written
