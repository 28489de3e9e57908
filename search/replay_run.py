"""The ``talsearch replay`` command's job: a table in, every strategy run over seeds, one JSON summary out."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import ValidationError

from tal_core.config import ConfigError, SearchConfig

from .replay import Strategy, default_budget, plot, run_strategies, summarize, time_ratio_interval
from .replay_table import load_table

logger = logging.getLogger("talsearch.replay")
REFERENCE = "random+fifo"


def search_settings(recorded: dict, overrides: dict) -> SearchConfig:
    """The recorded sweep's ``search.*`` (keys this version knows) under the command line's ``overrides``."""
    known = set(SearchConfig.model_fields)
    values = {k: v for k, v in recorded.items() if k in known}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return SearchConfig(**values)
    except ValidationError as error:
        first = error.errors()[0]
        raise ConfigError(f"search.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def replay(source: str | Path, searchers: list[str], schedulers: list[str], workers: int | None, seeds: int,
           budget_s: float | None = None, target: float | None = None, config: str | Path | None = None,
           overrides: dict | None = None, plot_path: str | Path | None = None,
           table_out: str | Path | None = None, clock: str = "recorded") -> dict:
    table = load_table(source, config)
    if table_out is not None:
        table.save(table_out)
    if clock == "uniform":
        table = table.uniform_clock()
    base = search_settings(table.search, overrides or {})
    workers = workers or table.concurrency
    budget_s = budget_s or default_budget(table, workers)
    strategies = [Strategy(a, b) for a in searchers for b in schedulers]
    if "grid" in searchers and any(p.kind != "categorical" for p in table.space):
        raise ConfigError("--searcher grid needs a space of categorical keys only")
    logger.info(f"[replay] {table.source}: {len(table.trials)} recorded trials ({len(table.full)} to the full "
                f"budget of {table.max_epochs} epochs), {workers} at a time, {budget_s / 60:.1f} simulated minutes, "
                f"{len(strategies)} strategies x {seeds} seeds")
    done = []

    def progress(name: str) -> None:
        done.append(name)
        logger.info(f"[replay] {len(done)}/{len(strategies)} {name}")

    traces = run_strategies(table, base, strategies, workers, list(range(seeds)), budget_s, progress)
    reference = REFERENCE if REFERENCE in traces else strategies[0].name
    summary = summarize(traces, budget_s, target, reference=reference)
    for name, row in summary["strategies"].items():
        if name != reference and row.get("time_ratio") is not None:
            row["time_ratio_interval"] = time_ratio_interval(traces, name, summary["target"], reference)
    if plot_path is not None:
        plot(traces, budget_s, table.metric, plot_path)
    inexact = sum(row["inexact"] for row in summary["strategies"].values())
    if inexact:
        logger.info(f"[replay] {inexact} proposal(s) were not in the table: answered from the nearest recorded "
                    "configuration")
    return {"source": table.source, "metric": table.metric, "workers": workers, "seeds": seeds, "clock": clock,
            "recorded_trials": len(table.trials), "max_epochs": table.max_epochs,
            "settings": {"grace_period": base.grace_period, "reduction_factor": base.reduction_factor,
                         "startup_trials": base.startup_trials, "multivariate": base.multivariate,
                         "constant_liar": base.constant_liar, "avoid_repeats": base.avoid_repeats,
                         "repeat_replacement": base.repeat_replacement},
            **summary}


def table_lines(result: dict) -> list[str]:
    """The summary as a fixed-width table (stderr)."""
    lines = [f"target {result['metric']} >= {result['target']} (median best of {result['reference']} at "
             f"{result['budget_s'] / 60:.1f} simulated min), {result['seeds']} seeds",
             f"{'strategy':<20} {'time to target (min)':>24} {'ratio':>7} {'best at budget':>20} {'trials':>7}"]
    for name, row in result["strategies"].items():
        t, b = row["time_to_target_s"], row["best_at_budget"]
        minutes = "never" if t["median"] is None else (
            f"{t['median'] / 60:.1f} [{_min(t['q25'])}-{_min(t['q75'])}]")
        best = "-" if b["median"] is None else f"{b['median']:.3f} [{b['q25']:.3f}-{b['q75']:.3f}]"
        ratio = "-" if row.get("time_ratio") is None else f"{row['time_ratio']:.2f}"
        lines.append(f"{name:<20} {minutes:>24} {ratio:>7} {best:>20} {row['trials']:>7.0f}")
    return lines


def _min(seconds: float | None) -> str:
    return "inf" if seconds is None else f"{seconds / 60:.1f}"
