"""talsearch replay: strategies on a simulated clock over recorded learning curves (no Ray cluster needed:
Ray's scheduler classes and Optuna's samplers run in-process)."""

import json
import math
import subprocess
import sys

import pytest

from search.replay import Strategy, default_budget, replay_recorded, run_strategies, simulate, summarize
from search.replay_run import replay
from search.replay_table import RecordedTrial, ReplayTable, load_table
from search.space import Param
from tal_core.config import SearchConfig
from talsearch.cli import main

SPACE = (Param("train.lr", "categorical", values=(0.001, 0.003, 0.01)),
         Param("model.shift_fraction", "categorical", values=(0.0, 0.25)))
QUALITY = {(0.001, 0.0): 0.2, (0.003, 0.0): 0.3, (0.01, 0.0): 0.1,
           (0.001, 0.25): 0.5, (0.003, 0.25): 0.8, (0.01, 0.25): 0.4}


def curve(final: float, epochs: int) -> tuple[float, ...]:
    """A learning curve rising to ``final`` (good configurations are ahead early too)."""
    return tuple(round(final * (e + 1) / epochs, 4) for e in range(epochs))


def table(epochs=4, seconds=10.0, startup=5.0) -> ReplayTable:
    trials = tuple(RecordedTrial(f"t{i}", {"train.lr": lr, "model.shift_fraction": shift}, curve(q, epochs),
                                 (seconds,) * epochs, startup, budget=epochs)
                   for i, ((lr, shift), q) in enumerate(QUALITY.items()))
    return ReplayTable("test", "val_mAP", epochs, 2, SPACE, trials, {"grace_period": 1, "reduction_factor": 2})


def test_fifo_pays_start_up_and_every_epoch_and_keeps_the_best_so_far():
    t = table()
    trace = simulate(t, SearchConfig(sampler="random", scheduler="fifo"), workers=1, seed=0, budget_s=3 * 45.0)
    # one trial at a time: 5 s start-up + 4 x 10 s each, so 3 trials (12 epochs) fit in 135 s
    assert trace.trials == 4 and trace.epochs == 12
    assert trace.points[0][0] == pytest.approx(15.0)  # its first result: start-up + epoch 1
    values = [v for _, v in trace.points]
    assert values == sorted(values) and trace.best_at(1e9) == max(values)
    assert trace.best_at(14.0) != trace.best_at(14.0)  # nothing known before the first result (nan)


def test_asha_stops_poor_trials_so_more_configurations_fit_the_budget():
    t = table(epochs=8)
    budget = default_budget(t, workers=2)
    fifo = simulate(t, SearchConfig(sampler="random", scheduler="fifo"), 2, 0, budget)
    asha = simulate(t, SearchConfig(sampler="random", scheduler="asha", grace_period=1, reduction_factor=2), 2, 0,
                    budget)
    assert asha.trials > fifo.trials and asha.epochs <= fifo.epochs + 2


def test_a_uniform_clock_charges_every_epoch_the_median_time():
    t = table()
    slow = RecordedTrial(**{**t.trials[0].__dict__, "epoch_seconds": (30.0,) * 4, "startup_seconds": 50.0})
    uneven = ReplayTable(t.source, t.metric, t.max_epochs, 2, t.space, (slow, *t.trials[1:]), t.search)
    even = uneven.uniform_clock()
    assert all(tr.epoch_seconds == (10.0,) * 4 and tr.startup_seconds == 5.0 for tr in even.trials)
    assert [tr.values for tr in even.trials] == [tr.values for tr in uneven.trials]


def test_proposals_outside_the_table_come_from_the_nearest_and_are_counted():
    t = table()
    wide = ReplayTable(t.source, t.metric, t.max_epochs, 1,
                       (Param("train.lr", "float", low=0.001, high=0.01, log=True), SPACE[1]),
                       t.trials, t.search)
    recorded, exact = wide.nearest({"train.lr": 0.0029, "model.shift_fraction": 0.25})
    assert recorded.params == {"train.lr": 0.003, "model.shift_fraction": 0.25} and not exact
    assert wide.nearest({"train.lr": 0.01, "model.shift_fraction": 0.0}) == (t.trials[2], True)
    trace = simulate(wide, SearchConfig(sampler="random", scheduler="fifo"), 1, 0, 500.0)
    assert trace.inexact == trace.trials  # a random float never hits a recorded lr exactly


