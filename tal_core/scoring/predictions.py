"""Interval-probability store: what a trained model leaves for the ensemble.

One self-describing ``.npz`` per split, readable with numpy alone
(``np.load(path)``, no pickle):

- ``video_ids`` (V,) str, ``offsets`` (V + 1,) int64: intervals of video v are rows
  ``offsets[v]:offsets[v + 1]``
- ``starts``, ``ends`` (M,) float64 seconds; ``probs`` (M, K + 1) float32, column 0
  background, column k the action ``actions[k - 1]``
- ``scene_probs`` (V, S) float32
- ``meta``: a JSON string with ``actions``, ``scenes``, ``interval_seconds``, ``view``,
  ``split``, ``run_id``, ``config`` (flat dotted keys) and ``format_version``.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tal_core.errors import UserError
from tal_core.io import write_atomic

FORMAT_VERSION = 1


class PredictionsError(UserError, ValueError):
    """A predictions file is missing or malformed; the message names it."""


@dataclass(frozen=True)
class IntervalPredictions:
    video_ids: tuple[str, ...]
    offsets: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    probs: np.ndarray
    scene_probs: np.ndarray
    meta: dict = field(default_factory=dict)

    def video(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = self.offsets[index], self.offsets[index + 1]
        return self.starts[lo:hi], self.ends[lo:hi], self.probs[lo:hi]

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(self.meta["actions"])

    @property
    def scenes(self) -> tuple[str, ...]:
        return tuple(self.meta["scenes"])

    @staticmethod
    def from_videos(video_ids, starts, ends, probs, scene_probs, meta) -> IntervalPredictions:
        """Build from per-video lists of arrays."""
        lengths = [len(s) for s in starts]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        width = len(meta["actions"]) + 1
        return IntervalPredictions(
            tuple(video_ids), offsets,
            np.concatenate(starts) if starts else np.zeros(0),
            np.concatenate(ends) if ends else np.zeros(0),
            np.concatenate(probs).astype(np.float32) if probs else np.zeros((0, width), np.float32),
            np.asarray(scene_probs, dtype=np.float32).reshape(len(video_ids), len(meta["scenes"])),
            dict(meta, format_version=FORMAT_VERSION),
        )


def average_coinciding_cells(base: IntervalPredictions, others: list[IntervalPredictions]) -> IntervalPredictions:
    """``base`` with each cell's probabilities averaged with those of every cell of ``others`` (the same videos,
    other grids) that has its start and end (to a microsecond); cells of ``others`` that no base cell matches are
    dropped, base cells that none matches keep their own. Scene probabilities: the mean over all."""
    if not others:
        return base
    total = base.probs.astype(np.float64)
    count = np.ones(len(total))
    scenes = base.scene_probs.astype(np.float64)
    for other in others:
        if other.video_ids != base.video_ids:
            raise ValueError("predictions to average hold other videos")
        for v in range(len(base.video_ids)):
            lo, hi = base.offsets[v], base.offsets[v + 1]
            rows = _matching_rows(base.starts[lo:hi], base.ends[lo:hi], *other.video(v)[:2])
            found = rows >= 0
            np.add.at(total, lo + rows[found], other.video(v)[2][found])
            np.add.at(count, lo + rows[found], 1)
        scenes += other.scene_probs
    return IntervalPredictions(base.video_ids, base.offsets, base.starts, base.ends,
                               (total / count[:, None]).astype(np.float32),
                               (scenes / (len(others) + 1)).astype(np.float32), base.meta)


def _matching_rows(starts, ends, other_starts, other_ends) -> np.ndarray:
    """For each (other_start, other_end), the row of the sorted (starts, ends) with the same times, or -1."""
    key = np.round(np.asarray(starts) * 1e6).astype(np.int64)
    other_key = np.round(np.asarray(other_starts) * 1e6).astype(np.int64)
    if not len(key):
        return np.full(len(other_key), -1)
    row = np.clip(np.searchsorted(key, other_key), 0, len(key) - 1)
    same = key[row] == other_key
    same &= np.round(np.asarray(ends)[row] * 1e6).astype(np.int64) == np.round(np.asarray(other_ends) * 1e6)
    return np.where(same, row, -1)


def save_predictions(pred: IntervalPredictions, path: str | Path) -> Path:
    return write_atomic(path, lambda handle: np.savez_compressed(
        handle, video_ids=np.array(pred.video_ids, dtype=str), offsets=pred.offsets, starts=pred.starts,
        ends=pred.ends, probs=pred.probs, scene_probs=pred.scene_probs,
        meta=np.array(json.dumps(pred.meta, default=str))), mode="wb")


REQUIRED = ("video_ids", "offsets", "starts", "ends", "probs", "scene_probs", "meta")


def load_predictions(path: str | Path) -> IntervalPredictions:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in REQUIRED if k not in data.files]
            if missing:
                raise PredictionsError(f"{path}: predictions file lacks arrays {missing}")
            arrays = {k: data[k] for k in REQUIRED}
    except FileNotFoundError:
        raise PredictionsError(f"{path}: predictions file not found") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        if isinstance(error, PredictionsError):
            raise
        raise PredictionsError(f"{path}: not a readable predictions file ({error})") from None
    meta = json.loads(str(arrays["meta"]))
    pred = IntervalPredictions(tuple(arrays["video_ids"].tolist()), arrays["offsets"], arrays["starts"],
                               arrays["ends"], arrays["probs"], arrays["scene_probs"], meta)
    _check(pred, path)
    return pred


def _check(pred: IntervalPredictions, path: Path) -> None:
    for key in ("actions", "scenes", "interval_seconds"):
        if key not in pred.meta:
            raise PredictionsError(f"{path}: meta lacks '{key}'")
    if len(pred.offsets) != len(pred.video_ids) + 1 or pred.offsets[-1] != len(pred.starts):
        raise PredictionsError(f"{path}: offsets do not match video_ids and intervals")
    if pred.probs.shape != (len(pred.starts), len(pred.actions) + 1):
        raise PredictionsError(f"{path}: probs shape {pred.probs.shape} does not match "
                               f"{len(pred.starts)} intervals x {len(pred.actions) + 1} classes")
