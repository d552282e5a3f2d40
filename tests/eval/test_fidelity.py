"""The scoring loop on generators whose answers are known: one that returns the real clip of each caption
(perfect fidelity, FD 0, no diversity) and one that returns noise (chance); then the reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from t2v.data.shapes import ATTRIBUTES
from t2v.eval import compare, report
from t2v.eval.fidelity import Hits, chance_levels, reference_set, score
from t2v.eval.probe import to_tensor

SAMPLES = 3


def perfect_generator(shapes):
    """Each caption's own real clip, num_samples times (a caption names every attribute, so any clip with it
    is right)."""
    first = {}
    for i, caption in enumerate(shapes.captions):
        first.setdefault(caption, i)

    def generate(captions: list[str], n: int, seed: int) -> dict[str, torch.Tensor]:
        video = to_tensor(shapes.render([first[c] for c in captions])).repeat_interleave(n, dim=0)
        return {"video": video, "images": video[:, :, 0]}

    return generate


def perfect_animator(shapes):
    """Each caption's own real clip, whatever first frame it is given."""
    generate = perfect_generator(shapes)
    return lambda frames, captions, n, seed: generate(captions, n, seed)["video"]


def still_animator(shapes):
    """The first frame held for the whole clip."""
    return lambda frames, captions, n, seed: (
        frames.repeat_interleave(n, 0).unsqueeze(2).expand(-1, -1, shapes.frames, -1, -1)
    )


