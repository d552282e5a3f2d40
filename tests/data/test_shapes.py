"""Tests for the procedural captioned-moving-shapes dataset (t2v.data.shapes)."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from t2v.data.shapes import (
    ATTRIBUTES,
    DEFAULT_COLOURS,
    DIRECTION_VECTORS,
    REFERENCE_FRAMES,
    SHAPE_MASKS,
    SYNONYMS,
    CaptionedShapes,
    ShapesClips,
)
from t2v.errors import T2VError

# Every supported shape and direction, so tests cover what the defaults leave out.
FULL_VOCAB = dict(
    shapes=tuple(SHAPE_MASKS),
    directions=tuple(DIRECTION_VECTORS),
    sizes={"small": 0.12, "medium": 0.16, "large": 0.2},
)
RESOLUTIONS = [(16, 32), (32, 64)]  # (frames, size): quickstart and full size
# Written out independently of the module's table, in image coordinates (y grows downwards).
EXPECTED_HEADING = {
    "left": (-1, 0),
    "right": (1, 0),
    "up": (0, -1),
    "down": (0, 1),
    "up-left": (-1, -1),
    "up-right": (1, -1),
    "down-left": (-1, 1),
    "down-right": (1, 1),
}


@pytest.fixture(scope="module")
def default_shapes() -> CaptionedShapes:
    return CaptionedShapes(num_clips=2000, seed=3)


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_data() -> None:
    a, b = CaptionedShapes(num_clips=300, seed=7), CaptionedShapes(num_clips=300, seed=7)
    for attr in ATTRIBUTES:
        np.testing.assert_array_equal(a.labels[attr], b.labels[attr])
    assert a.captions == b.captions
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(a.split_indices(split), b.split_indices(split))
    np.testing.assert_array_equal(a.render(range(40)), b.render(range(40)))
    assert a.fingerprint() == b.fingerprint()


def test_different_seed_gives_different_data() -> None:
    a, b = CaptionedShapes(num_clips=300, seed=7), CaptionedShapes(num_clips=300, seed=8)
    assert a.captions != b.captions
    assert not np.array_equal(a.labels["shape"], b.labels["shape"])
    assert not np.array_equal(a.render(range(20)), b.render(range(20)))
    assert a.fingerprint() != b.fingerprint()


def test_clip_depends_only_on_seed_index_and_settings() -> None:
    small, large = CaptionedShapes(num_clips=100, seed=1), CaptionedShapes(num_clips=200, seed=1)
    for i in (0, 5, 99):
        assert small.attributes_of(i) == large.attributes_of(i)
        assert small.captions[i] == large.captions[i]
        np.testing.assert_array_equal(small.render([i]), large.render([i]))
    # Nor on which other clips are rendered alongside it.
    together = large.render([3, 5, 150])
    np.testing.assert_array_equal(together[1], large.render([5])[0])
    np.testing.assert_array_equal(together[2], large.render([150])[0])


def test_fingerprint_tracks_every_setting() -> None:
    base = CaptionedShapes(num_clips=50)
    assert re.fullmatch(r"[0-9a-f]{16}", base.fingerprint())
    variants = [
        CaptionedShapes(num_clips=51),
        CaptionedShapes(num_clips=50, frames=17),
        CaptionedShapes(num_clips=50, speeds={"slowly": 0.02, "quickly": 0.05}),
        CaptionedShapes(num_clips=50, held_out=[{"shape": "circle"}]),
        CaptionedShapes(num_clips=50, val_fraction=0.2),
    ]
    prints = {base.fingerprint(), *(v.fingerprint() for v in variants)}
    assert len(prints) == 1 + len(variants)


# ----------------------------------------------------------------------------- captions


@pytest.mark.parametrize("settings", [{}, FULL_VOCAB], ids=["default", "full"])
def test_every_caption_names_exactly_its_clip_attributes(settings: dict) -> None:
    shapes = CaptionedShapes(num_clips=1500, seed=11, **settings)
    for i, caption in enumerate(shapes.captions):
        assert shapes.parse_caption(caption) == shapes.attributes_of(i), caption
    # Captions draw on several templates, not one fixed sentence.
    assert len({c.split()[0] for c in shapes.captions}) >= 4


def test_labels_index_the_vocabulary(default_shapes: CaptionedShapes) -> None:
    for attr in ATTRIBUTES:
        labels = default_shapes.labels[attr]
        assert labels.dtype == np.int64 and labels.shape == (2000,)
        # Drawn uniformly: every value occurs, none dominates.
        counts = np.bincount(labels, minlength=len(default_shapes.vocab[attr]))
        assert counts.min() > 0.5 * 2000 / len(counts)
    assert default_shapes.attributes_of(7) == {
        attr: default_shapes.vocab[attr][default_shapes.labels[attr][7]] for attr in ATTRIBUTES
    }
    assert default_shapes.clip_ids[42] == "shapes-000042"


def test_all_combinations_round_trip_through_captions() -> None:
    shapes = CaptionedShapes(num_clips=1, **FULL_VOCAB)
    for values in itertools.product(*(shapes.vocab[a] for a in ATTRIBUTES)):
        combo = dict(zip(ATTRIBUTES, values, strict=True))
        for variant in (*range(8), 10**12 + 3):
            caption = shapes.caption_for(combo, variant)
            assert shapes.parse_caption(caption) == combo, caption


def test_every_synonym_is_used_and_parses_back() -> None:
    shapes = CaptionedShapes(num_clips=1, **FULL_VOCAB)
    base = shapes.attributes_of(0)
    for attr in ATTRIBUTES:
        for value in shapes.vocab[attr]:
            combo = {**base, attr: value}
            captions = {shapes.caption_for(combo, v) for v in range(500)}
            for caption in captions:
                assert shapes.parse_caption(caption) == combo, caption
            for phrase in SYNONYMS[attr].get(value, (value,)):
                pattern = rf"(?<![\w-]){re.escape(phrase)}(?![\w-])"
                assert any(re.search(pattern, c) for c in captions), (attr, value, phrase)


def test_synonyms_are_unambiguous() -> None:
    owners: dict[str, tuple[str, str]] = {}
    for attr, table in SYNONYMS.items():
        for value, phrases in table.items():
            for phrase in phrases:
                assert owners.setdefault(phrase, (attr, value)) == (attr, value), phrase
    shapes = CaptionedShapes(num_clips=1, **FULL_VOCAB)
    for phrase, (attr, value) in owners.items():
        if value in shapes.vocab[attr]:
            assert shapes.parse_caption(f"a thing {phrase} here") == {attr: value}, phrase
    # Colours have no synonym table; their names stand for themselves.
    assert shapes.parse_caption("something red") == {"colour": "red"}


def test_vocabulary_whose_phrases_collide_is_rejected() -> None:
    with pytest.raises(T2VError, match="'ball'"):
        CaptionedShapes(num_clips=5, colours={"ball": (200, 10, 10), "red": (220, 40, 40)})


def test_caption_for_rejects_bad_attributes(default_shapes: CaptionedShapes) -> None:
    good = default_shapes.attributes_of(0)
    with pytest.raises(T2VError, match="colour.*pink"):
        default_shapes.caption_for({**good, "colour": "pink"})
    with pytest.raises(T2VError, match="speed"):
        default_shapes.caption_for({k: v for k, v in good.items() if k != "speed"})


def test_parse_caption_partial_and_conflicting(default_shapes: CaptionedShapes) -> None:
    assert default_shapes.parse_caption("A Big BALL moving Up") == {
        "shape": "circle",
        "size": "large",
        "direction": "up",
    }
    assert default_shapes.parse_caption("a cat sleeps") == {}
    with pytest.raises(T2VError, match="two colour values"):
        default_shapes.parse_caption("a red and blue ball")


# ----------------------------------------------------------------------------- splits


def test_splits_are_disjoint_cover_everything_and_follow_fractions(
    default_shapes: CaptionedShapes,
) -> None:
    parts = {s: default_shapes.split_indices(s) for s in ("train", "val", "test")}
    joined = np.concatenate(list(parts.values()))
    assert len(joined) == len(np.unique(joined)) == 2000
    np.testing.assert_array_equal(np.sort(joined), np.arange(2000))
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (1600, 200, 200)
    with pytest.raises(T2VError, match="valid splits: train, val, test"):
        default_shapes.split_indices("validation")


def test_held_out_combinations_only_in_test() -> None:
    held = [{"shape": "circle", "colour": "red"}, {"colour": "blue", "direction": "up"}]
    shapes = CaptionedShapes(num_clips=2000, held_out=held, seed=5)
    matches = np.zeros(2000, dtype=bool)
    for combo in held:
        hit = np.ones(2000, dtype=bool)
        for attr, value in combo.items():
            hit &= shapes.labels[attr] == shapes.vocab[attr].index(value)
        assert hit.sum() > 10  # each combination really occurs
        matches |= hit
    np.testing.assert_array_equal(shapes.is_held_out(), matches)

    for split in ("train", "val"):
        for i in shapes.split_indices(split):
            attrs = shapes.attributes_of(i)
            assert not any(all(attrs[a] == v for a, v in c.items()) for c in held), (split, attrs)
    test = set(shapes.split_indices("test").tolist())
    assert set(np.flatnonzero(matches).tolist()) <= test
    # The remaining clips are still split by the fractions (10% each of the non-held-out).
    free = int((~matches).sum())
    assert len(shapes.split_indices("val")) == round(0.1 * free)
    assert len(test) == round(0.1 * free) + int(matches.sum())


def test_unknown_held_out_attribute_is_a_clear_error() -> None:
    with pytest.raises(T2VError, match=r"held_out\[1\].*'color'.*shape, colour, size, direction, speed"):
        CaptionedShapes(num_clips=10, held_out=[{"shape": "star"}, {"color": "red"}])


def test_unknown_held_out_value_is_a_clear_error() -> None:
    with pytest.raises(T2VError, match=r"held_out\[0\].*'pink'.*red, green, blue"):
        CaptionedShapes(num_clips=10, held_out=[{"colour": "pink"}])


def test_holding_out_everything_is_rejected() -> None:
    with pytest.raises(T2VError, match="no clip is left for training"):
        CaptionedShapes(num_clips=50, held_out=[{"size": "small"}, {"size": "large"}])


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"shapes": ("circle", "hexagon")}, "hexagon"),
        ({"directions": ("left", "sideways")}, "sideways"),
        ({"colours": {"black": (10, 10, 10)}}, "too dark"),
        ({"sizes": {"huge": 0.9}}, "huge"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "sum to less than 1"),
        ({"frames": 1}, "frames"),
    ],
)
def test_bad_settings_raise_t2v_error(settings: dict, needle: str) -> None:
    with pytest.raises(T2VError, match=needle):
        CaptionedShapes(num_clips=10, **settings)


# ----------------------------------------------------------------------------- pixels


def _shape_masks(shapes: CaptionedShapes, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rendered clips and where they differ from their own background, (n, T, H, W)."""
    clips = shapes.render(indices)
    background = shapes.render_background(indices)
    return clips, (clips != background[:, None]).any(axis=-1)


