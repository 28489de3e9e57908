"""``talsearch replay``: search strategies run against a finished sweep's learning curves on a simulated clock.

A strategy is a sampler (random | tpe | grid, Optuna's own, built as the sweep builds them) and a scheduler
(fifo | asha | hyperband, Ray Tune's own classes, fed results as Tune feeds them). ``workers`` trials run at
once; a proposed configuration is answered from the recorded trial that measured it (or the nearest one, counted);
its epoch k reports after its recorded start-up and epoch times, and results reach the scheduler in simulated-time
order. Each run of a strategy yields the best metric seen so far against simulated time, the figure a user
waits for.
"""

from __future__ import annotations

import heapq
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from tal_core.config import SearchConfig

from .ray_compat import ReplayedTrial
from .replay_table import RecordedTrial, ReplayTable
from .strategy import describe, make_sampler, make_scheduler, replace_repeat, replaces_with_nearest

logger = logging.getLogger("talsearch.replay")
STOP, CONTINUE = "STOP", "CONTINUE"


@dataclass
class Trace:
    """One simulated run: (time, best so far) at every improvement, and what it cost."""
    strategy: str
    seed: int
    points: list[tuple[float, float]] = field(default_factory=list)
    trials: int = 0
    epochs: int = 0
    inexact: int = 0  # proposals answered from the nearest recorded configuration
    configurations: set = field(default_factory=set)  # the recorded trials the proposals mapped to

    def best_at(self, time: float) -> float:
        best = float("nan")
        for at, value in self.points:
            if at > time:
                break
            best = value
        return best

    def time_to(self, target: float) -> float:
        return next((at for at, value in self.points if value >= target - 1e-12), math.inf)


@dataclass
class _Running:
    recorded: RecordedTrial
    ot_trial: object
    tune_trial: ReplayedTrial
    started: float
    epoch: int = 0


def strategy_config(base: SearchConfig, searcher: str, scheduler: str) -> SearchConfig:
    return base.model_copy(update={"sampler": searcher, "scheduler": scheduler})


