"""Each private Ray API of search.ray_compat, checked without a cluster: a Ray release that changes one fails
here, in seconds, naming it."""

import optuna
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.train import RunConfig, ScalingConfig
from ray.tune.search.optuna import OptunaSearch

from search import ray_compat


def _noop(config):
    pass


def test_worker_callback_hook_exists_and_calls_back():
    assert ray_compat.WorkerCallback is not None, "ray.train.v2._internal...WorkerCallback is gone"
    called = []
    callback = ray_compat.worker_start_callback(lambda: called.append(1))
    callback.after_init_train_context()
    assert called == [1]


def test_trainer_default_callbacks_name_the_datasets_callback(tmp_path):
    from ray.train.torch import TorchTrainer

    plain = TorchTrainer(_noop, scaling_config=ScalingConfig(num_workers=1),
                         run_config=RunConfig(name="t", storage_path=str(tmp_path)))
    names = [type(c).__name__ for c in ray_compat.trainer_callbacks(plain)]
    assert ray_compat.DATASETS_CALLBACK in names  # what LeanTorchTrainer drops
    lean = ray_compat.LeanTorchTrainer(_noop, scaling_config=ScalingConfig(num_workers=1),
                                       run_config=RunConfig(name="t", storage_path=str(tmp_path)))
    assert [n for n in names if n != ray_compat.DATASETS_CALLBACK] == \
        [type(c).__name__ for c in ray_compat.trainer_callbacks(lean)]


def test_torch_backend_functions_run_on_workers_by_name_exist():
    from ray.train.torch import config

    for name in ("_set_torch_distributed_env_vars", "_setup_torch_process_group", "_shutdown_torch",
                 "TorchConfigContextManager"):
        assert callable(getattr(config, name, None)), f"ray.train.torch.config.{name} is gone"
    assert ray_compat.TorchProcessGroupConfig(backend="nccl").to_dict()["backend"] == "nccl"


def test_a_trials_driving_processes_never_import_torch(tmp_path):
    """Tune's trial actor imports search.trial and builds the trainer; Train's controller unpickles it: neither
    imports torch (Ray's own TorchTrainer would, 2 s of CPU and ~300 MB in each, twice per trial). Nor does the
    sweep's driver, unless it has frames to decode (``resize_frames``)."""
    import subprocess
    import sys

    from helpers import ROOT

    probe = ("import sys, pickle\nsys.modules['torch'] = None  # any import of torch now fails\n"
             "from ray.train import RunConfig, ScalingConfig\nfrom search.trial import TrialTrainer, worker_loop\n"
             "import search.sweep, talsearch.commands  # the driver's modules\n"
             "trainer = TrialTrainer(worker_loop, scaling_config=ScalingConfig(num_workers=2),\n"
             f"                       run_config=RunConfig(name='t', storage_path={str(tmp_path)!r}))\n"
             "import ray.cloudpickle\nray.cloudpickle.loads(ray.cloudpickle.dumps(trainer.backend_config))\n"
             "print(type(trainer.backend_config).__name__, trainer.backend_config.backend)\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["TorchProcessGroupConfig", "gloo"]


def test_mlflow_callback_keeps_trial_runs_in_a_dict(tmp_path):
    callback = MLflowLoggerCallback(f"sqlite:///{tmp_path}/m.db", experiment_name="x")
    callback.setup()  # what Tune calls before the first trial
    assert ray_compat.trial_runs(callback) == {}


def test_optuna_search_keeps_its_trials_study_and_told_set(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/o.db")
    searcher = OptunaSearch(space={"x": optuna.distributions.FloatDistribution(0, 1)}, metric="m", mode="max",
                            storage=storage, study_name="s")
    assert searcher.suggest("t1") is not None
    assert ray_compat.optuna_trial(searcher, "t1") is not None and ray_compat.optuna_trial(searcher, "t2") is None
    assert isinstance(ray_compat.optuna_study(searcher), optuna.Study)
    assert isinstance(ray_compat.told_trials(searcher), set)
    ray_compat.forget_optuna_trial(searcher, "t1")
    assert ray_compat.optuna_trial(searcher, "t1") is None and searcher.suggest("t1") is not None


def test_async_schedulers_take_a_replayed_trial_and_no_controller():
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

    asha = AsyncHyperBandScheduler(time_attr="epoch", metric="m", mode="max", max_t=4, grace_period=1,
                                   reduction_factor=2)
    good, poor = ray_compat.ReplayedTrial("good"), ray_compat.ReplayedTrial("poor")
    for trial in (good, poor):
        asha.on_trial_add(None, trial)
    assert asha.on_trial_result(None, good, {"epoch": 1, "m": 0.9}) == TrialScheduler.CONTINUE
    assert asha.on_trial_result(None, poor, {"epoch": 1, "m": 0.1}) == TrialScheduler.STOP
    asha.on_trial_complete(None, poor, {"epoch": 1, "m": 0.1})
    assert FIFOScheduler().on_trial_result(None, good, {"epoch": 2, "m": 0.0}) == TrialScheduler.CONTINUE
