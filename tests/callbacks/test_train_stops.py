"""train_stage(cfg) in-process on a GAN stage whose loss turns NaN: the run fails, says why in metrics.json and in
one line, keeps the last good checkpoint in the run dir, and publishes nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from t2v.models.videogan import VideoGAN
from t2v.pipeline.stage import StageFailed, train_stage

pytestmark = pytest.mark.filterwarnings(r"ignore:.*module\(s\) in eval mode.*")

# A video GAN without text needs no upstream stage; 8 frames of 16x16 and 4 batches per epoch.
TINY_VIDEOGAN = ["stage=videogan", "debug=limit", "logger=csv", "callbacks=none", "model.text.parts=[]",
                 "data.frames=8", "data.size=16", "data.num_clips=96", "data.batch_size=8", "model.width=0.0625",
                 "featurizer.max_words=12", "featurizer.dim=32", "trainer.max_epochs=3"]  # fmt: skip


def test_nonfinite_loss_fails_the_run_and_keeps_the_last_good_checkpoint_unpublished(
    compose_train, tmp_path: Path, monkeypatch
) -> None:
    original = VideoGAN.generator_terms

    def nan_from_step_6(self: VideoGAN, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        terms = original(self, batch)
        if int(self.gan_step) + 1 >= 6:
            terms["g_loss"] = terms["g_loss"] * math.nan
        return terms

    monkeypatch.setattr(VideoGAN, "generator_terms", nan_from_step_6)
    with pytest.raises(StageFailed, match=r"stage videogan failed: nonfinite at GAN step 6 .* not published") as failed:
        train_stage(compose_train(*TINY_VIDEOGAN))
    assert failed.value.exit_status == 1
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["stop/reason"] == "nonfinite" and written["stop/step"] == 6
    assert "not finite at step 6" in written["stop/message"]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert written["stop/checkpoint"] == str(last)
    state = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    assert int(state["gan_step"]) == 4  # saved at the end of the first epoch, before the NaN
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert (tmp_path / "run" / "loss_plot.png").is_file()
    assert f"its best good checkpoint is {written['checkpoints']['best']};" in str(failed.value)
    assert "artifact" not in written and not (tmp_path / "artifacts" / "videogan").exists()
