"""The ``hard`` preset of the synthetic generator: actions that only temporal cues separate.

Eight actions in four pairs; the two actions of a pair draw the same object, so a single frame cannot
tell them apart:
- ``drift_left`` / ``drift_right``: a disc drifting slowly (a few pixels per frame) one way or the other;
- ``spin_cw`` / ``spin_ccw``: a bar turning about its centre, clockwise or counter-clockwise;
- ``flash_slow`` / ``flash_fast``: a disc blinking at 2 Hz or at 5 Hz (5 Hz aliases below 10 fps decoding);
- ``grow`` / ``shrink``: a square whose side rises, or falls, as a saw-tooth.

On top of that: actions of 1.5-6 s separated by gaps of 0.5-2 s; objects anywhere across the 360-degree
world, so the ``front`` crop misses those at the sides; an ``ego`` camera whose gaze follows the action
with a lag and shakes hard, so it misses the starts; a still distractor (a box that appears and stays, in
the action objects' colours, unrelated to the actions); strong per-pixel noise; videos written at 16 fps.
"""

from __future__ import annotations

import numpy as np

HARD_ACTIONS = ("drift_left", "drift_right", "spin_cw", "spin_ccw", "flash_slow", "flash_fast", "grow", "shrink")
HARD_PAIRS = (("drift_left", "drift_right"), ("spin_cw", "spin_ccw"), ("flash_slow", "flash_fast"),
              ("grow", "shrink"))
DRIFT_SPEED, DRIFT_SPAN = 28.0, 64.0  # world pixels per second; drifts wrap around a window of DRIFT_SPAN
SPIN_TURNS_PER_SECOND = 0.6
FLASH_HZ = {"flash_slow": 2.0, "flash_fast": 5.0}
GROW_PERIOD_S, GROW_MIN, GROW_MAX = 1.5, 8.0, 34.0


def _disc(frame: np.ndarray, cy: float, cx: float, radius: float, colour: np.ndarray) -> None:
    h, w = frame.shape[:2]
    y0, y1 = int(max(cy - radius, 0)), int(min(cy + radius + 1, h))
    x0, x1 = int(max(cx - radius, 0)), int(min(cx + radius + 1, w))
    if y1 <= y0 or x1 <= x0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    frame[y0:y1, x0:x1][inside] = colour


def _bar(frame: np.ndarray, cy: float, cx: float, angle: float, length: float, width: float,
         colour: np.ndarray) -> None:
    h, w = frame.shape[:2]
    reach = length / 2 + width
    y0, y1 = int(max(cy - reach, 0)), int(min(cy + reach + 1, h))
    x0, x1 = int(max(cx - reach, 0)), int(min(cx + reach + 1, w))
    if y1 <= y0 or x1 <= x0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    inside = (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)
    frame[y0:y1, x0:x1][inside] = colour


def _square(frame: np.ndarray, cy: float, cx: float, side: float, colour: np.ndarray) -> None:
    h, w = frame.shape[:2]
    y0, y1 = int(max(cy - side / 2, 0)), int(min(cy + side / 2, h))
    x0, x1 = int(max(cx - side / 2, 0)), int(min(cx + side / 2, w))
    if y1 > y0 and x1 > x0:
        frame[y0:y1, x0:x1] = colour


def draw_hard_action(frame: np.ndarray, action: int, elapsed: float, colour: np.ndarray,
                     anchor: tuple[float, float]) -> tuple[float, float]:
    """Draw hard action ``action`` ``elapsed`` seconds into its segment; returns the object's centre (y, x)."""
    cy, cx = anchor
    name = HARD_ACTIONS[action]
    if name.startswith("drift"):
        sign = -1 if name == "drift_left" else 1
        cx = cx + sign * ((elapsed * DRIFT_SPEED) % DRIFT_SPAN - DRIFT_SPAN / 2)
        _disc(frame, cy, cx, 10, colour)
    elif name.startswith("spin"):
        sign = 1 if name == "spin_cw" else -1
        _bar(frame, cy, cx, sign * 2 * np.pi * SPIN_TURNS_PER_SECOND * elapsed, 36, 8, colour)
    elif name.startswith("flash"):
        if (elapsed * FLASH_HZ[name]) % 1.0 < 0.5:
            _disc(frame, cy, cx, 11, colour)
    else:  # grow / shrink: a saw-tooth of the side, rising or falling
        phase = (elapsed / GROW_PERIOD_S) % 1.0
        if name == "shrink":
            phase = 1.0 - phase
        _square(frame, cy, cx, GROW_MIN + phase * (GROW_MAX - GROW_MIN), colour)
    return cy, cx


def hard_action_prior(scene_index: int) -> np.ndarray:
    """Each scene favours both actions of one pair (2x as likely): the scene tells the pair, never the member."""
    prior = np.ones(len(HARD_ACTIONS))
    pair = HARD_PAIRS[scene_index % len(HARD_PAIRS)]
    prior[[HARD_ACTIONS.index(pair[0]), HARD_ACTIONS.index(pair[1])]] = 2.0
    return prior / prior.sum()


def plan_distractor(rng: np.random.Generator, duration: float) -> tuple[float, float, float, float]:
    """(start, end, centre y, centre x) of the still box: it appears once and stays a while."""
    start = float(rng.uniform(0, duration * 0.6))
    end = float(min(duration, start + rng.uniform(3.0, duration * 0.6)))
    return start, end, float(rng.uniform(20, 76)), float(rng.uniform(20, 172))


def lagged_gaze(gaze: np.ndarray, target: tuple[float, float], fps: float, lag_s: float = 1.0) -> np.ndarray:
    """The ego wearer's gaze moves towards ``target`` with a time constant of ``lag_s``."""
    step = 1.0 - np.exp(-1.0 / (fps * lag_s))
    return gaze + step * (np.asarray(target) - gaze)
