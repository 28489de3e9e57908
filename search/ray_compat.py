"""Every private Ray API tal-search uses, in this one module (tested with Ray 2.50-2.60).

``tests/test_ray_compat.py`` checks each of them in seconds, without a cluster: on a Ray release that renames
or drops one, that test names it before a sweep fails halfway. What each is for:

- ``WorkerCallback`` (``ray.train.v2._internal``): a hook on each Train worker once its context exists; the
  trial warms its imports there. Where it is missing the warm-up is skipped (same results, slower start).
- ``DataParallelTrainer._create_default_callbacks``: the trainer's own callbacks; a trial drops Ray Data's
  ``DatasetsCallback`` (one dataset-manager actor per trial that our workers never use) and adds its own.
- ``ray.train.torch.config``'s ``_set_torch_distributed_env_vars``, ``_setup_torch_process_group``,
  ``_shutdown_torch`` and ``TorchConfigContextManager``: what ``TorchTrainer``'s backend runs on each worker.
  ``TorchProcessGroupConfig`` runs them there by name, so that the processes that only drive a trial (Tune's
  trial actor, Train's controller) never import torch: ``ray.train.torch`` imports it, 2 s of CPU and ~300 MB
  each, twice per trial.
- ``MLflowLoggerCallback._trial_runs``: Tune trial -> MLflow run id; the sweep starts each trial's run itself
  (named after its searched values) and records it there so Tune's callback logs into it.
- ``OptunaSearch._ot_trials`` / ``_ot_study`` / ``_completed_trials``: the Optuna trial of a Tune trial, the
  study, and the trials already told; the searcher tells Optuna about ASHA-stopped trials as PRUNED, and forgets
  a Tune trial's Optuna trial to ask again when the proposal repeated a tried configuration.
- ``_TrainSession._inter_actor_queue`` / ``stop_event`` (``ray.train._internal.session``): Tune's side of a Train
  run inside a trial. ``hand_over_last_report`` waits, after ``fit()``, until Tune has taken the run's last
  report from that queue (see there: without it a trial whose driver is slow to ask for results hangs forever).
- ``internal_kv`` ``dashboard`` entry (``ray.experimental.internal_kv``): where a cluster's head registered its
  dashboard (None: it runs none). Ray Train's placement-group cleaner reaches the state API through it.
- ``ReplayedTrial``: Tune's schedulers are given ``Trial`` objects and a controller; ``AsyncHyperBandScheduler``
  and ``FIFOScheduler`` read only the trial's ``trial_id`` and never the controller, so ``talsearch replay``
  drives them with this stand-in and ``None``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ray
from ray.exceptions import GetTimeoutError
from ray.train._internal.utils import get_address_and_port
from ray.train.backend import Backend, BackendConfig
from ray.train.constants import (
    DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
    TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
)
from ray.train.v2._internal.util import TrainingFramework
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

if TYPE_CHECKING:  # type names only: a Train worker imports this module, and mlflow and optuna cost it a second
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.search.optuna import OptunaSearch

try:
    from ray.train.v2._internal.execution.callback import WorkerCallback
except ImportError:  # another Ray version: no warm-up, same results
    WorkerCallback = None

DATASETS_CALLBACK = "DatasetsCallback"
# How often a trial's placement-group cleaner asks the state API whether the trial's Train controller still
# lives (Ray's default: every second, an HTTP query through the dashboard per trial, ~1.5 CPU-s per trial on a
# 2-core node). The cleaner frees an ASHA-stopped trial's workers at most this long after its controller died.
PG_CLEANER_INTERVAL_S = 2.0


class ReplayedTrial:
    """What Ray's asynchronous schedulers read of a Tune ``Trial``: its id."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id

    def __repr__(self) -> str:
        return f"ReplayedTrial({self.trial_id})"


def worker_start_callback(start: Callable[[], None]):
    """A Train callback calling ``start()`` on each worker once its train context exists (None where this
    Ray has no such hook). ``start`` must be picklable (a module-level function)."""
    if WorkerCallback is None:
        return None
    return _StartCallback(start)


if WorkerCallback is not None:
    class _StartCallback(WorkerCallback):
        def __init__(self, start: Callable[[], None]):
            self.start = start

        def after_init_train_context(self):
            self.start()


logger = logging.getLogger("talsearch.sweep")


def _torch_backend_call(name: str, *args, **kwargs):
    """On a Train worker: ``ray.train.torch.config.<name>(...)`` (torch is imported here, on the worker only)."""
    from ray.train.torch import config

    return getattr(config, name)(*args, **kwargs)


def _set_master_address(addr: str, port: int) -> None:
    os.environ["MASTER_ADDR"] = addr
    os.environ["MASTER_PORT"] = str(port)


class _TorchDeviceContext:
    """Around the training function on each worker: Ray's torch context (sets the worker's CUDA device)."""

    def __enter__(self):
        self._inner = _torch_backend_call("TorchConfigContextManager")
        return self._inner.__enter__()

    def __exit__(self, *exc_info):
        return self._inner.__exit__(*exc_info)


