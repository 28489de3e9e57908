"""search.strategy: the samplers and schedulers a sweep (and a replay) is built from."""

import numpy as np
import optuna
import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

from search.space import Param
from search.strategy import (
    OpenGridSampler,
    brackets,
    make_sampler,
    make_scheduler,
    neighbours,
    replace_repeat,
    replacement,
)
from tal_core.config import ConfigError, SearchConfig, load_config

PARAMS = (Param("train.lr", "categorical", values=(0.001, 0.003)), Param("loss.scene_weight", "float", low=0, high=1))


def _draws(sampler, count: int) -> list[float]:
    """The values ``sampler`` proposes for one float key, each told back as its own value (minimised)."""
    study = optuna.create_study(sampler=sampler)
    space = {"loss.scene_weight": PARAMS[1].distribution()}
    draws = []
    for _ in range(count):
        trial = study.ask(space)
        study.tell(trial, trial.params["loss.scene_weight"])
        draws.append(trial.params["loss.scene_weight"])
    return draws


def test_each_sampler_name_builds_its_optuna_sampler_with_the_options():
    assert isinstance(make_sampler(SearchConfig(sampler="random"), PARAMS), optuna.samplers.RandomSampler)
    assert isinstance(make_sampler(SearchConfig(sampler="grid"), PARAMS[:1]), OpenGridSampler)
    # TPE's first startup_trials proposals are its random sampler's (same seed), then its model's
    tpe = _draws(make_sampler(SearchConfig(startup_trials=3, seed=1), PARAMS), 5)
    plain = _draws(optuna.samplers.RandomSampler(seed=1), 5)
    assert tpe[:3] == plain[:3] and tpe[3:] != plain[3:]
    default = _draws(make_sampler(SearchConfig(seed=1), PARAMS), 3)  # one per searched key (2), at least 2
    assert default[:2] == plain[:2] and default[2] != plain[2]
    plain, joint, liar = (_two_running(SearchConfig(seed=3, **option)) for option in
                          ({}, {"multivariate": True}, {"constant_liar": True}))
    assert joint[0] != plain[0]  # the joint model proposes otherwise
    assert liar[0] == plain[0] and liar[1] != plain[1]  # the liar changes only the proposal made beside a running one


def _two_running(search: SearchConfig) -> tuple[dict, dict]:
    """After 6 finished trials on a 2-key problem, two proposals asked before either finishes."""
    keys = (Param("a", "float", low=0, high=1), Param("b", "float", low=0, high=1))
    space = {p.key: p.distribution() for p in keys}
    study = optuna.create_study(sampler=make_sampler(search, keys))
    for _ in range(6):
        trial = study.ask(space)
        study.tell(trial, (trial.params["a"] - 0.3) ** 2 + (trial.params["b"] - 0.7) ** 2)
    return study.ask(space).params, study.ask(space).params


def test_the_grid_sampler_takes_results_after_every_point_started():
    """Optuna's GridSampler calls study.stop() there, which raises outside study.optimize (a whole-grid sweep
    failed on its last trials)."""
    study = optuna.create_study(direction="maximize", sampler=make_sampler(SearchConfig(sampler="grid"), PARAMS[:1]))
    space = {p.key: p.distribution() for p in PARAMS[:1]}
    asked = [study.ask(space) for _ in range(2)]
    for trial in asked:
        study.tell(trial, 0.5)
    assert sorted(t.params["train.lr"] for t in study.trials) == [0.001, 0.003]


