"""Old folders keep working: a sweep, a run and an ensemble folder written by an earlier version (under
tests/fixtures/, made by the real code on tiny synthetic data; see tests/fixtures/README.md) read back through
today's leaderboard, ensemble, refit, replay and warm-start code with the values they were stored with."""

import json
import shutil

import numpy as np
import pytest
import yaml

from helpers import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
SWEEP, RUN, ENSEMBLE, DATA = FIXTURES / "sweep", FIXTURES / "run", FIXTURES / "ensemble", FIXTURES / "data"
TRIALS = {"3cd6a29a": ("FINISHED", 6, 0.0, "interval"), "a8d2507e": ("FINISHED", 6, 0.25, "frame"),
          "51068296": ("STOPPED_EARLY", 3, 0.25, "interval")}  # by val_mAP, best first
BEST = "3cd6a29a"


def stored_metrics(folder) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def stored_val_map(trial_id: str) -> float:
    return stored_metrics(SWEEP / "trials" / trial_id)["val_mAP"]


def test_the_fixtures_are_small_and_tracked():
    sizes = [p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file()]
    assert sum(sizes) < 1_000_000 and max(sizes) < 64_000
    assert not list(FIXTURES.rglob("*.pt")) and not list(FIXTURES.rglob("mlflow.db"))


def test_the_leaderboard_of_an_old_sweep():
    from search.leaderboard import leaderboard

    table = leaderboard(SWEEP)
    assert list(table["trial_id"]) == list(TRIALS)
    assert [tuple(row) for row in table[["status", "epochs", "model.shift_fraction", "model.output"]].values] == \
        list(TRIALS.values())
    assert list(table["val_mAP"]) == [stored_val_map(t) for t in TRIALS]
    assert table["val_mAP"][0] == pytest.approx(1 / 30) and table["best_epoch"][0] == 4


def test_the_ensemble_of_an_old_sweep(tmp_path, monkeypatch):
    import ensemble.run

    monkeypatch.setattr(ensemble.run, "_log_mlflow", lambda *args, **kwargs: None)  # a record only; no store here
    result = ensemble.run.run_ensemble(str(SWEEP), DATA, tmp_path / "ens", folds=3, max_steps=2, selection="greedy",
                                       boundary_offsets=False)
    assert result["best_single"]["run_id"] == BEST
    assert result["best_single"]["val_mAP"] == pytest.approx(stored_val_map(BEST), abs=1e-12)
    assert result["ensemble"]["val_mAP"] >= result["best_single"]["val_mAP"] - 1e-12
    members = json.loads((tmp_path / "ens" / "ensemble.json").read_text())["members"]
    assert {m["run_id"].partition("@")[0] for m in members} <= set(TRIALS)
    assert abs(sum(m["weight"] for m in members) - 1) < 1e-9


def test_an_old_ensemble_folders_detections_score_as_stored():
    from tal_core.data.annotations import load_ground_truth
    from tal_core.scoring.formats import ground_truth_segments, read_detections
    from tal_core.scoring.metrics import average_precision

    truth = ground_truth_segments(load_ground_truth(DATA / "annotations.json"), "val")
    for folder, metrics in ((ENSEMBLE, stored_metrics(ENSEMBLE)["ensemble"]), (RUN, stored_metrics(RUN)),
                            (SWEEP / "trials" / BEST, stored_metrics(SWEEP / "trials" / BEST))):
        scored = average_precision(truth, read_detections(folder / "detections" / "val.json"), (0.5, 0.75, 0.95))
        assert scored.mean == pytest.approx(metrics["val_mAP"], abs=1e-12), folder
    ensemble_spec = json.loads((ENSEMBLE / "ensemble.json").read_text())
    assert ensemble_spec["members"][0]["run_id"] == BEST == stored_metrics(ENSEMBLE)["best_single"]["run_id"]