def noise_generator(shapes):
    def generate(captions: list[str], n: int, seed: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        video = torch.rand(len(captions) * n, 3, shapes.frames, shapes.size, shapes.size, generator=g) * 2 - 1
        return {"video": video, "images": torch.rand(len(video), 3, shapes.size, shapes.size, generator=g) * 2 - 1}

    return generate


@pytest.fixture(scope="module")
def perfect(easy_shapes, trained_probe) -> dict[str, float]:
    probe, _ = trained_probe
    test = easy_shapes.split_indices("test")
    return score(perfect_generator(easy_shapes), probe, easy_shapes, test, num_samples=SAMPLES, batch_size=40,
                 reference_start=len(easy_shapes) + 5000, progress=False,
                 animate=perfect_animator(easy_shapes))  # fmt: skip


@pytest.fixture(scope="module")
def noise(easy_shapes, trained_probe) -> dict[str, float]:
    probe, _ = trained_probe
    # Every clip's caption: attributes drawn uniformly (the test split is dense in held-out combinations, the
    # training split short of them).
    captions = np.arange(len(easy_shapes))
    return score(noise_generator(easy_shapes), probe, easy_shapes, captions, num_samples=2, batch_size=64,
                 progress=False)  # fmt: skip


def test_real_clips_as_generated_score_like_the_real_ones(perfect: dict[str, float], noise: dict[str, float]) -> None:
    for kind, attributes in (("video", ATTRIBUTES), ("image", ("shape", "colour", "size"))):
        for subset in ("test", "held_out", "seen"):
            for attribute in (*attributes, "all"):
                key = f"{kind}/{subset}/{attribute}"
                assert perfect[f"generated/{key}"] == pytest.approx(perfect[f"real/{key}"]), key
                assert perfect[f"real/{key}"] >= 0.98, key
    # Not exactly 0: three copies of a set have a slightly smaller unbiased covariance than the set itself.
    for kind in ("video", "image"):
        assert perfect[f"quality/{kind}/fd"] < 1e-2 * noise[f"quality/{kind}/fd"]
        assert abs(perfect[f"quality/{kind}/kid"]) < 5e-2 * noise[f"quality/{kind}/kid"]
    # Fresh real clips are as far from the test clips as a good generator can hope to be: far closer than noise.
    for kind in ("video", "image"):
        assert 0 < perfect[f"quality/{kind}/fd_real"] < 0.2 * noise[f"quality/{kind}/fd"]
    # (A caption that several clips share is answered with the first of them, so this is close, not equal.)
    assert perfect["quality/temporal_change/generated"] == pytest.approx(
        perfect["quality/temporal_change/real"], rel=0.05
    )
    # Three copies of one clip: no diversity at all, where real clips of one caption differ.
    assert perfect["diversity/video/pixel/generated"] == 0.0
    assert perfect["diversity/video/pixel/real"] > 0.01
    assert perfect["diversity/image/feature/real"] > 0.0


def test_the_video_gan_alone_is_scored_from_the_real_first_frames(easy_shapes, trained_probe, perfect) -> None:
    for subset in ("test", "held_out"):
        for attribute in (*ATTRIBUTES, "all"):
            key = f"{subset}/{attribute}"
            assert perfect[f"generated/animated/{key}"] == pytest.approx(perfect[f"real/video/{key}"]), key
    assert perfect["generated/animated/held_out_balanced/all"] == perfect["generated/video/held_out_balanced/all"]
    assert perfect["quality/animated/fd"] == pytest.approx(perfect["quality/video/fd"])  # the same clips
    assert perfect["quality/animated/fd_real"] == perfect["quality/video/fd_real"]
    probe, _ = trained_probe
    test = easy_shapes.split_indices("test")[:24]
    still = score(perfect_generator(easy_shapes), probe, easy_shapes, test, num_samples=2, batch_size=12,
                  progress=False, animate=still_animator(easy_shapes))  # fmt: skip
    assert still["quality/temporal_change/animated"] == 0.0 and still["quality/temporal_change/generated"] > 0.001
    assert still["diversity/animated/pixel/generated"] == 0.0
    assert still["generated/animated/test/colour"] >= 0.9  # the first frame's colour is there, whatever the motion
    assert "real/animated/test/colour" not in still  # real clips are read once, as video
    assert any(row[0] == "animated" for row in report.value_rows(perfect, "held_out_"))


def test_random_videos_score_at_chance(easy_shapes, noise: dict[str, float]) -> None:
    metrics = noise
    chance = chance_levels(easy_shapes.vocab)
    for kind, attributes in (("video", ATTRIBUTES), ("image", ("shape", "colour", "size"))):
        for attribute in attributes:
            value = metrics[f"generated/{kind}/test/{attribute}"]
            assert abs(value - chance[f"chance/{attribute}"]) < 0.12, (kind, attribute, value)
        assert metrics[f"generated/{kind}/test/all"] < chance[f"chance/{kind}/all"] + 0.05
    assert metrics["quality/video/fd"] > 0.1 and metrics["quality/image/fd"] > 0.1  # noise is far from real clips


def test_the_real_reference_is_fresh_clips_with_the_test_splits_mix(easy_shapes) -> None:
    test = easy_shapes.split_indices("test")
    larger, reference = reference_set(easy_shapes, test, copies=3, start=len(easy_shapes) + 100)
    assert len(reference) == 3 * len(test) and reference.min() >= len(easy_shapes) + 100
    held = larger.is_held_out()
    assert held[reference].sum() == 3 * easy_shapes.is_held_out()[test].sum()


def test_chance_is_one_over_the_number_of_values(easy_shapes) -> None:
    chance = chance_levels(easy_shapes.vocab)
    assert chance["chance/colour"] == pytest.approx(1 / 3) and chance["chance/direction"] == 0.25
    assert chance["chance/image/all"] == pytest.approx(1 / (2 * 3 * 2))
    assert chance["chance/video/all"] == pytest.approx(1 / (2 * 3 * 2 * 4 * 2))


def test_reports_put_chance_beside_every_figure(perfect: dict[str, float], tmp_path: Path) -> None:
    trusted, short = report.probe_verdict(perfect, 0.98)
    assert trusted and not short
    assert not report.probe_verdict({**perfect, "real/video/test/shape": 0.5}, 0.98)[0]
    table = report.markdown(perfect, "perfect generator")
    row = next(line for line in table.splitlines() if line.startswith("| video | colour |"))
    assert row.endswith("| 33.3% |")  # chance beside it
    assert "held-out combinations" in table and "FD video" in table
    paths = report.write(tmp_path, {"experiment": "perfect", "metrics": perfect, "run_time_s": 1.0}, table)
    assert json.loads(Path(paths["metrics"]).read_text())["metrics"]["quality/video/fd"] == perfect["quality/video/fd"]
    side_by_side = compare.table([compare.load(tmp_path), compare.load(paths["metrics"])], ["a", "b"])
    header, _, first = side_by_side.splitlines()[:3]
    assert header == "| metric | chance | a | b |"
    assert first.startswith("| video shape, held-out, balanced over values (target ≥ 90%) | 50.0% | 100.0% | 100.0% |")
    assert "| video all, held-out, balanced over values (target ≥ 85%) |" in side_by_side
    assert table.index("balanced over the values each caption names") < table.index("## Fidelity: the probe")


def test_scoring_keeps_memory_to_one_chunk(easy_shapes, trained_probe) -> None:
    probe, _ = trained_probe
    seen: list[int] = []
    generate = perfect_generator(easy_shapes)

    def counting(captions: list[str], n: int, seed: int) -> dict[str, torch.Tensor]:
        seen.append(len(captions))
        return generate(captions, n, seed)

    indices = np.arange(10)
    score(counting, probe, easy_shapes, indices, num_samples=1, batch_size=4, progress=False)
    assert seen == [4, 4, 2]


def test_balanced_accuracy_exposes_a_generator_that_draws_one_value_for_every_caption() -> None:
    hits = Hits()
    # Four shapes, but the captions say "circle" 7 times in 10: always drawing a circle is right 70% of the time.
    truth = torch.tensor([0, 0, 0, 0, 0, 0, 0, 1, 2, 3])
    hits.add({"shape": torch.zeros(10, dtype=torch.long)}, {"shape": truth}, torch.zeros(10, dtype=torch.bool))
    vocab = {"shape": ["circle", "square", "triangle", "star", "hexagon"]}
    assert hits.accuracy("generated/video")["generated/video/test/shape"] == pytest.approx(0.7)
    by_value = hits.per_value("generated/video", vocab)
    assert by_value["generated/video/value/shape/circle"] == 1.0
    assert by_value["generated/video/value/shape/square"] == 0.0
    assert "generated/video/value/shape/hexagon" not in by_value  # no caption names it
    assert by_value["generated/video/balanced/shape"] == pytest.approx(0.25)  # chance over the named values
    table = report.markdown({**by_value, "chance/shape": 0.2}, "one shape")
    row = next(line for line in table.splitlines() if line.startswith("| video | shape | 25.0% |"))
    assert "circle 100.0%, square 0.0%" in row and row.endswith("| 20.0% |")


def test_held_out_balanced_accuracy_counts_each_value_and_each_combination_once() -> None:
    hits = Hits()
    # Held-out rows: six squares moving up (drawn right) and two circles (drawn as squares); two seen rows.
    shape = torch.tensor([1, 1, 1, 1, 1, 1, 0, 0, 0, 1])
    direction = torch.tensor([2, 2, 2, 2, 2, 2, 0, 0, 0, 0])
    held = torch.tensor([True] * 8 + [False] * 2)
    drawn = {"shape": torch.tensor([1, 1, 1, 1, 1, 1, 1, 1, 0, 1]), "direction": direction}
    combination = torch.tensor([0] * 6 + [1] * 2 + [-1] * 2)  # which held-out combination each row is
    hits.add(drawn, {"shape": shape, "direction": direction}, held, combination)
    vocab = {"shape": ["circle", "square"], "direction": ["left", "right", "up", "down"]}
    assert hits.accuracy("g")["g/held_out/shape"] == pytest.approx(0.75)  # the lean to squares pays
    by_value = hits.per_value("g", vocab)
    assert by_value["g/held_out_value/shape/square"] == 1.0 and by_value["g/held_out_value/shape/circle"] == 0.0
    assert by_value["g/held_out_balanced/shape"] == pytest.approx(0.5)  # each shape once
    assert by_value["g/held_out_balanced/direction"] == 1.0 and "g/held_out_value/direction/down" not in by_value
    assert hits.held_out_all("g") == {"g/held_out_balanced/all": pytest.approx(0.5)}  # each combination once
    assert Hits().held_out_all("g") == {}


def test_a_generator_that_draws_one_shape_is_right_as_often_as_its_shape_is_asked_for_but_balanced_at_chance(
    easy_shapes, trained_probe
) -> None:
    probe, _ = trained_probe
    test = easy_shapes.split_indices("test")
    shape = easy_shapes.labels["shape"]
    triangle = easy_shapes.vocab["shape"].index("triangle")
    one_triangle = int(np.flatnonzero(shape == triangle)[0])

    def always_that_triangle(captions: list[str], n: int, seed: int) -> dict[str, torch.Tensor]:
        video = to_tensor(easy_shapes.render([one_triangle] * (len(captions) * n)))
        return {"video": video, "images": video[:, :, 0]}

    metrics = score(always_that_triangle, probe, easy_shapes, test, num_samples=1, batch_size=64, progress=False)
    asked = float(np.mean(shape[test] == triangle))
    assert 0.05 < asked < 0.45  # the test split is dense in held-out red circles: lopsided
    for kind in ("video", "image"):
        assert metrics[f"generated/{kind}/test/shape"] == pytest.approx(asked, abs=0.02)
        assert metrics[f"generated/{kind}/value/shape/triangle"] >= 0.98
        assert metrics[f"generated/{kind}/value/shape/circle"] <= 0.02
        assert metrics[f"generated/{kind}/balanced/shape"] == pytest.approx(0.5, abs=0.02)
        assert metrics[f"generated/{kind}/held_out_balanced/shape"] <= 0.02  # every held-out caption is a circle
        assert metrics[f"generated/{kind}/held_out_balanced/all"] <= 0.02
    side_by_side = compare.table([{"metrics": metrics, "run_time_s": 1.0}], ["triangle"])
    assert "| video shape, test, balanced over values | 50.0% | 50.0% |" in side_by_side


def test_balanced_accuracy_is_perfect_for_real_clips_and_chance_for_noise(
    perfect: dict[str, float], noise: dict[str, float], easy_shapes
) -> None:
    chance = chance_levels(easy_shapes.vocab)
    for kind, attributes in (("video", ATTRIBUTES), ("image", ("shape", "colour", "size"))):
        for attribute in attributes:
            assert perfect[f"generated/{kind}/balanced/{attribute}"] >= 0.98, (kind, attribute)
            value = noise[f"generated/{kind}/balanced/{attribute}"]
            assert abs(value - chance[f"chance/{attribute}"]) < 0.15, (kind, attribute, value)
        for name in easy_shapes.vocab["shape"]:
            assert perfect[f"generated/{kind}/value/shape/{name}"] >= 0.98


def test_runs_of_one_name_share_a_column_with_their_spread(perfect: dict[str, float]) -> None:
    worse = {**perfect, "generated/video/held_out_balanced/shape": 0.5}
    best = {**perfect, "generated/video/held_out_balanced/shape": 0.9}
    runs = [{"metrics": m, "run_time_s": 1.0} for m in (worse, best, perfect)]
    side_by_side = compare.table(runs, ["seeds", "seeds", "one"])
    assert side_by_side.splitlines()[0] == "| metric | chance | seeds | one |"
    shape = next(line for line in side_by_side.splitlines() if line.startswith("| video shape, held-out, balanced"))
    assert "| 70.0% (50.0%–90.0%) |" in shape


def test_each_clip_knows_its_held_out_combination_by_all_its_attributes(easy_shapes) -> None:
    test = easy_shapes.split_indices("test")
    combination = easy_shapes.held_out_combination()[test]
    assert ((combination == 0) == easy_shapes.is_held_out()[test]).all()  # one combination: red circles


def test_a_group_is_trusted_only_when_every_run_is_and_a_missing_value_is_counted(perfect: dict[str, float]) -> None:
    untrusted = {**perfect, "probe/trusted": 0.0}
    lacking = {k: v for k, v in perfect.items() if k != "generated/video/held_out_balanced/shape"}
    runs = [{"metrics": m, "run_time_s": None} for m in (perfect, untrusted)]
    side_by_side = compare.table(runs, ["seeds", "seeds"])
    assert next(line for line in side_by_side.splitlines() if "probe trusted" in line).endswith("| no |")
    shape = compare.table([{"metrics": perfect}, {"metrics": lacking}], ["s", "s"]).splitlines()[2]
    assert shape.endswith("(100.0%–100.0%, 1 of 2 runs) |")


def test_runs_without_names_keep_a_column_each(tmp_path: Path, perfect: dict[str, float], capsys) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"experiment": "t2v", "metrics": perfect}))
    compare.main([str(tmp_path / "a"), str(tmp_path / "b")])
    assert capsys.readouterr().out.splitlines()[0] == "| metric | chance | t2v (a) | t2v (b) |"
