"""``talsearch sweep``: Optuna proposes, Ray Tune schedules (ASHA), Ray Train trains, MLflow records.

Sweep folder layout (``--out SWEEP``):
  sweep.json          study name, MLflow parent run id, status per trial (written by the driver)
  optuna.db           the Optuna study (RDB storage; search.storage may put it on a database server instead:
                      sweep.json's study_storage names where, without a password)
  trials/<trial_id>/  each trial's run folder (predictions/, detections/, metrics.json, ...)
  ray/                Ray Tune/Train storage (checkpoints, experiment state for --resume)
  leaderboard.csv     the trials table
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
import uuid
from pathlib import Path

from tal_core.config import ConfigError
from tal_core.data.annotations import DatasetSpec, load_dataset
from tal_core.data.video import FrameCache
from tal_core.errors import UserError
from tal_core.io import clean_temporaries, write_json_atomic, write_text_atomic
from tal_core.reporting.tracking import (
    check_reachable,
    end_unfinished_runs,
    finish_children,
    finish_parent,
    redact_uri,
    resolve_uri,
    save_trials_view,
    start_parent_run,
)
from tal_core.run_folder import RunFolder

from . import trial_storage
from .node_cache import CacheJob, build_on_every_node
from .space import SweepSpec, load_sweep, require_space, space_entry
from .strategy import describe, make_sampler, make_scheduler, replaces_with_nearest


def tag_warm_start(uri: str, parent_id: str, summary: dict) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    client.set_tag(parent_id, "talsearch.warm_start.from", summary["from"])
    client.log_param(parent_id, "warm_start.added", summary["added"])
    client.log_param(parent_id, "warm_start.skipped", summary["skipped"])

TUNE_NAME = "tune"


logger = logging.getLogger("talsearch.sweep")


def _values(spec: SweepSpec, key: str) -> list:
    for param in spec.params:
        if param.key == key:
            return list(param.values) if param.kind == "categorical" else []
    return [spec.base.flat()[key]]


def check_views(spec: SweepSpec, dataset: DatasetSpec) -> None:
    for view in _values(spec, "data.view"):
        lacking = [v.video_id for v in dataset.videos.values() if view not in v.views]
        if lacking:
            raise ConfigError(f"data.view: view '{view}' is missing for videos {lacking[:5]}")


def cache_jobs(spec: SweepSpec, dataset: DatasetSpec) -> list[CacheJob]:
    """Every (video, view, fps, size, format) frame-cache entry the sweep's trials can ask for."""
    return [CacheJob(str(dataset.video_path(video, view)), float(fps), int(size), float(video.duration),
                     dataset.decode_end(video, view), str(fmt))
            for view in _values(spec, "data.view") for fps in _values(spec, "data.decode_fps")
            for size in _values(spec, "data.image_size") for fmt in _values(spec, "data.cache_format")
            for video in dataset.videos.values() if view in video.views]


def warm_cache(spec: SweepSpec, dataset: DatasetSpec, cache: FrameCache) -> None:
    """Decode every video once for each (view, fps, size) the sweep can ask for, before trials start
    (one video per CPU at a time)."""
    jobs = sorted({job.entry() for job in cache_jobs(spec, dataset)}, key=str)
    skip = spec.base.data.on_bad_video == "skip"

    def skipped(job, error):
        logger.info(f"[sweep] skipping {job[0]} (data.on_bad_video=skip): {error}")

    started = time.perf_counter()
    cache.ensure_many(jobs, on_error=skipped if skip else None)
    logger.info(f"[sweep] frame cache ready: {len(jobs)} (video, view, fps, size) entries in "
                f"{time.perf_counter() - started:.1f}s: {cache.cache_dir}")


def build_caches(spec: SweepSpec, dataset: DatasetSpec, cache: FrameCache, local_cluster: bool) -> str | None:
    """The frame cache trials read: this machine's (a local cluster), or each node's own, built on every node
    in a pinned task before any trial starts (``search.node_cache``; trials then get None: their node's own)."""
    if local_cluster:
        warm_cache(spec, dataset, cache)
        return str(cache.cache_dir)
    build_on_every_node(cache_jobs(spec, dataset), spec.base.data.decode_timeout_s, spec.base.data.decoder,
                        spec.base.data.on_bad_video == "skip")
    return None


