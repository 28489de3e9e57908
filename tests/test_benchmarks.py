"""The benchmark scripts' own pieces, on tiny inputs: they must keep running against the code they time."""

import pytest

from helpers import load_benchmark as bench


def test_bench_model_times_a_train_step_and_finds_the_shift_by_op():
    bench_model = bench("bench_model")
    assert bench_model.step_time("tiny", 0.125, "cpu", 32, 2, 1) > 0
    extra = bench_model.shift_cost_by_op("tiny", "cpu", 32, 2, steps=1, top=1000)
    # the shift's own autograd function runs only with the shift: all of its time is extra
    assert extra["_ShiftFunction"] > 0 and extra["_ShiftFunctionBackward"] > 0


def test_bench_throughput_measures_an_epoch_from_the_frame_cache(tiny_data, tmp_path):
    import torch

    from tal_core.data.annotations import load_dataset
    from tal_core.data.dataset import IntervalDataset
    from tal_core.data.video import FrameCache
    from tal_core.training.trainer import build_model

    bench_throughput = bench("bench_throughput")
    cfg = bench_throughput.config({"backbone": "tiny", "size": 32, "batch": 4})
    spec = load_dataset(tiny_data)
    dataset = IntervalDataset(spec, "train", cfg.data, train=True, cache=FrameCache(tmp_path / "cache"))
    run = bench_throughput.measure(dataset, build_model(cfg, spec), cfg, torch.device("cpu"), workers=0, pin=False)
    assert run["steps"] == len(dataset) // 4 and run["clips_per_s"] > 0
    assert 0 < run["busy_share"] <= 1 and run["compute_only_clips_per_s"] > 0



def test_bench_cache_builds_n_copies_as_a_node_would_each_its_own_entry(tmp_path):
    bench_cache = bench("bench_cache")
    video = tmp_path / "video_0.05min.mp4"
    bench_cache.write_video(video, 0.05)  # 3 s at 25 fps
    runs = bench_cache.by_count(video, [1, 3], tmp_path, fps=4.0, size=224, decoders=["decord"])
    assert [(r["videos"], r["decoder"]) for r in runs] == [(1, "decord"), (3, "decord")]
    assert runs[0]["cache_mb"] == round(12 * 224 * 224 * 3 / 1e6, 1)  # 3 s x 4 fps frames of 224 x 224 x 3 bytes
    assert [r["entries"] for r in runs] == [1, 3]  # each hard link its own entry
    assert runs[1]["cache_mb"] == pytest.approx(3 * runs[0]["cache_mb"], abs=0.1)
    assert all(r["peak_rss_mb"] > 0 and r["seconds"] > 0 for r in runs)

def test_bench_statistics_leave_out_the_cold_run_and_keep_the_best():
    assert bench("bench_sweep").warm_median([30.0, 20.0, 22.0, 21.0]) == 21.0
    assert bench("bench_sweep").warm_median([5.0]) == 5.0
    calls = iter([0.0, 0.0, 0.0])
    result, seconds = bench("bench_map").best_of(3, lambda: next(calls))
    assert result == 0.0 and seconds >= 0
    with pytest.raises(StopIteration):
        next(calls)


def test_bench_quality_reports_the_four_figures_and_per_class_ap():
    bench_quality = bench("bench_quality")
    metrics = {"val_mAP@0.5": 0.81234, "val_mAP@0.75": 0.5, "val_mAP@0.95": 0.1, "val_mAP": 0.47078,
               "per_class_AP": {"grow": 0.12345}, "train_loss": 1.0}
    assert bench_quality.figures(metrics) == {"val_mAP@0.5": 0.8123, "val_mAP@0.75": 0.5, "val_mAP@0.95": 0.1,
                                              "val_mAP": 0.4708, "per_class_AP": {"grow": 0.123}}


def test_bench_search_reports_each_ratio_against_random_search(tmp_path):
    from test_replay import table

    result = bench("bench_search").measure(table(epochs=6).save(tmp_path / "t.json"), seeds=4)
    assert result["seeds"] == 4 and result["workers"] == 2
    assert {"tpe_asha_time_ratio", "tpe_time_ratio", "random_asha_time_ratio"} <= set(result)
    # the ratio is the strategy's median time to the target over random search's; on this table (a fixed replay)
    # every strategy reaches the target in most seeds, so each ratio is a number and must be that quotient
    random_median = result["random+fifo_minutes"][1]
    assert random_median is not None and random_median > 0
    for strategy, key in bench("bench_search").NAMES.items():
        median = result[f"{strategy}_minutes"][1]
        assert median is not None, f"{strategy} no longer reaches the target on the test table: {result}"
        assert result[key] == pytest.approx(median / random_median, rel=0.01), strategy
        low, high = result[f"{key}_interval"]
        assert low is not None and high is not None and low <= result[key] <= high, (strategy, low, high)
    # the target is random search's (lower) median best at the budget, by definition
    assert result["random+fifo_best_at_budget"] == pytest.approx(result["target"], abs=1e-4)
    assert 0 < result["target"] <= 0.8


