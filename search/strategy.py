"""How a sweep searches: the Optuna sampler that proposes and the Ray Tune scheduler that stops.

One place builds both from ``search.*`` so that ``talsearch sweep`` and ``talsearch replay`` (which drives the
same classes on a simulated clock) can never disagree about a strategy.
"""

from __future__ import annotations

import math

import optuna

from tal_core.config import SearchConfig

from .space import Param

MAX_BRACKETS = 3


class OpenGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler, except that it never calls ``study.stop()`` once every point has started: that call
    is only allowed inside ``study.optimize`` and raises in a ``tell`` from Ray Tune (or a replay), which end a
    grid sweep by its number of trials instead (a sweep over the whole grid failed on its last trials)."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def replaces_with_nearest(search: SearchConfig) -> bool:
    """Whether a repeated proposal is replaced by an untried neighbour (``search.repeat_replacement``): TPE's
    repeat is its model's favourite, so the next best guess is next door; a random sampler's repeat says nothing,
    and random search stays random search without repeats."""
    return search.repeat_replacement == "nearest" and search.sampler == "tpe"


def startup_trials(search: SearchConfig, params: tuple[Param, ...]) -> int:
    """TPE's random start-up proposals: ``search.startup_trials``, else one per searched key (at least 2)."""
    return search.startup_trials or max(2, len(params))


def make_sampler(search: SearchConfig, params: tuple[Param, ...], seed: int | None = None):
    """The Optuna sampler of ``search.sampler`` (seeded with ``seed``, else ``search.seed``)."""
    seed = search.seed if seed is None else seed
    if search.sampler == "grid":
        return OpenGridSampler({p.key: list(p.values) for p in params}, seed=seed)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(search, params),
                                      multivariate=search.multivariate, constant_liar=search.constant_liar)


def brackets(max_t: int, grace_period: int, reduction_factor: int) -> int:
    """Hyperband's brackets: as many as have at least one rung between the grace period and ``max_t`` (<= 3)."""
    rungs = math.floor(math.log(max_t / grace_period) / math.log(reduction_factor) + 1e-9)
    return max(1, min(MAX_BRACKETS, rungs + 1))


def make_scheduler(search: SearchConfig, max_t: int, metric: str | None = None):
    """The Ray Tune scheduler of ``search.stopper`` over epochs (``metric`` and mode given where Tune does not
    pass them, as in a replay)."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

    if search.stopper == "fifo":
        return FIFOScheduler()
    grace = min(search.grace_period, max_t)
    count = 1 if search.stopper == "asha" else brackets(max_t, grace, search.reduction_factor)
    return AsyncHyperBandScheduler(time_attr="epoch", max_t=max_t, grace_period=grace,
                                   reduction_factor=search.reduction_factor, brackets=count,
                                   metric=metric, mode="max" if metric else None)


def describe(search: SearchConfig) -> str:
    """A strategy's name: ``<sampler>+<scheduler>`` (as the replay's tables name it)."""
    return f"{search.sampler}+{search.stopper}"


def tried_params(study, but: int) -> list[dict]:
    """The configurations of the study's trials other than trial number ``but`` that ran or are running."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return [t.params for t in study.get_trials(deepcopy=False, states=states) if t.number != but]


def replace_repeat(study, trial, space: tuple[Param, ...], rng, nearest: bool = True):
    """None when ``trial``'s configuration is untried; else the configuration it is replaced by (the repeat is
    told to Optuna as FAIL with the user attribute ``repeat_of_a_tried_configuration`` and the replacement is
    queued for the next ``ask``), or None when every configuration was tried. ``nearest``: see ``replacement``."""
    from optuna.trial import TrialState

    fresh = replacement(trial.params, tried_params(study, trial.number), space, rng, nearest)
    if fresh is None:
        return None
    trial.set_user_attr("repeat_of_a_tried_configuration", True)
    study.tell(trial, state=TrialState.FAIL)
    study.enqueue_trial(fresh, skip_if_exists=False)
    return fresh


def replacement(params: dict, tried: list[dict], space: tuple[Param, ...], rng, nearest: bool = True) -> dict | None:
    """None when ``params`` stays: no trial has tried that configuration yet, or 50 draws find no untried one
    (every point of a small grid tried); else a configuration of ``space`` none has tried. ``nearest``: one
    searched key away from ``params`` where one is untried (random among those, ``neighbours``): the sampler
    re-proposes the point its model favours, so the next best guess is next door (in the replay of the recorded
    hard sweep TPE + ASHA reached random search's best in 0.30 of its time this way, 0.38 with random
    replacements: docs/performance.md). Otherwise a random configuration (categorical values uniformly, ranges
    as Optuna's RandomSampler draws them)."""
    seen = {_key(p, space) for p in tried}
    if _key(params, space) not in seen:
        return None
    if nearest:
        untried = next((n for n in neighbours(params, space, rng) if _key(n, space) not in seen), None)
        if untried is not None:
            return untried
    for _ in range(50):
        draw = {p.key: _draw(p, rng) for p in space}
        if _key(draw, space) not in seen:
            return draw
    return None


def neighbours(params: dict, space: tuple[Param, ...], rng) -> list[dict]:
    """The configurations one searched key away from ``params``, in a random order: another value of a
    categorical key, or an integer key one step up or down within its range. Float ranges have no neighbours
    (a repeat there is a repeat of a queued point, and a random draw replaces it)."""
    found = []
    for param in space:
        current = params.get(param.key)
        if param.kind == "categorical":
            others = [v for v in param.values if repr(v) != repr(current)]
        elif param.kind == "int" and current is not None:
            others = [v for v in (int(current) - 1, int(current) + 1) if param.low <= v <= param.high]
        else:
            others = []
        found += [{**params, param.key: value} for value in others]
    return [found[i] for i in rng.permutation(len(found))]


def _key(params: dict, space: tuple[Param, ...]) -> tuple:
    return tuple(repr(params.get(p.key)) for p in space)


def _draw(param: Param, rng):
    if param.kind == "categorical":
        return param.values[int(rng.integers(len(param.values)))]
    low, high = float(param.low), float(param.high)
    if param.log:
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    return int(round(value)) if param.kind == "int" else value