def test_an_old_run_folder_reads_back():
    from tal_core.run_folder import RunFolder
    from tal_core.scoring.predictions import load_predictions

    run = RunFolder(RUN)
    metrics, history = run.read_metrics(), run.read_history()
    assert [h["epoch"] for h in history] == [1, 2, 3, 4] and metrics["best_epoch"] == 4
    assert metrics["val_mAP"] == history[3]["val_mAP"] == pytest.approx(1 / 12)
    assert sorted(run.snapshots()) == [1, 4]
    config = run.read_flat_config()
    assert config["train.epochs"] == 4 and config["model.tiny_width"] == 8 and "search.asha" not in config
    assert config["search.scheduler"] == "asha"  # it held the deprecated search.asha: true
    val = load_predictions(run.predictions_file("val"))
    assert list(val.video_ids) == ["vid0002", "vid0003", "vid0004"]
    assert np.allclose(val.probs.sum(axis=1), 1, atol=1e-4)


def test_refit_reads_an_old_sweeps_state_and_configs():
    from search.refit import _plan, read_state, top_trials
    from tal_core.config import from_dict

    state = read_state(SWEEP)
    assert state["study_name"] == "sweep-a80e968b" and set(state["trials"]) == set(TRIALS)
    assert state["trials"][BEST]["val_mAP"] == stored_val_map(BEST)
    assert top_trials(SWEEP, 2) == list(TRIALS)[:2]
    plan = _plan(SWEEP, 2, 2)
    assert plan["from"] == list(TRIALS)[:2] and plan["seeds"] == [1, 2]
    config = from_dict(plan["configs"]["a8d2507e"])
    assert config.model.output == "frame" and config.model.shift_fraction == 0.25 and config.search.stopper == "asha"
    assert "asha" not in plan["configs"]["a8d2507e"]["search"]


def test_the_replay_table_of_an_old_sweep():
    from search.replay_table import load_table
    from tal_core.run_folder import RunFolder

    table = load_table(SWEEP)
    assert table.metric == "val_mAP" and table.max_epochs == 6 and table.concurrency == 2
    assert "asha" not in table.search and table.search["scheduler"] == "asha"
    recorded = {t.trial_id: t for t in table.trials}
    assert set(recorded) == set(TRIALS)
    for trial_id, (_, epochs, shift, output) in TRIALS.items():
        history = [h["val_mAP"] for h in RunFolder(SWEEP / "trials" / trial_id).read_history()]
        assert recorded[trial_id].params == {"model.shift_fraction": shift, "model.output": output}
        assert list(recorded[trial_id].values) == history  # the stopped trial ended an epoch past its stop
        assert len(history) == (epochs if epochs == 6 else 4) and recorded[trial_id].budget == 6
    assert max(max(t.values) for t in table.trials) == stored_val_map(BEST)


def test_a_warm_start_from_an_old_sweep(tmp_path):
    from search.space import load_sweep
    from search.warm_start import load_warm_start
    from tal_core.run_folder import RunFolder

    old = tmp_path / "old"
    shutil.copytree(SWEEP, old)  # the study file is opened for writing by SQLite: work on a copy
    fixed = {k: v for k, v in RunFolder(SWEEP / "trials" / BEST).read_config().items()
             if k not in ("search", "tracking")}
    state = json.loads((SWEEP / "sweep.json").read_text())
    path = tmp_path / "new.yaml"
    path.write_text(yaml.safe_dump({**fixed, "space": state["space"]}))
    warm = load_warm_start(old, load_sweep(path))
    assert not warm.skipped and len(warm.trials) == 3
    by_params = {(t.params["model.shift_fraction"], t.params["model.output"]): t for t in warm.trials}
    assert by_params[(0.0, "interval")].value == state["trials"][BEST]["last_val_mAP"] == stored_val_map(BEST)
    assert by_params[(0.25, "frame")].value == state["trials"]["a8d2507e"]["last_val_mAP"]
    assert by_params[(0.25, "interval")].state.name == "PRUNED"
