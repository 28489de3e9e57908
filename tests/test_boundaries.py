import numpy as np
import pytest

from ensemble.boundaries import apply_offsets, fit_offsets, matched_errors, offsets_json
from tal_core.scoring.metrics import Segments


def truth() -> Segments:
    rows = [(f"v{i}", "fast", 2.0 + i, 6.0 + i, 1.0) for i in range(4)]
    rows += [(f"v{i}", "slow", 10.0, 13.0, 1.0) for i in range(4)]
    rows += [("v0", "rare", 20.0, 22.0, 1.0), ("v1", "rare", 20.0, 22.0, 1.0)]
    return Segments.from_rows(rows)


def detections() -> Segments:
    """"fast" found 0.375 s late and 0.5 s early everywhere (one decoy of lower score); "slow" exact; "rare"
    late but matched twice only."""
    rows = [(f"v{i}", "fast", 2.375 + i, 5.5 + i, 0.9) for i in range(4)]
    rows += [("v0", "fast", 1.0, 6.0, 0.2)]  # overlaps v0's truth too, but scores lower: not its match
    rows += [(f"v{i}", "slow", 10.0, 13.0, 0.8) for i in range(4)]
    rows += [("v0", "rare", 21.0, 22.0, 0.7), ("v1", "rare", 21.0, 22.0, 0.7)]
    return Segments.from_rows(rows)


def test_a_class_found_late_everywhere_gets_its_median_offsets():
    errors = matched_errors(detections(), truth())
    assert errors["fast"].tolist() == [[0.375, -0.5]] * 4  # the decoy (score 0.2) is not v0's match
    offsets = fit_offsets(detections(), truth())
    # "slow" is exact (nothing to move) and "rare" has too few matches to trust
    assert offsets == {"fast": (0.375, -0.5)}
    assert offsets_json(offsets) == {"fast": {"start": 0.375, "end": -0.5}}


def test_applied_offsets_put_the_edges_on_the_truth_and_leave_other_classes():
    moved = apply_offsets(detections(), {"fast": (0.375, -0.5)}, {f"v{i}": 30.0 for i in range(4)})
    fast = moved.label == "fast"
    assert moved.start[fast][:4].tolist() == [2.0, 3.0, 4.0, 5.0] and moved.end[fast][:4].tolist() == [6.0, 7.0, 8.0, 9.0]
    assert np.array_equal(moved.start[~fast], detections().start[~fast])
    assert np.array_equal(moved.score, detections().score) and np.array_equal(moved.video, detections().video)


def test_offsets_stay_inside_the_video_and_never_empty_a_segment():
    found = Segments.from_rows([("v", "x", 0.1, 1.0, 0.5), ("v", "x", 9.0, 9.9, 0.5), ("v", "y", 4.0, 4.2, 0.5)])
    moved = apply_offsets(found, {"x": (0.5, -0.5), "y": (-1.0, 1.0)}, {"v": 10.0})
    # x: start clipped at 0, end at the video's end; y's move would empty it: its edges stay
    assert moved.start.tolist() == [0.0, 8.5, 4.0] and moved.end.tolist() == [1.5, 10.0, 4.2]
    assert apply_offsets(found, None, {"v": 10.0}) is found


def test_no_detections_no_offsets():
    empty = Segments.from_rows([])
    assert fit_offsets(empty, truth()) == {} and len(apply_offsets(empty, {"x": (1.0, 1.0)}, {})) == 0


@pytest.mark.parametrize("min_matches", [1, 2])
def test_fewer_matches_are_trusted_when_asked(min_matches):
    assert fit_offsets(detections(), truth(), min_matches=min_matches)["rare"] == (1.0, 0.0)
