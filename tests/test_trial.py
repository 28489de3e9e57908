"""The trial's Ray Train set-up that runs without a cluster (its trainer's callbacks and environment), and on a
real local cluster the hand-over of a Train run's last report to Tune."""

import json
import os
import subprocess
import sys

import pytest
from ray.train import RunConfig, ScalingConfig

from helpers import ROOT
from search.ray_compat import DATASETS_CALLBACK, PG_CLEANER_INTERVAL_S, trainer_callbacks
from search.trial import POLL_ENV, PREEMPTION_ENV, TrialTrainer, mlflow_name, set_train_env, unheard_epochs


def _noop(config):
    pass


def test_trial_trainer_starts_no_dataset_manager_without_ray_datasets(tmp_path):
    trainer = TrialTrainer(_noop, scaling_config=ScalingConfig(num_workers=2),
                           run_config=RunConfig(name="t", storage_path=str(tmp_path)))
    callbacks = trainer_callbacks(trainer)
    names = [type(callback).__name__ for callback in callbacks]
    assert DATASETS_CALLBACK not in names
    assert "BackendSetupCallback" in names and names.count("PlacementGroupCleanerCallback") == 1
    (cleaner,) = [c for c in callbacks if type(c).__name__ == "PlacementGroupCleanerCallback"]
    assert cleaner._check_interval_s == PG_CLEANER_INTERVAL_S  # Ray's default polls every second


@pytest.mark.parametrize("local", [True, False])
def test_train_env_defaults_never_override_the_user(monkeypatch, local):
    monkeypatch.delenv(POLL_ENV, raising=False)
    monkeypatch.delenv(PREEMPTION_ENV, raising=False)
    set_train_env(0.5, local)
    assert float(os.environ[POLL_ENV]) == 0.5
    assert os.environ.get(PREEMPTION_ENV) == ("0" if local else None)
    monkeypatch.setenv(POLL_ENV, "3")
    monkeypatch.setenv(PREEMPTION_ENV, "1")
    set_train_env(0.5, True)
    assert os.environ[POLL_ENV] == "3" and os.environ[PREEMPTION_ENV] == "1"



def test_a_resumed_trial_reports_again_only_the_epochs_ray_never_registered():
    """Resumed with epochs 1-3 in its state: Ray's last registered report says which ones Tune heard (epoch 2:
    only 3 is reported again; none registered: all three); a checkpoint from before it said so falls back to
    the run folder's record (which may list an epoch twice, or one Tune then lost)."""
    history = [{"epoch": e, "val_mAP": 0.1 * e} for e in (1, 2, 3)]
    assert unheard_epochs(history, 2, []) == [3]
    assert unheard_epochs(history, 3, [{"epoch": 1}]) == []
    assert unheard_epochs(history, 0, [{"epoch": 1}, {"epoch": 2}]) == [1, 2, 3]
    assert unheard_epochs(history, None, [{"epoch": 1}, {"epoch": 1}, {"epoch": 3}]) == [2]

def test_metric_names_fit_mlflow():
    assert mlflow_name("val_mAP@0.5") == "val_mAP_at_0.5" and mlflow_name("val_mAP") == "val_mAP"


def test_gpu_workers_reserve_their_share_and_trials_fit_the_gpus(tmp_path):
    from search.space import load_sweep
    from search.sweep import concurrency
    from search.trial import worker_resources
    from tal_core.config import ConfigError, load_config

    shared = ["search.use_gpu=true", "search.gpus_per_worker=0.5", "search.trial_workers=1",
              "search.num_samples=8"]
    assert worker_resources(load_config(None, shared)) == {"CPU": 1.0, "GPU": 0.5}
    assert worker_resources(load_config(None, [])) == {"CPU": 1.0}
    path = tmp_path / "s.yaml"
    path.write_text("space: {train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}}\n")
    spec = load_sweep(path, shared)
    assert concurrency(spec, {"CPU": 16, "GPU": 1}) == 2  # two trials share the one GPU
    assert concurrency(spec, {"CPU": 16, "GPU": 2}) == 4
    assert concurrency(load_sweep(path, ["search.num_samples=8"]), {"CPU": 16, "GPU": 1}) == 8  # CPU trials
    with pytest.raises(ConfigError, match="gpus_per_worker=0.5 .* needs search.trial_workers=1, got 2"):
        load_config(None, ["search.use_gpu=true", "search.gpus_per_worker=0.5", "search.trial_workers=2"])


