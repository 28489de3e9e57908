"""Put members with different interval grids on one common time grid per video.

The common grid's cells are bounded by every boundary of every member, so each
cell lies inside exactly one interval of each member and a member's probability
on a cell is that of its interval (exact, no interpolation).

The aligned probabilities are stored as float16 (``STORAGE``): half the bytes of float32 for what is the
ensemble's largest array (candidates x cells x classes); every sum over members and every calibration reads
them into float32 (``fuse``, ``calibrate``). A float16 probability is within 2^-11 of its float32 value
(relative).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tal_core.scoring.predictions import IntervalPredictions

STORAGE = np.float16  # dtype of the aligned probabilities (float32: the full-precision path, same code)


@dataclass(frozen=True)
class AlignedVideo:
    video_id: str
    starts: np.ndarray  # (cells,)
    ends: np.ndarray
    probs: np.ndarray  # (members, cells, K + 1), STORAGE
    scene_probs: np.ndarray  # (members, S)


def common_grid(grids: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Cells bounded by every member boundary (rounded to 1 µs), up to the shortest coverage."""
    end = min(float(e[-1]) for _, e in grids)
    bounds = np.unique(np.round(np.concatenate([np.concatenate([s, e]) for s, e in grids]), 6))
    bounds = bounds[bounds <= end + 1e-9]
    return bounds[:-1], bounds[1:]


def member_cells(starts: np.ndarray, ends: np.ndarray, cell_starts: np.ndarray) -> np.ndarray:
    """Index of the member interval containing each cell."""
    index = np.searchsorted(np.round(starts, 6), np.round(cell_starts, 6), side="right") - 1
    return np.clip(index, 0, len(starts) - 1)


def align(members: list[IntervalPredictions], dtype=None) -> list[AlignedVideo]:
    """Every member's val probabilities on each video's common grid, as ``dtype`` (default ``STORAGE``)."""
    dtype = STORAGE if dtype is None else dtype
    videos = []
    order = [{vid: i for i, vid in enumerate(m.video_ids)} for m in members]
    for video_id in members[0].video_ids:
        per_member = [m.video(o[video_id]) for m, o in zip(members, order, strict=True)]
        cell_s, cell_e = common_grid([(s, e) for s, e, _ in per_member])
        probs = np.empty((len(members), len(cell_s), per_member[0][2].shape[1]), dtype=dtype)
        for m, (s, e, p) in enumerate(per_member):
            probs[m] = p[member_cells(s, e, cell_s)]
        scenes = np.stack([m.scene_probs[o[video_id]] for m, o in zip(members, order, strict=True)])
        videos.append(AlignedVideo(video_id, cell_s, cell_e, probs, scenes))
    return videos
