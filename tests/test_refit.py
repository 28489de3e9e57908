"""talsearch refit: a finished sweep's best configuration trained again with other seeds, as trials of the same
sweep; killed and resumed like a sweep (the Ray test kills and resumes the sweep's own driver first)."""

import json
import subprocess

import optuna
import pytest
from mlflow.tracking import MlflowClient

from ensemble.candidates import from_sweep_folder
from helpers import TALSEARCH, epochs_done, kill_process_tree, wait_until, write_sweep_file
from search.refit import refit_seeds, top_trials
from tal_core.run_folder import RunFolder


def refit_dirs(out, state):
    """The trial folders of the sweep that are not the sweep's own trials (those of the refit)."""
    return [d for d in (out / "trials").iterdir() if d.name not in state["trials"]]


def run(*args, cwd):
    return subprocess.run([*TALSEARCH, *args], capture_output=True, text=True, timeout=900, cwd=cwd)


def test_refit_needs_a_finished_sweep(tmp_path):
    done = run("refit", str(tmp_path), "--top", "1", "--seeds", "1", cwd=tmp_path)
    assert done.returncode == 2 and "no sweep.json" in done.stderr


def test_refit_takes_the_best_trials_with_metrics_and_config_and_new_seeds(tmp_path):
    trials = {"a": 0.4, "b": 0.7, "c": 0.55, "d": None}  # d: failed, no metrics
    (tmp_path / "sweep.json").write_text(json.dumps({"trials": {t: {} for t in trials}}))
    for trial_id, value in trials.items():
        folder = tmp_path / "trials" / trial_id
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text("train: {seed: 0}\n")
        if value is not None:
            (folder / "metrics.json").write_text(json.dumps({"val_mAP": value}))
    assert top_trials(tmp_path, 2) == ["b", "c"] and top_trials(tmp_path, 9) == ["b", "c", "a"]
    assert refit_seeds({"b": {"train": {"seed": 3}}, "c": {"train": {"seed": 0}}}, 2) == [4, 5]


EPOCHS = 3  # of every trial of the killed sweep and refit


def _kill_when(proc, predicate, what: str) -> None:
    """Kill the driver (and its own Ray cluster, nothing else) as soon as ``predicate()`` holds."""
    try:
        wait_until(predicate, what, proc, interval=0.05)
    finally:
        kill_process_tree(proc)


@pytest.mark.ray
@pytest.mark.slow
def test_a_killed_sweep_then_a_killed_refit_resume_without_duplicates(tiny_data, tmp_path, own_ray_temp_dir):
    """A sweep's driver killed once one trial has finished: ``--resume`` runs the rest, with no trial, MLflow run
    or Optuna trial twice. Then ``talsearch refit`` of its best trial (another seed), killed between the refit
    trial's epochs: ``--resume`` finishes that trial from its checkpoint, under the same sweep. (3 epochs: a tiny
    epoch can end while the kill freezes the tree, so a kill after epoch 1 still lands before the last one.)"""
    out = tmp_path / "s"
    args = ["sweep", "--data", str(tiny_data), "--config", str(write_sweep_file(tmp_path)), "--out", str(out),
            "--set", "search.num_samples=2", "search.asha=false", f"train.epochs={EPOCHS}", "train.snapshots=0",
            "search.trial_workers=1"]
    proc = subprocess.Popen([*TALSEARCH, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, cwd=tmp_path)
    trials = out / "trials"
    _kill_when(proc, lambda: any(len(epochs_done(d)) == EPOCHS for d in trials.glob("*")) and len(list(trials.glob("*"))) >= 2,
               "one finished trial and another started")
    finished_before = {d.name for d in trials.glob("*") if len(epochs_done(d)) == EPOCHS}
    done = run(*args, "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((out / "sweep.json").read_text())
    assert len(state["trials"]) == 2 and finished_before <= set(state["trials"])
    assert all(t["status"] == "FINISHED" for t in state["trials"].values())
    client = MlflowClient(state["tracking_uri"])
    exp = client.get_run(state["parent_run_id"]).info.experiment_id

    def children():
        return client.search_runs([exp], f"tags.mlflow.parentRunId = '{state['parent_run_id']}'")

    assert len(children()) == 2 and len({r.info.run_name for r in children()}) == 2
    study = optuna.load_study(study_name=state["study_name"], storage=f"sqlite:///{out / 'optuna.db'}")
    assert len(study.trials) == 2

    proc = subprocess.Popen([*TALSEARCH, "refit", str(out), "--top", "1", "--seeds", "1"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _kill_when(proc, lambda: any(epochs_done(d) for d in refit_dirs(out, state)), "the refit trial's epoch 1")
    at_kill = {d.name: epochs_done(d) for d in refit_dirs(out, state)}
    halfway = [trial_id for trial_id, epochs in at_kill.items() if epochs in ([1], [1, 2])]
    assert halfway, f"no refit trial was between its epochs at the kill: {at_kill}"
    done = run("refit", str(out), "--top", "1", "--seeds", "1", "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    refit = json.loads((out / "refit.json").read_text())
    assert len(refit["from"]) == 1 and set(refit["from"]) <= set(state["trials"]) and "finished" in refit
    assert len(refit["seeds"]) == 1 and len(refit["trials"]) == 1
    assert all(t["status"] == "FINISHED" for t in refit["trials"].values())
    assert sorted(t["seed"] for t in refit["trials"].values()) == refit["seeds"]
    assert set(halfway) <= set(refit["trials"])  # the interrupted trial was finished, not replaced by a new one
    for trial_id in halfway:  # resumed from its checkpoint: no epoch is trained twice, the missing ones follow
        assert epochs_done(out / "trials" / trial_id) == [1, 2, 3], trial_id
        # every epoch reported, in order; one the kill cut off before Ray registered its report is reported
        # again after the resume (the record then lists it twice), and none is skipped
        reported = [r["epoch"] for r in RunFolder(out / "trials" / trial_id).read_reports()]
        assert reported == sorted(reported) and sorted(set(reported)) == list(range(reported[0], EPOCHS + 1)), \
            (trial_id, reported)
        assert reported[0] <= len(at_kill[trial_id]) + 1 and len(reported) <= EPOCHS + 1, (trial_id, reported)
    for trial_id in refit["trials"]:  # the best trial's configuration, another seed
        config = (out / "trials" / trial_id / "config.yaml").read_text()
        assert f"seed: {refit['trials'][trial_id]['seed']}" in config
    assert len(children()) == 3 and len({r.info.run_name for r in children()}) == 3  # 2 trials + 1 refit
    assert {c.run_id for c in from_sweep_folder(out)} == set(state["trials"]) | set(refit["trials"])
