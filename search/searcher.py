"""OptunaSearch that tells Optuna the truth about trials ASHA stopped early, and does not train a configuration
twice.

Plain OptunaSearch records an ASHA-stopped trial as COMPLETE with its truncated
value, as if it had run the full budget. Here such a trial is recorded as PRUNED
with its last value as an intermediate value at its epoch, which is what Optuna's
samplers expect for partial evaluations (TPE ranks pruned trials below complete
ones by the step they reached).

With ``avoid_repeats``, a proposal equal to a configuration a trial already tried (TPE keeps re-proposing its
favourite point of a categorical space) is replaced by an untried one, by default one searched key away
(``strategy.replace_repeat``).

A resumed sweep may run a trial again that the study already holds as finished: the killed driver told the
study after Tune's last snapshot of this searcher, which ``--resume`` restores. Its results are then not told a
second time (Optuna refuses to update a finished trial, and the resumed sweep would stop on it).
"""

from __future__ import annotations

import logging

import numpy as np
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from .ray_compat import forget_optuna_trial, optuna_study, optuna_trial, told_trials
from .space import Param
from .strategy import replace_repeat

logger = logging.getLogger(__name__)


class BudgetAwareOptunaSearch(OptunaSearch):
    def __init__(self, *args, full_budget: int, params: tuple[Param, ...] = (), avoid_repeats: bool = False,
                 seed: int = 0, nearest_replacement: bool = True, **kwargs):
        """``full_budget``: the epochs of a trial whose ``train.epochs`` is not searched; a trial that samples
        ``train.epochs`` has that many as its own full budget. ``params``: the searched keys (for
        ``avoid_repeats``' replacements, seeded with ``seed``: one key away with ``nearest_replacement``, see
        ``strategy.replacement``)."""
        super().__init__(*args, **kwargs)
        self.full_budget = full_budget
        self.params, self.avoid_repeats = params, avoid_repeats
        self.nearest = nearest_replacement
        self.replacements = np.random.default_rng(seed)

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if not self.avoid_repeats or config is None:
            return config
        if replace_repeat(optuna_study(self), optuna_trial(self, trial_id), self.params, self.replacements,
                          self.nearest) is None:
            return config
        forget_optuna_trial(self, trial_id)
        return super().suggest(trial_id)  # asks again: Optuna hands out the queued replacement

    def budget_of(self, trial_id: str) -> int:
        ot_trial = optuna_trial(self, trial_id)
        params = ot_trial.params if ot_trial is not None else {}
        return int(params.get("train.epochs", self.full_budget))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in told_trials(self):
            return
        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            self._told_before(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in told_trials(self) and self._finished_in_study(trial_id):
            self._told_before(trial_id)
            return
        value = (result or {}).get(self.metric)
        reached = int((result or {}).get("epoch", (result or {}).get("training_iteration", 0)))
        if error or value is None or reached >= self.budget_of(trial_id) or trial_id in told_trials(self):
            super().on_trial_complete(trial_id, result, error)
            return
        ot_trial = optuna_trial(self, trial_id)
        try:
            ot_trial.report(float(value), step=reached)
            optuna_study(self).tell(ot_trial, state=TrialState.PRUNED)
        except Exception as exc:  # e.g. NaN value
            logger.warning(exc)
        told_trials(self).add(trial_id)

    def _finished_in_study(self, trial_id: str) -> bool:
        ot_trial = optuna_trial(self, trial_id)
        if ot_trial is None:
            return False
        (stored,) = [t for t in optuna_study(self).get_trials(deepcopy=False) if t.number == ot_trial.number]
        return stored.state.is_finished()

    def _told_before(self, trial_id: str) -> None:
        """The study holds the trial as finished already (a resumed sweep runs it again): nothing more is told."""
        told_trials(self).add(trial_id)
        logger.info(f"[sweep] trial {trial_id}: the study already holds it as finished (told before the sweep was "
                    "interrupted); its results of this run are not told again")
