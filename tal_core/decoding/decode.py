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
thresholded runs). ``eval.refine_seconds`` then moves each candidate's start and end to the strongest step
of its class's unsmoothed probabilities within that distance (``refine_edges``): smoothing finds the actions,
the raw cells place their edges. With ``merge``, ``eval.bridge_seconds`` joins runs of one class separated by
at most that much (``bridge_gaps``): a flicker the arg-max cut into pieces is one segment again. With
``eval.foreground_classes`` N, every run of cells whose arg-max is some action (not background) is also a
candidate of each of its N likeliest actions (``foreground_candidates``): where the cells of one action waver
between two similar classes, the arg-max cuts it into pieces of both, and the whole run is found as each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tal_core.config import EvalConfig


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
    """Runs of True along the last axis of a 2-D mask: (row, first, last + 1). Each row is padded with False
    on both sides, so its edges alternate rise, fall: one scan finds them all."""
    rows, width = mask.shape
    padded = np.zeros((rows, width + 2), dtype=bool)
    padded[:, 1:-1] = mask
    edges = np.flatnonzero(padded[:, 1:] != padded[:, :-1])
    rise, fall = edges[0::2], edges[1::2]
    return rise // (width + 1), rise % (width + 1), fall % (width + 1)


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


def refine_edges(actions: np.ndarray, layout: CellLayout, cls: np.ndarray, first: np.ndarray, stop: np.ndarray,
                 seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Each run's first and stop cell moved to the strongest step of its class's ``actions`` (K, cells) within
    ``seconds`` (r cells, r from the median cell length of the run's video): the start to where the mean over
    the r cells after it most exceeds the mean over the r cells before it, the stop the other way round (ties:
    the smallest move). Cells outside the run's video read as 0, as the background between videos does. A
    flicker that alternates between action and background averages out over the windows, so an edge follows
    the action, not its flashes; a run keeps at least one cell. Window sums come from the layout's per-video
    running sums, so a video's edges do not depend on the videos decoded with it."""
    video = layout.video_of(first)
    reach = layout.cells_within(seconds)[video][:, None]  # (runs, 1)
    if not len(cls) or not reach.any():
        return first, stop
    lo, hi = layout.offsets[video][:, None], (layout.offsets + layout.lengths)[video][:, None]  # the video's cells
    cumulative = layout.running_sums(actions)
    shifts = np.arange(-int(reach.max()), int(reach.max()) + 1)[None, :]
    allowed = np.abs(shifts) <= reach

    def window_sum(a, b):  # sum of cells [a, b) of each run's class, clipped to its video (outside: 0); the
        # windows of one run have one length, so sums rank edges as means would
        return cumulative[cls[:, None], np.clip(b, lo, hi)] - cumulative[cls[:, None], np.clip(a, lo, hi)]

    starts = np.clip(first[:, None] + shifts, lo, hi - 1)
    rise = window_sum(starts, starts + reach) - window_sum(starts - reach, starts)
    stops = np.clip(stop[:, None] + shifts, lo + 1, hi)
    fall = window_sum(stops - reach, stops) - window_sum(stops, stops + reach)
    rows = np.arange(len(cls))
    best_first = starts[rows, _smallest_move_argmax(np.where(allowed, rise, -np.inf), shifts)]
    best_stop = stops[rows, _smallest_move_argmax(np.where(allowed, fall, -np.inf), shifts)]
    moved = (reach[:, 0] > 0) & (best_stop > best_first)
    return np.where(moved, best_first, first), np.where(moved, best_stop, stop)


def _smallest_move_argmax(values: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Per row, the column of the largest value; among equal ones the smallest |shift| (then the earlier)."""
    top = values >= values.max(axis=1, keepdims=True) - 1e-12
    return np.where(top, -np.abs(shifts), -np.inf).argmax(axis=1)


class CellLayout:
    """Many videos' cells laid end to end with one background cell between consecutive videos (no run crosses
    it, and it reads as "outside the video" for the boundary contrast): where each video's cells sit, their
    times, and the index arrays of the per-video running sums. Depends on the cells only, so an ensemble's
    evaluator builds it once for all its evaluations."""

    def __init__(self, cells: list[tuple[np.ndarray, np.ndarray]]):
        self.lengths = np.array([len(starts) for starts, _ in cells], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths + 1)])[:-1].astype(np.int64)
        self.size = int(self.lengths.sum()) + len(cells)
        self.starts = np.zeros(self.size)
        self.ends = np.zeros(self.size)
        block_of = np.repeat(np.arange(len(cells)), self.lengths)
        self.position = np.arange(int(self.lengths.sum())) - np.repeat(np.cumsum(self.lengths) - self.lengths,
                                                                      self.lengths)
        self.columns = self.offsets[block_of] + self.position  # every video cell, video by video
        self.longest = int(self.lengths.max(initial=0))
        self.padded_index = block_of * self.longest + self.position
        self._median_cell: np.ndarray | None = None  # per video, filled by cells_within
        if len(cells):
            self.starts[self.columns] = np.concatenate([np.asarray(s, np.float64) for s, _ in cells])
            self.ends[self.columns] = np.concatenate([np.asarray(e, np.float64) for _, e in cells])

    def __len__(self) -> int:
        return len(self.lengths)

    def cells_within(self, seconds: float) -> np.ndarray:
        """Per video, how many of its cells (of its median cell length) span ``seconds``, rounded."""
        if seconds <= 0:
            return np.zeros(len(self), np.int64)
        if self._median_cell is None:
            lengths = self.ends[self.columns] - self.starts[self.columns]
            bounds = np.concatenate([[0], np.cumsum(self.lengths)])
            self._median_cell = np.array([np.median(lengths[a:b]) if b > a else 1.0
                                          for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
        return np.round(seconds / np.maximum(self._median_cell, 1e-12)).astype(np.int64)

    def stack(self, probs: list[np.ndarray]) -> np.ndarray:
        stacked = np.zeros((self.size, probs[0].shape[1]))
        stacked[:, 0] = 1.0
        stacked[self.columns] = np.concatenate(probs)
        return stacked

    def video_of(self, cell: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, cell, side="right") - 1

    def running_sums(self, actions: np.ndarray) -> np.ndarray:
        """(K, cells + 1) running sums of (K, cells) ``actions`` that restart at each video (column c + 1: the
        sum of the video's cells up to c). The videos are cut out into one zero-padded (K, videos, longest)
        array and summed in one call, adding in the same order as one video alone."""
        classes = actions.shape[0]
        padded = np.zeros((classes, len(self) * self.longest))
        padded[:, self.padded_index] = actions[:, self.columns]
        summed = np.cumsum(padded.reshape(classes, len(self), self.longest), axis=2)
        cumulative = np.zeros((classes, self.size + 1))
        cumulative[:, self.columns + 1] = summed.reshape(classes, -1)[:, self.padded_index]
        return cumulative


def _candidates(probs: np.ndarray, layout: CellLayout, thresholds, contrast: bool = True,
                raw: np.ndarray | None = None, refine_seconds: float = 0.0) -> tuple[np.ndarray, ...]:
    """(action index, first cell, stop cell, score) of every candidate run in the stacked ``probs``.

    Scores: mean probability over the run, times its boundary contrast when thresholds are used
    and ``contrast`` is on. With ``raw`` (the unsmoothed stacked probabilities) and ``refine_seconds``, each
    run's edges then move (``refine_edges``) and it keeps its score. Running sums restart at each video, so a
    video's scores do not depend on the videos decoded with it."""
    actions = probs[:, 1:].T  # (K, M)
    cumulative = layout.running_sums(actions)
    argmax = probs.argmax(axis=1)
    masks = [argmax[None, :] == np.arange(1, probs.shape[1])[:, None]]
    masks += [actions >= thr for thr in thresholds]
    stacked = np.concatenate(masks, axis=0)
    rows, first, stop = runs(stacked)
    cls = rows % actions.shape[0]
    scores = _run_scores(cumulative, cls, first, stop)
    if thresholds and contrast:
        scores = scores * _boundary_contrast(actions, cls, first, stop)
    if raw is not None and refine_seconds > 0:  # the run found the action and scores it; the raw cells place it
        first, stop = refine_edges(raw[:, 1:].T, layout, cls, first, stop, refine_seconds)
    return cls + 1, first, stop, scores


def foreground_candidates(probs: np.ndarray, layout: CellLayout, count: int, raw: np.ndarray | None = None,
                          refine_seconds: float = 0.0) -> tuple[np.ndarray, ...]:
    """(action index, first cell, stop cell, score) of every run of cells whose arg-max is not background, once
    for each of its ``count`` likeliest actions by mean probability over the run (ties: the lower index), scored
    by that mean. Edges are refined as ``_candidates`` refines them."""
    actions = probs[:, 1:].T  # (K, M)
    count = min(count, actions.shape[0])
    _, first, stop = runs((probs.argmax(axis=1) != 0)[None, :])
    if count == 0 or not len(first):
        return np.empty(0, np.int64), first, stop, np.empty(0)
    cumulative = layout.running_sums(actions)
    means = _run_scores(cumulative, np.arange(actions.shape[0])[:, None], first, stop)  # (K, runs)
    likeliest = np.argsort(-means, axis=0, kind="stable")[:count]  # (count, runs)
    cls = likeliest.T.ravel()
    first, stop = np.repeat(first, count), np.repeat(stop, count)
    scores = means[cls, np.repeat(np.arange(means.shape[1]), count)]
    if raw is not None and refine_seconds > 0:
        first, stop = refine_edges(raw[:, 1:].T, layout, cls, first, stop, refine_seconds)
    return cls + 1, first, stop, scores


def nms_grouped(video, start, end, score, label, iou_threshold: float, keep_max: int) -> np.ndarray:
    """Greedy per-label NMS inside each video, for all videos at once: the indices kept, by video, then
    descending score (ties: lower index first), at most keep_max per video.

    Greedy NMS visits a (video, label)'s candidates best first and keeps one unless a kept one overlaps it by
    more than ``iou_threshold``. Only intersecting pairs can suppress, so those are found (few: runs nest), and
    "kept = not suppressed by a kept earlier one" is iterated to its fixed point, which is the greedy answer
    (each pass settles one more step of every suppression chain)."""
    count = len(score)
    index = np.arange(count)
    visit = np.lexsort((index, -score, label, video))  # greedy's order within each (video, label)
    priority = np.empty(count, dtype=np.int64)
    priority[visit] = index
    first, second = intersecting_pairs(video * (int(label.max(initial=0)) + 1) + label, start, end)
    earlier = np.where(priority[first] < priority[second], first, second)
    later = np.where(priority[first] < priority[second], second, first)
    inter = np.minimum(end[later], end[earlier]) - np.maximum(start[later], start[earlier])
    union = (end[later] - start[later]) + (end[earlier] - start[earlier]) - inter
    iou = np.divide(inter, union, out=np.zeros(len(inter)), where=(inter > 0) & (union > 0))
    earlier, later = earlier[iou > iou_threshold], later[iou > iou_threshold]
    kept = np.ones(count, dtype=bool)
    while True:
        suppressed = np.zeros(count, dtype=bool)
        suppressed[later[kept[earlier]]] = True
        if np.array_equal(kept, ~suppressed):
            break
        kept = ~suppressed
    survivors = index[kept]
    survivors = survivors[np.lexsort((survivors, -score[survivors], video[survivors]))]
    return survivors[_rank_in_group(video[survivors]) < keep_max]


def intersecting_pairs(group, start, end) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs of segments of the same group that intersect. Sorted by (group, start), a segment's
    intersecting followers come right after it: step d pairs each still-open segment with the one d places
    on, and a segment closes at its first follower that starts after its end (or belongs to another group)."""
    order = np.lexsort((start, group))
    g, s, e = group[order], start[order], end[order]
    firsts, seconds = [], []
    open_ = np.arange(max(len(order) - 1, 0))
    step = 1
    while len(open_):
        follower = open_ + step
        open_, follower = open_[follower < len(order)], follower[follower < len(order)]
        hit = (g[follower] == g[open_]) & (s[follower] < e[open_])
        open_ = open_[hit]
        firsts.append(open_)
        seconds.append(follower[hit])
        step += 1
    if not firsts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return order[np.concatenate(firsts)], order[np.concatenate(seconds)]


def _rank_in_group(sorted_groups: np.ndarray) -> np.ndarray:
    """0, 1, 2 ... within each run of equal values of a sorted array."""
    count = len(sorted_groups)
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]) if count else np.empty(0, int)
    return np.arange(count) - np.repeat(starts, np.diff(np.r_[starts, count]))


def bridge_gaps(layout: CellLayout, label, first, stop, score, seconds: float) -> tuple[np.ndarray, ...]:
    """Runs of one class in one video that are at most ``seconds`` apart (in that video's cells) become one
    run from the first's start to the last's stop, scored by the mean of their scores weighted by their
    lengths (the gaps do not count). A flicker that the arg-max cuts into pieces becomes one segment again."""
    if not len(label):
        return label, first, stop, score
    video = layout.video_of(first)
    order = np.lexsort((first, label, video))
    label, first, stop, score, video = label[order], first[order], stop[order], score[order], video[order]
    gap = first[1:] - stop[:-1]
    joins = (video[1:] == video[:-1]) & (label[1:] == label[:-1]) & (gap >= 0) & \
        (gap <= layout.cells_within(seconds)[video[1:]])
    group = np.concatenate([[0], np.cumsum(~joins)])
    heads = np.flatnonzero(np.r_[True, ~joins])
    length = (stop - first).astype(np.float64)
    weighted = np.bincount(group, score * length) / np.bincount(group, length)
    return label[heads], first[heads], np.maximum.reduceat(stop, heads), weighted


def _unique_runs(label, first, stop, score):
    """Identical runs found at several thresholds (or refined to the same edges) are one candidate: the
    best-scored, the first found among equals."""
    width = int(stop.max(initial=0)) + 1
    keys = (label.astype(np.int64) * width + first) * width + stop
    best_first = np.lexsort((np.arange(len(score)), -score))
    _, index = np.unique(keys[best_first], return_index=True)
    index = np.sort(best_first[index])
    return label[index], first[index], stop[index], score[index]


def decode_cells(starts: np.ndarray, ends: np.ndarray, probs: np.ndarray, cfg: EvalConfig) -> DecodedSegments:
    """Segments of one video from its cells (start, end) and (cells, K + 1) probabilities."""
    return decode_videos([(starts, ends, probs)], cfg)[0]


def decode_videos(videos: list[tuple[np.ndarray, np.ndarray, np.ndarray]], cfg: EvalConfig) -> list[DecodedSegments]:
    """``decode_cells`` of many videos at once (``decode_flat``, split per video)."""
    video, label, start, end, score = decode_flat(videos, cfg)
    bounds = np.searchsorted(video, np.arange(len(videos) + 1))
    return [DecodedSegments(label[a:b], start[a:b], end[a:b], score[a:b])
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]


def decode_flat(videos: list[tuple[np.ndarray, np.ndarray, np.ndarray]], cfg: EvalConfig,
                layout: CellLayout | None = None) -> tuple[np.ndarray, ...]:
    """The segments of many videos as flat arrays (video index, action index 1..K, start, end, score), by video,
    best first within each. All videos are decoded together on one ``CellLayout`` (pass it when decoding the
    same cells again): finding, scoring and suppressing candidate runs is a fixed number of numpy calls, and
    each video's segments are exactly those it gets decoded alone."""
    if not videos:
        empty = np.empty(0)
        return np.empty(0, np.int64), np.empty(0, np.int64), empty, empty, empty
    layout = layout or CellLayout([(s, e) for s, e, _ in videos])
    thresholds = cfg.thresholds if cfg.decode == "multithreshold" else ()
    unsmoothed = [p for _, _, p in videos]
    if cfg.smooth_seconds > 0:
        videos = [(s, e, filter_cells(np.asarray(s, np.float64), np.asarray(e, np.float64),
                                      np.asarray(p, np.float64), cfg)) for s, e, p in videos]
    stacked = layout.stack([p for _, _, p in videos])
    raw = None  # the unsmoothed stacked probabilities that refinement reads (stacked once)
    if cfg.refine_seconds > 0:
        raw = stacked if cfg.smooth_seconds <= 0 else layout.stack(unsmoothed)
    label, first, stop, score = _candidates(stacked, layout, thresholds, cfg.boundary_contrast, raw,
                                            cfg.refine_seconds)
    bridging = cfg.decode == "merge" and cfg.bridge_seconds > 0
    if bridging:
        label, first, stop, score = bridge_gaps(layout, label, first, stop, score, cfg.bridge_seconds)
    if cfg.foreground_classes > 0:  # bridged apart from the arg-max runs: a run and its pieces would interleave
        extra = foreground_candidates(stacked, layout, cfg.foreground_classes, raw, cfg.refine_seconds)
        if bridging:
            extra = bridge_gaps(layout, *extra, cfg.bridge_seconds)
        label, first, stop, score = (np.concatenate(pair) for pair in zip((label, first, stop, score), extra,
                                                                          strict=True))
    if cfg.decode != "merge" or raw is not None or cfg.foreground_classes > 0:  # refined or foreground runs may coincide
        label, first, stop, score = _unique_runs(label, first, stop, score)
    video = layout.video_of(first)
    order = np.argsort(video, kind="stable")  # each video's candidates in their found order
    video, label, first, stop, score = video[order], label[order], first[order], stop[order], score[order]
    start, end = layout.starts[first], layout.ends[stop - 1]
    if cfg.decode == "merge":
        keep = np.lexsort((np.arange(len(score)), -score, video))
        keep = keep[_rank_in_group(video[keep]) < cfg.max_segments_per_video]
    else:
        keep = nms_grouped(video, start, end, score, label, cfg.nms_tiou, cfg.max_segments_per_video)
    return video[keep], label[keep], start[keep], end[keep], score[keep]


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
