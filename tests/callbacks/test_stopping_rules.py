"""The GAN stopping rules on synthetic loss curves whose stop steps are known, with no Trainer."""

from __future__ import annotations

import math
import random
import re

import pytest

from t2v.callbacks.stopping_rules import GanStopMonitor, MinimaFinder, Smoother, StopDecision, relative_gap, slope
from t2v.errors import T2VError


def run(monitor: GanStopMonitor, g: list[float], d: list[float], first_step: int = 1) -> StopDecision | None:
    """Feed the curves step by step (steps count from 1, as gan_step does) until a decision."""
    for step, (g_t, d_t) in enumerate(zip(g, d, strict=True), start=first_step):
        decision = monitor.update(step, g_t, d_t)
        if decision is not None:
            assert decision.step == step
            return decision
    return None


def step_curves(change_at: int, steps: int) -> tuple[list[float], list[float]]:
    """G at 2.0, dropping to 1.0 from step `change_at` on; D constant at 2.0 (1.0 per term with d_scale 0.5)."""
    g = [2.0 if t < change_at else 1.0 for t in range(1, steps + 1)]
    return g, [2.0] * steps


def zigzag(points: list[tuple[int, float]]) -> list[float]:
    """A piecewise-linear curve through (step, value) corners, one value per step from step 1."""
    values = []
    for (s0, v0), (s1, v1) in zip(points[:-1], points[1:], strict=True):
        values += [v0 + (v1 - v0) * (t - s0) / (s1 - s0) for t in range(s0, s1)]
    return values[1:] + [points[-1][1]]  # values[k] is the value at step k + 1


# -- helpers --------------------------------------------------------------------------------------
def test_slope_and_gap() -> None:
    assert slope([3.0, 5.0, 7.0, 9.0]) == pytest.approx(2.0)
    assert slope([1.0] * 10) == 0.0 and slope([4.0]) == 0.0
    assert relative_gap(1.0, 1.0) == 0.0 and relative_gap(2.0, 1.0) == 0.5 and relative_gap(0.0, 0.0) == 0.0


def test_smoothers() -> None:
    window = Smoother("window", 3)
    assert [window.update(x) for x in (3.0, 6.0, 9.0, 0.0)] == [3.0, 4.5, 6.0, 5.0]
    ema = Smoother("ema", 3)  # alpha = 2 / (3 + 1) = 0.5
    assert [ema.update(x) for x in (4.0, 0.0, 0.0)] == [4.0, 2.0, 1.0]
    assert Smoother("ema", 1).update(7.0) == 7.0


# -- equilibrium ----------------------------------------------------------------------------------
def test_equilibrium_at_the_known_step() -> None:
    # G meets D (per term) at step 1000; with a 10-step window mean the smoothed gap is under 5% from
    # step 1009 on, so it has been for 100 steps at step 1108, when both slopes are exactly 0.
    monitor = GanStopMonitor(smoothing="window", smoothing_steps=10, window=100, tolerance=0.05, epsilon=1e-4,
                             min_steps=500)  # fmt: skip
    decision = run(monitor, *step_curves(change_at=1000, steps=3000))
    assert decision is not None and decision.reason == "equilibrium" and decision.step == 1108
    assert not decision.failed and decision.details["gap"] == 0.0


def test_equilibrium_waits_for_min_steps() -> None:
    monitor = GanStopMonitor(smoothing="window", smoothing_steps=10, window=100, tolerance=0.05, min_steps=1500)
    decision = run(monitor, *step_curves(change_at=1000, steps=3000))
    assert decision is not None and decision.step == 1500


def test_equilibrium_with_ema_smoothing_at_the_computed_step() -> None:
    # The EMA of the step from 2 to 1 is 1 + (1 - alpha)^(t - 999) from step 999 on; the gap is under
    # tol once that excess is under tol / (1 - tol) (relative to the larger value, 1 + excess).
    span, tol, window = 20, 0.05, 50
    alpha = 2 / (span + 1)
    first_close = 999 + math.floor(math.log(tol / (1 - tol)) / math.log(1 - alpha)) + 1
    g, d = step_curves(change_at=1000, steps=3000)
    monitor = GanStopMonitor(smoothing_steps=span, window=window, tolerance=tol, epsilon=1.0, min_steps=0)
    decision = run(monitor, g, d)
    assert decision is not None and decision.step == first_close + window - 1


def test_equilibrium_needs_flat_curves() -> None:
    # G and D stay within 1% of each other but both keep falling by 1e-3 per step: no equilibrium.
    g = [5.0 - 1e-3 * t for t in range(1, 3001)]
    d = [2 * (5.0 - 1e-3 * t) * 1.01 for t in range(1, 3001)]
    assert run(GanStopMonitor(window=200, tolerance=0.05, epsilon=1e-4, min_steps=0), g, d) is None
    decision = run(GanStopMonitor(window=200, tolerance=0.05, epsilon=1e-2, min_steps=0), g, d)
    assert decision is not None and decision.reason == "equilibrium"


def test_equilibrium_on_noisy_curves_stops_soon_after_the_losses_meet() -> None:
    rng = random.Random(0)
    g = [(2.0 if t < 1000 else 1.0) + rng.gauss(0, 0.1) for t in range(1, 4001)]
    d = [2.0 + rng.gauss(0, 0.2) for _ in range(1, 4001)]
    decision = run(GanStopMonitor(smoothing_steps=100, window=300, tolerance=0.1, epsilon=2e-4, min_steps=500), g, d)
    assert decision is not None and decision.reason == "equilibrium"
    assert 1000 + 300 <= decision.step <= 1000 + 300 + 400


