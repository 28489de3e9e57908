"""A run folder's layout, its one reader per file and one error model.

A run folder (``talsearch train --out RUN``, or a sweep's ``trials/<id>``) holds::

  metrics.json            the best epoch's metrics (val_mAP, val_mAP@t, per_class_AP, best_epoch ...)
  history.jsonl           one line per epoch
  reports.jsonl           a sweep trial's reports to Ray Tune: epoch, the metrics, reported_at (unix seconds)
  config.yaml             the resolved config (read_config / read_flat_config)
  predictions/<split>.npz interval predictions (val, test)
  detections/<split>.json ActivityNet detections
  checkpoint.pt           the evaluated weights of the best epoch; last.pt: the resume state
  snapshots/epoch_N/      metrics.json + predictions/ of the next-best epochs (train.snapshots)

Readers return None (or empty) for a file that is not there yet (a run still starting, a failed trial) and raise
``RunFolderError`` naming the file for one that is there but unreadable. Every write goes through
``io.write_atomic``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tal_core.config import flatten, translate_deprecated
from tal_core.errors import UserError
from tal_core.io import append_jsonl, read_jsonl, write_json_atomic


class RunFolderError(UserError):
    """A run folder's file exists but cannot be read; names it."""


@dataclass(frozen=True)
class RunFolder:
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    @property
    def history_file(self) -> Path:
        return self.path / "history.jsonl"

    @property
    def reports_file(self) -> Path:
        return self.path / "reports.jsonl"

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def checkpoint_file(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def resume_file(self) -> Path:
        return self.path / "last.pt"

    def predictions_file(self, split: str) -> Path:
        return self.path / "predictions" / f"{split}.npz"

    def detections_file(self, split: str) -> Path:
        return self.path / "detections" / f"{split}.json"

    def snapshot(self, epoch: int) -> RunFolder:
        return RunFolder(self.path / "snapshots" / f"epoch_{epoch}")

    def snapshots(self) -> dict[int, RunFolder]:
        """The kept snapshot folders by epoch (``train.snapshots``)."""
        found = {}
        for folder in sorted((self.path / "snapshots").glob("epoch_*")):
            epoch = folder.name.removeprefix("epoch_")
            if epoch.isdigit() and folder.is_dir():
                found[int(epoch)] = RunFolder(folder)
        return found

    def read_metrics(self) -> dict | None:
        """The best epoch's metrics, or None before the first epoch ends."""
        if not self.metrics_file.is_file():
            return None
        try:
            metrics = json.loads(self.metrics_file.read_text())
        except (OSError, ValueError) as error:
            raise RunFolderError(f"{self.metrics_file}: not readable JSON ({error})") from None
        if not isinstance(metrics, dict):
            raise RunFolderError(f"{self.metrics_file}: holds {type(metrics).__name__}, not an object")
        return metrics

    def read_config(self) -> dict[str, Any] | None:
        """The resolved config as saved (nested sections), deprecated keys translated (``config.translate_deprecated``:
        a folder an older version wrote reads as today's), or None before the run saved it. This is the one reader of
        ``config.yaml``: every consumer (leaderboard, refit, replay, warm start, tracking, demo) goes through it."""
        if not self.config_file.is_file():
            return None
        try:
            loaded = yaml.safe_load(self.config_file.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
            raise RunFolderError(f"{self.config_file}: not readable YAML ({reason})") from None
        if not isinstance(loaded, dict) or not loaded:  # save_config writes every section, atomically
            what = "nothing" if loaded is None else type(loaded).__name__
            raise RunFolderError(f"{self.config_file}: holds {what}, not a config's sections")
        return translate_deprecated(loaded)[0]

    def read_flat_config(self) -> dict[str, Any] | None:
        """``read_config`` as dotted keys (``data.view``, ``train.lr`` ...), or None before the run saved it."""
        nested = self.read_config()
        return None if nested is None else flatten(nested)

    def write_metrics(self, metrics: dict) -> Path:
        return write_json_atomic(self.metrics_file, metrics)

    def read_history(self) -> list[dict]:
        """One record per finished epoch (a torn last line is skipped, see ``io.read_jsonl``)."""
        return read_jsonl(self.history_file) if self.history_file.is_file() else []

    def read_reports(self) -> list[dict]:
        """A sweep trial's reports to Tune, in the order it made them (a restarted trial repeats epochs)."""
        return read_jsonl(self.reports_file) if self.reports_file.is_file() else []

    def append_report(self, report: dict) -> None:
        append_jsonl(self.reports_file, report)