@pytest.mark.parametrize(("frames", "size"), RESOLUTIONS)
def test_render_layout(frames: int, size: int) -> None:
    shapes = CaptionedShapes(num_clips=20, frames=frames, size=size)
    clips = shapes.render(np.arange(20))
    assert clips.shape == (20, frames, size, size, 3) and clips.dtype == np.uint8
    assert shapes.render([]).shape == (0, frames, size, size, 3)
    with pytest.raises(IndexError):
        shapes.render([20])


@pytest.mark.parametrize(("frames", "size"), RESOLUTIONS)
def test_shape_colour_is_the_labelled_colour(frames: int, size: int) -> None:
    shapes = CaptionedShapes(num_clips=120, frames=frames, size=size, seed=2, **FULL_VOCAB)
    palette = np.array([shapes.colours[c] for c in shapes.vocab["colour"]], dtype=float)
    clips, masks = _shape_masks(shapes, np.arange(120))
    for i in range(120):
        # The shape is substantial in every frame, not a stray pixel (the thin star covers
        # about half the area of the circle of the same size).
        assert masks[i].sum(axis=(1, 2)).min() >= 0.4 * np.pi * (0.12 * size) ** 2
        mean = clips[i][masks[i]].astype(float).mean(axis=0)
        nearest = np.argmin(((palette - mean) ** 2).sum(axis=1))
        assert nearest == shapes.labels["colour"][i]
        np.testing.assert_allclose(mean, palette[nearest], atol=1.0)