# -- second minimum -------------------------------------------------------------------------------
# Slopes of 1/64 per step keep every value exact in binary floating point.
CORNERS = [(0, 4.0), (128, 2.0), (192, 3.0), (320, 1.0), (448, 3.0), (576, 0.5), (640, 1.5)]


def test_second_minimum_at_the_known_step() -> None:
    # Minima at steps 128 and 320; a rise of 0.25 (16 steps) confirms each one, so the second is
    # confirmed at step 336.
    g = zigzag(CORNERS)
    monitor = GanStopMonitor(mode="second_minimum", smoothing_steps=1, prominence=0.25, patience=10, min_steps=0)
    decision = run(monitor, g, [1.0] * len(g))
    assert decision is not None and decision.reason == "second_minimum"
    assert (decision.step, decision.details["minimum_step"], decision.details["first_minimum_step"]) == (336, 320, 128)
    assert decision.details["minimum"] == 1.0


def test_second_minimum_patience_and_min_steps() -> None:
    g = zigzag(CORNERS)
    patient = GanStopMonitor(mode="second_minimum", smoothing_steps=1, prominence=0.25, patience=30, min_steps=0)
    assert run(patient, g, [1.0] * len(g)).step == 350  # 30 steps after the minimum at 320
    # Counting from step 200: the minima are at 320 and 576.
    late = GanStopMonitor(mode="second_minimum", smoothing_steps=1, prominence=0.25, patience=10, min_steps=200)
    decision = run(late, g, [1.0] * len(g))
    assert decision is not None and decision.details["minimum_step"] == 576 and decision.step == 576 + 16


def test_second_minimum_ignores_wiggles_below_the_prominence() -> None:
    wiggly = [v + (0.05 if t % 7 < 3 else -0.05) for t, v in enumerate(zigzag(CORNERS))]
    monitor = GanStopMonitor(mode="second_minimum", smoothing_steps=1, prominence=0.25, patience=10, min_steps=0)
    decision = run(monitor, wiggly, [1.0] * len(wiggly))
    assert decision is not None and 310 <= decision.details["minimum_step"] <= 330


def test_minima_finder_needs_a_descent_first() -> None:
    finder = MinimaFinder(prominence=0.5, patience=0)
    # Rising from the start, then a valley: the start is not a minimum, the valley is.
    curve = [1.0, 1.5, 2.0, 2.5, 2.0, 1.5, 1.2, 1.5, 2.0]
    found = [m for t, v in enumerate(curve) if (m := finder.update(t, v))]
    assert found == [(6, 1.2)]


# -- failures -------------------------------------------------------------------------------------
def test_d_wins_at_the_known_step() -> None:
    d = [1.0] * 299 + [0.001] * 500
    g = [3.0] * len(d)
    decision = run(GanStopMonitor(window=50, d_floor=0.01, min_steps=10_000), g, d)
    assert decision is not None and decision.reason == "d_wins" and decision.step == 300 + 49 and decision.failed


def test_d_must_stay_low_for_the_whole_window() -> None:
    d = ([0.001] * 40 + [0.5]) * 20
    assert run(GanStopMonitor(window=50, d_floor=0.01, min_steps=10_000), [3.0] * len(d), d) is None
    assert run(GanStopMonitor(window=50, d_floor=0.0, min_steps=0), [3.0] * 100, [0.0] * 100) is None  # rule off


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_stops_at_once(bad: float) -> None:
    g = [1.0] * 76 + [bad] + [1.0] * 10
    decision = run(GanStopMonitor(min_steps=10_000), g, [1.0] * len(g))
    assert decision is not None and decision.reason == "nonfinite" and decision.step == 77 and decision.failed
    assert "not finite at step 77" in decision.message


def test_nonfinite_counts_the_other_losses_too() -> None:
    monitor = GanStopMonitor(min_steps=10_000)
    assert monitor.update(1, 1.0, 1.0, {"train/g_loss": 5.0}) is None
    decision = monitor.update(2, 1.0, 1.0, {"train/g_loss": math.nan})
    assert decision is not None and decision.reason == "nonfinite" and "train/g_loss=nan" in decision.message


def test_decides_once() -> None:
    monitor = GanStopMonitor(min_steps=0)
    assert monitor.update(1, math.nan, 1.0) is not None
    assert monitor.update(2, math.nan, 1.0) is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"mode": "minimum"}, "callbacks.gan_stopping.mode='minimum' is unknown; use one of equilibrium, second_minimum"),
     ({"smoothing": "median"}, "callbacks.gan_stopping.smoothing='median' is unknown"),
     ({"window": 0}, "callbacks.gan_stopping.window=0 must be at least 1"),
     ({"tolerance": 0}, "callbacks.gan_stopping.tolerance=0 must be positive"),
     ({"d_floor": -1}, "callbacks.gan_stopping.d_floor=-1 must be 0 or more")],
)  # fmt: skip
def test_bad_settings_are_one_line_errors(settings: dict, message: str) -> None:
    with pytest.raises(T2VError, match="^" + re.escape(message)):
        GanStopMonitor(**settings)
