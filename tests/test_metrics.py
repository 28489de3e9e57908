import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import load_benchmark
from tal_core.scoring.metrics import Segments, average_precision, interpolated_ap, scene_accuracy

reference_map = load_benchmark("reference_map").reference_map  # the per-prediction loop it is checked against


def segs(rows):
    return Segments.from_rows([(v, lbl, s, e, sc) for v, lbl, s, e, sc in rows])


GT = segs([("v1", "a", 0.0, 10.0, 1), ("v1", "b", 20.0, 30.0, 1), ("v2", "a", 5.0, 15.0, 1)])


def test_perfect_predictions_score_one():
    result = average_precision(GT, GT, (0.5, 0.75, 0.95))
    assert result.mean == pytest.approx(1.0)


def test_no_predictions_score_zero():
    assert average_precision(GT, segs([])).mean == 0.0


def test_tiou_exactly_at_threshold_matches():
    # pred [0, 5] vs gt [0, 10]: tIoU = 0.5 exactly
    gt = segs([("v", "a", 0.0, 10.0, 1)])
    at = average_precision(gt, segs([("v", "a", 0.0, 5.0, 0.9)]), (0.5,))
    above = average_precision(gt, segs([("v", "a", 0.0, 4.999, 0.9)]), (0.5,))
    assert at.mean == 1.0 and above.mean == 0.0


def test_one_prediction_cannot_match_two_ground_truths():
    gt = segs([("v", "a", 0.0, 10.0, 1), ("v", "a", 0.0, 10.0, 1)])
    result = average_precision(gt, segs([("v", "a", 0.0, 10.0, 0.9)]), (0.5,))
    assert result.mean == pytest.approx(0.5)


def test_duplicate_predictions_are_false_positives():
    gt = segs([("v", "a", 0.0, 10.0, 1)])
    result = average_precision(gt, segs([("v", "a", 0.0, 10.0, 0.9), ("v", "a", 0.0, 10.0, 0.8)]), (0.5,))
    assert result.mean == pytest.approx(1.0)  # the duplicate comes after full recall
    result = average_precision(gt, segs([("v", "a", 0.0, 10.0, 0.8), ("v", "a", 50.0, 60.0, 0.9)]), (0.5,))
    assert result.mean == pytest.approx(0.5)


def test_class_with_ground_truth_but_no_predictions_counts_zero():
    result = average_precision(GT, segs([("v1", "a", 0.0, 10.0, 0.9), ("v2", "a", 5.0, 15.0, 0.8)]), (0.5,))
    assert result.to_json()["per_class"] == {"a": 1.0, "b": 0.0}
    assert result.mean == pytest.approx(0.5)


def test_unknown_videos_are_false_positives_and_unknown_labels_ignored():
    gt = segs([("v", "a", 0.0, 10.0, 1)])
    fp = average_precision(gt, segs([("other", "a", 0.0, 10.0, 0.9), ("v", "a", 0.0, 10.0, 0.5)]), (0.5,))
    assert fp.mean == pytest.approx(0.5)
    ignored = average_precision(gt, segs([("v", "zzz", 0.0, 10.0, 0.9), ("v", "a", 0.0, 10.0, 0.5)]), (0.5,))
    assert ignored.mean == pytest.approx(1.0)


def test_score_ties_keep_input_order():
    gt = segs([("v", "a", 0.0, 10.0, 1)])
    first_right = average_precision(gt, segs([("v", "a", 0.0, 10.0, 0.5), ("v", "a", 30.0, 40.0, 0.5)]), (0.5,))
    first_wrong = average_precision(gt, segs([("v", "a", 30.0, 40.0, 0.5), ("v", "a", 0.0, 10.0, 0.5)]), (0.5,))
    assert first_right.mean == pytest.approx(1.0) and first_wrong.mean == pytest.approx(0.5)


def test_empty_ground_truth():
    result = average_precision(segs([]), segs([("v", "a", 0, 1, 0.5)]))
    assert result.classes == () and result.mean == 0.0


def test_interpolated_ap_hand_case():
    # TP, FP, TP with 2 gt: precision 1, .5, .667; recall .5, .5, 1 -> AP = .5*1 + .5*.667
    assert interpolated_ap(np.array([[1, 0, 1]]), 2)[0] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_scene_accuracy_skips_unknown():
    assert scene_accuracy(np.array([0, 1, -1]), np.array([0, 0, 2])) == 0.5


