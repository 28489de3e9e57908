"""ActivityNet detection mAP (exact, vectorised) and scene accuracy.

Definition (ActivityNet ``compute_average_precision_detection``): per class,
predictions in descending score order (ties: earlier in the input first); each is
matched, at each tIoU threshold, to the unmatched ground truth of the same video
with the highest tIoU if that tIoU >= threshold (equal matches); if several
unmatched ground truths share that tIoU, the one listed last wins, as in the
reference's reversed argsort. AP is VOC all-point interpolated; mAP at a
threshold is the mean over classes that have ground truth (a class without
predictions scores 0). Predictions for videos without ground truth count as false
positives; predictions whose label has no ground truth are ignored.

Zero-length segments (the published ActivityNet v1.3 ground truth holds some, e.g. ``[0, 0]``): a zero-length
prediction against a zero-length ground truth has tIoU 0/0, NaN in the reference, which never fails its
``tiou < threshold`` test and sorts before every number in its reversed argsort; so such a pair matches at
every threshold, ahead of any other ground truth of the video, wherever the two points lie. Any other pair
with a zero-length side has tIoU 0 (no match at thresholds above 0). Segments past a video's duration are
scored as they are (no clipping), as the reference does.

Vectorised: predictions are grouped by (class, video); the k-th prediction of
every group is matched in one numpy step, so the Python loop runs over ranks
(the largest group), not over predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Segments:
    """Columns of a segment table. ``score`` is 1 for ground truth."""

    video: np.ndarray  # str
    label: np.ndarray  # str
    start: np.ndarray
    end: np.ndarray
    score: np.ndarray

    @staticmethod
    def from_rows(rows: list[tuple[str, str, float, float, float]]) -> Segments:
        if not rows:
            empty = np.array([], dtype=object)
            return Segments(empty, empty, np.zeros(0), np.zeros(0), np.zeros(0))
        video, label, start, end, score = zip(*rows, strict=True)
        return Segments(np.array(video, dtype=object), np.array(label, dtype=object),
                        np.asarray(start, float), np.asarray(end, float), np.asarray(score, float))

    def __len__(self) -> int:
        return len(self.start)


@dataclass(frozen=True)
class MapResult:
    classes: tuple[str, ...]
    thresholds: tuple[float, ...]
    ap: np.ndarray  # (thresholds, classes)

    @property
    def map_per_threshold(self) -> np.ndarray:
        return self.ap.mean(axis=1) if self.ap.shape[1] else np.zeros(len(self.thresholds))

    @property
    def mean(self) -> float:
        return float(self.map_per_threshold.mean()) if len(self.thresholds) else 0.0

    def to_json(self) -> dict:
        out = {f"mAP@{t:g}": float(m) for t, m in zip(self.thresholds, self.map_per_threshold, strict=True)}
        out["mAP"] = self.mean
        out["per_class"] = {c: float(self.ap[:, k].mean()) for k, c in enumerate(self.classes)}
        return out


def segment_iou(starts: np.ndarray, ends: np.ndarray, gt_starts: np.ndarray, gt_ends: np.ndarray) -> np.ndarray:
    """tIoU broadcast between predictions (...) and ground truths (...)."""
    inter = np.clip(np.minimum(ends, gt_ends) - np.maximum(starts, gt_starts), 0, None)
    union = (ends - starts) + (gt_ends - gt_starts) - inter
    return np.divide(inter, union, out=np.zeros(np.broadcast(inter, union).shape), where=union > 0)


def interpolated_ap(tp: np.ndarray, num_gt: int) -> np.ndarray:
    """VOC all-point AP for each row of a (thresholds, predictions) 0/1 matrix in score order."""
    if tp.shape[1] == 0 or num_gt == 0:
        return np.zeros(tp.shape[0])
    tp_cum = np.cumsum(tp, axis=1)
    fp_cum = np.cumsum(1 - tp, axis=1)
    recall = tp_cum / num_gt
    precision = tp_cum / (tp_cum + fp_cum)
    rows = tp.shape[0]
    mprec = np.hstack([np.zeros((rows, 1)), precision, np.zeros((rows, 1))])
    mrec = np.hstack([np.zeros((rows, 1)), recall, np.ones((rows, 1))])
    mprec = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]
    steps = np.diff(mrec, axis=1)
    return (steps * mprec[:, 1:] * (steps != 0)).sum(axis=1)


def _stable_order(codes: np.ndarray) -> np.ndarray:
    """``np.argsort(codes, kind="stable")`` of non-negative integer codes; codes below 2**16 are sorted as
    uint16, which numpy sorts by radix (3-5x faster than int64's merge sort, same order)."""
    if len(codes) and 0 <= codes.min() and codes.max() < 2**16:
        codes = codes.astype(np.uint16)
    return np.argsort(codes, kind="stable")


def _match_groups(pred_group, pred_rank, pred_s, pred_e, gt_s, gt_e, gt_valid, thresholds):
    """0/1 true positives (thresholds, predictions) by greedy matching within each group; a zero-length
    prediction against a zero-length ground truth (the reference's NaN tIoU) ranks as tIoU +inf."""
    gt_points = gt_valid & (gt_e == gt_s)
    points = gt_points.any() and bool((pred_e == pred_s).any())
    tp = np.zeros((len(thresholds), len(pred_group)), dtype=np.int8)
    locked = np.zeros((len(thresholds), *gt_s.shape), dtype=bool)
    has_gt = pred_group >= 0
    order = _stable_order(pred_rank)
    ranks = pred_rank[order]
    bounds = np.searchsorted(ranks, np.arange(ranks.max(initial=-1) + 2))
    width = gt_s.shape[1]
    for rank in range(len(bounds) - 1):
        sel = order[bounds[rank] : bounds[rank + 1]]
        sel = sel[has_gt[sel]]
        if not len(sel):
            continue
        groups = pred_group[sel]
        iou = segment_iou(pred_s[sel, None], pred_e[sel, None], gt_s[groups], gt_e[groups])
        if points:
            iou[(pred_e[sel] == pred_s[sel])[:, None] & gt_points[groups]] = np.inf
        valid = gt_valid[groups]
        for t, thr in enumerate(thresholds):
            free = valid & ~locked[t, groups] & (iou >= thr)
            score = np.where(free, iou, -1.0)[:, ::-1]  # reversed: last of equal tIoUs wins
            best = width - 1 - score.argmax(axis=1)
            hit = free.any(axis=1)
            tp[t, sel[hit]] = 1
            locked[t, groups[hit], best[hit]] = True
    return tp


def _codes(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Integer codes of values shared across several columns (hash-based, in order of first appearance), and
    the distinct values. Plain dicts: no pandas import on the scoring path."""
    joined = np.concatenate([np.asarray(c, dtype=object) for c in columns]).tolist()
    index = {value: code for code, value in enumerate(dict.fromkeys(joined))}
    codes = np.fromiter(map(index.__getitem__, joined), dtype=np.int64, count=len(joined))
    splits = np.cumsum([len(c) for c in columns])[:-1]
    uniques = np.empty(len(index), dtype=object)
    uniques[:] = list(index)
    return np.split(codes, splits), uniques


def average_precision(gt: Segments, pred: Segments, thresholds=(0.5, 0.75, 0.95)) -> MapResult:
    thresholds = tuple(float(t) for t in thresholds)
    (gt_label, pred_label), names = _codes(gt.label, pred.label)
    gt_codes = np.unique(gt_label)
    classes = tuple(sorted(str(names[c]) for c in gt_codes))
    ap = np.zeros((len(thresholds), len(classes)))
    if not classes:
        return MapResult(classes, thresholds, ap)
    class_of_code = np.full(len(names), -1, dtype=np.int64)
    class_of_code[gt_codes[np.argsort(names[gt_codes].astype(str), kind="stable")]] = np.arange(len(classes))
    gt_class, pred_class = class_of_code[gt_label], class_of_code[pred_label]
    keep = pred_class >= 0
    pred_class = pred_class[keep]
    (gt_video, pred_video), _ = _codes(gt.video, pred.video[keep])
    p_s, p_e, p_score = pred.start[keep], pred.end[keep], pred.score[keep]

    n_videos = int(max(gt_video.max(initial=-1), pred_video.max(initial=-1)) + 1)
    gt_key = gt_class * n_videos + gt_video
    keys, gt_group = np.unique(gt_key, return_inverse=True)
    gt_order = _stable_order(gt_group)
    slot = np.empty(len(gt_group), dtype=np.int64)
    starts_of_group = np.searchsorted(gt_group[gt_order], np.arange(len(keys)))
    slot[gt_order] = np.arange(len(gt_group)) - starts_of_group[gt_group[gt_order]]
    width = int(slot.max(initial=-1) + 1)
    gt_s = np.zeros((len(keys), width))
    gt_e = np.zeros((len(keys), width))
    gt_valid = np.zeros((len(keys), width), dtype=bool)
    gt_s[gt_group, slot], gt_e[gt_group, slot], gt_valid[gt_group, slot] = gt.start, gt.end, True

    # score order within each class: descending, ties by input position (stable)
    order = np.argsort(-p_score, kind="stable")
    order = order[_stable_order(pred_class[order])]
    pred_key = pred_class[order] * n_videos + pred_video[order]
    pos = np.searchsorted(keys, pred_key)
    found = (pos < len(keys)) & (keys[np.minimum(pos, len(keys) - 1)] == pred_key)
    group = np.where(found, pos, -1)
    key_order = _stable_order(pred_key)
    first = np.searchsorted(pred_key[key_order], pred_key[key_order])
    rank = np.empty(len(order), dtype=np.int64)
    rank[key_order] = np.arange(len(order)) - first
    tp = _match_groups(group, rank, p_s[order], p_e[order], gt_s, gt_e, gt_valid, thresholds)

    num_gt = np.bincount(gt_class, minlength=len(classes))
    cls_sorted = pred_class[order]
    bounds = np.searchsorted(cls_sorted, np.arange(len(classes) + 1))
    for k in range(len(classes)):
        ap[:, k] = interpolated_ap(tp[:, bounds[k] : bounds[k + 1]], int(num_gt[k]))
    return MapResult(classes, thresholds, ap)


def scene_accuracy(true_scenes: np.ndarray, predicted: np.ndarray) -> float:
    """Share of videos whose predicted scene is right (videos without a known scene are skipped)."""
    true_scenes = np.asarray(true_scenes)
    known = true_scenes >= 0
    if not known.any():
        return 0.0
    return float((np.asarray(predicted)[known] == true_scenes[known]).mean())
