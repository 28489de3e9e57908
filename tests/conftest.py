import contextlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(scope="session", autouse=True)
def _frame_cache(tmp_path_factory):
    os.environ["TALSEARCH_CACHE"] = str(tmp_path_factory.mktemp("frame_cache"))
    yield


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A small real synthetic data set: 8 videos of 6-8 s, 32 px, 3 views."""
    from tal_core.data.synth import SynthSpec, synthesize

    out = tmp_path_factory.mktemp("tiny_data")
    synthesize(out, SynthSpec(videos=8, seed=3, duration=(7.0, 9.0), size=32))
    return out


TINY_OVERRIDES = {"data.image_size": 32, "data.frames_per_interval": 2, "model.tiny_width": 8,
                  "train.epochs": 1, "train.batch_size": 8}


def write_sweep_file(folder: Path, extra: str = "") -> Path:
    """A tiny sweep config: 3 trials x 2 epochs of the 8-wide tiny TSM, 2 Ray Train workers, ASHA on."""
    path = folder / "sweep.yaml"
    path.write_text(f"""
data: {{image_size: 32, frames_per_interval: 2}}
model: {{tiny_width: 8}}
train: {{epochs: 2, batch_size: 8}}
search: {{num_samples: 3, trial_workers: 2, asha: true, grace_period: 1, max_failures: 0}}
tracking: {{uri: "sqlite:///{folder}/mlflow.db", experiment: test}}
space:
  model.shift_fraction: {{type: categorical, values: [0.0, 0.25]}}
  train.lr: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true}}
{extra}""")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 180) -> None:
    import socket
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on loopback over a SQLite file: (url, backend store URI)."""
    import subprocess

    folder = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    store = f"sqlite:///{folder}/server.db"
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, "--host",
                             "127.0.0.1", "--port", str(port), "--workers", "1", "--artifacts-destination",
                             str(folder / "artifacts")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}", store
    stop_process_group(proc)


def stop_process_group(proc) -> None:
    """Stop a server started with ``start_new_session=True`` and the workers it forked (uvicorn, huey)."""
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


ASHA_STOPS_SECOND = ("  loss.action_weight: {type: categorical, values: [0.05, 4.0]}\n"
                     "  model.output: {type: categorical, values: [interval, frame]}")


@pytest.fixture(scope="session")
def tiny_sweep(tiny_data, mlflow_server, tmp_path_factory):
    """One real sweep (local Ray, tracked on the real MLflow server) shared by the sweep, tracking, ensemble
    and UI tests: (sweep folder, finished process).

    ASHA's stop is made deterministic: it ranks trials by train loss (maximised) after epoch 1, and TPE seed 14
    draws action-loss weights 4.0, 0.05, 4.0 (and outputs interval, interval, frame: the sweep mixes both
    kinds), so the second trial is stopped after epoch 1 of 3 and the third runs after it (with Tune's reuse_actors on, that third trial was aborted: the stopped trial's actor was
    still inside TorchTrainer.fit()).
    """
    import subprocess

    folder = tmp_path_factory.mktemp("tiny_sweep")
    out = folder / "sweep"
    done = subprocess.run([sys.executable, "-m", "talsearch.cli", "sweep", "--data", str(tiny_data), "--config",
                           str(write_sweep_file(folder, ASHA_STOPS_SECOND)), "--out", str(out), "--set",
                           f"tracking.uri={mlflow_server[0]}", "search.metric=train_loss", "search.seed=14",
                           "train.epochs=3"],
                          capture_output=True, text=True, timeout=1200,
                          cwd=folder)
    return out, done
