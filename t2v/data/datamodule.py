"""LightningDataModules: clips + captions + cached text features, in the batch layout every stage reads.

A batch is a dict:
    video     float32 (B, C, T, H, W) in [-1, 1]   (absent when ``with_video`` is off)
    caption   list[str]
    text      float32 (B, max_words * word_dim)    the caption's concatenated word vectors
    text_len  int64 (B,)                           real (non-padding) word slots
    labels    dict[str, int64 (B,)]                ground-truth attributes, for evaluation (empty for
                                                   real movie data, which has none)
    contrast_text  float32 (B, max_words * word_dim)  training batches of the shapes data with
                                                   ``contrast`` only: a training caption that differs from
                                                   the clip's in exactly one of the named attributes (in
                                                   more where no such caption exists)
    clip_id   list[str]
    index     int64 (B,)                           the clip's index in the whole dataset

:class:`TextClipsDataModule` holds what every datamodule shares (the featurizer, the global batch
size, the loaders); the shapes dataset is here, the movie datasets in ``t2v.data.movies``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from t2v.data.shapes import CaptionedShapes, ShapesClips
from t2v.errors import T2VError
from t2v.text.featurizer import FastTextFeaturizer


def check_data(data: Mapping[str, Any]) -> None:
    """A held-out split (``held_out=``) only means something for the shapes, whose clips have attribute labels."""
    if "held_out" in data and not str(data.get("_target_", "")).endswith("ShapesDataModule"):
        raise T2VError(
            "held_out splits the shapes dataset by attribute combinations, which movie clips do not have; "
            "drop the held_out override or use data=shapes"
        )


class WithText(Dataset):
    """Adds each clip's caption features to an underlying clip dataset's items.

    The features are gathered per item from the caption's word rows and the word table (see
    ``FastTextFeaturizer.word_slots``), so memory holds 200 bytes per caption, not 30 KB.
    """

    def __init__(
        self,
        clips: Dataset,
        slots: np.ndarray,
        n_words: np.ndarray,
        table: np.ndarray,
        contrast: ContrastCaptions | None = None,
    ) -> None:
        self.clips, self.slots, self.n_words, self.table = clips, slots, n_words, table
        self.contrast = contrast

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])[0]

    def __getitems__(self, positions: Sequence[int]) -> list[dict[str, Any]]:
        """A batch's items (the DataLoader's batched fetch), through the clips' own batched fetch if any."""
        fetch = getattr(self.clips, "__getitems__", None)
        items = fetch(positions) if fetch is not None else [self.clips[i] for i in positions]
        rows = np.fromiter((int(item["index"]) for item in items), dtype=np.int64, count=len(items))
        # One gather for the whole batch; each item gets its row (a view, which the collate copies once).
        text = torch.from_numpy(self.table[self.slots[rows]].reshape(len(items), -1))
        n_words = torch.from_numpy(self.n_words[rows].astype(np.int64))
        for item, features, length in zip(items, text, n_words, strict=True):
            item["text"], item["text_len"] = features, length
        if self.contrast is not None:
            partners = self.contrast.sample(rows)
            contrast = torch.from_numpy(self.table[self.slots[partners]].reshape(len(items), -1))
            for item, features in zip(items, contrast, strict=True):
                item["contrast_text"] = features
        return items


class ContrastCaptions:
    """For each clip, the training captions that differ from its own in exactly one of ``attributes``.

    They are hard wrong captions for a matching-aware discriminator: a random wrong caption nearly always
    differs in an attribute that is easy to see (6 colours), so D never has to read the rest; "a red
    *square*" for a red circle's image can only be told apart by the shape. Drawn from the training
    captions only, so no held-out combination reaches training even as a negative.
    """

    def __init__(self, labels: Mapping[str, np.ndarray], pool: np.ndarray, attributes: Sequence[str]) -> None:
        unknown = sorted(set(attributes) - set(labels))
        if unknown or not attributes:
            raise T2VError(
                f"data.contrast={list(attributes)} must name attributes of the data; use some of {', '.join(labels)}"
            )
        names = list(labels)
        table = np.stack([np.asarray(labels[name]) for name in names], axis=1)  # (clips, attributes)
        pool = np.asarray(pool, dtype=np.int64)
        candidates: list[list[np.ndarray]] = [[] for _ in range(len(table))]
        for attribute in attributes:
            column = names.index(attribute)
            others = np.delete(table, column, axis=1)
            # Clips sharing every other attribute: group by those, then keep the ones whose value differs.
            _, group = np.unique(others, axis=0, return_inverse=True)
            group = group.reshape(-1)
            members = {g: pool[group[pool] == g] for g in np.unique(group[pool])}
            for clip in range(len(table)):
                same_group = members.get(group[clip])
                if same_group is not None:
                    candidates[clip].append(same_group[table[same_group, column] != table[clip, column]])
        self.candidates = [np.concatenate(c) if c else np.empty(0, dtype=np.int64) for c in candidates]
        self.pool, self.table = pool, table

    def sample(self, rows: np.ndarray) -> np.ndarray:
        """One contrast caption row per clip row. Where no training caption differs in one named attribute
        alone (small or oddly held-out data), any training caption that says something else."""
        picks = np.empty(len(rows), dtype=np.int64)
        for k, row in enumerate(rows.tolist()):
            options = self.candidates[row]
            if len(options) == 0:
                options = self.pool[(self.table[self.pool] != self.table[row]).any(axis=1)]
            if len(options) == 0:
                raise T2VError("data.contrast: every training caption says the same thing; set data.contrast=[]")
            picks[k] = options[int(torch.randint(len(options), ()))]
        return picks


