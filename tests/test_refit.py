"""talsearch refit: a finished sweep's best configuration trained again with other seeds, as trials of the same
sweep; killed and resumed like a sweep."""

import json
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from ensemble.candidates import from_sweep_folder
from helpers import TALSEARCH, epochs_done, kill_process_tree, write_sweep_file
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


@pytest.mark.ray
@pytest.mark.slow
def test_refit_trains_other_seeds_under_the_sweep_and_resumes_after_a_kill(tiny_data, tmp_path, own_ray_temp_dir):
    out = tmp_path / "s"
    done = run("sweep", "--data", str(tiny_data), "--config", str(write_sweep_file(tmp_path)), "--out", str(out),
               "--set", "search.num_samples=1", "search.asha=false", "train.epochs=2", "train.snapshots=0",
               "search.trial_workers=1",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((out / "sweep.json").read_text())
    (best,) = state["trials"]  # a one-trial sweep: refit's choice of the top trial is tested without Ray
    proc = subprocess.Popen([*TALSEARCH, "refit", str(out), "--top", "1", "--seeds", "1"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:  # kill the driver (and its own Ray cluster, nothing else) once the refit trial has finished epoch 1 of 2
        deadline = time.time() + 900
        while time.time() < deadline and not any(epochs_done(d) for d in refit_dirs(out, state)):
            time.sleep(0.05)
    finally:
        kill_process_tree(proc)
    at_kill = {d.name: epochs_done(d) for d in refit_dirs(out, state)}
    halfway = [trial_id for trial_id, epochs in at_kill.items() if epochs == [1]]
    assert halfway, f"no refit trial was between its epochs at the kill: {at_kill}"
    done = run("refit", str(out), "--top", "1", "--seeds", "1", "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    refit = json.loads((out / "refit.json").read_text())
    assert refit["from"] == [best] and len(refit["seeds"]) == 1 and "finished" in refit
    assert len(refit["trials"]) == 1 and all(t["status"] == "FINISHED" for t in refit["trials"].values())
    assert sorted(t["seed"] for t in refit["trials"].values()) == refit["seeds"]
    assert set(halfway) <= set(refit["trials"])  # the interrupted trial was finished, not replaced by a new one
    for trial_id in halfway:  # resumed from its checkpoint: epoch 1 is not trained again, epoch 2 follows it
        assert epochs_done(out / "trials" / trial_id) == [1, 2], trial_id
        assert [r["epoch"] for r in RunFolder(out / "trials" / trial_id).read_reports()] in ([1, 2], [2]), trial_id
    assert all(epochs_done(out / "trials" / t) == [1, 2] for t in refit["trials"])
    for trial_id in refit["trials"]:  # the best trial's configuration, another seed
        config = (out / "trials" / trial_id / "config.yaml").read_text()
        assert f"seed: {refit['trials'][trial_id]['seed']}" in config
    client = MlflowClient(state["tracking_uri"])
    exp = client.get_run(state["parent_run_id"]).info.experiment_id
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{state['parent_run_id']}'")
    assert len(children) == 2 and len({r.info.run_name for r in children}) == 2  # 1 trial + 1 refit, no duplicate
    assert {c.run_id for c in from_sweep_folder(out)} == set(state["trials"]) | set(refit["trials"])