def test_replay_of_recorded_report_times_gives_the_asha_decisions_by_hand():
    # three trials one after another; ASHA (grace 1, rf 2) compares each at epoch 1 and 2 with those before it
    values = {"a": (0.5, 0.6, 0.7, 0.8), "b": (0.3, 0.4, 0.5, 0.6), "c": (0.6, 0.55, 0.5, 0.5)}
    trials, at = [], 0.0
    for name, curve_ in values.items():
        times = tuple(at + 10.0 * (e + 1) for e in range(4))
        trials.append(RecordedTrial(name, {}, curve_, (10.0,) * 4, 0.0, times, budget=4))
        at = times[-1]
    t = ReplayTable("test", "val_mAP", 4, 1, (), tuple(trials))
    stops = replay_recorded(t, SearchConfig(grace_period=1, reduction_factor=2))
    # b: 0.3 < a's 0.5 at epoch 1 -> stopped; c: above the epoch-1 median, below a's 0.6 at epoch 2 -> stopped
    assert stops == {"a": None, "b": 1, "c": 2}
    assert replay_recorded(t, SearchConfig(scheduler="fifo")) == {"a": None, "b": None, "c": None}


def test_summary_ranks_strategies_by_time_to_random_searchs_final_best():
    t = table(epochs=8)
    budget = default_budget(t, 2)
    traces = run_strategies(t, SearchConfig(grace_period=1, reduction_factor=2),
                            [Strategy("random", "fifo"), Strategy("tpe", "asha")], 2, list(range(5)), budget)
    summary = summarize(traces, budget, None)
    finals = sorted(run.best_at(budget) for run in traces["random+fifo"])
    assert summary["target"] == pytest.approx(finals[2], abs=1e-4)  # the median of 5
    assert summary["strategies"]["random+fifo"]["time_to_target_s"]["reached"] >= 3
    assert summary["strategies"]["random+fifo"]["time_ratio"] == 1.0
    times = sorted(run.time_to(summary["target"]) for run in traces["tpe+asha"])
    mine = summary["strategies"]["tpe+asha"]["time_to_target_s"]["median"]
    assert (mine is None and math.isinf(times[2])) or mine == pytest.approx(times[2], abs=1e-3)


def test_repeats_of_tpe_are_replaced_next_door_and_random_search_stays_random():
    t = table(epochs=2)
    budget = default_budget(t, workers=1) * 3  # long enough for every configuration and many repeats

    def points(sampler, replacement, seed):
        trace = simulate(t, SearchConfig(sampler=sampler, scheduler="fifo", repeat_replacement=replacement), 1, seed,
                         budget)
        return trace.points, len(trace.configurations)

    for seed in range(3):  # the random sampler's replacements do not depend on the rule
        assert points("random", "nearest", seed) == points("random", "random", seed)
    tpe = [(points("tpe", "nearest", seed), points("tpe", "random", seed)) for seed in range(6)]
    assert any(near != rand for near, rand in tpe)  # the rule reaches TPE's replacements
    assert all(near[1] == len(QUALITY) for near, _ in tpe)  # and every configuration still gets tried


def test_table_file_round_trip_and_the_command(tmp_path):
    path = table().save(tmp_path / "table.json")
    again = load_table(path)
    assert again == table()
    result = replay(path, ["random", "grid"], ["fifo", "asha"], workers=2, seeds=3, plot_path=tmp_path / "p.png")
    assert set(result["strategies"]) == {"random+fifo", "random+asha", "grid+fifo", "grid+asha"}
    assert result["strategies"]["grid+fifo"]["best_at_budget"]["median"] == 0.8  # the grid visits every point
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    done = subprocess.run([sys.executable, "-m", "talsearch.cli", "replay", str(path), "--seeds", "2",
                           "--searcher", "tpe", "--scheduler", "hyperband", "--grace-period", "1",
                           "--repeat-replacement", "random"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert list(out["strategies"]) == ["tpe+hyperband"] and out["settings"]["grace_period"] == 1
    assert out["settings"]["repeat_replacement"] == "random"
    assert "tpe+hyperband" in done.stderr  # the human table


def write(path, value):
    path.write_text(json.dumps(value))
    return path


def test_bad_sources_and_settings_exit_2_naming_them(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{}")
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "sweep.json").write_text(json.dumps({"trials": {}}))
    cases = [([str(tmp_path / "missing")], "neither a sweep folder"),
             ([str(tmp_path / "x.json")], "not a replay table"),
             ([str(tmp_path / "unfinished")], "has not finished"),
             ([str(write(tmp_path / "half.json", {"format": "talsearch-replay-table/1", "space": {}}))],
              "malformed replay table"),
             ([str(table().save(tmp_path / "t.json")), "--reduction-factor", "1"], "search.reduction_factor")]
    for args, needle in cases:
        assert main(["replay", *args, "--seeds", "1"]) == 2
        error = capsys.readouterr().err
        assert needle in error and len(error.strip().splitlines()) == 1, error
