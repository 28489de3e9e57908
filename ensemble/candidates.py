"""Collect ensemble candidates: finished trials' stored interval predictions.

From a sweep folder (``trials/<id>/predictions/{val,test}.npz`` + ``metrics.json``)
or from an MLflow parent run id (its child runs' ``predictions`` artifacts); from several of them together.
Never imports search internals.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from tal_core.errors import UserError
from tal_core.reporting.tracking import download_trial_outputs
from tal_core.run_folder import RunFolder
from tal_core.scoring.predictions import IntervalPredictions, PredictionsError, load_predictions


class CandidateError(UserError, ValueError):
    """No usable candidates, or a candidate's files are inconsistent; names the trial and file."""


@dataclass(frozen=True)
class Candidate:
    run_id: str
    val: IntervalPredictions
    test: IntervalPredictions | None
    val_map: float
    params: dict
    source: str
    trial: str = ""  # the training run it is an epoch of: its own run id, or for a snapshot its trial's

    @property
    def trial_id(self) -> str:
        return self.trial or self.run_id


def _load_trial(trial_dir: Path, run_id: str | None = None, metrics: dict | None = None) -> Candidate | None:
    folder = RunFolder(trial_dir)
    val_path = folder.predictions_file("val")
    if not val_path.exists():
        return None
    try:
        val = load_predictions(val_path)
        test_path = folder.predictions_file("test")
        test = load_predictions(test_path) if test_path.exists() else None
    except PredictionsError as error:
        raise CandidateError(f"trial {trial_dir.name}: {error}") from None
    metrics = metrics if metrics is not None else RunFolder(trial_dir).read_metrics() or {}
    return Candidate(run_id or trial_dir.name, val, test, float(metrics.get("val_mAP", 0.0)),
                     val.meta.get("config", {}), str(trial_dir))


def _load_with_snapshots(trial_dir: Path) -> list[Candidate]:
    """A trial's best epoch, and its kept snapshots of other epochs (``<trial>@e<N>``, see train.snapshots)."""
    metrics = RunFolder(trial_dir).read_metrics() or {}  # read once: the candidate's mAP and its best epoch
    best = _load_trial(trial_dir, metrics=metrics)
    if best is None:
        return []
    found = [best]
    best_epoch = metrics.get("best_epoch")
    for epoch, folder in RunFolder(trial_dir).snapshots().items():
        if epoch != best_epoch:
            snapshot = _load_trial(folder.path, f"{trial_dir.name}@e{epoch}")
            if snapshot is not None:
                found.append(replace(snapshot, trial=best.trial_id))
    return found



def from_sweep_folder(sweep_dir: Path) -> list[Candidate]:
    trials = sweep_dir / "trials"
    if not trials.is_dir():
        raise CandidateError(f"{sweep_dir}: no trials folder; is this a sweep folder?")
    return [c for d in sorted(trials.iterdir()) if d.is_dir() for c in _load_with_snapshots(d)]


def from_mlflow(parent_run_id: str, tracking_uri: str, download_to: Path) -> list[Candidate]:
    folders = download_trial_outputs(tracking_uri, parent_run_id, download_to)
    return [c for folder in folders for c in _load_with_snapshots(folder)]


RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def collect(sources: str | Sequence[str], tracking_uri: str, workdir: Path, top_n: int = 0) -> list[Candidate]:
    """The candidates of one sweep, or of several together (sweep folders or MLflow parent run ids: e.g. a video
    sweep and an audio sweep); a trial name found in two of them is an error naming both."""
    candidates, seen = [], {}
    for source in as_sources(sources):
        found = _from_source(source, tracking_uri, workdir)
        for c in found:
            if c.run_id in seen:
                raise CandidateError(f"trial {c.run_id} is in both {seen[c.run_id]} and {source}: name the sweeps "
                                     "whose trials are different runs")
        seen |= {c.run_id: source for c in found}
        candidates += found
    check_compatible(candidates)
    candidates.sort(key=lambda c: (-c.val_map, c.run_id))
    return candidates[:top_n] if top_n else candidates


def as_sources(sources: str | Path | Sequence[str | Path]) -> list[str]:
    """One sweep (folder or MLflow run id) or several, as a list of strings; none is an error."""
    listed = [str(sources)] if isinstance(sources, str | Path) else [str(s) for s in sources]
    if not listed:
        raise CandidateError("--sweep names no sweep")
    return listed


def _from_source(source: str, tracking_uri: str, workdir: Path) -> list[Candidate]:
    path = Path(source)
    if not path.exists() and not RUN_ID.match(source):
        raise CandidateError(f"--sweep {source}: no such sweep folder, and not an MLflow run id (32 hex digits)")
    candidates = from_sweep_folder(path) if path.exists() else from_mlflow(source, tracking_uri, workdir / "mlflow")
    if not candidates:
        raise CandidateError(f"{source}: no finished trial with stored val predictions (empty sweep?)")
    return candidates


def check_compatible(candidates: list[Candidate]) -> None:
    first = candidates[0]
    for c in candidates[1:]:
        if c.val.actions != first.val.actions:
            raise CandidateError(f"trial {c.run_id} ({c.source}/predictions/val.npz): taxonomy {c.val.actions} "
                                 f"differs from trial {first.run_id}'s {first.val.actions}")
        missing = set(first.val.video_ids) ^ set(c.val.video_ids)
        if missing:
            raise CandidateError(f"trial {c.run_id} ({c.source}/predictions/val.npz): val videos differ from "
                                 f"trial {first.run_id}'s: {sorted(missing)[:5]}")
