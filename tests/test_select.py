import numpy as np
import pytest

from ensemble.align import AlignedVideo
from ensemble.fuse import Evaluator
from ensemble.select import (
    Recipe,
    best_procedure,
    best_single,
    class_mix,
    classwise,
    cross_validate,
    fit_weights,
    greedy_select,
    nested_cross_validate,
    screen,
)
from tal_core.config import EvalConfig
from tal_core.scoring.metrics import Segments

CFG = EvalConfig(decode="merge")


def evaluator(videos: int = 6, seed: int = 0) -> Evaluator:
    """Member 0 knows class a, member 1 knows class b, member 2 is noise; 1 s cells over 10 s."""
    rng = np.random.default_rng(seed)
    aligned, rows = [], []
    starts = np.arange(10.0)
    for v in range(videos):
        a0, b0 = int(rng.integers(0, 2)), int(rng.integers(5, 7))
        truth = np.zeros(10, int)
        truth[a0:a0 + 3], truth[b0:b0 + 3] = 1, 2
        rows += [(f"v{v}", "a", float(a0), a0 + 3.0, 1.0), (f"v{v}", "b", float(b0), b0 + 3.0, 1.0)]
        probs = np.full((3, 10, 3), 0.05)
        for member, known in ((0, 1), (1, 2)):
            probs[member, :, 0] = 0.9
            probs[member, truth == known] = 0.05
            probs[member, truth == known, known] = 0.9
            probs[member, (truth > 0) & (truth != known)] = [0.5, 0.25, 0.25]
        probs[2] = rng.dirichlet(np.ones(3), size=10)
        aligned.append(AlignedVideo(f"v{v}", starts, starts + 1, probs, np.zeros((3, 0))))
    return Evaluator(aligned, Segments.from_rows(rows), ("a", "b"), CFG)


def test_single_scores_are_computed_once_per_evaluator():
    ev = evaluator()
    first = ev.single_scores()
    calls = ev.calls
    assert np.array_equal(ev.single_scores(), first) and ev.calls == calls == 3



def remixed(members_of_video) -> Evaluator:
    """``evaluator()``'s videos, with member j on video i being its member ``members_of_video(i)[j]``."""
    base = evaluator()
    aligned = [AlignedVideo(v.video_id, v.starts, v.ends, v.probs[members_of_video(i)],
                            v.scene_probs[members_of_video(i)]) for i, v in enumerate(base.videos)]
    return Evaluator(aligned, base.gt, base.actions, CFG)


def test_screening_keeps_each_class_best_member_and_reads_only_its_own_videos():
    """Twelve members: ten alike that know class a, noise, and the one that knows b (last by mAP order, since
    ties go by index). The weight searches run over 8: half by mAP, then each class's best, so b's member is
    kept. A screen inside a fold reads that fold's videos alone: a member that knows b on the first three videos
    only is kept by those videos' screen and left out by the other three's."""
    ev = remixed(lambda i: [0] * 10 + [2, 1])
    assert ev.single_scores()[11] <= np.sort(ev.single_scores())[-8]  # not among the 8 best by mAP alone
    assert screen(ev).tolist() == [0, 1, 2, 3, 4, 5, 6, 11]
    assert screen(ev, size=12).tolist() == list(range(12))
    ev = remixed(lambda i: [0] * 10 + [2, 1 if i < 3 else 2])
    assert 11 in screen(ev.subset({"v0", "v1", "v2"}))
    assert 11 not in screen(ev.subset({"v3", "v4", "v5"}))

def test_greedy_finds_the_complementary_pair_and_ignores_noise():
    ev = evaluator()
    result = greedy_select(ev, ev.single_scores(), max_steps=4)
    assert result.weights[2] == 0 and result.weights[0] > 0 and result.weights[1] > 0
    assert result.score > ev.single_scores().max() + 0.2
    assert fit_weights(ev, 4).score >= result.score


def test_best_procedure_breaks_ties_by_order():
    assert best_procedure({"greedy": 0.5, "top3_average": 0.5, "best_single": 0.4},
                          ["greedy", "top3_average", "best_single"]) == "greedy"


