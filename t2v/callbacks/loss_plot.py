"""GanLossPlot: at the end of a GAN stage, ``<run dir>/loss_plot.png`` (``callbacks.loss_plot``).

Raw and smoothed G and D losses per GAN step, with the stop point marked: what a person reads to
judge the run, without W&B. With ``callbacks.gan_stopping`` on, the curves are the ones its rules saw
(same smoothing, same numbers) and the stop it made is marked; without it, the plot smooths with its
own settings. Drawn with matplotlib's Agg canvas (no display, no global pyplot state).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from t2v.callbacks.equilibrium import GanEquilibriumStopping, StepLosses, check_keys
from t2v.callbacks.stopping_rules import Smoother, StopDecision
from t2v.models.gan import AdversarialModule


def plot_losses(
    path: str | Path,
    history: dict[str, list[float]],
    decision: StopDecision | None = None,
    d_scale: float | None = None,
    title: str = "GAN losses",
) -> Path:
    """Write the plot. ``history`` holds ``step``, ``g``, ``d``, ``g_smooth``, ``d_smooth`` lists."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(9, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    steps = history["step"]
    ax.plot(steps, history["g"], color="tab:blue", alpha=0.25, linewidth=0.8, label="G loss")
    ax.plot(steps, history["d"], color="tab:red", alpha=0.25, linewidth=0.8, label="D loss")
    ax.plot(steps, history["g_smooth"], color="tab:blue", linewidth=2, label="G loss, smoothed")
    ax.plot(steps, history["d_smooth"], color="tab:red", linewidth=2, label="D loss, smoothed")
    if d_scale is not None and d_scale != 1:
        scaled = [d_scale * v for v in history["d_smooth"]]
        ax.plot(steps, scaled, color="tab:red", linestyle="--", linewidth=1.2,
                label=f"D loss x {d_scale:g}, smoothed (what G is compared with)")  # fmt: skip
    if decision is not None:
        ax.axvline(decision.step, color="black", linestyle=":", linewidth=1.5, label=f"stop: {decision.reason}")
        ax.annotate(f"{decision.reason}\nstep {decision.step}", xy=(decision.step, 0.02),
                    xycoords=("data", "axes fraction"), xytext=(-4, 0), textcoords="offset points",
                    ha="right", va="bottom", fontsize=9)  # fmt: skip
        for key, label, face in (("first_minimum_step", "first minimum of G", "none"),
                                 ("minimum_step", "second minimum of G", "black")):  # fmt: skip
            at = decision.details.get(key)
            if at is not None and at in steps:
                ax.plot([at], [history["g_smooth"][steps.index(at)]], marker="o", color="black",
                        markerfacecolor=face, linestyle="none", label=label)  # fmt: skip
    ax.set_xlabel("GAN step (generator updates)")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


class GanLossPlot(pl.Callback):
    """Writes the loss plot when a GAN stage ends (also when it is aborted). Does nothing for other stages."""

    def __init__(
        self,
        path: str = "loss_plot.png",
        g_key: str = "train/g_loss",
        d_key: str = "train/d_loss",
        smoothing: str = "ema",
        smoothing_steps: int = 100,
    ) -> None:
        self.path, self.keys = Path(path), (g_key, d_key)
        self.smoothing = (smoothing, smoothing_steps)
        Smoother(*self.smoothing)  # checks the settings now
        self.history: dict[str, list[float]] = {"step": [], "g": [], "d": []}
        self.losses: StepLosses | None = None  # read every trainer.log_every_n_steps steps, as the stopping rules do
        self.trainer: pl.Trainer | None = None
        self.active = False
        self.written: Path | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.active = stage == "fit" and isinstance(pl_module, AdversarialModule) and not trainer.fast_dev_run
        self.trainer = trainer if self.active else None

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.trainer = None

    def stopping(self, trainer: pl.Trainer) -> GanEquilibriumStopping | None:
        return next((c for c in trainer.callbacks if isinstance(c, GanEquilibriumStopping) and c.active), None)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.active or self.stopping(trainer) is not None:  # the stopping callback keeps the history then
            return
        if self.losses is None:
            check_keys(pl_module, self.keys, "callbacks.loss_plot.g_key/d_key")
            self.losses = StepLosses(self.keys)
        self.losses.add(pl_module)
        if len(self.losses) >= max(trainer.log_every_n_steps, 1):
            self.read(trainer)

    def read(self, trainer: pl.Trainer) -> None:
        for step, (g, d) in self.losses.read(trainer) if self.losses is not None else []:
            for key, value in (("step", step), ("g", g), ("d", d)):
                self.history[key].append(value)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.active:
            stopping = self.stopping(trainer)
            # The last steps' losses, whichever callback ends first (under DDP the read is a collective).
            if stopping is not None:
                stopping.read(trainer, pl_module)
            else:
                self.read(trainer)
        self.write(trainer, pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self.active and trainer.world_size == 1 and self.stopping(trainer) is None:
            self.read(trainer)  # under DDP a read would wait for processes that may have failed elsewhere
        self.write(trainer, pl_module)

    def write(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active or not trainer.is_global_zero:
            return
        stopping = self.stopping(trainer)
        if stopping is not None:
            history, decision, d_scale = stopping.monitor.history, stopping.decision, stopping.monitor.d_scale
        else:
            history, decision, d_scale = self.smoothed(), None, None
        if not history["step"]:
            return
        stage = type(pl_module).__name__
        self.written = plot_losses(self.path, history, decision, d_scale, title=f"{stage}: G and D losses")

    def smoothed(self) -> dict[str, list[float]]:
        g_smoother, d_smoother = Smoother(*self.smoothing), Smoother(*self.smoothing)
        return {
            **self.history,
            "g_smooth": [g_smoother.update(v) for v in self.history["g"]],
            "d_smooth": [d_smoother.update(v) for v in self.history["d"]],
        }

    def state_dict(self) -> dict[str, Any]:
        if self.losses is not None and self.trainer is not None:
            self.read(self.trainer)
        return {k: list(v) for k, v in self.history.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: list(state_dict.get(k, [])) for k in ("step", "g", "d")}