def simulate(table: ReplayTable, search: SearchConfig, workers: int, seed: int, budget_s: float) -> Trace:
    """One run of ``search``'s strategy for ``budget_s`` simulated seconds."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    np.random.seed(seed)  # Ray's Hyperband picks each trial's bracket with numpy's global generator
    study = optuna.create_study(direction="maximize", sampler=make_sampler(search, table.space, seed=seed))
    scheduler = make_scheduler(search, table.max_epochs, metric=table.metric)
    distributions = {p.key: p.distribution() for p in table.space}
    trace = Trace(describe(search), seed)
    events: list[tuple[float, int, _Running]] = []
    order = 0

    rng = np.random.default_rng(seed)

    def start(now: float) -> None:
        nonlocal order
        ot_trial = study.ask(distributions)
        if search.avoid_repeats and replace_repeat(study, ot_trial, table.space, rng,
                                                   replaces_with_nearest(search)) is not None:
            ot_trial = study.ask(distributions)
        recorded, exact = table.nearest(ot_trial.params)
        trace.trials += 1
        trace.inexact += not exact
        trace.configurations.add(recorded.trial_id)
        running = _Running(recorded, ot_trial, ReplayedTrial(f"t{trace.trials:05d}"), now)
        scheduler.on_trial_add(None, running.tune_trial)
        order += 1
        heapq.heappush(events, (now + recorded.finish_time(1), order, running))

    for _ in range(workers):
        start(0.0)
    while events:
        now, _, running = heapq.heappop(events)
        if now > budget_s:
            break
        running.epoch += 1
        trace.epochs += 1
        value = running.recorded.values[running.epoch - 1]
        if not trace.points or value > trace.points[-1][1]:
            trace.points.append((now, value))
        if _step(study, scheduler, running, value, table) == STOP:
            if _grid_exhausted(study, search):
                continue
            start(now)
        else:
            order += 1
            heapq.heappush(events, (running.started + running.recorded.finish_time(running.epoch + 1), order,
                                    running))
    return trace


def _step(study, scheduler, running: _Running, value: float, table: ReplayTable) -> str:
    """Tune's handling of one result: the scheduler decides; a stopped trial is told to the scheduler and to
    Optuna (PRUNED below its full budget, as the sweep's searcher tells it), a continuing one reports."""
    from optuna.trial import TrialState

    result = _result(running.epoch, table.metric, value)
    decision = scheduler.on_trial_result(None, running.tune_trial, result)
    if running.epoch >= table.max_epochs:
        decision = STOP
    if str(decision) != STOP:
        running.ot_trial.report(value, step=running.epoch)
        return CONTINUE
    scheduler.on_trial_complete(None, running.tune_trial, result)
    if running.epoch >= table.max_epochs:
        study.tell(running.ot_trial, value)
    else:
        running.ot_trial.report(value, step=running.epoch)
        study.tell(running.ot_trial, state=TrialState.PRUNED)
    return STOP


def _result(epoch: int, metric: str, value: float) -> dict:
    """A trial's result as Tune hands it to a scheduler."""
    return {"epoch": epoch, "training_iteration": epoch, metric: value}


def _grid_exhausted(study, search: SearchConfig) -> bool:
    return search.sampler == "grid" and study.sampler.is_exhausted(study)


def replay_recorded(table: ReplayTable, search: SearchConfig) -> dict[str, int | None]:
    """The recorded sweep's own proposals and report times fed to ``search``'s scheduler: per trial, the epoch
    it would be stopped at (None: runs its budget). With the sweep's own settings this repeats its decisions."""
    if any(t.reported_at is None for t in table.trials):
        raise ValueError(f"{table.source}: trials without report times (sweeps before reports.jsonl)")
    scheduler = make_scheduler(search, table.max_epochs, metric=table.metric)
    events = sorted((at, t.trial_id, epoch + 1, t) for t in table.trials for epoch, at in enumerate(t.reported_at))
    stopped: dict[str, int | None] = {t.trial_id: None for t in table.trials}
    tune_trials: dict[str, ReplayedTrial] = {}
    for _, trial_id, epoch, recorded in events:
        if stopped[trial_id] is not None:
            continue
        if trial_id not in tune_trials:
            tune_trials[trial_id] = ReplayedTrial(trial_id)
            scheduler.on_trial_add(None, tune_trials[trial_id])
        result = _result(epoch, table.metric, recorded.values[epoch - 1])
        decision = scheduler.on_trial_result(None, tune_trials[trial_id], result)
        if str(decision) == STOP or epoch >= recorded.budget:
            scheduler.on_trial_complete(None, tune_trials[trial_id], result)
            if epoch < recorded.budget:
                stopped[trial_id] = epoch
    return stopped


@dataclass(frozen=True)
class Strategy:
    searcher: str
    scheduler: str

    @property
    def name(self) -> str:
        return describe(SearchConfig(sampler=self.searcher, scheduler=self.scheduler))


def run_strategies(table: ReplayTable, base: SearchConfig, strategies: list[Strategy], workers: int,
                   seeds: list[int], budget_s: float, progress=None) -> dict[str, list[Trace]]:
    traces: dict[str, list[Trace]] = {}
    for strategy in strategies:
        search = strategy_config(base, strategy.searcher, strategy.scheduler)
        traces[describe(search)] = [simulate(table, search, workers, seed, budget_s) for seed in seeds]
        if progress is not None:
            progress(strategy.name)
    return traces


def default_budget(table: ReplayTable, workers: int) -> float:
    """Simulated seconds to run every full-budget recorded trial once, ``workers`` at a time: the recorded
    sweep's own length without early stopping."""
    return sum(t.finish_time(table.max_epochs) for t in table.full) / max(1, workers)


def _spread(values: list[float], median: str = "nearest") -> dict:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"median": None, "q25": None, "q75": None, "reached": 0}
    padded = np.array([v if math.isfinite(v) else np.inf for v in values])  # never reached: infinitely late
    q25, mid, q75 = (float(np.percentile(padded, q, method=median if q == 50 else "nearest")) for q in (25, 50, 75))
    fix = [None if not math.isfinite(v) else round(v, 4) for v in (mid, q25, q75)]
    return {"median": fix[0], "q25": fix[1], "q75": fix[2], "reached": len(finite)}