def test_a_fusion_must_beat_the_best_single_member_by_the_margin():
    order = ["greedy", "top3_average", "best_single"]
    close = {"greedy": 0.505, "top3_average": 0.45, "best_single": 0.5}
    assert best_procedure(close, order) == "greedy"
    assert best_procedure(close, order, min_gain=0.01) == "best_single"
    assert best_procedure({**close, "greedy": 0.52}, order, min_gain=0.01) == "greedy"
    assert best_procedure({**close, "best_single": 0.6}, order, min_gain=0.01) == "best_single"


def test_boundary_offsets_stay_unless_they_lose_by_the_margin():
    """Each procedure keeps its offsets unless they lose to it out of fold by more than the margin; the fusion
    then competes with the best single as resolved (with its offsets) under the same margin."""
    from ensemble.select import named_choice, with_offsets

    oof = {"best_single": 0.50, "best_single+offsets": 0.53, "greedy": 0.545, "greedy+offsets": 0.535}
    order = list(oof)
    assert with_offsets(oof, "greedy", 0.02) == "greedy+offsets"  # loses 0.01: within the margin, kept
    assert with_offsets(oof, "greedy", 0.005) == "greedy" and with_offsets({"greedy": 0.5}, "greedy", 0.02) == "greedy"
    assert with_offsets({**oof, "greedy+offsets": 0.545}, "greedy", 0.02) == "greedy"  # the same: the plainer
    # greedy+offsets (0.535) does not beat best_single+offsets (0.53) by 0.02: the best single, with its offsets
    assert best_procedure(oof, order, min_gain=0.02) == "best_single+offsets"
    assert best_procedure({**oof, "greedy+offsets": 0.56}, order, min_gain=0.02) == "greedy+offsets"
    assert best_procedure({**oof, "best_single+offsets": 0.47}, order, min_gain=0.02) == "greedy+offsets"
    # offsets that lose by more than the margin are dropped: the reference is the best single as trained
    assert best_procedure({**oof, "best_single+offsets": 0.47, "greedy": 0.51, "greedy+offsets": 0.515}, order,
                          min_gain=0.02) == "best_single"
    assert named_choice("greedy", oof, 0.02) == "greedy+offsets" and named_choice("greedy", oof, 0.0) == "greedy"


def test_nested_figure_is_an_out_of_fold_score_of_the_whole_recipe():
    ev = evaluator(videos=8)
    nested = nested_cross_validate(ev, 4, 0, Recipe(max_steps=4))
    plain = cross_validate(ev, 4, 0, lambda e: fit_weights(e, 4))
    # by construction: member 0 alone finds class a only (AP 1 and 0), members 0 and 1 at equal weights label every
    # cell right; every training fold holds both classes, so the recipe finds the pair and each held-out fold is
    # detected exactly
    assert ev.single_scores().tolist()[:2] == [0.5, 0.5]
    assert ev.score(np.array([0.5, 0.5, 0.0])) == 1.0
    assert nested == plain == 1.0


def test_nested_figure_with_two_videos():
    """5 folds asked of 2 videos: 2 outer folds of one video; one training video is too few for the inner
    cross-validation, so nothing has out-of-fold evidence against the best single member as trained: it is
    fitted on that video (first, do no harm), and the recipe scores what the best single member scores, 0.5."""
    ev = evaluator(videos=2)
    assert nested_cross_validate(ev, 5, 0, Recipe(max_steps=2)) == 0.5
    assert cross_validate(ev, 5, 0, best_single) == 0.5


def test_forked_candidate_scoring_gives_the_sequential_result(monkeypatch):
    from ensemble import parallel

    sequential = fit_weights(evaluator(), 3)
    monkeypatch.setattr(parallel, "MIN_ITEMS", 1)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_S", 0)
    monkeypatch.setenv("TALSEARCH_ENSEMBLE_WORKERS", "2")
    forked = fit_weights(evaluator(), 3)
    assert np.array_equal(forked.weights, sequential.weights) and forked.score == sequential.score


def test_cmaes_weights_both_complementary_members_on_normalised_weights():
    from ensemble.select import cmaes_weights

    ev = evaluator()
    result = cmaes_weights(ev, trials=30)
    assert abs(result.weights.sum() - 1) < 1e-9 and result.weights.min() >= 0
    assert result.weights[0] > 0.1 and result.weights[1] > 0.1
    assert result.score > ev.single_scores().max() + 0.2  # the pair, as greedy finds it
    assert result.score == ev.score(result.weights)


