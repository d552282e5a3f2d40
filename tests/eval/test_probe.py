"""The attribute probe: it reads real clips above its threshold, is cached by data and settings, and refuses
clips of another shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from t2v.errors import T2VError
from t2v.eval import probe as probes

THRESHOLD = 0.98


def test_probe_reads_every_attribute_of_real_test_clips_above_its_threshold(
    easy_shapes, trained_probe, easy_probe_settings
) -> None:
    probe, summary = trained_probe
    test = easy_shapes.split_indices("test")
    held = easy_shapes.is_held_out()[test]
    assert held.any() and (~held).any()
    for subset in (test, test[held]):  # clips it never saw, and the combinations held out of the training split
        accuracy = probes.real_accuracy(probe, easy_shapes, subset)
        assert set(accuracy["video"]) == {"shape", "colour", "size", "direction", "speed"}
        assert set(accuracy["image"]) == {"shape", "colour", "size"}
        for kind, per_attribute in accuracy.items():
            for attribute, value in per_attribute.items():
                assert value >= THRESHOLD, (kind, attribute, value)
    assert summary["steps"] == easy_probe_settings["max_steps"]
    assert summary["train_clips"] > len(easy_shapes.split_indices("train"))


def test_training_pool_never_holds_a_val_or_test_clip(easy_shapes) -> None:
    larger, pool = probes.training_pool(easy_shapes, extra_clips=500)
    unseen = np.concatenate([easy_shapes.split_indices("val"), easy_shapes.split_indices("test")])
    assert not np.isin(pool, unseen).any()
    assert len(pool) == len(easy_shapes.split_indices("train")) + 500
    # Clips are pure functions of (settings, index): the larger dataset renders the same clip 0.
    first = easy_shapes.split_indices("train")[:1]
    np.testing.assert_array_equal(larger.render(first), easy_shapes.render(first))


def test_probe_is_cached_by_data_fingerprint_and_settings(
    easy_shapes, trained_probe, easy_probe_settings, tmp_path: Path
) -> None:
    from t2v.pipeline import artifacts

    _, summary = trained_probe
    key = probes.settings_key(easy_probe_settings)
    manifest = {"data_fingerprint": easy_shapes.fingerprint(), "settings_key": key,
                "dims": {"frames": easy_shapes.frames, "size": easy_shapes.size}}  # fmt: skip
    folder = artifacts.publish(tmp_path, probes.PROBE_STAGE, summary["checkpoint"], manifest)
    assert probes.find_cached(tmp_path, easy_shapes.fingerprint(), key) == folder
    assert probes.find_cached(tmp_path, "another-dataset", key) is None
    other_settings = probes.settings_key({**easy_probe_settings, "seed": 1})
    assert probes.find_cached(tmp_path, easy_shapes.fingerprint(), other_settings) is None
    loaded, record = probes.load_probe(folder)
    clips = probes.to_tensor(easy_shapes.render(easy_shapes.split_indices("test")[:8]))
    expected = trained_probe[0].predict("video", clips)
    for attribute, prediction in loaded.predict("video", clips).items():
        assert torch.equal(prediction, expected[attribute])


def test_a_rank_started_beside_rank_0_waits_for_its_probe_instead_of_training_one(
    easy_shapes, trained_probe, easy_probe_settings, tmp_path: Path, monkeypatch
) -> None:
    """srun and torchrun start every rank at once: rank 0 trains a missing probe, the others load it."""
    from t2v.cluster import wait_for
    from t2v.pipeline import artifacts

    settings = {**easy_probe_settings, "artifacts_dir": str(tmp_path), "artifact": "auto"}
    monkeypatch.setattr(probes, "launched_rank", lambda: 1)
    monkeypatch.setattr(probes, "wait_for", lambda find, what: wait_for(find, what, timeout_s=0.05, poll_s=0.01))
    with pytest.raises(T2VError, match="for rank 0 to write the attribute probe"):
        probes.obtain_probe(settings, easy_shapes, tmp_path / "rank1", log=lambda _: None, progress=False)
    assert not (tmp_path / probes.PROBE_STAGE).exists()  # it trained nothing
    manifest = {"data_fingerprint": easy_shapes.fingerprint(), "settings_key": probes.settings_key(settings),
                "dims": {"frames": easy_shapes.frames, "size": easy_shapes.size}}  # fmt: skip
    folder = artifacts.publish(tmp_path, probes.PROBE_STAGE, trained_probe[1]["checkpoint"], manifest)  # rank 0's
    _, record = probes.obtain_probe(settings, easy_shapes, tmp_path / "rank1", log=lambda _: None, progress=False)
    assert record["cached"] and record["artifact"] == str(folder)


def test_probe_refuses_clips_of_another_size(trained_probe) -> None:
    probe, _ = trained_probe
    with pytest.raises(T2VError, match=r"reads videos of shape \(B, 3, 4, 16, 16\)"):
        probe.predict("video", torch.zeros(2, 3, 8, 16, 16))
    with pytest.raises(T2VError, match="reads images"):
        probe.predict("image", torch.zeros(2, 3, 32, 32))
