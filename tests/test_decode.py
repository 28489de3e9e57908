import numpy as np
import pytest

from tal_core.config import EvalConfig
from tal_core.decoding.decode import apply_scene_prior, decode_cells, decode_videos, nms_grouped, runs

STARTS = np.arange(6.0)
ENDS = STARTS + 1
PROBS = np.array([[.9, .05, .05], [.1, .8, .1], [.2, .7, .1], [.8, .1, .1], [.1, .1, .8], [.1, .1, .8]])


def nms_1d(start, end, score, label, iou_threshold: float, keep_max: int) -> np.ndarray:
    """Greedy per-label NMS of one video (nms_grouped with a single group)."""
    return nms_grouped(np.zeros(len(score), dtype=np.int64), np.asarray(start, np.float64),
                       np.asarray(end, np.float64), np.asarray(score, np.float64), np.asarray(label), iou_threshold,
                       keep_max)


def test_runs_finds_every_run_per_row():
    rows, first, stop = runs(np.array([[1, 1, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=bool))
    assert list(zip(rows.tolist(), first.tolist(), stop.tolist(), strict=True)) == [(0, 0, 2), (0, 3, 4), (2, 0, 4)]


def test_merge_decoder_merges_equal_argmax_runs():
    seg = decode_cells(STARTS, ENDS, PROBS, EvalConfig(decode="merge"))
    found = sorted(zip(seg.label.tolist(), seg.start.tolist(), seg.end.tolist(), np.round(seg.score, 3).tolist(),
                       strict=True))
    assert found == [(1, 1.0, 3.0, 0.75), (2, 4.0, 6.0, 0.8)]


def test_multithreshold_scores_by_contrast_and_suppresses_fragments():
    cfg = EvalConfig(decode="multithreshold", thresholds=(0.5, 0.75), nms_tiou=0.4)
    seg = decode_cells(STARTS, ENDS, PROBS, cfg)
    found = {(k, a, b): s for k, a, b, s in zip(seg.label.tolist(), seg.start.tolist(), seg.end.tolist(),
                                                  seg.score.tolist(), strict=True)}
    # run [1, 3) of action 1: mean 0.75, neighbours 0.05 and 0.1 -> 0.75 * (1 - 0.075)
    assert found[(1, 1.0, 3.0)] == pytest.approx(0.75 * 0.925)
    # its fragment [1, 2) (mean 0.8, neighbours 0.05 and 0.7 -> 0.5) overlaps it with tIoU 0.5 > 0.4: dropped
    assert (1, 1.0, 2.0) not in found and (2, 4.0, 6.0) in found
    assert np.all(np.diff(seg.score) <= 0)


def test_merge_scores_are_plain_means():
    seg = decode_cells(STARTS, ENDS, PROBS, EvalConfig(decode="merge"))
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


def test_smoothing_is_a_length_weighted_window_and_keeps_a_clean_step():
    from tal_core.decoding.decode import smooth_cells

    starts = np.arange(8) * 0.25
    ends = starts + 0.25
    step = np.zeros((8, 2))
    step[:4, 0], step[4:, 1] = 1.0, 1.0
    smoothed = smooth_cells(starts, ends, step, 0.75)  # 3 cells (eval.smooth=mean)
    assert np.allclose(smoothed[3], [2 / 3, 1 / 3]) and np.allclose(smoothed[4], [1 / 3, 2 / 3])
    assert np.allclose(smoothed[:3, 0], 1.0) and np.allclose(smoothed.sum(axis=1), 1.0)
    assert smooth_cells(starts, ends, step, 0.0) is step
    # unequal cells: a 1 s cell next to two 0.25 s cells weighs by length
    mixed = smooth_cells(np.array([0.0, 1.0, 1.25]), np.array([1.0, 1.25, 1.5]), np.array([[1.0], [0.0], [0.0]]),
                         1.5)
    assert mixed[1, 0] == pytest.approx(1.0 / 1.5)  # cells 0..2 have centres within 0.75 s of 1.125


def test_fine_cells_place_boundaries_between_interval_edges():
    starts = np.arange(16) * 0.25  # 4 s in 0.25 s cells; action from 1.25 s to 2.75 s
    ends = starts + 0.25
    probs = np.zeros((16, 2))
    probs[:, 0] = 1.0
    probs[5:11] = [0.1, 0.9]
    probs[8] = [0.6, 0.4]  # one wrong cell inside the action
    for contrast in (False, True):
        cfg = EvalConfig(smooth="median", smooth_seconds=0.75, boundary_contrast=contrast)
        seg = decode_cells(starts, ends, probs, cfg)
        best = int(np.argmax(seg.score))
        assert (seg.start[best], seg.end[best]) == (1.25, 2.75)
    # without the filter the wrong cell splits the action under the merge decoder
    seg = decode_cells(starts, ends, probs, EvalConfig(decode="merge"))
    assert len(seg) == 2


def test_boundary_contrast_can_be_switched_off():
    cfg = EvalConfig(decode="multithreshold", thresholds=(0.5, 0.75), nms_tiou=0.4, boundary_contrast=False)
    seg = decode_cells(STARTS, ENDS, PROBS, cfg)
    found = {(k, a, b): s for k, a, b, s in zip(seg.label.tolist(), seg.start.tolist(), seg.end.tolist(),
                                                  seg.score.tolist(), strict=True)}
    # plain mean probability: the confident fragment [1, 2) (0.8) now outranks the whole run (0.75)
    assert found[(1, 1.0, 2.0)] == pytest.approx(0.8) and (1, 1.0, 3.0) not in found


@pytest.mark.parametrize("cfg", [EvalConfig(), EvalConfig(decode="merge"), EvalConfig(smooth_seconds=1.0),
                                 EvalConfig(boundary_contrast=False, max_segments_per_video=3),
                                 EvalConfig(smooth="mean", smooth_seconds=1.0, refine_seconds=0.75)])
def test_many_videos_decode_as_each_alone(cfg):
    from tal_core.decoding.decode import decode_videos

    rng = np.random.default_rng(0)
    videos = []
    for length in (1, 7, 30, 12):
        starts = np.sort(rng.choice(np.arange(100) * 0.25, size=length, replace=False))
        ends = np.append(starts[1:], starts[-1] + 0.5)
        videos.append((starts, ends, rng.dirichlet(np.ones(4) * 0.3, size=length)))
    together = decode_videos(videos, cfg)
    for video, seg in zip(videos, together, strict=True):
        alone = decode_videos([video], cfg)[0]
        for field in ("label", "start", "end", "score"):
            assert np.array_equal(getattr(seg, field), getattr(alone, field))
    assert sum(len(s) for s in together) > 10


def _greedy_nms(start, end, score, label, threshold, keep_max):
    """Reference: textbook greedy NMS, one candidate at a time."""
    kept = []
    for i in sorted(range(len(score)), key=lambda i: (-score[i], i)):
        inter = [min(end[i], end[j]) - max(start[i], start[j]) for j in kept if label[j] == label[i]]
        unions = [(end[i] - start[i]) + (end[j] - start[j]) - x for j, x in
                  zip([j for j in kept if label[j] == label[i]], inter, strict=True)]
        if any(x > 0 and u > 0 and x / u > threshold for x, u in zip(inter, unions, strict=True)):
            continue
        kept.append(i)
        if len(kept) >= keep_max:
            break
    return kept


def test_grouped_nms_is_greedy_nms_of_each_video():
    from tal_core.decoding.decode import nms_grouped

    rng = np.random.default_rng(7)
    for _ in range(100):
        n = int(rng.integers(0, 60))
        video = np.sort(rng.integers(0, 4, n))
        start = np.round(rng.uniform(0, 10, n), 1)
        end = start + np.round(rng.uniform(0.1, 4, n), 1)
        score, label = np.round(rng.uniform(0, 1, n), 1), rng.integers(1, 4, n)  # rounded: ties
        threshold, keep_max = float(rng.choice([0.01, 0.3, 0.5, 0.8])), int(rng.integers(1, 15))
        kept = nms_grouped(video, start, end, score, label, threshold, keep_max).tolist()
        expected = []
        for v in range(4):
            mine = np.flatnonzero(video == v)
            expected += [int(mine[i]) for i in _greedy_nms(start[mine], end[mine], score[mine], label[mine],
                                                         threshold, keep_max)]
        assert kept == expected


def _blurred_flickering_action(length=64, first=16, stop=40):
    """0.125 s cells; class 1 from cell ``first`` to ``stop``, its probability flickering 0.9 / 0.3 from cell
    to cell (an aliased flash), background elsewhere."""
    starts = np.arange(length) * 0.125
    probs = np.zeros((length, 2))
    probs[:, 0] = 1.0
    inside = np.arange(first, stop)
    probs[inside, 1] = np.where(inside % 2 == 0, 0.9, 0.3)
    probs[inside, 0] = 1.0 - probs[inside, 1]
    return starts, starts + 0.125, probs


def test_refined_edges_return_to_the_step_that_smoothing_blurred():
    starts, ends, probs = _blurred_flickering_action()
    cfg = EvalConfig(decode="multithreshold", thresholds=(0.2,), smooth="mean", smooth_seconds=1.0)
    blurred = decode_cells(starts, ends, probs, cfg)
    assert (blurred.start[0], blurred.end[0]) != (2.0, 5.0)  # a low threshold on mean-smoothed cells spills
    refined = decode_cells(starts, ends, probs, cfg.model_copy(update={"refine_seconds": 0.5}))
    assert (refined.start[0], refined.end[0]) == (2.0, 5.0)  # cells 16 and 40, in spite of the flicker
    assert len(set(zip(refined.start.tolist(), refined.end.tolist(), strict=True))) == len(refined)  # no duplicates


def test_refinement_keeps_an_action_at_the_video_edge_and_a_clean_step():
    starts, ends, probs = _blurred_flickering_action(first=0, stop=24)
    cfg = EvalConfig(thresholds=(0.2,), smooth="mean", smooth_seconds=1.0, refine_seconds=0.5)
    seg = decode_cells(starts, ends, probs, cfg)
    assert (seg.start[0], seg.end[0]) == (0.0, 3.0)
    clean = np.zeros((32, 2))
    clean[:, 0] = 1.0
    clean[8:20] = [0.0, 1.0]
    merge = EvalConfig(decode="merge", refine_seconds=0.5)
    seg = decode_cells(starts[:32], ends[:32], clean, merge)
    assert (seg.start.tolist(), seg.end.tolist()) == ([1.0], [2.5])  # already on the step: no move


def test_refinement_reach_counts_each_videos_own_cells():
    from tal_core.decoding.decode import CellLayout

    layout = CellLayout([(np.arange(8) * 0.125, np.arange(1, 9) * 0.125), (np.arange(4.0), np.arange(1.0, 5.0))])
    assert layout.cells_within(0.5).tolist() == [4, 0] and layout.cells_within(0.0).tolist() == [0, 0]


def test_bridging_joins_pieces_of_one_class_across_short_gaps_only():
    starts = np.arange(20) * 0.125
    probs = np.zeros((20, 3))
    probs[:, 0] = 1.0

    def on(cells, k, p):
        probs[cells] = [1 - p, p, 0] if k == 1 else [1 - p, 0, p]

    on(slice(2, 5), 1, 0.9)  # class 1: cells 2-4, a 1-cell gap, cells 6-7
    on(slice(6, 8), 1, 0.6)
    on(slice(11, 13), 1, 0.9)  # then a 3-cell gap: stays apart at 2 cells of bridging
    on(slice(13, 15), 2, 0.8)  # class 2 right after: never joined to class 1
    cfg = EvalConfig(decode="merge", smooth_seconds=0.0, bridge_seconds=0.25)
    seg = decode_cells(starts, starts + 0.125, probs, cfg)
    found = sorted(zip(seg.label.tolist(), seg.start.tolist(), seg.end.tolist(), np.round(seg.score, 6).tolist(), strict=True))
    assert found == [(1, 0.25, 1.0, round((3 * 0.9 + 2 * 0.6) / 5, 6)), (1, 1.375, 1.625, 0.9), (2, 1.625, 1.875, 0.8)]
    unbridged = decode_cells(starts, starts + 0.125, probs, cfg.model_copy(update={"bridge_seconds": 0.0}))
    assert len(unbridged) == 4


def test_bridging_never_joins_across_videos():
    starts = np.arange(4) * 0.25
    ends = starts + 0.25
    first = np.array([[1, 0], [1, 0], [0.1, 0.9], [0.1, 0.9]])  # the action at the end of one video ...
    second = np.array([[0.1, 0.9], [1, 0], [1, 0], [1, 0]])   # ... and at the start of the next
    cfg = EvalConfig(decode="merge", bridge_seconds=0.5)
    alone = [decode_cells(starts, ends, p, cfg) for p in (first, second)]
    together = decode_videos([(starts, ends, first), (starts, ends, second)], cfg)
    for a, b in zip(alone, together, strict=True):
        assert a.start.tolist() == b.start.tolist() and a.end.tolist() == b.end.tolist()
    assert together[0].start.tolist() == [0.5] and together[1].end.tolist() == [0.25]


def _wavering_action() -> tuple[np.ndarray, np.ndarray]:
    """10 cells: background, then cells 2-7 one action whose arg-max wavers between classes 1 and 2 (class 1
    a little likelier over the run), then background."""
    probs = np.zeros((10, 4))
    probs[:, 0] = 1.0
    for cell, (p1, p2) in zip(range(2, 8), [(0.5, 0.4), (0.4, 0.5), (0.5, 0.4), (0.5, 0.4), (0.4, 0.5), (0.5, 0.4)],
                              strict=True):
        probs[cell] = [0.1, p1, p2, 0.0]
    return np.arange(10) * 0.125, probs


def test_foreground_runs_find_a_wavering_action_whole_as_each_of_its_likeliest_classes():
    starts, probs = _wavering_action()
    cfg = EvalConfig(decode="merge", smooth_seconds=0.0)
    pieces = decode_cells(starts, starts + 0.125, probs, cfg)
    assert (0.25, 1.0) not in set(zip(pieces.start.tolist(), pieces.end.tolist(), strict=True))  # cut into pieces
    seg = decode_cells(starts, starts + 0.125, probs, cfg.model_copy(update={"foreground_classes": 2}))
    whole = {(int(k), round(float(c), 6)) for k, s, e, c in zip(seg.label, seg.start, seg.end, seg.score, strict=True)
             if s == 0.25 and e == 1.0}
    assert whole == {(1, round(2.8 / 6, 6)), (2, round(2.6 / 6, 6))}  # mean probability of each over the run
    assert not any(seg.label == 3)  # only the 2 likeliest: class 3 never proposed
    pieces_kept = {(int(k), float(s), float(e)) for k, s, e in zip(pieces.label, pieces.start, pieces.end, strict=True)}
    assert pieces_kept <= {(int(k), float(s), float(e)) for k, s, e in zip(seg.label, seg.start, seg.end, strict=True)}


def test_foreground_runs_add_no_duplicate_of_an_arg_max_run():
    starts = np.arange(6) * 0.25
    probs = np.array([[1, 0, 0], [0.2, 0.7, 0.1], [0.2, 0.7, 0.1], [1, 0, 0], [0.1, 0.1, 0.8], [1, 0, 0]])
    for decode in ("merge", "multithreshold"):
        cfg = EvalConfig(decode=decode, smooth_seconds=0.0, thresholds=(0.5,))
        plain = decode_cells(starts, starts + 0.25, probs, cfg)
        more = decode_cells(starts, starts + 0.25, probs, cfg.model_copy(update={"foreground_classes": 2}))
        keys = list(zip(more.label.tolist(), more.start.tolist(), more.end.tolist(), strict=True))
        assert len(keys) == len(set(keys))  # each (class, start, end) once
        assert len(more) == len(plain) + 2  # each run also as its second class (scored 0.1)
        assert sorted(np.round(more.score, 6).tolist())[:2] == [0.1, 0.1]


def test_foreground_runs_decode_each_video_as_alone():
    starts, probs = _wavering_action()
    cfg = EvalConfig(decode="merge", smooth_seconds=0.0, bridge_seconds=0.25, foreground_classes=2)
    flipped = probs[::-1].copy()
    alone = [decode_cells(starts, starts + 0.125, p, cfg) for p in (probs, flipped)]
    together = decode_videos([(starts, starts + 0.125, probs), (starts, starts + 0.125, flipped)], cfg)
    for a, b in zip(alone, together, strict=True):
        assert sorted(zip(a.label.tolist(), a.start.tolist(), a.end.tolist(), strict=True)) == \
            sorted(zip(b.label.tolist(), b.start.tolist(), b.end.tolist(), strict=True))
