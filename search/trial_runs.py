"""Tune's MLflow callback, naming each trial's child run after what the trial is (its searched values) and
tagging it with its trial id, which is how the sweep finds the run again (``tal_core.reporting.tracking``)."""

from __future__ import annotations

from ray.air.integrations.mlflow import MLflowLoggerCallback

from tal_core.reporting.tracking import TRIAL_ID_TAG, trial_run_name

from .ray_compat import trial_runs


class TrialRunsCallback(MLflowLoggerCallback):
    def __init__(self, *args, searched: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.searched = list(searched)

    def log_trial_start(self, trial) -> None:
        runs = trial_runs(self)
        if trial not in runs:
            tags = {**self.tags, "trial_name": str(trial), TRIAL_ID_TAG: trial.trial_id}
            run = self.mlflow_util.start_run(tags=tags, run_name=trial_run_name(trial.trial_id, trial.config,
                                                                                  self.searched))
            runs[trial] = run.info.run_id
        super().log_trial_start(trial)  # logs the searched values as params
