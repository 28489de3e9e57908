"""MLflow against a real `mlflow server` on loopback, and tracking-URI handling."""

import pytest
from mlflow.tracking import MlflowClient

from search.ui import ui_command
from tal_core.reporting.mlflow_compat import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
from tal_core.reporting.tracking import artifact_location, resolve_uri


def test_resolve_uri_makes_sqlite_paths_absolute(tmp_path):
    assert resolve_uri("", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_uri("sqlite:///rel/m.db").startswith("sqlite:////")
    assert resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert artifact_location(f"sqlite:///{tmp_path}/m.db") == (tmp_path / "mlartifacts").as_uri()


def test_ui_binds_to_loopback_by_default():
    from talsearch.cli import build_parser

    args = build_parser().parse_args(["ui"])  # no --host given
    command = ui_command(args.uri, args.host, args.port)
    assert command[command.index("--host") + 1] == "127.0.0.1"


@pytest.mark.ray
@pytest.mark.slow
def test_sweep_against_real_mlflow_server(tiny_sweep, mlflow_server):
    out, done = tiny_sweep
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(mlflow_server[0])
    experiment = client.get_experiment_by_name("test")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 4  # the sweep's parent + three trials
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.metrics["trials"] == 3 and "best_val_mAP" in parent.data.metrics
    parent_artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"leaderboard.csv", "sweep.json", "search_space.json"} <= parent_artifacts
    child = next(r for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert "val_mAP" in child.data.metrics
    artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"predictions", "metrics.json", "config.yaml", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(child.info.run_id, "plots")}
    assert {"plots/map_vs_tiou.png", "plots/per_class_ap.png", "plots/timeline.png"} <= plots
    assert not (out.parent / "mlflow.db").exists()


def test_experiments_open_on_the_runs_table(tmp_path):
    from mlflow.tracking import MlflowClient

    from tal_core.reporting.tracking import check_reachable

    uri = f"sqlite:///{tmp_path}/m.db"
    experiment_id = check_reachable(uri, "kinds")
    assert MlflowClient(uri).get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert check_reachable(uri, "kinds") == experiment_id


def test_redact_uri_hides_credentials():
    from tal_core.reporting.tracking import redact_uri

    assert redact_uri("http://bob:pw@host:5000/?token=abc") == "http://***@host:5000/?token=***"
    assert redact_uri("sqlite:////tmp/m.db") == "sqlite:////tmp/m.db"