def summarize(traces: dict[str, list[Trace]], budget_s: float, target: float | None,
              reference: str = "random+fifo") -> dict:
    """Per strategy: the median (and quartiles, over seeds) of the best at the budget and of the time to the
    target; the target defaults to ``reference``'s median best at the budget."""
    if target is None:  # a value half of the reference's runs reach (the lower median of their finals)
        runs = traces.get(reference) or next(iter(traces.values()))
        target = float(np.percentile([t.best_at(budget_s) for t in runs], 50, method="lower"))
    rows = {}
    for name, runs in traces.items():  # medians of times: the later of the middle two (never flattering)
        rows[name] = {"time_to_target_s": _spread([t.time_to(target) for t in runs], median="higher"),
                      "best_at_budget": _spread([t.best_at(budget_s) for t in runs], median="lower"),
                      "trials": float(np.median([t.trials for t in runs])),
                      "distinct": float(np.median([len(t.configurations) for t in runs])),
                      "epochs": float(np.median([t.epochs for t in runs])),
                      "inexact": int(sum(t.inexact for t in runs))}
    if reference in rows:
        base_time = rows[reference]["time_to_target_s"]["median"]
        for row in rows.values():
            mine = row["time_to_target_s"]["median"]
            row["time_ratio"] = (None if mine is None or not base_time else round(mine / base_time, 4))
    return {"target": round(target, 4), "budget_s": round(budget_s, 1), "reference": reference,
            "strategies": rows}


def time_ratio_spread(traces: dict[str, list[Trace]], name: str, target: float, reference: str = "random+fifo",
                      draws: int = 1000, seed: int = 0) -> tuple[float, float]:
    """A bootstrap 90% interval of ``name``'s median time to ``target`` over ``reference``'s (seeds resampled)."""
    rng = np.random.default_rng(seed)
    mine = np.array([t.time_to(target) for t in traces[name]])
    theirs = np.array([t.time_to(target) for t in traces[reference]])
    ratios = []
    for _ in range(draws):
        a = np.percentile(rng.choice(mine, len(mine)), 50, method="higher")
        b = np.percentile(rng.choice(theirs, len(theirs)), 50, method="higher")
        ratios.append(a / b if math.isfinite(b) and b > 0 else math.inf)
    low, high = np.percentile(ratios, [5, 95], method="nearest")
    return float(low), float(high)


def time_ratio_interval(traces: dict[str, list[Trace]], name: str, target: float,
                        reference: str = "random+fifo") -> list[float | None]:
    """``time_ratio_spread`` rounded for a report (None: the ratio is infinite in those draws)."""
    return [round(v, 4) if math.isfinite(v) else None for v in time_ratio_spread(traces, name, target, reference)]


def best_so_far_curves(traces: dict[str, list[Trace]], budget_s: float, points: int = 200) -> dict:
    """Per strategy: the quartiles over seeds of the best so far on a grid of simulated times (nan before any
    result)."""
    import warnings

    grid = np.linspace(0.0, budget_s, points)
    curves = {}
    for name, runs in traces.items():
        values = np.array([[run.best_at(t) for t in grid] for run in runs], dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns before the first result
            q25, median, q75 = np.nanpercentile(values, [25, 50, 75], axis=0)
        curves[name] = {"q25": q25, "median": median, "q75": q75}
    return {"time": grid, "curves": curves}


def plot(traces: dict[str, list[Trace]], budget_s: float, metric: str, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tal_core.reporting.plots import save_figure_atomic

    data = best_so_far_curves(traces, budget_s)
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for name, curve in data["curves"].items():
        line, = axes.step(data["time"] / 60, curve["median"], where="post", label=name)
        axes.fill_between(data["time"] / 60, curve["q25"], curve["q75"], step="post", alpha=0.15,
                          color=line.get_color())
    axes.set_xlabel("simulated minutes")
    axes.set_ylabel(f"best {metric} so far (median, quartiles over seeds)")
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    save_figure_atomic(figure, path, dpi=110)

