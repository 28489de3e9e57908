"""MLflow against a real `mlflow server` on loopback, and tracking-URI handling."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from test_sweep import sweep_file

from search.tracking import artifact_location, resolve_uri
from search.ui import ui_command


def test_resolve_uri_makes_sqlite_paths_absolute(tmp_path):
    assert resolve_uri("", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_uri("sqlite:///rel/m.db").startswith("sqlite:////")
    assert resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert artifact_location(f"sqlite:///{tmp_path}/m.db") == (tmp_path / "mlartifacts").as_uri()


def test_ui_binds_to_loopback_by_default():
    command = ui_command("", "127.0.0.1", 5000)
    assert command[command.index("--host") + 1] == "127.0.0.1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def mlflow_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                             f"sqlite:///{tmp_path}/server.db", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--artifacts-destination", str(tmp_path / "artifacts")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(1)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.ray
@pytest.mark.slow
def test_sweep_against_real_mlflow_server(tiny_data, tmp_path, mlflow_server):
    out = tmp_path / "s"
    done = subprocess.run([sys.executable, "-m", "search.cli", "sweep", "--data", str(tiny_data), "--config",
                           str(sweep_file(tmp_path)), "--out", str(out), "--set", "search.num_samples=1",
                           "train.epochs=1", f"tracking.uri={mlflow_server}"], capture_output=True, text=True,
                          timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("test")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2  # parent + one child
    child = next(r for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert "val_mAP" in child.data.metrics
    assert {a.path for a in client.list_artifacts(child.info.run_id)} >= {"predictions", "metrics.json"}
    assert not Path(tmp_path / "mlflow.db").exists()
