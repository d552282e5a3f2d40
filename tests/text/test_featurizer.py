"""FastTextFeaturizer: tokenizing, padding, vector files, training + cache, errors, save/load."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest

from t2v.errors import T2VError
from t2v.text import FastTextFeaturizer
from t2v.text import featurizer as featurizer_module
from t2v.text.featurizer import printable

COLOURS = ["red", "green", "blue", "yellow", "purple", "white"]
# Small settings so a training takes a fraction of a second and a model file is ~100 KB.
SMALL = {"dim": 16, "bucket": 500}
CORPUS = [
    "a small red circle moves to the left",
    "the large blue square slides upwards",
    "a large green triangle moves to the right",
    "the small yellow star slides downwards",
] * 10


def shapes_captions(n: int, seed: int = 0) -> list[str]:
    """Synthetic captions in which every colour appears in exactly the same contexts."""
    rng = random.Random(seed)
    moves = {"left": "to the left", "right": "to the right", "up": "upwards", "down": "downwards"}
    shapes, verbs = ["circle", "square", "triangle", "star"], ["moves", "slides", "drifts"]
    return [
        f"{rng.choice(['a', 'the'])} {rng.choice(['small', 'large'])} {rng.choice(COLOURS)} "
        f"{rng.choice(shapes)} {rng.choice(verbs)} {moves[rng.choice(list(moves))]}"
        for _ in range(n)
    ]


def write_vec(path: Path, vectors: dict[str, list[float]]) -> Path:
    dim = len(next(iter(vectors.values())))
    lines = [f"{len(vectors)} {dim}"] + [f"{w} " + " ".join(map(str, v)) + " " for w, v in vectors.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def vec_file(tmp_path: Path) -> Path:
    return write_vec(
        tmp_path / "tiny.vec",
        {
            "red": [1.0, 0.0, 0.0],
            "circle": [0.0, 2.0, 0.0],
            "a": [0.0, 0.0, 3.0],
            "b": [1.0, 1.0, 0.0],
            "c": [0.0, 1.0, 1.0],
            "d": [1.0, 0.0, 1.0],
            "e": [2.0, 2.0, 2.0],
        },
    )


@pytest.fixture
def trained_bin(tmp_path: Path) -> Path:
    """A small fastText skipgram .bin trained on CORPUS (via the featurizer, see its module doc)."""
    fitted = FastTextFeaturizer(postprocess="none", cache_dir=str(tmp_path / "cache"), **SMALL).fit(CORPUS)
    fitted.save(tmp_path / "trained")
    return tmp_path / "trained" / "model.bin"


def cosines(vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit @ unit.T


def test_tokenize_lowercases_and_keeps_letters_digits_apostrophes() -> None:
    tok = FastTextFeaturizer(vectors=None).tokenize
    assert tok("A Red, CIRCLE--moves 2x_left!") == ["a", "red", "circle", "moves", "2x", "left"]
    assert tok("it's 'quoted' don't") == ["it's", "quoted", "don't"]
    assert tok("Ein GRÜNER Kreis, éclair (déçu)") == ["ein", "grüner", "kreis", "éclair", "déçu"]
    # A decomposed "é" (e + combining accent) must not split the word.
    assert tok("cafe\u0301 noir") == ["café", "noir"]
    assert tok(" ...  ") == []


def test_control_characters_and_escape_sequences_separate_words_and_are_never_echoed() -> None:
    tok = FastTextFeaturizer(vectors=None).tokenize
    assert tok("a red\ncircle\r\nmoves\tleft") == ["a", "red", "circle", "moves", "left"]  # split, not merged
    assert tok("red\x1b[31mcircle\x1b[0m") == ["red", "circle"]  # no "31mcircle"
    assert tok("red\x1b]0;title\x07circle") == ["red", "circle"]  # a window title is not a word either
    assert tok("col\u00adour red\u200bcircle") == ["colour", "red", "circle"]  # a soft hyphen joins, a ZWSP splits
    assert printable("a red\x1b[1;31m circle\nmoves\x00 \u202eleft\x9b2J") == "a red circle moves left"
    assert printable("a small red circle") == "a small red circle"


def test_a_cut_caption_is_said_once_with_the_words_kept(vec_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = FastTextFeaturizer(vectors=str(vec_file), dim=3, max_words=4, postprocess="none")
    with caplog.at_level(logging.WARNING, logger="t2v.text.featurizer"):
        f.transform(["red circle", "a b c d e red \x1b[31m", "a b c d e"])
        f.transform(["a b c d e red"])  # later batches of the same run say nothing more
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "2 of 3 captions" in message and "featurizer.max_words=4" in message and "first 4 words" in message
    assert "\x1b" not in message and "\n" not in message  # one clean line
    assert f.stats["truncated"] == 3


def test_padding_truncation_and_counters(vec_file: Path) -> None:
    f = FastTextFeaturizer(vectors=str(vec_file), dim=3, max_words=4, postprocess="none")
    assert f.out_dim == 12
    features, n_words = f.transform(["Red circle", "a b c d e red"])
    assert features.shape == (2, 12) and features.dtype == np.float32
    assert n_words.tolist() == [2, 4] and n_words.dtype == np.int64
    np.testing.assert_array_equal(features[0, :6], [1, 0, 0, 0, 2, 0])
    np.testing.assert_array_equal(features[0, 6:], np.zeros(6))  # padding stays exactly zero
    np.testing.assert_array_equal(features[1], [0, 0, 3, 1, 1, 0, 0, 1, 1, 1, 0, 1])  # cut after "d"
    assert f.stats == {"captions": 2, "truncated": 1, "unknown_words": 0}
    assert f(["red"])[1].tolist() == [1]  # __call__ is transform, counters accumulate
    assert f.stats["captions"] == 3


def test_vec_unknown_words_are_zero_and_counted(vec_file: Path) -> None:
    f = FastTextFeaturizer(vectors=str(vec_file), dim=3, max_words=3, postprocess="none")
    features, n_words = f.transform(["red zebra circle", "zebra okapi"])
    assert n_words.tolist() == [3, 2]  # unknown words still take their slot
    np.testing.assert_array_equal(features[0, 3:6], np.zeros(3))
    np.testing.assert_array_equal(features[0, 6:9], [0, 2, 0])
    np.testing.assert_array_equal(features[1], np.zeros(9))
    assert f.stats["unknown_words"] == 3
    f.transform(["zebra"])
    assert f.stats["unknown_words"] == 4


def test_center_unit_uses_the_fitted_vocabulary_mean(vec_file: Path) -> None:
    f = FastTextFeaturizer(vectors=str(vec_file), dim=3, max_words=3)
    with pytest.raises(T2VError, match="call fit"):
        f.transform(["red"])
    f.fit(["red circle", "a red zebra"])  # vocabulary with vectors: red, circle, a
    mean = np.array([1.0, 2.0, 3.0]) / 3
    features, _ = f.transform(["red zebra"])
    expected = (np.array([1.0, 0.0, 0.0]) - mean) / np.linalg.norm(np.array([1.0, 0.0, 0.0]) - mean)
    np.testing.assert_allclose(features[0, :3], expected, rtol=1e-6)
    np.testing.assert_array_equal(features[0, 3:], np.zeros(6))  # unknown word and padding: zeros

    unit = FastTextFeaturizer(vectors=str(vec_file), dim=3, max_words=1, postprocess="unit")
    np.testing.assert_allclose(unit.transform(["e"])[0][0], np.full(3, 3**-0.5), rtol=1e-6)


def test_bin_gives_subword_vectors_to_unseen_words(trained_bin: Path) -> None:
    f = FastTextFeaturizer(vectors=str(trained_bin), postprocess="none", max_words=2, **SMALL)
    features, n_words = f.transform(["circles zzyzx"])
    assert n_words.tolist() == [2]
    assert np.abs(features[0, :16]).sum() > 0  # "circles" shares n-grams with "circle"
    assert f.stats["unknown_words"] == 0
    known, _ = f.transform(["circle"])
    np.testing.assert_array_equal(known[0, :16], f._model.get_word_vector("circle"))


def test_new_words_are_named_with_how_they_are_read(tmp_path: Path, vec_file: Path) -> None:
    """Words no training caption used: a fastText model reads them from their subwords, a .vec file as zeros; both
    survive save and load, and only the words read (the first max_words) count."""
    trained = FastTextFeaturizer(cache_dir=str(tmp_path / "cache"), max_words=3, **SMALL).fit(CORPUS)
    assert trained.new_words("a small red circle") == {}
    assert trained.new_words("a reddish circles zzz") == {"reddish": "vector", "circles": "vector"}
    trained.save(tmp_path / "saved")
    restored = FastTextFeaturizer.load(tmp_path / "saved")
    assert restored.new_words("a reddish circles zzz") == {"reddish": "vector", "circles": "vector"}

    from_vec = FastTextFeaturizer(vectors=str(vec_file), dim=3, max_words=3).fit(["red circle"])
    assert from_vec.new_words("a red zebra") == {"a": "vector", "zebra": "zeros"}  # "a" is in the .vec only
    from_vec.save(tmp_path / "vec")
    assert FastTextFeaturizer.load(tmp_path / "vec").new_words("red zebra") == {"zebra": "zeros"}


def test_the_identity_of_a_featurizer_is_its_content_not_its_place(tmp_path: Path) -> None:
    trained = FastTextFeaturizer(cache_dir=str(tmp_path / "cache"), max_words=4, **SMALL).fit(CORPUS)
    trained.save(tmp_path / "a")
    trained.save(tmp_path / "b")
    other = FastTextFeaturizer(cache_dir=str(tmp_path / "cache"), max_words=5, **SMALL).fit(CORPUS)
    loaded = [FastTextFeaturizer.load(tmp_path / name).identity() for name in ("a", "b")]
    assert loaded == [trained.identity()] * 2 and other.identity() != trained.identity()


def test_a_model_saved_before_caption_words_were_kept_knows_them_from_its_vocabulary(tmp_path: Path) -> None:
    trained = FastTextFeaturizer(cache_dir=str(tmp_path / "cache"), max_words=4, **SMALL).fit(CORPUS)
    description = trained.save(tmp_path / "saved")
    (tmp_path / "saved" / "caption_words.json").unlink()
    del description["files"]["caption_words"]
    (tmp_path / "saved" / "featurizer.json").write_text(json.dumps(description), encoding="utf-8")
    assert FastTextFeaturizer.load(tmp_path / "saved").new_words("a reddish circle") == {"reddish": "vector"}


def test_wrong_dimension_names_path_and_dims(vec_file: Path, trained_bin: Path) -> None:
    with pytest.raises(T2VError) as vec_error:
        FastTextFeaturizer(vectors=str(vec_file), dim=300)
    assert str(vec_file) in str(vec_error.value) and "3-d" in str(vec_error.value)
    assert "featurizer.dim=300" in str(vec_error.value) and "set featurizer.dim=3" in str(vec_error.value)
    with pytest.raises(T2VError) as bin_error:
        FastTextFeaturizer(vectors=str(trained_bin), dim=300)
    assert str(trained_bin) in str(bin_error.value) and "set featurizer.dim=16" in str(bin_error.value)


def test_missing_and_unsupported_vector_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.bin"
    with pytest.raises(T2VError) as error:
        FastTextFeaturizer(vectors=str(missing))
    assert str(missing) in str(error.value) and "featurizer.vectors=<path to .bin or .vec>" in str(error.value)
    assert "null" in str(error.value)
    text_file = tmp_path / "words.txt"
    text_file.write_text("2 3\n")
    with pytest.raises(T2VError, match=r"unsupported suffix '\.txt'"):
        FastTextFeaturizer(vectors=str(text_file))


def test_empty_caption_names_the_clip(vec_file: Path) -> None:
    f = FastTextFeaturizer(vectors=str(vec_file), dim=3, postprocess="none")
    with pytest.raises(T2VError) as error:
        f.transform(["red", "?!", "circle"], ids=["clip-0", "clip-1", "clip-2"])
    assert "clip-1" in str(error.value) and "fix or remove" in str(error.value)
    with pytest.raises(T2VError, match="#1"):
        f.transform(["red", "   "])
    assert f.stats["captions"] == 0  # a failed call counts nothing


def test_transform_before_fit_and_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(T2VError, match=r"call fit\(captions\) before transform"):
        FastTextFeaturizer(cache_dir=str(tmp_path)).transform(["a red circle"])
    with pytest.raises(T2VError, match="featurizer.postprocess='pca'"):
        FastTextFeaturizer(postprocess="pca")
    with pytest.raises(T2VError, match="featurizer.max_words=0"):
        FastTextFeaturizer(max_words=0)


def test_training_failure_is_a_clear_error(tmp_path: Path) -> None:
    f = FastTextFeaturizer(min_count=1000, cache_dir=str(tmp_path), **SMALL)
    with pytest.raises(T2VError, match="fastText training failed.*featurizer.min_count"):
        f.fit(CORPUS)


def test_training_is_deterministic(tmp_path: Path) -> None:
    captions = CORPUS + ["a white star drifts"]
    first = FastTextFeaturizer(cache_dir=str(tmp_path / "one"), **SMALL).fit(CORPUS)
    second = FastTextFeaturizer(cache_dir=str(tmp_path / "two"), **SMALL).fit(CORPUS)
    assert first._model_file != second._model_file  # both really trained
    a, b = first.transform(captions)[0], second.transform(captions)[0]
    assert np.abs(a).sum() > 0
    np.testing.assert_array_equal(a, b)


def test_fit_reuses_the_cached_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainings: list[Path] = []
    train = featurizer_module._train_skipgram
    monkeypatch.setattr(
        featurizer_module,
        "_train_skipgram",
        lambda text, settings, path: (trainings.append(path), train(text, settings, path)),
    )
    first = FastTextFeaturizer(cache_dir=str(tmp_path), **SMALL).fit(CORPUS)
    cached = first._model_file
    assert trainings == [cached] and cached.parent == tmp_path
    mtime = cached.stat().st_mtime_ns
    second = FastTextFeaturizer(cache_dir=str(tmp_path), **SMALL).fit(list(CORPUS))
    assert len(trainings) == 1 and second._model_file == cached and cached.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(first.transform(CORPUS)[0], second.transform(CORPUS)[0])
    # Another corpus or other settings train a new model; no temporary files are left behind.
    FastTextFeaturizer(cache_dir=str(tmp_path), **SMALL).fit(CORPUS[:2])
    FastTextFeaturizer(cache_dir=str(tmp_path), epochs=2, **SMALL).fit(CORPUS)
    assert len(trainings) == 3 and len(set(trainings)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in trainings)


def test_save_load_round_trip(tmp_path: Path, vec_file: Path) -> None:
    captions = ["a small red circle moves to the left", "an unseen zebra gallops", "the star"]
    trained = FastTextFeaturizer(cache_dir=str(tmp_path / "cache"), max_words=6, **SMALL).fit(CORPUS)
    description = trained.save(tmp_path / "saved")
    assert description["kind"] == "fasttext" and description["dim"] == 16 and description["max_words"] == 6
    assert description["postprocess"] == "center_unit" and set(description["files"]) == {
        "model",
        "mean",
        "caption_words",
    }
    restored = FastTextFeaturizer.load(tmp_path / "saved")
    assert restored.out_dim == 96
    np.testing.assert_array_equal(restored.transform(captions)[0], trained.transform(captions)[0])

    from_vec = FastTextFeaturizer(vectors=str(vec_file), dim=3, max_words=2).fit(["red circle a"])
    from_vec.save(tmp_path / "vec")
    vec_file.unlink()  # the saved folder must not need the original file
    again = FastTextFeaturizer.load(tmp_path / "vec")
    np.testing.assert_array_equal(again.transform(["red e", "zebra"])[0], from_vec.transform(["red e", "zebra"])[0])

    with pytest.raises(T2VError, match="featurizer.json is missing"):
        FastTextFeaturizer.load(tmp_path / "cache")


def test_colour_words_are_distinct_after_center_unit(tmp_path: Path) -> None:
    # The in-repo defaults (dim 300, epochs, lr, bucket) on ~2000 synthetic captions.
    f = FastTextFeaturizer(cache_dir=str(tmp_path)).fit(shapes_captions(2000))
    features, _ = f.transform(COLOURS)
    colour = cosines(features[:, : f.dim])
    mean_pairwise = colour[np.triu_indices(len(COLOURS), k=1)].mean()
    assert mean_pairwise < 0.5, f"colour words nearly collinear: mean cosine {mean_pairwise:.3f}"
    np.testing.assert_allclose(np.linalg.norm(features[:, : f.dim], axis=1), 1.0, rtol=1e-5)


def test_non_ascii_captions(tmp_path: Path) -> None:
    corpus = [
        "ein kleiner grüner kreis bewegt sich nach links",
        "un carré bleu glisse à droite",
        "赤い 円 が 左へ 動く",
    ] * 5
    f = FastTextFeaturizer(cache_dir=str(tmp_path), max_words=8, **SMALL).fit(corpus)
    features, n_words = f.transform(["Ein GRÜNER Kreis", "un carré", "赤い 円"])
    assert n_words.tolist() == [3, 2, 2]
    words = features.reshape(3, 8, 16)
    assert all(np.linalg.norm(words[i, j]) > 0.99 for i in range(3) for j in range(n_words[i]))
    assert f.stats["unknown_words"] == 0


def test_word_slots_gather_to_the_same_features(tmp_path) -> None:
    from t2v.text.featurizer import FastTextFeaturizer

    captions = ["a red circle moves left", "the blue square slides up slowly", "a red square"]
    featurizer = FastTextFeaturizer(dim=8, max_words=4, epochs=1, cache_dir=str(tmp_path)).fit(captions)
    features, n_words = featurizer.transform(captions + ["zebra red"])
    slots, n_words_too = featurizer.word_slots(captions + ["zebra red"])
    table = featurizer.word_table()
    assert slots.shape == (4, 4) and slots.dtype == np.int64 and np.array_equal(n_words, n_words_too)
    assert np.array_equal(table[slots].reshape(4, -1), features)
    assert np.array_equal(table[0], np.zeros(8, dtype=np.float32))  # padding and unknown words
