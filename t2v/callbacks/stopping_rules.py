"""When to stop a GAN, from its generator and discriminator loss curves: pure rules on plain numbers.

The original author stopped by eye "when the generator's and discriminator's losses begin to close in
on each other and stabilize ... ideally at the second local minimum of the generator's loss". These
classes make that decision from the per-step losses, with no Trainer, so they can be tested on
synthetic curves; :class:`t2v.callbacks.equilibrium.GanEquilibriumStopping` is the thin Lightning
layer around :class:`GanStopMonitor`.

Rules, in the order they are checked at every step:

- ``nonfinite``: a G or D loss (the monitored ones, or any other passed as ``others``) is NaN or
  infinite. Always on, no warm-up.
- ``d_wins``: the raw D loss stayed below ``d_floor`` for ``window`` steps in a row: the
  discriminator has won and the generator gets no signal (collapse). No warm-up: the window is the
  grace period.
- ``equilibrium`` (mode ``equilibrium``, from step ``min_steps`` on): over the last ``window`` steps
  the relative gap |g - s*d| / max(|g|, |s*d|) of the smoothed losses stayed below ``tolerance``,
  and the least-squares slope of each smoothed curve over those steps is below ``epsilon`` (loss per
  step) in absolute value. ``s = d_scale``: t2v's D losses add two BCE terms (real, and the mean of
  wrong and fake) where G's has one, so 0.5 puts them on one scale.
- ``second_minimum`` (mode ``second_minimum``): the smoothed G loss reached its second local
  minimum after step ``min_steps``. A minimum counts when the curve went down into it by at least
  ``prominence`` and has come back up by at least ``prominence``, with no lower value for
  ``patience`` steps; the stop happens at the step that confirms it, and the decision reports both.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from t2v.errors import T2VError

MODES = ("equilibrium", "second_minimum")
SMOOTHINGS = ("ema", "window")
# Reasons that mean the run failed (no model worth publishing), as opposed to a stop that found one.
FAILURES = ("nonfinite", "d_wins")


@dataclass
class StopDecision:
    """Why and when to stop. ``step`` is the GAN step (generator updates) the decision was made at."""

    reason: str
    step: int
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.reason in FAILURES


class Smoother:
    """An exponential moving average over ``steps`` (alpha = 2 / (steps + 1)) or a mean of the last ``steps``."""

    def __init__(self, kind: str = "ema", steps: int = 100) -> None:
        if kind not in SMOOTHINGS:
            raise T2VError(f"callbacks.gan_stopping.smoothing={kind!r} is unknown; use one of {', '.join(SMOOTHINGS)}")
        if steps < 1:
            raise T2VError(f"callbacks.gan_stopping.smoothing_steps={steps} must be at least 1 (1 = no smoothing)")
        self.kind, self.steps = kind, steps
        self.alpha = 2.0 / (steps + 1)
        self.value: float | None = None
        self.recent: deque[float] = deque(maxlen=steps)

    def update(self, x: float) -> float:
        if self.kind == "ema":
            self.value = x if self.value is None else self.value + self.alpha * (x - self.value)
        else:
            self.recent.append(x)
            self.value = math.fsum(self.recent) / len(self.recent)  # exact: no drift of a running total
        return self.value


def slope(values: list[float] | deque[float]) -> float:
    """Least-squares slope of equally spaced values, per step."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x = (n - 1) / 2
    mean_y = math.fsum(values) / n
    num = math.fsum((i - mean_x) * (y - mean_y) for i, y in enumerate(values))
    den = n * (n * n - 1) / 12  # sum of (i - mean_x)^2
    return num / den


def relative_gap(g: float, d: float) -> float:
    """|g - d| / max(|g|, |d|): 0 when equal, 1 when one is 0 or they have opposite signs."""
    scale = max(abs(g), abs(d))
    return 0.0 if scale == 0 else abs(g - d) / scale


class MinimaFinder:
    """Confirms the local minima of a curve online, with prominence and patience (see the module doc)."""

    def __init__(self, prominence: float, patience: int) -> None:
        self.prominence, self.patience = prominence, patience
        self.direction: str | None = None  # None until the first move of `prominence`, then "down"/"up"
        self.high = self.low = math.nan
        self.low_step = -1
        self.minima: list[tuple[int, float]] = []

    def update(self, step: int, value: float) -> tuple[int, float] | None:
        """Feed one point; returns (step, value) of a minimum when this point confirms one."""
        if self.direction is None:
            if math.isnan(self.high):
                self.high = self.low = value
                self.low_step = step
            self.high = max(self.high, value)
            if value < self.low:
                self.low, self.low_step = value, step
            if value <= self.high - self.prominence:  # went down into a valley
                self.direction = "down"
            elif value >= self.low + self.prominence:  # started by going up: the start is no valley
                self.direction, self.high = "up", value
            return None
        if self.direction == "down":
            if value < self.low:
                self.low, self.low_step = value, step
            elif value >= self.low + self.prominence and step - self.low_step >= self.patience:
                self.minima.append((self.low_step, self.low))
                self.direction, self.high = "up", value
                return self.minima[-1]
            return None
        # direction == "up"
        if value > self.high:
            self.high = value
        elif value <= self.high - self.prominence:
            self.direction, self.low, self.low_step = "down", value, step
        return None


