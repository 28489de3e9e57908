"""``talsearch refit SWEEP --top K --seeds S``: the K best configurations of a finished sweep trained again with S
other seeds, as more trials of the same sweep.

Seed ensembles are the cheapest diversity there is (the same model, other initialisation, data order and
augmentation draws). Each refit trial is a trial like the sweep's own: a multi-worker Ray Train job on the same
Ray cluster, a child run of the sweep's MLflow parent run, a run folder under ``SWEEP/trials/`` (so its
predictions join the ensemble's candidates). Its state: ``SWEEP/refit.json`` (which trials were refit, with
which seeds, and each refit trial's outcome) and Ray Tune's ``SWEEP/ray/refit`` (``--resume`` finishes an
interrupted refit, as for a sweep).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from pathlib import Path

from tal_core.config import ConfigError, from_dict
from tal_core.data.annotations import load_dataset
from tal_core.io import write_json_atomic
from tal_core.reporting.tracking import end_unfinished_runs, finish_children
from tal_core.run_folder import RunFolder

logger = logging.getLogger("talsearch.sweep")
TUNE_NAME = "refit"
REFIT_OF = "refit_of"  # the sampled key naming the trial whose configuration a refit trial trains


def top_trials(sweep_dir: Path, top: int) -> list[str]:
    """The ``top`` best of the sweep's own trials (refit trials excluded) by best-epoch val mAP."""
    state = json.loads((sweep_dir / "sweep.json").read_text())
    scored = []
    for trial_id in state.get("trials", {}):
        metrics = RunFolder(sweep_dir / "trials" / trial_id).read_metrics()
        if metrics is not None and RunFolder(sweep_dir / "trials" / trial_id).config_file.is_file():
            scored.append((-float(metrics["val_mAP"]), trial_id))
    if not scored:
        raise ConfigError(f"{sweep_dir}: no finished trial with metrics and a config to refit")
    return [trial_id for _, trial_id in sorted(scored)[:top]]


def refit_seeds(configs: dict[str, dict], count: int) -> list[int]:
    """``count`` seeds that none of the refit trials trained with: the next ones after the largest."""
    largest = max(int(config["train"]["seed"]) for config in configs.values())
    return [largest + 1 + i for i in range(count)]


def read_state(sweep_dir: Path) -> dict:
    path = sweep_dir / "sweep.json"
    if not path.is_file():
        raise ConfigError(f"{sweep_dir} holds no sweep (no sweep.json); refit a finished sweep folder")
    state = json.loads(path.read_text())
    if "finished" not in state:
        raise ConfigError(f"{sweep_dir}: the sweep has not finished; finish it with talsearch sweep --resume first")
    return state


def run_refit(sweep: str | Path, top: int, seeds: int, resume: bool = False, address: str | None = None) -> Path:
    from .sweep import _init_ray, _shutdown_ray, terminated_as_interrupt

    if top < 1 or seeds < 1:
        raise ConfigError(f"refit needs --top >= 1 and --seeds >= 1, got --top {top} --seeds {seeds}")
    sweep_dir = Path(sweep).resolve()
    state = read_state(sweep_dir)
    refit_path = sweep_dir / "refit.json"
    if refit_path.exists() and not resume:
        raise ConfigError(f"{sweep_dir} already holds a refit ({refit_path}); pass --resume to finish it")
    if resume and not refit_path.exists():
        raise ConfigError(f"{sweep_dir} holds no refit to resume (no refit.json)")
    refit = json.loads(refit_path.read_text()) if resume else _plan(sweep_dir, top, seeds)
    write_json_atomic(refit_path, refit)
    dataset = load_dataset(state["data"])
    local_cluster = _init_ray(address)
    try:
        with terminated_as_interrupt(), contextlib.redirect_stdout(sys.stderr):  # Tune's tables are logs
            results = _run_tuner(sweep_dir, state, refit, resume, local_cluster)
    except BaseException as error:
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        ended = end_unfinished_runs(state["tracking_uri"], state["parent_run_id"], status)
        logger.info(f"[refit] refit {status.lower()}: {ended} unfinished trial run(s) marked {status}; finish it with --resume")
        raise
    finally:
        if local_cluster:
            _shutdown_ray()
    from . import trial_storage
    from .sweep import trial_id_of, trial_outcomes

    root = storage_root(state)
    if root is not None:
        trial_storage.pull_trials(root, [trial_id_of(r) for r in results], sweep_dir)
    outcomes = trial_outcomes(results, max(int(c["train"]["epochs"]) for c in refit["configs"].values()),
                              sweep_dir)
    for result in results:
        config = result.config or {}
        trial_id = (result.metrics or {}).get("trial_id")
        if trial_id in outcomes and config.get(REFIT_OF) in refit["configs"]:
            budget = int(refit["configs"][config[REFIT_OF]]["train"]["epochs"])
            outcome = outcomes[trial_id]
            if outcome["status"] != "FAILED":
                outcome["status"] = "FINISHED" if outcome["epochs"] >= budget else "STOPPED_EARLY"
            outcome.update(budget=budget, refit_of=config[REFIT_OF], seed=config.get("train.seed"))
    refit["trials"], refit["finished"] = outcomes, time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json_atomic(refit_path, refit)
    finish_children(state["tracking_uri"], state["parent_run_id"], outcomes, sweep_dir, dataset)
    logger.info(f"[refit] {len(outcomes)} refit trial(s) in {sweep_dir / 'trials'}")
    return sweep_dir


