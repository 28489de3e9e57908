import optuna
import optuna.distributions as od

from helpers import write_sweep_file
from search.searcher import BudgetAwareOptunaSearch
from search.space import Param, load_sweep


def test_stopped_early_trials_are_pruned_not_complete(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/o.db")
    searcher = BudgetAwareOptunaSearch(space={"train.lr": od.FloatDistribution(1e-3, 1e-2, log=True)},
                                       metric="val_mAP", mode="max", storage=storage, study_name="s",
                                       sampler=optuna.samplers.TPESampler(seed=0), full_budget=6)
    assert "train.lr" in searcher.suggest("a")
    searcher.on_trial_complete("a", {"val_mAP": 0.3, "epoch": 2.0, "training_iteration": 2})
    searcher.suggest("b")
    searcher.on_trial_complete("b", {"val_mAP": 0.5, "epoch": 6.0, "training_iteration": 3})  # a restarted trial
    searcher.suggest("c")
    searcher.on_trial_complete("c", None, error=True)
    states = [t.state for t in optuna.load_study(study_name="s", storage=storage).trials]
    assert states == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE,
                      optuna.trial.TrialState.FAIL]
    pruned = optuna.load_study(study_name="s", storage=storage).trials[0]
    assert pruned.intermediate_values == {2: 0.3}


def test_space_builds_optuna_distributions(tmp_path):
    spec = load_sweep(write_sweep_file(tmp_path))
    space = spec.optuna_space()
    assert isinstance(space["train.lr"], od.FloatDistribution) and space["train.lr"].log
    assert spec.config_for({"model.shift_fraction": 0.25}).model.shift_fraction == 0.25


def test_a_trial_that_completes_its_own_sampled_budget_is_complete(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/o.db")
    searcher = BudgetAwareOptunaSearch(space={"train.epochs": od.CategoricalDistribution([2, 6])},
                                       metric="val_mAP", mode="max", storage=storage, study_name="s",
                                       sampler=optuna.samplers.TPESampler(seed=0), full_budget=4,
                                       params=(Param("train.epochs", "categorical", values=(2, 6)),),
                                       avoid_repeats=True)
    epochs = {}
    for trial_id in "abcd":
        epochs[trial_id] = searcher.suggest(trial_id)["train.epochs"]
        searcher.on_trial_complete(trial_id, {"val_mAP": 0.4, "epoch": float(epochs[trial_id])})
    assert set(epochs.values()) == {2, 6}  # both budgets drawn (the second proposal cannot repeat the first)
    study = optuna.load_study(study_name="s", storage=storage)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials
               if not t.user_attrs.get("repeat_of_a_tried_configuration"))
    searcher.suggest("e")
    searcher.on_trial_complete("e", {"val_mAP": 0.1, "epoch": 1.0})
    assert optuna.load_study(study_name="s", storage=storage).trials[-1].state == optuna.trial.TrialState.PRUNED


def test_a_repeated_configuration_is_replaced_by_an_untried_one_until_all_were_tried(tmp_path):
    keys = (Param("model.shift_fraction", "categorical", values=(0.0, 0.125, 0.25)),
            Param("model.output", "categorical", values=("interval", "frame")))
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/o.db")
    searcher = BudgetAwareOptunaSearch(space={p.key: p.distribution() for p in keys}, metric="val_mAP", mode="max",
                                       storage=storage, study_name="s", sampler=optuna.samplers.TPESampler(seed=0,
                                       n_startup_trials=1), full_budget=2, params=keys, avoid_repeats=True)
    seen = []
    for number in range(8):  # TPE's model favours the first (best) point; every proposal is new until all 6 ran
        config = searcher.suggest(f"t{number}")
        seen.append((config["model.shift_fraction"], config["model.output"]))
        searcher.on_trial_complete(f"t{number}", {"val_mAP": 0.9 if number == 0 else 0.1, "epoch": 2.0})
    assert len(set(seen[:6])) == 6
    study = optuna.load_study(study_name="s", storage=storage)
    replaced = [t for t in study.trials if t.user_attrs.get("repeat_of_a_tried_configuration")]
    assert all(t.state == optuna.trial.TrialState.FAIL for t in replaced)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE  # a new proposal is kept, never replaced
    for repeat in replaced:  # each replaced proposal repeated a configuration an earlier trial ran
        earlier = [t.params for t in study.trials if t.number < repeat.number and t.state.is_finished()
                   and not t.user_attrs.get("repeat_of_a_tried_configuration")]
        assert repeat.params in earlier
    ran = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert [(t.params["model.shift_fraction"], t.params["model.output"]) for t in ran] == seen


def test_a_resumed_sweep_does_not_tell_the_study_twice_about_a_trial_it_finished(tmp_path):
    """The driver told the study that trial a finished, then was killed before Tune's next snapshot of the
    searcher; ``--resume`` restores the older snapshot and runs a again: its results are not told again (Optuna
    refuses to update a finished trial: the resumed sweep stopped with UpdateFinishedTrialError) and the study
    keeps what it was told first."""
    def searcher():
        storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/o.db")
        return BudgetAwareOptunaSearch(space={"train.lr": od.FloatDistribution(1e-3, 1e-2, log=True)},
                                       metric="val_mAP", mode="max", storage=storage, study_name="s",
                                       sampler=optuna.samplers.TPESampler(seed=0), full_budget=2)

    first = searcher()
    first.suggest("a")
    first.save(str(tmp_path / "snapshot.pkl"))  # Tune's last snapshot before the kill: a still running
    first.on_trial_result("a", {"val_mAP": 0.4, "training_iteration": 1, "epoch": 1})
    first.on_trial_complete("a", {"val_mAP": 0.5, "training_iteration": 2, "epoch": 2})
    resumed = searcher()
    resumed.restore(str(tmp_path / "snapshot.pkl"))
    resumed.on_trial_result("a", {"val_mAP": 0.7, "training_iteration": 1, "epoch": 1})
    resumed.on_trial_complete("a", {"val_mAP": 0.9, "training_iteration": 2, "epoch": 2})
    resumed.suggest("b")  # the resumed sweep goes on
    resumed.on_trial_complete("b", {"val_mAP": 0.6, "training_iteration": 2, "epoch": 2})
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/o.db").trials
    assert [(t.state, t.value) for t in trials] == [(optuna.trial.TrialState.COMPLETE, 0.5),
                                                    (optuna.trial.TrialState.COMPLETE, 0.6)]
    assert trials[0].intermediate_values == {1: 0.4}
