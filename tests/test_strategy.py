"""search.strategy: the samplers and schedulers a sweep (and a replay) is built from."""

import optuna
import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

from search.space import Param
from search.strategy import OpenGridSampler, brackets, make_sampler, make_scheduler
from tal_core.config import ConfigError, SearchConfig, load_config

PARAMS = (Param("train.lr", "categorical", values=(0.001, 0.003)), Param("loss.scene_weight", "float", low=0, high=1))


def test_each_sampler_name_builds_its_optuna_sampler_with_the_options():
    tpe = make_sampler(SearchConfig(startup_trials=5, multivariate=True, constant_liar=True), PARAMS)
    assert isinstance(tpe, optuna.samplers.TPESampler)
    assert tpe._n_startup_trials == 5 and tpe._multivariate and tpe._constant_liar
    assert make_sampler(SearchConfig(), PARAMS)._n_startup_trials == 2  # one per key, at least 2
    assert isinstance(make_sampler(SearchConfig(sampler="random"), PARAMS), optuna.samplers.RandomSampler)
    assert isinstance(make_sampler(SearchConfig(sampler="grid"), PARAMS[:1]), OpenGridSampler)


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
    assert isinstance(asha, AsyncHyperBandScheduler) and len(asha._brackets) == 1
    assert asha._brackets[0]._rungs[-1][0] == 12  # the grace period is capped at the budget
    hyperband = make_scheduler(SearchConfig(scheduler="hyperband", grace_period=1, reduction_factor=3), 12)
    assert len(hyperband._brackets) == 3
    assert brackets(12, 1, 3) == 3 and brackets(12, 6, 2) == 2 and brackets(4, 4, 2) == 1


def test_a_bad_scheduler_or_sampler_names_the_key():
    with pytest.raises(ConfigError, match="search.scheduler"):
        load_config(None, {"search.scheduler": "median"})
    with pytest.raises(ConfigError, match="search.sampler"):
        load_config(None, {"search.sampler": "cmaes"})
