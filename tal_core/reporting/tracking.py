"""MLflow, in one place: the tracking URI, experiments, the sweep's parent run and its children (status, tags,
artifacts uploaded from the driver), the ensemble's run, and downloads of a sweep's predictions."""

from __future__ import annotations

import contextlib
import functools
import json
import re
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import mlflow
from mlflow.entities import Param
from mlflow.tracking import MlflowClient

from tal_core.errors import TrackingUnreachableError, UserError
from tal_core.reporting.mlflow_compat import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    VIEW_TAG_PREFIX,
    VIEW_URL_PARAM,
)
from tal_core.reporting.run_plots import detection_plots
from tal_core.run_folder import RunFolder

TRIAL_ID_TAG = "talsearch.trial_id"


def _quiet_stdout(function):
    """MLflow 3 prints "View run ... at: URL" lines on stdout when a run on a server ends; stdout carries a
    command's result, so they go to stderr (with the logs)."""

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        with contextlib.redirect_stdout(sys.stderr):
            return function(*args, **kwargs)

    return wrapped


def trial_run_name(trial_id: str, values: dict, searched: list[str]) -> str:
    """What a trial is, as its run's name: its searched values (last part of each key) and its id."""
    parts = [f"{key.split('.')[-1]}={_short(values[key])}" for key in searched if key in values]
    return " ".join([*parts, f"[{trial_id}]"])


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def redact_uri(uri: str) -> str:
    """The URI without credentials: user:password@ and token-like query values become ***."""
    parsed = urlparse(uri)
    if not parsed.scheme or parsed.scheme in ("file", "sqlite"):
        return uri
    netloc = parsed.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(f"{k}=***" if v and k.lower() not in ("experiment", "run") else f"{k}={v}"
                     for k, _, v in (part.partition("=") for part in parsed.query.split("&")) if k)
    return parsed._replace(netloc=netloc, query=query).geturl()


def resolve_uri(uri: str, workdir: Path | None = None) -> str:
    """'' -> sqlite:///<abs workdir>/mlflow.db; relative sqlite paths become absolute (workers run elsewhere)."""
    if not uri:
        return f"sqlite:///{(workdir or Path.cwd()).resolve() / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri[len('sqlite:///'):]).resolve()}"
    return uri


def artifact_location(uri: str) -> str | None:
    """For a SQLite store, artifacts go next to the database file (not into the current folder)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    return None


def _probe_server(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds (not after MLflow's minutes of retries) when an http(s) server does not answer."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as error:
        raise TrackingUnreachableError(f"MLflow tracking server {uri} is not reachable ({error}); "
                              "start it or set tracking.uri") from None


def check_reachable(uri: str, experiment: str) -> str:
    """Create/find the experiment now, so a dead server fails before Ray starts; returns its id."""
    _probe_server(uri)
    mlflow.set_tracking_uri(uri)
    try:
        found = mlflow.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else mlflow.create_experiment(
            experiment, artifact_location=artifact_location(uri))
        if not found or EXPERIMENT_KIND_TAG not in found.tags:
            # MLflow 3 opens an experiment of unknown kind on its GenAI overview; ours is model training
            MlflowClient(uri).set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return experiment_id
    except Exception as error:
        raise TrackingUnreachableError(f"MLflow tracking store {uri} is not reachable: {str(error).splitlines()[0]}") from None


def start_parent_run(uri: str, experiment_id: str, name: str, params: dict, space: dict) -> str:
    client = MlflowClient(uri)
    run = client.create_run(experiment_id, run_name=name, tags={"talsearch.kind": "sweep"})
    for key, value in sorted(params.items()):
        client.log_param(run.info.run_id, key, str(value)[:6000])
    client.log_text(run.info.run_id, json.dumps(space, indent=1, default=str), "search_space.json")
    return run.info.run_id


VIEW_METRICS = ("best_val_mAP", "best_val_mAP_at_0.5", "best_val_mAP_at_0.75", "best_val_mAP_at_0.95", "best_epoch",
                "val_mAP", "epoch")


def save_trials_view(uri: str, experiment_id: str, parent_id: str, name: str, searched: list[str]) -> str:
    """Saves a view of the experiment's runs table for one sweep (listed under "Views"): its trials, one row
    each (not folded under the parent run), best first, with the best epoch's metrics, the last epoch's val_mAP
    and the searched values as columns. Returns the UI path that opens it."""
    key = f"talsearch-{parent_id[:16]}"
    columns = [f"metrics.`{m}`" for m in VIEW_METRICS] + [f"params.`{k}`" for k in searched]
    state = {"searchFilter": f"tags.mlflow.parentRunId = '{parent_id}'", "orderByKey": "metrics.`best_val_mAP`",
             "orderByAsc": False, "selectedColumns": [*columns, "attributes.`Duration`"]}
    now_ms = int(time.time() * 1000)
    envelope = {"name": f"{name}: trials", "createdAt": now_ms, "updatedAt": now_ms, "state": json.dumps(state)}
    MlflowClient(uri).set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + key, json.dumps(envelope))
    return f"#/experiments/{experiment_id}/runs?{VIEW_URL_PARAM}={key}"


def child_runs(uri: str, parent_id: str) -> list:
    client = MlflowClient(uri)
    parent = client.get_run(parent_id)
    return client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'",
                              max_results=10_000)


def trial_id_of(run) -> str:
    """The trial a child run records (its tag; runs of sweeps older than the tag: the run-name suffix)."""
    return run.data.tags.get(TRIAL_ID_TAG) or run.info.run_name.rsplit("_", 1)[-1]


def drop_duplicate_children(client: MlflowClient, runs: list) -> list:
    """A driver killed mid-trial leaves that trial's run RUNNING; the resumed sweep opens a new one.
    Keep one run per trial (the one with most logged metrics, then the newest) and delete the others."""
    by_name: dict[str, list] = {}
    for run in runs:
        by_name.setdefault(trial_id_of(run), []).append(run)
    kept = []
    for same in by_name.values():
        same.sort(key=lambda r: (r.info.status == "FINISHED", len(r.data.metrics), r.info.start_time), reverse=True)
        kept.append(same[0])
        for stale in same[1:]:
            client.delete_run(stale.info.run_id)
    return kept


@_quiet_stdout
def finish_children(uri: str, parent_id: str, trial_info: dict[str, dict], sweep_dir: Path, spec=None) -> None:
    """Tag each child run with its trial's outcome and upload its outputs and plots."""
    client = MlflowClient(uri)
    for run in drop_duplicate_children(client, child_runs(uri, parent_id)):
        info = trial_info.get(trial_id_of(run))
        if info is None:
            continue
        client.set_tag(run.info.run_id, TRIAL_ID_TAG, info["trial_id"])
        client.set_tag(run.info.run_id, "talsearch.status", info["status"])
        trial_dir = sweep_dir / "trials" / info["trial_id"]
        for sub in ("predictions", "detections", "snapshots"):
            if (trial_dir / sub).is_dir():
                client.log_artifacts(run.info.run_id, str(trial_dir / sub), sub)
        _log_full_config(client, run, trial_dir)
        for name in ("config.yaml", "metrics.json", "history.jsonl"):
            if (trial_dir / name).is_file():
                client.log_artifact(run.info.run_id, str(trial_dir / name))
        for plot in detection_plots(trial_dir, spec) if spec is not None else []:
            client.log_artifact(run.info.run_id, str(plot), "plots")


