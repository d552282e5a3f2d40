"""Datamodules for real movie clips: MPII-MD (``data=mpii``), LSMDC (``data=lsmdc``) and a folder of the
user's own clips (``data=folder``).

Each reads its annotation files (``t2v.data.annotations``), picks the clips to use (``data.movies``,
``data.filter.keywords``, ``data.num_clips``), makes sure they are in the preprocessed cache
(``t2v.data.prepare``; Lightning's ``prepare_data`` runs it once per machine), and serves them from
the cache's memory-mapped shards. A clip with several captions gives one item per caption. Real data
has no attribute labels, so ``labels`` is an empty dict and the models compare captions by their
features instead.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_warn
from rich.console import Console
from torch.utils.data import Dataset, Subset

from t2v.cluster import launched_rank
from t2v.data.annotations import (
    SPLITS,
    ClipRecord,
    cap_clips,
    ensure_val_split,
    read_folder,
    read_lsmdc,
    read_mpii,
    select_keywords,
    select_movies,
)
from t2v.data.cache import SUMMARY, ClipCache
from t2v.data.datamodule import TextClipsDataModule, WithText
from t2v.data.prepare import prepare_clips, print_summary
from t2v.data.video import ClipSpec, QualityFilters, settings
from t2v.errors import T2VError
from t2v.text.featurizer import FastTextFeaturizer


class CachedClips(Dataset):
    """Items of one split, read from the cache's shards. Everything per item is a numpy array rather
    than a list of Python objects, so forked DataLoader workers share it instead of copying it page by
    page, and the frames come from memory maps: RAM does not grow with the dataset."""

    def __init__(
        self,
        cache: ClipCache,
        index: np.ndarray,
        location: np.ndarray,
        captions: np.ndarray,
        clip_ids: np.ndarray,
        with_video: bool = True,
    ) -> None:
        self.cache, self.index, self.location = cache, index, location
        self.captions, self.clip_ids, self.with_video = captions, clip_ids, with_video

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            "caption": str(self.captions[i]),
            "labels": {},
            "clip_id": str(self.clip_ids[i]),
            "index": torch.tensor(int(self.index[i]), dtype=torch.int64),
        }
        if self.with_video:
            shard, row = self.location[i]
            clip = torch.from_numpy(np.array(self.cache.frames(int(shard), int(row))))  # T, H, W, C uint8
            item["video"] = clip.permute(3, 0, 1, 2).float().div_(127.5).sub_(1.0)
        return item


class MovieDataModule(TextClipsDataModule):
    """What the movie datasets share; a subclass says how to read its annotations.

    Args:
        featurizer: fitted on the training captions in ``setup`` unless it comes fitted.
        root: the dataset folder.
        frames, size, stride, window: T frames ``stride`` apart from a ``window`` (start, center or
            random) of each clip, scaled and centre-cropped to size x size.
        movies: only these movies (folder names, with or without their number); None: all.
        filter: ``keywords`` (keep captions with any of these words), the quality filters of
            :class:`t2v.data.video.QualityFilters` (min_side, cut_threshold, min_motion, min_frames), and
            ``min_agreement``: drop this share (in [0, 1)) of the training pairs whose caption the text-video
            judge (``t2v/eval/judge.py``, trained on these pairs with ``judge``'s settings for
            ``agreement_steps`` and cached) finds least like its clip; null keeps them all.
        judge: the judge's settings (``conf/judge/``), for ``filter.min_agreement``.
        num_clips: at most this many clips (a seeded pick spread over movies and splits); None: all.
        val_fraction: when the selected clips include no validation clips, this share of the training
            clips is used for validation instead (see ``ensure_val_split``).
        seed: for ``num_clips``, ``val_fraction`` and the random window.
        cache_dir: the cache lives in ``<cache_dir>/<hash of the preprocessing settings>``.
        prepare_workers: decoding processes; None: one per CPU core; 0: decode in this process.
        batch_size: global, divided over DDP processes. num_workers: DataLoader workers.
        with_video: False serves captions only (the vae stage).
        contrast: ignored, with a warning: contrast captions need attribute labels, which movie captions lack
            (the shapes presets set it, and must still run on movie data).
    """

    name = "movies"

    def __init__(
        self,
        featurizer: FastTextFeaturizer | None,
        root: str,
        frames: int = 32,
        size: int = 64,
        stride: int = 1,
        window: str = "center",
        movies: Sequence[str] | None = None,
        filter: Mapping[str, Any] | None = None,  # shadows the builtin, but it is the config key data.filter
        num_clips: int | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        cache_dir: str = ".cache/t2v/data",
        prepare_workers: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        with_video: bool = True,
        contrast: Sequence[str] = (),
        judge: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(featurizer, batch_size, num_workers, with_video)
        if contrast:
            rank_zero_warn(
                f"data.contrast={list(contrast)} is ignored: movie captions have no attribute labels to contrast"
            )
        self.root = Path(root).expanduser()
        filters = dict(filter or {})
        self.keywords = list(filters.pop("keywords", None) or [])
        self.min_agreement = float(filters.pop("min_agreement", None) or 0.0)
        self.agreement_steps = int(filters.pop("agreement_steps", None) or 100)
        if not 0.0 <= self.min_agreement < 1.0:
            raise T2VError(
                f"data.filter.min_agreement={self.min_agreement} is the share of training pairs to drop; use a "
                "number in [0, 1), e.g. 0.1, or null"
            )
        if self.min_agreement and not judge:
            raise T2VError("data.filter.min_agreement needs the judge's settings (data.judge); set data.judge=${judge}")
        self.judge_settings = dict(judge or {})
        self.agreement_dropped: dict[str, Any] | None = None
        try:
            self.filters = QualityFilters(**filters)
        except TypeError:
            known = ["keywords", *QualityFilters.__dataclass_fields__]
            raise T2VError(f"data.filter has unknown keys {sorted(filters)}; known: {', '.join(known)}") from None
        self.spec = ClipSpec(frames=frames, size=size, stride=stride, window=window, seed=seed)
        self.movies = list(movies) if movies else None
        self.num_clips, self.val_fraction, self.seed = num_clips, val_fraction, seed
        self.cache_dir, self.prepare_workers = Path(cache_dir).expanduser(), prepare_workers
        self._records: list[ClipRecord] | None = None
        self._fingerprint: str | None = None
        self.check_files()  # fail before training starts, with the path to fix

    # -- what a dataset defines ----------------------------------------------------------------------
    def required_files(self) -> dict[str, Path]:
        """Config key -> the annotation file it names, checked at construction."""
        raise NotImplementedError

    def read_annotations(self) -> list[ClipRecord]:
        raise NotImplementedError

    def source_settings(self) -> dict[str, Any]:
        """What identifies the source data in the cache key (beyond the root)."""
        return {key: str(path) for key, path in self.required_files().items()}

    # -- selection and cache -------------------------------------------------------------------------
    def check_files(self) -> None:
        if not self.root.is_dir():
            raise T2VError(f"data.root={self.root} does not exist; set data.root to your {self.name} folder")
        for key, path in self.required_files().items():
            if not path.is_file():
                raise T2VError(f"{key}: {path} does not exist; put the file there or set {key}")

    def records(self) -> list[ClipRecord]:
        """The clips to use: the annotations, cut to the chosen movies, keywords and number."""
        if self._records is None:
            listed = self.read_annotations()
            if not listed:  # else the keyword check below would blame data.filter.keywords
                files = ", ".join(str(path) for path in self.required_files().values())
                raise T2VError(f"data: no clip with a caption in {files}; see the layouts in docs/movies.md")
            records = select_keywords(select_movies(listed, self.movies), self.keywords)
            if not records:
                raise T2VError(f"data.filter.keywords={self.keywords} match no caption; use other or fewer keywords")
            records = cap_clips(records, self.num_clips, self.seed)
            self._records = ensure_val_split(records, self.val_fraction, self.seed)
        return self._records

    def cache_settings(self) -> dict[str, Any]:
        """Everything that decides the cached pixels: the cache folder is a hash of it."""
        return {"dataset": self.name, "root": str(self.root.resolve()), **self.source_settings(),
                **settings(self.spec, self.filters)}  # fmt: skip

    @property
    def cache(self) -> ClipCache:
        return ClipCache.for_settings(self.cache_dir, self.cache_settings())

    def prepare_cache(self, progress: bool = True, retry_failed: bool = False) -> dict[str, Any]:
        """Decode the clips the cache lacks (see ``t2v.data.prepare``); returns the summary."""
        return prepare_clips(self.records(), self.cache, self.cache_settings(), self.spec, self.filters,
                             self.prepare_workers, progress, retry_failed)  # fmt: skip

    def prepare_data(self) -> None:
        summary = self.prepare_cache(progress=True)
        if summary["tried_this_run"]:  # only when there was work: say what came of it
            print_summary(summary, Console(stderr=True))
        if self.min_agreement:  # once per machine: the judge is trained here, and every process's setup loads it
            self.setup()

    # -- serving -------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        cache = self.cache
        if not cache.exists() or launched_rank() != 0:
            # A rank srun or torchrun started beside rank 0 may get here (a GAN stage sets its data up before
            # trainer.fit) while rank 0 decodes: the cache's writer lock makes it wait, then finds the clips there.
            self.prepare_cache(progress=False)
        index = cache.index()
        records = self.records()
        captions, ids, splits, locations = [], [], [], []
        for record in records:
            row = index.get(record.clip_id)
            if row is None:  # dropped by a filter, or a broken file
                continue
            for caption in record.captions:
                captions.append(caption)
                ids.append(record.clip_id)
                splits.append(record.split)
                locations.append((row["shard"], row["row"]))
        split_of = np.asarray(splits, dtype=str)
        train_rows = np.flatnonzero(split_of == "train")
        if len(train_rows) == 0:
            raise T2VError(
                f"data: none of the {len(records)} selected clips is a usable training clip (see "
                f"{cache.directory / SUMMARY}); check data.root, data.movies and data.filter"
            )
        caption_array, id_array = np.asarray(captions), np.asarray(ids)
        location_array = np.asarray(locations, dtype=np.int64).reshape(-1, 2)

        def split_clips(rows: np.ndarray, with_video: bool) -> CachedClips:
            return CachedClips(cache, rows, location_array[rows], caption_array[rows], id_array[rows], with_video)

        datasets = {split: split_clips(np.flatnonzero(split_of == split), self.with_video) for split in SPLITS}
        text = self.attach_text(captions, ids, train_rows, datasets)
        self._fingerprint = self.items_fingerprint(cache, ids, splits, captions)
        if self.min_agreement:
            # The judge trains on every training pair (its cache key is the data before this filter).
            kept = train_rows[self.agreeing(WithText(split_clips(train_rows, True), *text))]
            self.datasets["train"] = WithText(split_clips(kept, self.with_video), *text)
            dropped = set(train_rows.tolist()) - set(kept.tolist())
            splits = ["dropped" if row in dropped else split for row, split in enumerate(splits)]
            self._fingerprint = self.items_fingerprint(cache, ids, splits, captions)

    @staticmethod
    def items_fingerprint(cache: ClipCache, ids: Sequence[str], splits: Sequence[str], captions: Sequence[str]) -> str:
        used = sorted(zip(ids, splits, captions, strict=True))
        blob = json.dumps({"cache": cache.directory.name, "items": used}, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def agreeing(self, pairs: Dataset, folds: int = 2) -> np.ndarray:
        """Positions in ``pairs`` (the training pairs) of all but the ``min_agreement`` share the judge finds least
        like their clips, in order. Each pair is scored by a judge trained on the other ``folds`` - 1 folds only,
        for ``filter.agreement_steps``: a judge scoring the pairs it learnt from, or trained long on noisy pairs, has
        learnt the wrong ones too (docs/results.md, "Filtering by agreement"). The judges are cached."""
        from t2v.eval.judge import agreement, judge_dims, obtain_judge

        dims = judge_dims(self.featurizer, self.spec.frames, self.spec.size)
        quiet = launched_rank() != 0 or (self.trainer is not None and not self.trainer.is_global_zero)
        log = (lambda _: None) if quiet else Console(stderr=True, soft_wrap=True).print
        fold = np.random.default_rng(self.seed).integers(0, folds, len(pairs))
        scores = np.zeros(len(pairs), dtype=np.float32)
        judges = []
        for k in range(folds):
            learnt, scored = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
            with tempfile.TemporaryDirectory() as work:
                settings = {**self.judge_settings, "max_steps": self.agreement_steps}
                judge, record = obtain_judge(settings, Subset(pairs, learnt), dims,
                                             f"{self._fingerprint}-fold{k}of{folds}", self.featurizer.identity(),
                                             Path(work), log, progress=False)  # fmt: skip
            scores[scored] = agreement(judge, Subset(pairs, scored)).numpy()
            judges.append(record["artifact"])
        dropped = round(self.min_agreement * len(scores))
        self.agreement_dropped = {"dropped": dropped, "of": len(scores), "judges": judges}
        log(
            f"data: the agreement filter drops {dropped} of {len(scores)} training pairs (data.filter.min_agreement="
            f"{self.min_agreement:g}; judges {', '.join(judges)})"
        )
        return np.sort(np.argsort(scores, kind="stable")[dropped:])

    def fingerprint(self) -> str:
        """Identifies the data a model was trained on: the cache settings and the clips and captions used."""
        self.setup()
        return self._fingerprint


class MPIIDataModule(MovieDataModule):
    """MPII Movie Description: ``annotations-someone.csv`` (or ``-original``), ``dataSplit.txt``, and
    ``<movie>/<clip id>.avi`` or ``jpgAllFrames/<movie>/<clip id>/*.jpg``."""

    name = "mpii"

    def __init__(self, *args: Any, annotations: str = "annotations-someone.csv", splits: str = "dataSplit.txt",
                 **common: Any) -> None:  # fmt: skip
        self.annotations, self.splits = annotations, splits
        super().__init__(*args, **common)

    def required_files(self) -> dict[str, Path]:
        return {"data.annotations": self.root / self.annotations, "data.splits": self.root / self.splits}

    def read_annotations(self) -> list[ClipRecord]:
        return read_mpii(self.root, self.annotations, self.splits)


class LSMDCDataModule(MovieDataModule):
    """LSMDC 2016: ``LSMDC16_annos_{training,val,test}.csv`` (six columns, no header); videos as MPII's."""

    name = "lsmdc"

    def __init__(self, *args: Any, annotations: Mapping[str, str | None] | None = None, **common: Any) -> None:
        self.annotations = dict(annotations or {})
        super().__init__(*args, **common)

    def required_files(self) -> dict[str, Path]:
        return {f"data.annotations.{split}": self.root / name for split, name in self.annotations.items() if name}

    def read_annotations(self) -> list[ClipRecord]:
        return read_lsmdc(self.root, self.annotations)


class FolderDataModule(MovieDataModule):
    """The user's own clips: ``<root>/captions.csv`` (UTF-8) with ``path,caption[,split]`` rows; a path is a
    video file or a folder of frames, relative to the root and inside it (no ``..``, not absolute; a symlink
    in the root may point anywhere). Rows without a split get one by a hash of the path."""

    name = "folder"

    def __init__(self, *args: Any, captions: str = "captions.csv", test_fraction: float = 0.1,
                 **common: Any) -> None:  # fmt: skip
        self.captions, self.test_fraction = captions, test_fraction
        super().__init__(*args, **common)

    def required_files(self) -> dict[str, Path]:
        return {"data.captions": self.root / self.captions}

    def read_annotations(self) -> list[ClipRecord]:
        return read_folder(self.root, self.captions, self.val_fraction, self.test_fraction, self.seed)
