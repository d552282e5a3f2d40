"""What `python generate.py` does: sentences in, GIF/MP4/PNG clips out, a batch at a time."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape

from t2v.errors import T2VError
from t2v.pipeline.generate import SAMPLES_INDEX, TextToVideo, check_out_dir, generate_to
from t2v.text.featurizer import printable

# Written files listed on the terminal; the rest are in samples.json.
LISTED = 8


def whole_number(cfg: DictConfig, key: str, minimum: int | None = None) -> int:
    """``cfg[key]`` as an int: Hydra passes ``num_samples=abc`` on as the string "abc", ``2.5`` as a float and
    ``true`` as a bool, none of which may reach the generator."""
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise T2VError(f"{key}={printable(str(value))} is not a whole number; pass e.g. {key}=4")
    if minimum is not None and value < minimum:
        raise T2VError(f"{key}={value} must be at least {minimum}")
    return value


def read_captions(cfg: DictConfig) -> tuple[list[str], list[str] | None]:
    """``text=...`` or ``texts_file=...`` (one sentence a line; blank lines skipped), each made printable (escape
    sequences dropped, newlines and other control characters turned into spaces, so they separate words and never
    reach the terminal); and, for a file, each caption's line, for the messages."""
    if cfg.texts_file:
        path = Path(str(cfg.texts_file))
        if not path.is_file():
            raise T2VError(f"texts_file={path} is not a file; pass a text file with one sentence per line")
        try:
            text = path.read_bytes().decode("utf-8-sig")  # -sig: a byte-order mark is not part of the first caption
        except UnicodeDecodeError as error:
            raise T2VError(
                f"texts_file={path} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); "
                "save it as UTF-8"
            ) from None
        except OSError as error:
            raise T2VError(f"texts_file={path} cannot be read ({error.strerror}); pass a readable file") from None
        # Lines end at \n, \r\n or \r only (str.splitlines would also break at form feeds and other separators).
        lines = [(n, printable(line).strip()) for n, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1)]
        kept = [(n, line) for n, line in lines if line]
        if not kept:
            raise T2VError(f"texts_file={path} holds no sentence; write one sentence per line")
        return [line for _, line in kept], [f"{path} line {n}" for n, _ in kept]
    if OmegaConf.is_config(cfg.text):
        raise T2VError("text= takes one sentence; for several, write them one per line in a file: texts_file=<file>")
    caption = printable(str(cfg.text)).strip() if cfg.text is not None else ""
    if not caption:
        raise T2VError("text is empty; pass a sentence, e.g. text='a red circle moves to the left'")
    return [caption], None


def report_new_words(console: Console, captions: list[str], chain: TextToVideo) -> None:
    """One line per sentence with words no training caption used, saying how each was read: from the fastText
    vectors (its subwords, or a pretrained vocabulary) or as zeros (no vector at all)."""
    shown = 0
    for caption in captions:
        new = chain.featurizer.new_words(caption)
        if not new:
            continue
        if shown == LISTED:
            console.print(f"  ... and more, each sample's in {SAMPLES_INDEX} (new_words)")
            return
        how = {"vector": "read from fastText's vectors", "zeros": "no vector, read as zeros"}
        words = "; ".join(
            f"{', '.join(escape(w) for w, kind in new.items() if kind == k)} ({how[k]})"
            for k in how
            if k in new.values()
        )
        console.print(f"[bold]t2v[/] words the training captions never used in {escape(caption)!r}: {words}")
        shown += 1


def generate(cfg: DictConfig) -> dict[str, Any]:
    """Generate ``num_samples`` clips per sentence into ``out_dir``, ``batch_size`` clips at a time; returns what
    was written (also in ``out_dir/samples.json``, kept up to date after every batch)."""
    num_samples = whole_number(cfg, "num_samples", 1)
    batch_size = whole_number(cfg, "batch_size", 1)
    fps = whole_number(cfg, "fps", 1)
    seed = whole_number(cfg, "seed")
    out_dir = check_out_dir(cfg.out_dir)
    captions, names = read_captions(cfg)
    chain = TextToVideo.from_artifacts(cfg.paths.artifacts_dir, OmegaConf.to_container(cfg.artifacts))
    written = generate_to(chain, captions, out_dir, num_samples=num_samples, seed=seed, batch_size=batch_size,
                          fps=fps, progress=bool(cfg.get("progress", True)), names=names)  # fmt: skip
    console = Console(soft_wrap=True)
    report_new_words(console, captions, chain)
    console.print(f"[bold green]t2v[/] wrote {len(written)} clips to {escape(str(out_dir))}")
    for sample in written[:LISTED]:
        console.print(f"  {escape(sample['gif'])}  [dim]{escape(sample['caption'])}[/]")
    if len(written) > LISTED:
        console.print(f"  ... and {len(written) - LISTED} more, all listed in {escape(str(out_dir / SAMPLES_INDEX))}")
    return {"samples": written}
