"""Warm starts: an earlier sweep's trials seed a new sweep's study before its first proposal."""

import json

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from search.searcher import BudgetAwareOptunaSearch
from search.space import load_sweep
from search.warm_start import load_warm_start, seed_study
from tal_core.config import ConfigError, load_config

SPACE = {"train.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True),
         "model.shift_fraction": optuna.distributions.CategoricalDistribution([0.0, 0.25])}


def old_sweep(folder, lrs, shifts, epochs=2):
    """A finished sweep folder: its study (one PRUNED trial), sweep.json and a trial config."""
    folder.mkdir(parents=True)
    study = optuna.create_study(storage=f"sqlite:///{folder / 'optuna.db'}", study_name="old", direction="maximize")
    for i, (lr, shift) in enumerate(zip(lrs, shifts, strict=True)):
        pruned = i == 0
        study.add_trial(optuna.trial.create_trial(
            params={"train.lr": lr, "model.shift_fraction": shift}, distributions=SPACE,
            state=TrialState.PRUNED if pruned else TrialState.COMPLETE, value=None if pruned else 0.1 * i,
            intermediate_values={1: 0.05 * i}))
    (folder / "sweep.json").write_text(json.dumps({"study_name": "old", "trials": {}}))
    (folder / "trials" / "t0").mkdir(parents=True)
    cfg = load_config(None, {"train.epochs": epochs}).model_dump(mode="json")
    (folder / "trials" / "t0" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return folder


def sweep_file(folder, lr_high=1e-2, epochs=2):
    path = folder / "new.yaml"
    path.write_text(f"""
train: {{epochs: {epochs}}}
space:
  train.lr: {{type: float, low: 1.0e-3, high: {lr_high}, log: true}}
  model.shift_fraction: {{type: categorical, values: [0.0, 0.25]}}
""")
    return load_sweep(path)


def test_the_sampler_sees_the_old_trials_before_its_first_proposal(tmp_path):
    old = old_sweep(tmp_path / "old", [2e-3, 3e-3, 5e-3, 8e-3], [0.0, 0.25, 0.25, 0.0])
    spec = sweep_file(tmp_path)
    warm = load_warm_start(old, spec)
    assert len(warm.trials) == 4 and not warm.skipped
    assert warm.trials[0].state == TrialState.PRUNED and warm.trials[0].intermediate_values == {1: 0.0}
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'new.db'}")
    seed_study(storage, "new", warm)
    searcher = BudgetAwareOptunaSearch(space=spec.optuna_space(), metric="val_mAP", mode="max", storage=storage,
                                       study_name="new", full_budget=2)
    assert searcher.suggest("first") is not None
    study = optuna.load_study(study_name="new", storage=storage)
    assert len(study.trials) == 5 and study.trials[-1].number == 4  # the first proposal came after the 4
    assert [t.value for t in study.trials[1:4]] == [0.1, 0.2, 0.30000000000000004]


def test_trials_that_no_longer_fit_are_left_out_and_counted_by_reason(tmp_path):
    old = old_sweep(tmp_path / "old", [2e-3, 9e-3, 5e-3], [0.0, 0.25, 0.25])
    warm = load_warm_start(old, sweep_file(tmp_path, lr_high=6e-3))  # the range shrank: 9e-3 is outside
    assert len(warm.trials) == 2 and sum(warm.skipped.values()) == 1
    assert "train.lr=0.009 is outside the new space" in next(iter(warm.skipped))
    changed = load_warm_start(old, sweep_file(tmp_path, epochs=5))  # a fixed setting changed: nothing fits
    assert not changed.trials and "train.epochs=2 but the new sweep fixes 5" in next(iter(changed.skipped))
    assert changed.summary()["skipped"] == 3


def test_warm_start_from_a_folder_that_is_no_sweep_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not a sweep folder"):
        load_warm_start(tmp_path, sweep_file(tmp_path))
