"""Straightforward per-prediction-loop ActivityNet mAP: the baseline our vectorised
``tal_core.scoring.metrics.average_precision`` is checked and timed against."""

from __future__ import annotations

import numpy as np


def _interpolated_ap(precision, recall):
    mprec = np.hstack([[0], precision, [0]])
    mrec = np.hstack([[0], recall, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1:] != mrec[0:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def _iou(start, end, gt_starts, gt_ends):
    """As the ActivityNet scorer's: a zero-length prediction against a zero-length ground truth is 0/0 = NaN,
    which the loop below never finds below a threshold and its reversed argsort puts first."""
    inter = np.clip(np.minimum(end, gt_ends) - np.maximum(start, gt_starts), 0, None)
    union = (end - start) + (gt_ends - gt_starts) - inter
    return np.divide(inter, union, out=np.full_like(inter, np.nan, dtype=float), where=union != 0)


def class_ap(gt_rows, pred_rows, thresholds):
    """gt_rows: [(video, start, end)]; pred_rows: [(video, start, end, score)] -> AP per threshold."""
    npos = len(gt_rows)
    ap = np.zeros(len(thresholds))
    if not pred_rows or npos == 0:
        return ap
    by_video: dict[str, list[int]] = {}
    for i, (video, _, _) in enumerate(gt_rows):
        by_video.setdefault(video, []).append(i)
    scores = np.array([p[3] for p in pred_rows])
    order = np.argsort(-scores, kind="stable")
    lock = -np.ones((len(thresholds), npos), dtype=int)
    tp = np.zeros((len(thresholds), len(pred_rows)))
    fp = np.zeros((len(thresholds), len(pred_rows)))
    for out_i, idx in enumerate(order):
        video, start, end, _ = pred_rows[idx]
        members = by_video.get(video)
        if not members:
            fp[:, out_i] = 1
            continue
        gs = np.array([gt_rows[m][1] for m in members])
        ge = np.array([gt_rows[m][2] for m in members])
        tiou = _iou(start, end, gs, ge)
        tiou_sorted = np.argsort(tiou, kind="stable")[::-1]
        for t, thr in enumerate(thresholds):
            for j in tiou_sorted:
                if tiou[j] < thr:
                    fp[t, out_i] = 1
                    break
                if lock[t, members[j]] >= 0:
                    continue
                tp[t, out_i] = 1
                lock[t, members[j]] = idx
                break
            if not tp[t, out_i] and not fp[t, out_i]:
                fp[t, out_i] = 1
    tp_cum, fp_cum = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
    recall = tp_cum / npos
    precision = tp_cum / (tp_cum + fp_cum)
    for t in range(len(thresholds)):
        ap[t] = _interpolated_ap(precision[t], recall[t])
    return ap


def reference_map(gt, pred, thresholds):
    """(classes, ap (thresholds, classes)) for Segments-like gt and pred."""
    classes = sorted(set(gt.label.tolist()))
    ap = np.zeros((len(thresholds), len(classes)))
    for k, c in enumerate(classes):
        g = [(gt.video[i], gt.start[i], gt.end[i]) for i in range(len(gt)) if gt.label[i] == c]
        p = [(pred.video[i], pred.start[i], pred.end[i], pred.score[i]) for i in range(len(pred)) if pred.label[i] == c]
        ap[:, k] = class_ap(g, p, thresholds)
    return classes, ap
