"""Put members with different interval grids on one common time grid per video.

The common grid's cells are bounded by every boundary of every member, so each
cell lies inside exactly one interval of each member and a member's probability
on a cell is that of its interval (exact, no interpolation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tal_core.scoring.predictions import IntervalPredictions


@dataclass(frozen=True)
class AlignedVideo:
    video_id: str
    starts: np.ndarray  # (cells,)
    ends: np.ndarray
    probs: np.ndarray  # (members, cells, K + 1)
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


def align(members: list[IntervalPredictions]) -> list[AlignedVideo]:
    videos = []
    order = [{vid: i for i, vid in enumerate(m.video_ids)} for m in members]
    for video_id in members[0].video_ids:
        per_member = [m.video(o[video_id]) for m, o in zip(members, order, strict=True)]
        cell_s, cell_e = common_grid([(s, e) for s, e, _ in per_member])
        probs = np.stack([p[member_cells(s, e, cell_s)] for s, e, p in per_member]).astype(np.float32)
        scenes = np.stack([m.scene_probs[o[video_id]] for m, o in zip(members, order, strict=True)])
        videos.append(AlignedVideo(video_id, cell_s, cell_e, probs, scenes))
    return videos