def max_epochs(spec: SweepSpec) -> int:
    for param in spec.params:
        if param.key == "train.epochs":
            return int(max(param.corner_values()))
    return spec.base.train.epochs


def concurrency(spec: SweepSpec, cluster: dict[str, float]) -> int:
    """Trials at once: as many as the cluster's CPUs (and GPUs, with use_gpu) hold, capped by max_concurrent
    and num_samples."""
    return concurrency_for(spec.base, spec.base.search.num_samples, cluster)


def concurrency_for(cfg, trials: int, cluster: dict[str, float]) -> int:
    """``concurrency`` for ``trials`` trials of config ``cfg``."""
    search = cfg.search
    fits = int(cluster.get("CPU", 1) // (search.trial_workers * search.cpus_per_worker))
    if search.use_gpu:
        fits = min(fits, int(cluster.get("GPU", 0) / (search.trial_workers * search.gpus_per_worker) + 1e-9))
    fits = max(1, fits)
    wanted = search.max_concurrent or fits
    return max(1, min(wanted, fits, trials))


def _searcher(spec: SweepSpec, sweep_dir: Path, study_name: str, epochs: int):
    from .searcher import BudgetAwareOptunaSearch
    from .study_storage import open_storage, sweep_url

    storage = open_storage(sweep_url(sweep_dir))
    sampler = make_sampler(spec.base.search, spec.params)
    return BudgetAwareOptunaSearch(space=spec.optuna_space(), metric=spec.base.search.metric, mode="max",
                                   sampler=sampler, storage=storage, study_name=study_name,
                                   full_budget=spec.base.train.epochs, params=spec.params,
                                   avoid_repeats=spec.base.search.avoid_repeats, seed=spec.base.search.seed,
                                   nearest_replacement=replaces_with_nearest(spec.base.search))


@contextlib.contextmanager
def terminated_as_interrupt():
    """SIGTERM ends the sweep as Ctrl-C does (a KeyboardInterrupt in the main thread), so that its runs are
    marked and its Ray cluster stopped; Tune's own SIGINT handler is off for the same reason."""
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _shutdown_ray() -> None:
    import ray

    with contextlib.suppress(Exception):
        ray.shutdown()


def _local_dashboard() -> dict:
    """Dashboard settings of a local cluster, on loopback at a port chosen here and named to every process of
    the cluster (``RAY_API_SERVER_ADDRESS``, inherited by the raylet and its workers). Ray Train's placement
    group cleaner finds the cluster through it; without it, Ray's state API trusts ``ray_current_cluster``, which
    a `ray start` anywhere on the machine leaves behind, and when that names a dead cluster the cleaner's thread
    dies: a trial that ASHA stops then keeps its workers' placement group, and the next trial waits forever."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
    return {"dashboard_host": "127.0.0.1", "dashboard_port": port}


def _init_ray(address: str | None) -> bool:
    """Connects to (or starts) Ray; True when this process started a local cluster. Its dashboard listens on
    127.0.0.1; its other servers listen on loopback only when the command runs in a private network namespace
    (search.private_network; passing 127.0.0.1 as the node address does not change where Ray 2.60 listens)."""
    import ray

    from .private_network import inside

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    local = _local_dashboard() if address is None else {}
    # No runtime_env: the workers Ray prestarts for this job can then host the trial actors at once. "local"
    # starts a cluster of our own even where a `ray start` cluster runs on this machine (None would join it).
    context = ray.init(address=address or "local", log_to_driver=False, configure_logging=False, **local)
    url = getattr(context, "dashboard_url", None)
    logger.info(f"[sweep] Ray {'cluster ' + address if address else 'local'}: {ray.cluster_resources().get('CPU', 0):.0f} CPUs"
        + (f"; dashboard http://{url}" if url else "")
        + ("; in a private network namespace (loopback only)" if inside() else
           "; listening on all interfaces (no private network namespace: see search.private_network)"
           if address is None else ""))
    return address is None


def run_sweep(data: str | Path, config: str | Path | None, out: str | Path, overrides=(), resume: bool = False,
              address: str | None = None, storage: str | None = None, warm_start: str | Path | None = None,
              check_only: bool = False) -> Path:
    """Runs (or with ``resume`` finishes) a sweep into ``out``; returns the sweep folder.

    ``storage``: Ray storage URI that trials persist through (the sweep folder may then be node-local);
    ``warm_start``: an earlier sweep folder whose fitting trials seed this sweep's study; ``check_only``: run the
    pre-flight checks (every node sees what trials use; MLflow is reachable) and return.
    Raises ``SweepFailed`` when no trial finished (after the sweep's files are written)."""
    spec = load_sweep(config, overrides)
    require_space(spec, config)
    dataset = load_dataset(data)
    check_views(spec, dataset)
    sweep_dir = Path(out).resolve()
    warm = _load_warm_start(warm_start, resume, spec)
    previous = _previous_state(sweep_dir, resume)
    from .study_storage import check_sweep_storage

    check_sweep_storage(sweep_dir, spec.base.search.storage, previous)  # the study's database answers
    storage = _storage_for(storage, previous)
    uri = resolve_uri(spec.base.tracking.uri)
    experiment_id = check_reachable(uri, spec.base.tracking.experiment)
    cache = FrameCache(decode_timeout_s=spec.base.data.decode_timeout_s, decoder=spec.base.data.decoder)
    created = not sweep_dir.exists()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    study_name = previous["study_name"] if previous else f"{sweep_dir.name}-{uuid.uuid4().hex[:8]}"
    storage_root = trial_storage.join(storage, study_name) if storage else None
    local_cluster = _init_ray(address)
    try:
        try:
            _preflight(spec, dataset, data, sweep_dir, storage_root, always=check_only or not local_cluster)
        except BaseException:
            if created and not any(sweep_dir.iterdir()):
                sweep_dir.rmdir()
            raise
        if check_only:
            return sweep_dir
        if (sweep_dir / "trials").is_dir():
            clean_temporaries(sweep_dir / "trials")  # left by trials of a killed driver
        cache_dir = build_caches(spec, dataset, cache, local_cluster)
        state = previous or _new_state(spec, data, sweep_dir, study_name, uri, experiment_id, storage, warm)
        logger.info(f"[sweep] MLflow {redact_uri(uri)} experiment '{spec.base.tracking.experiment}' parent run "
                    f"{state['parent_run_id']}"
                    + (f"; its trials in the UI: {state['mlflow_view']}" if state.get("mlflow_view") else ""))
        results = _run_trials(spec, sweep_dir, state, storage_root, resume, cache_dir, local_cluster)
    finally:
        if local_cluster:
            _shutdown_ray()
    _finish_sweep(spec, sweep_dir, state, results, storage_root, dataset, uri)
    return sweep_dir


def _load_warm_start(warm_start, resume: bool, spec: SweepSpec):
    if warm_start is None:
        return None
    if resume:
        raise ConfigError("--warm-start starts a new sweep; a resumed sweep already holds its warm trials")
    from .warm_start import load_warm_start

    return load_warm_start(warm_start, spec)


def _previous_state(sweep_dir: Path, resume: bool) -> dict | None:
    """The sweep.json of the sweep to resume (None for a new sweep); refuses to overwrite a sweep."""
    state_path = sweep_dir / "sweep.json"
    if state_path.exists() and not resume:
        raise ConfigError(f"{sweep_dir} already holds a sweep; pass --resume to finish it or choose another --out")
    if resume and not state_path.exists():
        raise ConfigError(f"{sweep_dir} holds no sweep to resume (no sweep.json)")
    return json.loads(state_path.read_text()) if resume else None


def _storage_for(storage: str | None, previous: dict | None) -> str | None:
    """The storage URI of this sweep: the one given, or for a resumed sweep the one it recorded."""
    recorded = (previous or {}).get("storage")
    if storage is None:
        return recorded
    storage = trial_storage.check_uri(storage)
    if previous is not None and recorded != storage:
        raise ConfigError(f"--storage {storage}: the sweep being resumed ran with "
                          f"{'--storage ' + recorded if recorded else 'no --storage'}; resume it with the same")
    return storage


def _preflight(spec: SweepSpec, dataset: DatasetSpec, data, sweep_dir: Path, storage_root: str | None,
               always: bool) -> None:
    """The cluster's state API answers and every live node sees the folders trials use (``search.preflight``).
    A local cluster this process started (its dashboard ours) is one node on this machine's disks: checked only
    when asked (``--check``)."""
    if not always:
        return
    from . import preflight

    videos = [dataset.video_path(video, view) for view in _values(spec, "data.view")
              for video in dataset.videos.values() if view in video.views]
    preflight.check_state_api()
    checks = preflight.prepare(None if storage_root else sweep_dir, storage_root, Path(data), videos)
    try:
        preflight.check_nodes(checks)
    finally:
        preflight.cleanup(checks)


def _new_state(spec: SweepSpec, data, sweep_dir: Path, study_name: str, uri: str, experiment_id: str,
               storage: str | None, warm) -> dict:
    """sweep.json of a new sweep, with its MLflow parent run (and the warm-start trials seeded), written."""
    from .study_storage import new_sweep_url, open_storage

    state = {"study_name": study_name, "tracking_uri": uri,
             "experiment": spec.base.tracking.experiment, "data": str(Path(data).resolve()),
             "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "searched": [p.key for p in spec.params],
             "space": {p.key: space_entry(p) for p in spec.params}, "trials": {},
             "study_storage": new_sweep_url(spec.base.search.storage, sweep_dir)}  # without a password
    if storage:
        state["storage"] = storage
    state["parent_run_id"] = start_parent_run(uri, experiment_id, sweep_dir.name, spec.base.flat(),
                                              {p.key: p.__dict__ for p in spec.params})
    state["mlflow_view"] = save_trials_view(uri, experiment_id, state["parent_run_id"], sweep_dir.name,
                                            state["searched"])
    if warm is not None:
        from .warm_start import seed_study

        seed_study(open_storage(state["study_storage"]), state["study_name"], warm)
        state["warm_start"] = warm.summary()
        tag_warm_start(uri, state["parent_run_id"], warm.summary())
    write_json_atomic(sweep_dir / "sweep.json", state)
    return state


def _run_trials(spec: SweepSpec, sweep_dir: Path, state: dict, storage_root: str | None, resume: bool,
                cache_dir: str, local_cluster: bool):
    """Tune's results; an interrupted or failed sweep marks its MLflow runs before the error goes on."""
    try:
        with terminated_as_interrupt(), contextlib.redirect_stdout(sys.stderr):  # Tune's tables are logs
            return _run_tuner(spec, sweep_dir, state, storage_root, resume, cache_dir, local_cluster)
    except BaseException as error:
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        ended = end_unfinished_runs(state["tracking_uri"], state["parent_run_id"], status)
        logger.info(f"[sweep] sweep {status.lower()}: MLflow parent run and {ended} unfinished trial run(s) "
                    f"marked {status}; finish it with --resume")
        raise


def _finish_sweep(spec: SweepSpec, sweep_dir: Path, state: dict, results, storage_root: str | None,
                  dataset: DatasetSpec, uri: str) -> None:
    """Pulls the trials' outputs (with storage), records every trial's outcome, writes the leaderboard and
    plots, closes the MLflow runs, and says how many trials finished, stopped and failed."""
    trial_ids = [trial_id_of(r) for r in results]
    if storage_root is not None:
        trial_storage.pull_trials(storage_root, trial_ids, sweep_dir)
    trial_storage.prune_checkpoints(storage_root or str(sweep_dir / "ray"), trial_ids)
    state["trials"] = trial_outcomes(results, spec.base.train.epochs, sweep_dir)
    state["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json_atomic(sweep_dir / "sweep.json", state)

    from .leaderboard import leaderboard

    table = leaderboard(sweep_dir)
    write_text_atomic(sweep_dir / "leaderboard.csv", table.to_csv(index=False))
    _sweep_plots(sweep_dir, state["study_name"])
    finish_children(uri, state["parent_run_id"], state["trials"], sweep_dir, dataset)
    finish_parent(uri, state["parent_run_id"], _summary(table), sweep_dir)
    report_outcomes(state["trials"], table)


class SweepFailed(UserError):
    """No trial of a sweep finished; the message counts the outcomes and names the failed trials."""

    exit_code = 1


def outcome_counts(trials: dict[str, dict]) -> dict[str, int]:
    counts = {"FINISHED": 0, "STOPPED_EARLY": 0, "FAILED": 0}
    for outcome in trials.values():
        counts[outcome["status"]] = counts.get(outcome["status"], 0) + 1
    return counts


def report_outcomes(trials: dict[str, dict], table) -> None:
    """One summary line (finished / stopped early / failed, the best val mAP), one line per failed trial with
    its first error line; raises ``SweepFailed`` when no trial finished."""
    counts = outcome_counts(trials)
    best = table["val_mAP"].max() if len(table) and "val_mAP" in table else float("nan")
    summary = (f"{len(trials)} trial(s): {counts['FINISHED']} finished, {counts['STOPPED_EARLY']} stopped early, "
               f"{counts['FAILED']} failed; best val_mAP {best:.4f}")
    logger.info(f"[sweep] {summary}")
    failed = [(trial_id, first_error_line(o.get("error"))) for trial_id, o in sorted(trials.items())
              if o["status"] == "FAILED"]
    for trial_id, line in failed:
        logger.warning(f"[sweep] trial {trial_id} failed: {line}")
    if counts["FINISHED"] == 0:
        named = "; ".join(f"{trial_id}: {line}" for trial_id, line in failed[:3])
        raise SweepFailed(f"sweep: no trial finished ({summary})" + (f"; {named}" if named else ""))


def first_error_line(error: str | None) -> str:
    """The line of an error text that says what went wrong (Ray wraps the root cause in frames and banners)."""
    if not error:
        return "no error recorded"
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    for line in reversed(lines):  # the root cause comes last
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Failed|Missing|Interrupt)\b", line):
            return line[:300]
    return lines[-1][:300] if lines else "no error recorded"


def _run_tuner(spec: SweepSpec, sweep_dir: Path, state: dict, storage_root: str | None, resume: bool,
               cache_dir: str, local_cluster: bool):
    import ray
    from ray import tune

    from .trial import trial_fn
    from .trial_runs import TrialRunsCallback

    storage_path = storage_root or str(sweep_dir / "ray")
    ctx = {"base": spec.base.model_dump(mode="json"), "data": state["data"], "sweep_dir": str(sweep_dir),
           "storage_path": storage_path, "storage_root": storage_root, "study_name": state["study_name"],
           "cache_dir": cache_dir, "local_cluster": local_cluster}
    trainable = tune.with_resources(tune.with_parameters(trial_fn, ctx=ctx), {"CPU": 0, "memory": 64 * 1024**2})
    experiment_path = f"{storage_path.rstrip('/')}/{TUNE_NAME}"
    if resume and tune.Tuner.can_restore(experiment_path):
        logger.info(f"[sweep] resuming {experiment_path}")
        _no_tensorboard_logger()  # the restored run config holds the file writers
        tuner = tune.Tuner.restore(experiment_path, trainable=trainable, resume_unfinished=True,
                                   resume_errored=True)
        return tuner.fit()
    epochs = max_epochs(spec)
    limit = concurrency(spec, ray.cluster_resources())
    state["concurrency"] = limit  # talsearch replay's default
    from ray.tune.search import ConcurrencyLimiter

    searcher = ConcurrencyLimiter(_searcher(spec, sweep_dir, state["study_name"], epochs), max_concurrent=limit)
    logger.info(f"[sweep] {spec.base.search.num_samples} trials, {limit} at a time, {spec.base.search.trial_workers} "
        f"Ray Train workers each, search {describe(spec.base.search)}")
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=make_scheduler(spec.base.search, epochs),
                                    num_samples=spec.base.search.num_samples, metric=spec.base.search.metric,
                                    mode="max"),  # no reuse_actors: an ASHA-stopped trial's Train run only
                                                  # ends when its trial actor is killed
        run_config=tune.RunConfig(
            name=TUNE_NAME, storage_path=storage_path, verbose=1,
            failure_config=tune.FailureConfig(max_failures=spec.base.search.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # resume needs the last one only
            callbacks=[TrialRunsCallback(state["tracking_uri"], experiment_name=state["experiment"],
                                         tags={"mlflow.parentRunId": state["parent_run_id"]},
                                         searched=[p.key for p in spec.params]),
                       *trial_storage.pull_callbacks(storage_root, sweep_dir), *_tune_file_loggers()]),
    )
    return tuner.fit()


def _tune_file_loggers() -> list:
    """Tune's per-trial ``result.json`` and ``progress.csv`` writers, passed explicitly (``_no_tensorboard_logger``)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    _no_tensorboard_logger()
    return [CSVLoggerCallback(), JsonLoggerCallback()]


def _no_tensorboard_logger() -> None:
    """Tune adds its file writers (JSON, CSV, TensorBoard) unless ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``; the
    TensorBoard one's tensorboardX imports torch into the sweep's driver (~2 CPU-seconds and ~300 MB per sweep)
    for curves that MLflow already holds. Set the variable to 0 to have the TensorBoard files back."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


def trial_outcomes(results, base_epochs: int, sweep_dir: Path) -> dict[str, dict]:
    """Per trial: status against its own budget (its sampled ``train.epochs``, else the base config's), epochs
    reached, and its best epoch's val mAP (the figure its predictions, the leaderboard and MLflow's best_* hold)."""
    outcomes = {}
    for result in results:
        metrics = result.metrics or {}
        trial_id = trial_id_of(result)
        # the epoch the trial reached (Tune's training_iteration restarts its count when Train restarts workers)
        done = int(metrics.get("epoch", metrics.get("training_iteration", 0)))
        budget = int((result.config or {}).get("train.epochs", base_epochs))
        if result.error is not None:
            status = "FAILED"
        elif done < budget:
            status = "STOPPED_EARLY"
        else:
            status = "FINISHED"
        best = RunFolder(sweep_dir / "trials" / trial_id).read_metrics() or {}
        error = _error_tail(result.error)
        if status != "FAILED" and "val_mAP" not in best:  # trained, yet its outputs never reached this folder
            status, error = "FAILED", (f"OutputsMissing: Ray reports the trial {status.lower()}, but "
                                       f"{sweep_dir / 'trials' / trial_id} holds no metrics.json (a node that "
                                       f"does not share the sweep folder? give the sweep a --storage URI)")
        outcomes[trial_id] = {"trial_id": trial_id, "status": status, "epochs": done, "budget": budget,
                              "error": error,
                              "val_mAP": best.get("val_mAP"), "best_epoch": best.get("best_epoch"),
                              "last_val_mAP": metrics.get("val_mAP"), "time_total_s": metrics.get("time_total_s"),
                              "worker_start_s": metrics.get("worker_start_s"),
                              "first_step_s": metrics.get("first_step_s")}
    return outcomes


def trial_id_of(result) -> str:
    """A Tune result's trial id (from its metrics, else its folder name ``<name>_<trial id>_<n>_...``)."""
    return (result.metrics or {}).get("trial_id") or Path(result.path).name.split("_")[-2]


def _sweep_plots(sweep_dir: Path, study_name: str) -> None:
    from tal_core.reporting.plots import optuna_plots

    from .study_storage import load_study, sweep_url

    (sweep_dir / "plots").mkdir(exist_ok=True)
    study = load_study(sweep_url(sweep_dir), study_name)
    optuna_plots(study, sweep_dir / "plots")


def _error_tail(error) -> str | None:
    """The end of a trial's error (where the root cause is), without Ray's ANSI colours."""
    if error is None:
        return None
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    return text[-800:]


def _summary(table) -> dict:
    if not len(table) or "val_mAP" not in table:
        return {"trials": len(table)}
    best = table.sort_values("val_mAP", ascending=False).iloc[0]
    return {"trials": len(table), "best_val_mAP": float(best["val_mAP"]), "best_trial": best["trial_id"]}