class _TorchProcessGroupBackend(Backend):
    """``TorchTrainer``'s backend (torch.distributed over env://) for a CPU (gloo) or GPU (nccl) worker group,
    driven from a process that never imports torch: every torch call runs on the workers."""

    share_cuda_visible_devices = True

    def on_start(self, worker_group, backend_config: TorchProcessGroupConfig) -> None:
        addr, port = worker_group.execute_single(0, get_address_and_port)
        worker_group.execute(_set_master_address, addr=addr, port=port)
        worker_group.execute(_torch_backend_call, "_set_torch_distributed_env_vars")
        size = len(worker_group)
        ray.get([worker_group.execute_single_async(rank, _torch_backend_call, "_setup_torch_process_group",
                                                   backend=backend_config.backend, world_rank=rank, world_size=size,
                                                   init_method="env://", timeout_s=backend_config.timeout_s)
                 for rank in range(size)])

    def on_shutdown(self, worker_group, backend_config) -> None:
        futures = worker_group.execute_async(_torch_backend_call, "_shutdown_torch",
                                             destroy_process_group=len(worker_group) > 1)
        timeout_s = int(os.environ.get(TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
                                       DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S))
        try:
            ray.get(futures, timeout=timeout_s)
        except GetTimeoutError:
            logger.warning(f"torch process group shutdown timed out after {timeout_s} s")


@dataclass
class TorchProcessGroupConfig(BackendConfig):
    """``TorchConfig(backend=...)`` without importing torch where the trainer is built or driven."""

    backend: str = "gloo"
    timeout_s: int = 1800

    @property
    def backend_cls(self):
        return _TorchProcessGroupBackend

    @property
    def train_func_context(self):
        return _TorchDeviceContext

    @property
    def framework(self):
        return TrainingFramework.TORCH

    def to_dict(self) -> dict:
        return {"backend": self.backend, "init_method": "env", "timeout_s": self.timeout_s}


class LeanTorchTrainer(DataParallelTrainer):
    """A data-parallel torch trainer (``TorchProcessGroupConfig``, gloo unless given) whose trial actor and
    controller never import torch, without Ray Data's dataset-manager actor when no Ray datasets are passed,
    plus the callbacks ``extra_callbacks()`` returns."""

    def __init__(self, train_loop_per_worker, *, torch_config: TorchProcessGroupConfig | None = None, **kwargs):
        super().__init__(train_loop_per_worker, backend_config=torch_config or TorchProcessGroupConfig(), **kwargs)

    def extra_callbacks(self) -> list:
        return []

    def _create_default_callbacks(self):
        callbacks = [_slower_cleaner(callback) for callback in super()._create_default_callbacks()]
        if not self.datasets:
            callbacks = [callback for callback in callbacks if type(callback).__name__ != DATASETS_CALLBACK]
        return callbacks + self.extra_callbacks()


def _slower_cleaner(callback):
    """Ray's placement-group cleaner callback polling every ``PG_CLEANER_INTERVAL_S``; any other unchanged."""
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    if type(callback) is not PlacementGroupCleanerCallback:
        return callback
    return PlacementGroupCleanerCallback(check_interval_s=PG_CLEANER_INTERVAL_S)


def trainer_callbacks(trainer: DataParallelTrainer) -> list:
    """The callbacks a trainer's run will use (Ray's defaults and ours)."""
    return trainer._create_default_callbacks()


def dashboard_address() -> str | None:
    """host:port of the dashboard the connected cluster's head registered, or None where it runs none."""
    from ray.experimental.internal_kv import _internal_kv_get

    address = _internal_kv_get("dashboard", namespace="dashboard")
    return address.decode() if address else None


def trial_runs(callback: MLflowLoggerCallback) -> dict:
    """Tune trial -> MLflow run id, as the callback keeps it."""
    return callback._trial_runs


def optuna_trial(searcher: OptunaSearch, trial_id: str):
    """The Optuna trial behind a Tune trial id, or None."""
    return searcher._ot_trials.get(trial_id)


def optuna_study(searcher: OptunaSearch):
    return searcher._ot_study


def forget_optuna_trial(searcher: OptunaSearch, trial_id: str) -> None:
    """Drop the Optuna trial of Tune trial ``trial_id``: the searcher's next ``suggest`` for it asks anew."""
    searcher._ot_trials.pop(trial_id, None)


def told_trials(searcher: OptunaSearch) -> set:
    """Tune trial ids whose outcome the searcher already told Optuna."""
    return searcher._completed_trials


def hand_over_last_report(poll_s: float = 0.05, settle_s: float = 0.5) -> None:
    """Call in a Tune trial function after ``TorchTrainer.fit()`` returned: waits until the trial's main thread
    has taken the Train run's last report (``TuneReportCallback`` puts each into a one-item queue that the main
    thread empties only when Tune asks for the next result), or Tune stopped the trial.

    Why: when the function returns, Tune's function runner puts a final "done" result into the session's
    one-item result queue. If the run's last report is still waiting in the inter-actor queue at that moment
    (the driver was slow to ask: a busy Tune loop, a slow MLflow server, a loaded machine), the main thread
    takes it next and blocks forever putting it into the full result queue it alone empties: the trial hangs
    and so does the sweep (Ray 2.60; ``tests/test_trial.py`` reproduces it). ``settle_s``: the main thread's
    few instructions between taking the report and handing it on."""
    from ray.train._internal.session import get_session

    session = get_session()
    queue = getattr(session, "_inter_actor_queue", None) if session is not None else None
    if queue is None:
        return
    try:
        while not session.stop_event.is_set() and not queue.empty():
            time.sleep(poll_s)
    except Exception:  # the queue's actor is gone (the trial is being torn down): nothing left to hand over
        return
    time.sleep(settle_s)
