"""A finished sweep's learning curves as a table that ``talsearch replay`` can run strategies against.

Per trial: its searched parameters, the metric after every epoch, every epoch's wall time, the time the trial
took to start (worker group, data, first batch: paid once, by epoch 1), the times it reported to Tune and how it
ended. Read from a sweep folder (``sweep.json`` + ``trials/<id>/``) or from a table file written by
``talsearch replay SWEEP --table-out FILE`` (JSON, what ``benchmarks/data/`` commits).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tal_core.config import ConfigError, translate_deprecated
from tal_core.io import write_json_atomic
from tal_core.run_folder import RunFolder

from .space import Param, parse_space, space_entry

FORMAT = "talsearch-replay-table/1"


@dataclass(frozen=True)
class RecordedTrial:
    trial_id: str
    params: dict
    values: tuple[float, ...]  # the metric after epoch 1, 2, ...
    epoch_seconds: tuple[float, ...]
    startup_seconds: float = 0.0
    reported_at: tuple[float, ...] | None = None  # seconds since the sweep's first trial started, per epoch
    #                                                reported to Tune (a stopped trial's last epoch may lack one)
    status: str = "FINISHED"  # FINISHED | STOPPED_EARLY (the real sweep's scheduler stopped it)
    budget: int = 0  # the epochs it would have run unstopped

    @property
    def epochs(self) -> int:
        return len(self.values)

    def finish_time(self, epoch: int) -> float:
        """Seconds from the trial's start until it has reported ``epoch`` (1-based)."""
        return self.startup_seconds + sum(self.epoch_seconds[:epoch])


@dataclass(frozen=True)
class ReplayTable:
    source: str
    metric: str
    max_epochs: int
    concurrency: int
    space: tuple[Param, ...]
    trials: tuple[RecordedTrial, ...]
    search: dict = field(default_factory=dict)  # the recorded sweep's search.* settings

    @property
    def full(self) -> tuple[RecordedTrial, ...]:
        """Trials with a curve to the full budget: the ones any strategy can be answered from."""
        return tuple(t for t in self.trials if t.epochs >= self.max_epochs)

    def nearest(self, params: dict) -> tuple[RecordedTrial, bool]:
        """The full-budget trial closest to ``params`` (categorical keys: equal or not; numbers: distance over
        the range, on a log scale where the key is searched on one), and whether it measured exactly them."""
        if not self.full:
            raise ConfigError(f"{self.source}: no trial ran to the full budget of {self.max_epochs} epochs; "
                              "a replay needs whole learning curves (run the sweep with search.scheduler=fifo)")
        best = min(self.full, key=lambda t: _distance(self.space, params, t.params))
        return best, _distance(self.space, params, best.params) == 0.0

    def uniform_clock(self) -> ReplayTable:
        """The same curves with every epoch charged the table's median epoch time and every start-up its median
        start-up: for a table whose configurations cost the same per epoch (same model, frames and size) but whose
        recorded times were disturbed, e.g. by another job sharing the machine for part of the sweep."""
        epoch = statistics.median(s for t in self.trials for s in t.epoch_seconds)
        startup = statistics.median(t.startup_seconds for t in self.trials)
        trials = tuple(RecordedTrial(**{**asdict(t), "epoch_seconds": (epoch,) * t.epochs, "startup_seconds": startup})
                       for t in self.trials)
        return ReplayTable(self.source, self.metric, self.max_epochs, self.concurrency, self.space, trials,
                           self.search)

    def to_json(self) -> dict:
        return {"format": FORMAT, "source": self.source, "metric": self.metric, "max_epochs": self.max_epochs,
                "concurrency": self.concurrency, "search": self.search,
                "space": {p.key: space_entry(p) for p in self.space},
                "trials": [{**asdict(t), "values": list(t.values), "epoch_seconds": list(t.epoch_seconds),
                            "reported_at": None if t.reported_at is None else list(t.reported_at)}
                           for t in self.trials]}

    def save(self, path: str | Path) -> Path:
        return write_json_atomic(path, self.to_json(), indent=None)


def _scaled(param: Param, value) -> float:
    low, high = float(param.low), float(param.high)
    if param.log:
        low, high, value = math.log(low), math.log(high), math.log(max(float(value), 1e-300))
    return (float(value) - low) / (high - low) if high > low else 0.0


def _distance(space: tuple[Param, ...], wanted: dict, recorded: dict) -> float:
    total = 0.0
    for param in space:
        a, b = wanted.get(param.key), recorded.get(param.key)
        if param.kind == "categorical" or not all(isinstance(v, int | float) for v in (a, b)):
            total += 0.0 if a == b else 1.0
        else:
            total += abs(_scaled(param, a) - _scaled(param, b))
    return total


