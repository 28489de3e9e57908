"""``talsearch sweep --warm-start OLD_SWEEP``: a new sweep's study starts with an earlier sweep's trials.

Optuna's samplers learn from every trial in their study, so the old trials are added to the new study (Optuna's
``add_trial``: values, intermediate values, PRUNED states of trials ASHA stopped) before the first proposal. An
old trial fits the new sweep when it measured a configuration the new sweep could have proposed:

- each key the new space searches was set in it to a value the new space allows (a categorical value listed,
  a number inside the range);
- every other key (data, model, loss, train, eval ...) had the value the new sweep fixes for it.

Trials that do not fit are left out, counted by reason; ``sweep.json`` (``warm_start``) and the MLflow parent
run record what came in.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tal_core.config import ConfigError
from tal_core.run_folder import RunFolder

from .space import Param, SweepSpec

logger = logging.getLogger("talsearch.sweep")
IGNORED_PREFIXES = ("search.", "tracking.")  # how a sweep runs, not what its trials measure


@dataclass
class WarmStart:
    source: str
    trials: list = field(default_factory=list)  # optuna FrozenTrials for the new study
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count

    def summary(self) -> dict:
        return {"from": self.source, "added": len(self.trials), "skipped": sum(self.skipped.values()),
                "skipped_by_reason": self.skipped}


def allows(param: Param, value) -> bool:
    if param.kind == "categorical":
        return value in param.values
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    if param.kind == "int" and float(value) != int(value):
        return False
    return param.low <= value <= param.high


def _old_base(old_dir: Path) -> dict:
    """The old sweep's fixed configuration, flat: any of its trials' resolved config (searched keys are
    overwritten by each trial's own values)."""
    for config in sorted((old_dir / "trials").glob("*/config.yaml")):
        return RunFolder(config.parent).read_flat_config()
    raise ConfigError(f"--warm-start {old_dir}: no trial with a config.yaml to learn the old sweep's settings from")


def _misfit(params: dict, old_base: dict, spec: SweepSpec, fixed: dict) -> str | None:
    """Why an old trial does not fit the new sweep (None when it does)."""
    for param in spec.params:
        value = params.get(param.key, old_base.get(param.key))
        if not allows(param, value):
            return f"{param.key}={value!r} is outside the new space"
    measured = {**old_base, **params}
    for key, value in fixed.items():
        if key.startswith(IGNORED_PREFIXES) or key not in measured:
            continue
        if json.dumps(measured[key], default=str) != json.dumps(value, default=str):
            return f"{key}={measured[key]!r} but the new sweep fixes {value!r}"
    return None


def load_warm_start(old: str | Path, spec: SweepSpec) -> WarmStart:
    """The old sweep's finished trials (COMPLETE or PRUNED) that fit ``spec``, as trials of the new space."""
    from .study_storage import load_study, recorded_url, study_file_missing

    old_dir = Path(old).resolve()
    state_path = old_dir / "sweep.json"
    url = recorded_url(old_dir, json.loads(state_path.read_text())) if state_path.is_file() else None
    if url is None or study_file_missing(url):
        raise ConfigError(f"--warm-start {old_dir}: not a sweep folder (needs sweep.json and its study, "
                          f"{url or 'optuna.db'})")
    state = json.loads(state_path.read_text())
    study = load_study(url, state["study_name"])  # a study on a database server: reached here, before any work
    old_base = _old_base(old_dir)
    searched = {p.key for p in spec.params}
    fixed = {k: v for k, v in spec.base.flat().items() if k not in searched}
    distributions = spec.optuna_space()
    warm = WarmStart(str(old_dir))
    for trial in study.trials:
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        reason = _misfit(trial.params, old_base, spec, fixed)
        if reason is not None:
            warm.skipped[reason] = warm.skipped.get(reason, 0) + 1
            continue
        params = {p.key: trial.params.get(p.key, old_base.get(p.key)) for p in spec.params}
        warm.trials.append(optuna.trial.create_trial(
            state=trial.state, value=trial.value if trial.state == TrialState.COMPLETE else None, params=params,
            distributions=distributions, intermediate_values=dict(trial.intermediate_values),
            user_attrs={"warm_start_from": str(old_dir), "warm_start_number": trial.number}))
    logger.info(f"[sweep] warm start from {old_dir}: {len(warm.trials)} trial(s) fit the new sweep"
                + (f", {sum(warm.skipped.values())} left out ({'; '.join(list(warm.skipped)[:3])})"
                   if warm.skipped else ""))
    return warm


def seed_study(storage, study_name: str, warm: WarmStart) -> None:
    """Create the new sweep's study holding the warm trials; the sweep's searcher then loads it (same name)."""
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", load_if_exists=True)
    if not study.trials:
        study.add_trials(warm.trials)
