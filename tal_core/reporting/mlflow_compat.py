"""The MLflow names tal-search relies on that MLflow does not document as API, in this one module (tested
with MLflow 3.0-3.17).

They are read by MLflow's web UI, not by its Python client: a release that stops reading them leaves the
sweep working and the UI plainer. ``tests/test_mlflow_compat.py`` checks, in seconds, that the installed UI
bundle still reads each of them.

- ``EXPERIMENT_KIND_TAG`` / ``EXPERIMENT_KIND``: without it MLflow 3's UI asks what kind of experiment this is
  (GenAI or model training) and hides the runs table until answered.
- ``VIEW_TAG_PREFIX`` + ``VIEW_URL_PARAM``: saved views of the runs table (experiment tags holding the table's
  state), opened by ``#/experiments/<id>/runs?viewStateShareKey=<key>``.
"""

from __future__ import annotations

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_URL_PARAM = "viewStateShareKey"
UI_NAMES = (EXPERIMENT_KIND_TAG, EXPERIMENT_KIND, VIEW_TAG_PREFIX, VIEW_URL_PARAM)