def storage_root(state: dict) -> str | None:
    """Where the sweep's trials persisted (``--storage`` recorded in sweep.json), or None (the sweep folder)."""
    from . import trial_storage

    return trial_storage.join(state["storage"], state["study_name"]) if state.get("storage") else None


def _plan(sweep_dir: Path, top: int, seeds: int) -> dict:
    chosen = top_trials(sweep_dir, top)
    configs = {trial_id: RunFolder(sweep_dir / "trials" / trial_id).read_config() for trial_id in chosen}
    for trial_id, config in configs.items():
        from_dict(config, f" in {sweep_dir / 'trials' / trial_id / 'config.yaml'}")  # still a valid config
    return {"top": top, "seeds": refit_seeds(configs, seeds), "from": chosen, "configs": configs,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _run_tuner(sweep_dir: Path, state: dict, refit: dict, resume: bool, local_cluster: bool):
    import ray
    from ray import tune

    from tal_core.data.video import FrameCache

    from . import trial_storage
    from .sweep import concurrency_for
    from .trial import trial_fn
    from .trial_runs import TrialRunsCallback

    first = from_dict(next(iter(refit["configs"].values())))
    root = storage_root(state)
    storage_path = root or str(sweep_dir / "ray")
    cache = FrameCache(decode_timeout_s=first.data.decode_timeout_s, decoder=first.data.decoder)
    ctx = {"base": first.model_dump(mode="json"), "configs": refit["configs"], "data": state["data"],
           "sweep_dir": str(sweep_dir), "storage_path": storage_path, "storage_root": root,
           "study_name": state["study_name"],
           "cache_dir": str(cache.cache_dir) if local_cluster else None,  # on a cluster: each node's own
           "local_cluster": local_cluster}
    trainable = tune.with_resources(tune.with_parameters(trial_fn, ctx=ctx), {"CPU": 0, "memory": 64 * 1024**2})
    experiment_path = f"{storage_path}/{TUNE_NAME}"
    if resume and tune.Tuner.can_restore(experiment_path):
        logger.info(f"[refit] resuming {experiment_path}")
        return tune.Tuner.restore(experiment_path, trainable=trainable, resume_unfinished=True,
                                  resume_errored=True).fit()
    runs = len(refit["from"]) * len(refit["seeds"])
    limit = concurrency_for(first, runs, ray.cluster_resources())
    logger.info(f"[refit] {runs} refit trial(s): {refit['from']} x seeds {refit['seeds']}, {limit} at a time")
    tuner = tune.Tuner(
        trainable,
        param_space={REFIT_OF: tune.grid_search(refit["from"]), "train.seed": tune.grid_search(refit["seeds"])},
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=limit, metric=first.search.metric,
                                    mode="max"),
        run_config=tune.RunConfig(
            name=TUNE_NAME, storage_path=storage_path, verbose=1,
            failure_config=tune.FailureConfig(max_failures=first.search.max_failures),
            callbacks=[TrialRunsCallback(state["tracking_uri"], experiment_name=state["experiment"],
                                         tags={"mlflow.parentRunId": state["parent_run_id"]},
                                         searched=[REFIT_OF, "train.seed"]),
                       *trial_storage.pull_callbacks(root, sweep_dir)]),
    )
    return tuner.fit()
