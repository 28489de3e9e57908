"""Interval probabilities -> scored segments.

Two decoders (``eval.decode``):
- ``merge``: runs of consecutive intervals whose arg-max is the same action become
  one segment scored by the mean probability of that action over the run.
- ``multithreshold``: for every action and every threshold in ``eval.thresholds``,
  runs of intervals whose probability is at least the threshold become candidates
  scored by their mean probability; the arg-max runs are added, then 1-D NMS per
  action removes duplicates.

Cells may be intervals or finer pieces (per-frame outputs, an ensemble's common grid):
only their own start/end are used. ``eval.smooth_seconds`` first filters each class's
cell probabilities over a window of that length: ``eval.smooth=median`` (the default: a
step stays exactly where it is while isolated wrong cells vanish) or ``mean`` (the
length-weighted mean over the cells whose centres lie within half the window of its own:
a step keeps its half-height point but its foot and shoulder spread, which shifts
thresholded runs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import EvalConfig


@dataclass(frozen=True)
class DecodedSegments:
    """Segments of one video: action index (1..K), start, end, score (all arrays)."""

    label: np.ndarray
    start: np.ndarray
    end: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.label)


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of True along the last axis of a 2-D mask: (row, first, last + 1)."""
    rows = mask.shape[0]
    padded = np.zeros((rows, mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    row_up, first = np.nonzero(edges == 1)
    _, stop = np.nonzero(edges == -1)
    return row_up, first, stop


def _run_scores(cumulative: np.ndarray, rows: np.ndarray, first: np.ndarray, stop: np.ndarray) -> np.ndarray:
    return (cumulative[rows, stop] - cumulative[rows, first]) / (stop - first)


def _boundary_contrast(actions: np.ndarray, rows: np.ndarray, first: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """1 - mean probability of the intervals just outside each run (0 outside the video).

    A fragment of a longer action has confident neighbours and scores low; the whole action scores high.
    """
    padded = np.pad(actions, ((0, 0), (1, 1)))
    return 1.0 - (padded[rows, first] + padded[rows, stop + 1]) / 2


def smooth_cells(starts: np.ndarray, ends: np.ndarray, probs: np.ndarray, window_seconds: float) -> np.ndarray:
    """Length-weighted moving average of cell probabilities over a window of ``window_seconds``."""
    if window_seconds <= 0 or len(starts) < 2:
        return probs
    centres, lengths = (starts + ends) / 2, np.maximum(ends - starts, 1e-12)
    weighted = np.zeros((len(starts) + 1, probs.shape[1]))
    np.cumsum(probs * lengths[:, None], axis=0, out=weighted[1:])
    total = np.concatenate([[0.0], np.cumsum(lengths)])
    lo = np.searchsorted(centres, centres - window_seconds / 2 - 1e-9, side="left")
    hi = np.searchsorted(centres, centres + window_seconds / 2 + 1e-9, side="right")
    return (weighted[hi] - weighted[lo]) / (total[hi] - total[lo])[:, None]


def median_cells(starts: np.ndarray, ends: np.ndarray, probs: np.ndarray, window_seconds: float) -> np.ndarray:
    """Running median of each class over an odd number of cells spanning about ``window_seconds``
    (counted in the video's median cell length; edges repeat the end cells)."""
    if window_seconds <= 0 or len(starts) < 2:
        return probs
    cell = float(np.median(ends - starts))
    width = int(round(window_seconds / max(cell, 1e-12)))
    width += 1 - width % 2  # odd
    if width < 3:
        return probs
    half = width // 2
    padded = np.pad(probs, ((half, half), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=0)  # (cells, classes, width)
    return np.median(windows, axis=-1)


def filter_cells(starts: np.ndarray, ends: np.ndarray, probs: np.ndarray, cfg: EvalConfig) -> np.ndarray:
    """``eval.smooth`` over ``eval.smooth_seconds`` (no change when 0)."""
    smoother = median_cells if cfg.smooth == "median" else smooth_cells
    return smoother(starts, ends, probs, cfg.smooth_seconds)


def _candidates(probs: np.ndarray, thresholds, contrast: bool = True, blocks=((0, None),)) -> tuple[np.ndarray, ...]:
    """(action index, first interval, stop interval, score) of every candidate run.

    Scores: mean probability over the run, times its boundary contrast when thresholds are used
    and ``contrast`` is on. ``blocks`` ((start, length) of each video laid end to end): running sums restart
    at each, so a video's scores do not depend on the videos decoded with it."""
    actions = probs[:, 1:].T  # (K, M)
    cumulative = np.zeros((actions.shape[0], actions.shape[1] + 1))
    for start, length in blocks:
        stop = actions.shape[1] if length is None else start + length
        np.cumsum(actions[:, start:stop], axis=1, out=cumulative[:, start + 1:stop + 1])
    argmax = probs.argmax(axis=1)
    masks = [argmax[None, :] == np.arange(1, probs.shape[1])[:, None]]
    masks += [actions >= thr for thr in thresholds]
    stacked = np.concatenate(masks, axis=0)
    rows, first, stop = runs(stacked)
    cls = rows % actions.shape[0]
    scores = _run_scores(cumulative, cls, first, stop)
    if thresholds and contrast:
        scores = scores * _boundary_contrast(actions, cls, first, stop)
    return cls + 1, first, stop, scores


def nms_1d(start, end, score, label, iou_threshold: float, keep_max: int) -> np.ndarray:
    """Indices kept by greedy per-label NMS, in descending score order (at most keep_max).

    Plain Python floats: per video there are tens of candidates, where numpy's per-call cost dominates.
    """
    order = np.lexsort((np.arange(len(score)), -np.asarray(score))).tolist()
    starts, ends, labels = np.asarray(start).tolist(), np.asarray(end).tolist(), np.asarray(label).tolist()
    kept: list[int] = []
    kept_by_label: dict[int, list[int]] = {}
    for i in order:
        s_i, e_i = starts[i], ends[i]
        same = kept_by_label.setdefault(labels[i], [])
        if any(_iou(s_i, e_i, starts[j], ends[j]) > iou_threshold for j in same):
            continue
        kept.append(i)
        same.append(i)
        if len(kept) >= keep_max:
            break
    return np.array(kept, dtype=np.int64)


def _iou(s1: float, e1: float, s2: float, e2: float) -> float:
    inter = min(e1, e2) - max(s1, s2)
    if inter <= 0:
        return 0.0
    union = (e1 - s1) + (e2 - s2) - inter
    return inter / union if union > 0 else 0.0


def _unique_runs(label, first, stop, score):
    """Identical runs found at several thresholds are one candidate (keep the first)."""
    width = int(stop.max(initial=0)) + 1
    keys = (label.astype(np.int64) * width + first) * width + stop
    _, index = np.unique(keys, return_index=True)
    index = np.sort(index)
    return label[index], first[index], stop[index], score[index]


def decode_cells(starts: np.ndarray, ends: np.ndarray, probs: np.ndarray, cfg: EvalConfig) -> DecodedSegments:
    """Segments of one video from its cells (start, end) and (cells, K + 1) probabilities."""
    return decode_videos([(starts, ends, probs)], cfg)[0]


def decode_videos(videos: list[tuple[np.ndarray, np.ndarray, np.ndarray]], cfg: EvalConfig) -> list[DecodedSegments]:
    """``decode_cells`` of many videos at once: their cells are laid end to end with one background cell
    between videos (no run crosses it, and it reads as "outside the video" for the boundary contrast), so
    finding and scoring candidate runs is a handful of numpy calls for all videos; only NMS runs per video."""
    if not videos:
        return []
    thresholds = cfg.thresholds if cfg.decode == "multithreshold" else ()
    filtered = [filter_cells(np.asarray(s, np.float64), np.asarray(e, np.float64), np.asarray(p, np.float64), cfg)
                for s, e, p in videos]
    lengths = np.array([len(p) for p in filtered])
    offsets = np.concatenate([[0], np.cumsum(lengths + 1)])[:-1]
    stacked = np.zeros((int(lengths.sum()) + len(videos), filtered[0].shape[1]))
    stacked[:, 0] = 1.0
    for offset, probs in zip(offsets, filtered, strict=True):
        stacked[offset:offset + len(probs)] = probs
    label, first, stop, score = _candidates(stacked, thresholds, cfg.boundary_contrast,
                                            list(zip(offsets.tolist(), lengths.tolist(), strict=True)))
    if cfg.decode != "merge":
        label, first, stop, score = _unique_runs(label, first, stop, score)
    video_of = np.searchsorted(offsets, first, side="right") - 1
    order = np.argsort(video_of, kind="stable")  # keeps each video's candidates in their found order
    bounds = np.searchsorted(video_of[order], np.arange(len(videos) + 1))
    decoded = []
    for v, (starts, ends, _) in enumerate(videos):
        mine = order[bounds[v]:bounds[v + 1]]
        lab, fst, stp, sco = label[mine], first[mine] - offsets[v], stop[mine] - offsets[v], score[mine]
        if cfg.decode == "merge":
            keep = np.argsort(-sco, kind="stable")[: cfg.max_segments_per_video]
        else:
            keep = nms_1d(starts[fst], ends[stp - 1], sco, lab, cfg.nms_tiou, cfg.max_segments_per_video)
        decoded.append(DecodedSegments(lab[keep], starts[fst[keep]], ends[stp[keep] - 1], sco[keep]))
    return decoded


def apply_scene_prior(probs: np.ndarray, scene_probs: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Rescale action probabilities by how often each action occurs in the predicted scene.

    ``prior``: (scenes, K) relative frequency of each action per scene (rows sum to 1).
    The expected frequency under the video's scene distribution, divided by its mean,
    multiplies each action column; background is untouched; rows are renormalised.
    """
    expected = scene_probs @ prior
    factor = expected / max(expected.mean(), 1e-12)
    scaled = probs.copy()
    scaled[:, 1:] *= factor[None, :]
    return scaled / scaled.sum(axis=1, keepdims=True)