def load_table(source: str | Path, config: str | Path | None = None) -> ReplayTable:
    """A table file, or a finished sweep folder (its space from ``sweep.json``, or from the sweep file
    ``config`` for sweeps that predate it)."""
    path = Path(source)
    if path.is_file():
        return _from_file(path)
    if (path / "sweep.json").is_file():
        return _from_sweep(path, config)
    raise ConfigError(f"{path}: neither a sweep folder (no sweep.json) nor a replay table file")


def _from_file(path: Path) -> ReplayTable:
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not a replay table ({error})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a replay table (format is not '{FORMAT}')")
    try:
        space = parse_space(raw["space"], set(raw["space"]))
        trials = tuple(RecordedTrial(**{**t, "values": tuple(t["values"]), "epoch_seconds": tuple(t["epoch_seconds"]),
                                        "reported_at": None if t.get("reported_at") is None
                                        else tuple(t["reported_at"])}) for t in raw["trials"])
        return ReplayTable(raw.get("source", str(path)), raw["metric"], int(raw["max_epochs"]),
                           int(raw["concurrency"]), space, trials,
                           translate_deprecated({"search": raw.get("search", {})})[0]["search"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ConfigError(f"{path}: a malformed replay table ({type(error).__name__}: {error})") from None


def _space_of(sweep_dir: Path, state: dict, config: str | Path | None) -> tuple[Param, ...]:
    if config is not None:
        from .space import load_sweep

        return load_sweep(config).params
    if "space" not in state:
        raise ConfigError(f"{sweep_dir}/sweep.json: holds no 'space' (a sweep from before it was recorded); "
                          "pass the sweep's file with --config")
    return parse_space(state["space"], set(state["space"]))


def _from_sweep(sweep_dir: Path, config: str | Path | None) -> ReplayTable:
    state = json.loads((sweep_dir / "sweep.json").read_text())
    if "finished" not in state:
        raise ConfigError(f"{sweep_dir}: the sweep has not finished (finish it with talsearch sweep --resume)")
    space = _space_of(sweep_dir, state, config)
    trials, search, metric = [], {}, "val_mAP"
    for trial_id, outcome in sorted(state["trials"].items()):
        folder = RunFolder(sweep_dir / "trials" / trial_id)
        if outcome.get("status") == "FAILED" or not folder.config_file.is_file():
            continue
        flat = folder.read_flat_config()
        search = {k[len("search."):]: v for k, v in flat.items() if k.startswith("search.")}
        metric = search.get("metric", metric)
        trials.append(_recorded(folder, outcome, flat, space, metric))
    if not trials:
        raise ConfigError(f"{sweep_dir}: no finished trial to replay")
    trials = _relative_report_times(trials)
    max_epochs = max(t.budget for t in trials)
    concurrency = int(state.get("concurrency") or search.get("max_concurrent") or 1)
    return ReplayTable(str(sweep_dir), metric, max_epochs, concurrency, space, tuple(trials), search)


def _recorded(folder: RunFolder, outcome: dict, flat: dict, space, metric: str) -> RecordedTrial:
    history = {int(h["epoch"]): h for h in folder.read_history()}  # a restarted trial rewrites epochs: last wins
    epochs = sorted(history)
    name = metric if epochs and metric in history[epochs[0]] else metric.replace("_at_", "@")  # MLflow spelling
    values = tuple(float(history[e].get(name, float("nan"))) for e in epochs)
    seconds = tuple(float(history[e].get("epoch_seconds", 0.0)) for e in epochs)
    total = outcome.get("time_total_s")
    startup = max(0.0, float(total) - sum(seconds)) if isinstance(total, int | float) else 0.0
    reports = {int(r["epoch"]): float(r["reported_at"]) for r in folder.read_reports()}
    # the epochs Tune heard of: a stopped trial may have finished one more epoch before it was stopped
    heard = [e for e in epochs if e in reports]
    reported_at = tuple(reports[e] for e in heard) if heard and heard == epochs[:len(heard)] else None
    return RecordedTrial(folder.name, {p.key: flat.get(p.key) for p in space}, values, seconds, startup,
                         reported_at, outcome.get("status", "FINISHED"), int(outcome.get("budget") or len(values)))


def _relative_report_times(trials: list[RecordedTrial]) -> list[RecordedTrial]:
    """Report times as seconds since the first trial started (where every trial has them)."""
    if any(t.reported_at is None for t in trials):
        return [RecordedTrial(**{**asdict(t), "reported_at": None}) for t in trials]
    origin = min(t.reported_at[0] - t.finish_time(1) for t in trials)
    return [RecordedTrial(**{**asdict(t), "reported_at": tuple(a - origin for a in t.reported_at)}) for t in trials]