def test_every_procedure_runs_under_cross_validation():
    from ensemble.select import procedures

    ev = evaluator(videos=6)
    found = {name: cross_validate(ev, 3, 0, fit) for name, fit in procedures(3).items()}
    # the procedures that search weights find the complementary pair on every training fold: exact detections
    for name in ("greedy+refine", "greedy", "greedy+refine/segments", "calibrated+greedy+refine"):
        assert found[name] == 1.0, (name, found)
    assert found["best_single"] == 0.5  # member 0 (first of the tied best) knows class a only, on every fold
    # the noise member dilutes them: better than one member, worse than the pair
    assert 0.5 < found["top3_average"] < 1.0 and 0.5 < found["cmaes"] < 1.0, found
    # without boundary offsets the top-3 average of 3 members is fold-independent: equal weights on all videos
    plain = procedures(3, boundary_offsets=False)["top3_average"]
    assert cross_validate(ev, 3, 0, plain) == ev.score(np.full(3, 1 / 3))


def test_boundary_offsets_are_kept_for_the_classes_whose_ap_they_raise():
    """Class b starts 1 s late in every video: moved back. Class a starts 1 s late in two videos and on time in
    two: its median offset (0.5 s) would put every start half a second off and cost AP@0.95: left out."""
    from ensemble.select import SelectionResult, with_boundary_offsets

    starts = np.arange(20.0)
    aligned, rows = [], []
    for v in range(4):
        probs = np.zeros((1, 20, 3))
        probs[0, :, 0] = 1.0
        a_from = 3 if v < 2 else 2
        probs[0, a_from:6], probs[0, 11:14] = [0, 1, 0], [0, 0, 1]
        aligned.append(AlignedVideo(f"v{v}", starts, starts + 1, probs, np.zeros((1, 0))))
        rows += [(f"v{v}", "a", 2.0, 6.0, 1.0), (f"v{v}", "b", 10.0, 14.0, 1.0)]
    ev = Evaluator(aligned, Segments.from_rows(rows), ("a", "b"), CFG)
    plain = SelectionResult(np.ones(1), ev.score(np.ones(1)))
    fitted = with_boundary_offsets(ev, plain)
    assert fitted.boundary_offsets == {"b": (1.0, 0.0)}
    assert fitted.score == ev.score_detections(ev.detections_of(fitted)).mean > plain.score
    per_class = ev.score_detections(ev.detections_of(fitted)).to_json()["per_class"]
    assert per_class["b"] == 1.0 and per_class["a"] == ev.score_detections(ev.detections_of(plain)).to_json()["per_class"]["a"]