@pytest.mark.parametrize(("frames", "size"), RESOLUTIONS)
def test_background_is_dark_and_varies_per_clip(frames: int, size: int) -> None:
    shapes = CaptionedShapes(num_clips=50, frames=frames, size=size)
    background = shapes.render_background(np.arange(50)).astype(int)
    darkest_shape = min(max(rgb) for rgb in DEFAULT_COLOURS.values())
    assert background.max() < darkest_shape - 30
    assert len({b.tobytes() for b in background}) == 50
    # Each background has some gradient, not a flat fill.
    assert (background.reshape(50, -1, 3).std(axis=1).max(axis=1) > 0).mean() > 0.8


@pytest.mark.parametrize(("frames", "size"), RESOLUTIONS)
def test_shape_moves_in_labelled_direction_at_labelled_speed(frames: int, size: int) -> None:
    shapes = CaptionedShapes(num_clips=160, frames=frames, size=size, seed=4, **FULL_VOCAB)
    _, masks = _shape_masks(shapes, np.arange(160))
    ys, xs = np.mgrid[0:size, 0:size]
    travelled = {name: [] for name in shapes.vocab["speed"]}
    for i in range(160):
        first, last = masks[i, 0], masks[i, -1]
        start = np.array([xs[first].mean(), ys[first].mean()])
        end = np.array([xs[last].mean(), ys[last].mean()])
        heading = np.array(EXPECTED_HEADING[shapes.vocab["direction"][shapes.labels["direction"][i]]])
        direction = heading / np.linalg.norm(heading)
        speed_name = shapes.vocab["speed"][shapes.labels["speed"][i]]
        expected = shapes.speeds[speed_name] * (REFERENCE_FRAMES - 1) * size
        along = float((end - start) @ direction)
        across = float((end - start) @ np.array([-direction[1], direction[0]]))
        assert along > 0.8 * expected, (i, along, expected)
        assert along < 1.1 * expected + 0.5
        assert abs(across) < 0.05 * size
        travelled[speed_name].append(along)
    assert np.mean(travelled["quickly"]) > 1.6 * np.mean(travelled["slowly"])


