import numpy as np
import pytest

from tal_core.scoring.binning import binned, split_into_bins
from tal_core.scoring.metrics import Segments, average_precision


def segs(rows):
    return Segments.from_rows(rows)


def test_segments_split_at_bin_edges_clip_and_drop_short_pieces():
    out = split_into_bins(segs([("r", "a", 8.0, 23.0, 1.0), ("r", "b", 29.7, 31.0, 1.0), ("r", "a", 3.0, 5.0, 1.0)]),
                          10.0)
    rows = list(zip(out.video.tolist(), out.label.tolist(), out.start.tolist(), out.end.tolist(), strict=True))
    assert rows == [("r_0_10", "a", 8.0, 10.0), ("r_10_20", "a", 10.0, 20.0), ("r_20_30", "a", 20.0, 23.0),
                    ("r_30_40", "b", 30.0, 31.0), ("r_0_10", "a", 3.0, 5.0)]  # 29.7-30 (0.3 s) dropped


def test_ground_truth_pieces_round_to_a_tenth():
    out = split_into_bins(segs([("r", "a", 1.234, 12.06, 1.0)]), 10.0, round_to=0.1)
    assert out.start.tolist() == pytest.approx([1.2, 10.0]) and out.end.tolist() == pytest.approx([10.0, 12.1])


def test_binned_scoring_counts_predictions_in_empty_bins_as_false_positives():
    gt = segs([("r", "a", 2.0, 8.0, 1.0)])
    hit = segs([("r", "a", 2.0, 8.0, 0.9)])
    assert average_precision(*binned(gt, hit, 10.0)).mean == 1.0
    stray = segs([("r", "a", 2.0, 8.0, 0.5), ("r", "a", 12.0, 18.0, 0.9)])  # bin r_10_20 has no ground truth
    assert average_precision(*binned(gt, stray, 10.0)).mean == pytest.approx(0.5)
    # a segment across a bin edge must be found in both bins
    gt2 = segs([("r", "a", 5.0, 15.0, 1.0)])
    assert average_precision(*binned(gt2, segs([("r", "a", 5.0, 15.0, 1.0)]), 10.0)).mean == 1.0
    assert average_precision(*binned(gt2, segs([("r", "a", 5.0, 10.0, 1.0)]), 10.0), (0.5,)).mean == 0.5
    assert binned(gt, hit, 0) == (gt, hit)
    assert np.all(split_into_bins(segs([]), 10.0).start == np.zeros(0))
