"""Real Ray sweeps on the tiny data set (local cluster, and a two-node ray.cluster_utils.Cluster)."""

import json
import os
import signal
import subprocess
import sys

import optuna
import pytest
from mlflow.tracking import MlflowClient

from helpers import epochs_done, free_port, wait_until, write_sweep_file
from search.leaderboard import leaderboard
from search.replay import replay_recorded
from search.replay_run import search_settings
from search.replay_table import load_table
from search.space import load_sweep
from tal_core.config import ConfigError

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_sweep_records_every_trial_everywhere(tiny_data, tiny_sweep, tmp_path):
    out, done = tiny_sweep
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith(str(out))
    state = json.loads((out / "sweep.json").read_text())
    trials = state["trials"]
    assert len(trials) == 3 and all(t["status"] in ("FINISHED", "STOPPED_EARLY") for t in trials.values())
    # the stop decisions are Ray's ASHA on the values the trials reported, in the order Tune heard them: the
    # replay of the recorded reports repeats them, whichever configurations the sampler drew
    table = load_table(out)
    stops = replay_recorded(table, search_settings(table.search, {}))
    assert stops == {t: (o["epochs"] if o["status"] == "STOPPED_EARLY" else None) for t, o in trials.items()}
    # every epoch Tune heard was recorded; a stopped trial may record more that its workers reported while the
    # stop was on its way (Tune never heard them: a tiny trial's epoch takes a second, and on a loaded machine the
    # stop can take two), never more than its budget; the replay above shows they do not change a decision
    for t in table.trials:
        heard, status = trials[t.trial_id]["epochs"], trials[t.trial_id]["status"]
        expected = range(heard, t.budget + 1) if status == "STOPPED_EARLY" else (heard,)
        assert len(t.reported_at) in expected, (t.trial_id, heard, t.reported_at)
    for trial_id in trials:
        assert (out / "trials" / trial_id / "predictions" / "val.npz").exists()
        ranks = sorted(json.loads(p.read_text())["rank"] for p in (out / "trials" / trial_id).glob("worker_*.json"))
        assert ranks == [0, 1]
    client = MlflowClient(state["tracking_uri"])
    parent = client.get_run(state["parent_run_id"])
    assert parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{state['parent_run_id']}'")
    assert len(children) == 3
    for child in children:
        assert "val_mAP" in child.data.metrics and "model.shift_fraction" in child.data.params
        assert child.data.params["data.image_size"] == "32"
        assert child.data.tags["talsearch.status"] in ("FINISHED", "STOPPED_EARLY")
        # the run says what the trial is (its searched values) and carries its trial id as a tag
        trial_id = child.data.tags["talsearch.trial_id"]
        assert trial_id in trials and child.info.run_name.endswith(f"[{trial_id}]")
        assert f"shift_fraction={float(child.data.params['model.shift_fraction']):.3g}" in child.info.run_name
    study = optuna.load_study(study_name=state["study_name"], storage=f"sqlite:///{out / 'optuna.db'}")
    assert len(study.trials) == 3
    stopped = sum(t["status"] == "STOPPED_EARLY" for t in trials.values())
    assert sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials) == stopped
    table = leaderboard(out)
    assert len(table) == 3 and table["val_mAP"].is_monotonic_decreasing
    again = subprocess.run([sys.executable, "-m", "talsearch.cli", "sweep", "--data", str(tiny_data), "--config",
                            str(write_sweep_file(tmp_path)), "--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr


def test_bad_space_fails_before_ray(tmp_path):
    with pytest.raises(ConfigError, match="model.shfit"):
        load_sweep(write_sweep_file(tmp_path, "  model.shfit: {type: float, low: 0, high: 1}"))
    with pytest.raises(ConfigError, match="model.shift_fraction"):
        load_sweep(_bad_range(tmp_path))
    with pytest.raises(ConfigError, match="search.metric: 'val_map' is not a metric trials report"):
        load_sweep(write_sweep_file(tmp_path), ["search.metric=val_map"])
    assert load_sweep(write_sweep_file(tmp_path), ["search.metric=val_mAP_at_0.75"]).base.search.metric == "val_mAP_at_0.75"


def _bad_range(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("space:\n  model.shift_fraction: {type: float, low: 0.0, high: 0.9}\n")
    return path


def test_ensemble_of_a_real_sweep(tiny_data, tiny_sweep, tmp_path):
    out, done = tiny_sweep
    assert done.returncode == 0
    ens = subprocess.run([sys.executable, "-m", "talsearch.cli", "ensemble", "--sweep", str(out), "--data",
                          str(tiny_data), "--out", str(tmp_path / "ens"), "--set",
                          f"tracking.uri=sqlite:///{tmp_path}/m.db"], capture_output=True, text=True, timeout=600)
    assert ens.returncode == 0, ens.stderr[-2000:]
    result = json.loads(ens.stdout)
    # the sweep mixed interval and per-frame outputs: the frame trial's cells are finer than its intervals
    from tal_core.scoring.predictions import load_predictions

    kinds = {}
    for trial in (out / "trials").iterdir():
        pred = load_predictions(trial / "predictions" / "val.npz")
        kinds[pred.meta["cells"]] = pred
    assert set(kinds) == {"interval", "frame"}
    assert len(kinds["frame"].starts) == 2 * len(kinds["interval"].starts)  # 2 frames per 1 s interval
    assert "nested_oof_val_mAP" in result["ensemble"]
    assert result["ensemble"]["val_mAP"] >= result["best_single"]["val_mAP"] - 1e-12
    spec = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert abs(sum(m["weight"] for m in spec["members"]) - 1) < 1e-9
    assert (tmp_path / "ens" / "submission.csv").exists() and (tmp_path / "ens" / "detections" / "test.json").exists()
    # the same candidates from the sweep's MLflow parent run (artifacts on the server), the 2 best, one procedure
    state = json.loads((out / "sweep.json").read_text())
    from_run = subprocess.run([sys.executable, "-m", "talsearch.cli", "ensemble", "--sweep", state["parent_run_id"],
                               "--data", str(tiny_data), "--out", str(tmp_path / "ens_run"), "--top", "2",
                               "--selection", "greedy", "--boundary-offsets", "none",
                               "--set", f"tracking.uri={state['tracking_uri']}"],
                              capture_output=True, text=True, timeout=600)
    assert from_run.returncode == 0, from_run.stderr[-2000:]
    by_run = json.loads(from_run.stdout)
    assert by_run["ensemble"]["procedure"] == "greedy"
    assert by_run["boundary_offsets"] == "none" and by_run["ensemble"]["boundary_offsets"] == {}
    members = [m["run_id"] for m in json.loads((tmp_path / "ens_run" / "ensemble.json").read_text())["members"]]
    children = {r.info.run_id for r in MlflowClient(state["tracking_uri"]).search_runs(
        [MlflowClient(state["tracking_uri"]).get_run(state["parent_run_id"]).info.experiment_id],
        f"tags.mlflow.parentRunId = '{state['parent_run_id']}'")}
    assert 1 <= len(members) <= 2 and {m.split("@e")[0] for m in members} <= children  # --top 2 of the trials


def _worker_nodes(trial_dir):
    return {json.loads(p.read_text())["node_id"] for p in trial_dir.glob("worker_*.json")}


def _worker_pid(trial_dir, rank: int) -> int:
    return json.loads((trial_dir / f"worker_{rank}.json").read_text())["pid"]


def test_trial_spans_nodes_and_survives_a_killed_worker_and_a_lost_node(tiny_data, tmp_path):
    """ray.cluster_utils.Cluster, three 1-CPU nodes: a 2-worker trial runs its workers on two nodes. First one
    worker process is killed (SIGKILL): the trial restarts its worker group and resumes from its checkpoint; then
    one of the nodes it runs on (not the head) is removed: it restarts on the nodes left, resumes again and
    finishes. The sweep runs as its own driver (``--address``) so that this test's main thread can do both."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "dashboard_port": free_port()})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    out = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "-m", "talsearch.cli", "sweep", "--data", str(tiny_data), "--config",
         str(write_sweep_file(tmp_path)), "--out", str(out), "--address", cluster.address, "--set",
         "search.num_samples=1", "search.scheduler=fifo", "train.epochs=7", "search.max_failures=3",
         "data.image_size=64", "model.tiny_width=16", "train.batch_size=4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:  # Ray Train resumes from the last checkpoint its controller has registered: let it see epoch 1
        wait_until(lambda: any(len(epochs_done(d)) >= 2 for d in (out / "trials").glob("*")),
                   "the trial's second epoch", proc)
        trial_dir = next((out / "trials").iterdir())
        assert len(_worker_nodes(trial_dir)) == 2  # one worker per node
        killed_pid, epochs_at_kill = _worker_pid(trial_dir, 1), len(epochs_done(trial_dir))
        os.kill(killed_pid, signal.SIGKILL)
        wait_until(lambda: _worker_pid(trial_dir, 1) != killed_pid and len(epochs_done(trial_dir)) > epochs_at_kill,
                   "an epoch trained after the worker was killed", proc)
        victim = next(node for node in workers if node.node_id in _worker_nodes(trial_dir))
        cluster.remove_node(victim, allow_graceful=False)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        proc.kill()
        cluster.shutdown()
    assert proc.returncode == 0, stderr[-3000:]
    (outcome,) = json.loads((out / "sweep.json").read_text())["trials"].values()
    assert outcome["status"] == "FINISHED" and outcome["epochs"] == 7, outcome
    epochs = epochs_done(trial_dir)
    assert epochs[-1] == 7 and epochs.count(1) == 1, epochs  # resumed twice, never restarted from scratch
    assert victim.node_id not in _worker_nodes(trial_dir) and _worker_pid(trial_dir, 1) != killed_pid
    assert (trial_dir / "predictions" / "val.npz").exists()


def _outcome(status, error=None):
    return {"status": status, "error": error}


def test_the_summary_counts_outcomes_and_a_sweep_without_a_finished_trial_fails(caplog):
    import logging

    import pandas as pd

    from search.sweep import SweepFailed, report_outcomes

    table = pd.DataFrame({"trial_id": ["a", "b"], "val_mAP": [0.5, 0.25]})
    ray_error = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
                 "ray.exceptions.RayTaskError(ValueError): wrapped\nValueError: data.view 'ego' is missing\n")
    with caplog.at_level(logging.INFO, logger="talsearch.sweep"):
        report_outcomes({"a": _outcome("FINISHED"), "b": _outcome("STOPPED_EARLY"),
                         "c": _outcome("FAILED", ray_error)}, table)
    assert "3 trial(s): 1 finished, 1 stopped early, 1 failed; best val_mAP 0.5000" in caplog.text
    assert "trial c failed: ValueError: data.view 'ego' is missing" in caplog.text
    with pytest.raises(SweepFailed) as failed:
        report_outcomes({"b": _outcome("STOPPED_EARLY"), "c": _outcome("FAILED", ray_error)}, table)
    assert failed.value.exit_code == 1
    assert str(failed.value) == ("sweep: no trial finished (2 trial(s): 0 finished, 1 stopped early, 1 failed; best "
                                 "val_mAP 0.5000); c: ValueError: data.view 'ego' is missing")


def test_a_trial_whose_outputs_never_reached_the_sweep_folder_counts_as_failed(tmp_path):
    from types import SimpleNamespace

    from search.sweep import trial_outcomes

    (tmp_path / "trials" / "kept").mkdir(parents=True)
    (tmp_path / "trials" / "kept" / "metrics.json").write_text('{"val_mAP": 0.4, "best_epoch": 2}')
    results = [SimpleNamespace(metrics={"trial_id": t, "epoch": 2}, config={}, error=None, path=f"/r/x_{t}_0")
               for t in ("kept", "lost")]
    outcomes = trial_outcomes(results, 2, tmp_path)
    assert outcomes["kept"]["status"] == "FINISHED" and outcomes["kept"]["val_mAP"] == 0.4
    assert outcomes["lost"]["status"] == "FAILED"
    assert outcomes["lost"]["error"].startswith("OutputsMissing: Ray reports the trial finished, but ")
