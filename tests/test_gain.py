import numpy as np

from ensemble.gain import bootstrap_gain, concat_segments
from tal_core.scoring.metrics import Segments, average_precision

THRESHOLDS = (0.5, 0.75)


def truth(videos: int) -> Segments:
    return Segments.from_rows([(f"v{v}", "a", 2.0, 6.0, 1.0) for v in range(videos)])


def hits(videos, score=0.9) -> list:
    return [(f"v{v}", "a", 2.0, 6.0, score) for v in videos]


def misses(videos, score=0.95) -> list:
    return [(f"v{v}", "a", 10.0, 14.0, score) for v in videos]


def test_a_side_against_itself_gains_nothing_with_a_zero_interval():
    gt, found = truth(8), Segments.from_rows(hits(range(5)) + misses(range(5, 8)))
    result = bootstrap_gain(gt, found, found, THRESHOLDS, draws=50)
    assert result["mAP"] == 0 and result["low"] == 0 and result["high"] == 0 and result["videos"] == 8


def test_an_ensemble_better_on_every_video_has_an_interval_above_zero():
    gt = truth(10)
    single = Segments.from_rows(hits(range(5)) + misses(range(5, 10)))  # half the videos found
    ensemble = Segments.from_rows(hits(range(9)) + misses(range(9, 10)))
    result = bootstrap_gain(gt, ensemble, single, THRESHOLDS, draws=200, seed=3)
    expected = average_precision(gt, ensemble, THRESHOLDS).mean - average_precision(gt, single, THRESHOLDS).mean
    assert np.isclose(result["mAP"], expected) and expected > 0.3
    assert 0 < result["low"] <= result["mAP"] <= result["high"]


def test_a_gain_carried_by_one_video_has_an_interval_that_reaches_zero():
    gt = truth(12)
    single = Segments.from_rows(hits(range(11)) + misses([11], score=0.1))
    ensemble = Segments.from_rows(hits(range(12)))
    result = bootstrap_gain(gt, ensemble, single, THRESHOLDS, draws=300, seed=0)
    assert result["mAP"] > 0 and result["low"] == 0  # a third of the draws leave the one video out


def test_concat_keeps_every_row():
    parts = [Segments.from_rows(hits([0])), Segments.from_rows([]), Segments.from_rows(misses([1, 2]))]
    joined = concat_segments(parts)
    assert len(joined) == 3 and list(joined.video) == ["v0", "v1", "v2"]