@st.composite
def cases(draw, zero_length=False):
    """``zero_length``: segments of length 0 too (the published ActivityNet ground truth holds some)."""
    n_gt = draw(st.integers(0, 25))
    n_pred = draw(st.integers(0, 60))
    grid = draw(st.booleans())

    def rows(n, scored):
        out = []
        for _ in range(n):
            start = draw(st.integers(0, 12)) if grid else draw(st.floats(0, 12, allow_nan=False))
            length = draw(st.integers(0 if zero_length else 1, 4)) if grid else draw(
                st.sampled_from([0.0, draw(st.floats(0.1, 4, allow_nan=False))]) if zero_length
                else st.floats(0.1, 4, allow_nan=False))
            score = draw(st.sampled_from([0.1, 0.5, 0.9])) if scored else 1.0
            out.append((draw(st.sampled_from(["v1", "v2", "v3"])), draw(st.sampled_from(["a", "b", "c"])),
                        float(start), float(start + length), score))
        return segs(out)

    return rows(n_gt, False), rows(n_pred, True)


@settings(max_examples=150, deadline=None)
@given(cases())
def test_vectorised_equals_loop_reference(case):
    gt, pred = case
    thresholds = (0.1, 0.3, 0.5, 0.75, 0.95)
    ours = average_precision(gt, pred, thresholds)
    classes, ap = reference_map(gt, pred, thresholds)
    assert list(ours.classes) == classes
    assert np.abs(ours.ap - ap).max(initial=0.0) <= 1e-9


# ActivityNet v1.3 as published holds zero-length annotations (activitynet/ActivityNet#56). The official scorer
# (Evaluation/eval_detection.py, compute_average_precision_detection) computes tIoU 0/0 = NaN for a zero-length
# prediction against a zero-length ground truth: NaN is never "< threshold" and its reversed argsort puts it
# first, so the pair matches wherever the two points lie. The numbers below are the official scorer's own.
ZERO_GT = [("v", "a", 0.0, 0.0, 1), ("v", "a", 2.0, 5.0, 1), ("v", "a", 0.0, 0.0, 1), ("w", "a", 1.0, 3.0, 1),
           ("w", "b", 4.0, 4.0, 1)]


@pytest.mark.parametrize(("preds", "official"), [
    ([("v", "a", 3.0, 3.0, 0.9)], [1 / 4] * 3),  # a point anywhere in the video takes a zero-length truth
    ([("v", "a", 0.0, 1.0, 0.9)], [0.0] * 3),  # tIoU with [0, 0] is 0 / 1
    ([("v", "a", 2.0, 5.0, 0.9), ("v", "a", 7.0, 7.0, 0.5)], [2 / 4] * 3),
    ([("v", "a", 4.0, 4.0, 0.95), ("v", "a", 2.5, 5.0, 0.9), ("v", "a", 9.0, 9.0, 0.8), ("v", "a", 1.0, 1.0, 0.7),
      ("w", "a", 3.0, 3.0, 0.6), ("w", "b", 4.0, 4.0, 0.5), ("w", "b", 0.0, 1.0, 0.55)],
     [[0.75, 0.5], [0.75, 0.5], [0.25 + 0.25 * 2 / 3, 0.5]]),
])
def test_zero_length_ground_truth_scores_as_the_activitynet_scorer(preds, official):
    gt, pred = segs(ZERO_GT), segs(preds)
    thresholds = (0.5, 0.75, 0.95)
    ours = average_precision(gt, pred, thresholds)
    official = np.array(official, dtype=float)
    if official.ndim == 1:  # class "a" alone; "b" has no prediction and scores 0
        official = np.stack([official, np.zeros(3)], axis=1)
    assert ours.classes == ("a", "b") and np.abs(ours.ap - official).max() <= 1e-12
    assert np.abs(reference_map(gt, pred, thresholds)[1] - official).max() <= 1e-12


@settings(max_examples=150, deadline=None)
@given(cases(zero_length=True))
def test_vectorised_equals_loop_reference_with_zero_length_segments(case):
    gt, pred = case
    thresholds = (0.1, 0.5, 0.75, 0.95, 1.0)
    ours = average_precision(gt, pred, thresholds)
    classes, ap = reference_map(gt, pred, thresholds)
    assert list(ours.classes) == classes
    assert np.abs(ours.ap - ap).max(initial=0.0) <= 1e-12
