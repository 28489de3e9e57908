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
def cases(draw):
    n_gt = draw(st.integers(0, 25))
    n_pred = draw(st.integers(0, 60))
    grid = draw(st.booleans())

    def rows(n, scored):
        out = []
        for _ in range(n):
            start = draw(st.integers(0, 12)) if grid else draw(st.floats(0, 12, allow_nan=False))
            length = draw(st.integers(1, 4)) if grid else draw(st.floats(0.1, 4, allow_nan=False))
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
