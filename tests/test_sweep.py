"""Real Ray sweeps on the tiny data set (local cluster, and a two-node ray.cluster_utils.Cluster)."""

import json
import subprocess
import sys

import optuna
import pytest
from mlflow.tracking import MlflowClient

from search.leaderboard import leaderboard
from search.space import load_sweep
from tal_core.config import ConfigError

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def sweep_file(tmp_path, extra=""):
    path = tmp_path / "sweep.yaml"
    path.write_text(f"""
data: {{image_size: 32, frames_per_interval: 2}}
model: {{tiny_width: 8}}
train: {{epochs: 2, batch_size: 8}}
search: {{num_samples: 3, trial_workers: 2, asha: true, grace_period: 1, max_failures: 0}}
tracking: {{uri: "sqlite:///{tmp_path}/mlflow.db", experiment: test}}
space:
  model.shift_fraction: {{type: categorical, values: [0.0, 0.25]}}
  train.lr: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true}}
{extra}""")
    return path


def test_sweep_records_every_trial_everywhere(tiny_data, tmp_path):
    out = tmp_path / "sweep"
    done = subprocess.run([sys.executable, "-m", "search.cli", "sweep", "--data", str(tiny_data), "--config",
                           str(sweep_file(tmp_path)), "--out", str(out)], capture_output=True, text=True,
                          timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith(str(out))
    state = json.loads((out / "sweep.json").read_text())
    trials = state["trials"]
    assert len(trials) == 3 and all(t["status"] in ("FINISHED", "STOPPED_EARLY") for t in trials.values())
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
    study = optuna.load_study(study_name=state["study_name"], storage=f"sqlite:///{out / 'optuna.db'}")
    assert len(study.trials) == 3
    stopped = sum(t["status"] == "STOPPED_EARLY" for t in trials.values())
    assert sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials) == stopped
    table = leaderboard(out)
    assert len(table) == 3 and table["val_mAP"].is_monotonic_decreasing
    again = subprocess.run([sys.executable, "-m", "search.cli", "sweep", "--data", str(tiny_data), "--config",
                            str(sweep_file(tmp_path)), "--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr


def test_bad_space_fails_before_ray(tmp_path):
    with pytest.raises(ConfigError, match="model.shfit"):
        load_sweep(sweep_file(tmp_path, "  model.shfit: {type: float, low: 0, high: 1}"))
    with pytest.raises(ConfigError, match="model.shift_fraction"):
        load_sweep(_bad_range(tmp_path))


def _bad_range(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("space:\n  model.shift_fraction: {type: float, low: 0.0, high: 0.9}\n")
    return path


def test_trial_workers_span_two_nodes(tiny_data, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from search.sweep import run_sweep

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address)
        out = run_sweep(tiny_data, sweep_file(tmp_path), tmp_path / "sweep",
                        overrides=["search.num_samples=1", "search.asha=false", "train.epochs=1"])
        trial_dir = next((out / "trials").iterdir())
        nodes = {json.loads(p.read_text())["node_id"] for p in trial_dir.glob("worker_*.json")}
        assert len(nodes) == 2
        assert (trial_dir / "predictions" / "val.npz").exists()
    finally:
        ray.shutdown()
        cluster.shutdown()
