import numpy as np

from ensemble.gain import bootstrap_gain, bootstrap_mean_gain, concat_segments
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


def test_the_mean_gain_of_pairs_resamples_the_same_videos_for_every_pair():
    """Two training seeds: one gains on video 11 only, one on videos 0-9. The mean of their gains is the mean
    gain; its interval is narrower than the first pair's, whose gain rests on one video."""
    gt = truth(12)
    single = Segments.from_rows(hits(range(11)) + misses([11], score=0.1))
    one_video = (Segments.from_rows(hits(range(12))), single)
    weak = Segments.from_rows(hits(range(10, 12)) + misses(range(10)))
    many_videos = (Segments.from_rows(hits(range(12))), weak)
    pooled = bootstrap_mean_gain(gt, [one_video, many_videos], THRESHOLDS, draws=300, seed=0)
    alone = [bootstrap_gain(gt, *pair, THRESHOLDS, draws=300, seed=0) for pair in (one_video, many_videos)]
    assert np.isclose(pooled["mAP"], (alone[0]["mAP"] + alone[1]["mAP"]) / 2)
    assert pooled["low"] > 0 == alone[0]["low"] and pooled["videos"] == 12
    same = bootstrap_mean_gain(gt, [one_video, one_video], THRESHOLDS, draws=300, seed=0)
    assert {k: same[k] for k in ("mAP", "low", "high")} == {k: alone[0][k] for k in ("mAP", "low", "high")}


def test_concat_keeps_every_row():
    parts = [Segments.from_rows(hits([0])), Segments.from_rows([]), Segments.from_rows(misses([1, 2]))]
    joined = concat_segments(parts)
    assert len(joined) == 3 and list(joined.video) == ["v0", "v1", "v2"]