class EpochShuffle(RandomSampler):
    """A random order of the training set that depends only on the run's seed and the epoch being trained.

    Drawing the order from the global generator instead would tie it to everything else that draws before the epoch
    starts, so a resumed run would read other batches than the uninterrupted run. The epoch is read from the trainer
    when an epoch's iteration starts, not from ``set_epoch``: after a resume Lightning passes its processed-epochs
    counter, one ahead of the epoch it trains. Under DDP Lightning replaces this sampler with its DistributedSampler
    (seeded by ``PL_GLOBAL_SEED`` and that counter). ``skip`` drops the first samples of the next epoch read (a
    resumed run continuing mid-epoch).
    """

    def __init__(self, data_source: Dataset, seed: int, epoch: Callable[[], int]) -> None:
        super().__init__(data_source)
        self.seed, self.epoch, self.skip = seed, epoch, 0

    def __iter__(self) -> Iterator[int]:
        seed = int(np.random.SeedSequence([self.seed, self.epoch()]).generate_state(1)[0])
        order = torch.randperm(len(self.data_source), generator=torch.Generator().manual_seed(seed))
        skip, self.skip = self.skip, 0
        yield from order[skip:].tolist()


class TextClipsDataModule(pl.LightningDataModule):
    """The parts every t2v datamodule shares: caption features computed once per run, the global
    batch size split over DDP processes, and the loaders.

    A subclass builds its split datasets (items with ``index``, the row of the clip's caption among
    all captions) and hands them to :meth:`attach_text` in ``setup``.
    """

    def __init__(self, featurizer: FastTextFeaturizer, batch_size: int, num_workers: int, with_video: bool) -> None:
        super().__init__()
        self.featurizer = featurizer
        self.batch_size, self.num_workers, self.with_video = batch_size, num_workers, with_video
        self.datasets: dict[str, Dataset] = {}
        # Training batches of the current epoch that a resumed run already trained on (set by ExactResume).
        self.resume_batches = 0

    def attach_text(
        self,
        captions: Sequence[str],
        ids: Sequence[str],
        train_rows: Sequence[int],
        splits: Mapping[str, Dataset],
        contrast: ContrastCaptions | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fit the featurizer on the training captions (unless it comes fitted), featurize every caption
        once, and serve ``splits`` with their text (and the training split with ``contrast`` captions).
        Returns the caption features as :class:`WithText` takes them (slots, word counts, word table)."""
        if not self.featurizer.is_fitted:  # a featurizer loaded from an upstream artifact is kept as is
            self.featurizer.fit([captions[i] for i in train_rows])
        slots, n_words = self.featurizer.word_slots(captions, ids)
        table = self.featurizer.word_table()
        self.datasets = {
            split: WithText(clips, slots, n_words, table, contrast if split == "train" else None)
            for split, clips in splits.items()
        }
        return slots, n_words, table

    @property
    def local_batch_size(self) -> int:
        """This process's share of ``batch_size``, which is global. Read when the loaders are made: ``setup`` may
        run before the trainer is attached (the GAN validation judge needs the data first), when the world size is
        not known yet."""
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world:
            raise T2VError(
                f"data.batch_size={self.batch_size} does not divide over {world} processes; use a multiple of {world}"
            )
        return self.batch_size // world

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        sampler = None
        if shuffle:
            sampler = EpochShuffle(dataset, seed, epoch=self.current_epoch)
            sampler.skip, self.resume_batches = self.resume_batches * self.local_batch_size, 0
        return DataLoader(
            dataset,
            batch_size=self.local_batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=shuffle and len(dataset) >= self.local_batch_size,
            # Each iterator draws its workers' base seed from this, not from the global generator, so when Lightning
            # creates an iterator (before or after a resume restores the global state) changes no random draw.
            generator=torch.Generator().manual_seed(seed),
        )

    def current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class ShapesDataModule(TextClipsDataModule):
    """The embedded captioned moving-shapes dataset (procedural, no download).

    The featurizer is fitted on the training captions and every caption is featurized once in
    ``setup``; batches only index into that array.
    """

    def __init__(
        self,
        featurizer: FastTextFeaturizer,
        num_clips: int = 10000,
        frames: int = 32,
        size: int = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        held_out: Sequence[Mapping[str, str]] = (),
        vocabulary: Mapping[str, Any] | None = None,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
        with_video: bool = True,
        contrast: Sequence[str] = (),
    ) -> None:
        super().__init__(featurizer, batch_size, num_workers, with_video)
        self.contrast = list(contrast)
        self.shapes_kwargs = dict(
            num_clips=num_clips,
            frames=frames,
            size=size,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            held_out=[dict(h) for h in held_out],
            seed=seed,
            **{k: (dict(v) if isinstance(v, Mapping) else list(v)) for k, v in (vocabulary or {}).items()},
        )
        self.shapes: CaptionedShapes | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.shapes is not None:
            return
        self.shapes = CaptionedShapes(**self.shapes_kwargs)
        train_idx = self.shapes.split_indices("train")
        if len(train_idx) == 0:
            raise T2VError(
                "data: the train split is empty; raise data.num_clips or lower data.val_fraction/test_fraction"
            )
        splits = {
            split: ShapesClips(self.shapes, self.shapes.split_indices(split), self.with_video)
            for split in ("train", "val", "test")
        }
        contrast = ContrastCaptions(self.shapes.labels, train_idx, self.contrast) if self.contrast else None
        self.attach_text(self.shapes.captions, self.shapes.clip_ids, train_idx, splits, contrast)

    def fingerprint(self) -> str:
        """Identifies the data a model was trained on (recorded in artifact manifests)."""
        self.setup()
        return self.shapes.fingerprint()
