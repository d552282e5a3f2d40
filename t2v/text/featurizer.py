"""Captions -> concatenated fastText word vectors, the text features of the original 2017 design.

A caption is lowercased and tokenized, each of its first ``max_words`` words becomes a ``dim``-d
fastText vector, and the vectors are concatenated into one ``dim * max_words`` vector (7,500 by
default), zero padded. The vectors come from a pretrained ``.bin``/``.vec`` file, or from a
skipgram model trained on the captions themselves (cached by a hash of the corpus).

On the synthetic moving-shapes captions every colour appears in exactly the same contexts, so
skipgram can only learn that the colours form one cluster: the longer it trains, the closer
"red" and "blue" get (cosine -> 1), and subtracting the vocabulary mean cannot undo that because
the whole cluster sits on the same side of it. What keeps the colours apart is the random
initialisation (words and their character n-grams), so the defaults train lightly (``lr=0.005``,
5 epochs): after ``center_unit`` the colour words of the shapes captions stay nearly orthogonal
(mean cosine ~0.05) for 8,000 training captions and below 0.5 up to ~15,000. Lower ``lr`` or
``epochs`` for larger synthetic corpora; fastText's own ``lr=0.05`` collapses them even at 2,000.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fasttext
import numpy as np

from t2v.errors import T2VError

POSTPROCESS = ("center_unit", "unit", "none")
STATE_FILE = "featurizer.json"
# Bump when the trained model for the same corpus and settings would change, to skip stale caches.
_CACHE_VERSION = 1
_FORMAT = 1
# \w is letters, digits and "_" (unicode aware); "_" is not a word character for us.
_SEPARATORS = re.compile(r"[^\w']+|_+")
_FIX_VECTORS = "pass featurizer.vectors=<path to .bin or .vec> or leave it null to train on the captions"
# Terminal escape sequences (ECMA-48: CSI such as colours and cursor moves, OSC such as window titles and links,
# two-character ESC sequences, and their 8-bit forms). Their letters and digits must not become caption words.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: parameters, intermediates, a final byte
    r"|(?:\x1b[\]PX^_]|[\x90\x9d\x98\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC, DCS, ...: up to BEL/ST
    r"|\x1b[ -/]*[0-~]?"  # any other ESC sequence, or a lone ESC
)
# Invisible characters that join the letters around them (soft hyphen, zero-width (non-)joiner, word joiner,
# zero-width no-break space): removed, so "col\u00adour" stays one word. Every other control or format character
# (newline, tab, NUL, zero-width space, bidi overrides, ...) separates words, as a space does.
_JOINERS = dict.fromkeys(map(ord, "\u00ad\u200c\u200d\u2060\ufeff"))

log = logging.getLogger(__name__)


def printable(text: str) -> str:
    """``text`` safe to show on a terminal: escape sequences removed, control and format characters (newlines
    included) turned into spaces, runs of spaces made one. Captions echoed to the user go through this, so a
    caption cannot recolour, move the cursor, retitle the window or reorder the text that follows it."""
    if text.isprintable():  # the common case, checked in C
        return text
    text = _ESCAPES.sub(" ", text).translate(_JOINERS)
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


# Training runs in a fresh interpreter because the fasttext 0.9.x wheel leaves most of the input
# matrix uninitialised when thread=1: its values come from whatever the heap held before, so
# repeated trainings in one process differ and can even hit NaN. glibc's perturb byte 255 makes
# every fresh allocation zero (the upstream intent). A crash (e.g. SIGFPE) also stays contained.
_TRAIN_SCRIPT = """
import json, sys
import fasttext
corpus, out, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
fasttext.train_unsupervised(corpus, **settings).save_model(out)
"""


class FastTextFeaturizer:
    """Turns captions into zero-padded concatenations of ``max_words`` fastText word vectors.

    Args:
        vectors: a pretrained fastText ``.bin`` (unknown words get subword vectors) or ``.vec``
            text file (unknown words get zeros); None trains a skipgram model in ``fit``.
        dim: the word vector size; must match ``vectors``.
        max_words: word slots per caption; longer captions are cut (``stats["truncated"]``), which the first
            ``transform`` that cuts one says in one warning line (once per featurizer, so once per run).
        postprocess: ``center_unit`` subtracts the mean vector of the fitted vocabulary and
            L2-normalises; ``unit`` only normalises; ``none`` keeps the raw vectors.
        bucket, epochs, min_count, lr: skipgram training settings (``vectors=None`` only).
            ``bucket`` sizes the n-gram table: fastText's default of 2,000,000 makes a 2.4 GB file.
        cache_dir: where trained models are cached, keyed by the corpus and the settings.

    ``stats`` counts over all ``transform`` calls: ``captions``; ``truncated``, the captions cut
    to ``max_words``; ``unknown_words``, the kept word slots left zero for lack of a vector.
    """

    def __init__(
        self,
        vectors: str | None = None,
        dim: int = 300,
        max_words: int = 25,
        postprocess: str = "center_unit",
        bucket: int = 20000,
        epochs: int = 5,
        min_count: int = 1,
        cache_dir: str = ".cache/t2v/fasttext",
        lr: float = 0.005,
    ) -> None:
        if postprocess not in POSTPROCESS:
            raise T2VError(f"featurizer.postprocess={postprocess!r} is unknown; use one of {', '.join(POSTPROCESS)}")
        for name, value in (
            ("dim", dim),
            ("max_words", max_words),
            ("bucket", bucket),
            ("epochs", epochs),
            ("min_count", min_count),
        ):
            if int(value) < 1:
                raise T2VError(f"featurizer.{name}={value} must be at least 1; set it to a positive integer")
        if not lr > 0:
            raise T2VError(f"featurizer.lr={lr} must be positive; set featurizer.lr to e.g. 0.005")
        self.vectors = None if vectors is None else str(vectors)
        self.dim, self.max_words, self.postprocess = int(dim), int(max_words), postprocess
        self.bucket, self.epochs = int(bucket), int(epochs)
        self.min_count, self.lr = int(min_count), float(lr)
        self.cache_dir = str(cache_dir)
        self.stats: dict[str, int] = {"captions": 0, "truncated": 0, "unknown_words": 0}
        self._cut_reported = False  # the warning about captions cut to max_words is said once
        # Exactly one of the two backends is set once vectors are available.
        self._model: Any = None  # a fastText model: pretrained .bin or trained on the captions
        self._model_file: Path | None = None  # the file behind _model, which save() copies
        self._vec_index: dict[str, int] | None = None  # .vec words -> rows of _vec_matrix
        self._vec_matrix: np.ndarray | None = None
        self._mean: np.ndarray | None = None  # float64 mean of the fitted vocabulary's raw vectors
        self._vocab_size = 0
        self._caption_words: frozenset[str] | None = None  # the words of the captions ``fit`` saw
        self._reset_word_cache()
        if self.vectors is not None:
            self._open_vectors(Path(self.vectors))

    @property
    def out_dim(self) -> int:
        """Length of one caption's feature vector."""
        return self.dim * self.max_words

    @property
    def is_fitted(self) -> bool:
        """True once ``transform`` can run: vectors are loaded and, for center_unit, the mean is known."""
        has_vectors = self._model is not None or self._vec_index is not None
        return has_vectors and (self.postprocess != "center_unit" or self._mean is not None)

    def read_words(self, text: str) -> list[str]:
        """The caption's words that are read: its first ``max_words``."""
        return self.tokenize(text)[: self.max_words]

    def has_vector(self, word: str) -> bool:
        """Whether ``word`` reads as a vector rather than zeros: a word of the vectors' vocabulary, or, with a
        fastText model (trained on the captions or a pretrained ``.bin``), one built from character n-grams it knows."""
        self._check_ready()
        return self._word_row(word) != 0

    def new_words(self, text: str) -> dict[str, str] | None:
        """The read words of the caption that no training caption used, each with how it is read: ``vector`` (from
        its subwords, or the pretrained vocabulary) or ``zeros``. None when the training captions' words are not
        known (a featurizer with pretrained vectors saved before they were recorded)."""
        if self._caption_words is None:
            return None
        unseen = dict.fromkeys(w for w in self.read_words(text) if w not in self._caption_words)
        return {w: "vector" if self.has_vector(w) else "zeros" for w in unseen}

    def tokenize(self, text: str) -> list[str]:
        """Lowercase words: runs of unicode letters, digits and apostrophes. Newlines, tabs and other control
        characters separate words; terminal escape sequences are dropped whole (no "31m" from a colour code)."""
        # NFC so that a decomposed "é" (e + combining accent) stays one letter inside its word.
        text = unicodedata.normalize("NFC", printable(text)).lower()
        # Edge apostrophes are quote marks ('red' -> red); inner ones belong to the word (don't).
        return [t for t in (p.strip("'") for p in _SEPARATORS.split(text)) if t]

    def fit(self, corpus: Sequence[str]) -> FastTextFeaturizer:
        """Trains (or loads the cached) skipgram model when ``vectors`` is None, and fits the
        vocabulary mean used by ``center_unit`` on the corpus's words."""
        tokenized = [tokens for tokens in map(self.tokenize, corpus) if tokens]
        words = sorted({w for tokens in tokenized for w in tokens})  # sorted: a reproducible mean
        if not words:
            raise T2VError(f"featurizer: fit got {len(corpus)} captions without any words; pass the training captions")
        if self.vectors is None:
            self._model_file = self._trained_model_file(tokenized)
            self._model = fasttext.load_model(str(self._model_file))
        self._reset_word_cache()
        raw = [v for v in map(self._raw_vector, words) if v is not None]
        if not raw:
            raise T2VError(
                f"featurizer.vectors={self.vectors} has no vector for any of the {len(words)} caption words; "
                f"{_FIX_VECTORS}"
            )
        self._mean = np.stack(raw).astype(np.float64).mean(axis=0)
        self._vocab_size = len(words)
        self._caption_words = frozenset(words)
        return self

    def transform(self, captions: Sequence[str], ids: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Features float32 (N, out_dim) and the number of real (non-padding) word slots int64 (N,).

        ``ids`` name the captions in error messages (default: their index).
        """
        slots, n_words = self.word_slots(captions, ids)
        return self.word_table()[slots].reshape(len(slots), self.out_dim), n_words

    def word_slots(self, captions: Sequence[str], ids: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each caption as rows of :meth:`word_table`, int64 (N, max_words) (row 0: padding or an unknown
        word), and its number of real word slots (N,). ``word_table()[slots[i]].reshape(-1)`` is caption i's
        features: 200 bytes per caption instead of 30 KB, so a large corpus's features need not sit in RAM."""
        self._check_ready()
        if ids is not None and len(ids) != len(captions):
            raise ValueError(f"transform got {len(captions)} captions but {len(ids)} ids")
        n = len(captions)
        slots = np.zeros((n, self.max_words), dtype=np.int64)
        n_words = np.zeros(n, dtype=np.int64)
        truncated = unknown = 0
        first_cut: str | None = None
        for i, caption in enumerate(captions):
            tokens = self.tokenize(caption)
            if not tokens:
                name = f"clip {ids[i]!r}" if ids is not None else f"caption #{i}"
                raise T2VError(f"featurizer: {name} has no words ({caption!r}); fix or remove that caption")
            if len(tokens) > self.max_words:
                truncated += 1
                first_cut = first_cut or caption
                tokens = tokens[: self.max_words]
            rows = [self._word_row(t) for t in tokens]
            slots[i, : len(rows)] = rows
            n_words[i] = len(rows)
            unknown += rows.count(0)
        self.stats["captions"] += n
        self.stats["truncated"] += truncated
        self.stats["unknown_words"] += unknown
        if first_cut is not None:
            self._report_cut(truncated, len(captions), first_cut)
        return slots, n_words

    def _report_cut(self, truncated: int, total: int, example: str) -> None:
        """One warning line, the first time captions are cut: the features of the words past ``max_words`` are
        lost, which the user should know without it filling the terminal for every batch."""
        if self._cut_reported:
            return
        self._cut_reported = True
        shown = printable(example)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        log.warning(
            "%d of %d captions have more than featurizer.max_words=%d words; only their first %d words are read "
            "(e.g. '%s'); shorten them, or train with a larger featurizer.max_words",
            truncated, total, self.max_words, self.max_words, shown,
        )  # fmt: skip

    def word_table(self) -> np.ndarray:
        """float32 (rows, dim): the vectors of the words seen so far, row 0 the zero vector."""
        return np.stack(self._word_vectors)

    __call__ = transform

    def save(self, directory: str | Path) -> dict[str, Any]:
        """Writes what ``load`` needs into ``directory`` and returns its JSON-able description."""
        self._check_ready()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files: dict[str, str] = {}
        if self._model is not None:
            assert self._model_file is not None
            _link_or_copy(self._model_file, directory / "model.bin")
            files["model"] = "model.bin"
        else:
            assert self._vec_index is not None and self._vec_matrix is not None
            (directory / "words.json").write_text(
                json.dumps(list(self._vec_index), ensure_ascii=False), encoding="utf-8"
            )
            np.save(directory / "vectors.npy", self._vec_matrix)
            files.update(words="words.json", vectors="vectors.npy")
        if self._mean is not None:
            np.save(directory / "mean.npy", self._mean)
            files["mean"] = "mean.npy"
        if self._caption_words is not None:
            words_json = json.dumps(sorted(self._caption_words), ensure_ascii=False)
            (directory / "caption_words.json").write_text(words_json, encoding="utf-8")
            files["caption_words"] = "caption_words.json"
        description: dict[str, Any] = {
            "kind": "fasttext",
            "format": _FORMAT,
            "dim": self.dim,
            "max_words": self.max_words,
            "out_dim": self.out_dim,
            "postprocess": self.postprocess,
            "vectors": self.vectors,
            "training": {
                "bucket": self.bucket,
                "epochs": self.epochs,
                "min_count": self.min_count,
                "lr": self.lr,
            },
            "vocab_size": self._vocab_size,
            "files": files,
        }
        (directory / STATE_FILE).write_text(json.dumps(description, indent=2), encoding="utf-8")
        return description

    def identity(self) -> str:
        """A short hash of what this featurizer reads captions with (its settings, vectors' source, vocabulary mean
        and caption words), the same for two copies wherever they were saved: a cache key for what depends on it."""
        self._check_ready()
        digest = hashlib.sha256()
        settings = [self.dim, self.max_words, self.postprocess, self.vectors, self.bucket, self.epochs, self.min_count,
                    self.lr, sorted(self._caption_words or [])]  # fmt: skip
        digest.update(json.dumps(settings).encode())
        if self._mean is not None:
            digest.update(self._mean.tobytes())
        return digest.hexdigest()[:16]

    @classmethod
    def load(cls, directory: str | Path) -> FastTextFeaturizer:
        """Restores a featurizer written by ``save``; it transforms exactly as the saved one did."""
        directory = Path(directory)
        state_file = directory / STATE_FILE
        if not state_file.is_file():
            raise T2VError(
                f"{directory} holds no saved featurizer ({STATE_FILE} is missing); "
                "point at the folder FastTextFeaturizer.save wrote"
            )
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise T2VError(f"{state_file} cannot be read ({error}); re-run the stage that saved it") from None
        if not isinstance(state, dict) or state.get("kind") != "fasttext" or state.get("format") != _FORMAT:
            kind, version = (state.get("kind"), state.get("format")) if isinstance(state, dict) else (None, None)
            raise T2VError(
                f"{state_file} is not a format-{_FORMAT} fasttext featurizer "
                f"(kind={kind!r}, format={version!r}); "
                "re-run the stage that saved it"
            )
        # A damaged folder (a key or file missing, a truncated model or array) is one line, not a traceback.
        try:
            return cls._restore(directory, state)
        except (OSError, KeyError, TypeError, ValueError, EOFError) as error:
            raise T2VError(
                f"the featurizer in {directory} is damaged ({type(error).__name__}: {error}); "
                "re-run the stage that saved it"
            ) from None

    @classmethod
    def _restore(cls, directory: Path, state: dict[str, Any]) -> FastTextFeaturizer:
        featurizer = cls(None, state["dim"], state["max_words"], state["postprocess"], **state["training"])
        featurizer.vectors = state["vectors"]
        files = state["files"]
        if "model" in files:
            featurizer._model_file = directory / files["model"]
            featurizer._model = fasttext.load_model(str(featurizer._model_file))
        else:
            words = json.loads((directory / files["words"]).read_text(encoding="utf-8"))
            featurizer._vec_index = {w: i for i, w in enumerate(words)}
            featurizer._vec_matrix = np.load(directory / files["vectors"], allow_pickle=False)
        if "mean" in files:
            featurizer._mean = np.load(directory / files["mean"], allow_pickle=False)
        if "caption_words" in files:
            words = json.loads((directory / files["caption_words"]).read_text(encoding="utf-8"))
            featurizer._caption_words = frozenset(words)
        elif featurizer.vectors is None and featurizer._model is not None:
            # Saved before the caption words were recorded: a model trained on the captions knows their words.
            featurizer._caption_words = frozenset(featurizer._model.get_words())
        featurizer._vocab_size = state["vocab_size"]
        return featurizer

    # -- internals -------------------------------------------------------------------------

    def _reset_word_cache(self) -> None:
        # Each distinct word is looked up and postprocessed once; transform gathers rows by index.
        self._word_rows: dict[str, int] = {}
        self._word_vectors: list[np.ndarray] = [np.zeros(self.dim, dtype=np.float32)]

    def _check_ready(self) -> None:
        if self._model is None and self._vec_index is None:
            raise T2VError(
                "featurizer: it has no word vectors yet; call fit(captions) before transform "
                "(featurizer.vectors is null, so it trains on the captions)"
            )
        if self.postprocess == "center_unit" and self._mean is None:
            raise T2VError(
                "featurizer.postprocess=center_unit needs the mean of the caption vocabulary; call "
                "fit(captions) before transform, or set featurizer.postprocess=unit"
            )

    def _raw_vector(self, word: str) -> np.ndarray | None:
        """The word's vector, or None when there is none (a .vec miss, or no known subword)."""
        if self._vec_index is not None:
            assert self._vec_matrix is not None
            row = self._vec_index.get(word)
            return None if row is None else self._vec_matrix[row]
        vector = self._model.get_word_vector(word)
        return vector if vector.any() else None

    def _word_row(self, word: str) -> int:
        row = self._word_rows.get(word)
        if row is None:
            raw = self._raw_vector(word)
            row = 0 if raw is None else len(self._word_vectors)
            if raw is not None:
                self._word_vectors.append(self._postprocessed(raw))
            self._word_rows[word] = row
        return row

    def _postprocessed(self, raw: np.ndarray) -> np.ndarray:
        vector = raw.astype(np.float64)
        if self.postprocess == "center_unit":
            assert self._mean is not None
            vector = vector - self._mean
        if self.postprocess != "none":
            norm = np.linalg.norm(vector)
            if norm > 0:
                vector = vector / norm
        return vector.astype(np.float32)

    def _open_vectors(self, path: Path) -> None:
        if not path.is_file():
            raise T2VError(f"featurizer.vectors={path} does not exist; {_FIX_VECTORS}")
        suffix = path.suffix.lower()
        if suffix == ".bin":
            try:
                model = fasttext.load_model(str(path))
            except ValueError as error:
                raise T2VError(
                    f"featurizer.vectors={path} is not a fastText .bin model ({error}); {_FIX_VECTORS}"
                ) from None
            _check_dim(path, model.get_dimension(), self.dim)
            self._model, self._model_file = model, path
        elif suffix == ".vec":
            self._vec_index, self._vec_matrix = _read_vec(path, self.dim)
        else:
            raise T2VError(
                f"featurizer.vectors={path} has the unsupported suffix {path.suffix!r} "
                f"(fastText .bin or .vec expected); {_FIX_VECTORS}"
            )

    def _trained_model_file(self, tokenized: list[list[str]]) -> Path:
        """The cached skipgram model for this corpus and these settings, trained if missing."""
        settings = {
            "model": "skipgram",
            "dim": self.dim,
            "bucket": self.bucket,
            "minCount": self.min_count,
            "epoch": self.epochs,
            "lr": self.lr,
            "thread": 1,
            "verbose": 0,
        }
        text = "".join(" ".join(tokens) + "\n" for tokens in tokenized)
        key = hashlib.sha256(json.dumps({"cache": _CACHE_VERSION, **settings}, sort_keys=True).encode())
        key.update(text.encode("utf-8"))
        path = Path(self.cache_dir) / f"skipgram-{key.hexdigest()[:24]}.bin"
        if not path.is_file():
            _train_skipgram(text, settings, path)
        return path


def _check_dim(path: Path, found: int, expected: int) -> None:
    if found != expected:
        raise T2VError(
            f"featurizer.vectors={path} has {found}-d vectors but featurizer.dim={expected}; set featurizer.dim={found}"
        )


def _read_vec(path: Path, dim: int) -> tuple[dict[str, int], np.ndarray]:
    """Parses a fastText .vec file: a "count dim" header, then "word v1 ... vdim" per line."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        header = next(lines, "").split()
        if len(header) != 2 or not all(h.isdigit() for h in header):
            raise T2VError(f"featurizer.vectors={path} does not start with a '<count> <dim>' header; {_FIX_VECTORS}")
        count, found = int(header[0]), int(header[1])
        _check_dim(path, found, dim)
        matrix = np.zeros((count, dim), dtype=np.float32)
        index: dict[str, int] = {}
        for number, line in enumerate(lines, start=2):
            word, _, numbers = line.rstrip().partition(" ")
            if not word:
                continue
            values = numbers.split()
            if len(values) != dim or len(index) >= count:
                raise T2VError(
                    f"featurizer.vectors={path} line {number} does not hold a word and {dim} numbers "
                    f"within the {count} the header announces; fix or re-export the file"
                )
            # The first occurrence wins, as in fastText.
            if word not in index:
                matrix[len(index)] = np.asarray(values, dtype=np.float32)
                index[word] = len(index)
    return index, matrix[: len(index)]


def _train_skipgram(text: str, settings: dict[str, Any], path: Path) -> None:
    """Trains a skipgram model on ``text`` (one tokenized caption a line) into ``path``.

    Two DDP processes may train the same corpus at once: each works in its own temporary folder
    next to ``path`` and moves its result into place atomically, so readers never see half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".train-") as tmp:
        corpus_file, model_file = Path(tmp) / "corpus.txt", Path(tmp) / "model.bin"
        corpus_file.write_text(text, encoding="utf-8")
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                _TRAIN_SCRIPT,
                str(corpus_file),
                str(model_file),
                json.dumps(settings),
            ],
            env={**os.environ, "MALLOC_PERTURB_": "255"},
            capture_output=True,
            text=True,
        )
        if result.returncode != 0 or not model_file.is_file():
            lines = result.stderr.strip().splitlines()
            detail = lines[-1] if lines else f"exit status {result.returncode}"
            raise T2VError(
                f"featurizer: fastText training failed ({detail}); check the captions or lower featurizer.min_count"
            )
        os.replace(model_file, path)


def _link_or_copy(source: Path, target: Path) -> None:
    # A hard link saves a copy of a large model; it is safe because models are only ever replaced
    # (os.replace), never rewritten in place.
    if target.exists():
        if os.path.samefile(source, target):
            return
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