def test_bench_search_tables_are_committed_whole():
    """The recorded sweeps bench_search replays ship with the repository: every configuration of each grid once,
    each run to the full budget, with its per-epoch values and times."""
    import itertools

    from search.replay_table import load_table

    bench_search = bench("bench_search")
    for path, size in ((bench_search.TABLE, 48), *((p, 27) for p in bench_search.OTHER_TABLES)):
        table = load_table(path)
        assert len(table.trials) == size and len(table.full) == size
        grid = {tuple(combo) for combo in itertools.product(*(p.values for p in table.space))}
        assert {tuple(t.params[p.key] for p in table.space) for t in table.trials} == grid
        assert all(len(t.values) == len(t.epoch_seconds) == table.max_epochs == 12 for t in table.trials)


def test_bench_audio_ensembles_one_run_of_each_modality_laid_out_as_a_sweep(tmp_path):
    """Two run folders (one hears only action a, one sees only b) linked in as a sweep's trials: the bench reads
    the real ensemble command's figures, and the pair beats either run out of fold."""
    from test_ensemble import make_data, write_member

    bench_audio = bench("bench_audio")
    truth = make_data(tmp_path)
    runs = tmp_path / "runs"
    write_member(runs, "video_run", truth, 1.0, {"b"}, 0.3, 1)
    write_member(runs, "audio_run", truth, 0.5, {"a"}, 0.3, 2)
    work = tmp_path / "pair"
    result = bench_audio.pair_ensemble(tmp_path / "data", work, {"video": runs / "trials" / "video_run",
                                                                  "audio": runs / "trials" / "audio_run"})
    assert sorted(p.name for p in (work / "sweep" / "trials").iterdir()) == ["audio", "video"]
    assert set(result["members"]) == {"video", "audio"} and result["best_single"] in {"video", "audio"}
    assert result["gain"] == pytest.approx(result["nested_oof_val_mAP"] - result["best_single_oof_val_mAP"], abs=2e-4)
    assert result["gain"] > 0.1 and result["gain_interval"][0] > 0 and len(result["gain_by_fold_seed"]) == 4
    # the out-of-fold detections the ensemble keeps give its gain and interval back; pooled over "seeds"
    pooled = bench_audio.gain_over_seeds(tmp_path / "data", [work / "ensemble", work / "ensemble"])
    assert pooled["seeds"] == 2 and pooled["mAP"] == pytest.approx(result["gain"], abs=1e-4)
    assert pooled["interval"] == pytest.approx(result["gain_interval"], abs=1e-4)
    assert bench_audio.spread([0.5, 0.7, 0.6]) == {"mean": 0.6, "min": 0.5, "max": 0.7, "sd": 0.1}


def test_bench_audio_names_an_ab_row_by_its_tag_and_refuses_overrides_without_one(tmp_path, monkeypatch, capsys):
    """``--set`` runs live under their ``--tag`` (never reused as, or mistaken for, the recipe's own runs) and
    build no pair ensembles; ``--set`` without ``--tag`` is a usage error; a finished run trained under another
    configuration (precise.yaml changed since) is not reused: the bench stops, naming the run and the key."""
    import json

    from tal_core.config import load_config, save_config

    bench_audio = bench("bench_audio")
    (tmp_path / "hard_d0").mkdir()
    (tmp_path / "hard_d0" / "annotations.json").write_text("{}")
    metrics = {"val_mAP": 0.5, "val_mAP@0.5": 0.7, "val_mAP@0.75": 0.5, "val_mAP@0.95": 0.2, "best_epoch": 3}
    ab = "loss.gradient_modulation=0.5"
    for name, score, modality in (("d0_video_audio_s0", 0.5, "video+audio"), ("d0_video_audio_ogm_s0", 0.6,
                                   "video+audio"), ("d0_audio_ogm_s0", 0.3, "audio")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(metrics | {"val_mAP": score}))
        settings = [*bench_audio.SINGLE, "train.epochs=12", f"data.modalities={modality}", "train.seed=0",
                    *([ab] if "ogm" in name else [])]
        save_config(load_config(bench_audio.PRECISE, settings), tmp_path / name / "config.yaml")
    result = bench_audio.one_data_set(tmp_path, 0, [0], ["audio", "video+audio"], 12, overrides=(ab,), tag="ogm")
    assert result["val_mAP"]["video+audio"]["mean"] == 0.6 and result["val_mAP"]["audio"]["mean"] == 0.3
    assert "ensembles" not in result
    with pytest.raises(SystemExit) as stale:  # the untagged run was trained without the A/B's key, not with it
        bench_audio.one_data_set(tmp_path, 0, [0], ["video+audio"], 12, overrides=(ab,), tag="")
    assert stale.value.code == 2
    assert "d0_video_audio_s0 was trained with another configuration: loss.gradient_modulation=0.0 (now 0.5)" \
        in capsys.readouterr().err
    video = [*bench_audio.SINGLE, "train.epochs=12", "data.modalities=video", "train.seed=0"]
    save_config(load_config(bench_audio.PRECISE, video), tmp_path / "config.yaml")
    bench_audio.refuse_stale(tmp_path, [*video, ab])  # a key of video+audio training only: the same video run
    monkeypatch.setattr("sys.argv", ["bench_audio.py", "--set", "loss.gradient_modulation=0.5"])
    with pytest.raises(SystemExit) as usage:
        bench_audio.main()
    assert usage.value.code == 2