def test_schedulers_follow_search_scheduler_and_the_older_asha_switch():
    assert isinstance(make_scheduler(SearchConfig(scheduler="fifo"), 12), FIFOScheduler)
    assert isinstance(make_scheduler(SearchConfig(asha=False), 12), FIFOScheduler)
    asha = make_scheduler(SearchConfig(grace_period=20), 12)
    assert isinstance(asha, AsyncHyperBandScheduler)
    assert asha.debug_string().splitlines()[1:] == ["Bracket: Iter 12.000: None"]  # grace capped at the budget
    hyperband = make_scheduler(SearchConfig(scheduler="hyperband", grace_period=1, reduction_factor=3), 12)
    assert [line.count("Iter") for line in hyperband.debug_string().splitlines()[1:]] == [3, 2, 1]
    assert brackets(12, 1, 3) == 3 and brackets(12, 6, 2) == 2 and brackets(4, 4, 2) == 1


def test_a_bad_scheduler_or_sampler_names_the_key():
    with pytest.raises(ConfigError, match="search.scheduler"):
        load_config(None, {"search.scheduler": "median"})
    with pytest.raises(ConfigError, match="search.sampler"):
        load_config(None, {"search.sampler": "cmaes"})


def test_only_a_repeated_proposal_is_replaced():
    keys = PARAMS[:1]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = {p.key: p.distribution() for p in keys}
    rng = np.random.default_rng(0)
    first = study.ask(space)
    assert replace_repeat(study, first, keys, rng) is None and first.params["train.lr"] in (0.001, 0.003)
    study.tell(first, 0.5)
    study.enqueue_trial(first.params)  # a sampler proposing the same point again
    again = study.ask(space)
    fresh = replace_repeat(study, again, keys, rng)
    assert fresh == {"train.lr": ({0.001, 0.003} - {first.params["train.lr"]}).pop()}
    assert study.trials[again.number].state == optuna.trial.TrialState.FAIL
    assert study.ask(space).params == fresh  # the replacement is what the next ask hands out


GRID = (Param("train.lr", "categorical", values=(0.001, 0.003, 0.01)),
        Param("model.shift_fraction", "categorical", values=(0.0, 0.125, 0.25)),
        Param("train.epochs", "int", low=2, high=4))


def _distance(a: dict, b: dict) -> int:
    return sum(a[k] != b[k] for k in a)


def test_a_repeat_is_replaced_by_an_untried_configuration_one_key_away():
    tpe_favourite = {"train.lr": 0.003, "model.shift_fraction": 0.25, "train.epochs": 4}
    tried = [tpe_favourite, {**tpe_favourite, "train.lr": 0.001}]
    away = [replacement(tpe_favourite, tried, GRID, np.random.default_rng(seed)) for seed in range(30)]
    assert all(_distance(r, tpe_favourite) == 1 and r not in tried for r in away)
    # every untried neighbour is reachable: lr 0.01, shift 0 or 1/8, epochs 3 (4 + 1 is out of range)
    assert {tuple(r.values()) for r in away} == {(0.01, 0.25, 4), (0.003, 0.0, 4), (0.003, 0.125, 4), (0.003, 0.25, 3)}
    randomly = [replacement(tpe_favourite, tried, GRID, np.random.default_rng(seed), nearest=False)
                for seed in range(30)]
    assert any(_distance(r, tpe_favourite) > 1 for r in randomly) and not any(r in tried for r in randomly)


def test_with_every_neighbour_tried_a_repeat_is_replaced_by_a_random_untried_configuration():
    centre = {"train.lr": 0.003, "model.shift_fraction": 0.25, "train.epochs": 4}
    tried = [centre] + neighbours(centre, GRID, np.random.default_rng(0))
    assert len(tried) == 6  # itself, 2 other lrs, 2 other shifts, epochs 3
    fresh = replacement(centre, tried, GRID, np.random.default_rng(1))
    assert fresh not in tried and _distance(fresh, centre) >= 2
    assert replacement({**centre, "train.lr": 0.01, "train.epochs": 2}, tried, GRID, np.random.default_rng(1)) is None


def test_float_ranges_have_no_neighbours():
    assert neighbours({"train.lr": 0.001, "loss.scene_weight": 0.3}, PARAMS, np.random.default_rng(0)) == [
        {"train.lr": 0.003, "loss.scene_weight": 0.3}]
