"""train_stage(cfg) in-process on a GAN stage whose loss turns NaN: the run ends cleanly, says why in
metrics.json, and keeps (and publishes) the last good checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from t2v.models.videogan import VideoGAN
from t2v.pipeline.stage import train_stage

pytestmark = pytest.mark.filterwarnings(r"ignore:.*module\(s\) in eval mode.*")

# A video GAN without text needs no upstream stage; 8 frames of 16x16 and 4 batches per epoch.
TINY_VIDEOGAN = ["stage=videogan", "debug=limit", "logger=csv", "callbacks=none", "model.text.parts=[]",
                 "data.frames=8", "data.size=16", "data.num_clips=96", "data.batch_size=8", "model.width=0.0625",
                 "featurizer.max_words=12", "featurizer.dim=32", "trainer.max_epochs=3"]  # fmt: skip


def test_nonfinite_loss_ends_the_run_with_the_last_good_checkpoint(compose_train, tmp_path: Path, monkeypatch) -> None:
    original = VideoGAN.generator_terms

    def nan_from_step_6(self: VideoGAN, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        terms = original(self, batch)
        if int(self.gan_step) + 1 >= 6:
            terms["g_loss"] = terms["g_loss"] * math.nan
        return terms

    monkeypatch.setattr(VideoGAN, "generator_terms", nan_from_step_6)
    summary = train_stage(compose_train(*TINY_VIDEOGAN))
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["stop/reason"] == "nonfinite" and written["stop/step"] == 6
    assert "not finite at step 6" in written["stop/message"]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert written["stop/checkpoint"] == str(last)
    state = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    assert int(state["gan_step"]) == 4  # saved at the end of the first epoch, before the NaN
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert (tmp_path / "run" / "loss_plot.png").is_file()
    assert (
        summary["artifact"]
        and json.loads((Path(summary["artifact"]) / "manifest.json").read_text())["stop"]["reason"] == "nonfinite"
    )
