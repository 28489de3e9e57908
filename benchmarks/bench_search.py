"""Search efficiency on a recorded sweep: how much sooner TPE + ASHA finds what random search finds.

Replays ``benchmarks/data/replay_hard48.json`` (48 configurations of the hard preset: learning rate 0.0003-0.01 x
shift fraction x scene-loss weight x frame-loss weight, each trained to its full 12 epochs, two trials at a time:
see replay_hard48.yaml beside it) with ``talsearch replay``'s simulator: Ray Tune's own schedulers and Optuna's
own samplers, the recorded start-up and epoch times, the sweep's real concurrency, 100 seeds per strategy, the
search defaults of ``configs/base.yaml``, a uniform clock (every epoch costs the table's median epoch time, every
start-up the median start-up: the recordings shared their CPUs with other jobs for part of their trials; the
recorded clock's ratio is printed too as ``tpe_asha_time_ratio_recorded_clock``). The target is random search's
median best at the budget (every recorded trial once); per strategy: median simulated time to it over random
search's. One JSON line: ``tpe_asha_time_ratio`` (<= 0.33 wanted) with its bootstrap 90% interval and the
quartiles of its times, ``tpe_time_ratio`` (TPE without early stopping), ``random_asha_time_ratio``;
``tpe_asha_time_ratio_random_replacement`` (the other ``search.repeat_replacement``: what replacing TPE's repeats
by an untried neighbour instead of a random configuration is worth); the same
ratios on the earlier 27-configuration table (``replay_hard.json``, a narrower space around good learning rates)
under ``table_replay_hard``.

    python benchmarks/bench_search.py [--table FILE] [--also FILE ...] [--seeds 100] [--plot best_so_far.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.replay import Strategy, default_budget, run_strategies, summarize, time_ratio_interval  # noqa: E402
from search.replay_table import load_table  # noqa: E402
from tal_core.config import load_config  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
TABLE = DATA / "replay_hard48.json"  # the wider space: 48 configurations, the learning rate over 1.5 decades
OTHER_TABLES = (DATA / "replay_hard.json",)  # 27 configurations around good learning rates
STRATEGIES = [Strategy("random", "fifo"), Strategy("tpe", "fifo"), Strategy("random", "asha"),
              Strategy("tpe", "asha")]
NAMES = {"tpe+asha": "tpe_asha_time_ratio", "tpe+fifo": "tpe_time_ratio", "random+asha": "random_asha_time_ratio"}


def measure(table_path: Path, seeds: int, plot_path: Path | None = None, clock: str = "uniform") -> dict:
    recorded = load_table(table_path)
    table = recorded.uniform_clock() if clock == "uniform" else recorded
    search = load_config(None).search  # the defaults a sweep runs with
    workers = table.concurrency
    budget = default_budget(table, workers)
    started = time.perf_counter()
    traces = run_strategies(table, search, STRATEGIES, workers, list(range(seeds)), budget)
    summary = summarize(traces, budget, None, reference="random+fifo")
    result = {"bench": "search", "table": table_path.name, "recorded_trials": len(table.trials), "clock": clock,
              "workers": workers, "seeds": seeds, "budget_min": round(budget / 60, 1), "target": summary["target"],
              "grace_period": search.grace_period, "reduction_factor": search.reduction_factor,
              "avoid_repeats": search.avoid_repeats, "repeat_replacement": search.repeat_replacement}
    for name, key in NAMES.items():
        row = summary["strategies"][name]
        result[key] = row["time_ratio"]
        result[f"{key}_interval"] = time_ratio_interval(traces, name, summary["target"])  # None: not reached
    for name, row in summary["strategies"].items():
        times = row["time_to_target_s"]
        result[f"{name}_minutes"] = [None if v is None else round(v / 60, 2) for v in
                                     (times["q25"], times["median"], times["q75"])]
        result[f"{name}_best_at_budget"] = row["best_at_budget"]["median"]
    other = "random" if search.repeat_replacement == "nearest" else "nearest"  # what the replacement rule is worth
    swapped = run_strategies(table, search.model_copy(update={"repeat_replacement": other}), [STRATEGIES[3]], workers,
                             list(range(seeds)), budget)
    reference = {"random+fifo": traces["random+fifo"]}
    result[f"tpe_asha_time_ratio_{other}_replacement"] = summarize(reference | swapped, budget, summary["target"])[
        "strategies"]["tpe+asha"]["time_ratio"]
    if clock == "uniform":  # the same strategies on the times as recorded
        budget_rec = default_budget(recorded, workers)
        pair = run_strategies(recorded, search, [STRATEGIES[0], STRATEGIES[3]], workers, list(range(seeds)), budget_rec)
        result["tpe_asha_time_ratio_recorded_clock"] = summarize(pair, budget_rec, None)["strategies"]["tpe+asha"][
            "time_ratio"]
    result["seconds"] = round(time.perf_counter() - started, 1)
    if plot_path is not None:
        from search.replay import plot

        plot(traces, budget, table.metric, plot_path)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--also", type=Path, nargs="*", default=None,
                        help=f"tables whose ratios are printed beside it (default with the default table: "
                             f"{', '.join(t.name for t in OTHER_TABLES)})")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--clock", choices=("uniform", "recorded"), default="uniform")
    args = parser.parse_args()
    result = measure(args.table, args.seeds, args.plot, args.clock)
    also = args.also if args.also is not None else (OTHER_TABLES if args.table == TABLE else ())
    for other in also:
        row = measure(Path(other), args.seeds, None, args.clock)
        result[f"table_{Path(other).stem}"] = {k: v for k, v in row.items() if "ratio" in k or k in (
            "recorded_trials", "budget_min", "target", "tpe+asha_minutes", "random+fifo_minutes")}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