def one_strong_member(videos: int = 16) -> Evaluator:
    """0.25 s cells over 10 s; one action of class a and one of b per video. Member 0 finds both, each edge a cell
    early in half the videos and a cell late in the others (no bias, but every training fold has one that its
    held-out fold lacks); member 1 finds class a only, its edges off by two cells the same way, and calls b
    background; member 2 is noise."""
    rng = np.random.default_rng(0)
    cells = 40
    starts = np.arange(cells) * 0.25
    aligned, rows = [], []
    for v in range(videos):
        actions = [(1, int(rng.integers(2, 10)), int(rng.integers(8, 12))),
                   (2, int(rng.integers(22, 28)), int(rng.integers(6, 10)))]
        rows += [(f"v{v}", "ab"[k - 1], first / 4, (first + length) / 4, 1.0) for k, first, length in actions]
        probs = np.zeros((3, cells, 3))
        probs[:2, :, 0] = 1.0
        for member, known in ((0, (1, 2)), (1, (1,))):
            for k, first, length in actions:
                if k in known:
                    early, late = (1 + member) * np.array([1 if v % 2 else -1, 1 if v // 2 % 2 else -1])
                    probs[member, first + early:first + length + late] = np.eye(3)[k]
        probs[:2] = 0.8 * probs[:2] + 0.2 * rng.dirichlet(np.ones(3), size=(2, cells))
        probs[2] = rng.dirichlet(np.ones(3), size=cells)
        aligned.append(AlignedVideo(f"v{v}", starts, starts + 0.25, probs, np.zeros((3, 0))))
    return Evaluator(aligned, Segments.from_rows(rows), ("a", "b"), CFG)


def test_the_default_ensemble_does_no_harm_with_one_strong_member():
    """First, do no harm: the best single member as trained is the reference every procedure and every boundary
    offset must beat out of fold, by the margin, inside the inner folds. Here nothing does (the edge errors have
    no bias; the weak members know nothing the strong one does not), so every outer fold keeps the best single
    member and the nested gain is 0 on every draw of the folds. (Before, offsets fitted on the training folds
    were kept where they raised the training folds' AP and were part of the reference itself: gains 0.0,
    -0.0007, -0.0043 and -0.17 on fold seeds 0-3.)"""
    from ensemble.select import gains_over_fold_seeds

    ev = one_strong_member()
    assert ev.single_scores()[0] > 0.6 > 0.2 > ev.single_scores()[1] > ev.single_scores()[2]
    gains = gains_over_fold_seeds(ev, 5, range(4), Recipe())
    assert [row["seed"] for row in gains] == [0, 1, 2, 3]
    assert all(row["mAP"] >= 0 for row in gains), gains


def test_with_one_strong_member_cv_fits_no_fusion_at_all():
    """The second-trial gate: where no trial but the best member's reaches ``second_trial_share`` of its mAP on
    the fitting videos, every fusion under "cv" is the best single member, without fitting it; a second strong
    trial (or the gate at 0) lets the fusions be fitted; a snapshot of the best trial is no second trial."""
    from ensemble.defaults import SECOND_TRIAL_SHARE
    from ensemble.select import across_trials, choose_by_cv, second_trial_strong

    strong = one_strong_member()
    singles = strong.single_scores()
    assert singles[1] < SECOND_TRIAL_SHARE * singles[0]
    assert not second_trial_strong(strong, SECOND_TRIAL_SHARE) and second_trial_strong(strong, 0.0)
    assert second_trial_strong(strong, 0.99 * singles[1] / singles[0])

    def never(ev):
        raise AssertionError("a fusion was fitted with one strong member")

    gated = across_trials(never, SECOND_TRIAL_SHARE)(strong)
    assert gated.fell_back and np.array_equal(gated.weights, best_single(strong).weights)
    cv = Recipe(max_steps=4).procedures()
    assert all(fit(strong).fell_back for name, fit in cv.items() if not name.startswith("best_single"))
    name, fitted, oof = choose_by_cv(strong, 5, 0, Recipe(max_steps=4))
    assert name.startswith("best_single") and np.count_nonzero(fitted.weights) == 1
    assert oof["greedy+refine"] == oof["best_single"]  # the gated fusion is the best single, fold by fold
    ungated = Recipe(max_steps=4, second_trial_share=0.0).procedures()["greedy+refine"](strong)
    assert not ungated.fell_back
    # the gate reads the fitting videos only: a subset's own single scores
    half = strong.subset({f"v{v}" for v in range(8)})
    assert second_trial_strong(half, SECOND_TRIAL_SHARE) == (
        half.single_scores()[1:].max() >= SECOND_TRIAL_SHARE * half.single_scores().max())
    # two members that know one class each are two strong trials; as one trial's epochs, only noise is left
    pair = evaluator()
    assert second_trial_strong(pair, SECOND_TRIAL_SHARE) and not cv["greedy+refine"](pair).fell_back
    one_trial = Evaluator(pair.videos, pair.gt, pair.actions, CFG, trials=[0, 0, 1])
    assert not second_trial_strong(one_trial, SECOND_TRIAL_SHARE)


def test_a_fusion_of_one_trials_epochs_alone_falls_back_to_the_best_single_under_cv():
    """Members 0 and 1 are two epochs of one trial (a snapshot), member 2 another trial: greedy fuses 0 and 1.
    Through ``across_trials`` that fusion is the best single member as trained (marked ``fell_back``); where 0
    and 1 are separate trials it stays; a procedure named (not "cv") is fitted as it is."""
    from dataclasses import replace

    from ensemble.select import ACROSS, across_trials, procedures

    plain = evaluator()
    fused = fit_weights(plain, 4)
    assert np.count_nonzero(fused.weights[:2]) == 2
    snapshots = Evaluator(plain.videos, plain.gt, plain.actions, CFG, trials=[0, 0, 1])
    assert snapshots.one_trial(fused.weights) and not plain.one_trial(fused.weights)
    fallback = across_trials(lambda ev: fit_weights(ev, 4))(snapshots)
    assert fallback.fell_back and np.array_equal(fallback.weights, best_single(snapshots).weights)
    assert fallback.score == best_single(snapshots).score
    kept = across_trials(lambda ev: fit_weights(ev, 4))(plain)
    assert not kept.fell_back and np.array_equal(kept.weights, fused.weights)
    # best_single itself never falls back (one member: nothing to mark), and its offsets variant stays itself
    assert not across_trials(best_single)(snapshots).fell_back
    cv = Recipe(max_steps=4).procedures()
    assert cv["greedy+refine"](snapshots).fell_back and cv["greedy+refine+offsets"](snapshots).fell_back
    assert not cv["greedy+refine"](plain).fell_back
    named = Recipe(max_steps=4, selection="greedy+refine").procedures()
    assert not named["greedy+refine"](snapshots).fell_back
    assert np.count_nonzero(named["greedy+refine"](snapshots).weights[:2]) == 2
    # one root, both kinds of fit: the memo keeps them apart (the +offsets fits are memoised per kind)
    assert ACROSS and procedures(4, across=True)["greedy+refine+offsets"](snapshots).fell_back
    assert not procedures(4)["greedy+refine+offsets"](snapshots).fell_back
    assert procedures(4, across=True)["greedy+refine+offsets"](snapshots).fell_back
    # a fit of one member is left as it is (its temperature too): nothing of one trial was fused
    one = replace(best_single(snapshots), temperatures=np.array([0.5, 1.0, 1.0]))
    assert across_trials(lambda ev: one)(snapshots) is one
    # under cv the one-trial fusion wins nothing: best_single is chosen and the nested gain is 0
    found = {name: cross_validate(snapshots, 3, 0, fit) for name, fit in cv.items()}
    assert found["greedy+refine"] == found["best_single"] < cross_validate(plain, 3, 0, cv["greedy+refine"])


def test_float16_storage_chooses_what_float32_storage_chooses():
    """The same random case stored as float16 (the default) and as float32: the same procedure, the same
    members and weights, out-of-fold and nested figures within 1e-4."""
    from ensemble.select import choose_by_cv, held_out_pair

    rng = np.random.default_rng(1)
    cells, members = 24, 6
    starts = np.arange(cells, dtype=float)
    rows, probs = [], []
    for v in range(10):
        truth = np.zeros(cells, int)
        for k, first in ((1, int(rng.integers(1, 6))), (2, int(rng.integers(12, 17)))):
            truth[first:first + 5] = k
            rows.append((f"v{v}", "ab"[k - 1], float(first), first + 5.0, 1.0))
        logits = rng.normal(size=(members, cells, 3)) + 2.5 * np.eye(3)[truth] * rng.uniform(0.5, 1, (members, 1, 1))
        probs.append(np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True))
    found = {}
    for dtype in (np.float32, np.float16):
        ev = Evaluator([AlignedVideo(f"v{v}", starts, starts + 1, p.astype(dtype), np.zeros((members, 0)))
                        for v, p in enumerate(probs)], Segments.from_rows(rows), ("a", "b"), CFG)
        held_out = {}
        name, fitted, oof = choose_by_cv(ev, 5, 0, Recipe(max_steps=4), held_out)
        nested, _ = held_out_pair(ev, 5, 0, Recipe(max_steps=4), held_out)
        found[dtype] = name, fitted.weights, oof, ev.score_detections(nested).mean
    (name32, weights32, oof32, nested32), (name16, weights16, oof16, nested16) = found.values()
    assert name16 == name32 and np.array_equal(weights16, weights32)
    assert max(abs(oof16[n] - oof32[n]) for n in oof32) <= 1e-4 and abs(nested16 - nested32) <= 1e-4


def test_classwise_takes_each_class_from_the_member_far_better_at_it():
    ev = evaluator(videos=6)
    chosen = classwise(ev)
    assert chosen.fusion == "classwise" and list(chosen.class_members) == [0, 1]  # a from member 0, b from member 1
    assert chosen.weights == pytest.approx([0.5, 0.5, 0.0])
    per_class = ev.score_detections(ev.detections_of(chosen)).to_json()["per_class"]
    singles = dict(zip(ev.single_classes(), ev.single_class_ap().T, strict=True))
    assert per_class["a"] == pytest.approx(singles["a"][0]) and per_class["b"] == pytest.approx(singles["b"][1])
    assert chosen.score == pytest.approx(ev.score_detections(ev.detections_of(chosen)).mean)
    assert chosen.score > ev.single_scores().max() + 0.2
    one = classwise(ev, margin=2.0)  # no member can beat another by more than 1 AP: the best single alone
    best = int(np.argmax(ev.single_scores()))
    assert list(one.class_members) == [best, best] and one.score == pytest.approx(ev.single_scores()[best])


def test_class_mix_gives_a_class_the_smallest_share_of_its_champion_that_finds_it():
    """Member 0 (the best single, first of equals) misses b: its background (0.5) outvotes b (0.25) there. A
    quarter of member 1's b (0.9) is not enough (0.41), half is (0.58): b gets half, a and the background stay
    member 0's, and every detection is then right."""
    ev = evaluator(videos=6)
    chosen = class_mix(ev)
    assert chosen.fusion == "classmix"
    assert chosen.class_weights.tolist() == [[1.0, 1.0, 0.5], [0.0, 0.0, 0.5], [0.0, 0.0, 0.0]]
    assert chosen.weights == pytest.approx([5 / 6, 1 / 6, 0.0])
    assert chosen.score == pytest.approx(1.0) and chosen.score == pytest.approx(
        ev.score_detections(ev.detections_of(chosen)).mean)
    fused = ev.fused_by_column(chosen.class_weights)[0]
    assert fused == pytest.approx(ev.videos[0].probs[0] * [1, 1, 0.5] + ev.videos[0].probs[1] * [0, 0, 0.5])
    none = class_mix(ev, margin=2.0)  # no class can gain 2 AP: the best single as it is
    assert none.fusion == "probabilities" and none.weights.tolist() == [1.0, 0.0, 0.0]
    assert class_mix(ev, shares=(0.25,)).fusion == "probabilities"  # a quarter finds no b


def test_class_mix_on_a_fused_base_mixes_each_column_of_the_base():
    """Base: member 0 and the noise member, half each (b is missed). Its b column is mixed toward b's champion
    (member 1); the background and a keep the base's weights."""
    from ensemble.select import SelectionResult

    ev = evaluator(videos=6)
    base = SelectionResult(np.array([0.5, 0.0, 0.5]), ev.score(np.array([0.5, 0.0, 0.5])))
    chosen = class_mix(ev, base)
    columns = chosen.class_weights
    assert chosen.fusion == "classmix" and columns[:, 0].tolist() == [0.5, 0.0, 0.5] == columns[:, 1].tolist()
    share = columns[1, 2]
    assert share in (0.25, 0.5, 0.75, 1.0) and columns[:, 2] == pytest.approx([0.5 * (1 - share), share,
                                                                               0.5 * (1 - share)])
    assert chosen.score > base.score + 0.2 and chosen.weights.sum() == pytest.approx(1.0)
    assert class_mix(ev, base, margin=2.0) is base  # nothing gains 2 AP: the base as it was


def test_classwise_keeps_at_most_max_segments_per_video():
    ev = evaluator(videos=3)
    capped = Evaluator(ev.videos, ev.gt, ev.actions, CFG.model_copy(update={"max_segments_per_video": 1}))
    found = capped.detections_of(classwise(capped))
    videos, counts = np.unique(found.video.astype(str), return_counts=True)
    assert counts.max() == 1 and len(videos) == 3
    full = ev.detections_of(classwise(ev))
    for video in videos:  # the one kept is that video's best-scored detection
        assert found.score[found.video == video][0] == full.score[full.video == video].max()


def test_stacked_fits_a_logistic_regression_over_the_members_and_beats_either():
    from ensemble.select import stacked

    ev = evaluator(videos=6)
    chosen = stacked(ev)
    assert chosen.fusion == "stacked" and chosen.stacker.members[0] == int(np.argmax(ev.single_scores()))
    assert sorted(chosen.stacker.members.tolist()) == [0, 1, 2]  # every member, at most STACK_MEMBERS
    assert chosen.weights.sum() == pytest.approx(1.0) and chosen.weights[1] > 0
    assert chosen.score == pytest.approx(ev.score_detections(ev.detections_of(chosen)).mean)
    assert chosen.score > ev.single_scores().max() + 0.2
    two = stacked(ev, members=2)  # the best single and the next best
    assert two.stacker.members.tolist() == [0, 1] and two.weights[2] == 0
    alone = stacked(ev.restricted([1]))
    assert alone.fusion == "probabilities" and alone.weights.tolist() == [1.0]
