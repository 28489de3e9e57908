import numpy as np
import pytest

from tal_core.data.annotations import Segment, Taxonomy
from tal_core.data.intervals import interval_grid, label_intervals

TAX = Taxonomy(("a", "b"), ("s",), ("front",))


def test_grid_clips_last_interval_when_length_does_not_divide():
    starts, ends = interval_grid(2.5, 1.0)
    assert starts.tolist() == [0.0, 1.0, 2.0]
    assert ends.tolist() == [1.0, 2.0, 2.5]


def test_grid_exact_division_has_no_empty_tail():
    starts, ends = interval_grid(3.0, 0.1)
    assert len(starts) == 30 and ends[-1] == pytest.approx(3.0)


def labels(segments, duration=4.0, length=1.0, overlap=0.5):
    s, e = interval_grid(duration, length)
    return label_intervals(s, e, segments, TAX, overlap).tolist()


def test_background_when_below_overlap_and_action_at_threshold():
    # [0.5, 1.5] covers half of intervals 0 and 1: exactly at the 0.5 threshold -> labelled
    assert labels([Segment(0.5, 1.5, "a")]) == [1, 1, 0, 0]
    assert labels([Segment(0.6, 1.4, "a")]) == [0, 0, 0, 0]


def test_largest_cover_wins_and_ties_go_to_first_action():
    assert labels([Segment(0.0, 0.4, "a"), Segment(0.4, 1.0, "b")], overlap=0.3) == [2, 0, 0, 0]
    assert labels([Segment(0.0, 0.5, "b"), Segment(0.5, 1.0, "a")], overlap=0.5) == [1, 0, 0, 0]


def test_clipped_last_interval_uses_its_own_length():
    # last interval [3, 3.5) is 0.5 s; 0.3 s of action = 60% of it
    assert labels([Segment(3.2, 3.5, "b")], duration=3.5) == [0, 0, 0, 2]


def test_overlapping_segments_of_one_class_are_merged():
    assert labels([Segment(0.0, 0.4, "a"), Segment(0.2, 0.6, "a")]) == [1, 0, 0, 0]
    assert labels([Segment(0.0, 0.4, "a"), Segment(0.0, 0.4, "a")]) == [0, 0, 0, 0]


def test_no_segments_is_all_background():
    assert labels([]) == [0, 0, 0, 0]
    assert np.asarray(labels([])).dtype == np.int64