def _log_full_config(client: MlflowClient, run, trial_dir: Path) -> None:
    """Child runs get every config key as a flat param, not only the searched ones."""
    flat = RunFolder(trial_dir).read_flat_config()
    if flat is None:
        return
    present = set(run.data.params)
    params = [Param(k, str(v)[:6000]) for k, v in sorted(flat.items()) if k not in present]
    for start in range(0, len(params), 100):
        client.log_batch(run.info.run_id, params=params[start : start + 100])


@_quiet_stdout
def end_unfinished_runs(uri: str, parent_id: str, status: str) -> int:
    """Mark the sweep's parent run and its children that are still RUNNING as ``status`` (KILLED or FAILED):
    a sweep that stops on an exception or a signal leaves no run RUNNING forever. Returns how many children."""
    client = MlflowClient(uri)
    ended = 0
    with contextlib.suppress(Exception):
        for run in child_runs(uri, parent_id):
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, status)
                ended += 1
    with contextlib.suppress(Exception):
        client.set_terminated(parent_id, status)
    return ended


@_quiet_stdout
def finish_parent(uri: str, parent_id: str, summary: dict, sweep_dir: Path) -> None:
    client = MlflowClient(uri)
    for key, value in summary.items():
        if isinstance(value, int | float):
            client.log_metric(parent_id, key, float(value))
        else:
            client.set_tag(parent_id, f"talsearch.{key}", str(value)[:5000])
    for name in ("leaderboard.csv", "sweep.json"):
        if (sweep_dir / name).is_file():
            client.log_artifact(parent_id, str(sweep_dir / name))
    for plot in sorted((sweep_dir / "plots").glob("*.png")):
        client.log_artifact(parent_id, str(plot), "plots")
    client.set_terminated(parent_id, "FINISHED")


@_quiet_stdout
def log_ensemble_run(uri: str, experiment: str, out: Path, metrics: dict, sweep_run_id: str) -> str:
    """One run holding an ensemble's metrics (ensemble_* and best_single_*) and its output folder."""
    client = MlflowClient(uri)
    run = client.create_run(check_reachable(uri, experiment), run_name=f"ensemble-{out.name}",
                            tags={"talsearch.kind": "ensemble", "talsearch.sweep_run_id": sweep_run_id})
    run_id = run.info.run_id
    for prefix in ("ensemble", "best_single", "gain"):
        for key, value in metrics.get(prefix, {}).items():
            if isinstance(value, float):
                client.log_metric(run_id, f"{prefix}_{key}".replace("@", "_at_"), value)
    client.log_artifacts(run_id, str(out), "ensemble")
    client.set_terminated(run_id, "FINISHED")
    return run_id


def download_trial_outputs(uri: str, parent_run_id: str, target: Path) -> list[Path]:
    """Each child run's ``predictions`` folder and ``metrics.json`` under ``target/<run id>``; runs without
    them are skipped. Returns the folders that received predictions."""
    client = MlflowClient(uri)
    folders = []
    for run in child_runs(uri, parent_run_id):
        if not re.fullmatch(r"[0-9a-zA-Z_-]{1,64}", run.info.run_id):  # it becomes a folder name
            raise UserError(f"tracking server {redact_uri(uri)} returned an unsafe run id {run.info.run_id!r}")
        folder = target / run.info.run_id
        folder.mkdir(parents=True, exist_ok=True)
        try:
            client.download_artifacts(run.info.run_id, "predictions", str(folder))
            client.download_artifacts(run.info.run_id, "metrics.json", str(folder))
        except Exception:  # a child without stored predictions (failed trial) is not a candidate
            continue
        with contextlib.suppress(Exception):  # snapshots are optional (train.snapshots=0, older sweeps)
            client.download_artifacts(run.info.run_id, "snapshots", str(folder))
        folders.append(folder)
    return folders