def test_replay_ensemble_rules_replays_the_shipped_rule_to_the_digit():
    """The benchmark's own nested loop under the shipped rule gives the product's nested gain; the other rules
    run on the same fits."""
    from test_select import evaluator

    from ensemble.defaults import MIN_GAIN
    from ensemble.fuse import Evaluator
    from ensemble.select import AS_TRAINED, Recipe, gains_over_fold_seeds

    rules = bench("replay_ensemble_rules")
    ev = evaluator(videos=8)  # members that know one class each: a fusion earns its place
    gains, chosen = rules.nested_gains(ev, 4, 0, rules.rules(MIN_GAIN))
    (expected,) = gains_over_fold_seeds(ev, 4, [0], Recipe())
    assert gains["shipped"] == pytest.approx(expected["mAP"], abs=1e-4) and gains["shipped"] > 0.05
    assert set(gains) == set(chosen) and all(len(folds) == 4 for folds in chosen.values())
    assert any(name != AS_TRAINED for name in chosen["shipped"])
    # the two knowing members as epochs of one trial: both loops make their fusions span two trials alike
    one = Evaluator(ev.videos, ev.gt, ev.actions, ev.eval_cfg, trials=[0, 0, 1])
    gains, chosen = rules.nested_gains(one, 4, 0, {"shipped": rules.rules(MIN_GAIN)["shipped"]})
    (expected,) = gains_over_fold_seeds(one, 4, [0], Recipe())
    assert gains["shipped"] == pytest.approx(expected["mAP"], abs=1e-4)
    assert chosen["shipped"] != [] and "greedy+refine" not in chosen["shipped"]  # its fit is one trial's: no gain


def test_replay_ensemble_rules_maps_scores_onto_the_reference_scale_keeping_their_order():
    import numpy as np

    from tal_core.scoring.metrics import Segments

    rules = bench("replay_ensemble_rules")

    def segments(scores):
        n = len(scores)
        return Segments(np.array(["v"] * n, dtype=object), np.array(["a"] * n, dtype=object), np.zeros(n),
                        np.ones(n), np.asarray(scores, dtype=float))

    own, reference = segments(np.linspace(0.0, 0.2, 50)), segments(np.linspace(0.5, 1.0, 50))
    mapped = rules.onto_scale(segments([0.0, 0.1, 0.2, 0.05]), own, reference)
    assert mapped.score == pytest.approx([0.5, 0.75, 1.0, 0.625], abs=1e-3)
    assert list(np.argsort(mapped.score)) == [0, 3, 1, 2]


def test_replay_ensemble_rules_simplest_within_tolerance_and_wider_margins():
    from ensemble.defaults import MIN_GAIN

    rules = bench("replay_ensemble_rules")
    pooled = {"best_single": 0.50, "classwise": 0.55, "cmaes": 0.56, "cmaes+offsets": 0.60}
    assert rules._simplest(pooled, MIN_GAIN, 0.02) == "cmaes+offsets"  # nothing simpler within 0.02 of 0.60
    assert rules._simplest(pooled, MIN_GAIN, 0.05) == "classwise"
    assert rules._simplest(pooled, 0.2, 0.05) == "best_single"  # nothing earns the margin
    choosers = rules.rules(MIN_GAIN, (0.05,))
    assert choosers["margin_0.05"][0](pooled, {}) == "cmaes"  # the offsets earn 0.04 over cmaes, not 0.05
    assert choosers["margin_0.05"][0]({**pooled, "best_single": 0.52}, {}) == "best_single"
    assert choosers["offsets_must_earn"][0](pooled, {}) == "cmaes+offsets"  # +0.04 over cmaes: earned
    assert choosers["offsets_must_earn"][0]({**pooled, "cmaes+offsets": 0.57}, {}) == "cmaes"
    assert choosers["shipped"][0]({**pooled, "cmaes+offsets": 0.57}, {}) == "cmaes+offsets"  # kept: no loss
    # the rule before compared a fusion with the best single as trained; the shipped one with it and its offsets
    before = {"best_single": 0.50, "best_single+offsets": 0.53, "greedy": 0.535, "greedy+offsets": 0.50}
    assert choosers["offsets_must_earn"][0](before, {}) == "greedy"
    assert choosers["shipped"][0](before, {}) == "best_single+offsets"
    assert choosers["offsets_margin_0.05"][0]({**pooled, "cmaes+offsets": 0.62}, {}) == "cmaes+offsets"
    assert choosers["offsets_margin_0.05"][0](pooled, {}) == "cmaes"  # offsets +0.04 over their plain fit: short
    assert choosers["no_offsets"][0](pooled, {}) == "cmaes"
    loud = {**pooled, "classwise": 0.70}  # opt-in: only the rules that say so choose it
    assert choosers["shipped"][0](loud, {}) == "cmaes+offsets" and choosers["with_classwise"][0](loud, {}) == "classwise"
