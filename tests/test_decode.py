import numpy as np
import pytest

from tal_core.config import EvalConfig
from tal_core.decode import apply_scene_prior, decode_video, nms_1d, runs

STARTS = np.arange(6.0)
ENDS = STARTS + 1
PROBS = np.array([[.9, .05, .05], [.1, .8, .1], [.2, .7, .1], [.8, .1, .1], [.1, .1, .8], [.1, .1, .8]])


def test_runs_finds_every_run_per_row():
    rows, first, stop = runs(np.array([[1, 1, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=bool))
    assert list(zip(rows.tolist(), first.tolist(), stop.tolist(), strict=True)) == [(0, 0, 2), (0, 3, 4), (2, 0, 4)]


def test_merge_decoder_merges_equal_argmax_runs():
    seg = decode_video(STARTS, ENDS, PROBS, EvalConfig(decode="merge"))
    found = sorted(zip(seg.label.tolist(), seg.start.tolist(), seg.end.tolist(), np.round(seg.score, 3).tolist(),
                       strict=True))
    assert found == [(1, 1.0, 3.0, 0.75), (2, 4.0, 6.0, 0.8)]


def test_multithreshold_scores_by_contrast_and_suppresses_fragments():
    cfg = EvalConfig(decode="multithreshold", thresholds=(0.5, 0.75), nms_tiou=0.4)
    seg = decode_video(STARTS, ENDS, PROBS, cfg)
    found = {(k, a, b): s for k, a, b, s in zip(seg.label.tolist(), seg.start.tolist(), seg.end.tolist(),
                                                  seg.score.tolist(), strict=True)}
    # run [1, 3) of action 1: mean 0.75, neighbours 0.05 and 0.1 -> 0.75 * (1 - 0.075)
    assert found[(1, 1.0, 3.0)] == pytest.approx(0.75 * 0.925)
    # its fragment [1, 2) (mean 0.8, neighbours 0.05 and 0.7 -> 0.5) overlaps it with tIoU 0.5 > 0.4: dropped
    assert (1, 1.0, 2.0) not in found and (2, 4.0, 6.0) in found
    assert np.all(np.diff(seg.score) <= 0)


def test_merge_scores_are_plain_means():
    seg = decode_video(STARTS, ENDS, PROBS, EvalConfig(decode="merge"))
    assert sorted(np.round(seg.score, 6).tolist()) == [0.75, 0.8]


def test_nms_keeps_other_labels_and_caps_count():
    start, end = np.array([0.0, 0.0, 0.1]), np.array([1.0, 1.0, 1.0])
    keep = nms_1d(start, end, np.array([0.9, 0.8, 0.7]), np.array([1, 2, 1]), 0.5, 10)
    assert keep.tolist() == [0, 1]
    assert nms_1d(start, end, np.array([0.9, 0.8, 0.7]), np.array([1, 2, 3]), 0.5, 2).tolist() == [0, 1]


def test_scene_prior_rescales_actions_only():
    probs = np.array([[0.5, 0.25, 0.25]])
    prior = np.array([[0.9, 0.1], [0.1, 0.9]])
    scaled = apply_scene_prior(probs, np.array([1.0, 0.0]), prior)
    assert scaled[0, 1] > scaled[0, 2] and np.isclose(scaled.sum(), 1.0)
