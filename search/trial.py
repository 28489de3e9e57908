"""One Tune trial = one Ray Train (DDP) run of ``tal_core.training.trainer.fit``.

The Tune function builds a ``TorchTrainer`` named after the trial id (so a
restarted trial resumes from its last checkpoint) and calls ``fit()``; every
worker trains its shard and calls ``ray.train.report`` once per epoch with the
same, gathered val metrics; rank 0 attaches the resume checkpoint.
``TuneReportCallback`` forwards rank 0's metrics to Tune (ASHA, Optuna, MLflow).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import ray.train
import ray.tune
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.tune.integration.ray_train import TuneReportCallback

from tal_core.config import from_dict, unflatten
from tal_core.io import write_json_atomic
from tal_core.run_folder import RunFolder, RunFolderError

from . import trial_storage
from .ray_compat import (
    LeanTorchTrainer,
    TorchProcessGroupConfig,
    hand_over_last_report,
    worker_start_callback,
)
from .reported import SEARCHABLE_METRICS, mlflow_name

# Ray Train environment knobs a trial sets for its controller and workers (Ray propagates them), unless the
# user has set them: how often the controller polls its workers (Ray's default, 2 s, adds up to 2 s at every
# stage change of every trial), and the spot-preemption watcher (one more actor process per trial; off for
# local clusters, Ray's default on clusters).
POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
PREEMPTION_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"

logger = logging.getLogger("talsearch.trial")

REPORTED = ("epoch", "epoch_seconds", *SEARCHABLE_METRICS)


def worker_loop(loop_config: dict) -> None:
    """Runs on every Ray Train worker (torch.distributed is already set up): sets the worker up, trains with
    ``fit`` (an ``EpochReporter`` reports every epoch) and records where the trial's time went."""
    if _warming is not None:  # let the warm-up finish first: two threads importing one package tree at once
        _warming.join()  # can deadlock on its circular imports (Python then raises in one of them)
    from tal_core.data.annotations import load_dataset
    from tal_core.logs import configure_logging
    from tal_core.training.trainer import RunCallbacks, fit

    from .rank_cache import RankFrameCache

    # a worker process is an entry point of its own: its progress lines go to its stderr (Ray's worker log)
    configure_logging()
    started = loop_config["trial_started"]
    timing = {"worker_start_s": time.time() - started, "first_step_s": None}
    cfg = from_dict(unflatten(loop_config["config"]))
    world_rank = ray.train.get_context().get_world_rank()
    run_dir = trial_run_dir(loop_config)
    uploader = storage_uploader(loop_config, run_dir, world_rank)
    spec = load_dataset(loop_config["data"])
    run_dir.mkdir(parents=True, exist_ok=True)
    worker = {"rank": world_rank, "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
    _write_worker_file(loop_config, run_dir, world_rank, worker)
    resume_from, registered_epoch = _resume_file(run_dir, world_rank)
    cache = RankFrameCache(loop_config.get("cache_dir"), cfg.data.decode_timeout_s, cfg.data.decoder)
    reporter = EpochReporter(cfg, world_rank, run_dir, uploader, timing, registered_epoch)

    def on_first_step():
        timing["first_step_s"] = time.time() - started

    try:
        fit(cfg, spec, run_dir, RunCallbacks(on_epoch=reporter, on_first_step=on_first_step,
                                                   on_resume=reporter.catch_up),
            resume_from=resume_from, cache=cache)
    finally:  # fit read the state before its first epoch: its temporary folder goes, whatever happened since
        if resume_from is not None:
            shutil.rmtree(resume_from.parent, ignore_errors=True)
    # where a trial's time went (seconds from the trial's start), for bench_sweep's breakdown
    timing["loop_end_s"] = time.time() - started
    _write_worker_file(loop_config, run_dir, world_rank, {**worker, **timing})
    if uploader is not None:
        uploader.upload()


class EpochReporter:
    """Where a trial reports: after every epoch, on every rank, the same metrics (with the best epoch's so far
    under best_* names and the trial's timing) go to Ray Train, which forwards rank 0's to Tune (ASHA, Optuna,
    MLflow). Rank 0 also records what Tune heard (for talsearch replay), uploads its run folder when trials
    persist through storage, and attaches ``last.pt`` as the resume checkpoint."""

    def __init__(self, cfg, world_rank: int, run_dir: Path, uploader, timing: dict,
                 registered_epoch: int | None = None):
        self.cfg, self.world_rank, self.uploader, self.timing = cfg, world_rank, uploader, timing
        self.registered_epoch = registered_epoch  # of Ray's last registered report, read at resume (rank 0)
        self.best = _best_so_far(run_dir)  # a resumed trial's best epoch may lie before the interruption
        self.last_report = 0.0

    def __call__(self, epoch: int, metrics: dict, out: Path) -> None:
        self._pace()
        report = self.metrics_of(epoch, metrics)
        if self.world_rank == 0:  # what Tune hears and when: talsearch replay repeats the sweep from it
            metric = self.cfg.search.metric
            RunFolder(out).append_report({"epoch": epoch, "reported_at": time.time(), metric: report.get(metric),
                                          "epoch_seconds": report.get("epoch_seconds")})
        if self.uploader is not None:  # before the report: ASHA may stop the trial at any report
            self.uploader.upload()
        self._send(report, out)

    def catch_up(self, history: list[dict], out: Path) -> list[int]:
        """After a resume: the epochs of the resumed state that Tune never heard (a trial killed between an
        epoch's ``last.pt`` and Ray registering its report resumes after that epoch), reported now, in order.
        Rank 0 works them out (``unheard_epochs``; a failure there reports none, with a warning); every rank
        reports the same epochs (each worker reports as often as the others)."""
        import torch.distributed as dist

        missing: list[int] = []
        if self.world_rank == 0:
            try:
                missing = unheard_epochs(history, self.registered_epoch, RunFolder(out).read_reports())
            except Exception as error:  # a torn record must not stall the other ranks at the broadcast
                logger.warning(f"[trial] cannot tell which resumed epochs Tune heard ({error}); none reported again")
        if dist.is_available() and dist.is_initialized():
            box = [missing]
            dist.broadcast_object_list(box, src=0)
            missing = box[0]
        for metrics in history:
            if metrics["epoch"] in missing:
                self(metrics["epoch"], metrics, out)
        return missing

    def _pace(self) -> None:
        """Reports closer together than the controller's polling can reach Tune's function trainable two at a
        time, and on Ray 2.60 its result queue then blocks the trial forever (seen with sub-second epochs):
        keep at least two polling intervals between reports (no cost for epochs longer than that)."""
        time.sleep(max(0.0, self.last_report + 2 * self.cfg.search.poll_interval_s - time.time()))
        self.last_report = time.time()

    def metrics_of(self, epoch: int, metrics: dict) -> dict[str, float]:
        report = {mlflow_name(k): float(v) for k, v in metrics.items() if k in REPORTED or k.startswith("val_mAP@")}
        if metrics["val_mAP"] > self.best.get("best_val_mAP", -1.0):  # the best epoch so far, under its own names
            self.best.update({f"best_{mlflow_name(k)}": float(v) for k, v in metrics.items() if k.startswith("val_")})
            self.best["best_epoch"] = float(epoch)
        report.update(self.best)
        report.update({k: v for k, v in self.timing.items() if v is not None})
        return report

    def _send(self, report: dict, out: Path) -> None:
        if self.world_rank == 0 and (out / "last.pt").is_file():
            with tempfile.TemporaryDirectory() as tmp:
                shutil.copy2(out / "last.pt", Path(tmp) / "last.pt")
                (Path(tmp) / REPORTED_EPOCH).write_text(json.dumps({"epoch": report.get("epoch")}))
                ray.train.report(report, checkpoint=Checkpoint.from_directory(tmp))
        else:
            ray.train.report(report)


REPORTED_EPOCH = "reported_epoch.json"  # beside last.pt in each report's checkpoint: the epoch that report carried


def unheard_epochs(history: list[dict], registered: int | None, record: list[dict]) -> list[int]:
    """The epochs of a resumed ``history`` that Tune has not heard: those after the epoch of the last report
    Ray registered (its checkpoint's ``REPORTED_EPOCH``; 0: no report was registered), or, for a checkpoint
    that does not say (written before it did), those the run folder's record of reports lacks."""
    if registered is None:
        heard = {report.get("epoch") for report in record}
        return [metrics["epoch"] for metrics in history if metrics["epoch"] not in heard]
    return [metrics["epoch"] for metrics in history if metrics["epoch"] > registered]


def trial_run_dir(loop_config: dict) -> Path:
    """Where this worker's trial writes: the sweep folder's ``trials/<id>``, or with storage a staging folder on
    this worker's own node (``search.trial_storage``)."""
    if loop_config.get("storage_uri") is None:
        return Path(loop_config["run_dir"])
    return trial_storage.staging_dir(loop_config["study_name"], loop_config["trial_id"])


def storage_uploader(loop_config: dict, run_dir: Path, world_rank: int):
    """Rank 0's uploader of the run folder (None without storage, and on other ranks). A trial resumed on
    another node first gets its folder back from storage (its best epoch so far, history, snapshots)."""
    uri = loop_config.get("storage_uri")
    if uri is None or world_rank != 0:
        return None
    if not (run_dir / "metrics.json").is_file():
        trial_storage.download(uri, run_dir)
    return trial_storage.Uploader(run_dir, uri)


def _write_worker_file(loop_config: dict, run_dir: Path, world_rank: int, worker: dict) -> None:
    """``worker_<rank>.json`` (which node and process ran the rank, and its timing), in the run folder and, with
    storage, in storage too (only rank 0 uploads the run folder)."""
    write_json_atomic(run_dir / f"worker_{world_rank}.json", worker)
    uri = loop_config.get("storage_uri")
    if uri is not None and world_rank != 0:
        trial_storage.write_file(trial_storage.join(uri, f"worker_{world_rank}.json"), json.dumps(worker).encode())


def _best_so_far(run_dir: Path) -> dict[str, float]:
    """The best_* figures of the epochs a resumed trial already ran (from its metrics.json), or {}."""
    try:
        saved = RunFolder(run_dir).read_metrics() or {}
    except RunFolderError:  # a torn file from before an interruption: the resumed run rewrites it
        return {}
    best = {f"best_{mlflow_name(k)}": float(v) for k, v in saved.items()
            if k.startswith("val_") and isinstance(v, int | float) and not isinstance(v, bool)}
    if "best_val_mAP" in best and isinstance(saved.get("best_epoch"), int | float):
        return {**best, "best_epoch": float(saved["best_epoch"])}
    return {}


def _resume_file(run_dir: Path, world_rank: int) -> tuple[Path | None, int | None]:
    """The state to resume from, the same on every rank, and (rank 0) the epoch of the last report Ray
    registered (0: none; None: its checkpoint does not say, or another rank).

    Rank 0 takes the newer of the last checkpoint Ray Train registered and the trial folder's own
    ``last.pt`` (Ray registers a report only once its controller has polled it, so a worker that dies right
    after an epoch can leave that epoch unregistered; the copies keep their modification time), and
    broadcasts the bytes to every rank.
    """
    import torch.distributed as dist

    payload, registered = None, None
    if world_rank == 0:
        found = [run_dir / "last.pt"] if (run_dir / "last.pt").is_file() else []
        checkpoint = ray.train.get_checkpoint()
        registered = 0 if checkpoint is None else None
        with checkpoint.as_directory() if checkpoint is not None else contextlib.nullcontext() as folder:
            if folder is not None and (Path(folder) / "last.pt").is_file():
                found.append(Path(folder) / "last.pt")
            if folder is not None and (Path(folder) / REPORTED_EPOCH).is_file():
                with contextlib.suppress(ValueError, KeyError, TypeError):  # unreadable: the record decides
                    registered = int(json.loads((Path(folder) / REPORTED_EPOCH).read_text())["epoch"])
            if found:
                payload = max(found, key=lambda p: p.stat().st_mtime_ns).read_bytes()
    if dist.is_available() and dist.is_initialized():
        box = [payload]
        dist.broadcast_object_list(box, src=0)
        payload = box[0]
    if payload is None:
        return None, registered
    local = Path(tempfile.mkdtemp(prefix="talsearch-resume-")) / "last.pt"
    local.write_bytes(payload)
    return local, registered


# What a worker imports before its first optimizer step that Ray Train's own start-up does not: our trainer
# (torchvision, the model) and torch._dynamo, which torch.optim imports on first use (about 2 s of CPU).
WARM_MODULES = ("tal_core.training.trainer", "torch._dynamo")


_warming: threading.Thread | None = None  # this worker process's warm-up thread, once started


def _warm_imports() -> None:
    for name in WARM_MODULES:
        with contextlib.suppress(Exception):  # the training function imports them again and reports any error
            importlib.import_module(name)


def start_warming() -> None:
    """On each worker, as soon as its train context exists, imports WARM_MODULES on a background thread: the
    imports then overlap the rest of Ray Train's start-up (process-group rendezvous, controller polling), and the
    training function finds them done (Python's import lock makes it wait for a half-done one)."""
    global _warming
    _warming = threading.Thread(target=_warm_imports, name="talsearch-warm-imports", daemon=True)
    _warming.start()


class TrialTrainer(LeanTorchTrainer):
    """A ``TorchTrainer`` that skips Ray Data's per-run dataset-manager actor (Ray Train 2.60 starts one per run,
    one more process importing ``ray.data``, though our workers read the frame cache themselves) and warms each
    worker's imports while Ray Train is still starting (``start_warming``)."""

    warm_imports = True

    def extra_callbacks(self) -> list:
        warm = worker_start_callback(start_warming) if self.warm_imports else None
        return [warm] if warm is not None else []


def worker_resources(cfg) -> dict[str, float]:
    """What each Ray Train worker of a trial reserves: CPUs, and GPUs (fractions allowed) with use_gpu."""
    resources = {"CPU": cfg.search.cpus_per_worker}
    if cfg.search.use_gpu:
        resources["GPU"] = cfg.search.gpus_per_worker
    return resources


def set_train_env(poll_interval_s: float, local: bool) -> None:
    os.environ.setdefault(POLL_ENV, str(poll_interval_s))
    if local:
        os.environ.setdefault(PREEMPTION_ENV, "0")


def trial_fn(sampled: dict, ctx: dict) -> None:
    """The Tune trainable: ``sampled`` = Optuna's dotted params, ``ctx`` = the sweep's fixed context."""
    if "refit_of" in sampled:  # a refit trial (search.refit): another trial's configuration, another seed
        cfg = from_dict(ctx["configs"][sampled["refit_of"]]).with_overrides(
            {k: v for k, v in sampled.items() if k != "refit_of"})
    else:
        cfg = from_dict(ctx["base"]).with_overrides(sampled)
    trial_id = ray.tune.get_context().get_trial_id()
    run_dir = Path(ctx["sweep_dir"]) / "trials" / trial_id
    root = ctx.get("storage_root")
    loop_config = {"config": cfg.flat(), "data": ctx["data"], "run_dir": str(run_dir),
                   "cache_dir": ctx.get("cache_dir"), "trial_started": time.time(), "trial_id": trial_id,
                   "study_name": ctx.get("study_name"),
                   "storage_uri": trial_storage.trial_uri(root, trial_id) if root else None}
    set_train_env(cfg.search.poll_interval_s, ctx.get("local_cluster", False))
    trainer = TrialTrainer(
        worker_loop,
        train_loop_config=loop_config,
        torch_config=TorchProcessGroupConfig(backend="nccl" if cfg.search.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.search.trial_workers, use_gpu=cfg.search.use_gpu,
                                     resources_per_worker=worker_resources(cfg)),
        run_config=RunConfig(name=trial_id, storage_path=ctx["storage_path"], callbacks=[TuneReportCallback()],
                             failure_config=FailureConfig(max_failures=cfg.search.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=1)),  # resume needs the last one
    )
    trainer.fit()
    hand_over_last_report()  # before Tune's "done": a last report still queued would hang the trial
    _record_fit_time(run_dir, loop_config["trial_started"], loop_config["storage_uri"])


def _record_fit_time(run_dir: Path, started: float, storage_uri: str | None = None) -> None:
    """When the trial started (Unix time) and the seconds until its Train run returned, workers shut down
    (``trial_timing.json``, for bench_sweep; a trial that cannot write it still succeeds)."""
    timing = {"started": started, "fit_returned_s": time.time() - started}
    with contextlib.suppress(OSError):
        if storage_uri is not None:
            trial_storage.write_file(trial_storage.join(storage_uri, "trial_timing.json"), json.dumps(timing).encode())
        else:
            write_json_atomic(run_dir / "trial_timing.json", timing)