def test_every_supported_shape_renders_distinctly() -> None:
    silhouettes = {}
    for name in SHAPE_MASKS:
        shapes = CaptionedShapes(num_clips=400, size=64, shapes=(name,), seed=9)
        large = np.flatnonzero(shapes.labels["size"] == shapes.vocab["size"].index("large"))[:1]
        _, masks = _shape_masks(shapes, large)
        frame = masks[0, 0]
        rows, cols = np.flatnonzero(frame.any(axis=1)), np.flatnonzero(frame.any(axis=0))
        silhouettes[name] = frame[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        # Every shape spans roughly the same box: its size label means the same thing.
        assert 0.75 * 2 * 0.2 * 64 <= len(rows) <= 1.25 * 2 * 0.2 * 64, name
    fill = {name: s.mean() for name, s in silhouettes.items()}
    assert fill["square"] > 0.95 and 0.7 < fill["circle"] < 0.85 and fill["triangle"] < 0.6
    assert fill["star"] < fill["triangle"] and fill["cross"] < 0.7
    assert len({round(f, 2) for f in fill.values()}) == len(fill)


# ----------------------------------------------------------------------------- torch dataset


@pytest.mark.parametrize(("frames", "size"), RESOLUTIONS)
def test_shapes_clips_items_and_batches(frames: int, size: int) -> None:
    shapes = CaptionedShapes(num_clips=60, frames=frames, size=size, seed=6)
    train = shapes.split_indices("train")
    dataset = ShapesClips(shapes, train)
    assert len(dataset) == len(train)

    item = dataset[3]
    index = int(train[3])
    assert item["video"].shape == (3, frames, size, size) and item["video"].dtype == torch.float32
    assert item["video"].min() >= -1.0 and item["video"].max() <= 1.0
    expected = torch.from_numpy(shapes.render([index])[0]).permute(3, 0, 1, 2).float() / 127.5 - 1.0
    torch.testing.assert_close(item["video"], expected)
    assert item["caption"] == shapes.captions[index] and item["clip_id"] == shapes.clip_ids[index]
    assert item["index"].dtype == torch.int64 and int(item["index"]) == index
    assert {a: int(t) for a, t in item["labels"].items()} == {a: int(shapes.labels[a][index]) for a in ATTRIBUTES}

    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["video"].shape == (4, 3, frames, size, size)
    assert batch["labels"]["colour"].dtype == torch.int64 and batch["labels"]["colour"].shape == (4,)
    assert batch["index"].tolist() == train[:4].tolist() and len(batch["caption"]) == 4
    # The DataLoader fetches a batch in one call (one vectorised render); it must equal the items one by one.
    picked = [5, 0, 3]
    for fetched, single in zip(dataset.__getitems__(picked), (dataset[i] for i in picked), strict=True):
        assert fetched.keys() == single.keys()
        assert (fetched["caption"], fetched["clip_id"]) == (single["caption"], single["clip_id"])
        assert torch.equal(fetched["video"], single["video"]) and torch.equal(fetched["index"], single["index"])
        assert {a: int(t) for a, t in fetched["labels"].items()} == {a: int(t) for a, t in single["labels"].items()}


def test_shapes_clips_without_video() -> None:
    shapes = CaptionedShapes(num_clips=30)
    item = ShapesClips(shapes, shapes.split_indices("val"), with_video=False)[0]
    assert "video" not in item and set(item) == {"caption", "labels", "clip_id", "index"}
    with pytest.raises(IndexError):
        ShapesClips(shapes, np.array([30]))


def test_caption_features_join_batched_fetches(tmp_path) -> None:
    from t2v.data.datamodule import WithText
    from t2v.text.featurizer import FastTextFeaturizer

    shapes = CaptionedShapes(num_clips=40, frames=4, size=16, seed=2)
    featurizer = FastTextFeaturizer(dim=8, max_words=6, epochs=1, cache_dir=str(tmp_path)).fit(list(shapes.captions))
    slots, n_words = featurizer.word_slots(list(shapes.captions))
    train = shapes.split_indices("train")
    dataset = WithText(ShapesClips(shapes, train), slots, n_words, featurizer.word_table())
    features, _ = featurizer.transform([shapes.captions[i] for i in train[[4, 1]]])
    fetched = dataset.__getitems__([4, 1])
    assert [int(item["index"]) for item in fetched] == train[[4, 1]].tolist()
    for item, single, expected in zip(fetched, (dataset[4], dataset[1]), features, strict=True):
        assert np.array_equal(item["text"].numpy(), expected) and torch.equal(item["text"], single["text"])
        assert torch.equal(item["video"], single["video"]) and int(item["text_len"]) == int(single["text_len"])


def test_contrast_captions_differ_in_exactly_one_named_attribute_and_come_from_training() -> None:
    from t2v.data.datamodule import ContrastCaptions

    held_out = [{"shape": "circle", "colour": "red"}]
    shapes = CaptionedShapes(num_clips=600, frames=4, size=16, seed=1, held_out=held_out)
    train = shapes.split_indices("train")
    contrast = ContrastCaptions(shapes.labels, train, ["shape", "size"])
    rows = np.concatenate([train, shapes.split_indices("test")])
    partners = contrast.sample(rows)
    differs = np.stack([shapes.labels[a][rows] != shapes.labels[a][partners] for a in ATTRIBUTES], axis=1)
    with_options = np.array([len(contrast.candidates[r]) > 0 for r in rows])
    assert with_options.mean() > 0.9
    assert (differs[with_options].sum(1) == 1).all()
    assert not differs[with_options][:, [ATTRIBUTES.index(a) for a in ("colour", "direction", "speed")]].any()
    shown = differs[with_options]
    assert shown[:, ATTRIBUTES.index("shape")].any() and shown[:, ATTRIBUTES.index("size")].any()
    assert np.isin(partners, train).all() and not shapes.is_held_out()[partners].any()
    # A clip with no caption one attribute away still gets one that says something else, never its own.
    assert (~with_options).any() and differs[~with_options].any(axis=1).all()


def test_contrast_must_name_attributes_of_the_data() -> None:
    from t2v.data.datamodule import ContrastCaptions

    shapes = CaptionedShapes(num_clips=40, frames=4, size=16, seed=2)
    with pytest.raises(T2VError, match=r"data.contrast=\['texture'\]"):
        ContrastCaptions(shapes.labels, shapes.split_indices("train"), ["texture"])


def test_training_batches_carry_the_contrast_captions_features(tmp_path) -> None:
    from t2v.data.datamodule import ShapesDataModule
    from t2v.text.featurizer import FastTextFeaturizer

    featurizer = FastTextFeaturizer(dim=8, max_words=6, epochs=1, cache_dir=str(tmp_path))
    datamodule = ShapesDataModule(featurizer, num_clips=1000, frames=4, size=16, batch_size=8, contrast=["shape"])
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    shapes = datamodule.shapes
    contrast = datamodule.datasets["train"].contrast
    assert all(len(contrast.candidates[int(i)]) for i in batch["index"])  # 1,000 clips: each has some
    for features, index in zip(batch["contrast_text"], batch["index"], strict=True):
        # The features are those of a training caption of the same clip but for the shape.
        expected, _ = featurizer.transform([shapes.captions[i] for i in contrast.candidates[int(index)]])
        assert any(np.array_equal(features.numpy(), row) for row in expected)
    assert "contrast_text" not in next(iter(datamodule.val_dataloader()))


def test_each_process_loads_its_share_of_the_global_batch_even_when_set_up_before_the_trainer(tmp_path) -> None:
    """A GAN stage sets its data up before trainer.fit (its validation judge needs it), when the world size is not
    known yet: the loaders still take each process's share, as Lightning's trainer sees the world."""
    from types import SimpleNamespace

    from t2v.data.datamodule import ShapesDataModule
    from t2v.text.featurizer import FastTextFeaturizer

    featurizer = FastTextFeaturizer(dim=8, max_words=6, epochs=1, cache_dir=str(tmp_path))
    datamodule = ShapesDataModule(featurizer, num_clips=200, frames=4, size=16, batch_size=8)
    datamodule.setup()
    assert datamodule.train_dataloader().batch_size == 8
    datamodule.trainer = SimpleNamespace(world_size=4, current_epoch=0)
    assert datamodule.train_dataloader().batch_size == datamodule.val_dataloader().batch_size == 2
    datamodule.trainer = SimpleNamespace(world_size=3, current_epoch=0)
    with pytest.raises(T2VError, match="data.batch_size=8 does not divide over 3 processes; use a multiple of 3"):
        datamodule.train_dataloader()