class GanStopMonitor:
    """Feed it ``update(step, g_loss, d_loss)`` once per GAN step; it returns a StopDecision once."""

    def __init__(
        self,
        mode: str = "equilibrium",
        smoothing: str = "ema",
        smoothing_steps: int = 100,
        window: int = 500,
        tolerance: float = 0.15,
        epsilon: float = 1e-4,
        d_scale: float = 0.5,
        min_steps: int = 2000,
        prominence: float = 0.1,
        patience: int = 200,
        d_floor: float = 0.01,
        check_finite: bool = True,
    ) -> None:
        if mode not in MODES:
            raise T2VError(f"callbacks.gan_stopping.mode={mode!r} is unknown; use one of {', '.join(MODES)}")
        for name, value, least in (("window", window, 1), ("min_steps", min_steps, 0), ("patience", patience, 0)):
            if value < least:
                raise T2VError(f"callbacks.gan_stopping.{name}={value} must be at least {least}")
        for name, value in (("tolerance", tolerance), ("epsilon", epsilon), ("prominence", prominence),
                            ("d_scale", d_scale)):  # fmt: skip
            if not value > 0:
                raise T2VError(f"callbacks.gan_stopping.{name}={value} must be positive")
        if d_floor < 0:
            raise T2VError(
                f"callbacks.gan_stopping.d_floor={d_floor} must be 0 or more (0 switches the D-wins rule off)"
            )
        self.mode, self.window, self.tolerance, self.epsilon = mode, window, tolerance, epsilon
        self.d_scale, self.min_steps, self.d_floor, self.check_finite = d_scale, min_steps, d_floor, check_finite
        self.g_smoother = Smoother(smoothing, smoothing_steps)
        self.d_smoother = Smoother(smoothing, smoothing_steps)
        self.minima = MinimaFinder(prominence, patience)
        self.recent_g: deque[float] = deque(maxlen=window)
        self.recent_d: deque[float] = deque(maxlen=window)
        self.close_steps = 0  # consecutive steps with the gap under tolerance
        self.low_d_steps = 0  # consecutive steps with D's loss under d_floor
        self.history: dict[str, list[float]] = {"step": [], "g": [], "d": [], "g_smooth": [], "d_smooth": []}
        self.decision: StopDecision | None = None

    def update(self, step: int, g: float, d: float, others: Mapping[str, float] | None = None) -> StopDecision | None:
        """One GAN step's raw losses; returns the decision at the step that makes it (and only then).

        ``others``: more losses of the step (e.g. the total ``train/g_loss`` when ``g`` is only its
        adversarial term) that count for the ``nonfinite`` rule only."""
        if self.decision is not None:
            return None
        g, d = float(g), float(d)
        values = {"g": g, "d": d, **{name: float(v) for name, v in (others or {}).items()}}
        bad = {name: v for name, v in values.items() if not math.isfinite(v)}
        if self.check_finite and bad:
            # No numbers in the details: NaN is not valid JSON (metrics.json); the message has them.
            shown = ", ".join(f"{name}={v}" for name, v in bad.items())
            self.decision = StopDecision("nonfinite", step, f"the loss is not finite at step {step} ({shown})")
            return self.decision
        g_s, d_s = self.g_smoother.update(g), self.d_smoother.update(d)
        for key, value in (("step", step), ("g", g), ("d", d), ("g_smooth", g_s), ("d_smooth", d_s)):
            self.history[key].append(value)
        self.decision = self._failure(step, d) or self._goal(step, g_s, self.d_scale * d_s)
        return self.decision

    def _failure(self, step: int, d: float) -> StopDecision | None:
        self.low_d_steps = self.low_d_steps + 1 if d < self.d_floor else 0
        if self.d_floor > 0 and self.low_d_steps >= self.window:
            return StopDecision(
                "d_wins", step,
                f"the discriminator won: d_loss stayed below {self.d_floor:g} for {self.window} steps (the generator "
                "collapsed)",
            )  # fmt: skip
        return None

    def _goal(self, step: int, g_s: float, d_s: float) -> StopDecision | None:
        self.recent_g.append(g_s)
        self.recent_d.append(d_s)
        gap = relative_gap(g_s, d_s)
        self.close_steps = self.close_steps + 1 if gap < self.tolerance else 0
        if step < self.min_steps:
            return None
        if self.mode == "second_minimum":
            found = self.minima.update(step, g_s)
            if found and len(self.minima.minima) == 2:
                at, value = found
                return StopDecision(
                    "second_minimum", step,
                    f"the smoothed g_loss reached its second local minimum ({value:.4g}) at step {at}, "
                    f"confirmed at step {step}",
                    {"minimum_step": at, "minimum": value, "first_minimum_step": self.minima.minima[0][0]},
                )  # fmt: skip
            return None
        if self.close_steps < self.window:
            return None
        g_slope, d_slope = slope(self.recent_g), slope(self.recent_d)
        if abs(g_slope) < self.epsilon and abs(d_slope) < self.epsilon:
            return StopDecision(
                "equilibrium", step,
                f"G and D losses met and stabilised: relative gap below {self.tolerance:g} for {self.window} steps, "
                f"slopes {g_slope:.2g} and {d_slope:.2g} per step (below {self.epsilon:g})",
                {"gap": gap, "g_slope": g_slope, "d_slope": d_slope},
            )  # fmt: skip
        return None
