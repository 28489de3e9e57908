import numpy as np

from ensemble.segment_fusion import fuse_segments
from tal_core.config import EvalConfig


def member(rows):
    """Integer-coded detections from (video, label, start, end, score) rows."""
    video, label, start, end, score = (np.array(c) for c in zip(*rows, strict=True))
    return video.astype(np.int64), label.astype(np.int64), start.astype(float), end.astype(float), score.astype(float)


def test_agreeing_members_vote_and_nms_keeps_one_copy():
    a = member([(0, 1, 2.0, 6.0, 0.8)])
    b = member([(0, 1, 2.2, 6.1, 0.6)])  # the same segment, nearly: tIoU 0.93
    video, label, start, end, score = fuse_segments([a, b], np.array([0.5, 0.5]), EvalConfig())
    assert len(score) == 1 and (start[0], end[0]) == (2.0, 6.0)  # the better-voted copy survives
    assert np.isclose(score[0], 0.5 * 0.8 + 0.5 * 0.6)


def test_a_detection_only_one_member_makes_keeps_its_weighted_score():
    a = member([(0, 1, 2.0, 6.0, 0.9)])
    b = member([(1, 2, 0.0, 3.0, 0.7)])  # another video: no vote either way
    video, label, start, end, score = fuse_segments([a, b], np.array([3.0, 1.0]), EvalConfig())
    found = {(int(v), int(k)): s for v, k, s in zip(video, label, score, strict=True)}
    assert np.isclose(found[(0, 1)], 0.75 * 0.9) and np.isclose(found[(1, 2)], 0.25 * 0.7)


def test_overlap_below_the_vote_threshold_or_another_class_does_not_vote():
    a = member([(0, 1, 0.0, 4.0, 0.8)])
    b = member([(0, 1, 3.0, 7.0, 0.8), (0, 2, 0.0, 4.0, 0.8)])  # tIoU 1/7 with a; same span, other class
    _, label, start, _, score = fuse_segments([a, b], np.array([0.5, 0.5]), EvalConfig())
    assert len(score) == 3 and np.allclose(score, 0.4)