def test_workers_warm_their_imports_while_ray_train_starts(tmp_path):
    import subprocess
    import sys

    import ray.cloudpickle

    from search.trial import start_warming

    trainer = TrialTrainer(_noop, scaling_config=ScalingConfig(num_workers=2),
                           run_config=RunConfig(name="t", storage_path=str(tmp_path)))
    (warm,) = [c for c in trainer_callbacks(trainer) if getattr(c, "start", None) is start_warming]
    ray.cloudpickle.loads(ray.cloudpickle.dumps(warm))  # it travels to the workers
    probe = ("import sys, time\nfrom search.ray_compat import worker_start_callback\n"
             "from search.trial import start_warming, WARM_MODULES\n"
             "worker_start_callback(start_warming).after_init_train_context()\ndeadline = time.time() + 120\n"
             "while time.time() < deadline and not all(m in sys.modules for m in WARM_MODULES):\n"
             "    time.sleep(0.1)\nprint(all(m in sys.modules for m in WARM_MODULES))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "True", done.stderr[-2000:]


def test_a_resumed_trial_starts_from_its_best_epoch_so_far(tmp_path):
    from search.trial import _best_so_far

    assert _best_so_far(tmp_path) == {}
    (tmp_path / "metrics.json").write_text(json.dumps({"val_mAP": 0.5, "val_mAP@0.5": 0.7, "best_epoch": 3,
                                                        "per_class_AP": {"a": 0.5}}))
    assert _best_so_far(tmp_path) == {"best_val_mAP": 0.5, "best_val_mAP_at_0.5": 0.7, "best_epoch": 3.0}
    (tmp_path / "metrics.json").write_text("{torn")
    assert _best_so_far(tmp_path) == {}


def test_a_trial_records_when_its_train_run_returned(tmp_path):
    import time

    from search.trial import _record_fit_time

    started = time.time() - 12.5
    _record_fit_time(tmp_path, started)
    timing = json.loads((tmp_path / "trial_timing.json").read_text())
    assert timing["started"] == started and 12.5 <= timing["fit_returned_s"] < 60
    assert [p.name for p in tmp_path.iterdir()] == ["trial_timing.json"]  # written atomically, nothing left over
    _record_fit_time(tmp_path / "trial_timing.json", started + 1)  # a trial that cannot write it (its folder is
    assert json.loads((tmp_path / "trial_timing.json").read_text()) == timing  # a file here) goes on: no error


def test_a_train_worker_imports_neither_mlflow_nor_optuna():
    """Every Train worker and controller unpickles worker_loop, so imports this module: mlflow and optuna (about
    a second of a 2-core machine's start-up per process) belong to the driver."""
    import subprocess
    import sys

    code = ("import sys, search.trial, search.ray_compat; "
            "print(sorted(m for m in ('mlflow', 'optuna') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.stdout.strip() == "[]"


HAND_OVER_SCRIPT = """
import json, os, sys, time
import ray
from ray import tune
from ray.train import RunConfig, ScalingConfig
from ray.tune.integration.ray_train import TuneReportCallback
from search.ray_compat import LeanTorchTrainer, hand_over_last_report

def loop(config):
    for epoch in (1, 2):
        ray.train.report({"epoch": epoch})

def trial(config):
    LeanTorchTrainer(loop, scaling_config=ScalingConfig(num_workers=1),
                 run_config=RunConfig(name="run", storage_path=config["storage"],
                                      callbacks=[TuneReportCallback()])).fit()
    hand_over_last_report()

class SlowDriver(tune.Callback):  # a busy Tune loop: Train's run finishes before Tune asks for result 2
    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result["training_iteration"] == 1:
            time.sleep(12)

os.makedirs(sys.argv[1], exist_ok=True)
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
results = tune.Tuner(trial, param_space={"storage": sys.argv[1]},
                     run_config=tune.RunConfig(storage_path=sys.argv[1], callbacks=[SlowDriver()], verbose=0)).fit()
print(json.dumps([r.metrics.get("epoch") for r in results]))
"""


@pytest.mark.ray
@pytest.mark.slow
def test_a_trial_whose_driver_asks_late_for_its_last_report_finishes(tmp_path, own_ray_temp_dir):
    """Train's run returns while its last report still waits for Tune (the driver was busy): without
    ``hand_over_last_report`` the trial's main thread then blocks forever (Ray 2.60: it hands the report into the
    one-item result queue that already holds the function's "done" and that it alone empties), and the sweep
    with it. With it the trial finishes and Tune sees both reports."""
    script = tmp_path / "trial.py"
    script.write_text(HAND_OVER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run([sys.executable, str(script), str(tmp_path / "results")], capture_output=True,
                              text=True, timeout=240, env=env, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail("the trial hung after its Train run returned")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [2]
